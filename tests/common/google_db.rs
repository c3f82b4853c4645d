//! A database of its own for each Google Sheets test, on the server
//! `scripts/test` starts (`TEST_MONGO_URL`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use mongodb::Database;
use sheetsync::config::Config;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct GoogleTestDb {
    pub url: String,
    pub name: String,
    pub db: Database,
}

impl GoogleTestDb {
    /// Connects to `TEST_MONGO_URL` with a fresh, uniquely named database.
    pub async fn new(test: &str) -> GoogleTestDb {
        let url = std::env::var("TEST_MONGO_URL")
            .expect("TEST_MONGO_URL is not set; run the tests with scripts/test, which starts a server");
        let name = format!(
            "sheetsync_gs_{test}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let config = Config::resolve(None, |variable| match variable {
            "MONGO_URL" => Some(url.clone()),
            "DB_NAME" => Some(name.clone()),
            _ => None,
        })
        .unwrap();
        let db = sheetsync::store::connect(&config).await.unwrap();
        GoogleTestDb { url, name, db }
    }

    /// A configuration for this database; `extra` adds environment variables.
    pub fn config(&self, extra: &[(&str, &str)]) -> Config {
        Config::resolve(None, |variable| match variable {
            "MONGO_URL" => Some(self.url.clone()),
            "DB_NAME" => Some(self.name.clone()),
            other => extra
                .iter()
                .find(|(name, _)| *name == other)
                .map(|(_, value)| (*value).to_owned()),
        })
        .unwrap()
    }

    pub async fn drop(self) {
        let _ = self.db.drop().await;
    }
}
