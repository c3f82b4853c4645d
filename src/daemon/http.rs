//! The daemon's HTTP endpoints: `/healthz`, `/readyz`, `/status`, `/metrics`
//! and, with a token configured, `/admin/refresh` and `/admin/runs/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Daemon;
use crate::report::Trigger;
use crate::syncs;

type Shared = Arc<Daemon>;

/// How long an admin refresh waits for the view list before queueing the
/// refresh instead (MongoDB slow or down).
const ADMIN_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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
    // The views' part comes from the daemon's snapshot (refreshed in the
    // background and after every run): a request never queries MongoDB, so
    // `/status` answers at once even when the database is busy or down.
    let snapshot = daemon.status_snapshot();
    let views: Vec<Value> = snapshot
        .views
        .into_iter()
        .map(|mut view| {
            let name = view["name"].as_str().unwrap_or_default().to_owned();
            let (running, follow_up) = daemon.runs.flight_of(&name);
            view["running"] = json!(running);
            view["follow_up_queued"] = json!(follow_up);
            view["next_run"] = json!(next_run);
            view
        })
        .collect();
    body["views_refreshed_at"] = json!(snapshot.refreshed_at);
    if let Some(error) = snapshot.error {
        body["views_error"] = json!(error);
    }
    let views = Value::Array(views);
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
    let names: Vec<String> = query.view.into_iter().collect();
    // MongoDB slow or down: the refresh is queued as a job that retries
    // until the database answers, and the caller is told at once.
    let plans = match tokio::time::timeout(ADMIN_LIST_TIMEOUT, daemon.load_plans()).await {
        Ok(Ok(plans)) => plans,
        Ok(Err(_)) | Err(_) => {
            tokio::spawn(Arc::clone(&daemon).job_for(Trigger::Admin, None, names.clone()));
            tracing::info!(views = ?names, "admin refresh queued until MongoDB answers");
            let body = json!({ "queued": true, "views": names, "runs": [], "reason": "MongoDB does not answer yet" });
            return (StatusCode::ACCEPTED, Json(body)).into_response();
        }
    };
    let plans = match syncs::select(plans, &names) {
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
    match daemon.stored_run(&id).await {
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
