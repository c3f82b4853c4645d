//! Sending one Sheets API call: the per-minute quota, the bearer token,
//! retries with backoff (a 401 once gets a fresh token), error answers read
//! into [`SheetsError`]s, and successful answers read within their cap.

use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

use super::auth::{GoogleAuth, TokenFailure};
use super::body::{read_capped, transport_reason};
use super::error::SheetsError;
use super::quota::Quota;
use super::retry::{RetryPolicy, parse_retry_after};
use super::settings::GoogleSettings;
use super::stats::GoogleStats;
use super::wire::{ErrorBody, api_disabled, office_file, scope_insufficient};

/// The HTTP side of the Sheets client, shared by all its calls.
#[derive(Debug)]
pub(super) struct Transport {
    /// The one reqwest client of `source::Sources`.
    http: reqwest::Client,
    policy: RetryPolicy,
    request_timeout: Duration,
    /// The per-minute read quota, shared by every request of the process.
    quota: Quota,
    pub(super) stats: GoogleStats,
    /// The largest answer read ([sources] max_download_bytes).
    pub(super) max_answer_bytes: u64,
    /// The API called, as the console names it ("Google Sheets API").
    api: &'static str,
}

impl Transport {
    /// A transport to `api`, with its own quota of `per_minute` requests.
    pub(super) fn new(
        settings: &GoogleSettings,
        http: reqwest::Client,
        max_answer_bytes: u64,
        api: &'static str,
        per_minute: usize,
    ) -> Transport {
        Transport {
            http,
            policy: RetryPolicy::from_settings(settings),
            request_timeout: settings.request_timeout(),
            quota: Quota::new(per_minute, Duration::from_secs(60)),
            stats: GoogleStats::default(),
            max_answer_bytes,
            api,
        }
    }

    /// One API call with retries: 429, 5xx, timeouts and network errors are
    /// retried (backoff with full jitter, `Retry-After` honoured) within the
    /// policy's attempts and time; a 401 once gets a fresh token; anything
    /// else fails at once.
    pub(super) async fn call<A: ReadAnswer>(
        &self,
        auth: &GoogleAuth,
        call: &str,
        spreadsheet_id: &str,
        mut url: Url,
        query: &[(&str, String)],
        answer: &mut A,
    ) -> Result<A::Output, SheetsError> {
        url.query_pairs_mut().extend_pairs(query);
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut refreshed = false;
        let mut force_refresh = false;
        loop {
            attempts += 1;
            if attempts > 1 {
                self.stats.record_retry();
            }
            let outcome = self.attempt(auth, call, spreadsheet_id, &url, force_refresh).await;
            force_refresh = false;
            let (last, retry_after) = match outcome {
                Attempt::Done(response) => match answer.read(response, call).await {
                    Ok(output) => return Ok(output),
                    // Cut off mid-answer: asked again like a failed request.
                    Err(AnswerFailure::Transport(reason)) => (reason, None),
                    Err(AnswerFailure::Failed(error)) => {
                        self.stats.record_failed_call();
                        return Err(error);
                    }
                },
                Attempt::Fatal(error) => {
                    self.stats.record_failed_call();
                    return Err(error);
                }
                Attempt::Unauthorized(message) if !refreshed => {
                    refreshed = true;
                    force_refresh = true;
                    tracing::info!(call, %message, "Google refused the access token; retrying with a fresh one");
                    continue;
                }
                Attempt::Unauthorized(message) => {
                    self.stats.record_failed_call();
                    return Err(auth.token_error(&format!("the Sheets API refused a fresh token: {message}")));
                }
                Attempt::Retry { reason, retry_after } => (reason, retry_after),
            };
            match self.policy.next_delay(attempts, started.elapsed(), retry_after) {
                Some(delay) => {
                    tracing::warn!(call, attempt = attempts, reason = %last, delay_ms = delay.as_millis() as u64, "Google API call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => {
                    self.stats.record_failed_call();
                    let mut last = last;
                    if let Some(wait) = retry_after {
                        last.push_str(&format!(" (Google asked to wait {} s)", wait.as_secs()));
                    }
                    return Err(SheetsError::GaveUp {
                        call: call.to_owned(),
                        attempts,
                        elapsed_secs: started.elapsed().as_secs_f64(),
                        last,
                    });
                }
            }
        }
    }

    async fn attempt(
        &self,
        auth: &GoogleAuth,
        call: &str,
        spreadsheet_id: &str,
        url: &Url,
        force_refresh: bool,
    ) -> Attempt {
        let token = match auth.token(force_refresh).await {
            Ok(token) => token,
            Err(TokenFailure::Transient(message)) => {
                return Attempt::Retry {
                    reason: format!("token request failed: {message}"),
                    retry_after: None,
                };
            }
            Err(TokenFailure::Refused(error)) => return Attempt::Fatal(error),
        };
        self.quota.take().await;
        self.stats.record_request();
        let mut request = self
            .http
            .get(url.clone())
            .bearer_auth(token.expose())
            .timeout(self.request_timeout);
        if let Some(project) = &auth.quota_project {
            request = request.header("x-goog-user-project", project);
        }
        let sent = request.send().await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return transport_failure(error),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Done(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        // An error body is short; a longer one is cut, not waited for.
        let body = match read_capped(response, ERROR_BODY_BYTES).await {
            Ok((body, _)) => body,
            Err(error) => return transport_failure(error),
        };
        let detail = serde_json::from_slice::<ErrorBody>(&body).ok().map(|body| body.error);
        let message = detail
            .as_ref()
            .map(|detail| format!("{} {}", detail.status, detail.message).trim().to_owned())
            .filter(|message| !message.is_empty())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("no details").to_owned());
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                self.stats.record_rate_limited();
                Attempt::Retry {
                    reason: format!("HTTP 429 (quota exceeded): {message}"),
                    retry_after,
                }
            }
            status if status.is_server_error() => Attempt::Retry {
                reason: format!("HTTP {}: {message}", status.as_u16()),
                retry_after,
            },
            StatusCode::UNAUTHORIZED => Attempt::Unauthorized(message),
            StatusCode::FORBIDDEN if detail.as_ref().is_some_and(scope_insufficient) => {
                Attempt::Fatal(auth.missing_scope(self.api))
            }
            StatusCode::FORBIDDEN if detail.as_ref().is_some_and(api_disabled) => {
                Attempt::Fatal(auth.api_disabled(self.api, message))
            }
            StatusCode::FORBIDDEN => Attempt::Fatal(auth.not_shared(spreadsheet_id)),
            StatusCode::BAD_REQUEST if detail.as_ref().is_some_and(office_file) => {
                Attempt::Fatal(SheetsError::OfficeFile {
                    spreadsheet_id: spreadsheet_id.to_owned(),
                })
            }
            StatusCode::NOT_FOUND => Attempt::Fatal(SheetsError::NotFound {
                spreadsheet_id: spreadsheet_id.to_owned(),
            }),
            status => Attempt::Fatal(SheetsError::Rejected {
                call: call.to_owned(),
                status: status.as_u16(),
                message,
            }),
        }
    }
}

enum Attempt {
    /// A success status: the answer is read by the call's [`ReadAnswer`].
    Done(reqwest::Response),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Unauthorized(String),
    Fatal(SheetsError),
}

fn transport_failure(error: reqwest::Error) -> Attempt {
    Attempt::Retry {
        reason: transport_reason(error),
        retry_after: None,
    }
}

/// The most of an error answer's body that is read.
const ERROR_BODY_BYTES: u64 = 64 * 1024;

/// Why an answer could not be read.
#[derive(Debug)]
pub enum AnswerFailure {
    /// The network failed mid-answer: the round may be asked again.
    Transport(String),
    /// The answer is not what was asked for.
    Failed(SheetsError),
}

/// How a call reads a successful answer.
pub(super) trait ReadAnswer {
    type Output;

    fn read(
        &mut self,
        response: reqwest::Response,
        call: &str,
    ) -> impl Future<Output = Result<Self::Output, AnswerFailure>> + Send;
}

/// A small JSON answer (`spreadsheets.get`), read whole within the cap.
pub(super) struct JsonAnswer<T> {
    max_bytes: u64,
    _output: std::marker::PhantomData<fn() -> T>,
}

impl<T> JsonAnswer<T> {
    pub(super) fn new(max_bytes: u64) -> Self {
        JsonAnswer {
            max_bytes,
            _output: std::marker::PhantomData,
        }
    }
}

impl<T: DeserializeOwned> ReadAnswer for JsonAnswer<T> {
    type Output = T;

    async fn read(&mut self, response: reqwest::Response, call: &str) -> Result<T, AnswerFailure> {
        let malformed = |message: String| {
            AnswerFailure::Failed(SheetsError::Malformed {
                call: call.to_owned(),
                message,
            })
        };
        let (body, cut) = read_capped(response, self.max_bytes)
            .await
            .map_err(|error| AnswerFailure::Transport(transport_reason(error)))?;
        if cut {
            return Err(malformed(format!(
                "the answer is larger than [sources] max_download_bytes ({} bytes)",
                self.max_bytes
            )));
        }
        serde_json::from_slice(&body).map_err(|error| malformed(error.to_string()))
    }
}

/// A file's content (Drive `alt=media`), written as it arrives to an
/// unnamed temporary file within the cap: a workbook is parsed from disk,
/// never held whole in memory as it downloads.
pub(super) struct FileAnswer {
    pub(super) max_bytes: u64,
}

impl ReadAnswer for FileAnswer {
    type Output = std::fs::File;

    async fn read(&mut self, mut response: reqwest::Response, call: &str) -> Result<std::fs::File, AnswerFailure> {
        use std::io::{Seek as _, Write as _};
        let spool_error = |error: std::io::Error| {
            AnswerFailure::Failed(SheetsError::Spool(format!(
                "{call}: cannot write the file to a temporary file: {error}; check TMPDIR's free space"
            )))
        };
        // A fresh file per attempt: a retried download starts over.
        let mut file = tempfile::tempfile().map_err(spool_error)?;
        let mut received = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| AnswerFailure::Transport(transport_reason(error)))?
        {
            received += chunk.len() as u64;
            if received > self.max_bytes {
                return Err(AnswerFailure::Failed(SheetsError::DownloadTooLarge {
                    call: call.to_owned(),
                    limit: self.max_bytes,
                }));
            }
            file.write_all(&chunk).map_err(spool_error)?;
        }
        file.rewind().map_err(spool_error)?;
        Ok(file)
    }
}
