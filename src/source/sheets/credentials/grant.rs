//! The token requests themselves: OAuth grants (JWT bearer, refresh token,
//! STS token exchange), IAM Credentials `generateAccessToken`, and reading
//! a federated subject token. Each request is bounded in time and size and
//! goes through the credentials' own reqwest client, which follows no
//! redirect (a secret is never sent on to another host).

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::super::body::{read_capped, transport_reason};
use super::file::{Secret, SubjectTokenFormat, SubjectTokenSource, read_at_most};

/// A token answer is a few hundred bytes; a subject token a few kilobytes.
pub const MAX_TOKEN_ANSWER_BYTES: u64 = 64 * 1024;

/// A granted access token and how long Google says it lives.
pub struct Grant {
    pub access_token: Secret,
    pub lifetime: Duration,
}

/// Why no token was granted.
#[derive(Debug)]
pub struct GrantError {
    /// A network failure, a timeout or a 5xx/429: worth another attempt.
    pub transient: bool,
    pub message: String,
}

impl GrantError {
    pub fn refused(message: String) -> GrantError {
        GrantError {
            transient: false,
            message,
        }
    }

    pub fn transient(message: String) -> GrantError {
        GrantError {
            transient: true,
            message,
        }
    }
}

/// An OAuth token endpoint's answer, success or error.
#[derive(Deserialize)]
struct OAuthAnswer {
    access_token: Option<Secret>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

/// POSTs an OAuth grant as a form and reads the token from the answer.
pub async fn oauth_form(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    timeout: Duration,
) -> Result<Grant, GrantError> {
    let answer = send(http.post(url).form(form), timeout).await?;
    read_oauth_answer(answer.status, &answer.body)
}

/// Reads `{access_token, expires_in}`, or says what the endpoint refused.
pub fn read_oauth_answer(status: StatusCode, body: &[u8]) -> Result<Grant, GrantError> {
    let answer: Option<OAuthAnswer> = serde_json::from_slice(body).ok();
    if status.is_success() {
        let answer = answer.ok_or_else(|| GrantError::refused("the token endpoint's answer is not JSON".to_owned()))?;
        let access_token = answer
            .access_token
            .ok_or_else(|| GrantError::refused("the token endpoint answered without an access token".to_owned()))?;
        return Ok(Grant {
            access_token,
            lifetime: Duration::from_secs(answer.expires_in.unwrap_or(3600)),
        });
    }
    let reason = answer
        .map(|answer| {
            [answer.error, answer.error_description]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        })
        .filter(|reason| !reason.is_empty());
    Err(status_error(status, reason))
}

/// IAM Credentials' answer to `generateAccessToken`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeneratedToken {
    access_token: Secret,
    expire_time: String,
}

/// Google API error body, as IAM Credentials writes it.
#[derive(Deserialize)]
struct ApiError {
    error: ApiErrorDetail,
}

#[derive(Deserialize)]
struct ApiErrorDetail {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
}

/// Trades `bearer` (the caller's token, with the cloud-platform scope) for
/// a token of the service account `url` names.
pub async fn generate_access_token(
    http: &reqwest::Client,
    url: &str,
    bearer: &Secret,
    scopes: &[&str],
    delegates: &[String],
    timeout: Duration,
) -> Result<Grant, GrantError> {
    let request = serde_json::json!({ "scope": scopes, "delegates": delegates, "lifetime": "3600s" });
    let Answer { status, body, .. } = send(http.post(url).bearer_auth(bearer.expose()).json(&request), timeout).await?;
    if !status.is_success() {
        let reason = serde_json::from_slice::<ApiError>(&body).ok().map(|answer| {
            format!("{} {}", answer.error.status, answer.error.message)
                .trim()
                .to_owned()
        });
        return Err(status_error(status, reason));
    }
    let generated: GeneratedToken = serde_json::from_slice(&body)
        .map_err(|_| GrantError::refused("IAM Credentials' answer has no accessToken and expireTime".to_owned()))?;
    let expires = chrono::DateTime::parse_from_rfc3339(&generated.expire_time)
        .map_err(|_| GrantError::refused("IAM Credentials' expireTime is not a date-time".to_owned()))?;
    let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Ok(Grant {
        access_token: generated.access_token,
        lifetime: left.to_std().unwrap_or_default(),
    })
}

/// The federated subject token, read fresh for each exchange (the process
/// that writes it renews it).
pub async fn subject_token(
    http: &reqwest::Client,
    source: &SubjectTokenSource,
    timeout: Duration,
) -> Result<Secret, GrantError> {
    let (raw, format, origin) = match source {
        SubjectTokenSource::File { path, format } => (read_token_file(path).await?, format, path.as_str()),
        SubjectTokenSource::Url { url, headers, format } => {
            let request = headers.iter().fold(http.get(url), |request, (name, value)| {
                request.header(name, value.expose())
            });
            let answer = send(request, timeout).await?;
            if !answer.status.is_success() {
                return Err(status_error(
                    answer.status,
                    Some(format!("the subject token URL {url} refused")),
                ));
            }
            (answer.body, format, url.as_str())
        }
    };
    let token = match format {
        SubjectTokenFormat::Text => String::from_utf8(raw).ok(),
        SubjectTokenFormat::Json {
            subject_token_field_name,
        } => serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|value| value.get(subject_token_field_name)?.as_str().map(str::to_owned)),
    };
    token
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
        .map(Secret::new)
        .ok_or_else(|| {
            GrantError::refused(format!(
                "the subject token from {origin} is empty or not in the configured format"
            ))
        })
}

async fn read_token_file(path: &str) -> Result<Vec<u8>, GrantError> {
    read_at_most(std::path::Path::new(path), MAX_TOKEN_ANSWER_BYTES)
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::FileTooLarge => GrantError::refused(format!(
                "the subject token file {path} is larger than {MAX_TOKEN_ANSWER_BYTES} bytes; it is not a token"
            )),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => GrantError::refused(format!(
                "cannot read the subject token file {path}: {error}; the process that writes it (a projected \
                 service-account token, a CI job's OIDC token) must run first"
            )),
            _ => GrantError::refused(format!("cannot read the subject token file {path}: {error}")),
        })
}

/// An answer to a token request, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// Sends one request within `timeout` and reads at most
/// [`MAX_TOKEN_ANSWER_BYTES`] of the answer.
pub async fn send(request: reqwest::RequestBuilder, timeout: Duration) -> Result<Answer, GrantError> {
    let response = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|error| GrantError::transient(transport_reason(error)))?;
    let status = response.status();
    let headers = response.headers().clone();
    let (body, cut) = read_capped(response, MAX_TOKEN_ANSWER_BYTES)
        .await
        .map_err(|error| GrantError::transient(transport_reason(error)))?;
    if cut {
        return Err(GrantError::refused(format!(
            "the answer is larger than {MAX_TOKEN_ANSWER_BYTES} bytes; it is not a token answer"
        )));
    }
    Ok(Answer { status, headers, body })
}

/// An error status: 429 and 5xx are worth another attempt, the rest is a refusal.
fn status_error(status: StatusCode, reason: Option<String>) -> GrantError {
    let message = format!(
        "HTTP {}: {}",
        status.as_u16(),
        reason.unwrap_or_else(|| status.canonical_reason().unwrap_or("no details").to_owned())
    );
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        GrantError::transient(message)
    } else {
        GrantError::refused(message)
    }
}
