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

mod compare;
mod diff;
pub(super) mod error;
mod fingerprint;
pub(super) mod write;

pub use error::MergeError;

use super::context::{ApplyContext, off_executor};
use super::error::{ApplyError, ensure_same_source};
use super::guards::check_guards;
use crate::mapping::profile::{Blank, MergeRules, OnMissing};
use crate::progress::Phase;
use crate::report::WriteMode;
use crate::report::{Outcome, SyncReport};
use crate::store::{Operation, StoreError, Within};
use diff::Merge;
use write::{WriteStream, Writer};

/// Applies `ctx` by a merge under `rules`: the source's records compared
/// with the documents they continue, and only the differences written.
pub async fn apply(ctx: &ApplyContext<'_>, rules: &MergeRules, report: &mut SyncReport) -> Result<Outcome, ApplyError> {
    let columns = ctx.mapper.column_headers();
    // Writing while comparing needs a thread that may block on the writes:
    // a multi-threaded runtime's (see `write_while_comparing`).
    let held_max = match multi_threaded() {
        true => ctx.settings.held_writes,
        false => usize::MAX,
    };
    ctx.progress
        .next(Phase::Comparing, Some(ctx.survey.winners.len() as u64));
    let mut merge = Merge::load(ctx.db, ctx.collection, ctx.profile, rules, columns, held_max).await?;
    // The guard weighs the documents the source's records continue (others
    // the app keeps are not the sheet's to fill).
    let counts = merge.paired_fill(&ctx.survey.winners);
    // A blank cell clears a stored value only under `blank = "clear"`.
    let kept = ctx.check_columns(&counts, rules.blank == Blank::Clear, report)?;
    merge.keep_stored(kept);
    let rows = ctx.rows.rows()?;
    let found = off_executor(|| {
        ctx.mapper.each_winner_record(ctx.survey, rows, |record| {
            merge.add(record);
            ctx.progress.add(1);
        })
    })?;
    ensure_same_source(ctx.survey.winners.len(), found)?;
    merge.finish();
    // Only deletions can shrink a merged collection; new documents do not
    // make up for the ones deleted (other collections point at them).
    let shrink = (rules.on_missing == OnMissing::Delete).then(|| {
        let kept = merge.stored_count() - merge.changes.removed;
        (merge.stored_count() as u64, kept)
    });
    check_guards(ctx.settings.guards, ctx.collection, shrink, ctx.survey, ctx.force)?;
    report.warnings.append(&mut merge.warnings);
    report.warnings.sort_by_key(|warning| warning.row);
    report.notices.append(&mut merge.notices);
    report.changes = merge.changes;
    if ctx.dry_run {
        report.merge = Some(merge.summary);
        return Ok(Outcome::DryRun);
    }
    let transaction_max = match supports_transactions(ctx.db).await? {
        true => ctx.settings.transaction_max,
        false => None,
    };
    let writer = Writer {
        db: ctx.db,
        collection: ctx.collection,
        checkpoint: &ctx.checkpoint,
    };
    let (mode, written) = if merge.overflowed() {
        ctx.progress.next(Phase::Writing, Some(ctx.survey.winners.len() as u64));
        write_while_comparing(ctx, &mut merge, &writer).await?
    } else {
        let writes = merge.take_writes();
        ctx.progress.next(Phase::Writing, Some(writes.len() as u64));
        let written = writer.write(&writes, ctx.settings.batch_size, transaction_max).await;
        ctx.progress.add(writes.len() as u64);
        written
    };
    let summary = &mut merge.summary;
    summary.write_mode = Some(mode);
    summary.documents_written = match &written {
        Ok(written) => *written,
        Err(error) => error.written(),
    };
    if written.is_ok() {
        summary.deleted = merge.changes.removed;
    }
    report.merge = Some(merge.summary);
    written?;
    Ok(report.applied_outcome())
}

/// A change set too large to hold (more than `held_writes`), worked out
/// again while it is written: a second pass over the rows, each batch sent
/// as soon as it is full. Nothing was written between the passes, so they
/// decide the same; memory holds a batch.
async fn write_while_comparing(
    ctx: &ApplyContext<'_>,
    merge: &mut Merge<'_>,
    writer: &Writer<'_>,
) -> Result<(WriteMode, Result<usize, MergeError>), ApplyError> {
    merge.restart();
    let mut stream = WriteStream::new(writer, ctx.settings.batch_size);
    let runtime = tokio::runtime::Handle::current();
    let rows = ctx.rows.rows()?;
    let found = off_executor(|| {
        ctx.mapper.each_winner_record(ctx.survey, rows, |record| {
            merge.add(record);
            ctx.progress.add(1);
            for write in merge.drain_writes() {
                if stream.full_before(&write) {
                    // Off the executor (block_in_place): waiting here holds
                    // up no other task.
                    runtime.block_on(stream.flush());
                }
                stream.push(write);
            }
        })
    })?;
    ensure_same_source(ctx.survey.winners.len(), found)?;
    if merge.list_missing() {
        for write in merge.deletions() {
            if stream.full_before(&write) {
                stream.flush().await;
            }
            stream.push(write);
        }
    }
    // The first pass's warnings are the report's already.
    merge.warnings.clear();
    Ok(stream.finish().await)
}

fn multi_threaded() -> bool {
    matches!(
        tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()),
        Ok(tokio::runtime::RuntimeFlavor::MultiThread)
    )
}

/// Whether the server runs transactions: a replica-set member or a mongos.
pub(super) async fn supports_transactions(db: &mongodb::Database) -> Result<bool, StoreError> {
    let hello = db
        .run_command(mongodb::bson::doc! { "hello": 1 })
        .within(Operation::Read, || {
            "asking the server whether it has transactions".to_owned()
        })
        .await?;
    Ok(hello.get_str("setName").is_ok() || hello.get_str("msg") == Ok("isdbgrid"))
}
