//! Per-view leases in `sync_locks`, so that several `sheetsync run`
//! processes against one database never sync the same view at once.
//!
//! One document per view: `{ _id: view_id, owner, expires_at, acquired_at }`
//! and where its holder runs (`host`, `boot_id`, `pid_namespace`, `pid`,
//! `process_started`). A lease is taken when there is none, when it has
//! expired, or when the caller already owns it; it is renewed while the sync
//! runs and deleted when it ends.
//!
//! A process that dies (`kill -9`, a crash, the OOM killer) cannot delete
//! its lease. Another process on another machine waits for it to expire, as
//! it cannot tell a dead holder from a slow one. A process on the same
//! machine can: same host, same boot, same PID namespace, and no process
//! with that PID and start time. It takes such a lease over at once, with a
//! notice naming the dead holder (see [`Leases::take_over_notice`]).
//!
//! Lease times come from the database server's clock (`hello`'s
//! `localTime`), never from a replica's own: a replica whose clock runs ahead
//! must not see a live lease as expired. (Computing them inside the update
//! with `$$NOW` would save a round trip, but the test servers do not support
//! `$expr` in update filters or compare two dates correctly in it.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::Database;
use mongodb::bson::{Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};

use super::{Doing, Operation, StoreError, Within, timed};
use crate::bson_dates::to_bson_date;
use crate::concurrency::{AbortOnDrop, lock};

pub const SYNC_LOCKS_COLLECTION: &str = "sync_locks";

/// Server error code of a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

/// Who asks for leases: one per process.
#[derive(Debug, Clone)]
pub struct Leases {
    db: Database,
    owner: String,
    ttl: Duration,
    /// Where this process runs, written with every lease it takes.
    process: Document,
    /// Leases taken over from a dead holder of this machine, by view id:
    /// the notice for the run that took it, collected once.
    take_overs: Arc<Mutex<HashMap<String, String>>>,
}

impl Leases {
    pub fn new(db: Database, owner: String, ttl: Duration) -> Leases {
        Leases {
            db,
            owner,
            ttl,
            process: process_fields(std::process::id()),
            take_overs: Arc::default(),
        }
    }

    /// The notice of a lease of `view_id` taken over from a dead process of
    /// this machine, once: for the report of the run that took it.
    pub fn take_over_notice(&self, view_id: &str) -> Option<String> {
        lock(&self.take_overs).remove(view_id)
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

    /// Takes the lease of `view_id` if it is free, expired, already ours,
    /// or held by a process of this machine that died (see the module's
    /// doc). `Ok(false)` means another process holds it.
    pub async fn try_acquire(&self, view_id: &str) -> Result<bool, StoreError> {
        let now = self
            .server_now(|| format!("taking the lease of view {view_id}"))
            .await?;
        let locks = self.db.collection::<Document>(SYNC_LOCKS_COLLECTION);
        let expires_at = to_bson_date(self.expiry(now));
        let acquired_at = to_bson_date(now);
        let mut lease = doc! { "owner": &self.owner, "expires_at": expires_at, "acquired_at": acquired_at };
        lease.extend(self.process.clone());
        let mut fresh = doc! { "_id": view_id };
        fresh.extend(lease.clone());
        let inserted = timed(Operation::Write, locks.insert_one(fresh), || {
            format!("taking the lease of view {view_id}")
        })
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
                doc! { "$set": lease.clone() },
            )
            .within(Operation::Write, || format!("taking over the lease of view {view_id}"))
            .await?;
        if taken.matched_count == 1 {
            return Ok(true);
        }
        self.take_over_from_dead(view_id, lease).await
    }

    /// Takes the lease of `view_id` when its holder was a process of this
    /// machine that no longer runs. The update names the dead owner, so two
    /// processes noticing together cannot both take it.
    async fn take_over_from_dead(&self, view_id: &str, lease: Document) -> Result<bool, StoreError> {
        let locks = self.db.collection::<Document>(SYNC_LOCKS_COLLECTION);
        let Some(held) = locks
            .find_one(doc! { "_id": view_id })
            .within(Operation::Read, || format!("reading the lease of view {view_id}"))
            .await?
        else {
            return Ok(false);
        };
        let Ok(dead_owner) = held.get_str("owner") else {
            return Ok(false);
        };
        if !self.held_by_dead_local_process(&held) {
            return Ok(false);
        }
        let taken = locks
            .update_one(doc! { "_id": view_id, "owner": dead_owner }, doc! { "$set": lease })
            .within(Operation::Write, || format!("taking over the lease of view {view_id}"))
            .await?;
        if taken.matched_count != 1 {
            return Ok(false);
        }
        let notice = format!(
            "took over the lease of this sync from {dead_owner}, a process of this machine that no longer runs \
             (killed or crashed during its run); its staging collections are dropped"
        );
        tracing::warn!(%view_id, dead_holder = %dead_owner, "took over the lease of a dead process of this machine");
        lock(&self.take_overs).insert(view_id.to_owned(), notice);
        Ok(true)
    }

    /// Whether the lease `held` names a process of this machine (same host,
    /// boot and PID namespace) that is gone: no process with its PID, or
    /// one started at another time (the PID was reused).
    fn held_by_dead_local_process(&self, held: &Document) -> bool {
        let same = |field: &str| match (held.get_str(field), self.process.get_str(field)) {
            (Ok(theirs), Ok(ours)) => theirs == ours,
            _ => false,
        };
        if !(same("host") && same("boot_id") && same("pid_namespace")) {
            return false;
        }
        let Ok(pid) = held.get_i64("pid") else {
            return false;
        };
        let Ok(pid) = u32::try_from(pid) else {
            return false;
        };
        match (process_started(pid), held.get_i64("process_started")) {
            (None, _) => true,
            (Some(now), Ok(then)) => i64::try_from(now).ok() != Some(then),
            (Some(_), Err(_)) => false,
        }
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
    pub fn keep_alive(&self, view_id: &str, on_lost: impl FnOnce() + Send + 'static) -> AbortOnDrop {
        let (leases, view_id) = (self.clone(), view_id.to_owned());
        AbortOnDrop(tokio::spawn(async move {
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

/// Where process `pid` of this machine runs, as a lease records its holder:
/// the host name, the kernel's boot id and PID namespace (two containers of
/// one host share the boot but not the namespace, and their PIDs mean
/// nothing to each other), the PID and the process's start time (so that a
/// reused PID is not taken for the holder). Fields that cannot be read are
/// left out, and a lease without them is never taken over early.
pub fn process_fields(pid: u32) -> Document {
    let mut fields = doc! { "host": host_name(), "pid": i64::from(pid) };
    if let Ok(boot_id) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        fields.insert("boot_id", boot_id.trim());
    }
    if let Ok(namespace) = std::fs::read_link("/proc/self/ns/pid") {
        fields.insert("pid_namespace", namespace.to_string_lossy().into_owned());
    }
    if let Some(started) = process_started(pid).and_then(|ticks| i64::try_from(ticks).ok()) {
        fields.insert("process_started", started);
    }
    fields
}

/// When process `pid` started, in clock ticks after boot (`/proc/PID/stat`,
/// field 22); `None` when no such process runs.
fn process_started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after its closing parenthesis start at field 3.
    let after_name = stat.rsplit_once(") ")?.1;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// An id for this process's leases: what it is (`daemon`, `cli`), its host
/// and pid, and a random part, so an operator can tell who holds a view.
pub fn owner_id(kind: &str) -> String {
    let host = host_name();
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
