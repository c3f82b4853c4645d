//! Configuration: an optional TOML file, then environment variables on top.
//!
//! MongoDB is configured with `MONGO_URL` and `DB_NAME`, the names the
//! dashboard's own schema document uses, so one env file serves both apps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::redact::redact_url;

pub const DEFAULT_MONGO_URL: &str = "mongodb://127.0.0.1:27017";
pub const DEFAULT_DB_NAME: &str = "sales_analytics";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole resolved configuration. Its `Debug` output redacts secrets.
#[derive(Clone)]
pub struct Config {
    pub mongo_url: String,
    pub db_name: String,
    pub sync: SyncSettings,
    /// Per-view overrides, by view name as the `views` collection spells it.
    pub views: BTreeMap<String, ViewOverride>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    /// Refuse to apply when the new record count is below this fraction of
    /// the records in the collection (0 disables the ratio check; an empty
    /// result replacing data is always refused without `--force`).
    pub min_ratio: f64,
    /// Timeout of one download, in seconds.
    pub http_timeout_secs: u64,
    /// Documents per insert into the staging collection.
    pub insert_batch_size: usize,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            min_ratio: 0.5,
            http_timeout_secs: 60,
            insert_batch_size: 1000,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MongoSection {
    url: Option<String>,
    db_name: Option<String>,
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
        let config = Config {
            mongo_url: non_empty("MONGO_URL")
                .or(parsed.mongo.url)
                .unwrap_or_else(|| DEFAULT_MONGO_URL.to_owned()),
            db_name: non_empty("DB_NAME")
                .or(parsed.mongo.db_name)
                .unwrap_or_else(|| DEFAULT_DB_NAME.to_owned()),
            sync: parsed.sync,
            views: parsed.views,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.mongo_url.starts_with("mongodb://") || self.mongo_url.starts_with("mongodb+srv://")) {
            return Err(ConfigError::Invalid(format!(
                "MONGO_URL {} must start with mongodb:// or mongodb+srv://",
                redact_url(&self.mongo_url)
            )));
        }
        check_name("DB_NAME", &self.db_name, &['/', '\\', '.', ' ', '"', '$'])?;
        if !(0.0..=1.0).contains(&self.sync.min_ratio) {
            return Err(ConfigError::Invalid(format!(
                "sync.min_ratio is {}; it must be between 0 and 1",
                self.sync.min_ratio
            )));
        }
        if self.sync.insert_batch_size == 0 || self.sync.http_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "sync.insert_batch_size and sync.http_timeout_secs must be at least 1".to_owned(),
            ));
        }
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
            .field("views", &self.views)
            .finish()
    }
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
        [views."Full Funnel"]
        collection = "ff_records"
        source = "file:///data/ff.csv"
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
            ("[views.Signal]\ncollection = \"a$b\"", "views.\"Signal\".collection"),
            ("[mongo]\nurl = \"postgres://x\"", "mongodb://"),
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
