//! The `[mongo]` section: the server, the database, and the time limit of
//! each kind of operation. `MONGO_URL` and `DB_NAME` win over the file (the
//! names the dashboard's own schema document uses, so one env file serves
//! both apps); the config loader resolves them.

use std::time::Duration;

use serde::Deserialize;

use crate::redact::redact_url;

pub const DEFAULT_MONGO_URL: &str = "mongodb://127.0.0.1:27017";
pub const DEFAULT_DB_NAME: &str = "sales_analytics";

/// `[mongo]` as written; every setting optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    pub url: Option<String>,
    pub db_name: Option<String>,
    /// Time limits of one MongoDB operation, by kind, in seconds.
    pub read_timeout_secs: Option<u64>,
    pub write_timeout_secs: Option<u64>,
    pub index_timeout_secs: Option<u64>,
    pub rename_timeout_secs: Option<u64>,
    /// Insert batches a swap keeps in flight at once while it fills its
    /// staging collection (mongoimport's `--numInsertionWorkers`).
    pub insert_workers: Option<usize>,
}

/// Most insert workers allowed: more only queue on the server.
pub const MAX_INSERT_WORKERS: usize = 32;

/// Insert workers when `[mongo] insert_workers` is not set: one per core,
/// at most 4 (past that a test server or a small mongod only queues them).
pub fn default_insert_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get().min(4))
}

impl MongoSettings {
    /// Insert batches in flight at once (see [`default_insert_workers`]).
    pub fn insert_workers(&self) -> usize {
        self.insert_workers.unwrap_or_else(default_insert_workers)
    }

    /// The limits, defaults where a setting is absent.
    pub fn limits(&self) -> OperationLimits {
        let defaults = OperationLimits::default();
        let secs = |setting: Option<u64>, default: Duration| setting.map_or(default, Duration::from_secs);
        OperationLimits {
            read: secs(self.read_timeout_secs, defaults.read),
            write: secs(self.write_timeout_secs, defaults.write),
            index_build: secs(self.index_timeout_secs, defaults.index_build),
            rename: secs(self.rename_timeout_secs, defaults.rename),
        }
    }
}

/// The limit of each kind of operation (see `store::Operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationLimits {
    pub read: Duration,
    pub write: Duration,
    pub index_build: Duration,
    pub rename: Duration,
}

impl Default for OperationLimits {
    fn default() -> Self {
        let secs = Duration::from_secs;
        OperationLimits {
            read: secs(30),
            write: secs(120),
            index_build: secs(1800),
            rename: secs(1800),
        }
    }
}

impl OperationLimits {
    /// Every limit that is out of range, each naming its setting.
    pub fn problems(&self) -> Vec<String> {
        if [self.read, self.write, self.index_build, self.rename].contains(&Duration::ZERO) {
            vec![
                "mongo.read_timeout_secs, write_timeout_secs, index_timeout_secs and rename_timeout_secs must be at \
                 least 1"
                    .to_owned(),
            ]
        } else {
            Vec::new()
        }
    }
}

/// What is wrong with a MongoDB URL (`setting` says where it came from), if
/// anything.
pub fn url_problem(setting: &str, url: &str) -> Option<String> {
    (!(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://"))).then(|| {
        format!(
            "{setting} {} must start with mongodb:// or mongodb+srv://",
            redact_url(url)
        )
    })
}

/// What is wrong with a database name (`setting` names it), if anything.
pub fn database_name_problem(setting: &str, name: &str) -> Option<String> {
    name_problem(setting, name, &['/', '\\', '.', ' ', '"', '$'])
}

/// What is wrong with a collection name (`setting` names it), if anything.
pub fn collection_name_problem(setting: &str, name: &str) -> Option<String> {
    name_problem(setting, name, &['$']).or_else(|| {
        name.starts_with("system.")
            .then(|| format!("{setting} {name:?} is a reserved system collection"))
    })
}

fn name_problem(setting: &str, value: &str, forbidden: &[char]) -> Option<String> {
    (value.is_empty() || value.contains(forbidden) || value.contains('\0'))
        .then(|| format!("{setting} {value:?} is not a valid MongoDB name (empty, or contains one of {forbidden:?})"))
}
