//! `sheetsync sync` from a shell, under the same per-sync leases the daemon
//! takes, so that a refresh from the command line and one from a daemon
//! never both write a sync.

use std::time::Instant;

use super::{Engine, SyncError, SyncOptions};
use crate::report::{SyncReport, Trigger};
use crate::store::lease::{self, Leases};
use crate::syncs::{self, SyncPlan};

/// How often `sync_exclusive` looks again at a lease another process holds.
const LEASE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

impl Engine {
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
    ) -> Result<Vec<SyncReport>, SyncError> {
        if options.dry_run {
            return self.sync(names, Trigger::Cli, options).await;
        }
        let leases = Leases::new(self.db.clone(), lease::owner_id("cli"), self.config.daemon.lease());
        let plans = syncs::select(syncs::load_plans(&self.db, &self.config.syncs_config()).await?, names)?;
        let plans: Vec<SyncPlan> = plans.into_iter().filter(|plan| !plan.is_master()).collect();
        let deadline = Instant::now() + wait;
        // Each lease is renewed from the moment it is taken (waiting for the
        // next view's must not let it expire) and released on every path.
        let (mut held, mut refused) = (Vec::new(), Vec::new());
        let mut failure = None;
        for plan in &plans {
            match self.acquire_until(&leases, plan, deadline).await {
                Ok(None) => {
                    let renewer = (!plan.id.is_empty()).then(|| leases.keep_alive(&plan.id, || {}));
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
            if plan.id.is_empty() {
                continue;
            }
            if let Err(error) = leases.release(&plan.id).await {
                tracing::warn!(view = %plan.name, %error, "could not release the lease; it will expire");
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        let mut synced = synced?;
        for (plan, reason) in refused {
            let mut report = super::new_report(plan, Trigger::Cli, None);
            report.error = Some(reason);
            super::log_summary(&report);
            if let Err(error) = self.record_run(plan, &report).await {
                tracing::error!(view = %report.name, %error, "could not record the run history");
            }
            synced.push(report);
        }
        let position = |name: &str| plans.iter().position(|plan| plan.name == name);
        synced.sort_by_key(|report| position(&report.name));
        Ok(synced)
    }

    /// Takes the lease of `plan`'s view, polling until `deadline`; `Some`
    /// reason when another process still holds it then. Views without an id
    /// need none: the engine reports them as invalid without writing.
    async fn acquire_until(
        &self,
        leases: &Leases,
        plan: &SyncPlan,
        deadline: Instant,
    ) -> Result<Option<String>, SyncError> {
        if plan.id.is_empty() {
            return Ok(None);
        }
        loop {
            if leases.try_acquire(&plan.id).await? {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                let holder = match leases.holder(&plan.id).await? {
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
}
