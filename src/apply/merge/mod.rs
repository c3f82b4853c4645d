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
mod write;

use super::context::{ApplyContext, off_executor};
use super::error::ApplyError;
use super::guards::check_guards;
use crate::mapping::profile::{MergeRules, OnMissing};
use crate::report::{Outcome, SyncReport};
use crate::store::{Operation, StoreError, Within};
use diff::Merge;

/// Applies `ctx` by a merge under `rules`: the source's records compared
/// with the documents they continue, and only the differences written.
pub async fn apply(ctx: &ApplyContext<'_>, rules: &MergeRules, report: &mut SyncReport) -> Result<Outcome, ApplyError> {
    let columns = ctx.mapper.column_headers();
    let mut merge = Merge::load(ctx.db, ctx.collection, ctx.profile, rules, columns).await?;
    let rows = ctx.rows.rows()?;
    let found = off_executor(|| {
        ctx.mapper
            .each_winner_record(ctx.survey, rows, |record| merge.add(record))
    })?;
    ctx.ensure_same_source(found)?;
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
    let written = merge
        .write(ctx.db, ctx.settings.batch_size, transaction_max, &ctx.checkpoint)
        .await;
    report.merge = Some(merge.summary.clone());
    written?;
    Ok(report.applied_outcome())
}

/// Whether the server runs transactions: a replica-set member or a mongos.
async fn supports_transactions(db: &mongodb::Database) -> Result<bool, StoreError> {
    let hello = db
        .run_command(mongodb::bson::doc! { "hello": 1 })
        .within(Operation::Read, || {
            "asking the server whether it has transactions".to_owned()
        })
        .await?;
    Ok(hello.get_str("setName").is_ok() || hello.get_str("msg") == Ok("isdbgrid"))
}

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
