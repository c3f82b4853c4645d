//! In-process bookkeeping of the daemon: which view is syncing, the one
//! follow-up run a view may have queued, and the runs the admin API hands out
//! ids for.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::report::{Outcome, SyncReport, Trigger};

/// How many finished runs `GET /admin/runs/{id}` remembers (older ones are
/// still in `sync_runs`).
const REMEMBERED_RUNS: usize = 1000;

/// Where a run stands.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for the view's current run to end, or for its lease.
    Queued,
    Running,
    /// The sync ran; the report says how it went.
    Finished {
        report: Box<SyncReport>,
    },
    /// Not run: another replica already synced the view for this slot.
    Skipped {
        reason: String,
    },
    /// The run could not start or was dropped (MongoDB unreachable, shutdown).
    Failed {
        error: String,
    },
}

impl RunState {
    pub fn is_over(&self) -> bool {
        !matches!(self, RunState::Queued | RunState::Running)
    }

    /// True when the run ended without syncing the view and without a
    /// reason to consider the view done.
    pub fn needs_retry(&self) -> bool {
        match self {
            RunState::Finished { report } => report.outcome == Outcome::Failed,
            RunState::Failed { .. } => true,
            _ => false,
        }
    }
}

/// One run, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub view: String,
    pub trigger: Trigger,
    /// The scheduled slot a schedule or catch-up run is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<DateTime<Utc>>,
    pub requested_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub state: RunState,
}

/// A run to start once the view's current one ends.
#[derive(Debug, Clone)]
pub struct FollowUp {
    pub id: Uuid,
    pub trigger: Trigger,
    pub slot: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct Flight {
    running: bool,
    follow_up: Option<FollowUp>,
}

#[derive(Debug)]
struct Inner {
    accepting: bool,
    flights: HashMap<String, Flight>,
    records: HashMap<Uuid, RunRecord>,
    order: VecDeque<Uuid>,
}

/// What [`Runs::request`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Start this run now (the caller spawns it).
    Start(Uuid),
    /// The view is syncing; the request joined its one follow-up run.
    Queued(Uuid),
    /// Shutting down: no new work.
    Refused,
}

impl Admission {
    pub fn id(&self) -> Option<Uuid> {
        match self {
            Admission::Start(id) | Admission::Queued(id) => Some(*id),
            Admission::Refused => None,
        }
    }
}

/// Single-flight per view, and the registry of runs.
#[derive(Debug)]
pub struct Runs {
    inner: Mutex<Inner>,
    changed: Notify,
}

impl Default for Runs {
    fn default() -> Self {
        Runs {
            inner: Mutex::new(Inner {
                accepting: true,
                flights: HashMap::new(),
                records: HashMap::new(),
                order: VecDeque::new(),
            }),
            changed: Notify::new(),
        }
    }
}

impl Runs {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps half-updated
        // in a way that matters more than stopping the daemon would.
        crate::concurrency::lock(&self.inner)
    }

    /// Asks for a run of `view`. Never two at once for one view: while it
    /// syncs, every request joins one follow-up run (a schedule slot is kept
    /// only if all requesters had one).
    pub fn request(&self, view: &str, trigger: Trigger, slot: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Admission {
        let mut inner = self.lock();
        if !inner.accepting {
            return Admission::Refused;
        }
        let flight = inner.flights.entry(view.to_owned()).or_default();
        if flight.running {
            if let Some(pending) = &mut flight.follow_up {
                if slot.is_none() {
                    pending.slot = None;
                }
                return Admission::Queued(pending.id);
            }
            let id = Uuid::new_v4();
            flight.follow_up = Some(FollowUp { id, trigger, slot });
            inner.insert(id, view, trigger, slot, now);
            return Admission::Queued(id);
        }
        flight.running = true;
        let id = Uuid::new_v4();
        inner.insert(id, view, trigger, slot, now);
        Admission::Start(id)
    }

    /// Called by the run that just ended: the follow-up to run next, if any;
    /// otherwise the view is marked idle.
    pub fn next_for(&self, view: &str, now: DateTime<Utc>) -> Option<FollowUp> {
        let mut inner = self.lock();
        let accepting = inner.accepting;
        let flight = inner.flights.entry(view.to_owned()).or_default();
        let next = flight.follow_up.take();
        let next = match next {
            Some(pending) if accepting => Some(pending),
            Some(pending) => {
                inner.set_state(
                    pending.id,
                    RunState::Failed {
                        error: "not started: sheetsync is shutting down".to_owned(),
                    },
                    now,
                );
                None
            }
            None => None,
        };
        if next.is_none()
            && let Some(flight) = inner.flights.get_mut(view)
        {
            flight.running = false;
        }
        drop(inner);
        self.changed.notify_waiters();
        next
    }

    pub fn set_state(&self, id: Uuid, state: RunState, now: DateTime<Utc>) {
        self.lock().set_state(id, state, now);
        self.changed.notify_waiters();
    }

    pub fn get(&self, id: Uuid) -> Option<RunRecord> {
        self.lock().records.get(&id).cloned()
    }

    pub fn stop_accepting(&self) {
        self.lock().accepting = false;
        self.changed.notify_waiters();
    }

    pub fn is_accepting(&self) -> bool {
        self.lock().accepting
    }

    /// Views syncing now.
    pub fn running(&self) -> Vec<String> {
        let inner = self.lock();
        let mut views: Vec<String> = inner
            .flights
            .iter()
            .filter(|(_, flight)| flight.running)
            .map(|(view, _)| view.clone())
            .collect();
        views.sort();
        views
    }

    /// Whether `view` is syncing, and whether a follow-up is queued.
    pub fn flight_of(&self, view: &str) -> (bool, bool) {
        self.lock()
            .flights
            .get(view)
            .map_or((false, false), |flight| (flight.running, flight.follow_up.is_some()))
    }

    /// Waits until `done` says yes; re-checked on every change.
    pub async fn wait_until(&self, done: impl Fn(&Runs) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(self) {
                return;
            }
            notified.await;
        }
    }

    /// True when every one of `ids` is over.
    pub fn all_over(&self, ids: &[Uuid]) -> bool {
        let inner = self.lock();
        ids.iter()
            .all(|id| inner.records.get(id).is_none_or(|record| record.state.is_over()))
    }

    pub fn is_idle(&self) -> bool {
        self.lock().flights.values().all(|flight| !flight.running)
    }
}

impl Inner {
    fn insert(&mut self, id: Uuid, view: &str, trigger: Trigger, slot: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        self.records.insert(
            id,
            RunRecord {
                id: id.simple().to_string(),
                view: view.to_owned(),
                trigger,
                slot,
                requested_at: now,
                started_at: None,
                finished_at: None,
                state: RunState::Queued,
            },
        );
        self.order.push_back(id);
        while self.order.len() > REMEMBERED_RUNS {
            let Some(oldest) = self.order.front().copied() else {
                break;
            };
            if !self.records.get(&oldest).is_none_or(|record| record.state.is_over()) {
                break;
            }
            self.order.pop_front();
            self.records.remove(&oldest);
        }
    }

    fn set_state(&mut self, id: Uuid, state: RunState, now: DateTime<Utc>) {
        if let Some(record) = self.records.get_mut(&id) {
            match state {
                RunState::Running => record.started_at = Some(now),
                ref over if over.is_over() => record.finished_at = Some(now),
                _ => {}
            }
            record.state = state;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_during_a_run_coalesce_into_one_follow_up() {
        let runs = Runs::default();
        let now = Utc::now();
        let Admission::Start(first) = runs.request("Signal", Trigger::Schedule, Some(now), now) else {
            panic!("an idle view starts at once");
        };
        let second = runs.request("Signal", Trigger::Admin, None, now);
        let third = runs.request("Signal", Trigger::Signal, None, now);
        let Admission::Queued(follow_up) = second else {
            panic!("a busy view queues")
        };
        assert_eq!(third, Admission::Queued(follow_up));
        assert_ne!(first, follow_up);
        // Another view is independent.
        assert!(matches!(
            runs.request("Market", Trigger::Admin, None, now),
            Admission::Start(_)
        ));
        assert_eq!(runs.running(), ["Market", "Signal"]);

        let next = runs.next_for("Signal", now).expect("the follow-up runs next");
        assert_eq!(next.id, follow_up);
        assert_eq!(next.trigger, Trigger::Admin);
        assert_eq!(next.slot, None);
        assert_eq!(runs.flight_of("Signal"), (true, false));
        assert!(runs.next_for("Signal", now).is_none());
        assert_eq!(runs.flight_of("Signal"), (false, false));
    }

    #[test]
    fn shutdown_refuses_new_work_and_drops_follow_ups() {
        let runs = Runs::default();
        let now = Utc::now();
        assert!(matches!(
            runs.request("Organic", Trigger::Signal, None, now),
            Admission::Start(_)
        ));
        let queued = runs.request("Organic", Trigger::Signal, None, now).id().unwrap();
        runs.stop_accepting();
        assert_eq!(runs.request("Organic", Trigger::Admin, None, now), Admission::Refused);
        assert!(runs.next_for("Organic", now).is_none());
        assert!(matches!(runs.get(queued).unwrap().state, RunState::Failed { .. }));
        assert!(runs.is_idle());
    }
}
