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

use mongodb::bson::{DateTime as BsonDateTime, Document, doc};

use super::context::{ApplyContext, off_executor};
use super::error::{ApplyError, ensure_same_source};
use super::guards::check_guards;
use super::merge::write::{Write, Writer};
use crate::mapping::{RecordValues, Winners};
use crate::progress::Phase;
use crate::report::{Changes, Outcome, SyncReport};
use identity::{Continuations, Identities, StoredRecords};
use staging::Staging;
pub use staging::{STAGING_PREFIX, STALE_STAGING_AFTER, SwapError, drop_leftover_staging, sync_tag};

/// Applies `ctx` by a swap, filling `report` with what changed.
pub async fn apply(ctx: &ApplyContext<'_>, report: &mut SyncReport) -> Result<Outcome, ApplyError> {
    if !ctx.dry_run {
        let leased = ctx.checkpoint.lease.map(|_| ctx.sync_id);
        let dropped = drop_leftover_staging(ctx.db, ctx.collection, leased).await?;
        if !dropped.is_empty() {
            tracing::warn!(sync = %report.name, ?dropped, "dropped staging collections left by an interrupted run");
            report.notices.push(format!(
                "dropped {} staging collection(s) left by an interrupted run: {}",
                dropped.len(),
                dropped.join(", ")
            ));
        }
    }
    let collection = ctx.db.collection::<Document>(ctx.collection);
    let winners = &ctx.survey.winners;
    ctx.progress.next(Phase::Comparing, Some(winners.len() as u64));
    let stored = StoredRecords::load(&collection, ctx.profile).await?;
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
    // A small change set may be written in place, in one transaction:
    // only where the server has them and every stored document has an id
    // of its own to be found by.
    let delta_max = match ctx.settings.delta_max {
        Some(max) if !ctx.dry_run && stored.count > 0 && stored.all_have_own_ids() => {
            match super::merge::supports_transactions(ctx.db).await? {
                true => Some(max),
                false => None,
            }
        }
        _ => None,
    };
    let count_gap = stored.count.abs_diff(winners.len() as u64);
    let compare = ctx.dry_run || !count_differs || delta_max.is_some_and(|max| count_gap <= max as u64);
    if ctx.dry_run && stored.count == 0 {
        // Into an empty collection every record is new, with nothing to
        // continue or compare: the survey alone has the count.
        report.changes = Changes {
            inserted: winners.len(),
            ..Changes::default()
        };
        return Ok(Outcome::DryRun);
    }
    if compare {
        let mut identities = Identities::new(ctx.sync_id, ctx.profile, &stored, &continuations, now);
        let rows = ctx.rows.rows()?;
        // Digests are compared on the reading threads.
        let unchanged = |record: &RecordValues<'_>| stored.is_unchanged(&continuations, record, now);
        let found = off_executor(|| {
            ctx.mapper
                .each_winner_values(ctx.survey, rows, &unchanged, |record, unchanged| {
                    identities.account_checked(&record, unchanged);
                    ctx.progress.add(1);
                })
        })?;
        ensure_same_source(ctx.survey.winners.len(), found)?;
        record_identities(report, &identities);
        if ctx.dry_run {
            return Ok(Outcome::DryRun);
        }
    }
    let in_place = delta_max.is_some_and(|max| {
        let changed = report.changes.written();
        let size = (stored.count as usize).max(winners.len());
        compare && changed > 0 && changed <= max && changed * 10 <= size
    });
    if in_place {
        let mut identities = Identities::new(ctx.sync_id, ctx.profile, &stored, &continuations, now);
        if let Some(values) = &kept_values {
            identities.keep_values(&kept, values);
        }
        write_in_place(ctx, &stored, &mut identities).await?;
        record_identities(report, &identities);
        report.write_path = Some("in_place");
        return Ok(report.applied_outcome());
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
            (ctx.sync_id, &report.run_id),
            (ctx.settings.batch_size, ctx.settings.insert_workers),
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
        report.write_path = Some("swap");
    }
    Ok(report.applied_outcome())
}

/// A small change set written where it stands, in one transaction: each
/// new or changed record replaces the document with its id (or is added),
/// each stored document no record continues is deleted, so that readers see
/// the old view or the new one, never a mix, and nothing else is touched.
/// The documents are those a swap would have written, ids included.
async fn write_in_place(
    ctx: &ApplyContext<'_>,
    stored: &StoredRecords,
    identities: &mut Identities<'_>,
) -> Result<(), ApplyError> {
    let rows = ctx.rows.rows()?;
    let mut winners = ctx.mapper.winners(ctx.survey, rows);
    let (writes, found) = off_executor(|| -> Result<(Vec<Write>, usize), ApplyError> {
        let mut writes = Vec::new();
        let mut kept_ids = std::collections::HashSet::new();
        let mut found = 0;
        while let Some(record) = winners.next_record() {
            let record = record?;
            found += 1;
            let unchanged_before = identities.changes().unchanged;
            let row = record.row;
            let document = identities.assign(record);
            let id = document.get_str("id").unwrap_or_default().to_owned();
            kept_ids.insert(id.clone());
            if identities.changes().unchanged == unchanged_before {
                writes.push(Write::Replace {
                    row,
                    filter: doc! { "id": id },
                    replacement: document,
                });
            }
        }
        for id in stored.id_texts().filter(|id| !kept_ids.contains(id)) {
            writes.push(Write::Delete {
                filter: doc! { "id": id },
            });
        }
        Ok((writes, found))
    })?;
    ensure_same_source(ctx.survey.winners.len(), found)?;
    ctx.progress.next(Phase::Writing, Some(writes.len() as u64));
    let writer = Writer {
        db: ctx.db,
        collection: ctx.collection,
        checkpoint: &ctx.checkpoint,
    };
    let (_, written) = writer.write(&writes, ctx.settings.batch_size, Some(writes.len())).await;
    written?;
    ctx.progress.add(writes.len() as u64);
    Ok(())
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
    ctx.progress.next(Phase::Writing, Some(ctx.survey.winners.len() as u64));
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
        ctx.progress.add(batch.len() as u64);
        for (row, document) in batch {
            staging.push(row, document).await?;
        }
    }
    ensure_same_source(ctx.survey.winners.len(), found)?;
    ctx.progress.next(Phase::Swapping, None);
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
