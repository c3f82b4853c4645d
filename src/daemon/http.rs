//! The daemon's HTTP endpoints: the status page (`/`, with `/login`,
//! `/logout` and `/refresh` for its forms), `/healthz`, `/readyz`, `/status`,
//! `/metrics` and, with a token configured, `/admin/refresh` and
//! `/admin/runs/{id}`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::executor::RefreshStart;
use super::shared::Daemon;
use super::throttle::Admission;
use super::{page, session};

type Shared = Arc<Daemon>;

pub fn router(daemon: Shared) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/refresh", post(page_refresh))
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
    // Not a readiness problem (the schedule covers those sources), but
    // what an operator probing the daemon should hear of.
    let not_watched = daemon.not_watched().len();
    let note = match not_watched {
        0 => String::new(),
        count => format!(
            "note: {count} source(s) not watched, synced on schedule only: Google refused to describe them (enable \
             the Google Drive API and the drive.metadata.readonly scope); details on /status with the admin token\n"
        ),
    };
    if problems.is_empty() {
        (StatusCode::OK, format!("ready\n{note}")).into_response()
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
async fn status(State(daemon): State<Shared>, Client(client): Client, headers: HeaderMap) -> Response {
    // Without a token the public view; a token presented is checked (and a
    // wrong one counted) as on the admin routes.
    let authorized = bearer(&headers).is_some() && {
        match check_admin(&daemon, client, &headers, "/status") {
            None => true,
            Some(refusal) if refusal.status() == StatusCode::TOO_MANY_REQUESTS => return refusal,
            Some(_) => false,
        }
    };
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
    let progress = daemon.progress();
    let views: Vec<Value> = snapshot
        .views
        .into_iter()
        .map(|mut view| {
            let name = view["name"].as_str().unwrap_or_default().to_owned();
            let (running, follow_up) = daemon.runs.flight_of(&name);
            view["running"] = json!(running);
            if let Some(now) = progress.get(&name) {
                view["progress"] = json!({
                    "phase": now.phase,
                    "done": now.done,
                    "known": now.known,
                    "per_second": now.rate().map(|rate| rate.round() as u64),
                    "seconds_left": now.left().map(|left| left.as_secs()),
                });
            }
            view["follow_up_queued"] = json!(follow_up);
            view["next_run"] = json!(next_run);
            view
        })
        .collect();
    body["views_refreshed_at"] = json!(snapshot.refreshed_at);
    let watch = &daemon.config().watch;
    let not_watched: Vec<String> = daemon.not_watched();
    body["watch"] = json!({
        "enabled": watch.enabled,
        "interval_secs": watch.interval_secs,
        "quiet_secs": watch.quiet_secs,
        "not_watched_count": not_watched.len(),
        "not_watched": not_watched,
    });
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
    const HIDDEN: &[&str] = &[
        "owner",
        "detail",
        "views_error",
        "source",
        "status",
        "error",
        "not_watched",
    ];
    match body {
        Value::Object(fields) => {
            fields.retain(|name, _| !HIDDEN.contains(&name.as_str()));
            fields.values_mut().for_each(without_content);
        }
        Value::Array(items) => items.iter_mut().for_each(without_content),
        _ => {}
    }
}

/// Why a presented token opened nothing.
enum Refusal {
    /// No admin token is configured: the admin surface does not exist.
    Off,
    /// Missing or wrong: counted against the client.
    Wrong,
    /// The client failed too often; it may try again after this.
    Throttled(Duration),
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Checks the token `client` presented on `route`, through the throttle: a
/// throttled client's token is not even looked at, and every failure is
/// counted (`throttle`).
fn authenticate(daemon: &Daemon, client: IpAddr, route: &'static str, presented: Option<&str>) -> Result<(), Refusal> {
    let Some(token) = &daemon.config().daemon.admin_token else {
        return Err(Refusal::Off);
    };
    if let Admission::Wait(wait) = daemon.auth_throttle.admit(client, route) {
        return Err(Refusal::Throttled(wait));
    }
    match presented {
        Some(candidate) if token.matches(candidate) => {
            daemon.auth_throttle.succeeded(client);
            Ok(())
        }
        _ => {
            daemon.auth_throttle.failed(client, route);
            Err(Refusal::Wrong)
        }
    }
}

/// 429 with `Retry-After`, in whole seconds rounded up.
fn too_many_attempts(mut response: Response, wait: Duration) -> Response {
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// `None` when the request may go on; the refusal otherwise.
fn check_admin(daemon: &Daemon, client: IpAddr, headers: &HeaderMap, route: &'static str) -> Option<Response> {
    match authenticate(daemon, client, route, bearer(headers)) {
        Ok(()) => None,
        // Off: indistinguishable from an unknown path.
        Err(Refusal::Off) => Some(StatusCode::NOT_FOUND.into_response()),
        Err(Refusal::Wrong) => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "a valid `Authorization: Bearer <token>` is required",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(response)
        }
        Err(Refusal::Throttled(wait)) => Some(too_many_attempts(
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed authentications from this address; wait before trying again",
            ),
            wait,
        )),
    }
}

/// The client a request comes from, as the throttle counts it: the peer,
/// or behind a trusted proxy the address it forwards (`client`).
struct Client(IpAddr);

impl FromRequestParts<Shared> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, daemon: &Shared) -> Result<Client, Self::Rejection> {
        // The server gives every connection its peer; a request without one
        // (only a test calling the router directly) counts as unspecified.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| peer.ip());
        Ok(Client(daemon.clients.of(peer, &parts.headers)))
    }
}

/// A request that carried the admin token (`check_admin`); refused with
/// 404, 401 or 429 otherwise.
struct Admin;

impl FromRequestParts<Shared> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, daemon: &Shared) -> Result<Admin, Response> {
        let Ok(Client(client)) = Client::from_request_parts(parts, daemon).await;
        // One label per route in the metrics, not one per run id.
        let route = match parts.uri.path() {
            "/admin/refresh" => "/admin/refresh",
            _ => "/admin/runs",
        };
        match check_admin(daemon, client, &parts.headers, route) {
            None => Ok(Admin),
            Some(refusal) => Err(refusal),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RefreshQuery {
    view: Option<String>,
}

/// Starts (or joins) a run of every view, or of `?view=NAME`: 202 with the
/// run ids.
async fn refresh(State(daemon): State<Shared>, _: Admin, Query(query): Query<RefreshQuery>) -> Response {
    let names: Vec<String> = query.view.into_iter().collect();
    match daemon.start_refresh(names).await {
        RefreshStart::Started(runs) => {
            let runs: Vec<Value> = runs
                .iter()
                .map(|(view, id)| json!({ "view": view, "run_id": id.simple().to_string() }))
                .collect();
            (StatusCode::ACCEPTED, Json(json!({ "runs": runs }))).into_response()
        }
        RefreshStart::Queued(views) => {
            let body = json!({ "queued": true, "views": views, "runs": [], "reason": "MongoDB does not answer yet" });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        RefreshStart::Unknown(unknown) => error(StatusCode::NOT_FOUND, unknown),
        RefreshStart::NothingToSync => error(StatusCode::NOT_FOUND, "no view to sync (only a master view, or none)"),
        RefreshStart::ShuttingDown => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

/// A run: from this process's memory while it is recent, else from the
/// `sync_runs` history (runs of other replicas too).
async fn run_result(State(daemon): State<Shared>, _: Admin, Path(id): Path<String>) -> Response {
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

#[derive(Debug, Deserialize)]
struct PageQuery {
    note: Option<String>,
}

/// The message a redirect asks the page to show: one of a fixed set, so
/// that nothing a link carries is ever echoed.
fn note_text(note: &str) -> Option<&'static str> {
    Some(match note {
        "signed-in" => "Signed in.",
        "signed-out" => "Signed out.",
        "refresh-started" => "Refresh started; this page follows it.",
        "refresh-queued" => "MongoDB does not answer yet: the refresh runs once it does.",
        "refresh-refused" => "That refresh could not start (an unknown sync, or sheetsync is shutting down).",
        "wrong-token" => "Wrong token.",
        "too-many-attempts" => "Too many wrong tokens from this address; wait a while before trying again.",
        _ => return None,
    })
}

/// `GET /`: the status page (see `page`).
async fn status_page(State(daemon): State<Shared>, headers: HeaderMap, Query(query): Query<PageQuery>) -> Response {
    let session = daemon.sessions.of(&headers);
    let status = if query.note.as_deref() == Some("wrong-token") {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    html(
        status,
        render_page(&daemon, session.as_ref(), query.note.as_deref().and_then(note_text)),
    )
}

fn render_page(daemon: &Daemon, session: Option<&session::Session>, flash: Option<&str>) -> String {
    let snapshot = daemon.status_snapshot();
    let syncs = snapshot
        .pages
        .iter()
        .map(|sync| {
            let state = match daemon.runs.flight_of(&sync.name) {
                (true, true) => page::State::Queued,
                (true, false) => page::State::Running,
                _ => page::State::Idle,
            };
            (sync, state)
        })
        .collect();
    page::render(&page::Page {
        now: daemon.clock.now(),
        zone: daemon.schedule.zone(),
        next_run: daemon.next_run(),
        syncs,
        problem: snapshot.error.clone(),
        refreshed_at: snapshot.refreshed_at,
        freshness: daemon.config().watch.enabled.then(|| {
            let watch = daemon.watch_state();
            snapshot
                .pages
                .iter()
                .filter_map(|sync| Some((sync.name.clone(), watch.freshness(&sync.name)?)))
                .collect()
        }),
        progress: daemon.progress(),
        csrf: session.map(|session| session.csrf.as_str()),
        can_sign_in: daemon.config().daemon.admin_token.is_some(),
        flash,
    })
}

/// An HTML answer no cache keeps and no other site may frame; scripts and
/// forms only from the page itself.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

fn redirect(note: &str, cookie: Option<String>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, format!("/?note={note}"))]).into_response();
    if let Some(value) = cookie.and_then(|cookie| HeaderValue::from_str(&cookie).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// A wrong token costs the caller this long, on top of the throttle's count.
const WRONG_TOKEN_DELAY: Duration = Duration::from_millis(500);

/// `POST /login`: the admin token, typed into the page's form, opens a
/// session; the token is never put in a URL or a page.
async fn login(State(daemon): State<Shared>, Client(client): Client, Form(form): Form<LoginForm>) -> Response {
    match authenticate(&daemon, client, "/login", Some(form.token.trim())) {
        Ok(()) => {}
        Err(Refusal::Off) => return StatusCode::NOT_FOUND.into_response(),
        Err(Refusal::Wrong) => {
            tokio::time::sleep(WRONG_TOKEN_DELAY).await;
            return html(
                StatusCode::UNAUTHORIZED,
                render_page(&daemon, None, note_text("wrong-token")),
            );
        }
        Err(Refusal::Throttled(wait)) => {
            let page = html(
                StatusCode::TOO_MANY_REQUESTS,
                render_page(&daemon, None, note_text("too-many-attempts")),
            );
            return too_many_attempts(page, wait);
        }
    }
    let settings = &daemon.config().daemon;
    let (id, _) = daemon.sessions.create();
    tracing::info!("status page: signed in");
    redirect("signed-in", Some(session::set_cookie(&id, settings.secure_cookies)))
}

#[derive(Deserialize)]
struct PageForm {
    csrf: String,
    sync: Option<String>,
}

/// `None` when a form post comes from this page in a signed-in session;
/// the refusal otherwise.
fn refuse_form(daemon: &Daemon, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    match daemon.sessions.of(headers) {
        Some(session) if session::same_origin(headers, &session, csrf) => None,
        _ => Some(error(
            StatusCode::FORBIDDEN,
            "this form needs a signed-in session of this page; sign in again",
        )),
    }
}

async fn logout(State(daemon): State<Shared>, headers: HeaderMap, Form(form): Form<PageForm>) -> Response {
    if let Some(refusal) = refuse_form(&daemon, &headers, &form.csrf) {
        return refusal;
    }
    daemon.sessions.end(&headers);
    redirect(
        "signed-out",
        Some(session::clear_cookie(daemon.config().daemon.secure_cookies)),
    )
}

/// `POST /refresh`: the page's "Refresh now" buttons (one sync, or all).
async fn page_refresh(State(daemon): State<Shared>, headers: HeaderMap, Form(form): Form<PageForm>) -> Response {
    if let Some(refusal) = refuse_form(&daemon, &headers, &form.csrf) {
        return refusal;
    }
    let names: Vec<String> = form.sync.into_iter().collect();
    let note = match daemon.start_refresh(names).await {
        RefreshStart::Started(_) => "refresh-started",
        RefreshStart::Queued(_) => "refresh-queued",
        _ => "refresh-refused",
    };
    redirect(note, None)
}
