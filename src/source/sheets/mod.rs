//! Google Sheets through the Sheets API v4: a thin client on the shared
//! reqwest client, covering just `spreadsheets.get` and `values:batchGet`.
//!
//! Per spreadsheet and per sync cycle it makes one call, whatever the number
//! of views reading from it: a `values:batchGet` over every tab those views
//! read (`UNFORMATTED_VALUE`, `SERIAL_NUMBER`, `ROWS`). A tab taller than
//! `page_rows` is read in pages of rows, one round of pages (of every such
//! tab) per call, so that no call runs into Google's request deadline and a
//! failed call repeats one page. Each answer is parsed as it arrives and its
//! rows go straight to a spool file (`pages`, `source::spool`): memory holds
//! a few network chunks and a row, not the page nor the sheet. Every request
//! waits for room in Google's per-minute
//! read quota (`max_requests_per_minute`), kept here rather than met with
//! 429s.
//!
//! Reading a tab by A1 range needs its title, paging needs its grid height,
//! and reading a date serial needs the spreadsheet's time zone; they come
//! from `spreadsheets.get` with the fields mask
//! `properties.timeZone,sheets.properties(sheetId,title,gridProperties.rowCount)`. That
//! answer changes rarely, so it is kept for `metadata_max_age_secs` (a week by
//! default) and read again sooner only when it proves stale: a named tab
//! missing from it, or a range Google no longer knows. (Addressing tabs by id
//! with `values:batchGetByDataFilter` would avoid titles, but it needs the
//! read-write `spreadsheets` scope; sheetsync asks only for read-only.)
//!
//! Plus one token request per hour for the whole process (yup-oauth2 caches it).

pub mod a1;
pub mod auth;
pub mod pages;
pub mod quota;
pub mod retry;
pub mod settings;

use crate::telemetry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use chrono_tz::Tz;
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::OnceCell;

use super::SheetRef;
use super::spool::SpooledRows;
use super::table::Cell;
use auth::{GoogleAuth, TokenFailure};
use pages::{AnswerFailure, TabPages};
use retry::{RetryPolicy, parse_retry_after};
use settings::GoogleSettings;

const METADATA_FIELDS: &str = "properties.timeZone,sheets.properties(sheetId,title,gridProperties.rowCount)";

/// Everything that can go wrong reading a Google spreadsheet. Cloneable
/// because one failure (a missing share, a bad key) fails every view that
/// reads the spreadsheet.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SheetsError {
    #[error(
        "no Google service-account key is configured; set GOOGLE_APPLICATION_CREDENTIALS or `key_file` under \
         [google] to the key's JSON file (or provide it as the systemd credential google-service-account.json)"
    )]
    NoKey,
    #[error(
        "cannot read the Google service-account key {path} (from {origin}): {message}; check the path and that sheetsync may read it"
    )]
    KeyRead {
        path: String,
        origin: String,
        message: String,
    },
    #[error("the Google service-account key {path} is not usable: {reason}")]
    KeyInvalid { path: String, reason: String },
    #[error(
        "cannot get an access token for service account {email} from {token_uri}: {message}; check that the key \
         still exists and is enabled in the Google Cloud console and that this machine's clock is right"
    )]
    Token {
        email: String,
        token_uri: String,
        message: String,
    },
    #[error(
        "spreadsheet {spreadsheet_id} is not shared with the service account {email}; share it (Viewer) with that address"
    )]
    NotShared { spreadsheet_id: String, email: String },
    #[error(
        "the Google Sheets API refused access for service account {email}: {message}; enable the Google Sheets API \
         in the service account's Google Cloud project (APIs & Services > Library)"
    )]
    ApiDisabled { email: String, message: String },
    #[error(
        "spreadsheet {spreadsheet_id} does not exist (HTTP 404); the ID in the view's sheet_url is wrong, or the \
         spreadsheet was deleted"
    )]
    NotFound { spreadsheet_id: String },
    #[error("Google rejected {call} with HTTP {status}: {message}")]
    Rejected { call: String, status: u16, message: String },
    #[error(
        "Google's answer to {call} is not the expected JSON ({message}); nothing was written, the next sync tries again"
    )]
    Malformed { call: String, message: String },
    #[error(
        "{call} still failed after {attempts} attempt(s) over {elapsed_secs:.1} s: {last}; Google is rate-limiting \
         or unavailable, the previous data stays and the next sync tries again"
    )]
    GaveUp {
        call: String,
        attempts: u32,
        elapsed_secs: f64,
        last: String,
    },
    #[error(
        "spreadsheet {spreadsheet_id} has no tab named {tab:?}; its tabs are: {available}; fix the view's sheet_name"
    )]
    NoSuchTab {
        spreadsheet_id: String,
        tab: String,
        available: String,
    },
    #[error(
        "spreadsheet {spreadsheet_id} has no tab with gid {gid} (from the sheet_url); its tabs are: {available}; \
         fix the link or set the view's sheet_name"
    )]
    NoSuchGid {
        spreadsheet_id: String,
        gid: i64,
        available: String,
    },
    #[error("spreadsheet {spreadsheet_id} has no tabs")]
    NoTabs { spreadsheet_id: String },
    #[error(
        "Google's answer for spreadsheet {spreadsheet_id} has no values for range {range}; the next sync tries again"
    )]
    MissingRange { spreadsheet_id: String, range: String },
    #[error(
        "spreadsheet {spreadsheet_id} has time zone {zone:?}, which sheetsync does not know; pick a named zone \
         (e.g. Europe/Paris) in the spreadsheet's File > Settings"
    )]
    UnknownTimeZone { spreadsheet_id: String, zone: String },
    /// The rows read could not be kept on disk for the mapping's passes.
    #[error("{0}")]
    Spool(String),
}

impl SheetsError {
    /// Whether a `values:batchGet` error may come from an outdated tab list
    /// rather than from the spreadsheet: a range Google does not know (HTTP
    /// 400 "Unable to parse range") or left out of its answer.
    fn may_be_stale_metadata(&self) -> bool {
        matches!(
            self,
            SheetsError::MissingRange { .. } | SheetsError::Rejected { status: 400, .. }
        )
    }
}

/// Counters of Google API traffic since start, for metrics and tests.
#[derive(Debug, Default)]
pub struct GoogleStats {
    requests: AtomicU64,
    metadata_calls: AtomicU64,
    batch_get_calls: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    failed_calls: AtomicU64,
}

/// A copy of [`GoogleStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GoogleStatsSnapshot {
    /// HTTP requests sent to the Sheets API, retries included (token
    /// requests excluded: yup-oauth2 makes those).
    pub requests: u64,
    /// `spreadsheets.get` calls (each may take several requests).
    pub metadata_calls: u64,
    /// `values:batchGet` calls.
    pub batch_get_calls: u64,
    /// Requests that were repeats of a failed one.
    pub retries: u64,
    /// HTTP 429 answers.
    pub rate_limited: u64,
    /// Calls that ended in an error, after any retries.
    pub failed_calls: u64,
}

impl GoogleStats {
    /// One HTTP request sent, counted here and in the metrics.
    fn record_request(&self) {
        bump(&self.requests);
        metrics::counter!(telemetry::GOOGLE_API_CALLS).increment(1);
    }

    /// One request that repeats a failed one, counted here and in the metrics.
    fn record_retry(&self) {
        bump(&self.retries);
        metrics::counter!(telemetry::GOOGLE_API_RETRIES).increment(1);
    }

    pub fn snapshot(&self) -> GoogleStatsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        GoogleStatsSnapshot {
            requests: read(&self.requests),
            metadata_calls: read(&self.metadata_calls),
            batch_get_calls: read(&self.batch_get_calls),
            retries: read(&self.retries),
            rate_limited: read(&self.rate_limited),
            failed_calls: read(&self.failed_calls),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// `spreadsheets.get` as masked by [`METADATA_FIELDS`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpreadsheetMetadata {
    properties: SpreadsheetProperties,
    #[serde(default)]
    sheets: Vec<SheetEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpreadsheetProperties {
    time_zone: String,
}

#[derive(Debug, Deserialize)]
struct SheetEntry {
    properties: SheetProperties,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SheetProperties {
    sheet_id: i64,
    title: String,
    #[serde(default)]
    grid_properties: Option<GridProperties>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GridProperties {
    row_count: Option<usize>,
}

/// One cell of a `values:batchGet` answer, deserialized as it is read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SheetCell(pub(crate) Cell);

impl<'de> Deserialize<'de> for SheetCell {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CellVisitor)
    }
}

/// Numbers and booleans keep their type; strings go through the same rules
/// as CSV text; anything else (never sent with `UNFORMATTED_VALUE`) is read
/// as its text.
struct CellVisitor;

impl<'de> serde::de::Visitor<'de> for CellVisitor {
    type Value = SheetCell;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a spreadsheet cell value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<SheetCell, E> {
        Ok(SheetCell(Cell::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<SheetCell, E> {
        // Sheets numbers are doubles; integers beyond 2^53 are not exact
        // there either.
        Ok(SheetCell(Cell::Number(value as f64)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<SheetCell, E> {
        Ok(SheetCell(Cell::Number(value as f64)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<SheetCell, E> {
        Ok(SheetCell(Cell::Number(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<SheetCell, E> {
        Ok(SheetCell(Cell::text(value)))
    }

    fn visit_unit<E>(self) -> Result<SheetCell, E> {
        Ok(SheetCell(Cell::Empty))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<SheetCell, A::Error> {
        let mut parts = Vec::new();
        while let Some(value) = seq.next_element::<Value>()? {
            parts.push(value.to_string());
        }
        Ok(SheetCell(Cell::text(&format!("[{}]", parts.join(",")))))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<SheetCell, A::Error> {
        let value = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(SheetCell(Cell::text(&value.to_string())))
    }
}

/// Google's error body: `{"error": {"code", "message", "status", "details"}}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

/// What one spreadsheet is, as far as sheetsync cares.
#[derive(Debug, Clone)]
pub struct SpreadsheetInfo {
    pub time_zone: Tz,
    /// `(sheetId, title)` in tab order.
    pub tabs: Vec<(i64, String)>,
    /// Each tab's grid height (`gridProperties.rowCount`), by title: pages
    /// never reach past it.
    pub row_counts: HashMap<String, usize>,
}

/// What `sheetsync check` learns about one Google view.
#[derive(Debug, Clone)]
pub struct SheetCheck {
    pub client_email: String,
    pub tab: String,
    pub time_zone: Tz,
}

/// The Sheets API client. Cheap to share; the key is loaded on first use (so
/// that a deployment without Google views needs no key) and kept, with its
/// token cache, for the life of the process.
#[derive(Debug)]
pub struct GoogleSheets {
    settings: GoogleSettings,
    api_url: Option<Url>,
    policy: RetryPolicy,
    http: reqwest::Client,
    auth: OnceCell<GoogleAuth>,
    stats: GoogleStats,
    /// The per-minute read quota, shared by every request of the process.
    quota: quota::Quota,
    /// The largest answer read ([sources] max_download_bytes).
    max_answer_bytes: u64,
    /// Spreadsheet metadata by spreadsheet id, with when it was read.
    metadata: Mutex<HashMap<String, (Instant, SpreadsheetInfo)>>,
}

impl GoogleSheets {
    /// `http` is the one reqwest client of [`super::Sources`];
    /// `max_answer_bytes` caps each answer, as downloads are capped.
    pub fn new(settings: GoogleSettings, http: reqwest::Client, max_answer_bytes: u64) -> GoogleSheets {
        let api_url = Url::parse(&settings.api_url).ok();
        GoogleSheets {
            max_answer_bytes,
            quota: quota::Quota::new(settings.max_requests_per_minute, Duration::from_secs(60)),
            policy: RetryPolicy::from_settings(&settings),
            settings,
            api_url,
            http,
            auth: OnceCell::new(),
            stats: GoogleStats::default(),
            metadata: Mutex::new(HashMap::new()),
        }
    }

    pub fn stats(&self) -> GoogleStatsSnapshot {
        self.stats.snapshot()
    }

    /// The loaded key; a failure is not cached, so a key fixed on disk is
    /// picked up by the next cycle.
    pub async fn auth(&self) -> Result<&GoogleAuth, SheetsError> {
        self.auth.get_or_try_init(|| GoogleAuth::load(&self.settings)).await
    }

    /// Reads the tabs `sheets` name, all in one spreadsheet: one
    /// `values:batchGet`, preceded by a `spreadsheets.get` when the
    /// spreadsheet's metadata is not cached or proves stale. One result per
    /// sheet, in order.
    pub async fn fetch_spreadsheet(
        &self,
        spreadsheet_id: &str,
        sheets: &[&SheetRef],
    ) -> Vec<Result<SpooledRows, SheetsError>> {
        let all_fail = |error: SheetsError| sheets.iter().map(|_| Err(error.clone())).collect();
        let auth = match self.auth().await {
            Ok(auth) => auth,
            Err(error) => return all_fail(error),
        };
        // A view naming a tab the cached list lacks (one added or renamed
        // since) skips the cache without spending a batchGet on it.
        if let Some(info) = self.cached_info(spreadsheet_id)
            && sheets
                .iter()
                .all(|sheet| resolve_tab(spreadsheet_id, &info, sheet).is_ok())
        {
            let tables = self.read_tabs(auth, spreadsheet_id, &info, sheets).await;
            let stale = tables
                .iter()
                .any(|table| table.as_ref().is_err_and(SheetsError::may_be_stale_metadata));
            if !stale {
                return tables;
            }
            tracing::info!(
                spreadsheet_id,
                "a tab is not where the cached tab list says; reading the spreadsheet's tab list again"
            );
        }
        match self.fresh_info(auth, spreadsheet_id).await {
            Ok(info) => self.read_tabs(auth, spreadsheet_id, &info, sheets).await,
            Err(error) => all_fail(error),
        }
    }

    /// The `values:batchGet`s of [`GoogleSheets::fetch_spreadsheet`], with the
    /// tab titles, heights and time zone of `info`: one call per round, a
    /// round being the next page of every tab still being read.
    async fn read_tabs(
        &self,
        auth: &GoogleAuth,
        spreadsheet_id: &str,
        info: &SpreadsheetInfo,
        sheets: &[&SheetRef],
    ) -> Vec<Result<SpooledRows, SheetsError>> {
        let titles: Vec<Result<String, SheetsError>> = sheets
            .iter()
            .map(|sheet| resolve_tab(spreadsheet_id, info, sheet))
            .collect();
        let mut wanted: Vec<String> = Vec::new();
        for title in titles.iter().flatten() {
            if !wanted.contains(title) {
                wanted.push(title.clone());
            }
        }
        let mut reads: Vec<Result<TabPages, SheetsError>> = wanted
            .iter()
            .map(|title| {
                let pages = a1::pages(title, info.row_counts.get(title).copied(), self.settings.page_rows);
                Ok(TabPages::new(
                    title,
                    pages,
                    &format!("tab {title:?} of spreadsheet {spreadsheet_id}"),
                ))
            })
            .collect();
        let rounds = reads.iter().flatten().map(|tab| tab.pages.len()).max().unwrap_or(0);
        for round in 0..rounds {
            // The round's tabs: those with a `round`-th page, still being read.
            let in_round: Vec<usize> = (0..reads.len())
                .filter(|&tab| reads[tab].as_ref().is_ok_and(|read| read.pages.len() > round))
                .collect();
            if in_round.is_empty() {
                break;
            }
            let tabs: Vec<TabPages> = in_round
                .iter()
                .filter_map(|&tab| std::mem::replace(&mut reads[tab], Err(SheetsError::Spool(String::new()))).ok())
                .collect();
            let (tabs, outcome) = self.read_round(auth, spreadsheet_id, tabs, round).await;
            let lost = || SheetsError::Malformed {
                call: format!("values:batchGet of spreadsheet {spreadsheet_id}"),
                message: "the answer's parser stopped".to_owned(),
            };
            let mut tabs = tabs.into_iter();
            for (position, &tab) in in_round.iter().enumerate() {
                let failure = match &outcome {
                    Ok(failures) => Ok(failures.get(position).cloned().flatten()),
                    Err(error) => Err(error.clone()),
                };
                reads[tab] = match (failure, tabs.next()) {
                    (Ok(None), Some(read)) => Ok(read),
                    (Ok(Some(error)) | Err(error), _) => Err(error),
                    (Ok(None), None) => Err(lost()),
                };
            }
        }
        let mut finished: Vec<Result<SpooledRows, SheetsError>> = reads
            .into_iter()
            .map(|read| read?.finish().map_err(|error| SheetsError::Spool(error.to_string())))
            .collect();
        let gid_of = |title: &str| info.tabs.iter().find(|(_, tab)| tab == title).map(|(gid, _)| *gid);
        titles
            .into_iter()
            .map(|title| {
                let title = title?;
                let index = wanted.iter().position(|wanted| *wanted == title);
                // Every resolved title was added to `wanted` above.
                let read = index
                    .and_then(|index| finished.get_mut(index))
                    .ok_or_else(|| SheetsError::Spool(format!("internal error: tab {title:?} was not read")))?;
                // Two views of one tab share its spool.
                let mut rows = read.as_ref().map_err(Clone::clone)?.clone();
                rows.serial_time_zone = Some(info.time_zone);
                rows.tab_gid = gid_of(&title);
                Ok(rows)
            })
            .collect()
    }

    /// One round: the `values:batchGet` of the tabs' `round`-th pages, its
    /// answer streamed into their spools, retried as one call.
    async fn read_round(
        &self,
        auth: &GoogleAuth,
        spreadsheet_id: &str,
        mut tabs: Vec<TabPages>,
        round: usize,
    ) -> (Vec<TabPages>, Result<pages::TabOutcomes, SheetsError>) {
        bump(&self.stats.batch_get_calls);
        for tab in &mut tabs {
            tab.start_round();
        }
        let call = format!("values:batchGet of spreadsheet {spreadsheet_id}");
        let url = match self.endpoint(&[spreadsheet_id, "values:batchGet"]) {
            Ok(url) => url,
            Err(error) => return (tabs, Err(error)),
        };
        let mut query: Vec<(&str, String)> = tabs
            .iter()
            .filter_map(|tab| Some(("ranges", tab.pages.get(round)?.range.clone())))
            .collect();
        query.extend([
            ("valueRenderOption", "UNFORMATTED_VALUE".to_owned()),
            ("dateTimeRenderOption", "SERIAL_NUMBER".to_owned()),
            ("majorDimension", "ROWS".to_owned()),
        ]);
        let mut answer = PagesAnswer {
            tabs: Some(tabs),
            spreadsheet_id,
            round,
            max_bytes: self.max_answer_bytes,
        };
        let outcome = self.call(auth, &call, spreadsheet_id, url, &query, &mut answer).await;
        (answer.tabs.unwrap_or_default(), outcome)
    }

    /// Loads the key, gets a token, reads the spreadsheet's tab list and finds
    /// the view's tab: everything short of reading its values.
    pub async fn check(&self, sheet: &SheetRef) -> Result<SheetCheck, SheetsError> {
        let auth = self.auth().await?;
        let info = self.fresh_info(auth, &sheet.spreadsheet_id).await?;
        let tab = resolve_tab(&sheet.spreadsheet_id, &info, sheet)?;
        Ok(SheetCheck {
            client_email: auth.client_email.clone(),
            tab,
            time_zone: info.time_zone,
        })
    }

    /// The spreadsheet's metadata as last read, unless it is older than
    /// `metadata_max_age_secs`.
    fn cached_info(&self, spreadsheet_id: &str) -> Option<SpreadsheetInfo> {
        let max_age = self.settings.metadata_max_age();
        // A panic elsewhere cannot leave the map half-written: every critical
        // section is a single insert, remove or clone.
        let cache = self.metadata.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(spreadsheet_id)
            .filter(|(read_at, _)| read_at.elapsed() < max_age)
            .map(|(_, info)| info.clone())
    }

    /// Reads the spreadsheet's metadata and caches it; a failure forgets
    /// what was cached, so the next cycle asks again.
    async fn fresh_info(&self, auth: &GoogleAuth, spreadsheet_id: &str) -> Result<SpreadsheetInfo, SheetsError> {
        let read_at = Instant::now();
        let info = self.spreadsheet_info(auth, spreadsheet_id).await;
        let mut cache = self.metadata.lock().unwrap_or_else(PoisonError::into_inner);
        match &info {
            Ok(info) => cache.insert(spreadsheet_id.to_owned(), (read_at, info.clone())),
            Err(_) => cache.remove(spreadsheet_id),
        };
        info
    }

    async fn spreadsheet_info(&self, auth: &GoogleAuth, spreadsheet_id: &str) -> Result<SpreadsheetInfo, SheetsError> {
        bump(&self.stats.metadata_calls);
        let call = format!("spreadsheets.get of spreadsheet {spreadsheet_id}");
        let url = self.endpoint(&[spreadsheet_id])?;
        let query = [("fields", METADATA_FIELDS.to_owned())];
        let mut answer = JsonAnswer::<SpreadsheetMetadata>::new(self.max_answer_bytes);
        let metadata = self.call(auth, &call, spreadsheet_id, url, &query, &mut answer).await?;
        let zone = metadata.properties.time_zone;
        let time_zone = zone.parse::<Tz>().map_err(|_| SheetsError::UnknownTimeZone {
            spreadsheet_id: spreadsheet_id.to_owned(),
            zone: zone.clone(),
        })?;
        let mut row_counts = HashMap::new();
        let mut tabs = Vec::with_capacity(metadata.sheets.len());
        for sheet in metadata.sheets {
            let properties = sheet.properties;
            if let Some(rows) = properties.grid_properties.and_then(|grid| grid.row_count) {
                row_counts.insert(properties.title.clone(), rows);
            }
            tabs.push((properties.sheet_id, properties.title));
        }
        Ok(SpreadsheetInfo {
            time_zone,
            tabs,
            row_counts,
        })
    }

    /// `{api_url}/v4/spreadsheets/{segments...}`, each segment escaped.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, SheetsError> {
        let invalid = || SheetsError::Rejected {
            call: "building the Sheets API URL".to_owned(),
            status: 0,
            message: format!("api_url {:?} cannot take a path", self.settings.api_url),
        };
        let mut url = self.api_url.clone().ok_or_else(invalid)?;
        url.path_segments_mut()
            .map_err(|()| invalid())?
            .pop_if_empty()
            .extend(["v4", "spreadsheets"])
            .extend(segments);
        Ok(url)
    }

    /// One API call with retries: 429, 5xx, timeouts and network errors are
    /// retried (backoff with full jitter, `Retry-After` honoured) within the
    /// policy's attempts and time; a 401 once gets a fresh token; anything
    /// else fails at once.
    async fn call<A: ReadAnswer>(
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
                        bump(&self.stats.failed_calls);
                        return Err(error);
                    }
                },
                Attempt::Fatal(error) => {
                    bump(&self.stats.failed_calls);
                    return Err(error);
                }
                Attempt::Unauthorized(message) if !refreshed => {
                    refreshed = true;
                    force_refresh = true;
                    tracing::info!(call, %message, "Google refused the access token; retrying with a fresh one");
                    continue;
                }
                Attempt::Unauthorized(message) => {
                    bump(&self.stats.failed_calls);
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
                    bump(&self.stats.failed_calls);
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
        let sent = self
            .http
            .get(url.clone())
            .bearer_auth(token)
            .timeout(self.settings.request_timeout())
            .send()
            .await;
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
                bump(&self.stats.rate_limited);
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
            StatusCode::FORBIDDEN if detail.as_ref().is_some_and(api_disabled) => {
                Attempt::Fatal(SheetsError::ApiDisabled {
                    email: auth.client_email.clone(),
                    message,
                })
            }
            StatusCode::FORBIDDEN => Attempt::Fatal(SheetsError::NotShared {
                spreadsheet_id: spreadsheet_id.to_owned(),
                email: auth.client_email.clone(),
            }),
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

fn transport_reason(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "no answer within the request timeout".to_owned()
    } else {
        format!("network error: {}", super::error_chain(error))
    }
}

/// The most of an error answer's body that is read.
const ERROR_BODY_BYTES: u64 = 64 * 1024;

/// The body, up to `limit` bytes, and whether there was more.
async fn read_capped(mut response: reqwest::Response, limit: u64) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = usize::try_from(limit.saturating_sub(body.len() as u64)).unwrap_or(usize::MAX);
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// How a call reads a successful answer.
trait ReadAnswer {
    type Output;

    fn read(
        &mut self,
        response: reqwest::Response,
        call: &str,
    ) -> impl Future<Output = Result<Self::Output, AnswerFailure>> + Send;
}

/// A small JSON answer (`spreadsheets.get`), read whole within the cap.
struct JsonAnswer<T> {
    max_bytes: u64,
    _output: std::marker::PhantomData<fn() -> T>,
}

impl<T> JsonAnswer<T> {
    fn new(max_bytes: u64) -> Self {
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

/// A round of pages, streamed into the tabs' spools. A retried round first
/// forgets what the failed attempt wrote.
struct PagesAnswer<'a> {
    /// `None` only if the parser panicked, losing them.
    tabs: Option<Vec<TabPages>>,
    spreadsheet_id: &'a str,
    round: usize,
    max_bytes: u64,
}

impl ReadAnswer for PagesAnswer<'_> {
    type Output = pages::TabOutcomes;

    async fn read(&mut self, mut response: reqwest::Response, call: &str) -> Result<pages::TabOutcomes, AnswerFailure> {
        let failed = |message: String| {
            AnswerFailure::Failed(SheetsError::Malformed {
                call: call.to_owned(),
                message,
            })
        };
        let mut tabs = self
            .tabs
            .take()
            .ok_or_else(|| failed("the answer's parser stopped".to_owned()))?;
        for tab in &mut tabs {
            tab.restart_round()
                .map_err(|error| AnswerFailure::Failed(SheetsError::Spool(error.to_string())))?;
        }
        let (tabs, outcome) = pages::read_answer(
            &mut response,
            tabs,
            (self.spreadsheet_id, self.round),
            call,
            self.max_bytes,
        )
        .await;
        self.tabs = tabs;
        outcome
    }
}

/// A 403 that is about the project (API not enabled), not about sharing.
fn api_disabled(detail: &ErrorDetail) -> bool {
    let details = serde_json::to_string(&detail.details).unwrap_or_default();
    details.contains("SERVICE_DISABLED")
        || detail.message.contains("has not been used in project")
        || detail.message.contains("is disabled")
}

/// The title of the tab `sheet` reads: its name, else its `gid`, else the first tab.
fn resolve_tab(spreadsheet_id: &str, info: &SpreadsheetInfo, sheet: &SheetRef) -> Result<String, SheetsError> {
    let available = || {
        info.tabs
            .iter()
            .map(|(_, title)| format!("{title:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = &sheet.sheet_name {
        // The exact title first; people type sheet_name by hand, so one that
        // differs only in case or surrounding spaces is accepted too, and the
        // range then uses the title as Google spells it.
        let found = info.tabs.iter().find(|(_, title)| title == name).or_else(|| {
            info.tabs
                .iter()
                .find(|(_, title)| title.trim().eq_ignore_ascii_case(name.trim()))
        });
        return found
            .map(|(_, title)| title.clone())
            .ok_or_else(|| SheetsError::NoSuchTab {
                spreadsheet_id: spreadsheet_id.to_owned(),
                tab: name.clone(),
                available: available(),
            });
    }
    if let Some(gid) = sheet.gid {
        return info
            .tabs
            .iter()
            .find(|(id, _)| *id == gid)
            .map(|(_, title)| title.clone())
            .ok_or_else(|| SheetsError::NoSuchGid {
                spreadsheet_id: spreadsheet_id.to_owned(),
                gid,
                available: available(),
            });
    }
    info.tabs
        .first()
        .map(|(_, title)| title.clone())
        .ok_or_else(|| SheetsError::NoTabs {
            spreadsheet_id: spreadsheet_id.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_tab_by_name_gid_or_first() {
        let info = SpreadsheetInfo {
            time_zone: chrono_tz::UTC,
            tabs: vec![(0, "Signal".into()), (42, "It's Q1".into())],
            row_counts: HashMap::new(),
        };
        let sheet = |gid: Option<i64>, name: Option<&str>| SheetRef {
            spreadsheet_id: "id".into(),
            gid,
            sheet_name: name.map(str::to_owned),
        };
        assert_eq!(resolve_tab("id", &info, &sheet(None, None)).unwrap(), "Signal");
        assert_eq!(resolve_tab("id", &info, &sheet(Some(42), None)).unwrap(), "It's Q1");
        assert_eq!(
            resolve_tab("id", &info, &sheet(Some(42), Some("signal"))).unwrap(),
            "Signal"
        );
        let error = resolve_tab("id", &info, &sheet(None, Some("Market")))
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"Market\"") && error.contains("\"It's Q1\""), "{error}");
        assert!(matches!(
            resolve_tab("id", &info, &sheet(Some(7), None)),
            Err(SheetsError::NoSuchGid { gid: 7, .. })
        ));
    }

    #[test]
    fn endpoints_keep_a_path_prefix_and_escape_ids() {
        crate::tls::install_crypto_provider();
        let mut settings = GoogleSettings {
            api_url: "http://proxy.internal/google/".to_owned(),
            ..GoogleSettings::default()
        };
        let sheets = GoogleSheets::new(settings.clone(), reqwest::Client::new(), 1 << 20);
        assert_eq!(
            sheets.endpoint(&["abc", "values:batchGet"]).unwrap().as_str(),
            "http://proxy.internal/google/v4/spreadsheets/abc/values:batchGet"
        );
        settings.api_url = "https://sheets.googleapis.com".to_owned();
        let sheets = GoogleSheets::new(settings, reqwest::Client::new(), 1 << 20);
        assert_eq!(
            sheets.endpoint(&["a/b?c"]).unwrap().as_str(),
            "https://sheets.googleapis.com/v4/spreadsheets/a%2Fb%3Fc"
        );
    }
}
