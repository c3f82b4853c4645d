//! The staging collection: created with the target's options, filled in
//! batches, its indexes built and everything checked, then renamed over the
//! target with `dropTarget` in one server-side step. Readers see the old
//! collection or the new one, never a mix, and no transaction (hence no
//! replica set) is needed. Any failure before the rename leaves the target
//! untouched.

use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use mongodb::bson::{Bson, Document, doc};
use mongodb::{Collection, Database};

use crate::mapping::profile::TargetProfile;
use crate::store::shape::{self, Shape, ShapeError};
use crate::store::{Operation, StoreError, Within, timed};

/// Prefix of staging collections; leftovers of a crashed run are recognised
/// (and dropped) by it. The full name is
/// `_sheetsync_staging.<target>.<unix seconds>.<sync tag>.<run id>` (see
/// [`sync_tag`]; names made before the tag have none).
pub const STAGING_PREFIX: &str = "_sheetsync_staging.";

/// A staging batch is sent once its documents reach about this many bytes,
/// whatever their number: wide records make smaller batches, so that the
/// batches in flight stay a few megabytes.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A staging collection younger than this may belong to a sync still running
/// elsewhere (the daemon while an operator runs `sheetsync sync`), so only
/// older ones are dropped as leftovers. No refresh takes hours.
pub const STALE_STAGING_AFTER: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error(
        "row {row} was refused by the rules of `{collection}` (its validator, or a unique index the application \
         added): {reason}; nothing was swapped, the previous data stands: fix the row or the rule"
    )]
    Refused {
        collection: String,
        row: usize,
        reason: String,
    },
    #[error("staging collection `{staging}` holds {found} document(s) instead of {expected}; the swap was not done")]
    StagingMismatch {
        staging: String,
        expected: usize,
        found: u64,
    },
    #[error(
        "staging collection `{staging}` has {found} index(es) instead of {expected} (was it dropped and re-created \
         meanwhile?); the swap was not done"
    )]
    StagingIndexes {
        staging: String,
        expected: usize,
        found: usize,
    },
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A short tag of a sync's id for its staging names: the id comes from the
/// `views` collection, which another application writes, so it is hashed
/// into hex rather than put into a collection name as written.
pub fn sync_tag(sync_id: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, sync_id.as_bytes());
    digest.as_ref()[..6].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A batch's documents in bytes, roughly (a batch is sent once it reaches
/// [`MAX_BATCH_BYTES`]): each field's name and value, without encoding.
fn approximate_size(document: &Document) -> usize {
    fn value_size(value: &Bson) -> usize {
        match value {
            Bson::String(text) => text.len() + 5,
            Bson::Document(inner) => approximate_size(inner),
            Bson::Array(items) => items.iter().map(value_size).sum::<usize>() + 5,
            _ => 8,
        }
    }
    document
        .iter()
        .map(|(name, value)| name.len() + 2 + value_size(value))
        .sum::<usize>()
        + 5
}

/// Inserts one batch into staging; how many documents went in. The batch
/// and its source rows move in, so that several can be in flight.
async fn insert_batch(
    collection: Collection<Document>,
    target: String,
    batch: Vec<Document>,
    rows: Vec<usize>,
) -> Result<usize, SwapError> {
    let staging = collection.name().to_owned();
    let inserted = timed(Operation::Write, collection.insert_many(&batch).ordered(false), || {
        format!("writing records to staging collection `{staging}`")
    })
    .await?;
    match inserted {
        Ok(_) => Ok(batch.len()),
        Err(error) => Err(refusal(&target, &staging, &rows, error)),
    }
}

/// A failed insert as the person editing the sheet needs it: which row
/// the collection's rules refused, and the server's reason.
fn refusal(target: &str, staging: &str, rows: &[usize], error: mongodb::error::Error) -> SwapError {
    let refused = match error.kind.as_ref() {
        // Unordered inserts report every refused record; the first in
        // source order is named.
        mongodb::error::ErrorKind::InsertMany(failure) => failure
            .write_errors
            .as_ref()
            .and_then(|errors| errors.iter().min_by_key(|error| error.index))
            .cloned(),
        _ => None,
    };
    match refused.and_then(|refused| Some((*rows.get(refused.index)?, refused))) {
        Some((row, refused)) => SwapError::Refused {
            collection: target.to_owned(),
            row,
            reason: match refused.details {
                Some(details) => format!("{} ({details})", refused.message),
                None => refused.message,
            },
        },
        None => SwapError::Store(StoreError {
            action: format!("writing records to staging collection `{staging}`"),
            source: error.into(),
        }),
    }
}

/// Drops staging collections a crashed or killed run left for `target`:
/// those older than [`STALE_STAGING_AFTER`], or without a readable time,
/// and, with `leased_sync` (the caller holds that sync's lease, so no live
/// run of it can own one), every one of that sync whatever its age: a run
/// killed a minute ago leaves nothing behind for hours.
pub async fn drop_leftover_staging(
    db: &Database,
    target: &str,
    leased_sync: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let prefix = format!("{STAGING_PREFIX}{target}.");
    let names = db
        .list_collection_names()
        .within(Operation::Read, || {
            format!("listing collections to clean up staging for `{target}`")
        })
        .await?;
    let now = unix_seconds();
    let ours = leased_sync.map(sync_tag);
    let stale = |name: &str| {
        let mut parts = name[prefix.len()..].split('.');
        let created = parts.next().and_then(|secs| secs.parse::<u64>().ok());
        // `<secs>.<tag>.<run id>`; an older `<secs>.<run id>` has no tag.
        let tag = match (parts.next(), parts.next()) {
            (Some(tag), Some(_)) => Some(tag),
            _ => None,
        };
        let orphaned = tag.is_some() && tag == ours.as_deref();
        orphaned || created.is_none_or(|created| now.saturating_sub(created) > STALE_STAGING_AFTER.as_secs())
    };
    let mut dropped = Vec::new();
    for name in names
        .into_iter()
        .filter(|name| name.starts_with(&prefix) && stale(name))
    {
        db.collection::<Document>(&name)
            .drop()
            .within(Operation::Write, || {
                format!("dropping leftover staging collection `{name}`")
            })
            .await?;
        dropped.push(name);
    }
    Ok(dropped)
}

/// A staging collection being filled, to be swapped in as the target or
/// abandoned. Records are written in batches as they come, up to `workers`
/// batches in flight at once (the server inserts them side by side), so a
/// large refresh holds at most that many batches and the one being filled.
pub struct Staging {
    db: Database,
    target: String,
    collection: Collection<Document>,
    batch: Vec<Document>,
    /// The source row of each batched record, to name a refused one.
    batch_rows: Vec<usize>,
    /// About how many bytes the batch's documents take (see [`approximate_size`]).
    batch_bytes: usize,
    batch_size: usize,
    /// Batches sent and not yet answered, at most `workers`.
    in_flight: FuturesUnordered<BoxFuture<'static, Result<usize, SwapError>>>,
    workers: usize,
    written: usize,
    /// The target's options and indexes, which the staging collection takes
    /// over so that the swap replaces the documents and nothing else.
    shape: Shape,
    /// Built once the records are in: one bulk build per index is several
    /// times faster than keeping them up to date insert by insert. The
    /// target's own indexes, plus the profile's it lacks.
    indexes: Vec<Document>,
}

impl Staging {
    /// Creates `_sheetsync_staging.<target>.<unix seconds>.<sync tag>.<run
    /// id>` with the target's options (validator, collation...), so its
    /// rules check the new records too. Indexes are built at the swap.
    pub async fn create(
        db: &Database,
        target: &str,
        profile: &TargetProfile,
        (sync_id, run_id): (&str, &str),
        (batch_size, workers): (usize, usize),
    ) -> Result<Staging, SwapError> {
        let shape = Shape::read(db, target).await?;
        let name = format!(
            "{STAGING_PREFIX}{target}.{}.{}.{run_id}",
            unix_seconds(),
            sync_tag(sync_id)
        );
        shape::create_with(db, &name, &shape.options).await?;
        Ok(Staging {
            db: db.clone(),
            target: target.to_owned(),
            collection: db.collection(&name),
            batch: Vec::with_capacity(batch_size),
            batch_rows: Vec::with_capacity(batch_size),
            batch_bytes: 0,
            batch_size: batch_size.max(1),
            in_flight: FuturesUnordered::new(),
            workers: workers.max(1),
            written: 0,
            indexes: shape.indexes_with(&profile.indexes),
            shape,
        })
    }

    /// Records per insert batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Adds the record of source row `row`.
    pub async fn push(&mut self, row: usize, document: Document) -> Result<(), SwapError> {
        self.batch_bytes += approximate_size(&document);
        self.batch.push(document);
        self.batch_rows.push(row);
        if self.batch.len() >= self.batch_size || self.batch_bytes >= MAX_BATCH_BYTES {
            self.send_batch().await?;
        }
        Ok(())
    }

    /// Sends the batch being filled, once fewer than `workers` batches are
    /// in flight (waiting for one to be answered if need be).
    async fn send_batch(&mut self) -> Result<(), SwapError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= self.workers {
            self.answer().await?;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
        let rows = std::mem::replace(&mut self.batch_rows, Vec::with_capacity(self.batch_size));
        self.batch_bytes = 0;
        let (collection, target) = (self.collection.clone(), self.target.clone());
        self.in_flight
            .push(Box::pin(insert_batch(collection, target, batch, rows)));
        Ok(())
    }

    /// Waits for the next batch in flight to be answered.
    async fn answer(&mut self) -> Result<(), SwapError> {
        if let Some(answered) = self.in_flight.next().await {
            self.written += answered?;
        }
        Ok(())
    }

    /// Writes the records still batched and waits for every batch in flight.
    pub async fn flush(&mut self) -> Result<(), SwapError> {
        self.send_batch().await?;
        while !self.in_flight.is_empty() {
            self.answer().await?;
        }
        Ok(())
    }

    /// Writes what is left, builds the indexes and checks that every record
    /// and index arrived: after this, only [`Staging::swap_in`] is left.
    pub async fn prepare(&mut self) -> Result<(), SwapError> {
        self.flush().await?;
        let staging = self.collection.name().to_owned();
        shape::create_indexes(&self.db, &staging, &self.indexes).await?;
        let found = self
            .collection
            .count_documents(doc! {})
            .within(Operation::Read, || format!("counting staging collection `{staging}`"))
            .await?;
        if found != self.written as u64 {
            return Err(SwapError::StagingMismatch {
                staging,
                expected: self.written,
                found,
            });
        }
        // A staging collection dropped and re-created by an insert would have
        // the right count but no indexes; never swap that in.
        let indexes = self
            .collection
            .list_index_names()
            .within(Operation::Read, || {
                format!("listing the indexes of staging collection `{staging}`")
            })
            .await?;
        let expected = self.indexes.len() + 1;
        if indexes.len() < expected {
            return Err(SwapError::StagingIndexes {
                staging,
                expected,
                found: indexes.len(),
            });
        }
        Ok(())
    }

    /// Renames the prepared staging collection over the target in one
    /// server-side step (`dropTarget`): readers see the old collection or the
    /// new one, never a mix. Returns what the server did not carry over (see
    /// [`shape::restore_options`]).
    pub async fn swap_in(&mut self) -> Result<Vec<String>, SwapError> {
        let staging = self.collection.name().to_owned();
        let namespace = |name: &str| format!("{}.{name}", self.db.name());
        self.db
            .client()
            .database("admin")
            .run_command(doc! {
                "renameCollection": namespace(&staging),
                "to": namespace(&self.target),
                "dropTarget": true,
            })
            .within(Operation::Rename, || {
                format!("swapping `{staging}` in as `{}` (renameCollection)", self.target)
            })
            .await?;
        // The data is in place now: a failure to check the options is told,
        // not turned into a failed refresh.
        Ok(shape::restore_options(&self.db, &self.target, &self.shape.options)
            .await
            .unwrap_or_else(|error| {
                vec![format!(
                    "the new data is in place, but checking that `{}` kept its options failed: {error}",
                    self.target
                )]
            }))
    }

    /// Drops the staging collection; the target is as it was. Best effort:
    /// the next run drops what is left. Batches still in flight are waited
    /// for first (each within the write limit): one answered after the drop
    /// would create the collection again.
    pub async fn abandon(mut self) {
        while self.in_flight.next().await.is_some() {}
        if let Err(error) = self.collection.drop().await {
            let staging = self.collection.name();
            tracing::warn!(%staging, %error, "could not drop the staging collection; the next run will");
        }
    }
}
