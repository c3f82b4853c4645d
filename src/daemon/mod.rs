//! `sheetsync run`: the long-running worker.
//!
//! Pieces, one job each:
//! - [`schedule`]: cron + time zone, and the pure ticker the loop below feeds;
//! - [`state`]: single flight per view and the registry of runs;
//! - [`http`]: health, readiness, status, metrics and admin endpoints;
//! - [`lifecycle`]: signals and systemd notifications;
//! - this module: wiring, the scheduler loop, jobs (a slot, the catch-up, a
//!   refresh) and the execution of one view's run under its lease.

pub mod http;
pub mod lifecycle;

pub mod serve;
pub mod state;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::Config;
use crate::report::Trigger;
use crate::schedule::{self, Schedule, Tick, Ticker};
use crate::source::Sources;
use crate::store::lease::{self, Leases};
use crate::store::{self, StoreError, metadata, runs};
use crate::sync::{Abort, SyncOptions, Syncer};
use crate::syncs::{self, ViewPlan};
use crate::telemetry;
use lifecycle::Notifier;
use state::{Admission, RunState, Runs};

/// The wall clock, injectable so tests never wait for real time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Schedule(#[from] schedule::ScheduleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error("cannot listen on {addr}: {source} (set daemon.listen or SHEETSYNC_LISTEN)")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
}

/// The last thing known about MongoDB.
#[derive(Debug, Clone)]
pub struct MongoState {
    pub reachable: bool,
    pub detail: String,
    pub checked_at: Option<DateTime<Utc>>,
}

/// Everything the daemon's tasks share.
pub struct Daemon {
    pub syncer: Syncer,
    pub leases: Leases,
    pub schedule: Schedule,
    pub runs: Runs,
    pub clock: Arc<dyn Clock>,
    pub metrics: PrometheusHandle,
    pub started_at: DateTime<Utc>,
    pub started: Instant,
    heartbeat: Mutex<Instant>,
    next_run: Mutex<Option<DateTime<Utc>>>,
    mongo: Mutex<MongoState>,
    shutdown: watch::Sender<bool>,
    slice: Duration,
    /// The running syncs, to call them off at shutdown.
    aborts: Mutex<HashMap<Uuid, Abort>>,
    /// One permit per sync allowed to run at once (`max_concurrent_syncs`):
    /// a cycle of many views must not take every core and connection.
    sync_slots: tokio::sync::Semaphore,
    /// What `/status` shows of each view, read from MongoDB in the
    /// background (see [`Daemon::status_refresher`]), never per request.
    status: Mutex<StatusSnapshot>,
    /// Wakes the status refresher when a run ends.
    status_stale: tokio::sync::Notify,
}

/// The views' part of `/status`, as last read from MongoDB.
#[derive(Debug, Clone, Default)]
pub struct StatusSnapshot {
    /// One JSON object per view (last run, last success, last error,
    /// record count...).
    pub views: Vec<serde_json::Value>,
    /// Why the last refresh could not read the views.
    pub error: Option<String>,
    pub refreshed_at: Option<DateTime<Utc>>,
}

/// How often the `/status` snapshot is read again without a run ending
/// (runs of other replicas, edits of the `views` collection).
const STATUS_REFRESH: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("owner", &self.leases.owner())
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

/// Hands the heap memory a finished sync freed back to the OS. glibc keeps
/// freed memory mapped in its per-thread arenas, so without this a daemon
/// idle between two runs a day would hold its largest sync's working set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers and only returns free pages of
    // the allocator's own heaps to the kernel; it is safe to call at any time
    // from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Locks a mutex whose data stays meaningful even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a ping may take before MongoDB counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a run waiting for another process's lease looks again.
const LEASE_POLL: Duration = Duration::from_secs(1);

impl Daemon {
    pub fn config(&self) -> &Config {
        &self.syncer.config
    }

    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves when shutdown has begun.
    pub async fn until_shutdown(&self) {
        let mut receiver = self.shutdown.subscribe();
        // An error means the sender is gone, which is shutdown too.
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }

    /// Sleeps `duration`, or less if shutdown begins; true when it slept fully.
    async fn pause(&self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.until_shutdown() => false,
        }
    }

    /// Age of the scheduler loop's last heartbeat.
    pub fn heartbeat_age(&self) -> Duration {
        lock(&self.heartbeat).elapsed()
    }

    /// The loop is alive when it beat within three slices.
    pub fn scheduler_alive(&self) -> bool {
        self.heartbeat_age() < self.slice * 3
    }

    pub fn next_run(&self) -> Option<DateTime<Utc>> {
        *lock(&self.next_run)
    }

    pub fn mongo_state(&self) -> MongoState {
        lock(&self.mongo).clone()
    }

    fn set_mongo(&self, reachable: bool, detail: String) {
        telemetry::set_mongo_up(reachable);
        let mut state = lock(&self.mongo);
        if state.reachable != reachable || state.checked_at.is_none() {
            if reachable {
                tracing::info!("MongoDB is reachable");
            } else {
                tracing::warn!(reason = %detail, "MongoDB is unreachable");
            }
        }
        *state = MongoState {
            reachable,
            detail,
            checked_at: Some(self.clock.now()),
        };
    }

    /// Pings MongoDB (bounded in time) and remembers the answer.
    pub async fn check_mongo(&self) -> Result<(), String> {
        let outcome = match tokio::time::timeout(PING_TIMEOUT, store::ping(&self.syncer.db)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "MongoDB at {} did not answer a ping within {} s",
                self.config().redacted_mongo_url(),
                PING_TIMEOUT.as_secs()
            )),
        };
        match &outcome {
            Ok(()) => self.set_mongo(true, "answered a ping".to_owned()),
            Err(error) => self.set_mongo(false, error.clone()),
        }
        outcome
    }

    /// Asks for a run of one view; starts it unless the view is busy (then
    /// the request joins the view's one follow-up run). `None` once shutdown
    /// has begun.
    pub fn request(self: &Arc<Self>, plan: &ViewPlan, trigger: Trigger, slot: Option<DateTime<Utc>>) -> Option<Uuid> {
        let admission = self.runs.request(&plan.name, trigger, slot, self.clock.now());
        if let Admission::Start(id) = admission {
            let daemon = Arc::clone(self);
            let plan = plan.clone();
            tokio::spawn(async move { daemon.drive(plan, id, trigger, slot).await });
        }
        admission.id()
    }

    /// Runs one view, then its follow-up runs, one after the other.
    async fn drive(
        self: Arc<Self>,
        plan: ViewPlan,
        mut id: Uuid,
        mut trigger: Trigger,
        mut slot: Option<DateTime<Utc>>,
    ) {
        loop {
            let run = AssertUnwindSafe(self.execute(&plan, id, trigger, slot)).catch_unwind();
            if let Err(panic) = run.await {
                self.recover_from_panic(&plan, id, panic_message(panic.as_ref()));
            }
            match self.runs.next_for(&plan.name, self.clock.now()) {
                Some(next) => {
                    id = next.id;
                    trigger = next.trigger;
                    slot = next.slot;
                }
                None => break,
            }
        }
        release_free_memory();
    }

    /// A bug must not leave a view marked busy until the process restarts:
    /// the run is recorded as failed and the view takes runs again. The swap
    /// is one server-side step, so the view's data is the old or the new,
    /// never a mix; the lease renewer has stopped with the unwinding (see
    /// [`lease::Renewer`]) and the lease expires on its own.
    fn recover_from_panic(&self, plan: &ViewPlan, id: Uuid, message: String) {
        tracing::error!(
            view = %plan.name, run_id = %id, panic = %message,
            "the run of this view panicked; this is a bug in sheetsync, please report it with this log"
        );
        lock(&self.aborts).remove(&id);
        self.finish(
            id,
            RunState::Failed {
                error: format!("internal error, the run panicked: {message}; see the log"),
            },
        );
    }

    /// One run of one view: the lease, the "slot already done" check, the
    /// sync with its lease renewed, and the bookkeeping.
    async fn execute(self: &Arc<Self>, plan: &ViewPlan, id: Uuid, trigger: Trigger, slot: Option<DateTime<Utc>>) {
        let fail = |error: String| RunState::Failed { error };
        let view_id = plan.view_id.as_str();
        // Views without an id cannot be leased; the engine reports them as
        // invalid without writing anything.
        let leased = !view_id.is_empty();
        // A sync slot (`max_concurrent_syncs`) is held from the lease to the
        // end of the run, but not while another process holds the lease: a
        // view waiting for another replica must not block the other views.
        let _slot = loop {
            if self.shutting_down() || !self.runs.is_accepting() {
                self.finish(id, fail("not started: sheetsync is shutting down".to_owned()));
                return;
            }
            // Closed only if the semaphore is dropped, which outlives runs.
            let Ok(slot) = self.sync_slots.acquire().await else {
                return;
            };
            if !leased {
                break slot;
            }
            match self.leases.try_acquire(view_id).await {
                Ok(true) => break slot,
                Ok(false) => {
                    drop(slot);
                    tracing::debug!(view = %plan.name, "another process is syncing this view; waiting for its lease");
                    self.pause(LEASE_POLL).await;
                }
                Err(error) => {
                    self.set_mongo(false, error.to_string());
                    self.finish(id, fail(error.to_string()));
                    return;
                }
            }
        };
        let state = self.sync_leased(plan, id, trigger, slot).await;
        if leased {
            if let Err(error) = self.leases.release(view_id).await {
                tracing::warn!(view = %plan.name, %error, "could not release the lease; it will expire");
            }
        }
        self.finish(id, state);
    }

    async fn sync_leased(
        self: &Arc<Self>,
        plan: &ViewPlan,
        id: Uuid,
        trigger: Trigger,
        slot: Option<DateTime<Utc>>,
    ) -> RunState {
        if let Some(slot) = slot {
            match self.last_success(plan).await {
                Ok(Some(done_at)) if done_at >= slot => {
                    tracing::info!(
                        view = %plan.name, trigger = trigger.as_str(), slot = %slot, synced_at = %done_at,
                        "skipped: the view was already synced since this slot (by another replica)"
                    );
                    telemetry::record_skip(&plan.name);
                    return RunState::Skipped {
                        reason: format!("already synced at {} (slot {slot})", done_at.to_rfc3339()),
                    };
                }
                Ok(_) => {}
                Err(error) => {
                    return RunState::Failed {
                        error: error.to_string(),
                    };
                }
            }
        }
        self.runs.set_state(id, RunState::Running, self.clock.now());
        let abort = Abort::default();
        lock(&self.aborts).insert(id, abort.clone());
        let renewer = (!plan.view_id.is_empty()).then(|| self.spawn_renewer(plan, abort.clone()));
        let options = SyncOptions {
            run_id: Some(id),
            abort: abort.clone(),
            lease: Some(self.leases.clone()),
            ..SyncOptions::default()
        };
        let outcome = self
            .syncer
            .sync(std::slice::from_ref(&plan.name), trigger, options)
            .await;
        drop(renewer);
        lock(&self.aborts).remove(&id);
        match outcome {
            Ok(reports) => match reports.into_iter().next() {
                Some(report) => {
                    telemetry::record_run(&report);
                    RunState::Finished {
                        report: Box::new(report),
                    }
                }
                None => RunState::Failed {
                    error: format!("view {:?} is no longer in the views collection", plan.name),
                },
            },
            Err(error) => {
                tracing::warn!(view = %plan.name, trigger = trigger.as_str(), %error, "sync could not start");
                RunState::Failed {
                    error: error.to_string(),
                }
            }
        }
    }

    /// Renews the view's lease at a third of its lifetime while the sync
    /// runs. A lease found taken by another process calls the sync off: two
    /// processes must never both swap one view.
    fn spawn_renewer(self: &Arc<Self>, plan: &ViewPlan, abort: Abort) -> lease::Renewer {
        let view = plan.name.clone();
        self.leases.keep_alive(&plan.view_id, move || {
            tracing::warn!(%view, "the lease of this view was lost while syncing; calling the sync off");
            abort.abort("the lease on this view was taken over by another process");
        })
    }

    fn finish(&self, id: Uuid, state: RunState) {
        self.runs.set_state(id, state, self.clock.now());
        self.status_stale.notify_one();
    }

    /// The `/status` snapshot.
    pub fn status_snapshot(&self) -> StatusSnapshot {
        lock(&self.status).clone()
    }

    /// Keeps the `/status` snapshot fresh: after every run, and every
    /// [`STATUS_REFRESH`]. Each read is bounded by the MongoDB time limits;
    /// while the database does not answer, the last snapshot stays, with the
    /// reason.
    async fn status_refresher(self: Arc<Self>) {
        loop {
            self.refresh_status().await;
            tokio::select! {
                () = self.status_stale.notified() => {}
                () = tokio::time::sleep(STATUS_REFRESH) => {}
                () = self.until_shutdown() => return,
            }
        }
    }

    async fn refresh_status(&self) {
        let plans = match self.load_plans().await {
            Ok(plans) => plans,
            Err(reason) => {
                lock(&self.status).error = Some(reason);
                return;
            }
        };
        let mut views = Vec::new();
        for plan in plans.iter().filter(|plan| !plan.is_master()) {
            views.push(self.view_status(plan).await);
        }
        *lock(&self.status) = StatusSnapshot {
            views,
            error: None,
            refreshed_at: Some(self.clock.now()),
        };
    }

    /// One view's part of `/status`; what cannot be read is left null.
    async fn view_status(&self, plan: &ViewPlan) -> serde_json::Value {
        let home = self.syncer.home_of(plan).await;
        let db = home.as_ref().unwrap_or(&self.syncer.db);
        let summary = |document: mongodb::bson::Document| {
            let at = |field: &str| {
                document
                    .get_datetime(field)
                    .ok()
                    .and_then(|at| crate::mapping::values::from_bson_date(*at))
            };
            serde_json::json!({
                "run_id": document.get_str("run_id").ok(),
                "trigger": document.get_str("trigger").ok(),
                "outcome": document.get_str("outcome").ok(),
                "started_at": at("started_at"),
                "finished_at": at("finished_at"),
                "records_written": document.get("records_written").map(|value| value.clone().into_relaxed_extjson()),
                "error": document.get_str("error").ok(),
            })
        };
        let last_run = runs::latest(db, &plan.name, mongodb::bson::doc! {})
            .await
            .ok()
            .flatten()
            .map(summary);
        let last_error = runs::latest(db, &plan.name, mongodb::bson::doc! { "outcome": "failed" })
            .await
            .ok()
            .flatten()
            .map(summary);
        let (last_success, records) = match self.last_update(plan).await {
            Ok(Some((at, count))) => (Some(at), Some(count)),
            _ => (None, None),
        };
        let summary = plan.summary();
        serde_json::json!({
            "name": plan.name,
            "view_id": plan.view_id,
            "collection": summary.collection,
            "source": summary.source,
            "status": summary.status,
            "last_run": last_run,
            "last_success": last_success,
            "last_error": last_error,
            "records_count": records,
        })
    }

    /// Loads the views, with MongoDB's state recorded.
    pub async fn load_plans(&self) -> Result<Vec<ViewPlan>, String> {
        match syncs::load_plans(&self.syncer.db, self.config()).await {
            Ok(plans) => {
                self.set_mongo(true, "answered a query".to_owned());
                Ok(plans)
            }
            Err(error) => {
                self.set_mongo(false, error.to_string());
                Err(error.to_string())
            }
        }
    }

    /// When the view was last synced successfully, by any replica; a failure
    /// to read it marks MongoDB unreachable.
    async fn last_success(&self, plan: &ViewPlan) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.last_update(plan).await {
            Ok(last) => Ok(last.map(|(at, _)| at)),
            Err(error) => {
                self.set_mongo(false, error.to_string());
                Err(error)
            }
        }
    }

    /// A run from the history: in the views' database, or in a configured
    /// sync's own.
    pub async fn stored_run(&self, run_id: &str) -> Result<Option<mongodb::bson::Document>, StoreError> {
        if let Some(run) = runs::by_id(&self.syncer.db, run_id).await? {
            return Ok(Some(run));
        }
        for sync in &self.config().syncs {
            let place = crate::syncs::Place::Other {
                database: sync.entry.database.clone(),
                mongo_url: sync.mongo_url.clone(),
            };
            let db = self.syncer.database(&place).await?;
            if let Some(run) = runs::by_id(&db, run_id).await? {
                return Ok(Some(run));
            }
        }
        Ok(None)
    }

    /// When the sync last succeeded and with how many records: a view's
    /// `data_metadata` entry, or a configured sync's last successful run in
    /// its own database's `sync_runs`.
    async fn last_update(&self, plan: &ViewPlan) -> Result<Option<(DateTime<Utc>, i64)>, StoreError> {
        if !plan.is_configured() {
            return metadata::last_update(&self.syncer.db, &plan.view_id).await;
        }
        let db = self.syncer.home_of(plan).await?;
        let succeeded = mongodb::bson::doc! { "outcome": { "$in": ["success", "success_with_warnings"] } };
        let Some(run) = runs::latest(&db, &plan.name, succeeded).await? else {
            return Ok(None);
        };
        let finished = run
            .get_datetime("finished_at")
            .ok()
            .and_then(|at| crate::mapping::values::from_bson_date(*at));
        let records = match run.get("records_written") {
            Some(mongodb::bson::Bson::Int32(count)) => i64::from(*count),
            Some(mongodb::bson::Bson::Int64(count)) => *count,
            _ => 0,
        };
        Ok(finished.map(|at| (at, records)))
    }

    /// Waits `backoff`, then doubles it up to `retry_max_secs`; `false` when
    /// shutdown began meanwhile.
    async fn back_off(&self, backoff: &mut Duration) -> bool {
        if !self.pause(*backoff).await {
            return false;
        }
        *backoff = (*backoff * 2).min(self.config().daemon.retry_max());
        true
    }

    /// A job: runs every (or the named) view for a trigger, retrying with
    /// backoff while MongoDB is unreachable. With a `slot`, views already
    /// synced since the slot are skipped (another replica did them). For a
    /// catch-up, only views whose last success is older than the slot run.
    pub async fn job(self: Arc<Self>, trigger: Trigger, slot: Option<DateTime<Utc>>) {
        self.job_for(trigger, slot, Vec::new()).await;
    }

    /// A job for the named views only (all when `names` is empty).
    pub async fn job_for(self: Arc<Self>, trigger: Trigger, slot: Option<DateTime<Utc>>, names: Vec<String>) {
        let settings = &self.config().daemon;
        let mut backoff = settings.retry_min();
        let mut done: Vec<String> = Vec::new();
        let catch_up = matches!(trigger, Trigger::CatchUp);
        let (mut synced, mut skipped) = (0usize, 0usize);
        loop {
            if self.shutting_down() {
                return;
            }
            let mut ids = Vec::new();
            let mut retry = false;
            match self.load_plans().await {
                Err(error) => {
                    tracing::warn!(trigger = trigger.as_str(), %error, retry_in_secs = backoff.as_secs(), "cannot list the views; will retry");
                    retry = true;
                }
                Ok(plans) => {
                    for plan in plans {
                        let unasked = !names.is_empty() && !names.contains(&plan.name);
                        if plan.is_master() || done.contains(&plan.name) || unasked {
                            continue;
                        }
                        let mut view_trigger = trigger;
                        if let Some(slot) = slot {
                            match self.last_success(&plan).await {
                                Ok(Some(at)) if at >= slot => {
                                    skipped += 1;
                                    done.push(plan.name.clone());
                                    continue;
                                }
                                Ok(None) if catch_up => view_trigger = Trigger::Startup,
                                Ok(_) => {}
                                Err(_) => {
                                    retry = true;
                                    break;
                                }
                            }
                        }
                        if let Some(id) = self.request(&plan, view_trigger, slot) {
                            ids.push((plan.name.clone(), id));
                        }
                    }
                }
            }
            let only_ids: Vec<Uuid> = ids.iter().map(|(_, id)| *id).collect();
            tokio::select! {
                () = self.runs.wait_until(|runs| runs.all_over(&only_ids)) => {}
                () = self.until_shutdown() => return,
            }
            let mut failed = 0;
            for (view, id) in ids {
                match self.runs.get(id).map(|record| record.state) {
                    Some(state) if state.needs_retry() => failed += 1,
                    Some(RunState::Skipped { .. }) => {
                        skipped += 1;
                        done.push(view);
                    }
                    _ => {
                        synced += 1;
                        done.push(view);
                    }
                }
            }
            // Failures are retried only while MongoDB is the problem; a
            // broken source waits for the next slot.
            if failed > 0 && self.check_mongo().await.is_err() {
                retry = true;
            }
            if !retry {
                tracing::info!(trigger = trigger.as_str(), slot = ?slot, synced, skipped, failed, "{} done", job_name(trigger));
                return;
            }
            if !self.back_off(&mut backoff).await {
                return;
            }
        }
    }

    /// The scheduler loop: reads the wall clock after every wake-up, fires a
    /// job per due slot, sleeps in bounded slices and beats its heartbeat
    /// (and the systemd watchdog) on every turn.
    async fn scheduler(self: Arc<Self>, notifier: Notifier) {
        let mut ticker = Ticker::new(self.schedule.clone(), self.clock.now(), self.slice);
        loop {
            *lock(&self.heartbeat) = Instant::now();
            notifier.watchdog();
            self.metrics.run_upkeep();
            match ticker.tick(self.clock.now()) {
                Tick::Fire(slot) => {
                    tracing::info!(slot = %slot.with_timezone(&self.schedule.zone()).to_rfc3339(), "scheduled slot due");
                    tokio::spawn(Arc::clone(&self).job(Trigger::Schedule, Some(slot)));
                }
                Tick::Sleep(duration) => {
                    *lock(&self.next_run) = ticker.next_fire();
                    if !self.pause(duration).await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits for MongoDB (with backoff), says READY, then runs the catch-up.
    async fn start(self: Arc<Self>, notifier: Notifier) {
        let settings = &self.config().daemon;
        let mut backoff = settings.retry_min();
        while let Err(error) = self.check_mongo().await {
            tracing::warn!(%error, retry_in_secs = backoff.as_secs(), "MongoDB is not reachable yet; will retry");
            if !self.back_off(&mut backoff).await {
                return;
            }
        }
        notifier.ready();
        tracing::info!("ready");
        if let Err(error) = self.syncer.ensure_indexes(&[]).await {
            tracing::warn!(%error, "could not create the bookkeeping indexes");
        }
        if !settings.catch_up {
            return;
        }
        match self.schedule.latest_at_or_before(self.clock.now()) {
            Some(slot) => self.job(Trigger::CatchUp, Some(slot)).await,
            None => tracing::info!("catch-up: the schedule has no past slot"),
        }
    }
}

/// How long a spreadsheet fetched for one view's run waits for the runs of
/// the other views that read it (the views of one cycle start together).
const SHARED_FETCH_TTL: Duration = Duration::from_secs(120);

/// How long syncs called off at shutdown get to stop at their next
/// checkpoint (one insert batch) or finish a swap already sent.
const CALL_OFF_WAIT: Duration = Duration::from_secs(15);

/// After the grace period: every running sync is told to stop before its
/// swap, and given a moment to do so, so that none is cut between its swap
/// and its bookkeeping.
async fn call_off_running_syncs(daemon: &Arc<Daemon>) {
    let views = daemon.runs.running();
    for abort in lock(&daemon.aborts).values() {
        abort.abort("sheetsync is shutting down and the grace period ran out");
    }
    let stopped = tokio::time::timeout(CALL_OFF_WAIT, daemon.runs.wait_until(Runs::is_idle))
        .await
        .is_ok();
    if stopped {
        tracing::warn!(
            ?views,
            "running sync(s) called off at shutdown before their swap; the previous data stands"
        );
    } else {
        tracing::error!(
            ?views,
            "running sync(s) did not stop within {} s; exiting anyway (a sync cut mid-way never swapped; one cut \
             after its swap has the new data but may lack its data_metadata entry until the next run)",
            CALL_OFF_WAIT.as_secs()
        );
    }
}

fn job_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::CatchUp | Trigger::Startup => "catch-up",
        Trigger::Schedule => "scheduled run",
        _ => "refresh",
    }
}

fn install_metrics() -> Result<PrometheusHandle, DaemonError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(telemetry::SYNC_DURATION.to_owned()),
            telemetry::DURATION_BUCKETS,
        )
        .map_err(|error| DaemonError::Metrics(error.to_string()))?
        .install_recorder()
        .map_err(|error| DaemonError::Metrics(error.to_string()))?;
    telemetry::describe();
    Ok(handle)
}

/// Runs the daemon until SIGTERM or SIGINT; returns once it stopped cleanly
/// (a sync still running after the grace period is abandoned: its swap had
/// not happened, so the previous data stands).
pub async fn run(config: Config) -> Result<(), DaemonError> {
    crate::tls::install_crypto_provider();
    let schedule = Schedule::parse(&config.daemon.schedule, &config.daemon.time_zone)?;
    let mut signals = lifecycle::Signals::install().map_err(DaemonError::Signals)?;
    let metrics = install_metrics()?;
    let db = store::client_for(&config).await?;
    // Views are synced one by one; a spreadsheet still costs one fetch per
    // cycle for all the views that read it.
    let sources = Sources::from_config(&config)?.sharing_spreadsheet_fetches(SHARED_FETCH_TTL);
    let listen = config.daemon.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: listen.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| DaemonError::Bind { addr: listen, source })?;
    let notifier = Notifier::from_env();
    let leases = Leases::new(db.clone(), lease::owner_id("daemon"), config.daemon.lease());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (shutdown, _) = watch::channel(false);
    let grace = config.daemon.shutdown_grace();
    let config_slots = config.daemon.max_concurrent_syncs;
    let daemon = Arc::new(Daemon {
        syncer: Syncer::new(db, config, sources),
        leases,
        started_at: clock.now(),
        clock,
        schedule,
        runs: Runs::default(),
        metrics,
        started: Instant::now(),
        heartbeat: Mutex::new(Instant::now()),
        next_run: Mutex::new(None),
        mongo: Mutex::new(MongoState {
            reachable: false,
            detail: "not checked yet".to_owned(),
            checked_at: None,
        }),
        shutdown,
        slice: notifier.slice(schedule::MAX_SLICE),
        aborts: Mutex::new(HashMap::new()),
        sync_slots: tokio::sync::Semaphore::new(config_slots),
        status: Mutex::new(StatusSnapshot::default()),
        status_stale: tokio::sync::Notify::new(),
    });
    tracing::info!(
        %addr, owner = daemon.leases.owner(), schedule = daemon.schedule.expression(),
        time_zone = %daemon.schedule.zone(), admin = daemon.config().daemon.admin_token.is_some(),
        "HTTP server listening"
    );
    let server = {
        let daemon = Arc::clone(&daemon);
        let app = http::router(Arc::clone(&daemon));
        tokio::spawn(async move {
            let limits = serve::Limits::of(&daemon.config().daemon);
            serve::serve(listener, app, limits, async move { daemon.until_shutdown().await }).await
        })
    };
    tokio::spawn(Arc::clone(&daemon).scheduler(notifier.clone()));
    tokio::spawn(Arc::clone(&daemon).status_refresher());
    tokio::spawn(Arc::clone(&daemon).start(notifier.clone()));

    loop {
        match signals.next().await {
            lifecycle::Signal::Refresh => {
                tracing::info!("SIGHUP: refreshing every view");
                tokio::spawn(Arc::clone(&daemon).job(Trigger::Signal, None));
            }
            lifecycle::Signal::Stop(name) => {
                tracing::info!(
                    signal = name,
                    grace_secs = grace.as_secs(),
                    "stopping: no new work; waiting for running syncs"
                );
                break;
            }
        }
    }
    notifier.stopping();
    daemon.runs.stop_accepting();
    let drained = tokio::select! {
        () = daemon.runs.wait_until(Runs::is_idle) => true,
        () = tokio::time::sleep(grace) => false,
        _ = signals.next_stop() => false,
    };
    if !drained {
        call_off_running_syncs(&daemon).await;
    }
    daemon.shutdown.send_replace(true);
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Err(error)) => tracing::warn!(%error, "the HTTP server task failed"),
        Ok(Ok(())) => {}
        Err(_) => tracing::warn!("the HTTP server did not stop within 5 s; exiting anyway"),
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_run_stops_its_renewer_and_keeps_the_message() {
        let (beat, mut beats) = tokio::sync::mpsc::unbounded_channel();
        let run = async {
            let _renewer = lease::Renewer(tokio::spawn(async move {
                while beat.send(()).is_ok() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
            if beats.recv().await.is_some() {
                panic!("unexpected cell at row {}", 7);
            }
        };
        let panic = AssertUnwindSafe(run).catch_unwind().await.unwrap_err();
        assert_eq!(panic_message(panic.as_ref()), "unexpected cell at row 7");
        // The channel closes only when the renewer task, which holds the
        // sender, has been aborted and dropped.
        let drained = tokio::time::timeout(Duration::from_secs(30), async { while beats.recv().await.is_some() {} });
        assert!(drained.await.is_ok(), "the renewer outlived the panicking run");
    }
}
