//! Fetching: CSV files and downloads, and Google spreadsheets (one
//! `values:batchGet` per spreadsheet for all the views that read it).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::csv::{CsvError, CsvSource};
use super::error::SourceError;
use super::policy::{FileOpenError, GuardedResolver, SourcePolicy, SourcesSettings};
use super::rows::SourceRows;
use super::sheets::settings::GoogleSettings;
use super::sheets::{GoogleSheets, GoogleStatsSnapshot, SheetCheck, SheetsError};
use super::spec::{SheetRef, SourceSpec, google_sheet};
use super::spool::SpooledRows;
use super::workbook::{WorkbookLimits, WorkbookSource, WorkbookTabs};

use crate::redact::redact_url;

/// Fetches sources. One HTTP client serves every download and every Sheets
/// API call; Google token requests use a twin built the same way, but
/// without the source policy and without redirects (see
/// [`Sources::new`]).
#[derive(Debug, Clone)]
pub struct Sources {
    http: reqwest::Client,
    policy: Arc<SourcePolicy>,
    google: Arc<GoogleSheets>,
    shared: Option<Arc<SharedFetches>>,
}

/// What changes when a source does, and when it was last edited where the
/// source says (a file's time, Drive's `modifiedTime`, `Last-Modified`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeMark {
    pub mark: String,
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// A file source opened beneath its root; `location` names it in errors.
fn open_file(policy: &SourcePolicy, path: &Path, location: &str) -> Result<std::fs::File, SourceError> {
    policy.open_file(path).map_err(|error| match error {
        FileOpenError::Refused(refusal) => SourceError::Refused(refusal),
        FileOpenError::Io(source) => SourceError::Csv(CsvError::Read {
            location: location.to_owned(),
            source,
        }),
    })
}

/// What `sheetsync check` learns of a Google link.
#[derive(Debug)]
pub enum GoogleCheck {
    Spreadsheet(SheetCheck),
    /// An Office file on Drive, downloaded (`[google] office_files`): its
    /// tabs when it is a workbook, `None` for a CSV file.
    OfficeFile {
        credentials: SheetCheck,
        workbook: Option<WorkbookTabs>,
    },
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
    tables: tokio::sync::Mutex<HashMap<SheetRef, (Instant, SpooledRows)>>,
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
        let policy = Arc::new(SourcePolicy::new(settings));
        // Google compresses an answer only for a User-Agent that names gzip
        // (with `Accept-Encoding: gzip`, which reqwest sends).
        let client = || {
            reqwest::Client::builder().timeout(download_timeout).user_agent(concat!(
                "sheetsync/",
                env!("CARGO_PKG_VERSION"),
                " (gzip)"
            ))
        };
        let built =
            |builder: reqwest::ClientBuilder| builder.build().map_err(|error| SourceError::Client(error.to_string()));
        let http = built(
            client()
                .dns_resolver(GuardedResolver {
                    policy: Arc::clone(&policy),
                })
                .redirect(policy.redirects()),
        )?;
        // Token requests go where the operator's credentials say (a token
        // endpoint, the link-local metadata server), which the sources'
        // policy is not about; they carry secrets, so they follow no redirect.
        let credentials_http = built(client().redirect(reqwest::redirect::Policy::none()))?;
        let google = Arc::new(GoogleSheets::new(
            google,
            http.clone(),
            credentials_http,
            policy.max_download_bytes,
        ));
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

    /// Whether a Google view could be read: the credentials load, a token is
    /// granted, the spreadsheet is reachable and the tab exists.
    /// An Office file on Drive (with `[google] office_files`) is downloaded
    /// and its tabs listed as for a workbook file.
    pub async fn check_google(&self, sheet: &SheetRef) -> Result<GoogleCheck, SourceError> {
        match self.google.check(sheet).await {
            Err(SheetsError::OfficeFile { .. }) if self.google.reads_office_files() => {
                let file = self.google.download_office_file(&sheet.spreadsheet_id).await?;
                let (limits, sheet_name) = (self.policy.workbook_limits, sheet.sheet_name.clone());
                let location = office_file_location(&sheet.spreadsheet_id);
                let tabs = blocking(move || {
                    let mut file = file;
                    Ok(office_workbook(&location, sheet_name.as_deref(), limits).tabs(&mut file)?)
                })
                .await?;
                Ok(GoogleCheck::OfficeFile {
                    credentials: self.google.credential_check().await?,
                    workbook: tabs,
                })
            }
            checked => Ok(GoogleCheck::Spreadsheet(checked?)),
        }
    }

    /// Fetches every spec's table; one result per spec, in order, so that one
    /// failing source never hides the others. Google views are grouped by
    /// spreadsheet: one `values:batchGet` per spreadsheet however many views
    /// read from it (and a `spreadsheets.get` when its metadata is not cached).
    pub async fn fetch_all(&self, specs: &[&SourceSpec]) -> Vec<Result<SourceRows, SourceError>> {
        self.fetch_all_with(specs, &[]).await
    }

    /// [`Sources::fetch_all`], where `companions` are the sources of the
    /// other views of this cycle: with shared fetches on, their tabs join the
    /// same `values:batchGet` and their tables wait for their runs.
    pub async fn fetch_all_with(
        &self,
        specs: &[&SourceSpec],
        companions: &[&SourceSpec],
    ) -> Vec<Result<SourceRows, SourceError>> {
        let mut tables: Vec<Option<Result<SourceRows, SourceError>>> = specs.iter().map(|_| None).collect();
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
                tables[index] = Some(Ok(SourceRows::Spooled(table.1)));
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
            let results = self.google.fetch_spreadsheet(spreadsheet_id, &sheets).await;
            if self.google.reads_office_files()
                && results
                    .iter()
                    .all(|result| matches!(result, Err(SheetsError::OfficeFile { .. })))
            {
                // One download for the views asked for and, with shared
                // fetches on, the companions that read the same file.
                let mut read = self.read_office_file(spreadsheet_id, &sheets).await.into_iter();
                for (index, result) in members.into_iter().zip(read.by_ref().take(wanted)) {
                    tables[index] = Some(result);
                }
                if let Some(cache) = shared.as_mut() {
                    for (sheet, result) in sheets[wanted..].iter().zip(read) {
                        // Spooled rows can wait for their run; a CSV
                        // uploaded to Drive is read again then.
                        if let Ok(SourceRows::Spooled(table)) = result {
                            cache.insert((*sheet).clone(), (Instant::now(), table));
                        }
                    }
                }
                continue;
            }
            let mut results = results.into_iter();
            for (index, result) in members.into_iter().zip(results.by_ref().take(wanted)) {
                tables[index] = Some(result.map(SourceRows::Spooled).map_err(SourceError::from));
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
                table.unwrap_or_else(|| Err(SourceError::Internal("source not fetched".to_owned())))
            })
            .collect()
    }

    /// Fetches one source (a Google sheet on its own).
    pub async fn fetch(&self, spec: &SourceSpec) -> Result<SourceRows, SourceError> {
        match spec {
            SourceSpec::File { path, sheet_name } => {
                let (policy, path, location) = (Arc::clone(&self.policy), path.clone(), spec.describe());
                let sheet_name = sheet_name.clone();
                // Sniffing reads the whole file once (a CSV's encoding, a
                // workbook's parts against the caps).
                blocking(move || {
                    let file = open_file(&policy, &path, &location)?;
                    let name = path.to_string_lossy();
                    let workbook = WorkbookSource {
                        location: &location,
                        name: &name,
                        sheet_name: sheet_name.as_deref(),
                        limits: policy.workbook_limits,
                    };
                    file_rows(&workbook, file)
                })
                .await
            }
            SourceSpec::Download { url, sheet_name } => {
                let location = spec.describe();
                let name = reqwest::Url::parse(url)
                    .map(|url| url.path().to_owned())
                    .unwrap_or_default();
                let (limits, sheet_name) = (self.policy.workbook_limits, sheet_name.clone());
                let download = self.download(url).await?;
                blocking(move || {
                    let workbook = WorkbookSource {
                        location: &location,
                        name: &name,
                        sheet_name: sheet_name.as_deref(),
                        limits,
                    };
                    Ok(match download {
                        Download::Spooled(mut file) => match workbook.read_if_workbook(file.as_file_mut())? {
                            Some(rows) => SourceRows::Spooled(rows),
                            None => SourceRows::Csv(CsvSource::from_spool(file, &location)?),
                        },
                        Download::InMemory(bytes) => {
                            let mut bytes = std::io::Cursor::new(bytes);
                            match workbook.read_if_workbook(&mut bytes)? {
                                Some(rows) => SourceRows::Spooled(rows),
                                None => SourceRows::Csv(CsvSource::from_bytes(bytes.into_inner(), &location)),
                            }
                        }
                    })
                })
                .await
            }
            SourceSpec::GoogleSheet(sheet) => {
                let mut results = self.google.fetch_spreadsheet(&sheet.spreadsheet_id, &[sheet]).await;
                match results.pop() {
                    Some(Err(SheetsError::OfficeFile { .. })) if self.google.reads_office_files() => {
                        let mut read = self.read_office_file(&sheet.spreadsheet_id, &[sheet]).await;
                        // One result per sheet asked for.
                        read.pop()
                            .unwrap_or_else(|| Err(SourceError::Internal("Office file not read".to_owned())))
                    }
                    Some(table) => Ok(SourceRows::Spooled(table?)),
                    None => Err(SheetsError::MissingRange {
                        spreadsheet_id: sheet.spreadsheet_id.clone(),
                        range: spec.describe(),
                    }
                    .into()),
                }
            }
        }
    }

    /// The tabs `sheets` name of an Office file on Drive, read as a
    /// workbook: one download for all of them. A CSV uploaded to Drive (the
    /// Sheets API refuses it too) is read as CSV.
    async fn read_office_file(&self, file_id: &str, sheets: &[&SheetRef]) -> Vec<Result<SourceRows, SourceError>> {
        let file = match self.google.download_office_file(file_id).await {
            Ok(file) => file,
            Err(error) => return sheets.iter().map(|_| Err(error.clone().into())).collect(),
        };
        let names: Vec<Option<String>> = sheets.iter().map(|sheet| sheet.sheet_name.clone()).collect();
        let (limits, location) = (self.policy.workbook_limits, office_file_location(file_id));
        let read = blocking(move || {
            let read_tab = |name: &Option<String>| {
                // Each tab's reader rewinds the shared handle before reading.
                let file = file.try_clone().map_err(|source| CsvError::Read {
                    location: location.clone(),
                    source,
                })?;
                file_rows(&office_workbook(&location, name.as_deref(), limits), file)
            };
            Ok(names.iter().map(read_tab).collect::<Vec<_>>())
        })
        .await;
        read.unwrap_or_else(|stopped| {
            let reason = match stopped {
                SourceError::Internal(reason) => reason,
                other => other.to_string(),
            };
            sheets
                .iter()
                .map(|_| Err(SourceError::Internal(reason.clone())))
                .collect()
        })
    }

    /// What changes when the source does, asked cheaply: a file's length
    /// and modification time, a spreadsheet's Drive `version` and
    /// `modifiedTime`. `None` for sources that cannot be asked (downloads).
    pub async fn change_mark(&self, spec: &SourceSpec) -> Result<Option<ChangeMark>, SourceError> {
        match spec {
            SourceSpec::File { path, .. } => {
                let file = self.open_file(path)?;
                let metadata = file.metadata().map_err(|source| {
                    SourceError::Csv(CsvError::Read {
                        location: spec.describe(),
                        source,
                    })
                })?;
                let modified = metadata.modified().ok();
                let nanos = modified
                    .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |since| since.as_nanos());
                Ok(Some(ChangeMark {
                    mark: format!("{} bytes, modified {nanos}", metadata.len()),
                    modified: modified.map(chrono::DateTime::<chrono::Utc>::from),
                }))
            }
            SourceSpec::Download { url, .. } => self.http_mark(url).await,
            SourceSpec::GoogleSheet(sheet) => {
                let stamp = self.google.modified(&sheet.spreadsheet_id).await?;
                Ok(Some(ChangeMark {
                    mark: format!("version {}, modified {}", stamp.version, stamp.modified_time),
                    modified: chrono::DateTime::parse_from_rfc3339(&stamp.modified_time)
                        .ok()
                        .map(|moment| moment.with_timezone(&chrono::Utc)),
                }))
            }
        }
    }

    /// A download's `ETag` or `Last-Modified`, asked with `HEAD` (no body);
    /// `None` when the server gives neither (then only the schedule and
    /// refreshes read it).
    async fn http_mark(&self, url: &str) -> Result<Option<ChangeMark>, SourceError> {
        let response = self.send(self.http.head(url), url).await?;
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let modified = last_modified
            .as_deref()
            .and_then(|date| chrono::DateTime::parse_from_rfc2822(date).ok())
            .map(|moment| moment.with_timezone(&chrono::Utc));
        let mark = header(reqwest::header::ETAG)
            .map(|etag| format!("etag {etag}"))
            .or_else(|| last_modified.map(|date| format!("modified {date}")));
        Ok(mark.map(|mark| ChangeMark { mark, modified }))
    }

    /// Opens an admitted file source beneath its root, as a sync would
    /// (for `check`).
    pub fn open_file(&self, path: &Path) -> Result<std::fs::File, SourceError> {
        open_file(&self.policy, path, &format!("file://{}", path.display()))
    }

    /// Whether a file source could be read, as a sync would open it (for
    /// `check`): for a workbook, its format, its tabs and the one chosen;
    /// `None` for a CSV export.
    pub async fn check_file(&self, path: &Path, sheet_name: Option<&str>) -> Result<Option<WorkbookTabs>, SourceError> {
        let (policy, path, sheet_name) = (Arc::clone(&self.policy), path.to_owned(), sheet_name.map(str::to_owned));
        blocking(move || {
            let location = format!("file://{}", path.display());
            let mut file = open_file(&policy, &path, &location)?;
            let workbook = WorkbookSource {
                location: &location,
                name: &path.to_string_lossy(),
                sheet_name: sheet_name.as_deref(),
                limits: policy.workbook_limits,
            };
            Ok(workbook.tabs(&mut file)?)
        })
        .await
    }

    /// Sends a request for a download `url`; a refused or failed one, or an
    /// error status, as the source's error. The causes carry the reason (a
    /// refused address and the setting that allows it, a DNS failure); the
    /// URL is given once, redacted.
    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response, SourceError> {
        let response = request.send().await.map_err(|error| SourceError::Http {
            url: redact_url(url),
            message: crate::redact::http_error_chain(error),
        })?;
        if !response.status().is_success() {
            return Err(SourceError::HttpStatus {
                url: redact_url(url),
                status: response.status().as_u16(),
            });
        }
        Ok(response)
    }

    /// Downloads `url` within the size cap, chunk by chunk into a spool file
    /// (memory then holds a chunk, not the export); where no spool file can
    /// be made (a read-only file system without a writable temporary
    /// directory) into memory, still capped.
    async fn download(&self, url: &str) -> Result<Download, SourceError> {
        let http_error = |error: reqwest::Error| SourceError::Http {
            url: redact_url(url),
            message: crate::redact::http_error_chain(error),
        };
        let mut response = self.send(self.http.get(url), url).await?;
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
                Ok(Download::Spooled(file))
            }
            _ => Ok(Download::InMemory(body)),
        }
    }
}

/// An Office file on Drive as errors name it.
fn office_file_location(file_id: &str) -> String {
    format!("Office file {file_id} on Google Drive")
}

/// How an Office file from Drive is read: as a workbook file whose name
/// claims nothing (its content decides), with the view's tab.
fn office_workbook<'a>(location: &'a str, sheet_name: Option<&'a str>, limits: WorkbookLimits) -> WorkbookSource<'a> {
    WorkbookSource {
        location,
        name: "",
        sheet_name,
        limits,
    }
}

/// Runs a blocking read (a file's sniff, a workbook's parse) off the
/// async threads.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|error| SourceError::Internal(format!("the file reader stopped: {error}")))?
}

/// An opened file's rows: the chosen tab's when it is a workbook, else
/// the file as a CSV export (`workbook` rewinds it for the CSV reader).
fn file_rows(workbook: &WorkbookSource<'_>, mut file: std::fs::File) -> Result<SourceRows, SourceError> {
    Ok(match workbook.read_if_workbook(&mut file)? {
        Some(rows) => SourceRows::Spooled(rows),
        None => SourceRows::Csv(CsvSource::from_file(file, workbook.location)?),
    })
}

/// A download: spooled to disk, or in memory where that cannot be.
enum Download {
    Spooled(tempfile::NamedTempFile),
    InMemory(Vec<u8>),
}
