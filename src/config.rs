//! Configuration: an optional TOML file, then environment variables on top.
//!
//! MongoDB is configured with `MONGO_URL` and `DB_NAME`, the names the
//! dashboard's own schema document uses, so one env file serves both apps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::mapping::conventions::DateOrderSetting;
use crate::mapping::declare::{Origin, TargetDecl, Targets};
use crate::mapping::profile::TargetProfile;
use crate::redact::redact_url;

pub const DEFAULT_MONGO_URL: &str = "mongodb://127.0.0.1:27017";
pub const DEFAULT_DB_NAME: &str = "sales_analytics";
/// The public Sheets API; tests and corporate proxies point elsewhere.
pub const DEFAULT_SHEETS_API_URL: &str = "https://sheets.googleapis.com/";
/// The file name under systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`)
/// used as the service-account key when no path is configured.
pub const CREDENTIALS_DIRECTORY_KEY_FILE: &str = "google-service-account.json";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// Not a `#[source]`: the list is the message, and is printed once.
    #[error("invalid target profile(s):\n{0}")]
    Targets(crate::mapping::declare::DeclErrors),
}

/// The whole resolved configuration. Its `Debug` output redacts secrets.
#[derive(Clone)]
pub struct Config {
    pub mongo_url: String,
    pub db_name: String,
    pub sync: SyncSettings,
    /// `sync.time_zone`, or else `daemon.time_zone`, parsed.
    pub time_zone: chrono_tz::Tz,
    /// `[mongo]` time limits of one operation, by kind.
    pub operation_limits: crate::store::OperationLimits,
    /// Per-view overrides, by view name as the `views` collection spells it.
    pub views: BTreeMap<String, ViewOverride>,
    /// `sheetsync run`: schedule, HTTP server, lifecycle.
    pub daemon: DaemonSettings,
    /// The Google Sheets API source.
    pub google: GoogleSettings,
    /// Which sources views may name.
    pub sources: SourcesSettings,
    /// The effective target profiles: built in, and `[[targets]]`.
    pub targets: Targets,
    /// The `[[syncs]]` entries: sheets kept in step with other applications'
    /// databases.
    pub syncs: Vec<ConfiguredSync>,
}

/// One `[[syncs]]` entry as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncEntry {
    /// The sync's name in reports, `/status`, metrics and admin refreshes;
    /// distinct from every view's name.
    pub name: String,
    /// A `file://` path, a path (relative ones from the config file's
    /// folder), a CSV URL, or a Google Sheets link or ID.
    pub source: String,
    pub sheet_name: Option<String>,
    /// The target profile's name.
    pub target: String,
    /// The database the target's collection lives in.
    pub database: String,
    /// The collection, when the profile names none or another is wanted.
    pub collection: Option<String>,
    /// The environment variable holding that database's MongoDB URL
    /// (default: `MONGO_URL`, the sales database's server).
    pub mongo_url_env: Option<String>,
    pub date_order: Option<DateOrderSetting>,
}

/// A `[[syncs]]` entry resolved against the profiles and the environment.
/// Its `Debug` redacts the connection string.
#[derive(Clone)]
pub struct ConfiguredSync {
    pub entry: SyncEntry,
    pub profile: Arc<TargetProfile>,
    pub collection: String,
    /// The MongoDB URL of `entry.database`'s server.
    pub mongo_url: String,
}

impl std::fmt::Debug for ConfiguredSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredSync")
            .field("entry", &self.entry)
            .field("profile", &self.profile.name)
            .field("collection", &self.collection)
            .field("mongo_url", &redact_url(&self.mongo_url))
            .finish()
    }
}

/// The `[sources]` section: what a view's source may be (see
/// `source::policy`). Views come from another application, so only what is
/// listed here, Google Sheets links and Google's public CSV exports are read.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesSettings {
    /// Directories under which `file://` and plain-path sources may be read
    /// (`SHEETSYNC_FILE_ROOTS`, `:`-separated, wins). None by default.
    pub file_roots: Vec<PathBuf>,
    /// Hosts CSV may be downloaded from besides Google's export links
    /// (`SHEETSYNC_HTTP_HOSTS`, `,`-separated, wins).
    pub http_hosts: Vec<String>,
    /// Networks (CIDR) a download may reach although they are loopback,
    /// private or link-local (`SHEETSYNC_ALLOWED_NETWORKS` wins).
    pub allowed_networks: Vec<String>,
    /// A download larger than this fails its view.
    pub max_download_bytes: u64,
}

impl Default for SourcesSettings {
    fn default() -> Self {
        SourcesSettings {
            file_roots: Vec::new(),
            http_hosts: Vec::new(),
            allowed_networks: Vec::new(),
            max_download_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The `[google]` section: the service-account key and how patiently the
/// Sheets API is called. Holds a key *path*, never key material.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GoogleSettings {
    /// The service-account JSON key. `GOOGLE_APPLICATION_CREDENTIALS` wins
    /// over it; without either, `$CREDENTIALS_DIRECTORY/google-service-account.json`
    /// is used when it exists.
    pub key_file: Option<PathBuf>,
    /// Where `key_file` came from, for messages.
    #[serde(skip)]
    pub key_file_origin: Option<KeyFileOrigin>,
    /// Base URL of the Sheets API (`SHEETSYNC_SHEETS_API_URL` wins).
    pub api_url: String,
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
}

impl KeyFileOrigin {
    pub fn describe(self) -> &'static str {
        match self {
            KeyFileOrigin::Environment => "GOOGLE_APPLICATION_CREDENTIALS",
            KeyFileOrigin::ConfigFile => "[google] key_file",
            KeyFileOrigin::CredentialsDirectory => "the systemd credential google-service-account.json",
        }
    }
}

impl Default for GoogleSettings {
    fn default() -> Self {
        GoogleSettings {
            key_file: None,
            key_file_origin: None,
            api_url: DEFAULT_SHEETS_API_URL.to_owned(),
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    /// Refuse to apply when the new record count is below this fraction of
    /// the records in the collection (0 disables the ratio check; an empty
    /// result replacing data is always refused without `--force`).
    pub min_ratio: f64,
    /// Refuse to apply when more than this fraction of the source's rows with
    /// data are rejected (a cleared stage column...); `--force` overrides.
    pub max_rejected_ratio: f64,
    /// Timeout of one download, in seconds.
    pub http_timeout_secs: u64,
    /// Documents per insert into the staging collection, and statements per
    /// write command of a merge.
    pub insert_batch_size: usize,
    /// A merge whose change set has at most this many documents is written
    /// in one transaction, where the server has them (a replica set); larger
    /// ones go in ordered, idempotent batches. 0: never a transaction.
    pub merge_transaction_max: usize,
    /// How dates written with numbers only (`02/01/2025`) are read: decided
    /// from each source's own values (`auto`), or always day-first (`dmy`)
    /// or month-first (`mdy`). Views may override it.
    pub date_order: DateOrderSetting,
    /// The IANA zone of date-times written without an offset, in CSV text
    /// and Sheets serials alike; unset, the schedule's `daemon.time_zone`.
    /// Resolved into [`Config::time_zone`].
    pub time_zone: Option<String>,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            min_ratio: 0.5,
            max_rejected_ratio: 0.2,
            http_timeout_secs: 60,
            insert_batch_size: 1000,
            merge_transaction_max: 1000,
            date_order: DateOrderSetting::Auto,
            time_zone: None,
        }
    }
}

impl SyncSettings {
    pub fn http_timeout(&self) -> Duration {
        Duration::from_secs(self.http_timeout_secs)
    }
}

/// What the config may change about one view.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ViewOverride {
    /// Target collection instead of the schema's default for the view name.
    pub collection: Option<String>,
    /// Source instead of the view's `sheet_url`: a `file://` path, a path, a
    /// CSV URL, or a Google Sheets link or ID.
    pub source: Option<String>,
    /// Tab name instead of the view's `sheet_name`.
    pub sheet_name: Option<String>,
    /// `date_order` for this view instead of the `[sync]` one.
    pub date_order: Option<DateOrderSetting>,
}

/// The `[daemon]` section: what `sheetsync run` needs beyond a sync. Its
/// `Debug` is safe to log: [`AdminToken`]'s own never shows the token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Cron expression (seconds optional), evaluated in `time_zone`.
    pub schedule: String,
    /// IANA time zone name the schedule is read in.
    pub time_zone: String,
    /// At start, sync at once every view whose last success is older than the
    /// most recent scheduled slot.
    pub catch_up: bool,
    /// Address of the HTTP server (health, status, metrics, admin);
    /// `SHEETSYNC_LISTEN` overrides it. Port 0 picks a free port.
    pub listen: String,
    /// File holding the admin token (`SHEETSYNC_ADMIN_TOKEN` wins). Without a
    /// token the admin endpoints are off.
    pub admin_token_file: Option<PathBuf>,
    /// On SIGTERM/SIGINT, how long a running sync may take to finish.
    pub shutdown_grace_secs: u64,
    /// Lifetime of a view's lease in `sync_locks`; renewed at a third of it.
    pub lease_secs: u64,
    /// First and longest wait between attempts while MongoDB is unreachable.
    pub retry_min_secs: u64,
    pub retry_max_secs: u64,
    /// A request's headers must arrive within this many seconds, or the
    /// connection is closed (slow-header clients).
    pub http_header_timeout_secs: u64,
    /// Every HTTP request is answered within this many seconds (503 after).
    pub http_request_timeout_secs: u64,
    /// Open HTTP connections at most; beyond, new ones are closed at once.
    pub http_max_connections: usize,
    /// Views synced at once at most; the others wait their turn (queued).
    pub max_concurrent_syncs: usize,
    /// Mark the status page's session cookie `Secure`: set it when the page
    /// is served over HTTPS (behind a TLS-terminating proxy).
    pub secure_cookies: bool,
    /// The resolved admin token; never deserialized, never printed.
    #[serde(skip)]
    pub admin_token: Option<AdminToken>,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            schedule: "0 0 12,20 * * *".to_owned(),
            time_zone: "Europe/Paris".to_owned(),
            catch_up: true,
            listen: "127.0.0.1:8080".to_owned(),
            admin_token_file: None,
            shutdown_grace_secs: 60,
            lease_secs: 60,
            retry_min_secs: 1,
            retry_max_secs: 60,
            http_header_timeout_secs: 5,
            http_request_timeout_secs: 10,
            http_max_connections: 128,
            max_concurrent_syncs: 2,
            secure_cookies: false,
            admin_token: None,
        }
    }
}

impl DaemonSettings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    pub fn retry_min(&self) -> Duration {
        Duration::from_secs(self.retry_min_secs)
    }

    pub fn retry_max(&self) -> Duration {
        Duration::from_secs(self.retry_max_secs)
    }
}

/// The admin endpoints' bearer token. Its `Debug` never shows it, and it is
/// only ever compared in constant time.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// True when `candidate` is the token; the time taken does not depend on
    /// where the two differ.
    pub fn matches(&self, candidate: &str) -> bool {
        use subtle::ConstantTimeEq;
        // Lengths are compared in the open: they are not the secret.
        self.0.len() == candidate.len() && bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    mongo: MongoSection,
    #[serde(default)]
    sync: SyncSettings,
    #[serde(default)]
    views: BTreeMap<String, ViewOverride>,
    #[serde(default)]
    google: GoogleSettings,
    #[serde(default)]
    daemon: DaemonSettings,
    #[serde(default)]
    sources: SourcesSettings,
    #[serde(default)]
    targets: Vec<TargetDecl>,
    #[serde(default)]
    syncs: Vec<SyncEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MongoSection {
    url: Option<String>,
    db_name: Option<String>,
    /// Time limits of one MongoDB operation, by kind, in seconds.
    read_timeout_secs: Option<u64>,
    write_timeout_secs: Option<u64>,
    index_timeout_secs: Option<u64>,
    rename_timeout_secs: Option<u64>,
}

impl Config {
    /// Reads the file (if any) and applies the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?),
            None => None,
        };
        Config::resolve(text.as_deref().zip(path), |name| std::env::var(name).ok())
    }

    /// Builds the configuration from a file's text and an environment lookup;
    /// the environment wins.
    pub fn resolve(file: Option<(&str, &Path)>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let parsed: FileConfig = match file {
            Some((text, path)) => toml::from_str(text).map_err(|error| ConfigError::Parse {
                path: path.to_owned(),
                message: error.to_string(),
            })?,
            None => FileConfig::default(),
        };
        let non_empty = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let mut google = parsed.google;
        if google.key_file.is_some() {
            google.key_file_origin = Some(KeyFileOrigin::ConfigFile);
        }
        if let Some(path) = non_empty("GOOGLE_APPLICATION_CREDENTIALS") {
            google.key_file = Some(PathBuf::from(path));
            google.key_file_origin = Some(KeyFileOrigin::Environment);
        }
        if google.key_file.is_none() {
            if let Some(directory) = non_empty("CREDENTIALS_DIRECTORY") {
                let candidate = Path::new(&directory).join(CREDENTIALS_DIRECTORY_KEY_FILE);
                if candidate.is_file() {
                    google.key_file = Some(candidate);
                    google.key_file_origin = Some(KeyFileOrigin::CredentialsDirectory);
                }
            }
        }
        if let Some(url) = non_empty("SHEETSYNC_SHEETS_API_URL") {
            google.api_url = url;
        }
        let mut sources = parsed.sources;
        if let Some(roots) = non_empty("SHEETSYNC_FILE_ROOTS") {
            sources.file_roots = roots
                .split(':')
                .filter(|root| !root.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        let list = |text: String| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if let Some(hosts) = non_empty("SHEETSYNC_HTTP_HOSTS") {
            sources.http_hosts = list(hosts);
        }
        if let Some(networks) = non_empty("SHEETSYNC_ALLOWED_NETWORKS") {
            sources.allowed_networks = list(networks);
        }
        let mut daemon = parsed.daemon;
        if let Some(listen) = non_empty("SHEETSYNC_LISTEN") {
            daemon.listen = listen.trim().to_owned();
        }
        daemon.admin_token = match (non_empty("SHEETSYNC_ADMIN_TOKEN"), &daemon.admin_token_file) {
            (Some(token), _) => Some(AdminToken(token.trim().to_owned())),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
                    path: file.clone(),
                    source,
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "daemon.admin_token_file {} is empty",
                        file.display()
                    )));
                }
                Some(AdminToken(token.to_owned()))
            }
            (None, None) => None,
        };
        let zone_name = parsed.sync.time_zone.as_deref().unwrap_or(&daemon.time_zone);
        let time_zone = zone_name.parse::<chrono_tz::Tz>().map_err(|_| {
            ConfigError::Invalid(format!(
                "time zone {zone_name:?} (sync.time_zone, else daemon.time_zone) is not an IANA zone name such as \
                 \"Europe/Paris\""
            ))
        })?;
        let targets = match file {
            Some((text, path)) => Targets::with_config(
                &parsed.targets,
                Origin {
                    file: &path.display().to_string(),
                    text,
                },
            )
            .map_err(ConfigError::Targets)?,
            None => Targets::built_in(),
        };
        let mongo_url = non_empty("MONGO_URL")
            .or(parsed.mongo.url)
            .unwrap_or_else(|| DEFAULT_MONGO_URL.to_owned());
        let syncs = parsed
            .syncs
            .into_iter()
            .map(|entry| resolve_sync(entry, file.map(|(_, path)| path), &targets, &mongo_url, &non_empty))
            .collect::<Result<Vec<_>, _>>()?;
        let defaults = crate::store::OperationLimits::default();
        let secs = |setting: Option<u64>, default: Duration| setting.map_or(default, Duration::from_secs);
        let operation_limits = crate::store::OperationLimits {
            read: secs(parsed.mongo.read_timeout_secs, defaults.read),
            write: secs(parsed.mongo.write_timeout_secs, defaults.write),
            index_build: secs(parsed.mongo.index_timeout_secs, defaults.index_build),
            rename: secs(parsed.mongo.rename_timeout_secs, defaults.rename),
        };
        let config = Config {
            time_zone,
            operation_limits,
            mongo_url,
            db_name: non_empty("DB_NAME")
                .or(parsed.mongo.db_name)
                .unwrap_or_else(|| DEFAULT_DB_NAME.to_owned()),
            sync: parsed.sync,
            views: parsed.views,
            google,
            daemon,
            sources,
            targets,
            syncs,
        };
        config.validate()?;
        Ok(config)
    }

    /// The time limits of MongoDB operations.
    pub fn mongo_limits(&self) -> crate::store::OperationLimits {
        self.operation_limits
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let limits = self.operation_limits;
        if [limits.read, limits.write, limits.index_build, limits.rename].contains(&Duration::ZERO) {
            return Err(ConfigError::Invalid(
                "mongo.read_timeout_secs, write_timeout_secs, index_timeout_secs and rename_timeout_secs must be \
                 at least 1"
                    .to_owned(),
            ));
        }
        if !(self.mongo_url.starts_with("mongodb://") || self.mongo_url.starts_with("mongodb+srv://")) {
            return Err(ConfigError::Invalid(format!(
                "MONGO_URL {} must start with mongodb:// or mongodb+srv://",
                redact_url(&self.mongo_url)
            )));
        }
        check_name("DB_NAME", &self.db_name, &['/', '\\', '.', ' ', '"', '$'])?;
        for (name, ratio) in [
            ("sync.min_ratio", self.sync.min_ratio),
            ("sync.max_rejected_ratio", self.sync.max_rejected_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(ConfigError::Invalid(format!(
                    "{name} is {ratio}; it must be between 0 and 1"
                )));
            }
        }
        if self.sync.insert_batch_size == 0 || self.sync.http_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "sync.insert_batch_size and sync.http_timeout_secs must be at least 1".to_owned(),
            ));
        }
        let google = &self.google;
        match reqwest::Url::parse(&google.api_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "google.api_url (or SHEETSYNC_SHEETS_API_URL) {} is not an http(s) URL",
                    redact_url(&google.api_url)
                )));
            }
        }
        if google.max_attempts == 0 || google.request_timeout_ms == 0 || google.page_rows == 0 {
            return Err(ConfigError::Invalid(
                "google.max_attempts, google.request_timeout_ms and google.page_rows must be at least 1".to_owned(),
            ));
        }
        self.validate_daemon()?;
        for network in &self.sources.allowed_networks {
            if crate::source::policy::Network::parse(network).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "sources.allowed_networks: {network:?} is not a network like \"10.0.0.0/8\" or \"::1/128\""
                )));
            }
        }
        if self.sources.max_download_bytes == 0 {
            return Err(ConfigError::Invalid(
                "sources.max_download_bytes must be at least 1".to_owned(),
            ));
        }
        self.validate_syncs()?;
        for (view, settings) in &self.views {
            if let Some(collection) = &settings.collection {
                check_name(&format!("views.\"{view}\".collection"), collection, &['$'])?;
                if collection.starts_with("system.") {
                    return Err(ConfigError::Invalid(format!(
                        "views.\"{view}\".collection {collection:?} is a reserved system collection"
                    )));
                }
            }
        }
        Ok(())
    }

    fn validate_syncs(&self) -> Result<(), ConfigError> {
        for (index, sync) in self.syncs.iter().enumerate() {
            let name = &sync.entry.name;
            let setting = format!("syncs[{index}] ({name:?})");
            if name.trim().is_empty() {
                return Err(ConfigError::Invalid(format!("{setting} needs a name")));
            }
            if self.syncs[..index]
                .iter()
                .any(|other| other.entry.name.eq_ignore_ascii_case(name))
            {
                return Err(ConfigError::Invalid(format!("{setting}: two syncs are named {name:?}")));
            }
            check_name(
                &format!("{setting}.database"),
                &sync.entry.database,
                &['/', '\\', '.', ' ', '"', '$'],
            )?;
            check_name(&format!("{setting}.collection"), &sync.collection, &['$'])?;
            if sync.collection.starts_with("system.") {
                return Err(ConfigError::Invalid(format!(
                    "{setting}.collection {:?} is a reserved system collection",
                    sync.collection
                )));
            }
            let same_place = |other: &ConfiguredSync| {
                other.entry.database == sync.entry.database
                    && other.collection == sync.collection
                    && other.mongo_url == sync.mongo_url
            };
            if self.syncs[..index].iter().any(same_place) {
                return Err(ConfigError::Invalid(format!(
                    "{setting} writes `{}.{}`, as another sync does; give each its own collection",
                    sync.entry.database, sync.collection
                )));
            }
        }
        Ok(())
    }

    fn validate_daemon(&self) -> Result<(), ConfigError> {
        let daemon = &self.daemon;
        crate::schedule::Schedule::parse(&daemon.schedule, &daemon.time_zone)
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        if daemon.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "daemon.listen (or SHEETSYNC_LISTEN) {:?} is not an address like 127.0.0.1:8080",
                daemon.listen
            )));
        }
        if daemon.http_header_timeout_secs == 0
            || daemon.http_request_timeout_secs == 0
            || daemon.http_max_connections == 0
            || daemon.max_concurrent_syncs == 0
        {
            return Err(ConfigError::Invalid(
                "daemon.http_header_timeout_secs, daemon.http_request_timeout_secs, daemon.http_max_connections and \
                 daemon.max_concurrent_syncs must be at least 1"
                    .to_owned(),
            ));
        }
        if daemon.lease_secs < 3 || daemon.retry_min_secs == 0 || daemon.retry_max_secs < daemon.retry_min_secs {
            return Err(ConfigError::Invalid(
                "daemon.lease_secs must be at least 3, daemon.retry_min_secs at least 1 and \
                 daemon.retry_max_secs at least daemon.retry_min_secs"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The connection string as it may be shown: password redacted.
    pub fn redacted_mongo_url(&self) -> String {
        redact_url(&self.mongo_url)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("mongo_url", &self.redacted_mongo_url())
            .field("db_name", &self.db_name)
            .field("sync", &self.sync)
            .field("time_zone", &self.time_zone)
            .field("views", &self.views)
            .field(
                "google",
                &GoogleSettings {
                    // A proxy URL may carry credentials.
                    api_url: redact_url(&self.google.api_url),
                    ..self.google.clone()
                },
            )
            .field("daemon", &self.daemon)
            .field("sources", &self.sources)
            .field("targets", &self.targets.names())
            .field("syncs", &self.syncs)
            .finish()
    }
}

/// A `[[syncs]]` entry with its profile, collection and server resolved.
fn resolve_sync(
    mut entry: SyncEntry,
    config_file: Option<&Path>,
    targets: &Targets,
    mongo_url: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<ConfiguredSync, ConfigError> {
    // A relative file path is read from the config file's folder, wherever
    // sheetsync was started.
    let relative_file = !entry.source.contains("://")
        && Path::new(&entry.source).is_relative()
        && (entry.source.starts_with('.') || entry.source.contains('/') || entry.source.ends_with(".csv"));
    if let (true, Some(folder)) = (relative_file, config_file.and_then(Path::parent)) {
        let joined = folder.join(&entry.source);
        entry.source = std::path::absolute(&joined).unwrap_or(joined).display().to_string();
    }
    let name = &entry.name;
    let profile = targets.get(&entry.target).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "sync {name:?} names target {:?}, which no profile declares; known targets: {}",
            entry.target,
            targets.names().join(", ")
        ))
    })?;
    let collection = entry
        .collection
        .clone()
        .or_else(|| profile.collection.clone())
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "sync {name:?}: target {:?} names no collection; set `collection` in the sync",
                entry.target
            ))
        })?;
    let mongo_url = match entry.mongo_url_env.as_deref() {
        None | Some("MONGO_URL") => mongo_url.to_owned(),
        Some(variable) => env(variable).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "sync {name:?} reads its MongoDB URL from the environment variable {variable} (mongo_url_env), \
                 which is not set"
            ))
        })?,
    };
    if !(mongo_url.starts_with("mongodb://") || mongo_url.starts_with("mongodb+srv://")) {
        return Err(ConfigError::Invalid(format!(
            "sync {name:?}: its MongoDB URL {} must start with mongodb:// or mongodb+srv://",
            redact_url(&mongo_url)
        )));
    }
    Ok(ConfiguredSync {
        entry,
        profile,
        collection,
        mongo_url,
    })
}

fn check_name(setting: &str, value: &str, forbidden: &[char]) -> Result<(), ConfigError> {
    if value.is_empty() || value.contains(forbidden) || value.contains('\0') {
        return Err(ConfigError::Invalid(format!(
            "{setting} {value:?} is not a valid MongoDB name (empty, or contains one of {forbidden:?})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    const FILE: &str = r#"
        [mongo]
        url = "mongodb://file-host:27017"
        db_name = "from_file"
        [sync]
        min_ratio = 0.8
        date_order = "dmy"
        [views."Full Funnel"]
        collection = "ff_records"
        source = "file:///data/ff.csv"
        date_order = "mdy"
    "#;

    #[test]
    fn defaults_without_file_or_env() {
        let config = Config::resolve(None, env(&[])).unwrap();
        assert_eq!(config.mongo_url, DEFAULT_MONGO_URL);
        assert_eq!(config.db_name, DEFAULT_DB_NAME);
        assert_eq!(config.sync.min_ratio, 0.5);
    }

    #[test]
    fn environment_overrides_file() {
        let path = Path::new("sheetsync.toml");
        let from_file = Config::resolve(Some((FILE, path)), env(&[])).unwrap();
        assert_eq!(from_file.mongo_url, "mongodb://file-host:27017");
        assert_eq!(from_file.db_name, "from_file");
        assert_eq!(from_file.views["Full Funnel"].collection.as_deref(), Some("ff_records"));
        assert_eq!(from_file.sync.date_order, DateOrderSetting::Dmy);
        assert_eq!(
            from_file.time_zone,
            chrono_tz::Europe::Paris,
            "the schedule's zone by default"
        );
        assert_eq!(from_file.views["Full Funnel"].date_order, Some(DateOrderSetting::Mdy));
        let overridden = Config::resolve(
            Some((FILE, path)),
            env(&[("MONGO_URL", "mongodb://env-host:1"), ("DB_NAME", "from_env")]),
        )
        .unwrap();
        assert_eq!(overridden.mongo_url, "mongodb://env-host:1");
        assert_eq!(overridden.db_name, "from_env");
        assert_eq!(overridden.sync.min_ratio, 0.8);
    }

    #[test]
    fn rejects_bad_values_with_the_setting_named() {
        let path = Path::new("bad.toml");
        let cases = [
            ("[sync]\nmin_ratio = 2.0", "sync.min_ratio"),
            ("[sync]\nmin_ration = 0.5", "unknown field"),
            ("[sync]\ndate_order = \"ymd\"", "auto`, `dmy`"),
            ("[sync]\ntime_zone = \"Paris\"", "sync.time_zone"),
            ("[views.Signal]\ncollection = \"a$b\"", "views.\"Signal\".collection"),
            ("[mongo]\nurl = \"postgres://x\"", "mongodb://"),
        ];
        for (text, expected) in cases {
            let error = Config::resolve(Some((text, path)), env(&[])).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }

    #[test]
    fn google_settings_from_file_env_and_credentials_directory() {
        let path = Path::new("sheetsync.toml");
        let file = "[google]\nkey_file = \"/etc/sheetsync/key.json\"\napi_url = \"http://proxy.internal/sheets/\"\nmax_attempts = 3\n";
        let from_file = Config::resolve(Some((file, path)), env(&[])).unwrap();
        assert_eq!(
            from_file.google.key_file.as_deref(),
            Some(Path::new("/etc/sheetsync/key.json"))
        );
        assert_eq!(from_file.google.key_file_origin, Some(KeyFileOrigin::ConfigFile));
        assert_eq!(from_file.google.api_url, "http://proxy.internal/sheets/");
        assert_eq!(from_file.google.max_attempts, 3);
        assert_eq!(
            from_file.google.request_timeout_ms, 30_000,
            "unset values keep their default"
        );

        let from_env = Config::resolve(
            Some((file, path)),
            env(&[
                ("GOOGLE_APPLICATION_CREDENTIALS", "/run/key.json"),
                ("SHEETSYNC_SHEETS_API_URL", "http://127.0.0.1:9/"),
            ]),
        )
        .unwrap();
        assert_eq!(from_env.google.key_file.as_deref(), Some(Path::new("/run/key.json")));
        assert_eq!(from_env.google.key_file_origin, Some(KeyFileOrigin::Environment));
        assert_eq!(from_env.google.api_url, "http://127.0.0.1:9/");

        let defaults = Config::resolve(None, env(&[])).unwrap();
        assert_eq!(defaults.google.api_url, DEFAULT_SHEETS_API_URL);
        assert_eq!(defaults.google.key_file, None);

        let directory = tempfile::tempdir().unwrap();
        let directory_text: &'static str = Box::leak(directory.path().display().to_string().into_boxed_str());
        let pairs: &'static [(&'static str, &'static str)] =
            Box::leak(vec![("CREDENTIALS_DIRECTORY", directory_text)].into_boxed_slice());
        let without_file = Config::resolve(None, env(pairs)).unwrap();
        assert_eq!(without_file.google.key_file, None, "no credential file, no key");
        std::fs::write(directory.path().join(CREDENTIALS_DIRECTORY_KEY_FILE), "{}").unwrap();
        let with_file = Config::resolve(None, env(pairs)).unwrap();
        assert_eq!(
            with_file.google.key_file,
            Some(directory.path().join(CREDENTIALS_DIRECTORY_KEY_FILE))
        );
        assert_eq!(
            with_file.google.key_file_origin,
            Some(KeyFileOrigin::CredentialsDirectory)
        );
        let explicit = Config::resolve(Some((file, path)), env(pairs)).unwrap();
        assert_eq!(
            explicit.google.key_file.as_deref(),
            Some(Path::new("/etc/sheetsync/key.json")),
            "an explicit path wins over the systemd credential"
        );
    }

    #[test]
    fn rejects_bad_google_settings() {
        let path = Path::new("bad.toml");
        for (text, expected) in [
            ("[google]\napi_url = \"ftp://x\"", "google.api_url"),
            ("[google]\nmax_attempts = 0", "google.max_attempts"),
            ("[google]\nkey = \"x\"", "unknown field"),
        ] {
            let error = Config::resolve(Some((text, path)), env(&[])).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }

    #[test]
    fn daemon_defaults_env_and_file() {
        let config = Config::resolve(None, env(&[])).unwrap();
        assert_eq!(config.daemon.schedule, "0 0 12,20 * * *");
        assert_eq!(config.daemon.time_zone, "Europe/Paris");
        assert!(config.daemon.catch_up);
        assert_eq!(config.daemon.listen, "127.0.0.1:8080");
        assert!(config.daemon.admin_token.is_none());

        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "from-file\n").unwrap();
        let text = format!(
            "[daemon]\nlisten = \"0.0.0.0:9000\"\ncatch_up = false\nadmin_token_file = {:?}\n",
            token_file.display().to_string()
        );
        let path = Path::new("daemon.toml");
        let from_file = Config::resolve(Some((&text, path)), env(&[])).unwrap();
        assert_eq!(from_file.daemon.listen, "0.0.0.0:9000");
        assert!(!from_file.daemon.catch_up);
        assert!(from_file.daemon.admin_token.as_ref().unwrap().matches("from-file"));
        let from_env = Config::resolve(
            Some((&text, path)),
            env(&[
                ("SHEETSYNC_LISTEN", "127.0.0.1:7000"),
                ("SHEETSYNC_ADMIN_TOKEN", "s3cret-token"),
            ]),
        )
        .unwrap();
        assert_eq!(from_env.daemon.listen, "127.0.0.1:7000");
        let token = from_env.daemon.admin_token.as_ref().unwrap();
        assert!(token.matches("s3cret-token"));
        assert!(!token.matches("s3cret-tokem"));
        assert!(!token.matches("s3cret"));
        assert!(!format!("{from_env:?}").contains("s3cret-token"));
    }

    #[test]
    fn daemon_rejects_bad_schedule_zone_and_address() {
        let path = Path::new("bad.toml");
        let cases = [
            ("[daemon]\nschedule = \"not a cron\"", "schedule"),
            ("[daemon]\ntime_zone = \"Europe/Pariss\"", "Europe/Pariss"),
            ("[daemon]\nlisten = \"localhost\"", "daemon.listen"),
            ("[daemon]\nlease = 5", "unknown field"),
        ];
        for (text, expected) in cases {
            let error = Config::resolve(Some((text, path)), env(&[])).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }

    #[test]
    fn password_never_shown() {
        let config = Config::resolve(
            None,
            env(&[("MONGO_URL", "mongodb://root:hunter2@db:27017/?authSource=admin")]),
        )
        .unwrap();
        assert!(!config.redacted_mongo_url().contains("hunter2"));
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(
            !format!(
                "{}",
                Config::resolve(None, env(&[("MONGO_URL", "http://root:hunter2@db")])).unwrap_err()
            )
            .contains("hunter2")
        );
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The shipped example, with every `# key = value` line under a section
    /// header uncommented.
    fn uncommented_example() -> String {
        let text = include_str!("../config/sheetsync.example.toml");
        text.lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(setting) if setting.split_once(" = ").is_some_and(|(key, _)| !key.contains(' ')) => setting,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn example_defaults_are_the_real_defaults() {
        let text = uncommented_example();
        let path = Path::new("config/sheetsync.example.toml");
        let parsed: FileConfig = toml::from_str(&text).expect("the uncommented example parses");
        let defaults = Config::resolve(None, |_| None).unwrap();
        assert_eq!(parsed.mongo.url.as_deref(), Some(DEFAULT_MONGO_URL));
        assert_eq!(parsed.mongo.db_name.as_deref(), Some(DEFAULT_DB_NAME));
        let limits = crate::store::OperationLimits::default();
        assert_eq!(
            [
                parsed.mongo.read_timeout_secs,
                parsed.mongo.write_timeout_secs,
                parsed.mongo.index_timeout_secs,
                parsed.mongo.rename_timeout_secs
            ],
            [limits.read, limits.write, limits.index_build, limits.rename].map(|limit| Some(limit.as_secs()))
        );
        assert_eq!(format!("{:?}", parsed.sync), format!("{:?}", defaults.sync));
        let mut google = parsed.google.clone();
        google.key_file = None;
        assert_eq!(
            google, defaults.google,
            "every [google] default but the example key path"
        );
        let mut daemon = parsed.daemon.clone();
        daemon.admin_token_file = None;
        assert_eq!(format!("{daemon:?}"), format!("{:?}", defaults.daemon));
        assert!(parsed.views.is_empty());
        assert_eq!(parsed.sources, defaults.sources);
        // The example as shipped (all commented) is valid too.
        Config::resolve(Some((include_str!("../config/sheetsync.example.toml"), path)), |_| None).unwrap();
    }
}
