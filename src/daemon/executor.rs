//! Running syncs: a job (every sync, or the named ones, for a trigger, with
//! retries while MongoDB is away) and one sync's run (its lease, the "slot
//! already done" check, the sync with its lease renewed, the bookkeeping).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use uuid::Uuid;

use super::recorder;
use super::shared::Daemon;
use super::state::{Admission, RunState};
use crate::apply::Abort;
use crate::concurrency::{AbortOnDrop, lock};
use crate::engine::SyncOptions;
use crate::progress::Progress;
use crate::report::Trigger;
use crate::syncs::SyncPlan;

/// How often a run waiting for another process's lease looks again.
const LEASE_POLL: Duration = Duration::from_secs(1);

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

fn job_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::CatchUp | Trigger::Startup => "catch-up",
        Trigger::Schedule => "scheduled run",
        _ => "refresh",
    }
}

/// How often a long sync's progress is logged.
const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(10);

/// Logs where a sync is every [`PROGRESS_LOG_EVERY`], from the first
/// period on: a sync shorter than that logs only its summary.
async fn log_progress(progress: Progress) {
    loop {
        tokio::time::sleep(PROGRESS_LOG_EVERY).await;
        if let Some(now) = progress.snapshot() {
            tracing::info!(
                view = %now.sync,
                phase = now.phase.as_str(),
                done = now.done,
                known = now.known,
                per_second = now.rate().map(|rate| rate.round() as u64),
                progress = %now.describe_phase(),
                "sync progress"
            );
        }
    }
}

/// What an admin refresh (the API's or the status page's) started.
#[derive(Debug)]
pub enum RefreshStart {
    /// MongoDB did not list the syncs in time: a job retries until it does.
    /// The syncs it will run, as last listed (empty when never listed).
    Queued(Vec<String>),
    /// `(sync, run id)` of each run started or joined.
    Started(Vec<(String, Uuid)>),
    /// A name no sync has, or the Master view.
    Unknown(String),
    /// Only a master view, or nothing at all.
    NothingToSync,
    ShuttingDown,
}

/// How long an admin refresh waits for the sync list before queueing the
/// refresh instead (MongoDB slow or down), when no list is known yet.
const ADMIN_LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// The same wait once a list is known: the answer then comes from that
/// list, so a person clicking "Refresh" is not kept waiting by a database
/// that will not answer anyway.
const ADMIN_LIST_QUICK: Duration = Duration::from_millis(100);

impl Daemon {
    /// Starts (or joins) a run of every sync, or of the named ones, for an
    /// admin. Answers within [`ADMIN_LIST_QUICK`] once the syncs have been
    /// listed (names are checked against the last list, the refresh is
    /// queued), else within [`ADMIN_LIST_TIMEOUT`], even when MongoDB does
    /// not answer.
    pub async fn start_refresh(self: &Arc<Self>, names: Vec<String>) -> RefreshStart {
        if !self.runs.is_accepting() {
            return RefreshStart::ShuttingDown;
        }
        let known = lock(&self.known_plans).clone();
        let wait = match known {
            Some(_) => ADMIN_LIST_QUICK,
            None => ADMIN_LIST_TIMEOUT,
        };
        let plans = match tokio::time::timeout(wait, self.load_plans()).await {
            Ok(Ok(plans)) => plans,
            Ok(Err(_)) | Err(_) => return self.queue_refresh(names, known),
        };
        let plans = match crate::syncs::select(plans, &names) {
            Ok(plans) => plans,
            Err(unknown) => return RefreshStart::Unknown(unknown.to_string()),
        };
        let mut started = Vec::new();
        for plan in plans.iter().filter(|plan| !plan.is_master()) {
            match self.request(plan, Trigger::Admin, None) {
                Some(id) => started.push((plan.name.clone(), id)),
                None => return RefreshStart::ShuttingDown,
            }
        }
        if started.is_empty() {
            return RefreshStart::NothingToSync;
        }
        tracing::info!(runs = started.len(), "admin refresh accepted");
        RefreshStart::Started(started)
    }

    /// Queues an admin refresh MongoDB could not list the syncs for: a job
    /// runs it once MongoDB answers. With a known list, a name it lacks is
    /// refused now and the answer names the syncs the refresh will run.
    fn queue_refresh(self: &Arc<Self>, names: Vec<String>, known: Option<Vec<SyncPlan>>) -> RefreshStart {
        let expected = match known.map(|plans| crate::syncs::select(plans, &names)) {
            Some(Ok(plans)) => {
                let expected: Vec<String> = plans
                    .iter()
                    .filter(|plan| !plan.is_master())
                    .map(|plan| plan.name.clone())
                    .collect();
                if expected.is_empty() {
                    return RefreshStart::NothingToSync;
                }
                expected
            }
            Some(Err(unknown)) => return RefreshStart::Unknown(unknown.to_string()),
            None => names.clone(),
        };
        tokio::spawn(Arc::clone(self).job_for(Trigger::Admin, None, names.clone()));
        tracing::info!(views = ?expected, "admin refresh queued until MongoDB answers");
        RefreshStart::Queued(expected)
    }

    /// Asks for a run of one view; starts it unless the view is busy (then
    /// the request joins the view's one follow-up run). `None` once shutdown
    /// has begun.
    pub fn request(self: &Arc<Self>, plan: &SyncPlan, trigger: Trigger, slot: Option<DateTime<Utc>>) -> Option<Uuid> {
        let admission = self.runs.request(&plan.name, trigger, slot, self.clock.now());
        if let Admission::Start(id) = admission {
            let daemon = Arc::clone(self);
            let plan = plan.clone();
            tokio::spawn(async move { daemon.drive(plan, id, trigger, slot).await });
        }
        admission.id()
    }

    /// Runs one view, then its follow-up runs, one after the other.
    pub(super) async fn drive(
        self: Arc<Self>,
        plan: SyncPlan,
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
    /// [`AbortOnDrop`]) and the lease expires on its own.
    pub(super) fn recover_from_panic(&self, plan: &SyncPlan, id: Uuid, message: String) {
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
    pub(super) async fn execute(
        self: &Arc<Self>,
        plan: &SyncPlan,
        id: Uuid,
        trigger: Trigger,
        slot: Option<DateTime<Utc>>,
    ) {
        let fail = |error: String| RunState::Failed { error };
        let view_id = plan.id.as_str();
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
        if leased && let Err(error) = self.leases.release(view_id).await {
            tracing::warn!(view = %plan.name, %error, "could not release the lease; it will expire");
        }
        self.finish(id, state);
    }

    pub(super) async fn sync_leased(
        self: &Arc<Self>,
        plan: &SyncPlan,
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
                    recorder::record_skip(&plan.name);
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
        let renewer = (!plan.id.is_empty()).then(|| self.spawn_renewer(plan, abort.clone()));
        let options = SyncOptions {
            run_id: Some(id),
            abort: abort.clone(),
            lease: Some(self.leases.clone()),
            ..SyncOptions::default()
        };
        lock(&self.progress).insert(plan.name.clone(), options.progress.clone());
        let logger = AbortOnDrop(tokio::spawn(log_progress(options.progress.clone())));
        let outcome = self
            .engine
            .sync(std::slice::from_ref(&plan.name), trigger, options)
            .await;
        drop(logger);
        lock(&self.progress).remove(&plan.name);
        drop(renewer);
        lock(&self.aborts).remove(&id);
        match outcome {
            Ok(reports) => match reports.into_iter().next() {
                Some(report) => {
                    recorder::record_run(&report);
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
    pub(super) fn spawn_renewer(self: &Arc<Self>, plan: &SyncPlan, abort: Abort) -> AbortOnDrop {
        let view = plan.name.clone();
        self.leases.keep_alive(&plan.id, move || {
            tracing::warn!(%view, "the lease of this view was lost while syncing; calling the sync off");
            abort.abort("the lease on this view was taken over by another process");
        })
    }

    pub(super) fn finish(&self, id: Uuid, state: RunState) {
        self.runs.set_state(id, state, self.clock.now());
        self.status_stale.notify_one();
    }

    /// Waits `backoff`, then doubles it up to `retry_max_secs`; `false` when
    /// shutdown began meanwhile.
    pub(super) async fn back_off(&self, backoff: &mut Duration) -> bool {
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
                                // Another application's server: its outage
                                // must not hold up the other syncs, nor
                                // count as the main database's.
                                Err(error) if plan.is_configured() => {
                                    tracing::warn!(
                                        sync = %plan.name, %error,
                                        "cannot read this sync's history; it waits for the next trigger"
                                    );
                                    done.push(plan.name.clone());
                                    continue;
                                }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_run_stops_its_renewer_and_keeps_the_message() {
        let (beat, mut beats) = tokio::sync::mpsc::unbounded_channel();
        let run = async {
            let _renewer = AbortOnDrop(tokio::spawn(async move {
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
