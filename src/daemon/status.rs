//! What `/status` shows of each sync, read from MongoDB in the background
//! (after every run, and every few seconds), never per request: a slow or
//! unreachable database must not make the endpoint hang.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::bson::{Bson, Document};

use super::page::{ColumnNotice, HISTORY_RUNS, IssueView, RunPoint, RunView, SyncPage};
use super::shared::{Daemon, StatusSnapshot};
use crate::concurrency::lock;
use crate::report::Changes;
use crate::source::SourceSpec;
use crate::store::{StoreError, metadata, runs};
use crate::syncs::SyncPlan;

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
        let (mut views, mut pages) = (Vec::new(), Vec::new());
        for plan in plans.iter().filter(|plan| !plan.is_master()) {
            let (view, page) = self.view_status(plan).await;
            views.push(view);
            pages.push(page);
        }
        *lock(&self.status) = StatusSnapshot {
            views,
            pages,
            error: None,
            refreshed_at: Some(self.clock.now()),
        };
    }

    /// One view's part of `/status`; what cannot be read is left null.
    pub(super) async fn view_status(&self, plan: &SyncPlan) -> (serde_json::Value, SyncPage) {
        let home = self.engine.home_of(plan).await;
        let db = home.as_ref().unwrap_or(&self.engine.db);
        let summary = |document: mongodb::bson::Document| {
            let at = |field: &str| {
                document
                    .get_datetime(field)
                    .ok()
                    .and_then(|at| crate::bson_dates::from_bson_date(*at))
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
        let last_document = runs::latest(db, &plan.name, mongodb::bson::doc! {})
            .await
            .ok()
            .flatten();
        let history = runs::recent(db, &plan.name, HISTORY_RUNS as i64)
            .await
            .unwrap_or_default();
        let last_run = last_document.clone().map(summary);
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
        let page = SyncPage {
            name: plan.name.clone(),
            collection: summary.collection.clone(),
            source: summary.source.clone(),
            sheet_link: sheet_link(plan, last_document.as_ref()),
            last_run: last_document.as_ref().map(run_view),
            last_success,
            records,
            history: history.iter().map(run_point).collect(),
            columns: column_notices(&history),
        };
        let view = serde_json::json!({
            "name": plan.name,
            "view_id": plan.id,
            "collection": summary.collection,
            "source": summary.source,
            "status": summary.status,
            "last_run": last_run,
            "last_success": last_success,
            "last_error": last_error,
            "records_count": records,
        });
        (view, page)
    }

    /// When the sync was last synced successfully, by any replica; a failure
    /// to read a view's marks MongoDB unreachable.
    pub(super) async fn last_success(&self, plan: &SyncPlan) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.last_update(plan).await {
            Ok(last) => Ok(last.map(|(at, _)| at)),
            Err(error) => {
                // A configured sync's history may live on another server,
                // whose state is not the main database's.
                if !plan.is_configured() {
                    self.set_mongo(false, error.to_string());
                }
                Err(error)
            }
        }
    }

    /// A run from the history: in the views' database, or in a configured
    /// sync's own.
    pub async fn stored_run(&self, run_id: &str) -> Result<Option<mongodb::bson::Document>, StoreError> {
        if let Some(run) = runs::by_id(&self.engine.db, run_id).await? {
            return Ok(Some(run));
        }
        for sync in &self.config().syncs {
            let place = crate::syncs::Place::Other {
                database: sync.entry.database.clone(),
                mongo_url: sync.mongo_url.clone(),
            };
            let db = self.engine.database(&place).await?;
            if let Some(run) = runs::by_id(&db, run_id).await? {
                return Ok(Some(run));
            }
        }
        Ok(None)
    }

    /// When the sync last succeeded and with how many records: a view's
    /// `data_metadata` entry, or a configured sync's last successful run in
    /// its own database's `sync_runs`.
    pub(super) async fn last_update(&self, plan: &SyncPlan) -> Result<Option<(DateTime<Utc>, i64)>, StoreError> {
        if !plan.is_configured() {
            return metadata::last_update(&self.engine.db, &plan.id).await;
        }
        let db = self.engine.home_of(plan).await?;
        let succeeded = mongodb::bson::doc! { "outcome": { "$in": ["success", "success_with_warnings", "unchanged"] } };
        let Some(run) = runs::latest(&db, &plan.name, succeeded).await? else {
            return Ok(None);
        };
        let finished = run
            .get_datetime("finished_at")
            .ok()
            .and_then(|at| crate::bson_dates::from_bson_date(*at));
        let records = runs::stored_count(&run, "records_written");
        Ok(finished.map(|at| (at, records)))
    }
}

fn at(document: &Document, field: &str) -> Option<DateTime<Utc>> {
    document
        .get_datetime(field)
        .ok()
        .and_then(|at| crate::bson_dates::from_bson_date(*at))
}

/// A stored run as the page shows it. Older runs have no `*_count` fields:
/// their lists' lengths are the counts then.
fn run_view(document: &Document) -> RunView {
    let listed = |field: &str| document.get_array(field).map_or(0, Vec::len);
    let exact = |field: &str, list: &str| match document.get(field) {
        Some(_) => runs::stored_count(document, field),
        None => i64::try_from(listed(list)).unwrap_or(i64::MAX),
    };
    let changes = document.get_document("changes").ok();
    let change = |field: &str| {
        changes.map_or(0, |changes| {
            usize::try_from(runs::stored_count(changes, field)).unwrap_or(0)
        })
    };
    let mut issues = issues_of(document, "rejected", true);
    issues.extend(issues_of(document, "warnings", false));
    RunView {
        outcome: document.get_str("outcome").unwrap_or("unknown").to_owned(),
        trigger: document.get_str("trigger").unwrap_or("").to_owned(),
        write_path: document.get_str("write_path").ok().map(str::to_owned),
        finished_at: at(document, "finished_at"),
        rows_read: runs::stored_count(document, "rows_read"),
        records_written: runs::stored_count(document, "records_written"),
        duplicates_merged: runs::stored_count(document, "duplicates_merged"),
        rejected: exact("rejected_count", "rejected"),
        warnings: exact("warnings_count", "warnings"),
        changes: Changes {
            inserted: change("inserted"),
            updated: change("updated"),
            removed: change("removed"),
            moved: change("moved"),
            unchanged: change("unchanged"),
        },
        error: document.get_str("error").ok().map(str::to_owned),
        issues,
    }
}

fn issues_of(document: &Document, field: &str, rejected: bool) -> Vec<IssueView> {
    let Ok(list) = document.get_array(field) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(Bson::as_document)
        .map(|issue| IssueView {
            rejected,
            row: runs::stored_count(issue, "row"),
            column: issue.get_str("column").ok().map(str::to_owned),
            value: issue.get_str("value").ok().map(str::to_owned),
            reason: issue.get_str("reason").unwrap_or_default().to_owned(),
        })
        .collect()
}

/// The columns the latest run found lost or emptied, when it refused the
/// refresh or kept the stored values, each with the first run of the
/// streak (newest first in `history`) that found it so.
fn column_notices(history: &[Document]) -> Vec<ColumnNotice> {
    let problems = |run: &Document| -> Vec<Document> {
        run.get_array("column_problems")
            .map(|problems| {
                problems
                    .iter()
                    .filter_map(|problem| problem.as_document().cloned())
                    .collect()
            })
            .unwrap_or_default()
    };
    // A run that failed before its columns were weighed (a fetch error)
    // says nothing about them: it neither ends a streak nor starts one.
    let silent = |run: &Document| run.get_str("outcome") == Ok("failed") && problems(run).is_empty();
    let weighed: Vec<&Document> = history.iter().filter(|run| !silent(run)).collect();
    let Some(latest) = weighed.first().copied() else {
        return Vec::new();
    };
    let failed = latest.get_str("outcome") == Ok("failed");
    problems(latest)
        .into_iter()
        .filter(|problem| failed || problem.get_bool("kept").unwrap_or(false))
        .map(|problem| {
            let field = problem.get_str("field").unwrap_or_default().to_owned();
            let has_it = |run: &&Document| {
                problems(run)
                    .iter()
                    .any(|other| other.get_str("field") == Ok(field.as_str()))
            };
            let streak = weighed
                .iter()
                .take_while(|run| has_it(run))
                .last()
                .copied()
                .unwrap_or(latest);
            ColumnNotice {
                column: problem.get_str("label").unwrap_or(&field).to_owned(),
                lost: problem.get_str("kind") == Ok("lost"),
                since: at(streak, "started_at"),
                kept: problem.get_bool("kept").unwrap_or(false),
            }
        })
        .collect()
}

fn run_point(document: &Document) -> RunPoint {
    RunPoint {
        started_at: at(document, "started_at"),
        duration_ms: runs::stored_count(document, "duration_ms"),
        records: runs::stored_count(document, "records_written"),
        failed: document.get_str("outcome") == Ok("failed"),
    }
}

/// The Google Sheet a plan reads, at the tab its last run read (or the
/// link's own `gid`).
fn sheet_link(plan: &SyncPlan, last_run: Option<&Document>) -> Option<String> {
    let SourceSpec::GoogleSheet(sheet) = &plan.target()?.source else {
        return None;
    };
    let read = last_run.and_then(|run| match run.get("tab_gid") {
        Some(Bson::Int64(gid)) => Some(*gid),
        Some(Bson::Int32(gid)) => Some(i64::from(*gid)),
        _ => None,
    });
    let gid = read.or(sheet.gid).unwrap_or(0);
    Some(format!(
        "https://docs.google.com/spreadsheets/d/{}/edit#gid={gid}",
        sheet.spreadsheet_id
    ))
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{DateTime as BsonDateTime, doc};

    use super::*;

    #[test]
    fn a_column_notice_dates_from_the_first_run_of_its_streak() {
        let run = |minutes: i64, outcome: &str, field: Option<&str>| {
            let problems: Vec<Document> = field
                .map(|field| doc! { "field": field, "label": "Expected MRR", "kind": "lost" })
                .into_iter()
                .collect();
            doc! {
                "started_at": BsonDateTime::from_millis(minutes * 60_000),
                "outcome": outcome,
                "column_problems": problems,
            }
        };
        // Newest first: a fetch failure, two refusals between which another
        // fetch failed, before them a success.
        let history = [
            run(40, "failed", None),
            run(30, "failed", Some("expected_mrr")),
            run(25, "failed", None),
            run(20, "failed", Some("expected_mrr")),
            run(10, "success", None),
        ];
        let notices = column_notices(&history);
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].column, "Expected MRR");
        assert!(notices[0].lost && !notices[0].kept);
        assert_eq!(notices[0].since, DateTime::from_timestamp(20 * 60, 0));
        // Fixed since: the latest run succeeded without keeping anything.
        assert!(column_notices(&[run(50, "success", Some("expected_mrr"))]).is_empty());
    }
}
