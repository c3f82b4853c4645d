//! A local fake of the Google services sheetsync talks to: the OAuth token
//! endpoint (which verifies the service account's signed JWT with the test
//! key's public half; the other grants are `fake_credentials`'), and the
//! Sheets API v4 `spreadsheets.get` and `values:batchGet`, shaped like the
//! real ones, with scripted faults. Every token carries its scopes, and the
//! Sheets API refuses one without a Sheets scope as Google does.
// A handler's early answer is an axum Response; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::fake_credentials::{self, FakeLogin};

pub const SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets.readonly";
pub const DRIVE_METADATA_SCOPE: &str = "https://www.googleapis.com/auth/drive.metadata.readonly";
pub const DRIVE_READONLY_SCOPE: &str = "https://www.googleapis.com/auth/drive.readonly";
/// The scopes a read-only client may ask for.
const KNOWN_SCOPES: &[&str] = &[SCOPE, DRIVE_METADATA_SCOPE, DRIVE_READONLY_SCOPE];
pub const CLIENT_EMAIL: &str = "sheetsync-test@sheetsync-test-only.iam.gserviceaccount.com";
pub const METADATA_FIELDS: &str = "properties.timeZone,sheets.properties(sheetId,title,gridProperties.rowCount)";

/// Empty rows below a tab's data, as a real grid has: ranges may reach into
/// them, not past them.
pub const GRID_SPARE_ROWS: usize = 2;

/// The test-only key shipped with the tests (never a real key).
pub fn fixture_key_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/TEST-ONLY-service-account.json")
}

#[derive(Debug, Clone)]
pub struct FakeTab {
    pub sheet_id: i64,
    pub title: String,
    /// Rows as the API returns them (trailing empty cells already dropped).
    pub values: Vec<Vec<Value>>,
}

#[derive(Debug, Clone)]
pub struct FakeSpreadsheet {
    pub time_zone: String,
    pub tabs: Vec<FakeTab>,
}

/// One scripted misbehaviour, consumed by the next matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    TooManyRequests {
        retry_after: Option<String>,
    },
    ServerError,
    /// Answer correctly, but only after this long.
    Slow(Duration),
    Forbidden,
    ApiDisabled,
    NotFound,
    /// HTTP 200 with the JSON cut in half.
    TruncatedJson,
    /// HTTP 200 whose body stops half-way with a broken connection.
    CutMidAnswer,
    /// HTTP 200 without the last requested range.
    OmitLastRange,
    /// HTTP 200 with a small gzip body that inflates to 64 MiB of zeros.
    GzipBomb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Metadata,
    BatchGet,
    /// Drive `files.get` (watching).
    DriveFile,
}

/// One `values:batchGet` request: spreadsheet id, ranges, every query pair.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    pub spreadsheet_id: String,
    pub ranges: Vec<String>,
    pub query: Vec<(String, String)>,
}

/// What the fake saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub token_requests: usize,
    /// Each token granted, by how: `jwt-bearer`, `refresh_token`,
    /// `token-exchange`, `generateAccessToken`, `metadata`.
    pub grants: Vec<&'static str>,
    /// The `x-goog-user-project` of every Sheets API request ("" without).
    pub quota_projects: Vec<String>,
    /// Spreadsheet ids of `spreadsheets.get` requests, in order.
    pub metadata_requests: Vec<String>,
    /// `values:batchGet` requests, in order.
    pub batch_requests: Vec<BatchRequest>,
    /// Requests refused for a missing or unknown token.
    pub unauthorized: usize,
    /// `(Accept-Encoding, User-Agent)` of every Sheets API request.
    pub api_headers: Vec<(String, String)>,
    /// Answers sent gzipped.
    pub gzipped_answers: usize,
    /// Drive `files.get` requests.
    pub drive_requests: usize,
    /// Drive `files.get?alt=media` downloads served.
    pub drive_downloads: usize,
    /// Bytes of Sheets API answer bodies sent, as sent (compressed or not).
    pub answer_bytes: u64,
}

/// An access token the fake granted.
#[derive(Debug, Clone)]
pub(super) struct FakeToken {
    pub scopes: Vec<String>,
    /// A person's login: Sheets wants a quota project with it.
    pub user: bool,
}

#[derive(Default)]
pub(super) struct Inner {
    /// Shared, not copied, by each request: a benchmark's 500k-row tab
    /// would otherwise be cloned for every page served.
    spreadsheets: HashMap<String, Arc<FakeSpreadsheet>>,
    /// Office files uploaded to Drive and never converted: the Sheets API
    /// refuses them, Drive serves their bytes.
    office_files: HashMap<String, Arc<Vec<u8>>>,
    faults: HashMap<(String, Endpoint), VecDeque<Fault>>,
    pub(super) tokens: HashMap<String, FakeToken>,
    /// Drive `version` per spreadsheet: one more at each edit.
    versions: HashMap<String, u64>,
    pub(super) login: FakeLogin,
    pub(super) seen: Seen,
    /// Never compress, whatever the request asks (Google's behaviour for a
    /// client that does not name gzip in its User-Agent).
    plain: bool,
}

impl Inner {
    /// A fresh access token with `scopes`, recorded as granted by `how`.
    pub(super) fn issue(&mut self, how: &'static str, scopes: Vec<String>, user: bool) -> String {
        let token = format!("fake-access-token-{}", self.tokens.len() + 1);
        self.tokens.insert(token.clone(), FakeToken { scopes, user });
        self.seen.grants.push(how);
        token
    }
}

#[derive(Clone)]
pub(super) struct Shared {
    pub(super) inner: Arc<Mutex<Inner>>,
    pub(super) token_uri: String,
    public_key: Arc<Vec<u8>>,
}

pub struct FakeGoogle {
    /// Base URL of the fake Sheets API (`http://127.0.0.1:PORT/`).
    pub api_url: String,
    /// A copy of the test key whose `token_uri` points at this fake.
    pub key_file: PathBuf,
    pub(super) shared: Shared,
    server: tokio::task::JoinHandle<()>,
    pub(super) dir: tempfile::TempDir,
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeGoogle {
    pub async fn start() -> FakeGoogle {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let api_url = format!("http://{address}/");
        let token_uri = format!("http://{address}/token");

        let mut key: Value = serde_json::from_str(&std::fs::read_to_string(fixture_key_path()).unwrap()).unwrap();
        key["token_uri"] = Value::String(token_uri.clone());
        let public_key = public_key_of(key["private_key"].as_str().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("TEST-ONLY-service-account.json");
        std::fs::write(&key_file, serde_json::to_vec_pretty(&key).unwrap()).unwrap();

        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner::default())),
            public_key: Arc::new(public_key),
            token_uri,
        };
        let app = Router::new()
            .route("/token", post(token))
            .route(
                "/v1/projects/-/serviceAccounts/{target}",
                post(fake_credentials::generate_access_token),
            )
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/email",
                get(fake_credentials::metadata_email),
            )
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(fake_credentials::metadata_token),
            )
            .route("/subject-token", get(fake_credentials::subject_token))
            .route("/drive/v3/files/{id}", get(drive_file))
            .route("/v4/spreadsheets/{id}", get(metadata))
            .route("/v4/spreadsheets/{id}/values:batchGet", get(batch_get))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGoogle {
            api_url,
            key_file,
            shared,
            server,
            dir,
        }
    }

    /// Adds (or replaces: an edit) a spreadsheet; its Drive version goes up.
    pub fn add_spreadsheet(&self, id: &str, spreadsheet: FakeSpreadsheet) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.spreadsheets.insert(id.to_owned(), Arc::new(spreadsheet));
        *inner.versions.entry(id.to_owned()).or_default() += 1;
    }

    /// Adds an Office file (an `.xlsx` uploaded to Drive, not converted);
    /// its Drive version goes up.
    pub fn add_office_file(&self, id: &str, bytes: Vec<u8>) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.office_files.insert(id.to_owned(), Arc::new(bytes));
        *inner.versions.entry(id.to_owned()).or_default() += 1;
    }

    /// A copy of a spreadsheet added before, to change and add back.
    pub fn spreadsheet(&self, id: &str) -> FakeSpreadsheet {
        FakeSpreadsheet::clone(&self.shared.inner.lock().unwrap().spreadsheets[id])
    }

    /// Queues faults for the next requests of `endpoint` on `id`.
    pub fn script(&self, id: &str, endpoint: Endpoint, faults: impl IntoIterator<Item = Fault>) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .faults
            .entry((id.to_owned(), endpoint))
            .or_default()
            .extend(faults);
    }

    pub fn seen(&self) -> Seen {
        self.shared.inner.lock().unwrap().seen.clone()
    }

    /// From now on, answers are never compressed.
    pub fn answer_plain(&self) {
        self.shared.inner.lock().unwrap().plain = true;
    }
}

/// The RSAPublicKey (PKCS#1 DER) of a PKCS#8 PEM private key.
fn public_key_of(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    let der = STANDARD.decode(body).unwrap();
    let pair = ring::rsa::KeyPair::from_pkcs8(&der).unwrap();
    pair.public().as_ref().to_vec()
}

pub(super) fn error(status: StatusCode, google_status: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": status.as_u16(), "message": message, "status": google_status } });
    (status, axum::Json(body)).into_response()
}

/// An OAuth error answer, as Google's token endpoints write them.
pub(super) fn refuse_grant(reason: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": "invalid_grant", "error_description": reason })),
    )
        .into_response()
}

pub(super) fn token_answer(token: &str) -> Response {
    axum::Json(json!({ "access_token": token, "expires_in": 3599, "token_type": "Bearer" })).into_response()
}

async fn token(State(shared): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    shared.inner.lock().unwrap().seen.token_requests += 1;
    match form.get("grant_type").map(String::as_str) {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => jwt_bearer(&shared, &form),
        Some("refresh_token") => fake_credentials::refresh_grant(&shared, &form),
        Some("urn:ietf:params:oauth:grant-type:token-exchange") => fake_credentials::token_exchange(&shared, &form),
        _ => refuse_grant("unsupported grant_type"),
    }
}

fn jwt_bearer(shared: &Shared, form: &HashMap<String, String>) -> Response {
    let refuse = refuse_grant;
    let Some(assertion) = form.get("assertion") else {
        return refuse("no assertion");
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [head, claims, signature] = parts.as_slice() else {
        return refuse("not a JWT");
    };
    // Some signers pad their base64url; JWT readers accept both.
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('='));
    let (Ok(head_json), Ok(claims_json), Ok(signature)) = (decode(head), decode(claims), decode(signature)) else {
        return refuse("bad base64");
    };
    let head: Value = serde_json::from_slice(&head_json).unwrap_or_default();
    if head["alg"] != "RS256" {
        return refuse("alg must be RS256");
    }
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &*shared.public_key);
    if key
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .is_err()
    {
        return refuse("invalid JWT signature");
    }
    let claims: Value = serde_json::from_slice(&claims_json).unwrap_or_default();
    if claims["aud"] != shared.token_uri.as_str() {
        return refuse("wrong aud");
    }
    let scopes: Vec<String> = claims["scope"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|scope| scope == SCOPE) || scopes.iter().any(|scope| !KNOWN_SCOPES.contains(&scope.as_str()))
    {
        return refuse("wrong scope");
    }
    if claims["iss"] != CLIENT_EMAIL {
        return refuse("wrong iss");
    }
    let now = chrono::Utc::now().timestamp();
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return refuse("no iat/exp");
    };
    if !(iat <= now + 60 && exp > now && exp - iat <= 3600) {
        return refuse("bad iat/exp");
    }
    let token = shared.inner.lock().unwrap().issue("jwt-bearer", scopes, false);
    token_answer(&token)
}

/// Checks the bearer token and pops the next fault for this endpoint.
fn admit(shared: &Shared, headers: &HeaderMap, id: &str, endpoint: Endpoint) -> Result<Option<Fault>, Response> {
    let mut inner = shared.inner.lock().unwrap();
    let text = |name| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let seen = (text(header::ACCEPT_ENCODING), text(header::USER_AGENT));
    inner.seen.api_headers.push(seen);
    let quota_project = text(header::HeaderName::from_static("x-goog-user-project"));
    inner.seen.quota_projects.push(quota_project.clone());
    let Some(token) = bearer(headers).and_then(|token| inner.tokens.get(&token)) else {
        inner.seen.unauthorized += 1;
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        ));
    };
    if !token.scopes.iter().any(|scope| scope == SCOPE) {
        return Err(fake_credentials::scope_insufficient());
    }
    if token.user && quota_project.is_empty() {
        return Err(fake_credentials::no_quota_project());
    }
    Ok(inner
        .faults
        .get_mut(&(id.to_owned(), endpoint))
        .and_then(VecDeque::pop_front))
}

/// The bearer token of a request.
pub(super) fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned)
}

/// Applies a fault that replaces the answer; `Ok` means answer normally
/// (possibly after a delay), carrying the fault for body-level tweaks.
async fn apply_fault(fault: Option<Fault>, id: &str) -> Result<Option<Fault>, Response> {
    match fault {
        None => Ok(None),
        Some(Fault::TooManyRequests { retry_after }) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per user'",
            );
            if let Some(value) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, value.parse().unwrap());
            }
            Err(response)
        }
        Some(Fault::ServerError) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error encountered.",
        )),
        Some(Fault::Forbidden) => Err(error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "The caller does not have permission",
        )),
        Some(Fault::ApiDisabled) => {
            let body = json!({ "error": { "code": 403, "status": "PERMISSION_DENIED",
                "message": "Google Sheets API has not been used in project 123 before or it is disabled.",
                "details": [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED" }] } });
            Err((StatusCode::FORBIDDEN, axum::Json(body)).into_response())
        }
        Some(Fault::NotFound) => Err(error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Requested entity was not found. ({id})"),
        )),
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            Ok(None)
        }
        Some(other) => Ok(Some(other)),
    }
}

/// Whether to gzip the answer to `headers`, as Google does: asked with
/// `Accept-Encoding: gzip` and a User-Agent naming gzip.
fn wants_gzip(shared: &Shared, headers: &HeaderMap) -> bool {
    let has = |name, needle| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value: &str| value.contains(needle))
    };
    !shared.inner.lock().unwrap().plain && has(header::ACCEPT_ENCODING, "gzip") && has(header::USER_AGENT, "gzip")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn finish(shared: &Shared, headers: &HeaderMap, body: Value, fault: Option<Fault>) -> Response {
    let json = (header::CONTENT_TYPE, "application/json; charset=UTF-8");
    if matches!(fault, Some(Fault::GzipBomb)) {
        let bomb = gzip(&vec![b' '; 64 << 20]);
        return ([json, (header::CONTENT_ENCODING, "gzip")], bomb).into_response();
    }
    if fault.is_none() && wants_gzip(shared, headers) {
        let compressed = gzip(body.to_string().as_bytes());
        let mut inner = shared.inner.lock().unwrap();
        inner.seen.gzipped_answers += 1;
        inner.seen.answer_bytes += compressed.len() as u64;
        drop(inner);
        return ([json, (header::CONTENT_ENCODING, "gzip")], compressed).into_response();
    }
    let text = body.to_string();
    shared.inner.lock().unwrap().seen.answer_bytes += text.len() as u64;
    match fault {
        Some(Fault::TruncatedJson) => {
            let cut = text[..text.len() / 2].to_owned();
            ([(header::CONTENT_TYPE, "application/json; charset=UTF-8")], cut).into_response()
        }
        Some(Fault::CutMidAnswer) => {
            let half = bytes::Bytes::copy_from_slice(&text.as_bytes()[..text.len() / 2]);
            let parts: Vec<Result<bytes::Bytes, std::io::Error>> =
                vec![Ok(half), Err(std::io::Error::other("connection cut"))];
            let body = axum::body::Body::from_stream(futures_util::stream::iter(parts));
            ([(header::CONTENT_TYPE, "application/json; charset=UTF-8")], body).into_response()
        }
        _ => ([(header::CONTENT_TYPE, "application/json; charset=UTF-8")], text).into_response(),
    }
}

async fn metadata(
    State(shared): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let fault = admit(&shared, &headers, &id, Endpoint::Metadata)?;
    shared.inner.lock().unwrap().seen.metadata_requests.push(id.clone());
    let fault = apply_fault(fault, &id).await?;
    if !query
        .iter()
        .any(|(name, value)| name == "fields" && value == METADATA_FIELDS)
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "the fake expects the fields mask",
        ));
    }
    refuse_office_file(&shared, &id)?;
    let spreadsheet = spreadsheet_of(&shared, &id)?;
    let sheets: Vec<Value> = spreadsheet
        .tabs
        .iter()
        .map(|tab| {
            let rows = tab.values.len() + GRID_SPARE_ROWS;
            json!({ "properties": { "sheetId": tab.sheet_id, "title": tab.title, "gridProperties": { "rowCount": rows } } })
        })
        .collect();
    Ok(finish(
        &shared,
        &headers,
        json!({ "properties": { "timeZone": spreadsheet.time_zone }, "sheets": sheets }),
        fault,
    ))
}

/// The Sheets API's answer for an Office file, as Google gives it.
fn refuse_office_file(shared: &Shared, id: &str) -> Result<(), Response> {
    match shared.inner.lock().unwrap().office_files.contains_key(id) {
        true => Err(error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            "This operation is not supported for this document",
        )),
        false => Ok(()),
    }
}

/// Drive `files.get`: with `fields=modifiedTime,version` (a Drive metadata
/// scope), or `alt=media` for an Office file's bytes (`drive.readonly`);
/// both need `supportsAllDrives=true`, as Google does for a file on a
/// shared drive.
async fn drive_file(
    State(shared): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let has = |name: &str, value: &str| query.iter().any(|(key, found)| key == name && found == value);
    let media = has("alt", "media");
    {
        let mut inner = shared.inner.lock().unwrap();
        inner.seen.drive_requests += 1;
        let token = bearer(&headers).and_then(|token| inner.tokens.get(&token).cloned());
        let allowed: &[&str] = match media {
            true => &[DRIVE_READONLY_SCOPE],
            false => &[DRIVE_METADATA_SCOPE, DRIVE_READONLY_SCOPE],
        };
        if token.is_some_and(|token| !token.scopes.iter().any(|scope| allowed.contains(&scope.as_str()))) {
            return Err(fake_credentials::scope_insufficient());
        }
    }
    let fault = admit(&shared, &headers, &id, Endpoint::DriveFile)?;
    apply_fault(fault, &id).await?;
    if media && has("supportsAllDrives", "true") {
        let mut inner = shared.inner.lock().unwrap();
        let bytes = inner.office_files.get(&id).cloned();
        inner.seen.drive_downloads += usize::from(bytes.is_some());
        return match bytes {
            Some(bytes) => Ok((
                [(
                    header::CONTENT_TYPE,
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                )],
                bytes.to_vec(),
            )
                .into_response()),
            None => Err(error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("File not found: {id}."),
            )),
        };
    }
    if !has("fields", "modifiedTime,version") || !has("supportsAllDrives", "true") {
        return Err(error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("File not found: {id}."),
        ));
    }
    let version = shared.inner.lock().unwrap().versions.get(&id).copied();
    let Some(version) = version else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("File not found: {id}."),
        ));
    };
    let modified = format!("2026-12-05T10:{:02}:00.000Z", version % 60);
    Ok(axum::Json(json!({ "modifiedTime": modified, "version": version.to_string() })).into_response())
}

/// The spreadsheet `id`, or Google's 404.
fn spreadsheet_of(shared: &Shared, id: &str) -> Result<Arc<FakeSpreadsheet>, Response> {
    let spreadsheet = shared.inner.lock().unwrap().spreadsheets.get(id).cloned();
    spreadsheet.ok_or_else(|| error(StatusCode::NOT_FOUND, "NOT_FOUND", "Requested entity was not found."))
}

/// A1 column letters for a 1-based column number.
fn column_letters(mut column: usize) -> String {
    let mut letters = Vec::new();
    while column > 0 {
        let rest = (column - 1) % 26;
        letters.push(b'A' + rest as u8);
        column = (column - 1) / 26;
    }
    letters.reverse();
    String::from_utf8(letters).unwrap()
}

/// A tab and the rows a range asks for: `'It''s Q1'` (the whole tab) or
/// `'It''s Q1'!21:40` (rows 21 to 40), which is all sheetsync asks for.
fn rows_of_range(range: &str) -> Option<(String, Option<(usize, usize)>)> {
    let (tab, rows) = match range.rsplit_once("'!") {
        Some((tab, rows)) => (format!("{tab}'"), Some(rows)),
        None => (range.to_owned(), None),
    };
    let title = tab_of_range(&tab)?;
    let rows = match rows {
        None => None,
        Some(rows) => {
            let (first, last) = rows.split_once(':')?;
            Some((first.parse().ok()?, last.parse().ok()?))
        }
    };
    Some((title, rows))
}

/// `'It''s Q1'` -> `It's Q1`; `Sheet1` -> `Sheet1`.
fn tab_of_range(range: &str) -> Option<String> {
    if let Some(inner) = range.strip_prefix('\'').and_then(|rest| rest.strip_suffix('\'')) {
        if inner.replace("''", "").contains('\'') {
            return None; // a lone quote inside: badly quoted
        }
        return Some(inner.replace("''", "'"));
    }
    (!range.contains(['\'', '!', ' '])).then(|| range.to_owned())
}

fn a1_title(title: &str) -> String {
    if title.chars().all(|c| c.is_ascii_alphanumeric()) {
        title.to_owned()
    } else {
        format!("'{}'", title.replace('\'', "''"))
    }
}

async fn batch_get(
    State(shared): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let fault = admit(&shared, &headers, &id, Endpoint::BatchGet)?;
    let ranges: Vec<String> = query
        .iter()
        .filter(|(name, _)| name == "ranges")
        .map(|(_, value)| value.clone())
        .collect();
    shared.inner.lock().unwrap().seen.batch_requests.push(BatchRequest {
        spreadsheet_id: id.clone(),
        ranges: ranges.clone(),
        query: query.clone(),
    });
    let fault = apply_fault(fault, &id).await?;
    refuse_office_file(&shared, &id)?;
    let spreadsheet = spreadsheet_of(&shared, &id)?;
    let mut value_ranges = Vec::new();
    for range in &ranges {
        let parsed = rows_of_range(range);
        let tab = parsed
            .as_ref()
            .and_then(|(title, _)| spreadsheet.tabs.iter().find(|tab| tab.title == *title));
        let (Some(tab), Some((_, rows))) = (tab, &parsed) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("Unable to parse range: {range}"),
            ));
        };
        let grid = tab.values.len() + GRID_SPARE_ROWS;
        let (first, last) = rows.unwrap_or((1, tab.values.len().max(1)));
        if last > grid || first == 0 || first > last {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("Range ({range}) exceeds grid limits. Max rows: {grid}"),
            ));
        }
        // Rows first..=last, trailing empty rows left out, as Google does.
        let mut values: Vec<Value> = tab
            .values
            .iter()
            .skip(first - 1)
            .take(last + 1 - first)
            .map(|row| Value::Array(row.clone()))
            .collect();
        while values
            .last()
            .is_some_and(|row| row.as_array().is_some_and(Vec::is_empty))
        {
            values.pop();
        }
        let columns = tab.values.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut value_range = json!({
            "range": format!("{}!A{first}:{}{last}", a1_title(&tab.title), column_letters(columns)),
            "majorDimension": "ROWS",
        });
        if !values.is_empty() {
            value_range["values"] = Value::Array(values);
        }
        value_ranges.push(value_range);
    }
    if matches!(fault, Some(Fault::OmitLastRange)) {
        value_ranges.pop();
    }
    Ok(finish(
        &shared,
        &headers,
        json!({ "spreadsheetId": id, "valueRanges": value_ranges }),
        fault,
    ))
}
