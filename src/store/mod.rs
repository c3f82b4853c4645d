//! Everything that writes to MongoDB: the all-or-nothing swap, indexes and
//! the bookkeeping collections.

pub mod indexes;
pub mod lease;

pub mod metadata;
pub mod runs;
pub mod settings;
pub mod shape;
pub mod views;

use settings::OperationLimits;

/// A MongoDB operation that failed, with what sheetsync was doing.
#[derive(Debug, thiserror::Error)]
#[error("MongoDB failed while {action}: {source}")]
pub struct StoreError {
    pub action: String,
    #[source]
    pub source: StoreCause,
}

/// Why a MongoDB operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreCause {
    #[error(transparent)]
    Driver(#[from] mongodb::error::Error),
    #[error(
        "no answer within {seconds} s, so it was given up (is the server overloaded or stopped? the limit is \
         [mongo] {setting})"
    )]
    TimedOut { seconds: u64, setting: &'static str },
}

/// Attaches what was being done to a driver error.
pub(crate) trait Doing<T> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Doing<T> for Result<T, mongodb::error::Error> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError {
            action: action(),
            source: source.into(),
        })
    }
}

/// The kinds of MongoDB operations, each with its own time limit: a server
/// that stops answering must fail the run (which then releases its lease and
/// leaves the old data) rather than hold it forever. The driver has no
/// per-operation timeout of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Queries, counts, listings, one cursor batch.
    Read,
    /// Inserts, updates, deletes, collection creation, `collMod`.
    Write,
    /// Index builds, in bulk on a whole staging collection.
    IndexBuild,
    /// `renameCollection` (some servers copy the data).
    Rename,
}

/// The limits of this process, set once from the configuration when the
/// database is opened ([`open`]). Global because every store function
/// takes only a `Database`, which cannot carry them.
static LIMITS: std::sync::OnceLock<OperationLimits> = std::sync::OnceLock::new();

impl Operation {
    fn limit(self) -> (std::time::Duration, &'static str) {
        let limits = LIMITS.get().copied().unwrap_or_default();
        match self {
            Operation::Read => (limits.read, "read_timeout_secs"),
            Operation::Write => (limits.write, "write_timeout_secs"),
            Operation::IndexBuild => (limits.index_build, "index_timeout_secs"),
            Operation::Rename => (limits.rename, "rename_timeout_secs"),
        }
    }
}

/// `operation.within(kind, action)`: the operation within its kind's limit,
/// its failure saying what was being done.
pub(crate) trait Within<T>: std::future::IntoFuture<Output = Result<T, mongodb::error::Error>> + Sized {
    fn within(
        self,
        kind: Operation,
        action: impl FnOnce() -> String + Send,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send
    where
        Self: Send,
        Self::IntoFuture: Send,
        T: Send,
    {
        bounded(kind, self, action)
    }
}

impl<F, T> Within<T> for F where F: std::future::IntoFuture<Output = Result<T, mongodb::error::Error>> {}

/// The operation within its kind's limit, the driver's own error left as is
/// (for callers that tell some errors apart, e.g. a duplicate key); only a
/// timeout becomes a [`StoreError`].
pub(crate) async fn timed<T>(
    kind: Operation,
    operation: impl std::future::IntoFuture<Output = Result<T, mongodb::error::Error>>,
    action: impl FnOnce() -> String,
) -> Result<Result<T, mongodb::error::Error>, StoreError> {
    let (limit, setting) = kind.limit();
    tokio::time::timeout(limit, operation.into_future())
        .await
        .map_err(|_| StoreError {
            action: action(),
            source: StoreCause::TimedOut {
                seconds: limit.as_secs(),
                setting,
            },
        })
}

/// Runs one MongoDB operation within its kind's limit.
pub(crate) async fn bounded<T>(
    kind: Operation,
    operation: impl std::future::IntoFuture<Output = Result<T, mongodb::error::Error>>,
    action: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    let mut action = Some(action);
    let mut describe = || action.take().map_or_else(String::new, |action| action());
    timed(kind, operation, &mut describe).await?.doing(describe)
}

/// How long to look for a reachable server before giving up with a message.
/// Documents asked for per reply when a whole collection is read (a
/// refresh's stored records). The server's default fills 16 MB replies, and
/// the driver holds a reply whole while it is read: two of them were half a
/// re-run's heap at 100k records, where 1000 documents are a few hundred KB.
pub const READ_BATCH: u32 = 1000;

const SERVER_SELECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to database `db_name` on the server `url` names and pings it,
/// so that a wrong URL or a down server is reported once, up front, in
/// words an operator can act on.
pub async fn connect(url: &str, db_name: &str, limits: OperationLimits) -> Result<mongodb::Database, StoreError> {
    let db = open(url, db_name, limits).await?;
    ping(&db).await.map_err(|error| StoreError {
        action: format!(
            "connecting to {} (is the server up, and are MONGO_URL's host, port and credentials right?)",
            crate::redact::redact_url(url)
        ),
        source: error.source,
    })?;
    Ok(db)
}

/// The database handle without contacting the server: the driver connects
/// lazily and reconnects by itself, which is what a long-running daemon that
/// must survive a MongoDB outage at start needs. (A `mongodb+srv://` URL is
/// resolved here, so DNS must answer.) `limits` bound every operation of
/// this process.
pub async fn open(url: &str, db_name: &str, limits: OperationLimits) -> Result<mongodb::Database, StoreError> {
    // The first limits set win: a process has one configuration.
    let _ = LIMITS.set(limits);
    let client = client_for_url(url, "MONGO_URL").await?;
    Ok(client.database(db_name))
}

/// A client for the server `url` names (`setting` says where the URL came
/// from, for messages), without contacting it.
pub async fn client_for_url(url: &str, setting: &str) -> Result<mongodb::Client, StoreError> {
    crate::tls::install_crypto_provider();
    let shown = crate::redact::redact_url(url);
    let mut options = mongodb::options::ClientOptions::parse(url)
        .await
        .doing(|| format!("parsing {setting} {shown}"))?;
    options.app_name.get_or_insert_with(|| "sheetsync".to_owned());
    options.server_selection_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
    mongodb::Client::with_options(options).doing(|| format!("configuring the client for {shown}"))
}

/// One round trip to the server.
pub async fn ping(db: &mongodb::Database) -> Result<(), StoreError> {
    bounded(
        Operation::Read,
        db.run_command(mongodb::bson::doc! { "ping": 1 }),
        || format!("pinging database `{}`", db.name()),
    )
    .await?;
    Ok(())
}
