//! The fake Google's keyless credentials: a gcloud login's refresh-token
//! grant, workload identity federation's STS token exchange (with a subject
//! token served by URL or written to a file), IAM Credentials'
//! `generateAccessToken`, and the metadata server. Every secret in the
//! credential files written here contains `SECRET`, so that a test can look
//! for it in any output.
// A handler's early answer is an axum Response; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::path::PathBuf;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::fake_google::{FakeGoogle, SCOPE, Shared, bearer, error, refuse_grant, token_answer};

pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const LOGIN_CLIENT_ID: &str = "764086051850-fake.apps.googleusercontent.com";
pub const LOGIN_CLIENT_SECRET: &str = "d-FAKE-SECRET-client";
pub const LOGIN_REFRESH_TOKEN: &str = "1//FAKE-SECRET-refresh-token";
pub const SUBJECT_TOKEN: &str = "eyFAKE-SECRET-subject-token";
pub const AUDIENCE: &str =
    "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/ci/providers/github";
/// The account the impersonating kinds act as.
pub const READER: &str = "sheet-reader@sheetsync-test-only.iam.gserviceaccount.com";
/// The account attached to the fake "Cloud Run service".
pub const RUNNER: &str = "cloud-run-runner@sheetsync-test-only.iam.gserviceaccount.com";
/// A header the subject-token URL requires, as Azure's IMDS requires `Metadata: true`.
const SUBJECT_HEADER: (&str, &str) = ("x-fake-identity", "SECRET-header-value");

/// What the person signed in with: the scopes the refresh grant gives,
/// and whether the login was revoked.
#[derive(Debug)]
pub struct FakeLogin {
    pub scopes: Vec<String>,
    pub revoked: bool,
}

impl Default for FakeLogin {
    fn default() -> Self {
        FakeLogin {
            scopes: vec![SCOPE.to_owned(), CLOUD_PLATFORM.to_owned()],
            revoked: false,
        }
    }
}

/// Where a federated subject token comes from.
pub enum SubjectSource {
    /// A file holding it (JSON `{"id_token": ...}`), which the test writes
    /// or leaves missing.
    File(PathBuf),
    /// The fake's own `/subject-token` (JSON `{"value": ...}`, needs a header).
    Url,
}

impl FakeGoogle {
    fn origin(&self) -> String {
        self.api_url.trim_end_matches('/').to_owned()
    }

    fn write_credential(&self, name: &str, content: Value) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(&content).unwrap()).unwrap();
        path
    }

    fn login_json(&self, quota_project: Option<&str>) -> Value {
        let mut login = json!({
            "type": "authorized_user",
            "client_id": LOGIN_CLIENT_ID,
            "client_secret": LOGIN_CLIENT_SECRET,
            "refresh_token": LOGIN_REFRESH_TOKEN,
            "token_uri": format!("{}/token", self.origin()),
            "universe_domain": "googleapis.com",
        });
        if let Some(project) = quota_project {
            login["quota_project_id"] = json!(project);
        }
        login
    }

    /// What `gcloud auth application-default login` writes, pointed at the fake.
    pub fn authorized_user_file(&self, quota_project: Option<&str>) -> PathBuf {
        self.write_credential("login.json", self.login_json(quota_project))
    }

    /// The same login, as gcloud's well-known file under a fresh
    /// configuration directory (for `CLOUDSDK_CONFIG`).
    pub fn gcloud_config_dir(&self, quota_project: Option<&str>) -> PathBuf {
        let dir = self.dir.path().join("gcloud");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("application_default_credentials.json"),
            serde_json::to_vec_pretty(&self.login_json(quota_project)).unwrap(),
        )
        .unwrap();
        dir
    }

    fn impersonation_url(&self) -> String {
        format!(
            "{}/v1/projects/-/serviceAccounts/{READER}:generateAccessToken",
            self.origin()
        )
    }

    /// What `create-cred-config` writes, pointed at the fake; impersonating
    /// [`READER`] when `impersonate`.
    pub fn external_account_file(&self, source: SubjectSource, impersonate: bool) -> PathBuf {
        let credential_source = match source {
            SubjectSource::File(path) => json!({
                "file": path,
                "format": { "type": "json", "subject_token_field_name": "id_token" },
            }),
            SubjectSource::Url => json!({
                "url": format!("{}/subject-token", self.origin()),
                "headers": { SUBJECT_HEADER.0: SUBJECT_HEADER.1 },
                "format": { "type": "json", "subject_token_field_name": "value" },
            }),
        };
        let mut file = json!({
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/token", self.origin()),
            "credential_source": credential_source,
        });
        if impersonate {
            file["service_account_impersonation_url"] = json!(self.impersonation_url());
        }
        self.write_credential("federation.json", file)
    }

    /// What `gcloud auth application-default login
    /// --impersonate-service-account=READER` writes.
    pub fn impersonated_file(&self) -> PathBuf {
        let file = json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": self.impersonation_url(),
            "delegates": [],
            "source_credentials": self.login_json(Some("sheetsync-billing")),
        });
        self.write_credential("impersonated.json", file)
    }

    /// `host:port` of the fake metadata server, for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        self.origin().trim_start_matches("http://").to_owned()
    }

    /// The login's refresh token is revoked from now on.
    pub fn revoke_login(&self) {
        self.shared.inner.lock().unwrap().login.revoked = true;
    }

    /// The login grants these scopes (a default gcloud login: cloud-platform only).
    pub fn login_scopes(&self, scopes: &[&str]) {
        self.shared.inner.lock().unwrap().login.scopes = scopes.iter().map(|scope| scope.to_string()).collect();
    }
}

/// `grant_type=refresh_token`: a person's login.
pub(super) fn refresh_grant(shared: &Shared, form: &HashMap<String, String>) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("client_id") != Some(LOGIN_CLIENT_ID) || field("client_secret") != Some(LOGIN_CLIENT_SECRET) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": "invalid_client", "error_description": "Unauthorized" })),
        )
            .into_response();
    }
    let mut inner = shared.inner.lock().unwrap();
    if field("refresh_token") != Some(LOGIN_REFRESH_TOKEN) || inner.login.revoked {
        return refuse_grant("Token has been expired or revoked.");
    }
    let scopes = inner.login.scopes.clone();
    token_answer(&inner.issue("refresh_token", scopes, true))
}

/// `grant_type=...:token-exchange`: Security Token Service.
pub(super) fn token_exchange(shared: &Shared, form: &HashMap<String, String>) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("audience") != AUDIENCE
        || field("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt"
        || field("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token"
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_request", "error_description": "bad token exchange" })),
        )
            .into_response();
    }
    if field("subject_token") != SUBJECT_TOKEN {
        return refuse_grant("The token could not be verified.");
    }
    let scopes = field("scope").split(' ').map(str::to_owned).collect();
    token_answer(&shared.inner.lock().unwrap().issue("token-exchange", scopes, false))
}

/// IAM Credentials `generateAccessToken` for [`READER`], allowed to any
/// caller whose token has the cloud-platform scope.
pub(super) async fn generate_access_token(
    State(shared): State<Shared>,
    UrlPath(target): UrlPath<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if target != format!("{READER}:generateAccessToken") {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "Unknown service account.");
    }
    let mut inner = shared.inner.lock().unwrap();
    let caller = bearer(&headers).and_then(|token| inner.tokens.get(&token).cloned());
    if !caller.is_some_and(|caller| caller.scopes.iter().any(|scope| scope == CLOUD_PLATFORM)) {
        return error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        );
    }
    let scopes: Vec<String> = serde_json::from_value(body["scope"].clone()).unwrap_or_default();
    let token = inner.issue("generateAccessToken", scopes, false);
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    axum::Json(json!({ "accessToken": token, "expireTime": expires })).into_response()
}

fn flavoured(headers: &HeaderMap) -> Result<(), Response> {
    if headers.get("Metadata-Flavor").is_some_and(|value| value == "Google") {
        Ok(())
    } else {
        Err((StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header.").into_response())
    }
}

const FLAVOUR: (&str, &str) = ("Metadata-Flavor", "Google");

pub(super) async fn metadata_email(headers: HeaderMap) -> Response {
    match flavoured(&headers) {
        Ok(()) => ([FLAVOUR], RUNNER).into_response(),
        Err(refusal) => refusal,
    }
}

pub(super) async fn metadata_token(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refusal) = flavoured(&headers) {
        return refusal;
    }
    let scopes = query
        .get("scopes")
        .map(|scopes| scopes.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| vec![CLOUD_PLATFORM.to_owned()]);
    let token = shared.inner.lock().unwrap().issue("metadata", scopes, false);
    let mut answer = token_answer(&token);
    answer.headers_mut().insert(FLAVOUR.0, FLAVOUR.1.parse().unwrap());
    answer
}

pub(super) async fn subject_token(headers: HeaderMap) -> Response {
    if headers
        .get(SUBJECT_HEADER.0)
        .is_none_or(|value| value != SUBJECT_HEADER.1)
    {
        return (StatusCode::UNAUTHORIZED, "no identity header").into_response();
    }
    axum::Json(json!({ "value": SUBJECT_TOKEN })).into_response()
}

/// Sheets' answer to a token without a Sheets scope.
pub(super) fn scope_insufficient() -> Response {
    let body = json!({ "error": { "code": 403, "status": "PERMISSION_DENIED",
        "message": "Request had insufficient authentication scopes.",
        "details": [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "domain": "googleapis.com", "metadata": { "service": "sheets.googleapis.com" } }] } });
    (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}

/// Sheets' answer to a person's login sent without a quota project: the
/// call is billed to gcloud's own project, where the API is off.
pub(super) fn no_quota_project() -> Response {
    let body = json!({ "error": { "code": 403, "status": "PERMISSION_DENIED",
        "message": "Your application is authenticating by using local Application Default Credentials. The \
            sheets.googleapis.com API requires a quota project, which is not set by default.",
        "details": [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
            "metadata": { "consumer": "projects/764086051850", "service": "sheets.googleapis.com" } }] } });
    (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}
