//! Where a view's rows come from, and fetching them.
//!
//! A view's `sheet_url` (or its config override) is classified once into a
//! [`SourceSpec`]; [`Sources::fetch`] then turns specs into [`Fetched`] rows
//! that the sync can read more than once.

pub mod csv;
pub mod policy;
pub mod sheets;
pub mod spool;
pub mod table;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Serialize;

use crate::redact::redact_url;
use policy::SourcesSettings;
use sheets::settings::GoogleSettings;
use sheets::{GoogleSheets, GoogleStatsSnapshot, SheetCheck, SheetsError};
use table::{Row, Table};

/// Where one view reads its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A CSV file on this host.
    CsvFile(PathBuf),
    /// A CSV served over HTTP(S), including Google's public CSV export links.
    CsvHttp(String),
    /// A tab of a Google spreadsheet, read through the Sheets API.
    GoogleSheet(SheetRef),
}

/// A tab of a Google spreadsheet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SheetRef {
    pub spreadsheet_id: String,
    /// The tab named by the URL's `gid`, used when no sheet name is set.
    pub gid: Option<i64>,
    /// The tab's title; when absent, the `gid` tab, else the first tab.
    pub sheet_name: Option<String>,
}

/// The two kinds the schema's `data_metadata.source_type` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    Csv,
    GoogleSheets,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Csv => "csv",
            SourceType::GoogleSheets => "google_sheets",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {0:?} is neither a file:// path, an http(s) URL nor a Google Sheets link or ID")]
    Unrecognised(String),
    #[error("cannot download {url}: {message}")]
    Http { url: String, message: String },
    #[error("{url} answered HTTP {status}; check that the link is public and still valid")]
    HttpStatus { url: String, status: u16 },
    #[error(transparent)]
    Csv(#[from] csv::CsvError),
    #[error(transparent)]
    Sheets(#[from] SheetsError),
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Refused(#[from] policy::PolicyError),
    #[error(
        "{url} is larger than [sources] max_download_bytes ({limit} bytes); raise the limit if this export is \
         meant to be that large"
    )]
    TooLarge { url: String, limit: u64 },
}

impl SourceSpec {
    /// Classifies a view's source. `sheet_name` is the view's tab, which only
    /// Google Sheets sources use.
    pub fn parse(source: &str, sheet_name: Option<&str>) -> Result<SourceSpec, SourceError> {
        let source = source.trim();
        let sheet_name = sheet_name
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned);
        if let Some(path) = source.strip_prefix("file://") {
            return Ok(SourceSpec::CsvFile(PathBuf::from(path)));
        }
        if source.starts_with('/') || source.starts_with("./") {
            return Ok(SourceSpec::CsvFile(PathBuf::from(source)));
        }
        if is_spreadsheet_id(source) {
            return Ok(SourceSpec::GoogleSheet(SheetRef {
                spreadsheet_id: source.to_owned(),
                gid: None,
                sheet_name,
            }));
        }
        let url = Url::parse(source).map_err(|_| SourceError::Unrecognised(redact_url(source)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SourceError::Unrecognised(redact_url(source)));
        }
        match google_spreadsheet_id(&url) {
            Some(id) if !is_csv_export(&url) => Ok(SourceSpec::GoogleSheet(SheetRef {
                spreadsheet_id: id,
                gid: gid_of(&url),
                sheet_name,
            })),
            _ => Ok(SourceSpec::CsvHttp(source.to_owned())),
        }
    }

    pub fn source_type(&self) -> SourceType {
        match self {
            SourceSpec::CsvFile(_) | SourceSpec::CsvHttp(_) => SourceType::Csv,
            SourceSpec::GoogleSheet(_) => SourceType::GoogleSheets,
        }
    }

    /// The source as an operator would recognise it, secrets redacted.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::CsvFile(path) => format!("file://{}", path.display()),
            SourceSpec::CsvHttp(url) => redact_url(url),
            SourceSpec::GoogleSheet(sheet) => {
                let tab = match (&sheet.sheet_name, sheet.gid) {
                    (Some(name), _) => format!("tab {name:?}"),
                    (None, Some(gid)) => format!("tab gid={gid}"),
                    (None, None) => "first tab".to_owned(),
                };
                format!("Google spreadsheet {} ({tab})", sheet.spreadsheet_id)
            }
        }
    }
}

/// Spreadsheet IDs are long runs of URL-safe base64 characters.
fn is_spreadsheet_id(text: &str) -> bool {
    text.len() >= 25 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `ID` from `https://docs.google.com/spreadsheets/d/ID/...`.
fn google_spreadsheet_id(url: &Url) -> Option<String> {
    if url.host_str() != Some("docs.google.com") {
        return None;
    }
    let mut segments = url.path_segments()?;
    while let Some(segment) = segments.next() {
        if segment == "d" {
            return segments.next().filter(|id| !id.is_empty()).map(str::to_owned);
        }
    }
    None
}

/// `/export?format=csv` and `/gviz/tq?tqx=out:csv` links are public CSV.
fn is_csv_export(url: &Url) -> bool {
    let path = url.path();
    let query = url.query().unwrap_or("");
    (path.ends_with("/export") && query.contains("format=csv"))
        || (path.contains("/gviz/tq") && query.contains("out:csv"))
}

/// The tab id from `?gid=N` or `#gid=N`.
fn gid_of(url: &Url) -> Option<i64> {
    let from_query = url
        .query_pairs()
        .find(|(name, _)| name == "gid")
        .and_then(|(_, value)| value.parse().ok());
    from_query.or_else(|| {
        url.fragment()?
            .split('&')
            .find_map(|part| part.strip_prefix("gid=")?.parse().ok())
    })
}

/// A source's rows, fetched and ready to be read in passes.
#[derive(Debug)]
pub enum Fetched {
    /// Rows built in memory (tests, small tables).
    Table(Table),
    /// Rows an API sent (Google Sheets), spooled to a temporary file as they
    /// arrived and read back on each pass.
    Spooled(spool::SpooledRows),
    /// A CSV export, parsed anew on each pass so it is never held as cells.
    Csv(csv::CsvSource),
}

impl Fetched {
    /// Starts a pass over the rows.
    pub fn rows(&self) -> Result<RowReader<'_>, SourceError> {
        Ok(match self {
            Fetched::Table(table) => RowReader::Table {
                rows: table.rows.iter(),
                blank_rows: table.blank_rows,
            },
            Fetched::Spooled(spooled) => RowReader::Spooled {
                pass: Box::new(spooled.rows()),
                blank_rows: spooled.blank_rows(),
            },
            Fetched::Csv(source) => RowReader::Csv(Box::new(source.rows()?)),
        })
    }

    /// The Google Sheets tab read (its `gid`), if the rows come from one.
    pub fn tab_gid(&self) -> Option<i64> {
        match self {
            Fetched::Table(table) => table.tab_gid,
            Fetched::Spooled(spooled) => spooled.tab_gid,
            Fetched::Csv(_) => None,
        }
    }

    /// The zone in which numeric date cells (spreadsheet serials) are read.
    pub fn serial_time_zone(&self) -> Option<chrono_tz::Tz> {
        match self {
            Fetched::Table(table) => table.serial_time_zone,
            Fetched::Spooled(spooled) => spooled.serial_time_zone,
            Fetched::Csv(_) => None,
        }
    }
}

/// One pass over a source's non-blank rows. Each row is lent until the
/// next: the readers refill the same buffers rather than allocating a row
/// of cells per line.
pub enum RowReader<'a> {
    Table {
        rows: std::slice::Iter<'a, Row>,
        blank_rows: usize,
    },
    /// Boxed: a pass carries its read buffer.
    Spooled {
        pass: Box<spool::SpoolPass>,
        blank_rows: usize,
    },
    /// Boxed: a CSV pass carries the parser's buffers.
    Csv(Box<csv::CsvRows>),
}

impl RowReader<'_> {
    pub fn next_row(&mut self) -> Option<Result<&Row, SourceError>> {
        match self {
            RowReader::Table { rows, .. } => rows.next().map(Ok),
            RowReader::Spooled { pass, .. } => pass.next_row().map(|row| row.map_err(SourceError::from)),
            RowReader::Csv(rows) => rows.next_row().map(|row| row.map_err(SourceError::from)),
        }
    }

    /// Blank rows skipped so far (all of them, once the pass is over).
    pub fn blank_rows(&self) -> usize {
        match self {
            RowReader::Table { blank_rows, .. } | RowReader::Spooled { blank_rows, .. } => *blank_rows,
            RowReader::Csv(rows) => rows.blank_rows(),
        }
    }

    /// Up to `max` rows, owned, to be handed to another thread; empty at the
    /// end. A CSV pass hands over the batches its parser thread made.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<Row>, SourceError> {
        if let RowReader::Csv(rows) = self {
            return Ok(rows.next_batch()?);
        }
        let mut batch = Vec::with_capacity(max);
        while batch.len() < max {
            match self.next_row() {
                Some(row) => batch.push(row?.clone()),
                None => break,
            }
        }
        Ok(batch)
    }

    /// Where batches taken with [`RowReader::next_batch`] can be given back
    /// once read, for their buffers to be refilled.
    pub fn recycler(&self) -> Option<std::sync::mpsc::SyncSender<Vec<Row>>> {
        match self {
            RowReader::Csv(rows) => Some(rows.recycler()),
            _ => None,
        }
    }
}

fn google_sheet(spec: &SourceSpec) -> Option<&SheetRef> {
    match spec {
        SourceSpec::GoogleSheet(sheet) => Some(sheet),
        _ => None,
    }
}

/// Fetches sources. One HTTP client serves every download and
/// every Sheets API call (the Google token requests go through yup-oauth2's
/// hyper client, on the same hyper/rustls/ring stack).
#[derive(Debug, Clone)]
pub struct Sources {
    http: reqwest::Client,
    policy: Arc<policy::SourcePolicy>,
    google: Arc<GoogleSheets>,
    shared: Option<Arc<SharedFetches>>,
}

/// Tables fetched for views other than the ones asked for, kept briefly.
///
/// The daemon syncs views one by one (each with its own lease and single
/// flight), so without this every view of a spreadsheet would cost its own
/// `values:batchGet`. With it, the first view's fetch covers every view that
/// reads the spreadsheet and leaves their tables here; each is taken once,
/// within `ttl`, by its own view's run.
#[derive(Debug)]
struct SharedFetches {
    ttl: Duration,
    /// Held while fetching, so that a view's run started during another
    /// view's fetch of the same spreadsheet waits for it and finds its table.
    tables: tokio::sync::Mutex<HashMap<SheetRef, (Instant, spool::SpooledRows)>>,
}

impl Sources {
    /// Sources as their settings say: which sources views may name
    /// (`[sources]`), how Google is called (`[google]`), and how long one
    /// download may take. The one HTTP client resolves names through the
    /// policy's guard and follows only redirects the policy admits, for
    /// downloads and Sheets API calls alike.
    pub fn new(
        settings: &SourcesSettings,
        google: GoogleSettings,
        download_timeout: Duration,
    ) -> Result<Sources, SourceError> {
        crate::tls::install_crypto_provider();
        let policy = Arc::new(policy::SourcePolicy::new(settings));
        let http = reqwest::Client::builder()
            .timeout(download_timeout)
            .user_agent(concat!("sheetsync/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(policy::GuardedResolver {
                policy: Arc::clone(&policy),
            })
            .redirect(policy.redirects())
            .build()
            .map_err(|error| SourceError::Client(error.to_string()))?;
        let google = Arc::new(GoogleSheets::new(google, http.clone(), policy.max_download_bytes));
        Ok(Sources {
            http,
            policy,
            google,
            shared: None,
        })
    }

    /// Fetches each spreadsheet once for all the views that read it, keeping
    /// the tables of views not asked for (`companions` of
    /// [`Sources::fetch_all_with`]) for up to `ttl` for their own runs.
    pub fn sharing_spreadsheet_fetches(mut self, ttl: Duration) -> Sources {
        self.shared = Some(Arc::new(SharedFetches {
            ttl,
            tables: tokio::sync::Mutex::new(HashMap::new()),
        }));
        self
    }

    /// Google API traffic since this `Sources` was built.
    pub fn google_stats(&self) -> GoogleStatsSnapshot {
        self.google.stats()
    }

    /// Whether a Google view could be read: the key loads, a token is
    /// granted, the spreadsheet is reachable and the tab exists.
    pub async fn check_google(&self, sheet: &SheetRef) -> Result<SheetCheck, SourceError> {
        Ok(self.google.check(sheet).await?)
    }

    /// Fetches every spec's table; one result per spec, in order, so that one
    /// failing source never hides the others. Google views are grouped by
    /// spreadsheet: one `values:batchGet` per spreadsheet however many views
    /// read from it (and a `spreadsheets.get` when its metadata is not cached).
    pub async fn fetch_all(&self, specs: &[&SourceSpec]) -> Vec<Result<Fetched, SourceError>> {
        self.fetch_all_with(specs, &[]).await
    }

    /// [`Sources::fetch_all`], where `companions` are the sources of the
    /// other views of this cycle: with shared fetches on, their tabs join the
    /// same `values:batchGet` and their tables wait for their runs.
    pub async fn fetch_all_with(
        &self,
        specs: &[&SourceSpec],
        companions: &[&SourceSpec],
    ) -> Vec<Result<Fetched, SourceError>> {
        let mut tables: Vec<Option<Result<Fetched, SourceError>>> = specs.iter().map(|_| None).collect();
        for (index, spec) in specs.iter().enumerate() {
            if google_sheet(spec).is_none() {
                tables[index] = Some(self.fetch(spec).await);
            }
        }
        // Taken only now: a CSV download never waits for another view's
        // spreadsheet, which may be retrying for minutes.
        let mut shared = match &self.shared {
            Some(shared) => {
                let mut tables = shared.tables.lock().await;
                tables.retain(|_, (fetched_at, _)| fetched_at.elapsed() < shared.ttl);
                Some(tables)
            }
            None => None,
        };
        let mut spreadsheets: Vec<(&str, Vec<usize>)> = Vec::new();
        for (index, sheet) in specs
            .iter()
            .enumerate()
            .filter_map(|(index, spec)| Some((index, google_sheet(spec)?)))
        {
            if let Some(table) = shared.as_mut().and_then(|cache| cache.remove(sheet)) {
                tables[index] = Some(Ok(Fetched::Spooled(table.1)));
                continue;
            }
            match spreadsheets.iter_mut().find(|(id, _)| *id == sheet.spreadsheet_id) {
                Some((_, members)) => members.push(index),
                None => spreadsheets.push((&sheet.spreadsheet_id, vec![index])),
            }
        }
        for (spreadsheet_id, members) in spreadsheets {
            let mut sheets: Vec<&SheetRef> = members.iter().filter_map(|&index| google_sheet(specs[index])).collect();
            let wanted = sheets.len();
            if shared.is_some() {
                for companion in companions.iter().filter_map(|spec| google_sheet(spec)) {
                    if companion.spreadsheet_id == spreadsheet_id && !sheets.contains(&companion) {
                        sheets.push(companion);
                    }
                }
            }
            let mut results = self.google.fetch_spreadsheet(spreadsheet_id, &sheets).await.into_iter();
            for (index, result) in members.into_iter().zip(results.by_ref().take(wanted)) {
                tables[index] = Some(result.map(Fetched::Spooled).map_err(SourceError::from));
            }
            if let Some(cache) = shared.as_mut() {
                for (sheet, result) in sheets[wanted..].iter().zip(results) {
                    // Failures are not kept: the view's own run asks again.
                    if let Ok(table) = result {
                        cache.insert((*sheet).clone(), (Instant::now(), table));
                    }
                }
            }
        }
        tables
            .into_iter()
            .map(|table| {
                // Every index was filled above: non-Google specs directly, each
                // Google spec by its spreadsheet's results (one per member).
                table.unwrap_or_else(|| Err(SourceError::Client("internal error: source not fetched".to_owned())))
            })
            .collect()
    }

    /// Fetches one source (a Google sheet on its own).
    pub async fn fetch(&self, spec: &SourceSpec) -> Result<Fetched, SourceError> {
        match spec {
            SourceSpec::CsvFile(path) => {
                let (path, location) = (path.clone(), spec.describe());
                // Sniffing the encoding reads the whole file once.
                let source = tokio::task::spawn_blocking(move || csv::CsvSource::from_file(path, &location))
                    .await
                    .map_err(|error| SourceError::Client(format!("the file reader stopped: {error}")))??;
                Ok(Fetched::Csv(source))
            }
            SourceSpec::CsvHttp(url) => {
                let location = spec.describe();
                let source = match self.download(url).await? {
                    Downloaded::Spooled(file) => {
                        tokio::task::spawn_blocking(move || csv::CsvSource::from_spool(file, &location))
                            .await
                            .map_err(|error| SourceError::Client(format!("the file reader stopped: {error}")))??
                    }
                    Downloaded::InMemory(bytes) => csv::CsvSource::from_bytes(bytes, &location),
                };
                Ok(Fetched::Csv(source))
            }
            SourceSpec::GoogleSheet(sheet) => {
                let mut results = self.google.fetch_spreadsheet(&sheet.spreadsheet_id, &[sheet]).await;
                let table = results.pop().unwrap_or(Err(SheetsError::MissingRange {
                    spreadsheet_id: sheet.spreadsheet_id.clone(),
                    range: spec.describe(),
                }))?;
                Ok(Fetched::Spooled(table))
            }
        }
    }

    /// Downloads `url` within the size cap, chunk by chunk into a spool file
    /// (memory then holds a chunk, not the export); where no spool file can
    /// be made (a read-only file system without a writable temporary
    /// directory) into memory, still capped.
    async fn download(&self, url: &str) -> Result<Downloaded, SourceError> {
        // The causes carry the reason (a refused address and the setting that
        // allows it, a DNS failure); the URL is given once, redacted.
        let http_error = |error: reqwest::Error| SourceError::Http {
            url: redact_url(url),
            message: error_chain(error),
        };
        let mut response = self.http.get(url).send().await.map_err(http_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(SourceError::HttpStatus {
                url: redact_url(url),
                status: status.as_u16(),
            });
        }
        let limit = self.policy.max_download_bytes;
        let too_large = || SourceError::TooLarge {
            url: redact_url(url),
            limit,
        };
        if response.content_length().is_some_and(|length| length > limit) {
            return Err(too_large());
        }
        // Read chunk by chunk, so that a server lying about (or not giving)
        // its length cannot make the download grow past the limit.
        let spool = tempfile::Builder::new().prefix("sheetsync-download-").tempfile();
        let (mut spool_writer, spool) = match spool.and_then(|file| Ok((file.reopen()?, file))) {
            Ok((writer, file)) => (Some(tokio::fs::File::from_std(writer)), Some(file)),
            Err(error) => {
                tracing::warn!(%error, "no spool file for a CSV download; it is held in memory (set TMPDIR)");
                (None, None)
            }
        };
        let spool_error = |error: std::io::Error| SourceError::Http {
            url: redact_url(url),
            message: format!("writing the download's spool file: {error}"),
        };
        let (mut body, mut received) = (Vec::new(), 0u64);
        while let Some(chunk) = response.chunk().await.map_err(http_error)? {
            received += chunk.len() as u64;
            if received > limit {
                return Err(too_large());
            }
            match &mut spool_writer {
                Some(writer) => tokio::io::AsyncWriteExt::write_all(writer, &chunk)
                    .await
                    .map_err(spool_error)?,
                None => body.extend_from_slice(&chunk),
            }
        }
        match (spool_writer, spool) {
            (Some(mut writer), Some(file)) => {
                tokio::io::AsyncWriteExt::flush(&mut writer)
                    .await
                    .map_err(spool_error)?;
                Ok(Downloaded::Spooled(file))
            }
            _ => Ok(Downloaded::InMemory(body)),
        }
    }
}

/// reqwest's error with its causes (a refused address and the setting that
/// allows it, a DNS failure), without the URL: a download's URL or a proxy's
/// `api_url` may carry credentials, and the messages stay short.
fn error_chain(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A CSV download: spooled to disk, or in memory where that cannot be.
enum Downloaded {
    Spooled(tempfile::NamedTempFile),
    InMemory(Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1HJSHVRBKbwJ199VxJCioSOTz4gI9KrSniXKwAjcU3bI";

    fn sheet(gid: Option<i64>, sheet_name: Option<&str>) -> SourceSpec {
        SourceSpec::GoogleSheet(SheetRef {
            spreadsheet_id: ID.to_owned(),
            gid,
            sheet_name: sheet_name.map(str::to_owned),
        })
    }

    #[test]
    fn classifies_every_link_form() {
        let base = format!("https://docs.google.com/spreadsheets/d/{ID}");
        let cases = [
            (format!("{base}/edit#gid=42"), None, sheet(Some(42), None)),
            (
                format!("{base}/edit?usp=sharing"),
                Some("Sheet1"),
                sheet(None, Some("Sheet1")),
            ),
            (format!("{base}/edit?gid=7#gid=7"), Some("  "), sheet(Some(7), None)),
            (ID.to_owned(), Some("Q1 pipeline"), sheet(None, Some("Q1 pipeline"))),
            (
                format!("{base}/export?format=csv&gid=3"),
                None,
                SourceSpec::CsvHttp(format!("{base}/export?format=csv&gid=3")),
            ),
            (
                format!("{base}/gviz/tq?tqx=out:csv&sheet=Q1"),
                None,
                SourceSpec::CsvHttp(format!("{base}/gviz/tq?tqx=out:csv&sheet=Q1")),
            ),
            (
                "file:///data/signal.csv".to_owned(),
                None,
                SourceSpec::CsvFile("/data/signal.csv".into()),
            ),
            (
                "/data/x.csv".to_owned(),
                None,
                SourceSpec::CsvFile("/data/x.csv".into()),
            ),
            (
                "https://exports.example.com/a.csv".to_owned(),
                None,
                SourceSpec::CsvHttp("https://exports.example.com/a.csv".to_owned()),
            ),
        ];
        for (source, sheet_name, expected) in cases {
            assert_eq!(
                SourceSpec::parse(&source, sheet_name).unwrap(),
                expected,
                "classifying {source}"
            );
        }
        assert!(SourceSpec::parse("ftp://example.com/a.csv", None).is_err());
        assert!(SourceSpec::parse("not a source", None).is_err());
    }

    #[test]
    fn source_types_follow_the_schema() {
        assert_eq!(sheet(None, None).source_type().as_str(), "google_sheets");
        assert_eq!(SourceSpec::CsvFile("/a".into()).source_type().as_str(), "csv");
    }
}
