//! `sheetsync run`: the long-running worker.
//!
//! Pieces, one job each:
//! - [`scheduler`]: the loop that fires the schedule's slots (`crate::schedule`
//!   computes them), and the start-up (readiness, catch-up);
//! - [`executor`]: jobs (a slot, the catch-up, a refresh) and the execution
//!   of one sync's run under its lease;
//! - [`status`]: what `/status` shows, read in the background;
//! - [`state`]: single flight per sync and the registry of runs;
//! - [`http`] and [`serve`]: the endpoints, and the bounded server under them;
//! - [`lifecycle`]: signals and systemd notifications;
//! - this module: the shared state and the wiring (`run`).

pub mod executor;
pub mod http;
pub mod lifecycle;
pub mod page;
pub mod recorder;
pub mod scheduler;
pub mod serve;
pub mod session;
pub mod state;
pub mod status;

pub use status::StatusSnapshot;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use uuid::Uuid;

use crate::apply::Abort;
use crate::config::Config;
use crate::engine::Engine;
use crate::report::Trigger;
use crate::schedule::{self, Schedule};
use crate::store::lease::{self, Leases};
use crate::store::{self, StoreError};
use crate::syncs::{self, SyncPlan};
use lifecycle::Notifier;
use state::Runs;

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
    pub syncer: Engine,
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
    /// Signed-in sessions of the status page.
    pub sessions: session::Sessions,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("owner", &self.leases.owner())
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex whose data stays meaningful even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a ping may take before MongoDB counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
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
        recorder::set_mongo_up(reachable);
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

    /// Loads the views, with MongoDB's state recorded.
    pub async fn load_plans(&self) -> Result<Vec<SyncPlan>, String> {
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

/// Runs the daemon until SIGTERM or SIGINT; returns once it stopped cleanly
/// (a sync still running after the grace period is abandoned: its swap had
/// not happened, so the previous data stands).
pub async fn run(config: Config) -> Result<(), DaemonError> {
    crate::tls::install_crypto_provider();
    let schedule = Schedule::parse(&config.daemon.schedule, &config.daemon.time_zone)?;
    let mut signals = lifecycle::Signals::install().map_err(DaemonError::Signals)?;
    let metrics = recorder::install().map_err(DaemonError::Metrics)?;
    let db = config.open_database().await?;
    // Views are synced one by one; a spreadsheet still costs one fetch per
    // cycle for all the views that read it.
    let sources = config.sources()?.sharing_spreadsheet_fetches(SHARED_FETCH_TTL);
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
        syncer: Engine::new(db, config, sources),
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
        sessions: session::Sessions::default(),
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
