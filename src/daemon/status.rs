//! What `/status` shows of each sync, read from MongoDB in the background
//! (after every run, and every few seconds), never per request: a slow or
//! unreachable database must not make the endpoint hang.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Daemon, lock};
use crate::store::{StoreError, metadata, runs};
use crate::syncs::ViewPlan;

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

impl Daemon {
    /// The `/status` snapshot.
    pub fn status_snapshot(&self) -> StatusSnapshot {
        lock(&self.status).clone()
    }

    /// Keeps the `/status` snapshot fresh: after every run, and every
    /// [`STATUS_REFRESH`]. Each read is bounded by the MongoDB time limits;
    /// while the database does not answer, the last snapshot stays, with the
    /// reason.
    pub(super) async fn status_refresher(self: Arc<Self>) {
        loop {
            self.refresh_status().await;
            tokio::select! {
                () = self.status_stale.notified() => {}
                () = tokio::time::sleep(STATUS_REFRESH) => {}
                () = self.until_shutdown() => return,
            }
        }
    }

    pub(super) async fn refresh_status(&self) {
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
    pub(super) async fn view_status(&self, plan: &ViewPlan) -> serde_json::Value {
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

    /// When the view was last synced successfully, by any replica; a failure
    /// to read it marks MongoDB unreachable.
    pub(super) async fn last_success(&self, plan: &ViewPlan) -> Result<Option<DateTime<Utc>>, StoreError> {
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
    pub(super) async fn last_update(&self, plan: &ViewPlan) -> Result<Option<(DateTime<Utc>, i64)>, StoreError> {
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
}
