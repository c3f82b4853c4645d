//! Which stored record each new record continues.
//!
//! A refresh rebuilds a view's collection from its sheet, but a deal's `id`
//! and `created_at` must outlive it: the dashboard's preferences and
//! `asher_pov` store deal ids. A new record continues an old one, in this
//! order:
//!
//! 1. the same identity link (the HubSpot deal), even if its client was
//!    respelt or its stage moved;
//! 2. the same key (client + stage);
//! 3. a stage move: when a client has exactly one old record and one new
//!    record left unmatched by the rules above, the new one continues the old
//!    one. With several on either side nothing is guessed: they get fresh ids
//!    and the report names the client.
//!
//! A record that continues none gets a UUID derived from view + key, so a row
//! deleted and added again gets its id back.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hasher};

use futures_util::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{Bson, DateTime as BsonDateTime, Document, doc};
use uuid::Uuid;

use crate::apply::guards::FillCounts;
use crate::mapping::profile::{FieldKind, TargetProfile};
use crate::mapping::values::links::{LinkRef, link_ref};
use crate::mapping::{KEY_SEPARATOR, KeyMap, MappedRecord, RecordFields, Winner, filled_bits, record_key};
use crate::store::{Operation, READ_BATCH, StoreError, Within};

/// Namespace of the v5 UUIDs given to new records (random, fixed forever: a
/// different namespace would change every deal id).
const RECORD_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5b1f_0a3c_7d2e_4f61_9a8b_3c4d_5e6f_7081);

use crate::report::Changes;

/// What a refresh needs to know of a record already in the collection: its
/// identity, and a digest of its content to tell whether it changed. The
/// document itself is not kept, so memory grows with the number of records,
/// not with their size.
#[derive(Debug)]
struct StoredRecord {
    /// `None` when an earlier record already holds the same id (an old
    /// upload bug): this one gets a fresh id, so ids stay unique.
    id: Option<RecordId>,
    /// Its `created_at` in milliseconds, [`NO_CREATED_AT`] when it has
    /// none: 8 bytes where an `Option` takes 16 (see [`Self::created_at`]).
    created_at_millis: i64,
    digest: u64,
    /// See [`link_ref`].
    link: Option<LinkRef>,
    /// Which profile fields it fills, one bit each (see `Winner::filled`).
    filled: u128,
}

/// `StoredRecord::created_at_millis` of a record without `created_at` (the
/// date it stands for, 292 million years BC, is no one's).
const NO_CREATED_AT: i64 = i64::MIN;

// One per stored record of large views: the memory budget counts on it.
const _: () = assert!(std::mem::size_of::<StoredRecord>() == 64);

impl StoredRecord {
    fn created_at(&self) -> Option<BsonDateTime> {
        (self.created_at_millis != NO_CREATED_AT).then(|| BsonDateTime::from_millis(self.created_at_millis))
    }
}

/// A deal id as held in memory. Almost every id is a UUID in its canonical
/// text form (sheetsync made it, or the dashboard did), so it is kept as its
/// 16 bytes instead of a 36-byte heap string: with one per record, that is
/// what keeps half a million records within the memory budget. Anything else
/// is kept as text.
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
pub struct StoredRecords {
    by_key: KeyMap<StoredRecord>,
    /// Every id in the collection: a fresh id must be none of them.
    ids: HashSet<RecordId, foldhash::fast::RandomState>,
    /// Every document in the collection, keyed or not.
    pub count: u64,
}

impl StoredRecords {
    /// Whether every stored document has an id of its own, as text: then a
    /// change set can be written in place, document by document, by `id`.
    pub fn all_have_own_ids(&self) -> bool {
        self.ids.len() as u64 == self.count
    }

    /// Every stored id, as text.
    pub fn id_texts(&self) -> impl Iterator<Item = String> + '_ {
        self.ids.iter().map(RecordId::to_text)
    }

    /// Over the pairs of a new record and the stored record it continues:
    /// how many pairs, and per profile field how many stored and how many
    /// new records of them hold a value. What the column guard weighs: rows
    /// added or deleted do not count as a column emptied.
    pub fn paired_fill(&self, continuations: &Continuations, winners: &KeyMap<Winner>, fields: usize) -> FillCounts {
        let mut counts = FillCounts::new(fields);
        for (key, winner) in winners {
            let old_key = continuations.old_key(key);
            let continued = old_key != key || continuations.continues_own_key(key);
            let Some(stored) = self.by_key.get(old_key).filter(|_| continued) else {
                continue;
            };
            counts.add(stored.filled, winner.filled);
        }
        counts
    }

    /// The stored values of `fields`, by record key: what a run that keeps a
    /// lost column's values carries over (`on_lost_column = "keep"`).
    pub async fn load_values(
        collection: &Collection<Document>,
        profile: &TargetProfile,
        fields: &[String],
    ) -> Result<KeyMap<Document>, StoreError> {
        let describe = || format!("reading the kept fields {fields:?} of `{}`", collection.name());
        let mut projection = doc! { "_id": 0 };
        for field in profile.key.iter().chain(fields) {
            projection.insert(field.clone(), 1);
        }
        let mut cursor = collection
            .find(doc! {})
            .projection(projection)
            .batch_size(READ_BATCH)
            .within(Operation::Read, describe)
            .await?;
        let mut values = KeyMap::default();
        while let Some(document) = cursor.try_next().within(Operation::Read, describe).await? {
            let key = record_key(profile, &document);
            let kept: Document = fields
                .iter()
                .filter_map(|field| Some((field.clone(), document.get(field)?.clone())))
                .collect();
            values.entry(key).or_insert(kept);
        }
        Ok(values)
    }

    /// Reads the records a refresh will replace, to carry their ids and
    /// `created_at` over and to count changes.
    pub async fn load(collection: &Collection<Document>, profile: &TargetProfile) -> Result<StoredRecords, StoreError> {
        let describe = || format!("reading the current records of `{}`", collection.name());
        let mut existing = StoredRecords::default();
        // Sized once from the collection's metadata: growing the maps by
        // doubling would briefly hold the old table next to the new one, the
        // largest moment of a re-load's memory. (A failed estimate only costs
        // that.)
        if let Ok(estimate) = collection
            .estimated_document_count()
            .within(Operation::Read, describe)
            .await
        {
            let estimate = usize::try_from(estimate).unwrap_or(0);
            existing.by_key.reserve(estimate);
            existing.ids.reserve(estimate);
        }
        let mut cursor = collection
            .find(doc! {})
            .projection(doc! { "_id": 0 })
            .batch_size(READ_BATCH)
            .within(Operation::Read, describe)
            .await?;
        while let Some(document) = cursor.try_next().within(Operation::Read, describe).await? {
            existing.add(profile, &document);
        }
        Ok(existing)
    }

    /// Whether `record` continues the old record of its own key and would be
    /// stored exactly as that record is; `None` when it continues another
    /// record or none (only [`Identities::account`] can tell then). Reads
    /// nothing a pass changes, so a pass works it out on its worker threads.
    pub fn is_unchanged(
        &self,
        continuations: &Continuations,
        record: &impl RecordFields,
        now: BsonDateTime,
    ) -> Option<bool> {
        let key = record.key();
        if continuations.old_key(key) != key || !continuations.continues_own_key(key) {
            return None;
        }
        let known = self.by_key.get(key)?;
        // Without an id of its own the record gets a fresh one: changed.
        let Some(id) = &known.id else {
            return Some(false);
        };
        let created_at = known.created_at().unwrap_or(now);
        Some(known.digest == stored_digest(&id.to_text(), record, created_at))
    }

    /// Counts one stored document and, when it has an id, remembers it under
    /// its key (the first of several sharing a key wins).
    fn add(&mut self, profile: &TargetProfile, document: &Document) {
        self.count += 1;
        let filled = filled_bits(
            profile
                .fields
                .iter()
                .map(|field| document.get(&field.name).is_some_and(|value| *value != Bson::Null)),
        );
        let Ok(id) = document.get_str("id") else {
            return;
        };
        let id = RecordId::parse(id);
        let unique = self.ids.insert(id.clone());
        let link = profile
            .identity_link
            .as_deref()
            .and_then(|field| document.get_str(field).ok())
            .and_then(link_ref);
        self.by_key
            .entry(record_key(profile, document))
            .or_insert_with(|| StoredRecord {
                id: unique.then_some(id),
                created_at_millis: document
                    .get_datetime("created_at")
                    .map_or(NO_CREATED_AT, |at| at.timestamp_millis()),
                digest: digest(document.iter().map(|(name, value)| (name.as_str(), value))),
                link,
                filled,
            });
    }
}

/// A 64-bit digest of a document's fields, names and values in order, as
/// the stored document and the record about to replace it both have them.
/// Field order counts, which only makes a record written by another tool in
/// another order count as updated. (A collision, about 1 in 2^64 per record,
/// would leave one changed record unwritten until its next change.)
///
/// Values are walked, not encoded: a dry run and an unchanged refresh
/// compare every record without building or encoding its document.
fn digest<'a>(fields: impl Iterator<Item = (&'a str, &'a Bson)>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for (name, value) in fields {
        hasher.write(name.as_bytes());
        hasher.write_u8(0xff);
        hash_value(&mut hasher, value);
    }
    hasher.finish()
}

/// The digest of the document [`Identities::assign`] makes of `record`.
fn stored_digest(id: &str, record: &impl RecordFields, created_at: BsonDateTime) -> u64 {
    let (id, created_at) = (Bson::String(id.to_owned()), Bson::DateTime(created_at));
    let fields = record.fields();
    digest(
        std::iter::once(("id", &id))
            .chain(fields)
            .chain(std::iter::once(("created_at", &created_at))),
    )
}

/// Feeds a value to the digest: its BSON type, then its content.
fn hash_value(hasher: &mut DefaultHasher, value: &Bson) {
    hasher.write_u8(value.element_type() as u8);
    match value {
        Bson::Double(number) => hasher.write_u64(number.to_bits()),
        Bson::String(text) | Bson::Symbol(text) | Bson::JavaScriptCode(text) => {
            hasher.write_usize(text.len());
            hasher.write(text.as_bytes());
        }
        Bson::Array(items) => {
            hasher.write_usize(items.len());
            for item in items {
                hash_value(hasher, item);
            }
        }
        Bson::Document(document) => {
            hasher.write_usize(document.len());
            hasher.write_u64(digest(document.iter().map(|(name, value)| (name.as_str(), value))));
        }
        Bson::Boolean(flag) => hasher.write_u8(u8::from(*flag)),
        Bson::Int32(number) => hasher.write_i32(*number),
        Bson::Int64(number) => hasher.write_i64(*number),
        Bson::DateTime(moment) => hasher.write_i64(moment.timestamp_millis()),
        Bson::Null | Bson::Undefined | Bson::MaxKey | Bson::MinKey => {}
        // Types no mapping produces: their extended JSON tells them apart.
        other => hasher.write(other.clone().into_relaxed_extjson().to_string().as_bytes()),
    }
}

/// The old record each new key continues when that is not simply the old
/// record with the same key (rules 1 and 3 of the module's doc), and the
/// clients whose moves were too ambiguous to decide. Only exceptions are
/// held, so memory grows with the records that moved, not with the sheet.
#[derive(Debug, Default)]
pub struct Continuations {
    /// New key -> the old key it continues.
    renamed: KeyMap<String>,
    /// Old keys continued under another key, so no longer their own key's.
    claimed: HashSet<String, foldhash::fast::RandomState>,
    /// Groups (the key without its last field: the client) with unmatched
    /// records on both sides that do not pair one to one, and their counts.
    ambiguous: HashMap<String, (usize, usize)>,
}

impl Continuations {
    /// Decides which old record each of the plan's winners continues.
    pub fn find(existing: &StoredRecords, winners: &KeyMap<Winner>, profile: &TargetProfile) -> Continuations {
        let mut continuations = Continuations::default();
        continuations.match_links(existing, winners);
        if profile.key.len() >= 2 {
            continuations.match_moves(existing, winners);
        }
        continuations
    }

    /// Rule 1: a link that names one old record and one new record.
    fn match_links(&mut self, existing: &StoredRecords, winners: &KeyMap<Winner>) {
        let old = unique_links(existing.by_key.iter().map(|(key, known)| (key, known.link)));
        if old.is_empty() {
            return;
        }
        let new = unique_links(winners.iter().map(|(key, winner)| (key, winner.link)));
        for (link, new_key) in new {
            let (Some(new_key), Some(Some(old_key))) = (new_key, old.get(&link)) else {
                continue;
            };
            if new_key != *old_key {
                self.renamed.insert(new_key.clone(), (*old_key).clone());
                self.claimed.insert((*old_key).clone());
            }
        }
    }

    /// Rule 3: per group, one unmatched old record and one unmatched new one.
    fn match_moves(&mut self, existing: &StoredRecords, winners: &KeyMap<Winner>) {
        let mut old_left: HashMap<&str, Vec<&String>, foldhash::fast::RandomState> = HashMap::default();
        for key in existing.by_key.keys() {
            let matched = self.claimed.contains(key) || (winners.contains_key(key) && !self.renamed.contains_key(key));
            if let (false, Some(group)) = (matched, group_of(key)) {
                old_left.entry(group).or_default().push(key);
            }
        }
        // Only groups with an old record left can pair: the others' new
        // records (every record of a first load) are not collected.
        if old_left.is_empty() {
            return;
        }
        let mut new_left: HashMap<&str, Vec<&String>, foldhash::fast::RandomState> = HashMap::default();
        for key in winners.keys() {
            let Some(group) = group_of(key).filter(|group| old_left.contains_key(group)) else {
                continue;
            };
            let matched =
                self.renamed.contains_key(key) || (existing.by_key.contains_key(key) && !self.claimed.contains(key));
            if !matched {
                new_left.entry(group).or_default().push(key);
            }
        }
        for (group, olds) in old_left {
            let Some(news) = new_left.get(group) else {
                continue;
            };
            match (olds.as_slice(), news.as_slice()) {
                ([old], [new]) if !different_deals(existing, winners, old, new) => {
                    self.renamed.insert((*new).clone(), (*old).clone());
                    self.claimed.insert((*old).clone());
                }
                // Two links that name two deals: a new deal, not a move.
                ([_], [_]) => {}
                _ => {
                    self.ambiguous.insert(group.to_owned(), (olds.len(), news.len()));
                }
            }
        }
    }

    /// The key of the old record `new_key` continues, if any old record
    /// has it.
    fn old_key<'a>(&'a self, new_key: &'a str) -> &'a str {
        self.renamed.get(new_key).map_or(new_key, String::as_str)
    }

    fn continues_own_key(&self, new_key: &str) -> bool {
        !self.renamed.contains_key(new_key) && !self.claimed.contains(new_key)
    }
}

/// Whether both records have a link and the links name different objects.
fn different_deals(existing: &StoredRecords, winners: &KeyMap<Winner>, old: &str, new: &str) -> bool {
    let old = existing.by_key.get(old).and_then(|known| known.link);
    let new = winners.get(new).and_then(|winner| winner.link);
    matches!((old, new), (Some(old), Some(new)) if old != new)
}

/// Each link named by exactly one key; `None` for links several share.
fn unique_links<'a>(
    entries: impl Iterator<Item = (&'a String, Option<LinkRef>)>,
) -> HashMap<LinkRef, Option<&'a String>, foldhash::fast::RandomState> {
    let mut links: HashMap<LinkRef, Option<&String>, foldhash::fast::RandomState> = HashMap::default();
    for (key, link) in entries {
        if let Some(link) = link {
            links.entry(link).and_modify(|owner| *owner = None).or_insert(Some(key));
        }
    }
    links
}

/// A key without its last field: the client of a client + stage key.
fn group_of(key: &str) -> Option<&str> {
    key.rsplit_once(KEY_SEPARATOR).map(|(group, _)| group)
}

/// Gives records their identity, one at a time, and counts what changes:
/// each record keeps the id and `created_at` of the old record it continues,
/// or gets a UUID derived from view + key (or, if another record holds that
/// one, a random UUID) and `now`.
#[derive(Debug)]
pub struct Identities<'a> {
    view_id: &'a str,
    profile: &'a TargetProfile,
    existing: &'a StoredRecords,
    continuations: &'a Continuations,
    now: BsonDateTime,
    /// Ids given to records that continue none, beyond the old ones.
    fresh_ids: HashSet<RecordId, foldhash::fast::RandomState>,
    changes: Changes,
    moves: Vec<String>,
    /// Display names of the ambiguous groups met so far.
    ambiguous_names: HashMap<String, String>,
    /// Fields whose stored values a record without one carries over, and
    /// those values by stored key (`on_lost_column = "keep"`).
    kept: Option<(&'a [String], &'a KeyMap<Document>)>,
}

impl<'a> Identities<'a> {
    pub fn new(
        view_id: &'a str,
        profile: &'a TargetProfile,
        existing: &'a StoredRecords,
        continuations: &'a Continuations,
        now: BsonDateTime,
    ) -> Self {
        Identities {
            view_id,
            profile,
            existing,
            continuations,
            now,
            fresh_ids: HashSet::default(),
            changes: Changes::default(),
            moves: Vec::new(),
            ambiguous_names: HashMap::new(),
            kept: None,
        }
    }

    /// Carries the stored values of `fields` into records that have none.
    pub fn keep_values(&mut self, fields: &'a [String], values: &'a KeyMap<Document>) {
        self.kept = Some((fields, values));
    }

    /// The stored document for `record`.
    pub fn assign(&mut self, record: MappedRecord) -> Document {
        let (id, created_at) = self.account(&record);
        let mut document = Document::new();
        document.insert("id", id);
        // Only from the stored record this one continues, as `account` found.
        let old_key = self.continuations.old_key(&record.key);
        let continued = old_key != record.key || self.continuations.continues_own_key(&record.key);
        let stored = self
            .kept
            .filter(|_| continued)
            .and_then(|(_, values)| values.get(old_key));
        document.extend(record.fields);
        if let (Some((fields, _)), Some(stored)) = (self.kept, stored) {
            for field in fields {
                let blank = document.get(field).is_none_or(|value| *value == Bson::Null);
                if let (true, Some(value)) = (blank, stored.get(field)) {
                    document.insert(field.clone(), value.clone());
                }
            }
        }
        document.insert("created_at", created_at);
        document
    }

    /// Gives `record` its id and `created_at` and counts its change, without
    /// building its document: all a dry run or the comparison pass needs.
    pub fn account(&mut self, record: &impl RecordFields) -> (String, BsonDateTime) {
        self.account_checked(record, None)
    }

    /// [`Identities::account`], with what [`StoredRecords::is_unchanged`] already
    /// found for the record (on another thread).
    pub fn account_checked(&mut self, record: &impl RecordFields, unchanged: Option<bool>) -> (String, BsonDateTime) {
        let key = record.key();
        let old_key = self.continuations.old_key(key);
        let known = self
            .existing
            .by_key
            .get(old_key)
            .filter(|_| old_key != key || self.continuations.continues_own_key(key));
        let id = match known.and_then(|known| known.id.clone()) {
            Some(id) => id,
            None => self.fresh_id(key),
        };
        let id = id.to_text();
        let created_at = known.and_then(StoredRecord::created_at).unwrap_or(self.now);
        let moved_from = (known.is_some() && old_key != key).then(|| old_key.to_owned());
        let kept_id = known.is_some_and(|known| known.id.is_some());
        if known.is_none() {
            self.note_ambiguity(record);
        }
        match (known, moved_from) {
            (None, _) => self.changes.inserted += 1,
            (Some(_), Some(from)) => {
                self.changes.moved += 1;
                let description = self.describe_move(&from, key, record, kept_id);
                self.moves.push(description);
            }
            // A record continuing its own key: one rule, `is_unchanged`, also
            // when the pass did not work it out beforehand.
            (Some(_), None)
                if unchanged.or_else(|| self.existing.is_unchanged(self.continuations, record, self.now))
                    == Some(true) =>
            {
                self.changes.unchanged += 1
            }
            (Some(_), None) => self.changes.updated += 1,
        }
        (id, created_at)
    }

    /// The derived id, or if another record holds it, a random one.
    fn fresh_id(&mut self, key: &str) -> RecordId {
        let mut id = RecordId::Uuid(stable_uuid(self.view_id, key));
        while self.existing.ids.contains(&id) || self.fresh_ids.contains(&id) {
            id = RecordId::Uuid(Uuid::new_v4());
        }
        self.fresh_ids.insert(id.clone());
        id
    }

    fn note_ambiguity(&mut self, record: &impl RecordFields) {
        let Some(group) = group_of(record.key()) else {
            return;
        };
        if self.continuations.ambiguous.contains_key(group) && !self.ambiguous_names.contains_key(group) {
            let name = self.display_group(record);
            self.ambiguous_names.insert(group.to_owned(), name);
        }
    }

    /// `Globex: D POA Booked -> C Proposal sent, id kept`.
    fn describe_move(&self, from: &str, to: &str, record: &impl RecordFields, kept_id: bool) -> String {
        // An old record whose id another record also held keeps its
        // created_at but gets a fresh id (see `StoredRecord::id`).
        let id = if kept_id {
            "id kept"
        } else {
            "new id (the old one was shared)"
        };
        let stage = |key: &str| {
            let folded = key.rsplit(KEY_SEPARATOR).next().unwrap_or(key);
            self.display_last_key_part(folded)
        };
        let name = self.display_group(record);
        if group_of(from) == group_of(to) {
            format!("{name}: {} -> {}, {id}", stage(from), stage(to))
        } else {
            let old_name = group_of(from).unwrap_or(from);
            format!(
                "{old_name} ({}) -> {name} ({}), same {}, {id}",
                stage(from),
                stage(to),
                self.profile.identity_link.as_deref().unwrap_or("link")
            )
        }
    }

    /// The key fields but the last, as the record spells them.
    fn display_group(&self, record: &impl RecordFields) -> String {
        let parts = &self.profile.key[..self.profile.key.len().saturating_sub(1)];
        parts
            .iter()
            .map(|field| record.text(field).unwrap_or_default().trim().to_owned())
            .collect::<Vec<_>>()
            .join(" / ")
    }

    /// The key's last field as the schema spells it (an enum's canonical
    /// value), from its folded form.
    fn display_last_key_part(&self, folded: &str) -> String {
        let last = self.profile.key.last().and_then(|name| self.profile.field(name));
        match last.map(|field| &field.kind) {
            Some(FieldKind::Enum(spec)) => spec.canonical(folded).unwrap_or(folded).to_owned(),
            _ => folded.to_owned(),
        }
    }

    /// The changes of every record assigned so far, against all the old data.
    pub fn changes(&self) -> Changes {
        let kept = self.changes.updated + self.changes.unchanged + self.changes.moved;
        Changes {
            removed: usize::try_from(self.existing.count)
                .unwrap_or(usize::MAX)
                .saturating_sub(kept),
            ..self.changes
        }
    }

    /// Each record that continues an old one under another key.
    pub fn moves(&self) -> Vec<String> {
        self.moves.clone()
    }

    /// Each group whose unmatched records could not be paired.
    pub fn ambiguous(&self) -> Vec<String> {
        let mut described: Vec<String> = self
            .continuations
            .ambiguous
            .iter()
            .map(|(group, (old, new))| {
                let name = self.ambiguous_names.get(group).map_or(group.as_str(), String::as_str);
                format!(
                    "{name}: {old} old and {new} new record(s) left unmatched; which continues which is not \
                     guessed, so the new ones got fresh ids"
                )
            })
            .collect();
        described.sort();
        described
    }
}

/// The deal id of a record that has none yet.
pub fn stable_id(view_id: &str, key: &str) -> String {
    stable_uuid(view_id, key).to_string()
}

fn stable_uuid(view_id: &str, key: &str) -> Uuid {
    Uuid::new_v5(
        &RECORD_ID_NAMESPACE,
        format!("{view_id}{KEY_SEPARATOR}{key}").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::sales::SALES_RECORDS;

    fn record(client: &str, stage: &str) -> MappedRecord {
        record_with(client, stage, None)
    }

    fn record_with(client: &str, stage: &str, link: Option<&str>) -> MappedRecord {
        let mut fields = doc! { "client": client, "stage": stage };
        if let Some(link) = link {
            fields.insert("hubspot_link", link);
        }
        MappedRecord {
            row: 1,
            key: record_key(&SALES_RECORDS, &fields),
            fields,
            unreadable: Vec::new(),
        }
    }

    fn existing(documents: &[Document]) -> StoredRecords {
        let mut existing = StoredRecords::default();
        for document in documents {
            existing.add(&SALES_RECORDS, document);
        }
        existing
    }

    /// Assigns `records` against `old` as a sync does; the documents, and
    /// the identities for the report.
    fn assign_all(
        old: &StoredRecords,
        records: Vec<MappedRecord>,
    ) -> (Vec<Document>, Changes, Vec<String>, Vec<String>) {
        let winners = records
            .iter()
            .enumerate()
            .map(|(row, record)| {
                let link = record.fields.get_str("hubspot_link").ok().and_then(link_ref);
                (record.key.clone(), Winner { row, link, filled: 0 })
            })
            .collect();
        let continuations = Continuations::find(old, &winners, &SALES_RECORDS);
        let mut identities = Identities::new("v", &SALES_RECORDS, old, &continuations, BsonDateTime::now());
        let documents = records.into_iter().map(|record| identities.assign(record)).collect();
        (
            documents,
            identities.changes(),
            identities.moves(),
            identities.ambiguous(),
        )
    }

    fn ids(documents: &[Document]) -> Vec<&str> {
        documents
            .iter()
            .map(|document| document.get_str("id").unwrap())
            .collect()
    }

    #[test]
    fn a_stage_move_keeps_id_and_created_at() {
        let then = BsonDateTime::from_millis(1_700_000_000_000);
        let old = existing(&[
            doc! { "id": "g", "client": "Globex", "stage": "D POA Booked", "created_at": then },
            doc! { "id": "a", "client": "Acme", "stage": "Lost", "created_at": then },
        ]);
        let (documents, changes, moves, ambiguous) =
            assign_all(&old, vec![record("Globex", "C Proposal sent"), record("Acme", "Lost")]);
        assert_eq!(ids(&documents), ["g", "a"]);
        assert_eq!(documents[0].get_datetime("created_at"), Ok(&then));
        assert_eq!(
            (
                changes.moved,
                changes.inserted,
                changes.removed,
                changes.updated,
                changes.unchanged
            ),
            (1, 0, 0, 0, 1)
        );
        assert_eq!(moves, ["Globex: D POA Booked -> C Proposal sent, id kept"]);
        assert_eq!(ambiguous, Vec::<String>::new());
    }

    #[test]
    fn the_same_deal_link_keeps_the_id_across_a_new_spelling_and_stage() {
        let old = existing(&[
            doc! { "id": "x", "client": "Acme Corp", "stage": "B Legals", "hubspot_link": "https://app.hubspot.com/deals/42" },
            doc! { "id": "y", "client": "Acme Corp", "stage": "Lost" },
        ]);
        let link = Some("https://app.hubspot.com/contacts/1/record/0-3/42");
        let (documents, changes, moves, _) = assign_all(
            &old,
            vec![
                record_with("ACME Corporation", "A Closed", link),
                record("Acme Corp", "Lost"),
            ],
        );
        assert_eq!(ids(&documents), ["x", "y"]);
        assert_eq!(changes.moved, 1);
        assert_eq!(
            moves,
            ["acme corp (B Legals) -> ACME Corporation (A Closed), same hubspot_link, id kept"]
        );
    }

    #[test]
    fn the_link_wins_over_the_key() {
        // The sheet's Acme/Lost row is deal 7, which was stored as Acme/B Legals;
        // the old Acme/Lost record (deal 9) is gone.
        let old = existing(&[
            doc! { "id": "legals", "client": "Acme", "stage": "B Legals", "hubspot_link": "https://app.hubspot.com/deals/7" },
            doc! { "id": "lost", "client": "Acme", "stage": "Lost", "hubspot_link": "https://app.hubspot.com/deals/9" },
        ]);
        let (documents, changes, _, _) = assign_all(
            &old,
            vec![record_with("Acme", "Lost", Some("https://app.hubspot.com/deals/7"))],
        );
        assert_eq!(ids(&documents), ["legals"]);
        assert_eq!((changes.moved, changes.removed), (1, 1));
    }

    #[test]
    fn two_different_deal_links_are_a_new_deal_not_a_move() {
        let old = existing(&[
            doc! { "id": "seven", "client": "Acme", "stage": "B Legals", "hubspot_link": "https://app.hubspot.com/deals/7" },
        ]);
        let (documents, changes, moves, _) = assign_all(
            &old,
            vec![record_with("Acme", "A Closed", Some("https://app.hubspot.com/deals/9"))],
        );
        assert_ne!(ids(&documents), ["seven"]);
        assert_eq!((changes.moved, changes.inserted, changes.removed), (0, 1, 1));
        assert_eq!(moves, Vec::<String>::new());
        // A placeholder is no link at all: the move rule applies.
        let old = existing(&[doc! { "id": "g", "client": "Globex", "stage": "F Inbox", "hubspot_link": "TBD" }]);
        let (documents, _, _, _) = assign_all(&old, vec![record_with("Umbrella", "F Inbox", Some("TBD"))]);
        assert_ne!(
            ids(&documents),
            ["g"],
            "a shared placeholder does not make two clients one deal"
        );
    }

    #[test]
    fn several_unmatched_records_of_a_client_are_not_guessed() {
        let old = existing(&[
            doc! { "id": "1", "client": "Globex", "stage": "D POA Booked" },
            doc! { "id": "2", "client": "Globex", "stage": "F Inbox" },
        ]);
        let (documents, changes, moves, ambiguous) = assign_all(
            &old,
            vec![record("Globex", "C Proposal sent"), record("Globex", "Lost")],
        );
        assert_eq!(
            ids(&documents),
            [
                stable_id("v", &record("Globex", "C Proposal sent").key),
                stable_id("v", &record("Globex", "Lost").key)
            ]
        );
        assert_eq!((changes.inserted, changes.removed, changes.moved), (2, 2, 0));
        assert_eq!(moves, Vec::<String>::new());
        assert_eq!(ambiguous.len(), 1);
        assert!(
            ambiguous[0].starts_with("Globex: 2 old and 2 new record(s)"),
            "{ambiguous:?}"
        );
    }

    #[test]
    fn a_moved_id_is_never_given_to_the_record_it_left() {
        // Globex moved from D to C in an earlier refresh, keeping D's derived
        // id; a new Globex/D row must not take that id from it.
        let derived_d = stable_id("v", &record("Globex", "D POA Booked").key);
        let old = existing(&[doc! { "id": &derived_d, "client": "Globex", "stage": "C Proposal sent" }]);
        let (documents, changes, _, _) = assign_all(
            &old,
            vec![record("Globex", "D POA Booked"), record("Globex", "C Proposal sent")],
        );
        assert_eq!(documents[1].get_str("id"), Ok(derived_d.as_str()));
        assert_ne!(documents[0].get_str("id"), Ok(derived_d.as_str()));
        assert_eq!((changes.inserted, changes.updated), (1, 1));
    }

    #[test]
    fn a_row_deleted_and_added_again_gets_its_derived_id_back() {
        let acme = record("Acme", "Lost");
        let (first, _, _, _) = assign_all(&existing(&[]), vec![acme.clone()]);
        let (again, changes, _, _) = assign_all(&existing(&[]), vec![acme]);
        assert_eq!(ids(&first), ids(&again));
        assert_eq!(changes.inserted, 1);
    }

    #[test]
    fn a_shared_id_in_old_data_does_not_break_uniqueness() {
        let old = existing(&[
            doc! { "id": "same", "client": "Acme", "stage": "Lost" },
            doc! { "id": "same", "client": "Globex", "stage": "Lost" },
        ]);
        let (documents, _, _, _) = assign_all(&old, vec![record("Acme", "Lost"), record("Globex", "Lost")]);
        assert_eq!(
            ids(&documents),
            ["same", stable_id("v", &record("Globex", "Lost").key).as_str()]
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
            let (documents, _, _, _) = assign_all(&old, vec![record(&client, "Lost")]);
            assert_eq!(documents[0].get_str("id"), Ok(id));
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
        let (_, changes, _, _) = assign_all(&old, vec![record("Acme", "Lost"), beta, record("New", "Lost")]);
        assert_eq!(
            changes,
            Changes {
                inserted: 1,
                updated: 1,
                removed: 1,
                moved: 0,
                unchanged: 1
            }
        );
    }
}
