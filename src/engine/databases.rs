//! Which database a sync writes: the main one (views), or another
//! application's, on its own server (`[[syncs]]` with `mongo_url_env`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mongodb::Database;

use crate::concurrency::lock;
use crate::store::StoreError;
use crate::syncs::{Place, SyncPlan};

/// The main database, and clients of the other applications' servers, made
/// once per URL and shared by every run. Cheap to clone.
#[derive(Clone)]
pub struct Databases {
    main: Database,
    /// The main database's server, whose client other databases on it share.
    main_url: String,
    others: Arc<Mutex<HashMap<String, mongodb::Client>>>,
}

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Databases").field("main", &self.main.name()).finish()
    }
}

impl Databases {
    pub fn new(main: Database, main_url: &str) -> Databases {
        Databases {
            main,
            main_url: main_url.to_owned(),
            others: Arc::default(),
        }
    }

    /// The sales database, which holds the views.
    pub fn main(&self) -> &Database {
        &self.main
    }

    /// The database a target's collection lives in.
    pub async fn of(&self, place: &Place) -> Result<Database, StoreError> {
        let (database, url) = match place {
            Place::Main => return Ok(self.main.clone()),
            Place::Other { database, mongo_url } => (database, mongo_url),
        };
        if *url == self.main_url {
            return Ok(self.main.client().database(database));
        }
        let known = lock(&self.others).get(url).cloned();
        let client = match known {
            Some(client) => client,
            None => {
                let client = crate::store::client_for_url(url, "the sync's mongo_url_env").await?;
                lock(&self.others).entry(url.clone()).or_insert(client).clone()
            }
        };
        Ok(client.database(database))
    }

    /// Where a plan's runs are recorded: its target's database (a view's,
    /// or a sync whose target cannot be resolved: the main one).
    pub async fn home_of(&self, plan: &SyncPlan) -> Result<Database, StoreError> {
        match plan.target() {
            Some(target) => self.of(&target.place).await,
            None => Ok(self.main.clone()),
        }
    }
}
