//! What the integration tests share: the server under test and a fresh
//! database per test (`TEST_MONGO_URL`, which `scripts/test` starts), the
//! binary's launcher, the fake Google, fixtures and generated exports.

pub mod daemon_fixture;
pub mod fake_credentials;
pub mod fake_google;
pub mod own_server;
pub mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::{Document, doc};
use sheetsync::config::Config;
use sheetsync::engine::Engine;
use sheetsync::mapping::conventions::ReadSettings;
use sheetsync::mapping::sales::SALES_RECORDS;
use sheetsync::mapping::{self, MappedRecord, Survey};
use sheetsync::source::SourceRows;

/// Copies of `shared/fixtures`, kept in the repo so the tests stand alone.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The server under test. `scripts/test` starts one and sets this.
pub fn server_url() -> String {
    std::env::var("TEST_MONGO_URL").unwrap_or_else(|_| {
        panic!("TEST_MONGO_URL is not set: run the tests with scripts/test, which starts a throwaway server")
    })
}

/// A connection string for `server_url()` with extra options appended.
pub fn url_with(options: &str) -> String {
    let base = server_url();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{options}")
}

/// A database of its own for one test.
pub struct TestDb {
    pub db: Database,
    pub name: String,
}

/// A database name no other test uses.
pub fn unique_name(label: &str) -> String {
    format!("t_{label}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// A handle on database `name` of the server `url` names (another than the
/// shared one: a test's own server).
pub async fn database(url: &str, name: &str) -> Database {
    sheetsync::tls::install_crypto_provider();
    mongodb::Client::with_uri_str(url)
        .await
        .expect("a valid URL")
        .database(name)
}

pub async fn test_db(label: &str) -> TestDb {
    let name = unique_name(label);
    let config = config(&server_url(), &name);
    let db = config.connect().await.expect("the test server is reachable");
    TestDb { db, name }
}

/// A configuration pointing at `url` / `db_name`, with defaults otherwise.
pub fn config(url: &str, db_name: &str) -> Config {
    config_with(url, db_name, &[])
}

/// [`config`], with `extra` as further environment variables.
pub fn config_with(url: &str, db_name: &str, extra: &[(&str, &str)]) -> Config {
    Config::resolve(None, |name| match name {
        "MONGO_URL" => Some(url.to_owned()),
        "DB_NAME" => Some(db_name.to_owned()),
        other => extra
            .iter()
            .find(|(variable, _)| *variable == other)
            .map(|(_, value)| (*value).to_owned())
            // The tests' exports live in scratch directories and the
            // fixtures; the policy itself has tests of its own.
            .or_else(|| (other == "SHEETSYNC_FILE_ROOTS").then(|| "/".to_owned())),
    })
    .expect("test config is valid")
}

pub async fn engine_for(config: Config) -> Engine {
    let db = config.connect().await.expect("the test server is reachable");
    let sources = config.sources().expect("HTTP client starts");
    Engine::new(db, config, sources)
}

impl TestDb {
    pub fn config(&self) -> Config {
        config(&server_url(), &self.name)
    }

    /// [`TestDb::config`], with `extra` as further environment variables.
    pub fn config_with(&self, extra: &[(&str, &str)]) -> Config {
        config_with(&server_url(), &self.name, extra)
    }

    pub async fn engine(&self) -> Engine {
        engine_for(self.config()).await
    }

    /// Adds a view document as the admin UI would.
    pub async fn add_view(&self, id: &str, name: &str, sheet_url: &str) {
        self.db
            .collection::<Document>("views")
            .insert_one(doc! {
                "id": id, "name": name, "sheet_url": sheet_url, "sheet_name": "Sheet1",
                "is_master": false, "is_default": false, "assigned_user": "test@example.com",
            })
            .await
            .expect("insert view");
    }

    pub async fn add_master_view(&self) {
        self.db
            .collection::<Document>("views")
            .insert_one(doc! { "id": "view-master", "name": "Master", "sheet_url": null, "is_master": true })
            .await
            .expect("insert master view");
    }

    /// Every document of `collection`, without `_id`, sorted by client then
    /// stage.
    pub async fn records(&self, collection: &str) -> Vec<Document> {
        use futures_util::TryStreamExt;
        self.db
            .collection::<Document>(collection)
            .find(doc! {})
            .projection(doc! { "_id": 0 })
            .sort(doc! { "client": 1, "stage": 1 })
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("read records")
    }

    pub async fn count(&self, collection: &str) -> u64 {
        self.db
            .collection::<Document>(collection)
            .count_documents(doc! {})
            .await
            .expect("count")
    }

    pub async fn drop(self) {
        let _ = self.db.drop().await;
    }
}

/// Writes `bytes` to `dir/name` and returns its `file://` URL.
pub fn write_source(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, bytes).expect("write source file");
    format!("file://{}", path.display())
}

pub fn fixture_url(name: &str) -> String {
    format!("file://{FIXTURES}/{name}")
}

/// A sales CSV header with the schema's columns as a Google export names them.
pub const HEADER: &str = "Month,Discovery Date,Client,Hubspot Link,Stage,Relevance,Show / No Show,POA Date,\
Expected MRR,Expected ARR,Pipeline,Type of Deal,BDR,Type of Source,Product,Owner,Supporters,Billing Start";

/// A CSV of `count` distinct deals, `Client 0`.. at stage `stage`, MRR `mrr`.
pub fn generated_csv(count: usize, stage: &str, mrr: u32) -> String {
    let mut csv = format!("{HEADER}\n");
    for index in 0..count {
        csv.push_str(&format!(
            "2025-01,15/01/2025,Client {index},,{stage},High,Show,,{mrr},,,New Business,Ann,Inbound,SEO,Bob,,\n"
        ));
    }
    csv
}

/// The admin token the tests' daemons use: as long as the daemon demands.
pub const ADMIN_TOKEN: &str = "correct-horse-battery-staple-correct-horse-battery-staple";

/// Generous: the test server may be a slow Python build on a busy machine.
pub const TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` until it returns `Some`, up to [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// An HTTP client for the daemon's endpoints.
/// `GET url` as JSON, with the admin token when given; `None` when the
/// request or its body fails, so that `eventually` can try again.
pub async fn get_json(url: &str, token: Option<&str>) -> Option<serde_json::Value> {
    let mut request = http().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.ok()?.json().await.ok()
}

pub fn http() -> reqwest::Client {
    sheetsync::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A port nothing listens on yet (the OS picks it; it may be taken again
/// before use, which the tests that need one tolerate).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free local port")
}

/// Both mapping passes over `rows` into the sales profile, as the engine
/// makes them: the survey and every winning record, or the first error.
pub fn map_all(rows: &SourceRows, settings: &ReadSettings) -> Result<(Survey, Vec<MappedRecord>), String> {
    let (mapper, survey) =
        mapping::survey(&SALES_RECORDS, rows, settings, &Default::default()).map_err(|error| error.to_string())?;
    let mut winners = mapper.winners(&survey, rows.rows().map_err(|error| error.to_string())?);
    let mut records = Vec::new();
    while let Some(record) = winners.next_record() {
        records.push(record.map_err(|error| error.to_string())?);
    }
    Ok((survey, records))
}

/// Records that `test` could not run here and why: said on stderr and, for
/// `scripts/test`'s closing line (which counts it as skipped, not passed),
/// appended to the file `SHEETSYNC_SKIP_LOG` names. The test then returns.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("SHEETSYNC_SKIP_LOG") {
        use std::io::Write as _;
        let line = format!("{test}\t{}\n", reason.replace(['\n', '\t'], " "));
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        appended.expect("the skip log (SHEETSYNC_SKIP_LOG) is writable");
    }
}
