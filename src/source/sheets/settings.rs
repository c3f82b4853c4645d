//! The `[google]` section: where the credentials are and how patiently the
//! Sheets API is called. Holds a credential file's *path*, never its
//! content. The config loader reads it from the file, then lets
//! [`GoogleSettings::apply_env`] put the environment on top.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::credentials::metadata::DEFAULT_METADATA_HOST;
use crate::redact::redact_url;

/// The public Sheets API; tests and corporate proxies point elsewhere.
pub const DEFAULT_SHEETS_API_URL: &str = "https://sheets.googleapis.com/";
/// The public Drive API (a spreadsheet's `modifiedTime`, for watching).
pub const DEFAULT_DRIVE_API_URL: &str = "https://www.googleapis.com/";
/// The file name under systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`)
/// used as the service-account key when no path is configured.
pub const CREDENTIALS_DIRECTORY_KEY_FILE: &str = "google-service-account.json";
/// gcloud's Application Default Credentials file, under its configuration
/// directory (`$CLOUDSDK_CONFIG`, else `~/.config/gcloud`).
pub const GCLOUD_ADC_FILE: &str = "application_default_credentials.json";

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GoogleSettings {
    /// A Google credential file of any kind (service-account key, gcloud
    /// login, workload identity federation, impersonation).
    /// `GOOGLE_APPLICATION_CREDENTIALS` wins over it; without either,
    /// `$CREDENTIALS_DIRECTORY/google-service-account.json`, then gcloud's
    /// well-known file, are used when they exist. With none, the metadata
    /// server is asked.
    pub key_file: Option<PathBuf>,
    /// Where `key_file` came from, for messages.
    #[serde(skip)]
    pub key_file_origin: Option<KeyFileOrigin>,
    /// The project billed for Sheets calls (`x-goog-user-project`);
    /// `GOOGLE_CLOUD_QUOTA_PROJECT` wins, and without either the credential
    /// file's `quota_project_id` is used.
    pub quota_project: Option<String>,
    /// The metadata server's host (`GCE_METADATA_HOST`, as in Google's
    /// libraries); only asked when no credential file is found.
    #[serde(skip)]
    pub metadata_host: String,
    /// Base URL of the Sheets API (`SHEETSYNC_SHEETS_API_URL` wins).
    pub api_url: String,
    /// Base URL of the Drive API (`SHEETSYNC_DRIVE_API_URL` wins), asked
    /// only when the daemon watches spreadsheets for changes.
    pub drive_api_url: String,
    /// Drive requests started in any one minute at most (watching, and
    /// Office files' downloads).
    pub max_drive_requests_per_minute: usize,
    /// Whether a Google link to an Office file uploaded to Drive (an
    /// `.xlsx` the Sheets API refuses) is downloaded with Drive
    /// `files.get?alt=media` and read as a workbook. Adds the
    /// `drive.readonly` scope to the token.
    pub office_files: bool,
    /// Whether the token asks for `drive.metadata.readonly` too: set by the
    /// daemon when it watches spreadsheets (`[watch]`).
    #[serde(skip)]
    pub watch_drive: bool,
    /// Timeout of one Sheets API or token request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Attempts per API call, the first included (429, 5xx and timeouts are retried).
    pub max_attempts: u32,
    /// First backoff step; each retry doubles it, with full jitter.
    pub retry_base_delay_ms: u64,
    /// Longest single wait between attempts (a `Retry-After` may ask for more,
    /// within `retry_max_elapsed_ms`).
    pub retry_max_delay_ms: u64,
    /// Give up on a call once this much time has passed since its first attempt.
    pub retry_max_elapsed_ms: u64,
    /// How long a spreadsheet's tab list and time zone are reused before
    /// being read again, in seconds; 0 reads them on every cycle. A tab that
    /// is no longer where the cached list says is noticed at once whatever
    /// this says.
    pub metadata_max_age_secs: u64,
    /// Rows per `values:batchGet` range: a tab longer than this is read in
    /// pages (one round of pages per call), so that memory holds a page, not
    /// the tab, and no single call runs into Google's request deadline.
    pub page_rows: usize,
    /// Sheets API requests started in any one minute at most, retries
    /// included: Google's read quota per user (60 by default; raise it with
    /// the project's quota). 0: no limit.
    pub max_requests_per_minute: usize,
}

/// Where the service-account key path was configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileOrigin {
    Environment,
    ConfigFile,
    CredentialsDirectory,
    GcloudLogin,
}

impl KeyFileOrigin {
    pub fn describe(self) -> &'static str {
        match self {
            KeyFileOrigin::Environment => "GOOGLE_APPLICATION_CREDENTIALS",
            KeyFileOrigin::ConfigFile => "[google] key_file",
            KeyFileOrigin::CredentialsDirectory => "the systemd credential google-service-account.json",
            KeyFileOrigin::GcloudLogin => "gcloud's application default credentials",
        }
    }
}

impl Default for GoogleSettings {
    fn default() -> Self {
        GoogleSettings {
            key_file: None,
            key_file_origin: None,
            quota_project: None,
            metadata_host: DEFAULT_METADATA_HOST.to_owned(),
            api_url: DEFAULT_SHEETS_API_URL.to_owned(),
            drive_api_url: DEFAULT_DRIVE_API_URL.to_owned(),
            max_drive_requests_per_minute: 60,
            watch_drive: false,
            office_files: false,
            request_timeout_ms: 30_000,
            max_attempts: 5,
            retry_base_delay_ms: 500,
            retry_max_delay_ms: 30_000,
            retry_max_elapsed_ms: 120_000,
            metadata_max_age_secs: 7 * 24 * 3600,
            page_rows: 20_000,
            max_requests_per_minute: 60,
        }
    }
}

impl GoogleSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn metadata_max_age(&self) -> Duration {
        Duration::from_secs(self.metadata_max_age_secs)
    }

    /// Puts the environment on top of the file's settings: the credential
    /// file (`GOOGLE_APPLICATION_CREDENTIALS`, else the systemd credential,
    /// else gcloud's login), the quota project, the metadata server and the
    /// API's URL. `env` answers only variables set to something non-blank.
    pub fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        if self.key_file.is_some() {
            self.key_file_origin = Some(KeyFileOrigin::ConfigFile);
        }
        if let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS") {
            self.key_file = Some(PathBuf::from(path));
            self.key_file_origin = Some(KeyFileOrigin::Environment);
        }
        if self.key_file.is_none()
            && let Some(directory) = env("CREDENTIALS_DIRECTORY")
        {
            let candidate = Path::new(&directory).join(CREDENTIALS_DIRECTORY_KEY_FILE);
            if candidate.is_file() {
                self.key_file = Some(candidate);
                self.key_file_origin = Some(KeyFileOrigin::CredentialsDirectory);
            }
        }
        if self.key_file.is_none() {
            let gcloud_config = env("CLOUDSDK_CONFIG")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|home| Path::new(&home).join(".config/gcloud")));
            if let Some(candidate) = gcloud_config.map(|directory| directory.join(GCLOUD_ADC_FILE))
                && candidate.is_file()
            {
                self.key_file = Some(candidate);
                self.key_file_origin = Some(KeyFileOrigin::GcloudLogin);
            }
        }
        if let Some(project) = env("GOOGLE_CLOUD_QUOTA_PROJECT") {
            self.quota_project = Some(project);
        }
        if let Some(host) = env("GCE_METADATA_HOST") {
            self.metadata_host = host;
        }
        if let Some(url) = env("SHEETSYNC_SHEETS_API_URL") {
            self.api_url = url;
        }
        if let Some(url) = env("SHEETSYNC_DRIVE_API_URL") {
            self.drive_api_url = url;
        }
    }

    /// Every setting that is out of range, each naming what to change.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (setting, url) in [
            ("google.api_url (or SHEETSYNC_SHEETS_API_URL)", &self.api_url),
            ("google.drive_api_url (or SHEETSYNC_DRIVE_API_URL)", &self.drive_api_url),
        ] {
            match reqwest::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                _ => problems.push(format!("{setting} {} is not an http(s) URL", redact_url(url))),
            }
        }
        if self.max_attempts == 0 || self.request_timeout_ms == 0 || self.page_rows == 0 {
            problems.push(
                "google.max_attempts, google.request_timeout_ms and google.page_rows must be at least 1".to_owned(),
            );
        }
        problems
    }
}

/// Safe to log: the API's URL (a proxy's may carry credentials) is redacted.
impl std::fmt::Debug for GoogleSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleSettings")
            .field("key_file", &self.key_file)
            .field("key_file_origin", &self.key_file_origin)
            .field("quota_project", &self.quota_project)
            .field("metadata_host", &self.metadata_host)
            .field("api_url", &redact_url(&self.api_url))
            .field("drive_api_url", &redact_url(&self.drive_api_url))
            .field("max_drive_requests_per_minute", &self.max_drive_requests_per_minute)
            .field("watch_drive", &self.watch_drive)
            .field("office_files", &self.office_files)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .field("retry_base_delay_ms", &self.retry_base_delay_ms)
            .field("retry_max_delay_ms", &self.retry_max_delay_ms)
            .field("retry_max_elapsed_ms", &self.retry_max_elapsed_ms)
            .field("metadata_max_age_secs", &self.metadata_max_age_secs)
            .field("page_rows", &self.page_rows)
            .field("max_requests_per_minute", &self.max_requests_per_minute)
            .finish()
    }
}
