//! Everything that can go wrong reading a Google spreadsheet, in words that
//! say what to fix.

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
    pub(super) fn may_be_stale_metadata(&self) -> bool {
        matches!(
            self,
            SheetsError::MissingRange { .. } | SheetsError::Rejected { status: 400, .. }
        )
    }
}
