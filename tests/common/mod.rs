//! Helpers shared by the integration tests: a fresh database per test on the
//! real server named by `TEST_MONGO_URL` (which `scripts/test` starts).

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use mongodb::Database;
use mongodb::bson::{Document, doc};
use sheetsync::config::Config;
use sheetsync::engine::Engine;

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

pub async fn test_db(label: &str) -> TestDb {
    let name = format!("t_{label}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
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

pub async fn syncer_for(config: Config) -> Engine {
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

    pub async fn syncer(&self) -> Engine {
        syncer_for(self.config()).await
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
