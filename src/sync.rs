//! One sync cycle: views -> sources -> mapping -> apply -> bookkeeping, and
//! the report it produces.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use chrono::Utc;
use mongodb::Database;
use mongodb::bson::{DateTime as BsonDateTime, Document};
use uuid::Uuid;

use crate::apply;
use crate::apply::merge::{Merge, MergeError};
use crate::config::Config;
use crate::identity::{self, Continuations, Identities};
use crate::mapping;
use crate::mapping::profile::{MergeRules, OnMissing};
pub use crate::report::{Changes, Outcome, Trigger, ViewReport, render_text};
use crate::source::{Fetched, SourceError, Sources};
use crate::store::lease::{self, Leases};
use crate::store::{Operation, StoreError, Within, indexes, metadata, runs};
use crate::syncs::{self, Place, Resolution, SyncTarget, ViewPlan, ViewsError};

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
    /// Lets the caller call the sync off before its swap.
    pub abort: Abort,
    /// The leases the caller holds on the views: each is verified and
    /// extended immediately before the view's swap, and a view whose lease
    /// was lost is never swapped.
    pub lease: Option<Leases>,
}

/// How often `sync_exclusive` looks again at a lease another process holds.
const LEASE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Calls a running sync off (the daemon's shutdown grace ran out, or its
/// lease on the view was lost). The sync checks it at every record it writes
/// and just before the swap, and then stops without swapping: the previous
/// data stands. Once the swap was sent it is too late, and the sync
/// finishes its bookkeeping instead.
#[derive(Debug, Clone, Default)]
pub struct Abort(Arc<OnceLock<String>>);

impl Abort {
    /// Asks the sync to stop; the first reason given is kept.
    pub fn abort(&self, reason: impl Into<String>) {
        let _ = self.0.set(reason.into());
    }

    fn check(&self) -> Result<(), ViewError> {
        match self.0.get() {
            Some(reason) => Err(ViewError::Aborted(reason.clone())),
            None => Ok(()),
        }
    }
}

impl ViewReport {
    fn new(plan: &ViewPlan, trigger: Trigger, run_id: Option<Uuid>) -> ViewReport {
        let target = plan.target();
        let now = Utc::now();
        ViewReport {
            run_id: run_id.unwrap_or_else(Uuid::new_v4).simple().to_string(),
            view: plan.name.clone(),
            view_id: plan.view_id.clone(),
            trigger,
            collection: target.map(SyncTarget::qualified_collection),
            source: target.map(|target| target.source.describe()),
            source_type: target.map(|target| target.source.source_type()),
            tab_gid: None,
            outcome: Outcome::Failed,
            error: None,
            header_row: None,
            rows_read: 0,
            blank_rows: 0,
            records_written: 0,
            duplicates_merged: 0,
            duplicates: Vec::new(),
            rejected: Vec::new(),
            warnings: Vec::new(),
            unknown_columns: Vec::new(),
            date_order: None,
            notices: Vec::new(),
            changes: Changes::default(),
            moves: Vec::new(),
            ambiguous: Vec::new(),
            merge: None,
            swapped: false,
            started_at: now,
            finished_at: now,
            duration_ms: 0,
        }
    }

    fn record_identities(&mut self, identities: &Identities<'_>) {
        self.changes = identities.changes();
        self.moves = identities.moves();
        self.ambiguous = identities.ambiguous();
    }
}

/// Why a view failed.
#[derive(Debug, thiserror::Error)]
enum ViewError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Mapping(#[from] mapping::SurveyError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error(
        "the source changed while it was being read ({planned} records planned, {found} read on the next pass); \
         nothing was written: sync again"
    )]
    SourceChanged { planned: usize, found: usize },
    #[error("called off before the swap ({0}); nothing was written, the previous data stands")]
    Aborted(String),
}

/// A failure that stops the whole cycle before any view is synced.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Views(#[from] ViewsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Success, or success with warnings when rows were rejected or values
/// unreadable.
fn outcome_of(report: &ViewReport) -> Outcome {
    if report.rejected.is_empty() && report.warnings.is_empty() {
        Outcome::Success
    } else {
        Outcome::SuccessWithWarnings
    }
}

/// Whether the server runs transactions: a replica-set member or a mongos.
async fn supports_transactions(db: &Database) -> Result<bool, StoreError> {
    let hello = db
        .run_command(mongodb::bson::doc! { "hello": 1 })
        .within(Operation::Read, || {
            "asking the server whether it has transactions".to_owned()
        })
        .await?;
    Ok(hello.get_str("setName").is_ok() || hello.get_str("msg") == Ok("isdbgrid"))
}

/// What a sync cycle needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct Syncer {
    /// The sales database: views, leases, and the views' collections.
    pub db: Database,
    pub config: Config,
    pub sources: Sources,
    servers: Servers,
}

/// Clients of the other applications' servers (`[[syncs]]` with their own
/// `mongo_url_env`), made once per URL and shared by every run.
#[derive(Clone, Default)]
struct Servers(Arc<std::sync::Mutex<HashMap<String, mongodb::Client>>>);

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Servers")
    }
}

impl Syncer {
    pub fn new(db: Database, config: Config, sources: Sources) -> Syncer {
        Syncer {
            db,
            config,
            sources,
            servers: Servers::default(),
        }
    }

    /// The database a target's collection lives in.
    pub async fn database(&self, place: &Place) -> Result<Database, StoreError> {
        let (database, url) = match place {
            Place::Main => return Ok(self.db.clone()),
            Place::Other { database, mongo_url } => (database, mongo_url),
        };
        if *url == self.config.mongo_url {
            return Ok(self.db.client().database(database));
        }
        let known = lock(&self.servers.0).get(url).cloned();
        let client = match known {
            Some(client) => client,
            None => {
                let client = crate::store::client_for_url(url, "the sync's mongo_url_env").await?;
                lock(&self.servers.0).entry(url.clone()).or_insert(client).clone()
            }
        };
        Ok(client.database(database))
    }

    /// Where a plan's runs are recorded: its target's database (a view's,
    /// or a sync whose target cannot be resolved: the main one).
    pub async fn home_of(&self, plan: &ViewPlan) -> Result<Database, StoreError> {
        match plan.target() {
            Some(target) => self.database(&target.place).await,
            None => Ok(self.db.clone()),
        }
    }

    /// Syncs the named views (all when `names` is empty): views are re-read,
    /// every source fetched (one failing source does not stop the others),
    /// and each view applied on its own. Master views are never written.
    pub async fn sync(
        &self,
        names: &[String],
        trigger: Trigger,
        options: SyncOptions,
    ) -> Result<Vec<ViewReport>, SyncError> {
        let all_plans = syncs::load_plans(&self.db, &self.config).await?;
        let plans = syncs::select(all_plans.clone(), names)?;
        let plans: Vec<ViewPlan> = plans.into_iter().filter(|plan| !plan.is_master()).collect();
        if !options.dry_run {
            self.ensure_indexes_leniently(&plans).await;
        }
        let targets: Vec<&SyncTarget> = plans.iter().filter_map(ViewPlan::target).collect();
        let specs: Vec<_> = targets.iter().map(|target| &target.source).collect();
        // The other views' sources, so a spreadsheet read by several views
        // can be fetched once for all of them (see Sources::fetch_all_with).
        let companions: Vec<_> = all_plans
            .iter()
            .filter(|plan| !plans.iter().any(|selected| selected.name == plan.name))
            .filter_map(ViewPlan::target)
            .map(|target| &target.source)
            .collect();
        let mut tables = self.sources.fetch_all_with(&specs, &companions).await.into_iter();
        let run_id = options.run_id.filter(|_| plans.len() == 1);

        let mut reports = Vec::with_capacity(plans.len());
        for plan in &plans {
            let table = match &plan.resolution {
                Resolution::Sync(_) => tables.next(),
                _ => None,
            };
            let report = self.sync_view(plan, table, trigger, &options, run_id).await;
            log_summary(&report);
            if !options.dry_run {
                if let Err(error) = self.record_run(plan, &report).await {
                    tracing::error!(view = %report.view, %error, "could not record the run history");
                }
            }
            reports.push(report);
        }
        Ok(reports)
    }

    /// `sheetsync sync` from a shell: every view is synced under the same
    /// per-view lease the daemon takes, so a refresh from the command line
    /// and one from a daemon never both swap a view. A view whose lease
    /// another process holds is waited for up to `wait`, then reported as
    /// failed with the holder's name; the others go on. (A dry run writes
    /// nothing and takes no lease.)
    pub async fn sync_exclusive(
        &self,
        names: &[String],
        options: SyncOptions,
        wait: std::time::Duration,
    ) -> Result<Vec<ViewReport>, SyncError> {
        if options.dry_run {
            return self.sync(names, Trigger::Cli, options).await;
        }
        let leases = Leases::new(self.db.clone(), lease::owner_id("cli"), self.config.daemon.lease());
        let plans = syncs::select(syncs::load_plans(&self.db, &self.config).await?, names)?;
        let plans: Vec<ViewPlan> = plans.into_iter().filter(|plan| !plan.is_master()).collect();
        let deadline = Instant::now() + wait;
        // Each lease is renewed from the moment it is taken (waiting for the
        // next view's must not let it expire) and released on every path.
        let (mut held, mut refused) = (Vec::new(), Vec::new());
        let mut failure = None;
        for plan in &plans {
            match self.acquire_until(&leases, plan, deadline).await {
                Ok(None) => {
                    let renewer = (!plan.view_id.is_empty()).then(|| leases.keep_alive(&plan.view_id, || {}));
                    held.push((plan, renewer));
                }
                Ok(Some(reason)) => refused.push((plan, reason)),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let to_sync: Vec<String> = held.iter().map(|(plan, _)| plan.name.clone()).collect();
        let options = SyncOptions {
            lease: Some(leases.clone()),
            ..options
        };
        let synced = match (&failure, to_sync.is_empty()) {
            (Some(_), _) | (None, true) => Ok(Vec::new()),
            (None, false) => self.sync(&to_sync, Trigger::Cli, options).await,
        };
        for (plan, renewer) in held {
            drop(renewer);
            if plan.view_id.is_empty() {
                continue;
            }
            if let Err(error) = leases.release(&plan.view_id).await {
                tracing::warn!(view = %plan.name, %error, "could not release the lease; it will expire");
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        let mut synced = synced?;
        for (plan, reason) in refused {
            let mut report = ViewReport::new(plan, Trigger::Cli, None);
            report.error = Some(reason);
            log_summary(&report);
            if let Err(error) = self.record_run(plan, &report).await {
                tracing::error!(view = %report.view, %error, "could not record the run history");
            }
            synced.push(report);
        }
        let position = |name: &str| plans.iter().position(|plan| plan.name == name);
        synced.sort_by_key(|report| position(&report.view));
        Ok(synced)
    }

    /// Takes the lease of `plan`'s view, polling until `deadline`; `Some`
    /// reason when another process still holds it then. Views without an id
    /// need none: the engine reports them as invalid without writing.
    async fn acquire_until(
        &self,
        leases: &Leases,
        plan: &ViewPlan,
        deadline: Instant,
    ) -> Result<Option<String>, SyncError> {
        if plan.view_id.is_empty() {
            return Ok(None);
        }
        loop {
            if leases.try_acquire(&plan.view_id).await? {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                let holder = match leases.holder(&plan.view_id).await? {
                    Some((owner, until)) => format!("{owner} (its lease runs until {})", until.to_rfc3339()),
                    None => "another process".to_owned(),
                };
                return Ok(Some(format!(
                    "view {:?} is being synced by {holder}; nothing was done: run again once it is done, or with \
                     --wait SECONDS",
                    plan.name
                )));
            }
            tokio::time::sleep(LEASE_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    async fn record_run(&self, plan: &ViewPlan, report: &ViewReport) -> Result<(), StoreError> {
        runs::record(&self.home_of(plan).await?, report).await
    }

    /// Creates every schema index, for the given views' collections too,
    /// and every configured sync's target and application indexes; returns
    /// the collections touched and, apart, the indexes left as they were.
    pub async fn ensure_indexes(&self, plans: &[ViewPlan]) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let profile = self.config.targets.sales_records();
        let views: Vec<ViewPlan> = plans.iter().filter(|plan| !plan.is_configured()).cloned().collect();
        let mut touched = indexes::ensure_all(&self.db, &target_collections(&views), &profile.indexes).await?;
        let mut conflicts = Vec::new();
        for target in plans
            .iter()
            .filter(|plan| plan.is_configured())
            .filter_map(ViewPlan::target)
        {
            let db = self.database(&target.place).await?;
            let outcome = indexes::ensure_app(&db, &target.collection, &target.profile).await?;
            touched.extend(
                outcome
                    .touched
                    .iter()
                    .map(|collection| format!("{}.{collection}", db.name())),
            );
            conflicts.extend(outcome.conflicts);
        }
        Ok((touched, conflicts))
    }

    /// The same before a sync, where an index the data does not allow yet
    /// (duplicate ids in an old collection, an index another tool created
    /// with other options) must not stop the refresh that fixes the data:
    /// each failure is logged and the cycle goes on. Staging collections get
    /// the record indexes anyway, so a swapped-in collection always has them.
    async fn ensure_indexes_leniently(&self, plans: &[ViewPlan]) {
        let profile = self.config.targets.sales_records();
        let views: Vec<ViewPlan> = plans.iter().filter(|plan| !plan.is_configured()).cloned().collect();
        let collections = target_collections(&views);
        for (collection, specs) in indexes::all_targets(&collections, &profile.indexes) {
            if let Err(error) = indexes::create(&self.db, collection, specs).await {
                tracing::warn!(%error, "index creation failed; the sync goes on (a view's swap brings its indexes)");
            }
        }
    }

    async fn sync_view(
        &self,
        plan: &ViewPlan,
        fetched: Option<Result<Fetched, SourceError>>,
        trigger: Trigger,
        options: &SyncOptions,
        run_id: Option<Uuid>,
    ) -> ViewReport {
        let clock = Instant::now();
        let mut report = ViewReport::new(plan, trigger, run_id);
        let outcome = match (&plan.resolution, fetched) {
            (Resolution::Sync(target), Some(fetched)) => {
                self.apply_view(plan, target, fetched, options, &mut report).await
            }
            (Resolution::Invalid(reason), _) => Err(ViewError::Invalid(reason.clone())),
            _ => Err(ViewError::Invalid("view has no source to read".to_owned())),
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

    /// Reads the source in passes so that memory holds keys, not records:
    /// the first pass finds problems and duplicate winners; a comparison pass
    /// (when the record count alone does not prove a change) decides whether
    /// anything changed; the write pass streams the records into staging.
    async fn apply_view(
        &self,
        plan: &ViewPlan,
        target: &SyncTarget,
        fetched: Result<Fetched, SourceError>,
        options: &SyncOptions,
        report: &mut ViewReport,
    ) -> Result<Outcome, ViewError> {
        let fetched = fetched?;
        let profile = &*target.profile;
        report.tab_gid = fetched.tab_gid();
        let planning = Instant::now();
        let (mapper, survey) = off_executor(|| mapping::survey(profile, &fetched, &target.read_settings))?;
        tracing::debug!(
            view = %plan.name,
            passes = survey.survey_passes,
            rows = survey.rows_read,
            ms = planning.elapsed().as_millis() as u64,
            "planned"
        );
        report.header_row = Some(survey.header_row);
        report.rows_read = survey.rows_read;
        report.blank_rows = survey.blank_rows;
        report.duplicates_merged = survey.duplicates.len();
        report.duplicates = survey.duplicates.clone();
        report.rejected = survey.rejected.clone();
        report.warnings = survey.warnings.clone();
        report.unknown_columns = survey.unknown_columns.clone();
        report.date_order = survey.date_order.clone();
        report.notices = survey.notices.clone();
        report.records_written = survey.winners.len();
        if let Some(rules) = profile.merge_rules() {
            let outcome = self
                .merge_view(plan, target, rules, (&mapper, &survey), &fetched, options, report)
                .await?;
            if outcome != Outcome::DryRun {
                self.record_last_update(plan, target, survey.winners.len()).await?;
            }
            return Ok(outcome);
        }
        // The target's own database: a view's is the main one, a `[[syncs]]`
        // entry's the one it names.
        let db = self.database(&target.place).await?;
        if !options.dry_run && plan.is_configured() {
            ensure_app_indexes(&db, target, report).await;
        }
        if !options.dry_run {
            let dropped = apply::drop_leftover_staging(&db, &target.collection).await?;
            if !dropped.is_empty() {
                tracing::warn!(view = %plan.name, ?dropped, "dropped staging collections left by an interrupted run");
            }
        }
        let collection = db.collection::<Document>(&target.collection);
        let existing = identity::load_existing(&collection, profile).await?;
        let continuations = Continuations::find(&existing, &survey.winners, profile);
        let shrink = Some((existing.count, survey.winners.len()));
        self.check_guards(&target.collection, shrink, &survey, options)?;
        let now = BsonDateTime::now();
        let count_differs = existing.count != survey.winners.len() as u64;
        if options.dry_run && existing.count == 0 {
            // Into an empty collection every record is new, with nothing to
            // continue or compare: the plan alone has the count.
            report.changes = Changes {
                inserted: survey.winners.len(),
                ..Changes::default()
            };
            return Ok(Outcome::DryRun);
        }
        if options.dry_run || !count_differs {
            let mut identities = Identities::new(&plan.view_id, profile, &existing, &continuations, now);
            let rows = fetched.rows()?;
            // Digests are compared on the reading threads.
            let unchanged = |record: &mapping::RecordValues<'_>| existing.is_unchanged(&continuations, record, now);
            let found = off_executor(|| {
                mapper.each_winner_values(&survey, rows, &unchanged, |record, unchanged| {
                    identities.account_checked(&record, unchanged);
                })
            })?;
            ensure_same_source(survey.winners.len(), found)?;
            report.record_identities(&identities);
            if options.dry_run {
                return Ok(Outcome::DryRun);
            }
        }
        // Rewriting an identical collection would only churn the server.
        if count_differs || !report.changes.is_empty() {
            let mut identities = Identities::new(&plan.view_id, profile, &existing, &continuations, now);
            let batch_size = self.config.sync.insert_batch_size;
            let mut staging =
                apply::Staging::create(&db, &target.collection, profile, &report.run_id, batch_size).await?;
            let winners = match fetched.rows() {
                Ok(rows) => mapper.winners(&survey, rows),
                Err(error) => {
                    staging.abandon().await;
                    return Err(error.into());
                }
            };
            let planned = survey.winners.len();
            let guard = SwapGuard {
                abort: &options.abort,
                lease: options.lease.as_ref().filter(|_| !plan.view_id.is_empty()),
                view_id: &plan.view_id,
            };
            let written = fill_and_swap(&mut staging, &mut identities, winners, planned, &guard).await;
            match written {
                Ok(not_carried) => report.notices.extend(not_carried),
                Err(error) => {
                    staging.abandon().await;
                    return Err(error);
                }
            }
            report.record_identities(&identities);
            report.swapped = true;
        }
        self.record_last_update(plan, target, survey.winners.len()).await?;
        Ok(outcome_of(report))
    }

    /// A merge: the source's records compared with the documents they
    /// continue, and only the differences written (see `apply::merge`).
    #[allow(clippy::too_many_arguments)] // the parts of one view's run, as apply_view has them
    async fn merge_view(
        &self,
        plan: &ViewPlan,
        target: &SyncTarget,
        rules: &MergeRules,
        (mapper, survey): (&mapping::Mapper<'_>, &mapping::Survey),
        fetched: &Fetched,
        options: &SyncOptions,
        report: &mut ViewReport,
    ) -> Result<Outcome, ViewError> {
        let db = self.database(&target.place).await?;
        if !options.dry_run {
            ensure_app_indexes(&db, target, report).await;
        }
        let profile = &*target.profile;
        let mut merge = Merge::load(&db, &target.collection, profile, rules, mapper.column_headers()).await?;
        let rows = fetched.rows()?;
        let found = off_executor(|| mapper.each_winner_record(survey, rows, |record| merge.add(record)))?;
        ensure_same_source(survey.winners.len(), found)?;
        merge.finish();
        // Only deletions can shrink a merged collection; new documents do
        // not make up for the ones deleted (other collections point at them).
        let shrink = (rules.on_missing == OnMissing::Delete).then(|| {
            let kept = merge.stored_count() - merge.changes.removed;
            (merge.stored_count() as u64, kept)
        });
        self.check_guards(&target.collection, shrink, survey, options)?;
        report.warnings.append(&mut merge.warnings);
        report.warnings.sort_by_key(|warning| warning.row);
        report.notices.append(&mut merge.notices);
        report.changes = merge.changes;
        if options.dry_run {
            report.merge = Some(merge.summary);
            return Ok(Outcome::DryRun);
        }
        let transaction_max = match supports_transactions(&db).await? {
            true => Some(self.config.sync.merge_transaction_max),
            false => None,
        };
        let guard = SwapGuard {
            abort: &options.abort,
            lease: options.lease.as_ref().filter(|_| !plan.view_id.is_empty()),
            view_id: &plan.view_id,
        };
        let written = merge
            .write(&db, self.config.sync.insert_batch_size, transaction_max, &guard)
            .await;
        report.merge = Some(merge.summary.clone());
        written?;
        Ok(outcome_of(report))
    }

    /// The guards every apply passes: the shrink guard, given what the
    /// collection holds and will hold, and the rejected-rows guard.
    fn check_guards(
        &self,
        collection: &str,
        shrink: Option<(u64, usize)>,
        survey: &mapping::Survey,
        options: &SyncOptions,
    ) -> Result<(), ViewError> {
        let settings = &self.config.sync;
        if let Some((existing, new)) = shrink {
            apply::check_shrink(collection, existing, new, settings.min_ratio, options.force)?;
        }
        apply::check_rejected(
            survey.rows_read,
            survey.rejected.len(),
            settings.max_rejected_ratio,
            options.force,
        )?;
        Ok(())
    }

    /// The view's `data_metadata` entry, stamped once the data is in place.
    /// Tried twice: after a swap, failing here leaves the dashboard showing
    /// the previous refresh time for new data.
    async fn record_last_update(&self, plan: &ViewPlan, target: &SyncTarget, count: usize) -> Result<(), StoreError> {
        // `data_metadata` is the sales dashboard's; other applications have
        // their run history in their own `sync_runs`.
        if plan.is_configured() {
            return Ok(());
        }
        let record = || {
            let source_type = target.source.source_type();
            metadata::record_last_update(
                &self.db,
                &plan.view_id,
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

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map is only inserted into; a panic elsewhere cannot leave it torn.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A configured sync's indexes, its application's and its run history's,
/// leniently (as the views' before a sync): an index the data does not allow
/// yet must not stop the refresh; the report says which.
async fn ensure_app_indexes(db: &Database, target: &SyncTarget, report: &mut ViewReport) {
    match indexes::ensure_app(db, &target.collection, &target.profile).await {
        Ok(outcome) => report.notices.extend(outcome.conflicts),
        Err(error) => report.notices.push(format!("indexes not ensured: {error}")),
    }
}

fn target_collections(plans: &[ViewPlan]) -> Vec<String> {
    plans
        .iter()
        .filter_map(ViewPlan::target)
        .map(|target| target.collection.clone())
        .collect()
}

/// The write pass: every winning record into staging, then the swap, unless
/// the source no longer yields exactly the records the first pass planned.
/// Returns what the server did not carry over through the swap.
async fn fill_and_swap(
    staging: &mut apply::Staging,
    identities: &mut Identities<'_>,
    mut winners: mapping::Winners<'_, '_>,
    planned: usize,
    guard: &SwapGuard<'_>,
) -> Result<Vec<String>, ViewError> {
    let mut found = 0;
    loop {
        // A batch is read and survey off the executor, then written.
        let batch = off_executor(|| -> Result<Vec<(usize, Document)>, ViewError> {
            let mut batch = Vec::with_capacity(staging.batch_size());
            while batch.len() < staging.batch_size() {
                let Some(record) = winners.next_record() else {
                    break;
                };
                guard.abort.check()?;
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
    ensure_same_source(planned, found)?;
    staging.prepare().await?;
    guard.check().await?;
    Ok(staging.swap_in().await?)
}

/// Runs CPU-bound work (reading files, parsing and mapping rows, hashing)
/// without holding up the executor's other tasks (the lease renewer, the
/// watchdog ping, `/healthz`): on a multi-threaded runtime the worker hands
/// its other tasks to another thread meanwhile (`block_in_place`); on a
/// single-threaded one (some tests) it runs inline.
fn off_executor<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// What must still hold when a view's swap is about to be sent: nobody
/// called the sync off, and this process still holds the view's lease (it
/// is extended here, so it cannot expire between the check and the rename).
struct SwapGuard<'a> {
    abort: &'a Abort,
    lease: Option<&'a Leases>,
    view_id: &'a str,
}

impl SwapGuard<'_> {
    async fn check(&self) -> Result<(), ViewError> {
        pause_before_swap().await;
        self.abort.check()?;
        if let Some(leases) = self.lease {
            if !leases.renew(self.view_id).await? {
                return Err(ViewError::Aborted(
                    "the lease on this view was taken over by another process".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

/// Before each batch of a merge: the same checks as before a swap.
impl apply::merge::Checkpoint for SwapGuard<'_> {
    async fn check(&self) -> Result<(), String> {
        self.abort.check().map_err(|error| error.to_string())?;
        if let Some(leases) = self.lease {
            match leases.renew(self.view_id).await {
                Ok(true) => {}
                Ok(false) => return Err("the lease on this sync was taken over by another process".to_owned()),
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(())
    }
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

fn ensure_same_source(planned: usize, found: usize) -> Result<(), ViewError> {
    if planned == found {
        Ok(())
    } else {
        Err(ViewError::SourceChanged { planned, found })
    }
}

/// The one line every run logs: view, trigger, outcome, counts, duration.
fn log_summary(report: &ViewReport) {
    let outcome = report.outcome.as_str();
    let trigger = report.trigger.as_str();
    let changes = report.changes;
    if report.succeeded() {
        tracing::info!(
            view = %report.view, run_id = %report.run_id, trigger, outcome, rows = report.rows_read,
            records = report.records_written, merged = report.duplicates_merged, rejected = report.rejected.len(),
            warnings = report.warnings.len(), inserted = changes.inserted, updated = changes.updated,
            removed = changes.removed, moved = changes.moved, duration_ms = report.duration_ms, "sync finished"
        );
    } else {
        tracing::warn!(
            view = %report.view, run_id = %report.run_id, trigger, outcome, rows = report.rows_read,
            records = report.records_written, rejected = report.rejected.len(),
            error = report.error.as_deref().unwrap_or(""), duration_ms = report.duration_ms, "sync failed"
        );
    }
}
