//! Merging a sheet into a collection an application shares.
//!
//! The app owns the documents as much as the sheet does: it writes fields
//! the sheet has no column for (`stakeholders`), and other collections point
//! at the documents by `id`. So nothing is swapped or re-identified: each
//! winning row is matched to a document by the profile's key, and only the
//! fields whose value differs are `$set` (or `$unset`, for a cleared cell),
//! with `updated_at`. Unchanged rows write nothing.
//!
//! The writes are idempotent per document (a `$set` of values, an insert of a
//! key that a rerun then finds), so ordered batches that stop midway leave
//! every document either as before or as the sheet says, and the next run
//! completes the rest. Where the server has transactions and the change set
//! is small enough, it is applied in one instead.

use std::collections::HashMap;

use chrono::SecondsFormat;
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime as BsonDateTime, Document, RawArrayBuf, RawBsonRef, RawDocumentBuf, doc};
use mongodb::{ClientSession, Database};

use crate::bson_dates::from_bson_date;
use crate::mapping::profile::{Blank, DateStorage, FieldKind, MergeRules, OnMissing, Reference, TargetProfile};
use crate::mapping::values::fold_key_text;
use crate::mapping::{MappedRecord, RowIssue, record_key};
pub use crate::report::{MergeSummary, WriteMode};
use crate::store::{Operation, StoreError, Within, timed};

/// At most this many names of documents missing from the source are listed
/// in a report; the count is always exact.
const LISTED_MISSING: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "writing `{collection}` stopped at {at}: {message}; {written} document(s) were written before it, each \
         either as before or as the sheet says: fix the cause and sync again to complete the rest"
    )]
    Write {
        collection: String,
        /// `row 14` (the sheet's row), or what else was being written.
        at: String,
        message: String,
        written: usize,
    },
    #[error(
        "called off while writing `{collection}` ({reason}); {written} document(s) were written, each either as \
         before or as the sheet says: the next sync completes the rest"
    )]
    CalledOff {
        collection: String,
        reason: String,
        written: usize,
    },
}

impl MergeError {
    /// Documents written before the failure.
    fn written(&self) -> usize {
        match self {
            MergeError::Store(_) => 0,
            MergeError::Write { written, .. } | MergeError::CalledOff { written, .. } => *written,
        }
    }
}

/// What must still hold before each batch of a merge is sent: nobody called
/// the sync off, and this process still holds the sync's lease (the caller
/// renews it here). `Err` says why not.
pub trait Checkpoint {
    fn check(&self) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// A command's encoded size at most: the server takes 16 MiB; the rest is
/// headroom for the command around the statements.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// One write of the change set.
#[derive(Debug, Clone, PartialEq)]
enum Write {
    Insert {
        row: usize,
        document: RawDocumentBuf,
    },
    Update {
        row: usize,
        filter: Document,
        update: Document,
    },
    Delete {
        filter: Document,
    },
}

impl Write {
    fn command(&self) -> &'static str {
        match self {
            Write::Insert { .. } => "insert",
            Write::Update { .. } => "update",
            Write::Delete { .. } => "delete",
        }
    }

    /// Where the write comes from, as an error names it.
    fn origin(&self) -> String {
        match self {
            Write::Insert { row, .. } | Write::Update { row, .. } => format!("row {row}"),
            Write::Delete { .. } => "the deletion of a document not in the source".to_owned(),
        }
    }

    /// About how many bytes the statement takes in the command.
    fn encoded_len(&self) -> usize {
        match self {
            Write::Insert { document, .. } => document.as_bytes().len(),
            Write::Update { filter, update, .. } => {
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
            Write::Delete { filter } => RawDocumentBuf::from_document(&doc! { "q": filter, "limit": 1 }),
        }
    }
}

/// A stored document, as much of it as the merge compares. Kept encoded:
/// a parsed `Document` costs several times its BSON size, and a merge holds
/// every document of the collection.
#[derive(Debug)]
struct Stored {
    document: RawDocumentBuf,
    matched: bool,
}

impl Stored {
    /// A field's value; `None` when absent (or, never in practice, not
    /// decodable, which then compares as different and is rewritten).
    fn get(&self, field: &str) -> Option<Bson> {
        let value = self.document.get(field).ok().flatten()?;
        Bson::try_from(value.to_raw_bson()).ok()
    }
}

/// Users (or any referenced collection) by e-mail and by exact name.
#[derive(Debug, Default)]
struct Directory {
    by_email: HashMap<String, Vec<(String, String)>>,
    by_name: HashMap<String, Vec<(String, String)>>,
}

impl Directory {
    /// `Ok((id, name))` for exactly one match; else how many matched.
    fn resolve(&self, written: &str) -> Result<&(String, String), usize> {
        let written = written.trim();
        let found = self
            .by_email
            .get(&written.to_lowercase())
            .or_else(|| self.by_name.get(written))
            .map_or(&[][..], Vec::as_slice);
        match found {
            [one] => Ok(one),
            several => Err(several.len()),
        }
    }
}

/// The whole comparison of the source with the collection, before anything
/// is written.
#[derive(Debug)]
pub struct Merge<'p> {
    profile: &'p TargetProfile,
    rules: &'p MergeRules,
    collection: String,
    stored: Vec<Stored>,
    by_key: HashMap<String, Vec<usize>>,
    /// Per profile field: its column's header, when the source has one.
    columns: Vec<Option<String>>,
    directories: HashMap<String, Directory>,
    /// Per profile field: whether dates are written as ISO strings.
    /// Per profile field: `None` for BSON dates, else the text form its
    /// stored values use.
    date_texts: Vec<Option<DateText>>,
    timestamps_as_text: Option<DateText>,
    now: BsonDateTime,
    writes: Vec<Write>,
    pub changes: crate::report::Changes,
    pub summary: MergeSummary,
    pub warnings: Vec<RowIssue>,
    pub notices: Vec<String>,
}

impl<'p> Merge<'p> {
    /// Reads what the merge compares against: the collection's documents
    /// (the mapped fields only) and every referenced collection.
    pub async fn load(
        db: &Database,
        collection: &str,
        profile: &'p TargetProfile,
        rules: &'p MergeRules,
        columns: Vec<Option<String>>,
    ) -> Result<Merge<'p>, StoreError> {
        let mut projection = doc! { "_id": 1, "id": 1, "created_at": 1, "updated_at": 1 };
        for field in &profile.fields {
            projection.insert(field.name.clone(), 1);
        }
        for reference in &rules.references {
            projection.insert(reference.id_field.clone(), 1);
        }
        let describe = || format!("reading the documents of `{collection}` to merge into");
        let documents: Vec<RawDocumentBuf> = db
            .collection::<RawDocumentBuf>(collection)
            .find(doc! {})
            .projection(projection)
            .within(Operation::Read, describe)
            .await?
            .try_collect()
            .within(Operation::Read, describe)
            .await?;
        let mut directories = HashMap::new();
        for reference in &rules.references {
            if !directories.contains_key(&reference.collection) {
                directories.insert(reference.collection.clone(), load_directory(db, reference).await?);
            }
        }
        let mut merge = Merge {
            profile,
            rules,
            collection: collection.to_owned(),
            stored: Vec::with_capacity(documents.len()),
            by_key: HashMap::with_capacity(documents.len()),
            columns,
            directories,
            date_texts: Vec::new(),
            timestamps_as_text: None,
            now: BsonDateTime::now(),
            writes: Vec::new(),
            changes: crate::report::Changes::default(),
            summary: MergeSummary::default(),
            warnings: Vec::new(),
            notices: Vec::new(),
        };
        for document in documents {
            let stored = Stored {
                document,
                matched: false,
            };
            let key_fields: Document = profile
                .key
                .iter()
                .filter_map(|field| stored.get(field).map(|value| (field.clone(), value)))
                .collect();
            let key = record_key(profile, &key_fields);
            merge.by_key.entry(key).or_default().push(merge.stored.len());
            merge.stored.push(stored);
        }
        merge.decide_representations();
        Ok(merge)
    }

    /// Date fields are written as the collection already holds them, field
    /// by field (or as the profile's `dates` says); `created_at` and
    /// `updated_at` always as the collection holds `updated_at`.
    fn decide_representations(&mut self) {
        let mut texts = Vec::with_capacity(self.profile.fields.len());
        for field in &self.profile.fields {
            let decided = match (&field.kind, self.rules.dates) {
                (FieldKind::Date, DateStorage::Auto) => self.held_as_text(&field.name),
                (FieldKind::Date, DateStorage::String) => {
                    Some(self.held_as_text(&field.name).unwrap_or(DateText::DateOnly))
                }
                _ => None,
            };
            texts.push(decided);
        }
        self.date_texts = texts;
        self.timestamps_as_text = self.held_as_text("updated_at");
    }

    /// The text form the stored documents hold `field` in, or `None` when
    /// they hold BSON dates (or nothing); a mix is noticed.
    fn held_as_text(&mut self, field: &str) -> Option<DateText> {
        let (mut texts, mut moments, mut dates) = (0usize, 0usize, 0usize);
        for stored in &self.stored {
            match stored.document.get(field) {
                Ok(Some(RawBsonRef::String(text))) => {
                    texts += 1;
                    if text.contains('T') {
                        moments += 1;
                    }
                }
                Ok(Some(RawBsonRef::DateTime(_))) => dates += 1,
                _ => {}
            }
        }
        let as_text = texts > dates;
        if texts > 0 && dates > 0 {
            self.notices.push(format!(
                "`{}.{field}` holds {texts} ISO string(s) and {dates} date(s); values are written as {}, the \
                 majority (set `dates` in the target profile to choose)",
                self.collection,
                if as_text { "ISO strings" } else { "dates" }
            ));
        }
        match (as_text, moments * 2 > texts) {
            (false, _) => None,
            (true, false) => Some(DateText::DateOnly),
            (true, true) => Some(DateText::Moment),
        }
    }

    /// Compares one winning record with its document and queues the writes
    /// that make the document say what the row says.
    pub fn add(&mut self, record: MappedRecord) {
        let mut desired = self.desired_values(&record);
        let Some(index) = self.matching(&record) else {
            return;
        };
        match index {
            Some(index) => self.update(record.row, index, desired),
            None => {
                desired.retain(|(_, value)| *value != Bson::Null);
                self.insert(record.row, desired);
            }
        }
    }

    /// The document this record continues: `Some(None)` for a new one,
    /// `None` when the record cannot be placed (reported).
    fn matching(&mut self, record: &MappedRecord) -> Option<Option<usize>> {
        let candidates = self.by_key.get(&record.key).cloned().unwrap_or_default();
        match candidates.as_slice() {
            [] => Some(None),
            [one] => Some(Some(*one)),
            several => {
                let names: Vec<String> = several.iter().map(|index| self.display_key(*index)).collect();
                self.warnings.push(RowIssue {
                    row: record.row,
                    column: None,
                    value: None,
                    reason: format!(
                        "matches {} documents of `{}` ({}); nothing was written for this row: merge the duplicates \
                         in the application",
                        several.len(),
                        self.collection,
                        names.join(", ")
                    ),
                });
                for index in several {
                    self.stored[*index].matched = true;
                }
                None
            }
        }
    }

    /// `(field, value)` for every field the source has a column for, in
    /// the stored representation; `Null` for a blank cell that clears.
    fn desired_values(&mut self, record: &MappedRecord) -> Vec<(String, Bson)> {
        let mut desired = Vec::new();
        for (index, field) in self.profile.fields.iter().enumerate() {
            // No column, or an unreadable cell (reported): the stored
            // value stands.
            if self.columns[index].is_none() || record.unreadable.contains(&field.name) {
                continue;
            }
            let value = record.fields.get(&field.name).cloned().unwrap_or(Bson::Null);
            if value == Bson::Null && self.rules.blank == Blank::Keep {
                continue;
            }
            let value = match value {
                Bson::DateTime(date) => match self.date_texts[index] {
                    Some(form) => Bson::String(form.write(date)),
                    None => Bson::DateTime(date),
                },
                other => other,
            };
            desired.push((field.name.clone(), value));
        }
        let references = self.rules.references.clone();
        for reference in &references {
            self.resolve_reference(reference, record, &mut desired);
        }
        desired
    }

    /// Replaces a reference's written name by the user's name and adds the
    /// id; no or several matches leave the id alone, with a warning.
    fn resolve_reference(&mut self, reference: &Reference, record: &MappedRecord, desired: &mut Vec<(String, Bson)>) {
        let Some(position) = desired.iter().position(|(field, _)| *field == reference.field) else {
            return;
        };
        let written = match &desired[position].1 {
            Bson::String(text) => text.clone(),
            // A cleared owner clears the id with the name.
            _ => {
                desired.push((reference.id_field.clone(), Bson::Null));
                return;
            }
        };
        let Some(directory) = self.directories.get(&reference.collection) else {
            return;
        };
        match directory.resolve(&written) {
            Ok((id, name)) => {
                desired[position].1 = Bson::String(name.clone());
                desired.push((reference.id_field.clone(), Bson::String(id.clone())));
            }
            Err(count) => {
                let field_index = self.profile.field_index(&reference.field);
                let column = field_index.and_then(|index| self.columns[index].clone());
                let found = if count == 0 {
                    "no".to_owned()
                } else {
                    format!("{count}")
                };
                self.warnings.push(RowIssue {
                    row: record.row,
                    column,
                    value: Some(written),
                    reason: format!(
                        "{found} user(s) of `{}` have this e-mail or exact name; the name is stored as written and \
                         `{}` is left as it was",
                        reference.collection, reference.id_field
                    ),
                });
            }
        }
    }

    fn update(&mut self, row: usize, index: usize, desired: Vec<(String, Bson)>) {
        self.stored[index].matched = true;
        let stored = &self.stored[index];
        let (mut set, mut unset) = (Document::new(), Document::new());
        for (field, value) in desired {
            let current = stored.get(&field);
            // The key keeps the spelling the application stored.
            if self.profile.key.contains(&field) && same_key(current.as_ref(), &value) {
                continue;
            }
            if same_value(current.as_ref(), &value) {
                continue;
            }
            match value {
                Bson::Null => {
                    unset.insert(field, "");
                }
                value => {
                    set.insert(field, value);
                }
            }
        }
        if set.is_empty() && unset.is_empty() {
            self.changes.unchanged += 1;
            return;
        }
        let filter = doc! { "_id": stored.get("_id").unwrap_or(Bson::Null) };
        self.summary.fields_written += set.len() + unset.len();
        set.insert("updated_at", self.timestamp());
        let mut update = doc! { "$set": set };
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        self.writes.push(Write::Update { row, filter, update });
        self.changes.updated += 1;
    }

    fn insert(&mut self, row: usize, desired: Vec<(String, Bson)>) {
        let mut document = doc! { "id": uuid::Uuid::new_v4().to_string() };
        self.summary.fields_written += desired.len();
        document.extend(desired);
        let now = self.timestamp();
        document.insert("created_at", now.clone());
        document.insert("updated_at", now);
        match RawDocumentBuf::from_document(&document) {
            Ok(encoded) => {
                self.writes.push(Write::Insert { row, document: encoded });
                self.changes.inserted += 1;
            }
            Err(error) => self.warnings.push(RowIssue {
                row,
                column: None,
                value: None,
                reason: format!("cannot be encoded for MongoDB ({error}); nothing was written for this row"),
            }),
        }
    }

    fn timestamp(&self) -> Bson {
        match self.timestamps_as_text {
            Some(_) => Bson::String(DateText::Moment.write(self.now)),
            None => Bson::DateTime(self.now),
        }
    }

    fn display_key(&self, index: usize) -> String {
        let stored = &self.stored[index];
        let parts: Vec<String> = self
            .profile
            .key
            .iter()
            .map(|field| match stored.get(field) {
                Some(Bson::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            })
            .collect();
        parts.join(" / ")
    }

    /// Ends the comparison: documents the source no longer has are listed,
    /// and queued for deletion when the profile says so.
    pub fn finish(&mut self) {
        let missing: Vec<usize> = (0..self.stored.len())
            .filter(|index| !self.stored[*index].matched)
            .collect();
        self.summary.not_in_source_count = missing.len();
        self.summary.not_in_source = missing
            .iter()
            .take(LISTED_MISSING)
            .map(|index| self.display_key(*index))
            .collect();
        self.summary.not_in_source.sort();
        if self.rules.on_missing == OnMissing::Delete {
            for index in missing {
                let id = self.stored[index].get("_id").unwrap_or(Bson::Null);
                self.writes.push(Write::Delete {
                    filter: doc! { "_id": id },
                });
                self.changes.removed += 1;
            }
        }
    }

    /// Documents in the collection before the merge.
    pub fn stored_count(&self) -> usize {
        self.stored.len()
    }

    /// Writes the change set: in one transaction when `transaction` allows
    /// (the server has them and the set is at most its size), else in
    /// ordered batches of `batch_size` statements.
    pub async fn write(
        &mut self,
        db: &Database,
        batch_size: usize,
        transaction_max: Option<usize>,
        checkpoint: &impl Checkpoint,
    ) -> Result<(), MergeError> {
        let writes = std::mem::take(&mut self.writes);
        if writes.is_empty() {
            self.summary.write_mode = Some(WriteMode::Nothing);
            return Ok(());
        }
        let batches = batches(&writes, batch_size.max(1), MAX_BATCH_BYTES);
        let written = match transaction_max.filter(|max| writes.len() <= *max) {
            Some(_) => {
                self.summary.write_mode = Some(WriteMode::Transaction);
                self.write_in_transaction(db, &batches, checkpoint).await
            }
            None => {
                self.summary.write_mode = Some(WriteMode::OrderedBatches { batches: batches.len() });
                self.write_in_batches(db, &batches, checkpoint).await
            }
        };
        match written {
            Ok(written) => {
                self.summary.documents_written = written;
                self.summary.deleted = self.changes.removed;
                Ok(())
            }
            Err(error) => {
                self.summary.documents_written = error.written();
                Err(error)
            }
        }
    }

    async fn write_in_batches(
        &self,
        db: &Database,
        batches: &[&[Write]],
        checkpoint: &impl Checkpoint,
    ) -> Result<usize, MergeError> {
        let mut written = 0;
        for batch in batches {
            self.pass(checkpoint, written).await?;
            written += run_batch(db, &self.collection, batch, None, written).await?;
        }
        Ok(written)
    }

    async fn pass(&self, checkpoint: &impl Checkpoint, written: usize) -> Result<(), MergeError> {
        checkpoint.check().await.map_err(|reason| MergeError::CalledOff {
            collection: self.collection.clone(),
            reason,
            written,
        })
    }

    async fn write_in_transaction(
        &self,
        db: &Database,
        batches: &[&[Write]],
        checkpoint: &impl Checkpoint,
    ) -> Result<usize, MergeError> {
        self.pass(checkpoint, 0).await?;
        let collection = &self.collection;
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
        if let Err(error) = self.pass(checkpoint, 0).await {
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

/// Consecutive writes of one kind, at most `size` statements and (beyond
/// the first statement) `max_bytes` per command.
fn batches(writes: &[Write], size: usize, max_bytes: usize) -> Vec<&[Write]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, write) in writes.iter().enumerate() {
        let length = write.encoded_len();
        let full = index > start
            && (write.command() != writes[start].command() || index - start == size || bytes + length > max_bytes);
        if full {
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
        Write::Update { .. } => "updates",
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
    if let Ok(errors) = reply.get_array("writeErrors") {
        if let Some(Bson::Document(error)) = errors.first() {
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

async fn load_directory(db: &Database, reference: &Reference) -> Result<Directory, StoreError> {
    let collection = &reference.collection;
    let describe = || format!("reading `{collection}` to resolve `{}`", reference.field);
    let users: Vec<Document> = db
        .collection::<Document>(collection)
        .find(doc! {})
        .projection(doc! { "id": 1, "email": 1, "name": 1 })
        .within(Operation::Read, describe)
        .await?
        .try_collect()
        .within(Operation::Read, describe)
        .await?;
    let mut directory = Directory::default();
    for user in users {
        let (Ok(id), Ok(name)) = (user.get_str("id"), user.get_str("name")) else {
            continue;
        };
        let entry = (id.to_owned(), name.to_owned());
        if let Ok(email) = user.get_str("email") {
            directory
                .by_email
                .entry(email.trim().to_lowercase())
                .or_default()
                .push(entry.clone());
        }
        directory.by_name.entry(name.trim().to_owned()).or_default().push(entry);
    }
    Ok(directory)
}

/// How a collection writes dates as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateText {
    /// `2025-01-31`; a value with a time of day is written as a moment.
    DateOnly,
    /// `2025-01-31T00:00:00.000Z`, as JavaScript's `toISOString` writes it.
    Moment,
}

impl DateText {
    fn write(self, date: BsonDateTime) -> String {
        match from_bson_date(date) {
            Some(moment) if self == DateText::DateOnly && moment.time() == chrono::NaiveTime::MIN => {
                moment.format("%Y-%m-%d").to_string()
            }
            Some(moment) => moment.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => date.to_string(),
        }
    }
}

/// A stored ISO date or date-time as milliseconds since the epoch, so that
/// `2025-01-31` and `2025-01-31T00:00:00Z` are the same value.
fn iso_millis(text: &str) -> Option<i64> {
    if let Ok(moment) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(moment.timestamp_millis());
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(crate::mapping::values::midnight_utc(day).timestamp_millis())
}

fn same_key(stored: Option<&Bson>, desired: &Bson) -> bool {
    match (stored, desired) {
        (Some(Bson::String(stored)), Bson::String(desired)) => fold_key_text(stored) == fold_key_text(desired),
        _ => false,
    }
}

/// Whether the stored value already says what the sheet says: numbers are
/// compared by value whatever their BSON type (the app may store 82 as an
/// int), a missing field equals a cleared one.
fn same_value(stored: Option<&Bson>, desired: &Bson) -> bool {
    match (stored, desired) {
        (None | Some(Bson::Null), Bson::Null) => true,
        (Some(stored), desired) => match (number(stored), number(desired)) {
            (Some(left), Some(right)) => left == right,
            _ => match (stored, desired) {
                (Bson::Array(left), Bson::Array(right)) => {
                    left.len() == right.len()
                        && left
                            .iter()
                            .zip(right)
                            .all(|(left, right)| same_value(Some(left), right))
                }
                (Bson::String(left), Bson::String(right)) if left != right => {
                    matches!((iso_millis(left), iso_millis(right)), (Some(left), Some(right)) if left == right)
                }
                _ => stored == desired,
            },
        },
        (None, _) => false,
    }
}

fn number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Double(number) => Some(*number),
        Bson::Int32(number) => Some(f64::from(*number)),
        // Counts stored by the app are far below 2^53.
        Bson::Int64(number) => Some(*number as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_as_the_app_would_read_them() {
        assert!(same_value(Some(&Bson::Int32(82)), &Bson::Double(82.0)));
        assert!(same_value(None, &Bson::Null));
        assert!(!same_value(None, &Bson::String("x".into())));
        assert!(!same_value(Some(&Bson::Int64(3)), &Bson::Double(3.5)));
        let tags = |items: &[&str]| Bson::Array(items.iter().map(|item| Bson::String((*item).into())).collect());
        assert!(same_value(Some(&tags(&["a", "b"])), &tags(&["a", "b"])));
        assert!(!same_value(Some(&tags(&["a", "b"])), &tags(&["b", "a"])));
        assert!(same_key(
            Some(&Bson::String("Acme Corp".into())),
            &Bson::String("acme  corp".into())
        ));
    }

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

    #[test]
    fn dates_keep_their_iso_form() {
        let day = BsonDateTime::from_millis(1_706_659_200_000);
        assert_eq!(DateText::DateOnly.write(day), "2024-01-31");
        assert_eq!(DateText::Moment.write(day), "2024-01-31T00:00:00.000Z");
        let stored = Bson::String("2024-01-31T00:00:00Z".into());
        assert!(same_value(Some(&stored), &Bson::String("2024-01-31".into())));
        assert!(!same_value(Some(&stored), &Bson::String("2024-02-01".into())));
    }
}
