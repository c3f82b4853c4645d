//! The daemon's HTTP endpoints: `/healthz`, `/readyz`, `/status`, `/metrics`
//! and, with a token configured, `/admin/refresh` and `/admin/runs/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use mongodb::bson::{Document, doc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Daemon;
use crate::store::runs::SYNC_RUNS_COLLECTION;
use crate::store::{metadata, runs};
use crate::sync::Trigger;
use crate::views;

type Shared = Arc<Daemon>;

pub fn router(daemon: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/admin/refresh", post(refresh))
        .route("/admin/runs/{id}", get(run_result))
        .with_state(daemon)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// 200 only when MongoDB answers a ping and the scheduler loop is alive.
/// Unauthenticated, so it says what is wrong but not the driver's details
/// (hosts, ports): those are logged, and in `/status` with the token.
async fn readyz(State(daemon): State<Shared>) -> Response {
    let mut problems = Vec::new();
    if daemon.shutting_down() || !daemon.runs.is_accepting() {
        problems.push("shutting down".to_owned());
    }
    if daemon.check_mongo().await.is_err() {
        problems.push("MongoDB does not answer (details in the log)".to_owned());
    }
    if !daemon.scheduler_alive() {
        problems.push(format!(
            "scheduler loop: no heartbeat for {} s",
            daemon.heartbeat_age().as_secs()
        ));
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
            .into_response()
    }
}

async fn metrics(State(daemon): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        daemon.metrics.render(),
    )
        .into_response()
}

/// JSON: per view last run, last success, last error, record count, next run;
/// version and uptime. Without the admin token only names, states, times and
/// counts are shown (see [`without_content`]).
async fn status(State(daemon): State<Shared>, headers: HeaderMap) -> Response {
    // `check_admin` refuses every request when no token is configured.
    let authorized = check_admin(&daemon, &headers).is_none();
    let zone = daemon.schedule.zone();
    let next_run = daemon.next_run().map(|next| next.with_timezone(&zone).to_rfc3339());
    let mongo = daemon.mongo_state();
    let mut body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": daemon.started_at,
        "uptime_secs": daemon.started.elapsed().as_secs(),
        "owner": daemon.leases.owner(),
        "schedule": { "cron": daemon.schedule.expression(), "time_zone": zone.name(), "next_run": next_run },
        "scheduler_alive": daemon.scheduler_alive(),
        "accepting_work": daemon.runs.is_accepting(),
        "mongo": { "reachable": mongo.reachable, "detail": mongo.detail, "checked_at": mongo.checked_at },
        "running": daemon.runs.running(),
    });
    let views = match daemon.load_plans().await {
        Ok(plans) => {
            let mut views = Vec::new();
            for plan in plans {
                if plan.is_master() {
                    continue;
                }
                views.push(view_status(&daemon, &plan, next_run.as_deref()).await);
            }
            Value::Array(views)
        }
        Err(reason) => {
            body["views_error"] = json!(reason);
            Value::Array(Vec::new())
        }
    };
    body["views"] = views;
    if !authorized {
        without_content(&mut body);
    }
    Json(body).into_response()
}

/// What `/status` shows anyone who can reach the port: names, states,
/// timestamps and counts. Source URLs and paths, error texts (which may quote
/// a source's cells), host names in lease owners and MongoDB details need the
/// admin token.
fn without_content(body: &mut Value) {
    const HIDDEN: &[&str] = &["owner", "detail", "views_error", "source", "status", "error"];
    match body {
        Value::Object(fields) => {
            fields.retain(|name, _| !HIDDEN.contains(&name.as_str()));
            fields.values_mut().for_each(without_content);
        }
        Value::Array(items) => items.iter_mut().for_each(without_content),
        _ => {}
    }
}

async fn view_status(daemon: &Daemon, plan: &views::ViewPlan, next_run: Option<&str>) -> Value {
    let db = &daemon.syncer.db;
    let history = db.collection::<Document>(SYNC_RUNS_COLLECTION);
    let (running, follow_up) = daemon.runs.flight_of(&plan.name);
    let summary = |document: Document| {
        json!({
            "run_id": document.get_str("run_id").ok(),
            "trigger": document.get_str("trigger").ok(),
            "outcome": document.get_str("outcome").ok(),
            "started_at": document.get_datetime("started_at").ok().and_then(|at| crate::mapping::values::from_bson_date(*at)),
            "finished_at": document.get_datetime("finished_at").ok().and_then(|at| crate::mapping::values::from_bson_date(*at)),
            "records_written": document.get("records_written").map(|value| value.clone().into_relaxed_extjson()),
            "error": document.get_str("error").ok(),
        })
    };
    let latest = |filter: Document| history.find_one(filter).sort(doc! { "started_at": -1 });
    let last_run = latest(doc! { "view": &plan.name }).await.ok().flatten().map(summary);
    let last_error = latest(doc! { "view": &plan.name, "outcome": "failed" })
        .await
        .ok()
        .flatten()
        .map(summary);
    let (last_success, records): (Option<DateTime<Utc>>, Option<i64>) =
        match metadata::last_update(db, &plan.view_id).await {
            Ok(Some((at, count))) => (Some(at), Some(count)),
            _ => (None, None),
        };
    let summary = plan.summary();
    json!({
        "name": plan.name,
        "view_id": plan.view_id,
        "collection": summary.collection,
        "source": summary.source,
        "status": summary.status,
        "running": running,
        "follow_up_queued": follow_up,
        "last_run": last_run,
        "last_success": last_success,
        "last_error": last_error,
        "records_count": records,
        "next_run": next_run,
    })
}

/// `None` when the request may go on; the refusal otherwise.
fn check_admin(daemon: &Daemon, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &daemon.config().daemon.admin_token else {
        // Off: indistinguishable from an unknown path.
        return Some(StatusCode::NOT_FOUND.into_response());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(candidate) if token.matches(candidate) => None,
        _ => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "a valid `Authorization: Bearer <token>` is required",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(response)
        }
    }
}

#[derive(Debug, Deserialize)]
struct RefreshQuery {
    view: Option<String>,
}

/// Starts (or joins) a run of every view, or of `?view=NAME`: 202 with the
/// run ids.
async fn refresh(State(daemon): State<Shared>, headers: HeaderMap, Query(query): Query<RefreshQuery>) -> Response {
    if let Some(refusal) = check_admin(&daemon, &headers) {
        return refusal;
    }
    if !daemon.runs.is_accepting() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let plans = match daemon.load_plans().await {
        Ok(plans) => plans,
        Err(reason) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot list the views: {reason}"),
            );
        }
    };
    let names: Vec<String> = query.view.into_iter().collect();
    let plans = match views::select(plans, &names) {
        Ok(plans) => plans,
        Err(unknown) => return error(StatusCode::NOT_FOUND, unknown.to_string()),
    };
    let mut started = Vec::new();
    for plan in plans.iter().filter(|plan| !plan.is_master()) {
        match daemon.request(plan, Trigger::Admin, None) {
            Some(id) => started.push(json!({ "view": plan.name, "run_id": id.simple().to_string() })),
            None => return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        }
    }
    if started.is_empty() {
        return error(StatusCode::NOT_FOUND, "no view to sync (only a master view, or none)");
    }
    tracing::info!(runs = started.len(), "admin refresh accepted");
    (StatusCode::ACCEPTED, Json(json!({ "runs": started }))).into_response()
}

/// A run: from this process's memory while it is recent, else from the
/// `sync_runs` history (runs of other replicas too).
async fn run_result(State(daemon): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(refusal) = check_admin(&daemon, &headers) {
        return refusal;
    }
    if let Some(record) = Uuid::parse_str(&id).ok().and_then(|id| daemon.runs.get(id)) {
        return Json(record).into_response();
    }
    let stored = daemon
        .syncer
        .db
        .collection::<Document>(runs::SYNC_RUNS_COLLECTION)
        .find_one(doc! { "run_id": &id })
        .await;
    match stored {
        Ok(Some(document)) => Json(json!({
            "id": id,
            "state": "finished",
            "report": mongodb::bson::Bson::Document(document).into_relaxed_extjson(),
        }))
        .into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(failure) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read `sync_runs`: {failure}"),
        ),
    }
}
