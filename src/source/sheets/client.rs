//! What sheetsync asks the Sheets API, and in what order: the spreadsheet's
//! metadata (cached), then one `values:batchGet` per round of pages.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use chrono_tz::Tz;
use reqwest::Url;
use tokio::sync::OnceCell;

use super::a1;
use super::auth::GoogleAuth;
use super::error::SheetsError;
use super::pages::{self, PagesAnswer, TabPages};
use super::settings::GoogleSettings;
use super::stats::GoogleStatsSnapshot;
use super::transport::{FileAnswer, JsonAnswer, Transport};
use super::wire::{METADATA_FIELDS, SpreadsheetMetadata};
use crate::source::spec::{SheetRef, find_tab};
use crate::source::spool::SpooledRows;

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

/// A Drive file's change marks: either changes when the file does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveStamp {
    #[serde(default)]
    pub modified_time: String,
    #[serde(default)]
    pub version: String,
}

/// A `files.get` answer with two fields is tiny.
const DRIVE_ANSWER_BYTES: u64 = 64 * 1024;

/// What `sheetsync check` learns about one Google view.
#[derive(Debug, Clone)]
pub struct SheetCheck {
    /// The kind of credential, where it was found, and who it acts as.
    pub credential_kind: &'static str,
    pub credential_origin: String,
    pub identity: String,
    pub tab: String,
    /// The spreadsheet's zone; `None` for an Office file, which has none.
    pub time_zone: Option<Tz>,
}

/// The Sheets API client. Cheap to share; the credentials are found on first
/// use (so that a deployment without Google views needs none) and kept, with
/// their token cache, for the life of the process.
#[derive(Debug)]
pub struct GoogleSheets {
    settings: GoogleSettings,
    api_url: Option<Url>,
    transport: Transport,
    /// Drive calls (watching), paced on their own quota.
    drive: Transport,
    drive_url: Option<Url>,
    /// The token requests' own client: no redirects, no source policy (its
    /// addresses come from the operator's credential file, and the metadata
    /// server is link-local).
    credentials_http: reqwest::Client,
    auth: OnceCell<GoogleAuth>,
    /// Spreadsheet metadata by spreadsheet id, with when it was read.
    metadata: Mutex<HashMap<String, (Instant, SpreadsheetInfo)>>,
}

impl GoogleSheets {
    /// `http` is the download client of `source::Sources`, `credentials_http`
    /// its twin for token requests; `max_answer_bytes` caps each answer, as
    /// downloads are capped.
    pub fn new(
        settings: GoogleSettings,
        http: reqwest::Client,
        credentials_http: reqwest::Client,
        max_answer_bytes: u64,
    ) -> GoogleSheets {
        let api_url = Url::parse(&settings.api_url).ok();
        let drive_url = Url::parse(&settings.drive_api_url).ok();
        GoogleSheets {
            transport: Transport::new(
                &settings,
                http.clone(),
                max_answer_bytes,
                "Google Sheets API",
                settings.max_requests_per_minute,
            ),
            drive: Transport::new(
                &settings,
                http,
                DRIVE_ANSWER_BYTES,
                "Google Drive API",
                settings.max_drive_requests_per_minute,
            ),
            drive_url,
            credentials_http,
            settings,
            api_url,
            auth: OnceCell::new(),
            metadata: Mutex::new(HashMap::new()),
        }
    }

    pub fn stats(&self) -> GoogleStatsSnapshot {
        self.transport.stats.snapshot()
    }

    /// The loaded credentials; a failure is not cached, so credentials
    /// fixed on disk are picked up by the next cycle.
    pub async fn auth(&self) -> Result<&GoogleAuth, SheetsError> {
        self.auth
            .get_or_try_init(|| GoogleAuth::load(&self.settings, &self.credentials_http))
            .await
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
        self.transport.stats.record_batch_get();
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
            max_bytes: self.transport.max_answer_bytes,
        };
        let outcome = self
            .transport
            .call(auth, &call, spreadsheet_id, url, &query, &mut answer)
            .await;
        (answer.tabs.unwrap_or_default(), outcome)
    }

    /// Finds the credentials, gets a token, reads the spreadsheet's tab list and finds
    /// the view's tab: everything short of reading its values.
    pub async fn check(&self, sheet: &SheetRef) -> Result<SheetCheck, SheetsError> {
        let auth = self.auth().await?;
        let info = self.fresh_info(auth, &sheet.spreadsheet_id).await?;
        let tab = resolve_tab(&sheet.spreadsheet_id, &info, sheet)?;
        let mut check = self.credential_check().await?;
        check.tab = tab;
        check.time_zone = Some(info.time_zone);
        Ok(check)
    }

    /// Which credential was found where and who it acts as, the tab and
    /// zone left for the caller to fill (an Office file has no zone).
    pub async fn credential_check(&self) -> Result<SheetCheck, SheetsError> {
        let auth = self.auth().await?;
        Ok(SheetCheck {
            credential_kind: auth.kind,
            credential_origin: auth.origin.clone(),
            identity: auth.identity.to_string(),
            tab: String::new(),
            time_zone: None,
        })
    }

    /// When the spreadsheet was last changed, as Drive says (`files.get`
    /// with `modifiedTime,version`): one small call, for watching. Needs the
    /// `drive.metadata.readonly` scope (`watch_drive`).
    pub async fn modified(&self, spreadsheet_id: &str) -> Result<DriveStamp, SheetsError> {
        let auth = self.auth().await?;
        let url = self.drive_file_url(spreadsheet_id)?;
        // A file on a shared drive is "not found" without supportsAllDrives.
        let query = [
            ("fields", "modifiedTime,version".to_owned()),
            ("supportsAllDrives", "true".to_owned()),
        ];
        let call = format!("Drive files.get of spreadsheet {spreadsheet_id}");
        let mut answer = JsonAnswer::<DriveStamp>::new(DRIVE_ANSWER_BYTES);
        self.drive
            .call(auth, &call, spreadsheet_id, url, &query, &mut answer)
            .await
    }

    /// Whether Office files on Drive are downloaded and read as workbooks
    /// (`[google] office_files`).
    pub fn reads_office_files(&self) -> bool {
        self.settings.office_files
    }

    /// An Office file's content, downloaded with Drive `files.get?alt=media`
    /// into a temporary file, within `[sources] max_download_bytes`, paced
    /// and retried as every Google call. Needs the `drive.readonly` scope
    /// (`office_files`).
    pub async fn download_office_file(&self, file_id: &str) -> Result<std::fs::File, SheetsError> {
        let auth = self.auth().await?;
        let url = self.drive_file_url(file_id)?;
        let query = [("alt", "media".to_owned()), ("supportsAllDrives", "true".to_owned())];
        let call = format!("Drive files.get (alt=media) of Office file {file_id}");
        let mut answer = FileAnswer {
            max_bytes: self.transport.max_answer_bytes,
        };
        self.drive.call(auth, &call, file_id, url, &query, &mut answer).await
    }

    /// `{drive_api_url}/drive/v3/files/{id}`.
    fn drive_file_url(&self, file_id: &str) -> Result<Url, SheetsError> {
        let base = (
            self.drive_url.as_ref(),
            "Drive",
            "drive_api_url",
            self.settings.drive_api_url.as_str(),
        );
        url_under(base, &["drive", "v3", "files", file_id])
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
        self.transport.stats.record_metadata_call();
        let call = format!("spreadsheets.get of spreadsheet {spreadsheet_id}");
        let url = self.endpoint(&[spreadsheet_id])?;
        let query = [("fields", METADATA_FIELDS.to_owned())];
        let mut answer = JsonAnswer::<SpreadsheetMetadata>::new(self.transport.max_answer_bytes);
        let metadata = self
            .transport
            .call(auth, &call, spreadsheet_id, url, &query, &mut answer)
            .await?;
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
        let base = (
            self.api_url.as_ref(),
            "Sheets",
            "api_url",
            self.settings.api_url.as_str(),
        );
        let mut path = vec!["v4", "spreadsheets"];
        path.extend_from_slice(segments);
        url_under(base, &path)
    }
}

/// `segments` (each escaped) under an API's base URL; `base` is the parsed
/// URL, the API's name, and its setting's name and text, for the error.
fn url_under(
    (base, api, setting, text): (Option<&Url>, &str, &str, &str),
    segments: &[&str],
) -> Result<Url, SheetsError> {
    let invalid = || SheetsError::Rejected {
        call: format!("building the {api} API URL"),
        status: 0,
        message: format!("{setting} {text:?} cannot take a path"),
    };
    let mut url = base.cloned().ok_or_else(invalid)?;
    url.path_segments_mut()
        .map_err(|()| invalid())?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
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
        return find_tab(info.tabs.iter().map(|(_, title)| title.as_str()), name)
            .map(str::to_owned)
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
        let sheets = GoogleSheets::new(
            settings.clone(),
            reqwest::Client::new(),
            reqwest::Client::new(),
            1 << 20,
        );
        assert_eq!(
            sheets.endpoint(&["abc", "values:batchGet"]).unwrap().as_str(),
            "http://proxy.internal/google/v4/spreadsheets/abc/values:batchGet"
        );
        settings.api_url = "https://sheets.googleapis.com".to_owned();
        let sheets = GoogleSheets::new(settings, reqwest::Client::new(), reqwest::Client::new(), 1 << 20);
        assert_eq!(
            sheets.endpoint(&["a/b?c"]).unwrap().as_str(),
            "https://sheets.googleapis.com/v4/spreadsheets/a%2Fb%3Fc"
        );
    }
}
