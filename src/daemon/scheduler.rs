//! The scheduler loop and the start-up: slots fire jobs; start-up waits for
//! MongoDB, says READY and runs the catch-up.

use std::sync::Arc;
use std::time::Instant;

use super::lifecycle::Notifier;
use super::shared::Daemon;
use crate::concurrency::lock;
use crate::report::Trigger;
use crate::schedule::{Tick, Ticker};

impl Daemon {
    /// The scheduler loop: reads the wall clock after every wake-up, fires a
    /// job per due slot, sleeps in bounded slices and beats its heartbeat
    /// (and the systemd watchdog) on every turn.
    pub(super) async fn scheduler(self: Arc<Self>, notifier: Notifier) {
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
    pub(super) async fn start(self: Arc<Self>, notifier: Notifier) {
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
        if let Err(error) = self.engine.ensure_indexes(&[]).await {
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
