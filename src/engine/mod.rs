//! The engine: one sync cycle end to end. It selects the syncs, fetches
//! their sources (each spreadsheet once), surveys each source, hands the
//! result to the apply step its target's profile names (swap or merge, whose
//! insides it does not know), and keeps the books: the dashboard's
//! `data_metadata` and the run history.

mod databases;
mod exclusive;
mod indexes;

use std::time::Instant;

use chrono::Utc;
use mongodb::Database;
use mongodb::bson::DateTime as BsonDateTime;
use uuid::Uuid;

use crate::apply::{self, Abort, ApplyContext, ApplyError, ApplySettings, Checkpoint, GuardLimits, off_executor};
use crate::config::{Config, DeltaSetting, FullCompare};
use crate::mapping::{self, HeaderColumn, SurveyError};
use crate::progress::{Phase, Progress};
use crate::report::{Outcome, SyncReport, Trigger};
use crate::source::{SourceError, SourceRows, Sources};
use crate::store::lease::Leases;
use crate::store::{StoreError, metadata, runs};
use crate::syncs::{self, Place, Resolution, SyncPlan, SyncTarget, ViewsError};
use databases::Databases;

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Read, map and compare, but write nothing.
    pub dry_run: bool,
    /// Apply even when the shrink guard would refuse.
    pub force: bool,
    /// The run id to record when exactly one view is synced (the daemon
    /// hands ids out before the run starts); otherwise each view gets a
    /// fresh one.
    pub run_id: Option<Uuid>,
    /// Lets the caller call the sync off before its swap (or a merge's next
    /// batch).
    pub abort: Abort,
    /// The leases the caller holds on the views: each is verified and
    /// extended immediately before the view's swap, and a view whose lease
    /// was lost is never swapped.
    pub lease: Option<Leases>,
    /// Where the run tells how far it has come (the CLI's progress line,
    /// the daemon's log and `/status` read it).
    pub progress: Progress,
}

/// Why one sync failed; the report carries its message.
#[derive(Debug, thiserror::Error)]
enum SyncFailure {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Survey(#[from] SurveyError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A failure that stops the whole cycle before any view is synced.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Views(#[from] ViewsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a sync cycle needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    /// The sales database: views, leases, and the views' collections.
    pub db: Database,
    pub config: Config,
    pub sources: Sources,
    databases: Databases,
}

impl Engine {
    pub fn new(db: Database, config: Config, sources: Sources) -> Engine {
        Engine {
            databases: Databases::new(db.clone(), &config.mongo_url),
            db,
            config,
            sources,
        }
    }

    /// The database a target's collection lives in.
    pub async fn database(&self, place: &Place) -> Result<Database, StoreError> {
        self.databases.of(place).await
    }

    /// Where a plan's runs are recorded (see [`Databases::home_of`]).
    pub async fn home_of(&self, plan: &SyncPlan) -> Result<Database, StoreError> {
        self.databases.home_of(plan).await
    }

    /// Creates every schema index, for the given views' collections too,
    /// and every configured sync's target and application indexes; returns
    /// the collections touched and, apart, the indexes left as they were.
    pub async fn ensure_indexes(&self, plans: &[SyncPlan]) -> Result<(Vec<String>, Vec<String>), StoreError> {
        indexes::ensure_all(&self.databases, &self.config.targets.sales_records(), plans).await
    }

    /// The header of the sync's last successful run; none when it cannot be
    /// read (the column guard then names fields without their old labels).
    async fn previous_header(&self, plan: &SyncPlan) -> Option<Vec<HeaderColumn>> {
        let home = self.home_of(plan).await.ok()?;
        match runs::last_header(&home, &plan.name).await {
            Ok(header) => header,
            Err(error) => {
                tracing::warn!(sync = %plan.name, %error, "could not read the last run's header");
                None
            }
        }
    }

    /// The run's history entry, in the sync's home database.
    async fn record_run(&self, plan: &SyncPlan, report: &SyncReport) -> Result<(), StoreError> {
        runs::record(&self.home_of(plan).await?, report).await
    }

    /// Syncs the named views (all when `names` is empty): views are re-read,
    /// every source fetched (one failing source does not stop the others),
    /// and each view applied on its own. Master views are never written.
    pub async fn sync(
        &self,
        names: &[String],
        trigger: Trigger,
        options: SyncOptions,
    ) -> Result<Vec<SyncReport>, SyncError> {
        let all_plans = syncs::load_plans(&self.db, &self.config.syncs_config()).await?;
        let plans = syncs::select(all_plans.clone(), names)?;
        let plans: Vec<SyncPlan> = plans.into_iter().filter(|plan| !plan.is_master()).collect();
        if !options.dry_run {
            indexes::ensure_leniently(&self.db, &self.config.targets.sales_records(), &plans).await;
        }
        let targets: Vec<&SyncTarget> = plans.iter().filter_map(SyncPlan::target).collect();
        let specs: Vec<_> = targets.iter().map(|target| &target.source).collect();
        // The other views' sources, so a spreadsheet read by several views
        // can be fetched once for all of them (see Sources::fetch_all_with).
        let companions: Vec<_> = all_plans
            .iter()
            .filter(|plan| !plans.iter().any(|selected| selected.name == plan.name))
            .filter_map(SyncPlan::target)
            .map(|target| &target.source)
            .collect();
        let reading: Vec<&str> = plans
            .iter()
            .filter(|plan| plan.target().is_some())
            .map(|plan| plan.name.as_str())
            .collect();
        options.progress.enter(&reading.join(", "), Phase::Reading, None);
        let mut tables = self.sources.fetch_all_with(&specs, &companions).await.into_iter();
        let run_id = options.run_id.filter(|_| plans.len() == 1);

        let mut reports = Vec::with_capacity(plans.len());
        for plan in &plans {
            let table = match &plan.resolution {
                Resolution::Sync(_) => tables.next(),
                _ => None,
            };
            let report = self.sync_one(plan, table, trigger, &options, run_id).await;
            log_summary(&report);
            if !options.dry_run
                && let Err(error) = self.record_run(plan, &report).await
            {
                tracing::error!(view = %report.name, %error, "could not record the run history");
            }
            reports.push(report);
        }
        options.progress.finish();
        Ok(reports)
    }

    async fn sync_one(
        &self,
        plan: &SyncPlan,
        fetched: Option<Result<SourceRows, SourceError>>,
        trigger: Trigger,
        options: &SyncOptions,
        run_id: Option<Uuid>,
    ) -> SyncReport {
        let clock = Instant::now();
        let mut report = new_report(plan, trigger, run_id);
        if let Some(notice) = options
            .lease
            .as_ref()
            .and_then(|leases| leases.take_over_notice(&plan.id))
        {
            report.notices.push(notice);
        }
        let outcome = match (&plan.resolution, fetched) {
            (Resolution::Sync(target), Some(fetched)) => self.run(plan, target, fetched, options, &mut report).await,
            (Resolution::Invalid(reason), _) => Err(SyncFailure::Invalid(reason.clone())),
            _ => Err(SyncFailure::Invalid("view has no source to read".to_owned())),
        };
        match outcome {
            Ok(outcome) => report.outcome = outcome,
            Err(error) => {
                report.outcome = Outcome::Failed;
                report.error = Some(error.to_string());
            }
        }
        report.finished_at = Utc::now();
        report.duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        report
    }

    /// Surveys the source, applies the survey as the target's profile says
    /// (swap or merge), and stamps `data_metadata` once the data is in place.
    async fn run(
        &self,
        plan: &SyncPlan,
        target: &SyncTarget,
        fetched: Result<SourceRows, SourceError>,
        options: &SyncOptions,
        report: &mut SyncReport,
    ) -> Result<Outcome, SyncFailure> {
        let fetched = fetched?;
        let profile = &*target.profile;
        report.tab_gid = fetched.tab_gid();
        options.progress.enter(&plan.name, Phase::Reading, None);
        if !options.dry_run {
            let digest = off_executor(|| source_digest(target, &fetched))?;
            report.source_digest = Some(digest);
            if self.skips(plan, target, report.trigger, options, report).await {
                return Ok(Outcome::Unchanged);
            }
        }
        let started = Instant::now();
        let (mapper, survey) =
            off_executor(|| mapping::survey(profile, &fetched, &target.read_settings, &options.progress))?;
        tracing::debug!(
            sync = %plan.name,
            passes = survey.survey_passes,
            rows = survey.rows_read,
            threading = ?survey.threading,
            ms = started.elapsed().as_millis() as u64,
            "surveyed"
        );
        record_survey(report, &survey);
        // The target's own database: a view's is the main one, a `[[syncs]]`
        // entry's the one it names.
        let db = self.database(&target.place).await?;
        // A configured sync's application indexes, and a merge target's
        // (a view whose profile the config made a merge), as before a merge.
        if !options.dry_run && (plan.is_configured() || profile.merge_rules().is_some()) {
            indexes::ensure_app_leniently(&db, target, report).await;
        }
        let previous_header = self.previous_header(plan).await;
        let (news, changes) = mapping::header_changes(
            profile,
            survey.header_row,
            &survey.header,
            previous_header.as_deref(),
            &target.ignore_columns,
        );
        report.warnings.splice(0..0, news);
        report.notices.extend(changes);
        let context = ApplyContext {
            db: &db,
            collection: &target.collection,
            profile,
            sync_id: &plan.id,
            mapper: &mapper,
            survey: &survey,
            rows: &fetched,
            settings: ApplySettings {
                guards: GuardLimits {
                    min_ratio: self.config.sync.min_ratio,
                    max_rejected_ratio: self.config.sync.max_rejected_ratio,
                },
                batch_size: self.config.sync.insert_batch_size,
                insert_workers: self.config.insert_workers,
                transaction_max: Some(self.config.sync.merge_transaction_max),
                held_writes: self.config.sync.merge_held_writes,
                delta_max: (self.config.sync.delta == DeltaSetting::Transaction).then_some(self.config.sync.delta_max),
            },
            dry_run: options.dry_run,
            force: options.force,
            previous_header: previous_header.as_deref(),
            on_lost_column: target.on_lost_column,
            progress: &options.progress,
            checkpoint: Checkpoint {
                abort: &options.abort,
                lease: options.lease.as_ref().filter(|_| !plan.id.is_empty()),
                sync_id: &plan.id,
            },
        };
        let outcome = match profile.merge_rules() {
            Some(rules) => apply::merge::apply(&context, rules, report).await?,
            None => apply::swap::apply(&context, report).await?,
        };
        if outcome != Outcome::DryRun {
            self.record_last_update(plan, target, survey.winners.len()).await?;
            report.target_mark = runs::collection_mark(&db, &target.collection).await.ok();
        }
        Ok(outcome)
    }

    /// Whether this run can stop here: its source is identical to the one
    /// the last applied run read (same rows, same recipe), and the target
    /// has the identity and count that run left. Only the daemon's
    /// refreshes (a change, an admin, a signal) skip, unless `[watch]
    /// full_compare = "always"`: scheduled runs compare in full, so that a
    /// document another writer changed in place is put right at the next
    /// one, and so does `sheetsync sync`. A skipped run keeps
    /// the last run's counts and stamps `data_metadata`.
    async fn skips(
        &self,
        plan: &SyncPlan,
        target: &SyncTarget,
        trigger: Trigger,
        options: &SyncOptions,
        report: &mut SyncReport,
    ) -> bool {
        // Only the daemon's refreshes skip; `sheetsync sync` by hand, the
        // schedule and the catch-up compare in full.
        let refresh = matches!(trigger, Trigger::Change | Trigger::Admin | Trigger::Signal);
        let full = match self.config.watch.full_compare {
            FullCompare::Always => true,
            FullCompare::Scheduled => !refresh,
        };
        if full || options.force {
            return false;
        }
        let Ok(home) = self.home_of(plan).await else {
            return false;
        };
        let Ok(Some(last)) = runs::last_applied(&home, &plan.name).await else {
            return false;
        };
        if last.get_str("source_digest").ok() != report.source_digest.as_deref() {
            return false;
        }
        let Ok(db) = self.database(&target.place).await else {
            return false;
        };
        let Ok(mark) = runs::collection_mark(&db, &target.collection).await else {
            return false;
        };
        if last.get_str("target_mark") != Ok(mark.as_str()) {
            return false;
        }
        let records = usize::try_from(runs::stored_count(&last, "records_written")).unwrap_or_default();
        report.records_written = records;
        report.target_mark = Some(mark);
        report
            .notices
            .push("unchanged (source identical): the rows are those the last applied run read; nothing was compared or written".to_owned());
        if let Err(error) = self.record_last_update(plan, target, records).await {
            tracing::warn!(sync = %plan.name, %error, "could not stamp data_metadata for an unchanged source");
        }
        true
    }

    /// The view's `data_metadata` entry, stamped once the data is in place.
    /// Tried twice: after a swap, failing here leaves the dashboard showing
    /// the previous refresh time for new data.
    async fn record_last_update(&self, plan: &SyncPlan, target: &SyncTarget, count: usize) -> Result<(), StoreError> {
        // `data_metadata` is the sales dashboard's; other applications have
        // their run history in their own `sync_runs`.
        if plan.is_configured() {
            return Ok(());
        }
        let record = || {
            let source_type = target.source.source_type();
            metadata::record_last_update(
                &self.db,
                &plan.id,
                source_type,
                &target.source_url,
                count,
                BsonDateTime::now(),
            )
        };
        match record().await {
            Ok(()) => Ok(()),
            Err(error) => {
                tracing::warn!(view = %plan.name, %error, "recording data_metadata failed; trying once more");
                record().await
            }
        }
    }
}

/// The digest of a run's input: the source's rows, and the recipe they
/// are read and written with (sheetsync's version, the target and its
/// profile, the reading settings), so that a changed configuration is never
/// taken for an identical source.
fn source_digest(target: &SyncTarget, fetched: &SourceRows) -> Result<String, SourceError> {
    let recipe = format!(
        "{} {:?} {:?} {:?} {:?} {}",
        env!("CARGO_PKG_VERSION"),
        target.profile,
        target.read_settings,
        target.ignore_columns,
        target.on_lost_column,
        target.qualified_collection()
    );
    fetched.digest(&recipe)
}

/// A report of `plan`'s run, with its target as far as it is known.
fn new_report(plan: &SyncPlan, trigger: Trigger, run_id: Option<Uuid>) -> SyncReport {
    let mut report = SyncReport::new(&plan.name, &plan.id, trigger, run_id);
    if let Some(target) = plan.target() {
        report.collection = Some(target.qualified_collection());
        report.source = Some(target.source.describe());
        report.source_type = Some(target.source.source_type());
    }
    report
}

/// What the survey found, in the report.
fn record_survey(report: &mut SyncReport, survey: &mapping::Survey) {
    report.header_row = Some(survey.header_row);
    report.rows_read = survey.rows_read;
    report.blank_rows = survey.blank_rows;
    report.duplicates_merged = survey.duplicates.len();
    report.duplicates = survey.duplicates.clone();
    report.rejected = survey.rejected.clone();
    report.warnings = survey.warnings.clone();
    report.unknown_columns = survey.unknown_columns.clone();
    report.header = survey.header.clone();
    report.date_order = survey.date_order.clone();
    report.notices.extend(survey.notices.iter().cloned());
    report.records_written = survey.winners.len();
}

/// The one line every run logs: view, trigger, outcome, counts, duration.
fn log_summary(report: &SyncReport) {
    let outcome = report.outcome.as_str();
    let trigger = report.trigger.as_str();
    let changes = report.changes;
    if report.succeeded() {
        tracing::info!(
            view = %report.name, run_id = %report.run_id, trigger, outcome, rows = report.rows_read,
            records = report.records_written, merged = report.duplicates_merged, rejected = report.rejected.len(),
            warnings = report.warnings.len(), inserted = changes.inserted, updated = changes.updated,
            removed = changes.removed, moved = changes.moved, duration_ms = report.duration_ms, "sync finished"
        );
    } else {
        tracing::warn!(
            view = %report.name, run_id = %report.run_id, trigger, outcome, rows = report.rows_read,
            records = report.records_written, rejected = report.rejected.len(),
            error = report.error.as_deref().unwrap_or(""), duration_ms = report.duration_ms, "sync failed"
        );
    }
}
