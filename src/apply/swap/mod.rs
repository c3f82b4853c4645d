//! The swap: the source is the whole truth for a collection (a dashboard
//! view), so a changed source replaces the collection all at once.
//!
//! The source is read in passes so that memory holds keys, not records:
//! the survey (done) found problems and duplicate winners; a comparison pass
//! (when the record count alone does not prove a change) decides whether
//! anything changed; the write pass streams the records, each with the id of
//! the stored record it continues (see [`identity`]), into a staging
//! collection that is then renamed over the target (see [`staging`]).
//! An unchanged source rewrites nothing.

pub mod identity;
pub(super) mod staging;

use mongodb::bson::{DateTime as BsonDateTime, Document};

use super::context::{ApplyContext, off_executor};
use super::error::{ApplyError, ensure_same_source};
use super::guards::check_guards;
use crate::mapping::{RecordValues, Winners};
use crate::report::{Changes, Outcome, SyncReport};
use identity::{Continuations, Identities, StoredRecords};
use staging::Staging;
pub use staging::{STAGING_PREFIX, STALE_STAGING_AFTER, SwapError, drop_leftover_staging};

/// Applies `ctx` by a swap, filling `report` with what changed.
pub async fn apply(ctx: &ApplyContext<'_>, report: &mut SyncReport) -> Result<Outcome, ApplyError> {
    if !ctx.dry_run {
        let dropped = drop_leftover_staging(ctx.db, ctx.collection).await?;
        if !dropped.is_empty() {
            tracing::warn!(sync = %report.name, ?dropped, "dropped staging collections left by an interrupted run");
        }
    }
    let collection = ctx.db.collection::<Document>(ctx.collection);
    let stored = StoredRecords::load(&collection, ctx.profile).await?;
    let winners = &ctx.survey.winners;
    let continuations = Continuations::find(&stored, winners, ctx.profile);
    let shrink = Some((stored.count, winners.len()));
    check_guards(ctx.settings.guards, ctx.collection, shrink, ctx.survey, ctx.force)?;
    let counts = stored.paired_fill(&continuations, &ctx.survey.winners, ctx.profile.fields.len());
    let kept = ctx.check_columns(&counts, true, report)?;
    let kept_values = match kept.is_empty() {
        true => None,
        false => Some(StoredRecords::load_values(&collection, ctx.profile, &kept).await?),
    };
    let now = BsonDateTime::now();
    let count_differs = stored.count != winners.len() as u64;
    if ctx.dry_run && stored.count == 0 {
        // Into an empty collection every record is new, with nothing to
        // continue or compare: the survey alone has the count.
        report.changes = Changes {
            inserted: winners.len(),
            ..Changes::default()
        };
        return Ok(Outcome::DryRun);
    }
    if ctx.dry_run || !count_differs {
        let mut identities = Identities::new(ctx.sync_id, ctx.profile, &stored, &continuations, now);
        let rows = ctx.rows.rows()?;
        // Digests are compared on the reading threads.
        let unchanged = |record: &RecordValues<'_>| stored.is_unchanged(&continuations, record, now);
        let found = off_executor(|| {
            ctx.mapper
                .each_winner_values(ctx.survey, rows, &unchanged, |record, unchanged| {
                    identities.account_checked(&record, unchanged);
                })
        })?;
        ensure_same_source(ctx.survey.winners.len(), found)?;
        record_identities(report, &identities);
        if ctx.dry_run {
            return Ok(Outcome::DryRun);
        }
    }
    // Rewriting an identical collection would only churn the server.
    if count_differs || !report.changes.is_empty() {
        let mut identities = Identities::new(ctx.sync_id, ctx.profile, &stored, &continuations, now);
        if let Some(values) = &kept_values {
            identities.keep_values(&kept, values);
        }
        let mut staging = Staging::create(
            ctx.db,
            ctx.collection,
            ctx.profile,
            &report.run_id,
            ctx.settings.batch_size,
        )
        .await?;
        let filled = match ctx.rows.rows() {
            Ok(rows) => fill_and_swap(ctx, &mut staging, &mut identities, ctx.mapper.winners(ctx.survey, rows)).await,
            Err(error) => Err(error.into()),
        };
        match filled {
            Ok(not_carried) => report.notices.extend(not_carried),
            Err(error) => {
                staging.abandon().await;
                return Err(error);
            }
        }
        record_identities(report, &identities);
        report.swapped = true;
    }
    Ok(report.applied_outcome())
}

fn record_identities(report: &mut SyncReport, identities: &Identities<'_>) {
    report.changes = identities.changes();
    report.moves = identities.moves();
    report.ambiguous = identities.ambiguous();
}

/// The write pass: every winning record into staging, then the swap, unless
/// the source no longer yields exactly the records the survey planned.
/// Returns what the server did not carry over through the swap.
async fn fill_and_swap(
    ctx: &ApplyContext<'_>,
    staging: &mut Staging,
    identities: &mut Identities<'_>,
    mut winners: Winners<'_, '_>,
) -> Result<Vec<String>, ApplyError> {
    let mut found = 0;
    loop {
        // A batch is read and mapped off the executor, then written.
        let batch = off_executor(|| -> Result<Vec<(usize, Document)>, ApplyError> {
            let mut batch = Vec::with_capacity(staging.batch_size());
            while batch.len() < staging.batch_size() {
                let Some(record) = winners.next_record() else {
                    break;
                };
                if let Some(reason) = ctx.checkpoint.called_off() {
                    return Err(ApplyError::CalledOff(reason.to_owned()));
                }
                let record = record?;
                batch.push((record.row, identities.assign(record)));
            }
            Ok(batch)
        })?;
        if batch.is_empty() {
            break;
        }
        found += batch.len();
        for (row, document) in batch {
            staging.push(row, document).await?;
        }
    }
    ensure_same_source(ctx.survey.winners.len(), found)?;
    staging.prepare().await?;
    pause_before_swap().await;
    ctx.checkpoint.check().await.map_err(ApplyError::CalledOff)?;
    Ok(staging.swap_in().await?)
}

/// Test builds only: `SHEETSYNC_TEST_PAUSE_BEFORE_SWAP_MS` holds every swap
/// back that long, so that tests of two writers are deterministic instead of
/// racing. Release builds ignore it.
async fn pause_before_swap() {
    #[cfg(debug_assertions)]
    if let Some(millis) = std::env::var("SHEETSYNC_TEST_PAUSE_BEFORE_SWAP_MS")
        .ok()
        .and_then(|millis| millis.parse().ok())
    {
        tracing::info!(millis, "test pause before the swap");
        tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    }
}
