//! Everything that writes to MongoDB: the all-or-nothing swap, indexes and
//! the bookkeeping collections.

pub mod apply;
pub mod indexes;
pub mod lease;
pub mod metadata;
pub mod runs;
pub mod shape;

/// A MongoDB operation that failed, with what sheetsync was doing.
#[derive(Debug, thiserror::Error)]
#[error("MongoDB failed while {action}: {source}")]
pub struct StoreError {
    pub action: String,
    #[source]
    pub source: mongodb::error::Error,
}

/// Attaches what was being done to a driver error.
pub(crate) trait Doing<T> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Doing<T> for Result<T, mongodb::error::Error> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError {
            action: action(),
            source,
        })
    }
}

/// How long to look for a reachable server before giving up with a message.
const SERVER_SELECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to `config`'s database and pings it, so that a wrong URL or a
/// down server is reported once, up front, in words an operator can act on.
pub async fn connect(config: &crate::config::Config) -> Result<mongodb::Database, StoreError> {
    let url = config.redacted_mongo_url();
    let db = client_for(config).await?;
    ping(&db).await.map_err(|error| StoreError {
        action: format!(
            "connecting to {url} (is the server up, and are MONGO_URL's host, port and credentials right?)"
        ),
        source: error.source,
    })?;
    Ok(db)
}

/// The database handle without contacting the server: the driver connects
/// lazily and reconnects by itself, which is what a long-running daemon that
/// must survive a MongoDB outage at start needs. (A `mongodb+srv://` URL is
/// resolved here, so DNS must answer.)
pub async fn client_for(config: &crate::config::Config) -> Result<mongodb::Database, StoreError> {
    crate::tls::install_crypto_provider();
    let url = config.redacted_mongo_url();
    let mut options = mongodb::options::ClientOptions::parse(&config.mongo_url)
        .await
        .doing(|| format!("parsing MONGO_URL {url}"))?;
    options.app_name.get_or_insert_with(|| "sheetsync".to_owned());
    options.server_selection_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
    let client = mongodb::Client::with_options(options).doing(|| format!("configuring the client for {url}"))?;
    Ok(client.database(&config.db_name))
}

/// One round trip to the server.
pub async fn ping(db: &mongodb::Database) -> Result<(), StoreError> {
    db.run_command(mongodb::bson::doc! { "ping": 1 })
        .await
        .doing(|| format!("pinging database `{}`", db.name()))?;
    Ok(())
}
