//! Writing a merge's change set: in one transaction where the server has
//! them and the set is small enough, else in ordered, idempotent batches,
//! the checkpoint passed before each.

use mongodb::bson::{Bson, Document, RawArrayBuf, RawDocumentBuf, doc};
use mongodb::{ClientSession, Database};

use super::error::MergeError;
use crate::apply::checkpoint::Checkpoint;
use crate::report::WriteMode;
use crate::store::{Operation, Within, timed};

/// A command's encoded size at most: the server takes 16 MiB; the rest is
/// headroom for the command around the statements.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// One write of the change set.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Insert {
        row: usize,
        document: RawDocumentBuf,
    },
    Update {
        row: usize,
        filter: Document,
        update: Document,
    },
    /// A whole document put in place of the one `filter` names, or added
    /// (a swap target's change set written in place).
    Replace {
        row: usize,
        filter: Document,
        replacement: Document,
    },
    Delete {
        filter: Document,
    },
}

impl Write {
    fn command(&self) -> &'static str {
        match self {
            Write::Insert { .. } => "insert",
            Write::Update { .. } | Write::Replace { .. } => "update",
            Write::Delete { .. } => "delete",
        }
    }

    /// Where the write comes from, as an error names it.
    fn origin(&self) -> String {
        match self {
            Write::Insert { row, .. } | Write::Update { row, .. } | Write::Replace { row, .. } => format!("row {row}"),
            Write::Delete { .. } => "the deletion of a document not in the source".to_owned(),
        }
    }

    /// About how many bytes the statement takes in the command.
    fn encoded_len(&self) -> usize {
        match self {
            Write::Insert { document, .. } => document.as_bytes().len(),
            Write::Update { filter, update, .. }
            | Write::Replace {
                filter,
                replacement: update,
                ..
            } => {
                let size =
                    |document: &Document| mongodb::bson::to_vec(document).map_or(MAX_BATCH_BYTES, |bytes| bytes.len());
                size(filter) + size(update)
            }
            Write::Delete { filter } => mongodb::bson::to_vec(filter).map_or(MAX_BATCH_BYTES, |bytes| bytes.len()),
        }
    }

    /// The statement, encoded for the command.
    fn statement(&self) -> Result<RawDocumentBuf, mongodb::bson::raw::Error> {
        match self {
            Write::Insert { document, .. } => Ok(document.clone()),
            Write::Update { filter, update, .. } => RawDocumentBuf::from_document(&doc! { "q": filter, "u": update }),
            Write::Replace {
                filter, replacement, ..
            } => RawDocumentBuf::from_document(&doc! { "q": filter, "u": replacement, "upsert": true }),
            Write::Delete { filter } => RawDocumentBuf::from_document(&doc! { "q": filter, "limit": 1 }),
        }
    }
}

/// Where, and under which checkpoint, a change set is written.
pub struct Writer<'a> {
    pub db: &'a Database,
    pub collection: &'a str,
    pub checkpoint: &'a Checkpoint<'a>,
}

impl Writer<'_> {
    /// Writes the change set: in one transaction when `transaction_max`
    /// allows (the server has them and the set is at most its size), else in
    /// ordered batches of `batch_size` statements. Says how, and how many
    /// documents were written (also on failure: the error counts them).
    pub async fn write(
        &self,
        writes: &[Write],
        batch_size: usize,
        transaction_max: Option<usize>,
    ) -> (WriteMode, Result<usize, MergeError>) {
        if writes.is_empty() {
            return (WriteMode::Nothing, Ok(0));
        }
        let batches = batches(writes, batch_size.max(1), MAX_BATCH_BYTES);
        match transaction_max.filter(|max| writes.len() <= *max) {
            Some(_) => (WriteMode::Transaction, self.write_in_transaction(&batches).await),
            None => (
                WriteMode::OrderedBatches { batches: batches.len() },
                self.write_in_batches(&batches).await,
            ),
        }
    }

    async fn write_in_batches(&self, batches: &[&[Write]]) -> Result<usize, MergeError> {
        let mut written = 0;
        for batch in batches {
            self.pass(written).await?;
            written += run_batch(self.db, self.collection, batch, None, written).await?;
        }
        Ok(written)
    }

    async fn pass(&self, written: usize) -> Result<(), MergeError> {
        self.checkpoint.check().await.map_err(|reason| MergeError::CalledOff {
            collection: self.collection.to_owned(),
            reason,
            written,
        })
    }

    async fn write_in_transaction(&self, batches: &[&[Write]]) -> Result<usize, MergeError> {
        self.pass(0).await?;
        let (db, collection) = (self.db, self.collection);
        let mut session = db
            .client()
            .start_session()
            .within(Operation::Write, || {
                format!("starting a session to merge into `{collection}`")
            })
            .await?;
        session
            .start_transaction()
            .within(Operation::Write, || format!("starting a transaction on `{collection}`"))
            .await?;
        let mut written = 0;
        for batch in batches {
            match run_batch(db, collection, batch, Some(&mut session), written).await {
                Ok(count) => written += count,
                Err(error) => {
                    let _ = session
                        .abort_transaction()
                        .within(Operation::Write, || format!("aborting the merge into `{collection}`"))
                        .await;
                    return Err(match error {
                        MergeError::Write {
                            collection,
                            at,
                            message,
                            ..
                        } => MergeError::Write {
                            collection,
                            at,
                            message: format!("{message} (the transaction was rolled back)"),
                            written: 0,
                        },
                        other => other,
                    });
                }
            }
        }
        if let Err(error) = self.pass(0).await {
            let _ = session
                .abort_transaction()
                .within(Operation::Write, || format!("aborting the merge into `{collection}`"))
                .await;
            return Err(error);
        }
        session
            .commit_transaction()
            .within(Operation::Write, || format!("committing the merge into `{collection}`"))
            .await?;
        Ok(written)
    }
}

/// Whether `next` must start a new batch after `batch` (of `bytes`): a
/// batch is consecutive writes of one kind, at most `size` statements and
/// (beyond the first statement) `max_bytes` per command.
fn starts_a_batch(batch: &[Write], bytes: usize, next: &Write, size: usize, max_bytes: usize) -> bool {
    batch.first().is_some_and(|first| {
        next.command() != first.command() || batch.len() == size || bytes + next.encoded_len() > max_bytes
    })
}

/// A change set cut into batches (see [`starts_a_batch`]).
fn batches(writes: &[Write], size: usize, max_bytes: usize) -> Vec<&[Write]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, write) in writes.iter().enumerate() {
        let length = write.encoded_len();
        if starts_a_batch(&writes[start..index], bytes, write, size, max_bytes) {
            batches.push(&writes[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += length;
    }
    if start < writes.len() {
        batches.push(&writes[start..]);
    }
    batches
}

/// A change set written as it is worked out, batch by batch (ordered,
/// idempotent, the checkpoint passed before each), holding one batch: for
/// change sets too large to hold (`Merge::overflowed`).
pub(super) struct WriteStream<'w, 'a> {
    writer: &'w Writer<'a>,
    size: usize,
    pending: Vec<Write>,
    pending_bytes: usize,
    written: usize,
    batches: usize,
    /// The first failure; later writes are dropped.
    failed: Option<MergeError>,
}

impl<'w, 'a> WriteStream<'w, 'a> {
    pub(super) fn new(writer: &'w Writer<'a>, batch_size: usize) -> WriteStream<'w, 'a> {
        WriteStream {
            writer,
            size: batch_size.max(1),
            pending: Vec::new(),
            pending_bytes: 0,
            written: 0,
            batches: 0,
            failed: None,
        }
    }

    /// Whether the pending batch must be sent before `write` joins.
    pub(super) fn full_before(&self, write: &Write) -> bool {
        starts_a_batch(&self.pending, self.pending_bytes, write, self.size, MAX_BATCH_BYTES)
    }

    /// Adds a write to the pending batch (call [`WriteStream::flush`] first
    /// when [`WriteStream::full_before`] says so).
    pub(super) fn push(&mut self, write: Write) {
        if self.failed.is_none() {
            self.pending_bytes += write.encoded_len();
            self.pending.push(write);
        }
    }

    /// Sends the pending batch.
    pub(super) async fn flush(&mut self) {
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        if batch.is_empty() || self.failed.is_some() {
            return;
        }
        if let Err(error) = self.writer.pass(self.written).await {
            self.failed = Some(error);
            return;
        }
        self.batches += 1;
        match run_batch(self.writer.db, self.writer.collection, &batch, None, self.written).await {
            Ok(count) => self.written += count,
            Err(error) => self.failed = Some(error),
        }
    }

    /// Sends what is pending; says how and how many documents were written.
    pub(super) async fn finish(mut self) -> (WriteMode, Result<usize, MergeError>) {
        self.flush().await;
        let mode = match self.batches {
            0 => WriteMode::Nothing,
            batches => WriteMode::OrderedBatches { batches },
        };
        match self.failed {
            Some(error) => (mode, Err(error)),
            None => (mode, Ok(self.written)),
        }
    }
}

/// Sends one ordered batch; the server stops at the first failing statement
/// and says which in `writeErrors`, which `runCommand` does not turn into an
/// error by itself.
async fn run_batch(
    db: &Database,
    collection: &str,
    batch: &[Write],
    session: Option<&mut ClientSession>,
    written_before: usize,
) -> Result<usize, MergeError> {
    let Some(first) = batch.first() else {
        return Ok(0);
    };
    let command = first.command();
    let list = match first {
        Write::Insert { .. } => "documents",
        Write::Update { .. } | Write::Replace { .. } => "updates",
        Write::Delete { .. } => "deletes",
    };
    let mut statements = RawArrayBuf::new();
    for (index, write) in batch.iter().enumerate() {
        let statement = write.statement().map_err(|error| MergeError::Write {
            collection: collection.to_owned(),
            at: batch[index].origin(),
            message: format!("cannot be encoded: {error}"),
            written: written_before,
        })?;
        statements.push(statement);
    }
    let mut body = RawDocumentBuf::new();
    body.append(command, collection);
    body.append(list, statements);
    body.append("ordered", true);
    let describe = || format!("{command} of {} document(s) into `{collection}`", batch.len());
    let sent = match session {
        Some(session) => timed(Operation::Write, db.run_raw_command(body).session(session), describe).await?,
        None => timed(Operation::Write, db.run_raw_command(body), describe).await?,
    };
    // A refused command (ok: 0) wrote nothing of this batch.
    let reply = sent.map_err(|error| MergeError::Write {
        collection: collection.to_owned(),
        at: format!("a batch of {} starting at {}", batch.len(), first.origin()),
        message: driver_message(&error),
        written: written_before,
    })?;
    if let Ok(errors) = reply.get_array("writeErrors")
        && let Some(Bson::Document(error)) = errors.first()
    {
        let index = error
            .get_i32("index")
            .map_or(0, |index| usize::try_from(index).unwrap_or(0));
        let at = batch
            .get(index)
            .map_or_else(|| format!("statement {index}"), Write::origin);
        return Err(MergeError::Write {
            collection: collection.to_owned(),
            at: format!("{at}, refused by the collection's rules (a validator or a unique index)"),
            message: error.get_str("errmsg").unwrap_or("refused by the server").to_owned(),
            written: written_before + index,
        });
    }
    if let Ok(error) = reply.get_document("writeConcernError") {
        return Err(MergeError::Write {
            collection: collection.to_owned(),
            at: format!("a batch of {} starting at {}", batch.len(), first.origin()),
            message: format!("write concern: {}", error.get_str("errmsg").unwrap_or("not satisfied")),
            written: written_before + batch.len(),
        });
    }
    Ok(batch.len())
}

/// The server's own words for a refused command, without the raw reply.
fn driver_message(error: &mongodb::error::Error) -> String {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(command) => {
            format!("{} ({} {})", command.message, command.code_name, command.code)
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_by_kind_and_size() {
        let insert = || Write::Insert {
            row: 2,
            document: RawDocumentBuf::new(),
        };
        let update = || Write::Update {
            row: 3,
            filter: doc! {},
            update: doc! {},
        };
        let writes = vec![update(), update(), update(), insert(), insert()];
        let sizes =
            |size, bytes| -> Vec<usize> { batches(&writes, size, bytes).iter().map(|batch| batch.len()).collect() };
        assert_eq!(sizes(2, MAX_BATCH_BYTES), [2, 1, 2]);
        // Beyond its first statement, a batch stops short of the byte cap.
        assert_eq!(sizes(10, 1), [1, 1, 1, 1, 1]);
        assert!(batches(&[], 2, MAX_BATCH_BYTES).is_empty());
    }
}
