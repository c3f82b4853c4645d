//! Following the sources between the scheduled runs (`[watch]`): every
//! `interval_secs` each source the syncs read is asked, cheaply, whether it
//! changed (a file's length and time, a spreadsheet's Drive `version`, a
//! download's `ETag` or `Last-Modified` by `HEAD`); a
//! changed source's syncs run once it has been quiet for `quiet_secs`, and
//! at the latest `max_delay_secs` after the first change seen. A source
//! Google refuses to describe (the Drive API off, the scope refused) is
//! left to the schedule, with one message, not asked again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shared::Daemon;
use crate::concurrency::lock;
use crate::config::WatchSettings;
use crate::report::Trigger;
use crate::source::{ChangeMark, SourceError, SourceSpec};
use crate::syncs::SyncPlan;

/// The key a source is watched by: its file or its spreadsheet.
fn source_key(spec: &SourceSpec) -> String {
    match spec {
        SourceSpec::File { path, .. } => format!("file {}", path.display()),
        SourceSpec::GoogleSheet(sheet) => format!("spreadsheet {}", sheet.spreadsheet_id),
        SourceSpec::Download { url, .. } => format!("download {}", crate::redact::redact_url(url)),
    }
}

impl Daemon {
    /// The watch loop; returns at shutdown.
    pub(super) async fn watcher(self: Arc<Self>) {
        let settings = self.config().watch.clone();
        if !settings.enabled {
            return;
        }
        let mut wait = Duration::from_secs(settings.interval_secs);
        loop {
            lock(&self.watch).next_check = chrono::Duration::from_std(wait)
                .ok()
                .map(|wait| self.clock.now() + wait);
            if !self.pause(wait).await {
                return;
            }
            let pending = self.watch_once(&settings).await;
            // While a change waits for quiet, look again sooner.
            wait = match pending {
                true => Duration::from_secs(settings.quiet_secs.clamp(1, settings.interval_secs)),
                false => Duration::from_secs(settings.interval_secs),
            };
        }
    }

    /// Asks every watched source once; starts the syncs of those due.
    /// Whether a change is still waiting for quiet.
    async fn watch_once(self: &Arc<Self>, settings: &WatchSettings) -> bool {
        let Ok(plans) = self.load_plans().await else {
            return false;
        };
        let mut by_source: BTreeMap<String, (SourceSpec, Vec<SyncPlan>)> = BTreeMap::new();
        for plan in plans {
            let Some(target) = plan.target() else { continue };
            let key = source_key(&target.source);
            lock(&self.watch).source_of.insert(plan.name.clone(), key.clone());
            let entry = by_source
                .entry(key)
                .or_insert_with(|| (target.source.clone(), Vec::new()));
            entry.1.push(plan);
        }
        let mut pending = false;
        for (key, (spec, plans)) in by_source {
            if lock(&self.watch).refused.contains_key(&key) {
                continue;
            }
            let mark = match self.engine.sources.change_mark(&spec).await {
                Ok(Some(ChangeMark { mark, modified })) => {
                    if let Some(modified) = modified {
                        lock(&self.watch).edited.insert(key.clone(), modified);
                    }
                    mark
                }
                Ok(None) => continue,
                Err(error) => {
                    self.watch_failed(&key, error);
                    continue;
                }
            };
            let due = {
                let mut state = lock(&self.watch);
                let watched = state.sources.entry(key.clone()).or_default();
                let due = watched.observe(mark, Instant::now(), settings);
                pending |= watched.pending();
                due
            };
            if due {
                let names: Vec<&str> = plans.iter().map(|plan| plan.name.as_str()).collect();
                tracing::info!(source = %key, syncs = ?names, "the source changed; syncing");
                for plan in &plans {
                    self.request(plan, Trigger::Change, None);
                }
            }
        }
        pending
    }

    /// The watcher's state, locked: for the page.
    pub fn watch_state(&self) -> std::sync::MutexGuard<'_, super::watched::WatchState> {
        lock(&self.watch)
    }

    /// Why each source left to the schedule is not watched.
    pub fn not_watched(&self) -> Vec<String> {
        lock(&self.watch).refused.values().cloned().collect()
    }

    /// A source that could not be asked: Google's refusals leave it to the
    /// schedule (said once); anything else is tried again next time.
    fn watch_failed(&self, key: &str, error: SourceError) {
        let refused = matches!(
            &error,
            SourceError::Sheets(
                crate::source::sheets::SheetsError::ApiDisabled { .. }
                    | crate::source::sheets::SheetsError::NotShared { .. }
                    | crate::source::sheets::SheetsError::MissingScope { .. }
                    | crate::source::sheets::SheetsError::NotFound { .. }
            )
        );
        if refused {
            let message = format!(
                "{key} is not watched, only synced on schedule: {error} (watching asks the Drive API for the file's \
                 modifiedTime, with the drive.metadata.readonly scope)"
            );
            tracing::warn!(source = key, reason = %error, "a source is not watched, only synced on schedule");
            lock(&self.watch).refused.insert(key.to_owned(), message);
        } else {
            tracing::debug!(source = key, %error, "could not ask whether the source changed; trying again later");
        }
    }
}
