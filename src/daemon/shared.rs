//! What the daemon's tasks share: the engine, the schedule, the runs, the
//! last known state of MongoDB and of each sync, and the shutdown signal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use uuid::Uuid;

use super::client::ClientAddresses;
use super::page::SyncPage;
use super::recorder;
use super::session;
use super::state::Runs;
use super::throttle::AuthThrottle;
use super::watched::WatchState;
use crate::apply::Abort;
use crate::concurrency::lock;
use crate::config::Config;
use crate::engine::Engine;
use crate::progress::{Progress, ProgressSnapshot};
use crate::schedule::Schedule;
use crate::store::{self, lease::Leases};
use crate::syncs::{self, SyncPlan};

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

/// The views' part of `/status`, as last read from MongoDB.
#[derive(Debug, Clone, Default)]
pub struct StatusSnapshot {
    /// One JSON object per view (last run, last success, last error,
    /// record count...).
    pub views: Vec<serde_json::Value>,
    /// The same syncs as the status page shows them.
    pub pages: Vec<SyncPage>,
    /// Why the last refresh could not read the views.
    pub error: Option<String>,
    pub refreshed_at: Option<DateTime<Utc>>,
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
    pub engine: Engine,
    pub leases: Leases,
    pub schedule: Schedule,
    pub runs: Runs,
    pub clock: Arc<dyn Clock>,
    pub metrics: PrometheusHandle,
    pub started_at: DateTime<Utc>,
    pub started: Instant,
    pub(super) heartbeat: Mutex<Instant>,
    pub(super) next_run: Mutex<Option<DateTime<Utc>>>,
    pub(super) mongo: Mutex<MongoState>,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) slice: Duration,
    /// The running syncs, to call them off at shutdown.
    pub(super) aborts: Mutex<HashMap<Uuid, Abort>>,
    /// One permit per sync allowed to run at once (`max_concurrent_syncs`):
    /// a cycle of many views must not take every core and connection.
    pub(super) sync_slots: tokio::sync::Semaphore,
    /// What `/status` shows of each view, read from MongoDB in the
    /// background (see [`Daemon::status_refresher`]), never per request.
    pub(super) status: Mutex<StatusSnapshot>,
    /// Wakes the status refresher when a run ends.
    pub(super) status_stale: tokio::sync::Notify,
    /// Signed-in sessions of the status page.
    pub sessions: session::Sessions,
    /// Failed authentications by client address (see `throttle`).
    pub auth_throttle: AuthThrottle,
    /// Who a request comes from, proxies considered.
    pub clients: ClientAddresses,
    /// What the watcher knows of the sources (`watch`).
    pub(super) watch: Mutex<WatchState>,
    /// The syncs as last listed from MongoDB: what an admin refresh answers
    /// from when MongoDB is slow to list them again.
    pub(super) known_plans: Mutex<Option<Vec<SyncPlan>>>,
    /// How far each running sync has come, by sync name.
    pub(super) progress: Mutex<HashMap<String, Progress>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("owner", &self.leases.owner())
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

/// How long a ping may take before MongoDB counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
impl Daemon {
    pub fn config(&self) -> &Config {
        &self.engine.config
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
    pub(super) async fn pause(&self, duration: Duration) -> bool {
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

    pub(super) fn set_mongo(&self, reachable: bool, detail: String) {
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
        let outcome = match tokio::time::timeout(PING_TIMEOUT, store::ping(&self.engine.db)).await {
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

    /// Where each running sync is, by sync name.
    pub fn progress(&self) -> HashMap<String, ProgressSnapshot> {
        lock(&self.progress)
            .iter()
            .filter_map(|(name, progress)| Some((name.clone(), progress.snapshot()?)))
            .collect()
    }

    /// Loads the views, with MongoDB's state recorded.
    pub async fn load_plans(&self) -> Result<Vec<SyncPlan>, String> {
        match syncs::load_plans(&self.engine.db, &self.config().syncs_config()).await {
            Ok(plans) => {
                self.set_mongo(true, "answered a query".to_owned());
                *lock(&self.known_plans) = Some(plans.clone());
                Ok(plans)
            }
            Err(error) => {
                self.set_mongo(false, error.to_string());
                Err(error.to_string())
            }
        }
    }
}
