//! All-or-nothing replacement of a view's collection.
//!
//! The new records are written to a staging collection that already carries
//! the target's indexes, checked, and then renamed over the target with
//! `dropTarget` in one server-side step. Readers see the old collection or the
//! new one, never a mix, and no transaction (hence no replica set) is needed.
//! Any failure before the rename leaves the target untouched.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime as BsonDateTime, Document, doc};
use mongodb::{Collection, Database};
use serde::Serialize;
use uuid::Uuid;

use super::{Doing, StoreError, indexes};
use crate::mapping::profile::{IndexSpec, TargetProfile};
use crate::mapping::{MappedRecord, record_key};

/// Prefix of staging collections; leftovers of a crashed run are recognised
/// (and dropped) by it. The full name is
/// `_sheetsync_staging.<target>.<unix seconds>.<run id>`.
pub const STAGING_PREFIX: &str = "_sheetsync_staging.";

/// A staging collection younger than this may belong to a sync still running
/// elsewhere (the daemon while an operator runs `sheetsync sync`), so only
/// older ones are dropped as leftovers. No refresh takes hours.
pub const STALE_STAGING_AFTER: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Namespace of the v5 UUIDs given to new records (random, fixed forever: a
/// different namespace would change every deal id).
const RECORD_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5b1f_0a3c_7d2e_4f61_9a8b_3c4d_5e6f_7081);

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "refusing to replace {existing} record(s) in `{collection}` with {new}: {why}; \
         if this is intended, run `sheetsync sync --force --view NAME`"
    )]
    Shrink {
        collection: String,
        existing: u64,
        new: usize,
        why: String,
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

/// What a refresh changes compared with the data it replaces.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub inserted: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.inserted == 0 && self.updated == 0 && self.removed == 0
    }
}

/// What a refresh needs to know of a record already in the collection: its
/// identity, and a digest of its content to tell whether it changed. The
/// document itself is not kept, so memory grows with the number of records,
/// not with their size.
#[derive(Debug)]
struct Known {
    id: RecordId,
    created_at: Option<BsonDateTime>,
    digest: u64,
}

/// A deal id as held in memory. Almost every id is a UUID in its canonical
/// text form (sheetsync made it, or the dashboard did), so it is kept as its
/// 16 bytes instead of a 36-byte heap string: with one per record, twice
/// (the old data's and the ids already given out), that is what keeps half a
/// million records within the memory budget. Anything else is kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RecordId {
    Uuid(Uuid),
    /// Never a canonical UUID, so one id has exactly one representation.
    Text(Box<str>),
}

impl RecordId {
    fn parse(id: &str) -> RecordId {
        match Uuid::try_parse(id) {
            Ok(uuid) if uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == id => RecordId::Uuid(uuid),
            _ => RecordId::Text(id.into()),
        }
    }

    fn to_text(&self) -> String {
        match self {
            RecordId::Uuid(uuid) => uuid.to_string(),
            RecordId::Text(text) => text.to_string(),
        }
    }
}

/// The target collection's current records, by key.
#[derive(Debug, Default)]
pub struct Existing {
    by_key: HashMap<String, Known>,
    /// Every document in the collection, keyed or not.
    pub count: u64,
}

/// Reads the records a refresh will replace, to carry their ids and
/// `created_at` over and to count changes.
pub async fn load_existing(collection: &Collection<Document>, profile: &TargetProfile) -> Result<Existing, StoreError> {
    let describe = || format!("reading the current records of `{}`", collection.name());
    let mut existing = Existing::default();
    // Sized once from the collection's metadata: growing the map by doubling
    // would briefly hold the old table next to the new one, the largest
    // moment of a re-load's memory. (A failed estimate only costs that.)
    if let Ok(estimate) = collection.estimated_document_count().await {
        existing.by_key.reserve(usize::try_from(estimate).unwrap_or(0));
    }
    let mut cursor = collection
        .find(doc! {})
        .projection(doc! { "_id": 0 })
        .await
        .doing(describe)?;
    while let Some(document) = cursor.try_next().await.doing(describe)? {
        existing.add(profile, &document);
    }
    Ok(existing)
}

impl Existing {
    /// Counts one stored document and, when it has an id, remembers it under
    /// its key (the first of several sharing a key wins).
    fn add(&mut self, profile: &TargetProfile, document: &Document) {
        self.count += 1;
        let Ok(id) = document.get_str("id") else {
            return;
        };
        self.by_key
            .entry(record_key(profile, document))
            .or_insert_with(|| Known {
                id: RecordId::parse(id),
                created_at: document.get_datetime("created_at").ok().copied(),
                digest: digest(document),
            });
    }
}

/// A 64-bit digest of a document's encoding. Field order counts, which only
/// makes a record written by another tool in another order count as updated.
/// (A collision, about 1 in 2^64 per record, would leave one changed record
/// unwritten until its next change.)
fn digest(document: &Document) -> u64 {
    let mut bytes = Vec::new();
    let mut hasher = DefaultHasher::new();
    match document.to_writer(&mut bytes) {
        Ok(()) => bytes.hash(&mut hasher),
        // Unencodable documents cannot be stored either; any value will do.
        Err(_) => document.len().hash(&mut hasher),
    }
    hasher.finish()
}

/// Gives records their identity, one at a time, and counts what changes:
/// each record keeps the id and `created_at` it already had, or gets a UUID
/// derived from view + key (so even a collection emptied by hand gets the same
/// ids back) and `now`.
///
/// Ids stay unique even if the current data shares one id between two deals
/// (an old upload bug would otherwise make every refresh fail on the unique
/// index): the second deal gets its derived id.
#[derive(Debug)]
pub struct Identities<'a> {
    view_id: &'a str,
    existing: &'a Existing,
    now: BsonDateTime,
    used_ids: HashSet<RecordId>,
    changes: Changes,
}

impl<'a> Identities<'a> {
    pub fn new(view_id: &'a str, existing: &'a Existing, now: BsonDateTime) -> Self {
        Identities {
            view_id,
            existing,
            now,
            // A refresh mostly keeps the records it replaces; sizing the set
            // for them spares it the doubling steps (see `load_existing`).
            used_ids: HashSet::with_capacity(existing.by_key.len()),
            changes: Changes::default(),
        }
    }

    /// The stored document for `record`.
    pub fn assign(&mut self, record: MappedRecord) -> Document {
        let known = self.existing.by_key.get(&record.key);
        let mut id = known.map_or_else(
            || RecordId::Uuid(stable_uuid(self.view_id, &record.key)),
            |known| known.id.clone(),
        );
        if !self.used_ids.insert(id.clone()) {
            id = unused_id(self.view_id, &record.key, &mut self.used_ids);
        }
        let created_at = known.and_then(|known| known.created_at).unwrap_or(self.now);
        let mut document = Document::new();
        document.insert("id", id.to_text());
        document.extend(record.fields);
        document.insert("created_at", created_at);
        match known {
            None => self.changes.inserted += 1,
            Some(known) if known.digest == digest(&document) => self.changes.unchanged += 1,
            Some(_) => self.changes.updated += 1,
        }
        document
    }

    /// The changes of every record assigned so far, against all the old data.
    pub fn changes(&self) -> Changes {
        let kept = self.changes.updated + self.changes.unchanged;
        Changes {
            removed: usize::try_from(self.existing.count)
                .unwrap_or(usize::MAX)
                .saturating_sub(kept),
            ..self.changes
        }
    }
}

/// The derived id, or if even that is taken, a random one.
fn unused_id(view_id: &str, key: &str, used_ids: &mut HashSet<RecordId>) -> RecordId {
    let derived = RecordId::Uuid(stable_uuid(view_id, key));
    let id = if used_ids.contains(&derived) {
        RecordId::Uuid(Uuid::new_v4())
    } else {
        derived
    };
    used_ids.insert(id.clone());
    id
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The deal id of a record that has none yet.
pub fn stable_id(view_id: &str, key: &str) -> String {
    stable_uuid(view_id, key).to_string()
}

fn stable_uuid(view_id: &str, key: &str) -> Uuid {
    Uuid::new_v5(&RECORD_ID_NAMESPACE, format!("{view_id}\u{1f}{key}").as_bytes())
}

/// Refuses a refresh that would wipe or drastically shrink a view's data,
/// which is far more often a broken export than a real change.
pub fn check_shrink(
    collection: &str,
    existing: u64,
    new: usize,
    min_ratio: f64,
    force: bool,
) -> Result<(), ApplyError> {
    if force || existing == 0 {
        return Ok(());
    }
    let why = if new == 0 {
        "the source yielded no records".to_owned()
    } else if (new as f64) < min_ratio * existing as f64 {
        format!("that is below sync.min_ratio = {min_ratio} of the current data")
    } else {
        return Ok(());
    };
    Err(ApplyError::Shrink {
        collection: collection.to_owned(),
        existing,
        new,
        why,
    })
}

/// Drops staging collections a crashed or killed run left for `target`:
/// those older than [`STALE_STAGING_AFTER`], or without a readable time.
pub async fn drop_leftover_staging(db: &Database, target: &str) -> Result<Vec<String>, StoreError> {
    let prefix = format!("{STAGING_PREFIX}{target}.");
    let names = db
        .list_collection_names()
        .await
        .doing(|| format!("listing collections to clean up staging for `{target}`"))?;
    let now = unix_seconds();
    let stale = |name: &str| {
        let created = name[prefix.len()..]
            .split('.')
            .next()
            .and_then(|secs| secs.parse::<u64>().ok());
        created.is_none_or(|created| now.saturating_sub(created) > STALE_STAGING_AFTER.as_secs())
    };
    let mut dropped = Vec::new();
    for name in names
        .into_iter()
        .filter(|name| name.starts_with(&prefix) && stale(name))
    {
        db.collection::<Document>(&name)
            .drop()
            .await
            .doing(|| format!("dropping leftover staging collection `{name}`"))?;
        dropped.push(name);
    }
    Ok(dropped)
}

/// A staging collection being filled, to be swapped in as the target or
/// abandoned. Records are written in batches as they come, so a large refresh
/// never holds more than one batch in memory.
#[derive(Debug)]
pub struct Staging {
    db: Database,
    target: String,
    collection: Collection<Document>,
    batch: Vec<Document>,
    batch_size: usize,
    written: usize,
    /// Built once the records are in: one bulk build per index is several
    /// times faster than keeping seven indexes up to date insert by insert.
    index_specs: &'static [IndexSpec],
}

impl Staging {
    /// Creates `_sheetsync_staging.<target>.<unix seconds>.<run id>`; the
    /// target's indexes are built at the swap, once the records are in.
    pub async fn create(
        db: &Database,
        target: &str,
        profile: &TargetProfile,
        run_id: &str,
        batch_size: usize,
    ) -> Result<Staging, ApplyError> {
        let name = format!("{STAGING_PREFIX}{target}.{}.{run_id}", unix_seconds());
        db.create_collection(&name)
            .await
            .doing(|| format!("creating staging collection `{name}`"))?;
        let staging = Staging {
            db: db.clone(),
            target: target.to_owned(),
            collection: db.collection(&name),
            batch: Vec::with_capacity(batch_size),
            batch_size: batch_size.max(1),
            written: 0,
            index_specs: profile.indexes,
        };
        Ok(staging)
    }

    pub async fn push(&mut self, document: Document) -> Result<(), ApplyError> {
        self.batch.push(document);
        if self.batch.len() >= self.batch_size {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the records still batched.
    pub async fn flush(&mut self) -> Result<(), ApplyError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.collection
            .insert_many(&self.batch)
            .ordered(false)
            .await
            .doing(|| format!("writing records to staging collection `{}`", self.collection.name()))?;
        self.written += self.batch.len();
        self.batch.clear();
        Ok(())
    }

    /// Checks that every record arrived, then renames the staging collection
    /// over the target in one server-side step (`dropTarget`): readers see the
    /// old collection or the new one, never a mix.
    pub async fn swap_in(&mut self) -> Result<(), ApplyError> {
        self.flush().await?;
        let staging = self.collection.name().to_owned();
        indexes::create(&self.db, &staging, self.index_specs).await?;
        let found = self
            .collection
            .count_documents(doc! {})
            .await
            .doing(|| format!("counting staging collection `{staging}`"))?;
        if found != self.written as u64 {
            return Err(ApplyError::StagingMismatch {
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
            .await
            .doing(|| format!("listing the indexes of staging collection `{staging}`"))?;
        // The profile's indexes and `_id`'s.
        let expected = self.index_specs.len() + 1;
        if indexes.len() < expected {
            return Err(ApplyError::StagingIndexes {
                staging,
                expected,
                found: indexes.len(),
            });
        }
        let namespace = |name: &str| format!("{}.{name}", self.db.name());
        self.db
            .client()
            .database("admin")
            .run_command(doc! {
                "renameCollection": namespace(&staging),
                "to": namespace(&self.target),
                "dropTarget": true,
            })
            .await
            .doing(|| format!("swapping `{staging}` in as `{}` (renameCollection)", self.target))?;
        Ok(())
    }

    /// Drops the staging collection; the target is as it was. Best effort:
    /// the next run drops what is left.
    pub async fn abandon(self) {
        if let Err(error) = self.collection.drop().await {
            let staging = self.collection.name();
            tracing::warn!(%staging, %error, "could not drop the staging collection; the next run will");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::sales::SALES_RECORDS;

    fn record(client: &str, stage: &str) -> MappedRecord {
        let fields = doc! { "client": client, "stage": stage };
        MappedRecord {
            row: 1,
            key: record_key(&SALES_RECORDS, &fields),
            fields,
        }
    }

    fn existing(documents: &[Document]) -> Existing {
        let mut existing = Existing::default();
        for document in documents {
            existing.add(&SALES_RECORDS, document);
        }
        existing
    }

    #[test]
    fn a_shared_id_in_old_data_does_not_break_uniqueness() {
        let old = existing(&[
            doc! { "id": "same", "client": "Acme", "stage": "Lost" },
            doc! { "id": "same", "client": "Globex", "stage": "Lost" },
        ]);
        let mut identities = Identities::new("v", &old, BsonDateTime::now());
        let first = identities.assign(record("Acme", "Lost"));
        let second = identities.assign(record("Globex", "Lost"));
        assert_eq!(first.get_str("id"), Ok("same"));
        assert_eq!(
            second.get_str("id").unwrap(),
            stable_id("v", &record("Globex", "Lost").key)
        );
    }

    #[test]
    fn ids_are_written_back_exactly_as_they_were_stored() {
        let canonical = "0b6f1f5e-8a3d-4c2b-9e1f-2a3b4c5d6e7f";
        assert_eq!(
            RecordId::parse(canonical),
            RecordId::Uuid(Uuid::parse_str(canonical).unwrap())
        );
        let written_elsewhere = [
            "0B6F1F5E-8A3D-4C2B-9E1F-2A3B4C5D6E7F",
            "0b6f1f5e8a3d4c2b9e1f2a3b4c5d6e7f",
            "{0b6f1f5e-8a3d-4c2b-9e1f-2a3b4c5d6e7f}",
            "deal-42",
            "",
        ];
        for id in written_elsewhere {
            assert!(matches!(RecordId::parse(id), RecordId::Text(_)), "{id:?}");
        }
        for (n, id) in [canonical].into_iter().chain(written_elsewhere).enumerate() {
            let client = format!("Client {n}");
            let old = existing(&[doc! { "id": id, "client": &client, "stage": "Lost" }]);
            let document = Identities::new("v", &old, BsonDateTime::now()).assign(record(&client, "Lost"));
            assert_eq!(document.get_str("id"), Ok(id));
        }
    }

    #[test]
    fn changes_are_counted_against_the_old_data() {
        let now = BsonDateTime::now();
        let old = existing(&[
            doc! { "id": "a", "client": "Acme", "stage": "Lost", "created_at": now },
            doc! { "id": "b", "client": "Beta", "stage": "Lost", "owner": "Ann", "created_at": now },
            doc! { "id": "c", "client": "Gone", "stage": "Lost" },
        ]);
        let mut beta = record("Beta", "Lost");
        beta.fields.insert("owner", "Bob");
        let mut identities = Identities::new("v", &old, now);
        for record in [record("Acme", "Lost"), beta, record("New", "Lost")] {
            identities.assign(record);
        }
        assert_eq!(
            identities.changes(),
            Changes {
                inserted: 1,
                updated: 1,
                removed: 1,
                unchanged: 1
            }
        );
    }

    #[test]
    fn shrink_guard_thresholds() {
        assert!(
            check_shrink("c", 0, 0, 0.5, false).is_ok(),
            "an empty collection may stay empty"
        );
        assert!(
            check_shrink("c", 10, 5, 0.5, false).is_ok(),
            "exactly the ratio is allowed"
        );
        assert!(check_shrink("c", 10, 4, 0.5, false).is_err());
        assert!(
            check_shrink("c", 10, 0, 0.0, false).is_err(),
            "empty is refused even with ratio 0"
        );
        assert!(check_shrink("c", 10, 0, 0.5, true).is_ok(), "--force");
    }
}
