//! Which database a sync writes: the main one (views), or another
//! application's, on its own server (`[[syncs]]` with `mongo_url_env`).

use std::collections::HashMap;
use std::sync::Arc;

use mongodb::Database;

use super::Engine;
use crate::store::StoreError;
use crate::syncs::{Place, SyncPlan};

/// Clients of the other applications' servers, made once per URL and
/// shared by every run.
#[derive(Clone, Default)]
pub(super) struct Servers(Arc<std::sync::Mutex<HashMap<String, mongodb::Client>>>);

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Servers")
    }
}

impl Engine {
    /// The database a target's collection lives in.
    pub async fn database(&self, place: &Place) -> Result<Database, StoreError> {
        let (database, url) = match place {
            Place::Main => return Ok(self.db.clone()),
            Place::Other { database, mongo_url } => (database, mongo_url),
        };
        if *url == self.config.mongo_url {
            return Ok(self.db.client().database(database));
        }
        let known = lock(&self.servers.0).get(url).cloned();
        let client = match known {
            Some(client) => client,
            None => {
                let client = crate::store::client_for_url(url, "the sync's mongo_url_env").await?;
                lock(&self.servers.0).entry(url.clone()).or_insert(client).clone()
            }
        };
        Ok(client.database(database))
    }

    /// Where a plan's runs are recorded: its target's database (a view's,
    /// or a sync whose target cannot be resolved: the main one).
    pub async fn home_of(&self, plan: &SyncPlan) -> Result<Database, StoreError> {
        match plan.target() {
            Some(target) => self.database(&target.place).await,
            None => Ok(self.db.clone()),
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map is only inserted into; a panic elsewhere cannot leave it torn.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
