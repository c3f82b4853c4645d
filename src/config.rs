//! Configuration: an optional TOML file, then environment variables on top.
//!
//! The loader composes: each part below it owns its section, its
//! environment overlay and its checks (`[sources]` in `source::policy`,
//! `[google]` in `source::sheets::settings`, `[mongo]` in `store::settings`,
//! `[[targets]]` in `mapping::declare`, `[views]` and `[[syncs]]` in
//! `syncs::settings`, the schedule in `schedule`), and no part imports this
//! module: only the engine and the daemon, above it, take the whole. What
//! is here is theirs: `[sync]` and `[daemon]`. Every problem is reported at
//! once, not the first alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::apply::OnLostColumn;
use crate::mapping::conventions::DateOrderSetting;
use crate::mapping::declare::{Origin, TargetDecl, Targets};
use crate::redact::redact_url;
use crate::source::policy::SourcesSettings;
use crate::source::sheets::settings::GoogleSettings;
use crate::store::settings::{
    DEFAULT_DB_NAME, DEFAULT_MONGO_URL, MAX_INSERT_WORKERS, MongoSettings, OperationLimits, database_name_problem,
    url_problem,
};
use crate::syncs::settings::{ConfiguredSync, SyncEntry, SyncsConfig, ViewOverride, sync_problems, view_problems};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(Problems),
    /// Not a `#[source]`: the list is the message, and is printed once.
    #[error("invalid target profile(s):\n{0}")]
    Targets(crate::mapping::declare::DeclErrors),
}

/// Everything wrong with a configuration, each naming the setting to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => f.write_str(one),
            many => {
                for problem in many {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl ConfigError {
    fn invalid(problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid(Problems(vec![problem.into()]))
    }
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
    pub operation_limits: OperationLimits,
    /// `[mongo] insert_workers`: insert batches in flight at once.
    pub insert_workers: usize,
    /// Per-view overrides, by view name as the `views` collection spells it.
    pub views: BTreeMap<String, ViewOverride>,
    /// `sheetsync run`: schedule, HTTP server, lifecycle.
    pub daemon: DaemonSettings,
    pub watch: WatchSettings,
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
    /// A merge holds at most this many writes while it compares; a larger
    /// change set is worked out again as it is written, batch by batch, so
    /// that memory holds a batch, not the change set. At least
    /// `merge_transaction_max`.
    pub merge_held_writes: usize,
    /// How a swap target's small change set is written: `transaction`, in
    /// place inside one transaction where the server has them (readers see
    /// the old view or the new one), or `never` (always a swap).
    pub delta: DeltaSetting,
    /// A change set written in place has at most this many documents (and
    /// at most a tenth of the view); a larger one swaps.
    pub delta_max: usize,
    /// How dates written with numbers only (`02/01/2025`) are read: decided
    /// from each source's own values (`auto`), or always day-first (`dmy`)
    /// or month-first (`mdy`). Views may override it.
    pub date_order: DateOrderSetting,
    /// The IANA zone of date-times written as text without an offset (a
    /// spreadsheet serial is read in its spreadsheet's zone, unless the view
    /// or sync names its own); unset, the schedule's `daemon.time_zone`.
    /// Resolved into [`Config::time_zone`].
    pub time_zone: Option<String>,
    /// What a refresh does when a column the stored records fill is gone
    /// from the header or emptied: `fail` (the old data stands), `keep`
    /// (carry the stored values over) or `clear`. Views and `[[syncs]]`
    /// may override it.
    pub on_lost_column: OnLostColumn,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            min_ratio: 0.5,
            max_rejected_ratio: 0.2,
            http_timeout_secs: 60,
            insert_batch_size: 1000,
            merge_transaction_max: 1000,
            merge_held_writes: 10_000,
            delta: DeltaSetting::Transaction,
            delta_max: 1000,
            date_order: DateOrderSetting::Auto,
            time_zone: None,
            on_lost_column: OnLostColumn::Fail,
        }
    }
}

impl SyncSettings {
    pub fn http_timeout(&self) -> Duration {
        Duration::from_secs(self.http_timeout_secs)
    }

    /// Every setting that is out of range, each naming what to change.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = [
            ("sync.min_ratio", self.min_ratio),
            ("sync.max_rejected_ratio", self.max_rejected_ratio),
        ]
        .into_iter()
        .filter(|(_, ratio)| !(0.0..=1.0).contains(ratio))
        .map(|(name, ratio)| format!("{name} is {ratio}; it must be between 0 and 1"))
        .collect();
        if self.merge_held_writes == 0 || self.merge_held_writes < self.merge_transaction_max {
            problems.push(
                "sync.merge_held_writes must be at least 1 and at least sync.merge_transaction_max (a transaction's \
                 writes are held until it is sent)"
                    .to_owned(),
            );
        }
        if self.insert_batch_size == 0 || self.http_timeout_secs == 0 {
            problems.push("sync.insert_batch_size and sync.http_timeout_secs must be at least 1".to_owned());
        }
        problems
    }
}

/// The `[watch]` section: the daemon follows each source's changes between
/// the scheduled runs (the schedule stays as the backstop).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WatchSettings {
    /// Watch sources for changes (`sheetsync run` only).
    pub enabled: bool,
    /// How often each source is asked whether it changed, in seconds.
    pub interval_secs: u64,
    /// A change is synced once the source has been quiet this long, so that
    /// a person typing causes one refresh, not ten.
    pub quiet_secs: u64,
    /// ... and at the latest this long after the first change seen.
    pub max_delay_secs: u64,
    /// When a refresh compares everything even if its source is identical
    /// to the last applied one: on `scheduled` runs only (the others skip),
    /// or `always` (no run skips).
    pub full_compare: FullCompare,
}

/// See [`SyncSettings::delta`].
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeltaSetting {
    Transaction,
    Never,
}

/// See [`WatchSettings::full_compare`].
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FullCompare {
    Scheduled,
    Always,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            enabled: true,
            interval_secs: 60,
            quiet_secs: 30,
            max_delay_secs: 300,
            full_compare: FullCompare::Scheduled,
        }
    }
}

impl WatchSettings {
    pub fn problems(&self) -> Vec<String> {
        if self.interval_secs == 0 || self.max_delay_secs < self.quiet_secs {
            vec!["watch.interval_secs must be at least 1 and watch.max_delay_secs at least watch.quiet_secs".to_owned()]
        } else {
            Vec::new()
        }
    }
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
    /// A response must be written within this many seconds once the client
    /// stops reading, or the connection is dropped.
    pub http_write_timeout_secs: u64,
    /// Mark the status page's session cookie `Secure`: set it when the page
    /// is served over HTTPS (behind a TLS-terminating proxy).
    pub secure_cookies: bool,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` names
    /// the client; from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Failed authentications an address may make within
    /// `auth_failure_window_secs` before it is refused (429).
    pub auth_failures_allowed: u32,
    pub auth_failure_window_secs: u64,
    /// The first refusal lasts this long; each next one twice the last, up
    /// to `auth_max_wait_secs`.
    pub auth_first_wait_secs: u64,
    pub auth_max_wait_secs: u64,
    /// Failed authentications per second across all addresses.
    pub auth_global_failures_per_sec: u32,
    /// Addresses the failure table remembers at most (oldest forgotten).
    pub auth_max_tracked_addresses: usize,
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
            http_write_timeout_secs: 30,
            secure_cookies: false,
            trusted_proxies: Vec::new(),
            auth_failures_allowed: 5,
            auth_failure_window_secs: 60,
            auth_first_wait_secs: 60,
            auth_max_wait_secs: 900,
            auth_global_failures_per_sec: 10,
            auth_max_tracked_addresses: 10_000,
            admin_token: None,
        }
    }
}

impl DaemonSettings {
    /// Puts the environment on top of the file's settings: the address
    /// (`SHEETSYNC_LISTEN`) and the admin token (`SHEETSYNC_ADMIN_TOKEN`,
    /// else the file `admin_token_file` names). `env` answers only variables
    /// set to something non-blank.
    pub fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(listen) = env("SHEETSYNC_LISTEN") {
            self.listen = listen.trim().to_owned();
        }
        self.admin_token = match (env("SHEETSYNC_ADMIN_TOKEN"), &self.admin_token_file) {
            (Some(token), _) => Some(AdminToken(token.trim().to_owned())),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
                    path: file.clone(),
                    source,
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(ConfigError::invalid(format!(
                        "daemon.admin_token_file {} is empty",
                        file.display()
                    )));
                }
                Some(AdminToken(token.to_owned()))
            }
            (None, None) => None,
        };
        Ok(())
    }

    /// Every setting that is out of range, each naming what to change.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(error) = crate::schedule::Schedule::parse(&self.schedule, &self.time_zone) {
            problems.push(error.to_string());
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!(
                "daemon.listen (or SHEETSYNC_LISTEN) {:?} is not an address like 127.0.0.1:8080",
                self.listen
            ));
        }
        if self.http_header_timeout_secs == 0
            || self.http_request_timeout_secs == 0
            || self.http_max_connections == 0
            || self.max_concurrent_syncs == 0
        {
            problems.push(
                "daemon.http_header_timeout_secs, daemon.http_request_timeout_secs, daemon.http_max_connections and \
                 daemon.max_concurrent_syncs must be at least 1"
                    .to_owned(),
            );
        }
        if self.http_write_timeout_secs == 0
            || self.auth_failures_allowed == 0
            || self.auth_failure_window_secs == 0
            || self.auth_first_wait_secs == 0
            || self.auth_max_wait_secs < self.auth_first_wait_secs
            || self.auth_global_failures_per_sec == 0
            || self.auth_max_tracked_addresses == 0
        {
            problems.push(
                "daemon.http_write_timeout_secs and the daemon.auth_* settings must be at least 1, and \
                 daemon.auth_max_wait_secs at least daemon.auth_first_wait_secs"
                    .to_owned(),
            );
        }
        for proxy in &self.trusted_proxies {
            if crate::source::policy::Network::parse(proxy).is_none() {
                problems.push(format!(
                    "daemon.trusted_proxies: {proxy:?} is not an address or network like \"10.0.0.5\" or \"10.0.0.0/8\""
                ));
            }
        }
        if self.lease_secs < 3 || self.retry_min_secs == 0 || self.retry_max_secs < self.retry_min_secs {
            problems.push(
                "daemon.lease_secs must be at least 3, daemon.retry_min_secs at least 1 and \
                 daemon.retry_max_secs at least daemon.retry_min_secs"
                    .to_owned(),
            );
        }
        problems
    }

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

/// The shortest admin token the daemon accepts: guessing must be hopeless.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// A fresh admin token: 256 random bits from the system's CSPRNG, as 64
/// hexadecimal characters (URL-safe, shell-safe).
pub fn new_admin_token() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system's random number generator failed".to_owned())?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

impl AdminToken {
    /// Why the token is too weak for the admin endpoints, if it is: shorter
    /// than [`MIN_ADMIN_TOKEN_CHARS`], or one character repeated.
    pub fn weakness(&self) -> Option<String> {
        let length = self.0.chars().count();
        let repeated = self.0.chars().all(|c| self.0.starts_with(c));
        (length < MIN_ADMIN_TOKEN_CHARS || repeated).then(|| {
            format!(
                "the admin token (SHEETSYNC_ADMIN_TOKEN or daemon.admin_token_file) is {length} character(s){}; it \
                 must be at least {MIN_ADMIN_TOKEN_CHARS}, not one character repeated: make one with `sheetsync \
                 token > /etc/sheetsync/admin-token` (and point daemon.admin_token_file at it)",
                if repeated && length > 0 {
                    ", one character repeated"
                } else {
                    ""
                }
            )
        })
    }

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
    mongo: MongoSettings,
    #[serde(default)]
    sync: SyncSettings,
    #[serde(default)]
    views: BTreeMap<String, ViewOverride>,
    #[serde(default)]
    google: GoogleSettings,
    #[serde(default)]
    daemon: DaemonSettings,
    #[serde(default)]
    watch: WatchSettings,
    #[serde(default)]
    sources: SourcesSettings,
    #[serde(default)]
    targets: Vec<TargetDecl>,
    #[serde(default)]
    syncs: Vec<SyncEntry>,
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
        google.apply_env(&non_empty);
        let mut sources = parsed.sources;
        sources.apply_env(&non_empty);
        let mut daemon = parsed.daemon;
        daemon.apply_env(&non_empty)?;
        let zone_name = parsed.sync.time_zone.as_deref().unwrap_or(&daemon.time_zone);
        let time_zone = zone_name.parse::<chrono_tz::Tz>().map_err(|_| {
            ConfigError::invalid(format!(
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
        let operation_limits = parsed.mongo.limits();
        let insert_workers = parsed.mongo.insert_workers();
        let mongo_url = non_empty("MONGO_URL")
            .or(parsed.mongo.url)
            .unwrap_or_else(|| DEFAULT_MONGO_URL.to_owned());
        let syncs = parsed
            .syncs
            .into_iter()
            .map(|entry| ConfiguredSync::resolve(entry, file.map(|(_, path)| path), &targets, &mongo_url, &non_empty))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ConfigError::invalid)?;
        let config = Config {
            time_zone,
            operation_limits,
            insert_workers,
            mongo_url,
            db_name: non_empty("DB_NAME")
                .or(parsed.mongo.db_name)
                .unwrap_or_else(|| DEFAULT_DB_NAME.to_owned()),
            sync: parsed.sync,
            views: parsed.views,
            google,
            daemon,
            watch: parsed.watch,
            sources,
            targets,
            syncs,
        };
        config.validate()?;
        Ok(config)
    }

    /// The time limits of MongoDB operations.
    pub fn mongo_limits(&self) -> OperationLimits {
        self.operation_limits
    }

    /// The sources this configuration allows, with its Google settings and
    /// download timeout.
    pub fn sources(&self) -> Result<crate::source::Sources, crate::source::SourceError> {
        crate::source::Sources::new(&self.sources, self.google.clone(), self.sync.http_timeout())
    }

    /// The daemon's sources: as [`Config::sources`], with the token asking
    /// for Drive metadata too when the daemon watches spreadsheets.
    pub fn daemon_sources(&self) -> Result<crate::source::Sources, crate::source::SourceError> {
        let mut google = self.google.clone();
        google.watch_drive = self.watch.enabled;
        crate::source::Sources::new(&self.sources, google, self.sync.http_timeout())
    }

    /// What the list of syncs is resolved against.
    pub fn syncs_config(&self) -> SyncsConfig<'_> {
        SyncsConfig {
            sources: &self.sources,
            views: &self.views,
            configured: &self.syncs,
            date_order: self.sync.date_order,
            on_lost_column: self.sync.on_lost_column,
            time_zone: self.time_zone,
            views_profile: self.targets.sales_records(),
            main_database: &self.db_name,
            main_url: &self.mongo_url,
        }
    }

    /// The main database, pinged (see `store::connect`).
    pub async fn connect(&self) -> Result<mongodb::Database, crate::store::StoreError> {
        crate::store::connect(&self.mongo_url, &self.db_name, self.operation_limits).await
    }

    /// The main database, not contacted yet (see `store::open`).
    pub async fn open_database(&self) -> Result<mongodb::Database, crate::store::StoreError> {
        crate::store::open(&self.mongo_url, &self.db_name, self.operation_limits).await
    }

    /// Every section's problems, all of them, or none.
    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = self.operation_limits.problems();
        if !(1..=MAX_INSERT_WORKERS).contains(&self.insert_workers) {
            problems.push(format!(
                "mongo.insert_workers is {}; it must be between 1 and {MAX_INSERT_WORKERS}",
                self.insert_workers
            ));
        }
        problems.extend(url_problem("MONGO_URL", &self.mongo_url));
        problems.extend(database_name_problem("DB_NAME", &self.db_name));
        problems.extend(self.sync.problems());
        problems.extend(self.google.problems());
        problems.extend(self.daemon.problems());
        problems.extend(self.watch.problems());
        problems.extend(self.sources.problems());
        problems.extend(sync_problems(&self.syncs));
        problems.extend(view_problems(&self.views));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(Problems(problems)))
        }
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
            .field("google", &self.google)
            .field("daemon", &self.daemon)
            .field("watch", &self.watch)
            .field("sources", &self.sources)
            .field("targets", &self.targets.names())
            .field("syncs", &self.syncs)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::sheets::settings::{CREDENTIALS_DIRECTORY_KEY_FILE, DEFAULT_SHEETS_API_URL, KeyFileOrigin};

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
            (
                "[views.Signal]\ntime_zone = \"Europe/Pariss\"",
                "views.\"Signal\".time_zone",
            ),
            (
                "[[syncs]]\nname = \"S\"\nsource = \"/x.csv\"\ntarget = \"customers\"\ndatabase = \"cs\"\n\
                 time_zone = \"Mars/Base\"",
                "syncs[0] (\"S\").time_zone \"Mars/Base\" is not an IANA zone",
            ),
        ];
        for (text, expected) in cases {
            let error = Config::resolve(Some((text, path)), env(&[])).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }

    #[test]
    fn admin_tokens_must_be_long_and_varied() {
        let weak = |token: &str| AdminToken(token.to_owned()).weakness();
        assert!(weak(&"ab".repeat(15)).is_some(), "30 characters");
        assert!(weak(&"x".repeat(64)).is_some(), "one character repeated");
        assert!(weak("").is_some());
        assert_eq!(weak(&"ab".repeat(16)), None);
        let fresh = new_admin_token().unwrap();
        assert_eq!(AdminToken(fresh.clone()).weakness(), None);
        assert_ne!(fresh, new_admin_token().unwrap());
    }

    #[test]
    fn reports_every_problem_at_once() {
        let text = "[sync]\nmin_ratio = 2.0\n[google]\napi_url = \"ftp://x\"\n[daemon]\nlisten = \"nowhere\"\n\
                    [sources]\nmax_download_bytes = 0\n[mongo]\nread_timeout_secs = 0\ninsert_workers = 0\n";
        let error = Config::resolve(Some((text, Path::new("bad.toml"))), env(&[("DB_NAME", "a.b")]))
            .unwrap_err()
            .to_string();
        for expected in [
            "sync.min_ratio",
            "google.api_url",
            "daemon.listen",
            "sources.max_download_bytes",
            "mongo.read_timeout_secs",
            "mongo.insert_workers",
            "DB_NAME",
        ] {
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
        assert_eq!(error.matches("\n  - ").count(), 7, "one line per problem: {error}");
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
        let limits = OperationLimits::default();
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
        google.quota_project = None;
        assert_eq!(
            google, defaults.google,
            "every [google] default but the example key path and quota project"
        );
        let mut daemon = parsed.daemon.clone();
        daemon.admin_token_file = None;
        assert_eq!(format!("{daemon:?}"), format!("{:?}", defaults.daemon));
        assert!(parsed.views.is_empty());
        assert_eq!(parsed.watch, defaults.watch);
        assert_eq!(parsed.sources, defaults.sources);
        // The example as shipped (all commented) is valid too.
        Config::resolve(Some((include_str!("../config/sheetsync.example.toml"), path)), |_| None).unwrap();
    }
}
