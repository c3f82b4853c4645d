//! Per-view leases in `sync_locks`, so that several `sheetsync run`
//! processes against one database never sync the same view at once.
//!
//! One document per view: `{ _id: view_id, owner, expires_at, acquired_at }`.
//! A lease is taken when there is none, when it has expired, or when the
//! caller already owns it; it is renewed while the sync runs and deleted when
//! it ends. A process that dies leaves a lease that simply expires.
//!
//! Lease times come from the database server's clock (`hello`'s
//! `localTime`), never from a replica's own: a replica whose clock runs ahead
//! must not see a live lease as expired. (Computing them inside the update
//! with `$$NOW` would save a round trip, but the test servers do not support
//! `$expr` in update filters or compare two dates correctly in it.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::Database;
use mongodb::bson::{Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};

use super::{Doing, Operation, StoreError, Within, timed};
use crate::bson_dates::to_bson_date;

pub const SYNC_LOCKS_COLLECTION: &str = "sync_locks";

/// Server error code of a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

/// Who asks for leases: one per process.
#[derive(Debug, Clone)]
pub struct Leases {
    db: Database,
    owner: String,
    ttl: Duration,
}

impl Leases {
    pub fn new(db: Database, owner: String, ttl: Duration) -> Leases {
        Leases { db, owner, ttl }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::seconds(60))
    }

    /// The server's current time.
    async fn server_now(&self, doing: impl FnOnce() -> String + Send) -> Result<DateTime<Utc>, StoreError> {
        let hello = self
            .db
            .run_command(doc! { "hello": 1 })
            .within(Operation::Read, doing)
            .await?;
        let millis = hello.get_datetime("localTime").map(|time| time.timestamp_millis());
        // Every MongoDB answers `hello` with its `localTime`; without it, the
        // local clock is the only one left.
        Ok(millis
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or_else(Utc::now))
    }

    /// Takes the lease of `view_id` if it is free, expired or already ours.
    /// `Ok(false)` means another process holds it.
    pub async fn try_acquire(&self, view_id: &str) -> Result<bool, StoreError> {
        let now = self
            .server_now(|| format!("taking the lease of view {view_id}"))
            .await?;
        let locks = self.db.collection::<Document>(SYNC_LOCKS_COLLECTION);
        let expires_at = to_bson_date(self.expiry(now));
        let acquired_at = to_bson_date(now);
        let inserted = timed(
            Operation::Write,
            locks.insert_one(doc! {
                "_id": view_id, "owner": &self.owner, "expires_at": expires_at, "acquired_at": acquired_at,
            }),
            || format!("taking the lease of view {view_id}"),
        )
        .await?;
        match inserted {
            Ok(_) => return Ok(true),
            Err(error) if is_duplicate_key(&error) => {}
            Err(error) => return Err(error).doing(|| format!("taking the lease of view {view_id}")),
        }
        // Someone holds (or held) it: take it over only if expired or ours.
        let taken = locks
            .update_one(
                doc! {
                    "_id": view_id,
                    "$or": [ { "owner": &self.owner }, { "expires_at": { "$lt": to_bson_date(now) } } ],
                },
                doc! { "$set": { "owner": &self.owner, "expires_at": expires_at, "acquired_at": acquired_at } },
            )
            .within(Operation::Write, || format!("taking over the lease of view {view_id}"))
            .await?;
        Ok(taken.matched_count == 1)
    }

    /// Pushes the expiry forward; `Ok(false)` means the lease was lost (it
    /// expired and another process took it).
    pub async fn renew(&self, view_id: &str) -> Result<bool, StoreError> {
        let now = self
            .server_now(|| format!("renewing the lease of view {view_id}"))
            .await?;
        let renewed = self
            .db
            .collection::<Document>(SYNC_LOCKS_COLLECTION)
            .update_one(
                doc! { "_id": view_id, "owner": &self.owner },
                doc! { "$set": { "expires_at": to_bson_date(self.expiry(now)) } },
            )
            .within(Operation::Write, || format!("renewing the lease of view {view_id}"))
            .await?;
        Ok(renewed.matched_count == 1)
    }

    /// Who holds the lease of `view_id` and until when, if anyone does.
    pub async fn holder(&self, view_id: &str) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let lease = self
            .db
            .collection::<Document>(SYNC_LOCKS_COLLECTION)
            .find_one(doc! { "_id": view_id })
            .within(Operation::Read, || format!("reading the lease of view {view_id}"))
            .await?;
        Ok(lease.and_then(|lease| {
            let owner = lease.get_str("owner").ok()?.to_owned();
            let until = DateTime::from_timestamp_millis(lease.get_datetime("expires_at").ok()?.timestamp_millis())?;
            Some((owner, until))
        }))
    }

    /// Renews the lease of `view_id` at a third of its lifetime until the
    /// returned guard is dropped; calls `on_lost` (and stops) when another
    /// process took it.
    pub fn keep_alive(&self, view_id: &str, on_lost: impl FnOnce() + Send + 'static) -> Renewer {
        let (leases, view_id) = (self.clone(), view_id.to_owned());
        Renewer(tokio::spawn(async move {
            loop {
                tokio::time::sleep(leases.ttl / 3).await;
                match leases.renew(&view_id).await {
                    Ok(true) => {}
                    Ok(false) => {
                        on_lost();
                        return;
                    }
                    Err(error) => tracing::warn!(%view_id, %error, "could not renew the lease"),
                }
            }
        }))
    }

    /// Gives the lease back (only if still ours).
    pub async fn release(&self, view_id: &str) -> Result<(), StoreError> {
        self.db
            .collection::<Document>(SYNC_LOCKS_COLLECTION)
            .delete_one(doc! { "_id": view_id, "owner": &self.owner })
            .within(Operation::Write, || format!("releasing the lease of view {view_id}"))
            .await?;
        Ok(())
    }
}

/// A running lease renewal, stopped when dropped, including when a panic
/// unwinds past its owner: a lease must not be renewed past its sync.
pub struct Renewer(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for Renewer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An id for this process's leases: what it is (`daemon`, `cli`), its host
/// and pid, and a random part, so an operator can tell who holds a view.
pub fn owner_id(kind: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{kind}@{host}:{}:{}", std::process::id(), &random[..8])
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == DUPLICATE_KEY,
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        _ => error.to_string().contains("E11000"),
    }
}
