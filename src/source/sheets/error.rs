//! Everything that can go wrong reading a Google spreadsheet, in words that
//! say what to fix.

/// Everything that can go wrong reading a Google spreadsheet. Cloneable
/// because one failure (a missing share, a bad key) fails every view that
/// reads the spreadsheet.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SheetsError {
    #[error(
        "no Google credentials found: GOOGLE_APPLICATION_CREDENTIALS and [google] key_file are not set, there is \
         no systemd credential google-service-account.json and no gcloud login \
         (application_default_credentials.json under $CLOUDSDK_CONFIG or ~/.config/gcloud), and the metadata \
         server at {metadata_host} did not answer ({reason}), so this is not Google Cloud; give sheetsync one of \
         them (README, \"Credentials\")"
    )]
    NoCredentials { metadata_host: String, reason: String },
    #[error(
        "cannot read the Google credential file {path} (from {origin}): {message}; check the path and that \
         sheetsync may read it"
    )]
    CredentialRead {
        path: String,
        origin: String,
        message: String,
    },
    #[error("the Google credential file {path} is not usable: {reason}")]
    CredentialInvalid { path: String, reason: String },
    #[error("cannot get an access token for {identity} from {endpoint}: {message}; {advice}")]
    Token {
        identity: String,
        endpoint: String,
        message: String,
        advice: String,
    },
    #[error(
        "the access token of {identity} does not carry the {scope} scope (Google answered \
         ACCESS_TOKEN_SCOPE_INSUFFICIENT); {advice}"
    )]
    MissingScope {
        identity: String,
        scope: String,
        advice: String,
    },
    #[error("spreadsheet {spreadsheet_id} is not shared with {identity}; {advice}")]
    NotShared {
        spreadsheet_id: String,
        identity: String,
        advice: String,
    },
    #[error("the {api} refused access for {identity}: {message}; {advice}")]
    ApiDisabled {
        api: String,
        identity: String,
        message: String,
        advice: String,
    },
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
    #[error(
        "spreadsheet {spreadsheet_id} is an Office file uploaded to Google Drive (an .xlsx, .xls or .ods never \
         converted), which the Sheets API cannot read; set [google] office_files = true to download it from \
         Drive and read it as a workbook (the token then asks for the drive.readonly scope), or open it in \
         Google Sheets, use File > Save as Google Sheets and point the view at the copy"
    )]
    OfficeFile { spreadsheet_id: String },
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
    #[error(
        "{call}: the file is larger than [sources] max_download_bytes ({limit} bytes); raise the limit if it is \
         meant to be that large"
    )]
    DownloadTooLarge { call: String, limit: u64 },
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
