//! The comparison of the source with the collection, before anything is
//! written: each winning row matched to a document by key, the fields that
//! differ queued as `$set`/`$unset`, new rows as inserts, and documents the
//! source no longer has listed (or queued for deletion).

use std::collections::HashMap;

use futures_util::TryStreamExt;
use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime as BsonDateTime, Document, RawBsonRef, RawDocumentBuf, doc};

use super::compare::DateText;
use super::fingerprint::Fingerprints;
use super::write::Write;
use crate::apply::guards::FillCounts;
use crate::mapping::profile::{Blank, DateStorage, FieldKind, MergeRules, OnMissing, Reference, TargetProfile};
use crate::mapping::{KeyMap, MappedRecord, RowIssue, Winner, filled_bits, record_key};
use crate::report::MergeSummary;
use crate::store::{Operation, READ_BATCH, StoreError, Within};

/// At most this many names of documents missing from the source are listed
/// in a report; the count is always exact.
const LISTED_MISSING: usize = 100;

/// A stored document, as much of it as the merge needs: where it is, where
/// its key's spelling is, which fields it fills. Its values' fingerprints
/// are in `Merge::prints_table`. A merge holds one per document of the
/// collection, so not the document itself, and as little as can be.
#[derive(Debug)]
pub(super) struct Stored {
    id: StoredId,
    /// Its key as the application spelled it: a range of `Merge::names`.
    name: (u32, u32),
    /// Which profile fields hold a value (the column guard weighs them),
    /// as two words: a `u128` would align the whole struct to 16 bytes.
    filled: [u64; 2],
    matched: bool,
}

/// A document's `_id`: an ObjectId in place (the usual case), else encoded
/// behind a pointer, so that the usual case stays 16 bytes.
#[derive(Debug)]
enum StoredId {
    Object(ObjectId),
    Other(Box<RawDocumentBuf>),
}

impl StoredId {
    fn of(value: Option<RawBsonRef<'_>>) -> StoredId {
        let mut encoded = RawDocumentBuf::new();
        match value {
            Some(RawBsonRef::ObjectId(id)) => return StoredId::Object(id),
            Some(value) => encoded.append("_id", value.to_raw_bson()),
            // Never in MongoDB; a filter must still name one document.
            None => encoded.append("_id", mongodb::bson::RawBson::Null),
        }
        StoredId::Other(Box::new(encoded))
    }

    /// The filter of the document's writes.
    fn filter(&self) -> Document {
        match self {
            StoredId::Object(id) => doc! { "_id": id },
            StoredId::Other(encoded) => {
                Document::try_from(RawDocumentBuf::clone(encoded)).unwrap_or_else(|_| doc! { "_id": Bson::Null })
            }
        }
    }
}

/// The documents a key matches: almost always one.
#[derive(Debug, Clone)]
enum Slot {
    One(u32),
    Several(Vec<u32>),
}

impl Slot {
    fn indexes(&self) -> &[u32] {
        match self {
            Slot::One(index) => std::slice::from_ref(index),
            Slot::Several(indexes) => indexes,
        }
    }
}

/// How many stored values of a date field are ISO texts, date-times among
/// them, and BSON dates: how the field is written back.
#[derive(Debug, Default, Clone, Copy)]
struct DateCounts {
    texts: usize,
    moments: usize,
    dates: usize,
}

/// Users (or any referenced collection) by e-mail and by exact name.
#[derive(Debug, Default)]
pub(super) struct Directory {
    by_email: HashMap<String, Vec<(String, String)>>,
    by_name: HashMap<String, Vec<(String, String)>>,
}

impl Directory {
    /// `Ok((id, name))` for exactly one match; else how many matched.
    fn resolve(&self, written: &str) -> Result<&(String, String), usize> {
        let written = written.trim();
        let found = self
            .by_email
            .get(&written.to_lowercase())
            .or_else(|| self.by_name.get(written))
            .map_or(&[][..], Vec::as_slice);
        match found {
            [one] => Ok(one),
            several => Err(several.len()),
        }
    }
}

/// The whole comparison of the source with the collection, before anything
/// is written.
#[derive(Debug)]
pub struct Merge<'p> {
    pub(super) profile: &'p TargetProfile,
    pub(super) rules: &'p MergeRules,
    pub(super) collection: String,
    pub(super) stored: Vec<Stored>,
    /// Documents by the hash of their key (`Fingerprints::key`): 8 bytes a
    /// key instead of its text.
    by_key: HashMap<u64, Slot, foldhash::fast::RandomState>,
    /// The fields compared: those the source has a column for, then the
    /// id fields of their references.
    compared: Vec<String>,
    prints: Fingerprints,
    /// `compared.len()` fingerprints per stored document, in order.
    prints_table: Vec<u64>,
    /// The stored keys' spellings, end to end.
    names: String,
    /// Per date field (and `updated_at`), how the stored values hold it.
    date_counts: HashMap<String, DateCounts>,
    /// Per profile field: its column's header, when the source has one.
    pub(super) columns: Vec<Option<String>>,
    pub(super) directories: HashMap<String, Directory>,
    /// Per profile field: whether dates are written as ISO strings.
    /// Per profile field: `None` for BSON dates, else the text form its
    /// stored values use.
    pub(super) date_texts: Vec<Option<DateText>>,
    pub(super) timestamps_as_text: Option<DateText>,
    pub(super) now: BsonDateTime,
    pub(super) writes: Vec<Write>,
    /// Writes held at most; beyond, they are dropped and worked out again
    /// while they are written (`overflowed`).
    held_max: usize,
    overflowed: bool,
    pub changes: crate::report::Changes,
    pub summary: MergeSummary,
    pub warnings: Vec<RowIssue>,
    pub notices: Vec<String>,
    /// Fields a blank cell does not clear (`on_lost_column = "keep"`).
    kept: Vec<String>,
}

impl<'p> Merge<'p> {
    /// Reads what the merge compares against: the collection's documents
    /// (the mapped fields only), streamed and kept as fingerprints, and
    /// every referenced collection. At most `held_max` writes are held.
    pub async fn load(
        db: &Database,
        collection: &str,
        profile: &'p TargetProfile,
        rules: &'p MergeRules,
        columns: Vec<Option<String>>,
        held_max: usize,
    ) -> Result<Merge<'p>, StoreError> {
        // Only what the source can change is compared.
        let mut compared: Vec<String> = profile
            .fields
            .iter()
            .zip(&columns)
            .filter(|(_, column)| column.is_some())
            .map(|(field, _)| field.name.clone())
            .collect();
        for reference in &rules.references {
            if compared.contains(&reference.field) && !compared.contains(&reference.id_field) {
                compared.push(reference.id_field.clone());
            }
        }
        // Every profile field is read: the column guard weighs which ones
        // the documents fill, compared or not.
        let mut projection = doc! { "_id": 1, "id": 1, "created_at": 1, "updated_at": 1 };
        for field in profile.fields.iter().map(|field| &field.name).chain(&compared) {
            projection.insert(field.clone(), 1);
        }
        let mut directories = HashMap::new();
        for reference in &rules.references {
            if !directories.contains_key(&reference.collection) {
                directories.insert(reference.collection.clone(), load_directory(db, reference).await?);
            }
        }
        let mut merge = Merge {
            profile,
            rules,
            collection: collection.to_owned(),
            stored: Vec::new(),
            by_key: HashMap::default(),
            compared,
            prints: Fingerprints::new(),
            prints_table: Vec::new(),
            names: String::new(),
            date_counts: HashMap::new(),
            columns,
            directories,
            date_texts: Vec::new(),
            timestamps_as_text: None,
            now: BsonDateTime::now(),
            writes: Vec::new(),
            held_max,
            overflowed: false,
            changes: crate::report::Changes::default(),
            summary: MergeSummary::default(),
            warnings: Vec::new(),
            notices: Vec::new(),
            kept: Vec::new(),
        };
        let describe = || format!("reading the documents of `{collection}` to merge into");
        // Sized once from the collection's count (its metadata, not a scan):
        // growing by doubling would hold up to twice the room, and both
        // the old and new room while it moves.
        let expected = db
            .collection::<RawDocumentBuf>(collection)
            .estimated_document_count()
            .within(Operation::Read, describe)
            .await?;
        merge.reserve(usize::try_from(expected).unwrap_or(0));
        let mut cursor = db
            .collection::<RawDocumentBuf>(collection)
            .find(doc! {})
            .projection(projection)
            // Small batches: a server's default (up to 16 MB a reply) would
            // be held, and copied, whole.
            .batch_size(READ_BATCH)
            .within(Operation::Read, describe)
            .await?;
        while let Some(document) = cursor.try_next().within(Operation::Read, describe).await? {
            merge.add_stored(&document);
        }
        merge.decide_representations();
        Ok(merge)
    }

    /// Room for `documents` stored documents (a little more, for those
    /// inserted while reading).
    fn reserve(&mut self, documents: usize) {
        let documents = documents + documents / 64;
        self.stored.reserve_exact(documents);
        self.prints_table.reserve_exact(documents * self.compared.len());
        self.by_key.reserve(documents);
    }

    /// Keeps what the merge needs of one stored document.
    fn add_stored(&mut self, document: &RawDocumentBuf) {
        let value = |field: &str| document.get(field).ok().flatten();
        let key_values: Vec<Option<Bson>> = self
            .profile
            .key
            .iter()
            .map(|field| value(field).and_then(|found| Bson::try_from(found.to_raw_bson()).ok()))
            .collect();
        let key_fields: Document = self
            .profile
            .key
            .iter()
            .zip(&key_values)
            .filter_map(|(field, found)| Some((field.clone(), found.clone()?)))
            .collect();
        let spelled: Vec<String> = key_values
            .iter()
            .map(|found| match found {
                Some(Bson::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            })
            .collect();
        for field in &self.compared {
            let print = self.prints.of_raw(value(field), self.profile.key.contains(field));
            self.prints_table.push(print);
        }
        let filled = filled_bits(
            self.profile
                .fields
                .iter()
                .map(|spec| value(&spec.name).is_some_and(|found| !matches!(found, RawBsonRef::Null))),
        );
        self.count_dates(document);
        let start = self.names.len();
        self.names.push_str(&spelled.join(" / "));
        // Names past 4 GiB in all would be cut short in messages, never wrong
        // in writes.
        let name = (
            u32::try_from(start).unwrap_or(u32::MAX),
            u32::try_from(self.names.len() - start).unwrap_or(0),
        );
        let index = u32::try_from(self.stored.len()).unwrap_or(u32::MAX);
        let key = self.prints.key(&record_key(self.profile, &key_fields));
        self.by_key
            .entry(key)
            .and_modify(|slot| match slot {
                Slot::One(first) => *slot = Slot::Several(vec![*first, index]),
                Slot::Several(indexes) => indexes.push(index),
            })
            .or_insert(Slot::One(index));
        self.stored.push(Stored {
            id: StoredId::of(value("_id")),
            name,
            filled: [filled as u64, (filled >> 64) as u64],
            matched: false,
        });
    }

    /// Counts how the document holds each date field (and `updated_at`).
    fn count_dates(&mut self, document: &RawDocumentBuf) {
        let dated = self
            .profile
            .fields
            .iter()
            .filter(|field| field.kind == FieldKind::Date)
            .map(|field| field.name.as_str())
            .chain(["updated_at"]);
        for field in dated {
            let counts = self.date_counts.entry(field.to_owned()).or_default();
            match document.get(field).ok().flatten() {
                Some(RawBsonRef::String(text)) => {
                    counts.texts += 1;
                    if text.contains('T') {
                        counts.moments += 1;
                    }
                }
                Some(RawBsonRef::DateTime(_)) => counts.dates += 1,
                _ => {}
            }
        }
    }

    /// The fingerprints of stored document `index`.
    fn prints_of(&self, index: usize) -> &[u64] {
        let width = self.compared.len();
        &self.prints_table[index * width..(index + 1) * width]
    }

    /// Date fields are written as the collection already holds them, field
    /// by field (or as the profile's `dates` says); `created_at` and
    /// `updated_at` always as the collection holds `updated_at`.
    fn decide_representations(&mut self) {
        let mut texts = Vec::with_capacity(self.profile.fields.len());
        for field in &self.profile.fields {
            let decided = match (&field.kind, self.rules.dates) {
                (FieldKind::Date, DateStorage::Auto) => self.held_as_text(&field.name),
                (FieldKind::Date, DateStorage::String) => {
                    Some(self.held_as_text(&field.name).unwrap_or(DateText::DateOnly))
                }
                _ => None,
            };
            texts.push(decided);
        }
        self.date_texts = texts;
        self.timestamps_as_text = self.held_as_text("updated_at");
    }

    /// The text form the stored documents hold `field` in, or `None` when
    /// they hold BSON dates (or nothing); a mix is noticed.
    fn held_as_text(&mut self, field: &str) -> Option<DateText> {
        let DateCounts { texts, moments, dates } = self.date_counts.get(field).copied().unwrap_or_default();
        let as_text = texts > dates;
        if texts > 0 && dates > 0 {
            self.notices.push(format!(
                "`{}.{field}` holds {texts} ISO string(s) and {dates} date(s); values are written as {}, the \
                 majority (set `dates` in the target profile to choose)",
                self.collection,
                if as_text { "ISO strings" } else { "dates" }
            ));
        }
        match (as_text, moments * 2 > texts) {
            (false, _) => None,
            (true, false) => Some(DateText::DateOnly),
            (true, true) => Some(DateText::Moment),
        }
    }

    /// Compares one winning record with its document and queues the writes
    /// that make the document say what the row says.
    pub fn add(&mut self, record: MappedRecord) {
        let mut desired = self.desired_values(&record);
        let Some(index) = self.matching(&record) else {
            return;
        };
        match index {
            Some(index) => self.update(record.row, index, desired),
            None => {
                desired.retain(|(_, value)| *value != Bson::Null);
                self.insert(record.row, desired);
            }
        }
    }

    /// The document this record continues: `Some(None)` for a new one,
    /// `None` when the record cannot be placed (reported).
    fn matching(&mut self, record: &MappedRecord) -> Option<Option<usize>> {
        let candidates: Vec<usize> = self
            .by_key
            .get(&self.prints.key(&record.key))
            .map_or(&[][..], Slot::indexes)
            .iter()
            .map(|index| *index as usize)
            .collect();
        match candidates.as_slice() {
            [] => Some(None),
            [one] => Some(Some(*one)),
            several => {
                let names: Vec<String> = several.iter().map(|index| self.display_key(*index)).collect();
                self.warnings.push(RowIssue {
                    row: record.row,
                    column: None,
                    value: None,
                    reason: format!(
                        "matches {} documents of `{}` ({}); nothing was written for this row: merge the duplicates \
                         in the application",
                        several.len(),
                        self.collection,
                        names.join(", ")
                    ),
                });
                for index in several {
                    self.stored[*index].matched = true;
                }
                None
            }
        }
    }

    /// `(field, value)` for every field the source has a column for, in
    /// the stored representation; `Null` for a blank cell that clears.
    fn desired_values(&mut self, record: &MappedRecord) -> Vec<(String, Bson)> {
        let mut desired = Vec::new();
        for (index, field) in self.profile.fields.iter().enumerate() {
            // No column, or an unreadable cell (reported): the stored
            // value stands.
            if self.columns[index].is_none() || record.unreadable.contains(&field.name) {
                continue;
            }
            let value = record.fields.get(&field.name).cloned().unwrap_or(Bson::Null);
            if value == Bson::Null && (self.rules.blank == Blank::Keep || self.kept.contains(&field.name)) {
                continue;
            }
            let value = match value {
                Bson::DateTime(date) => match self.date_texts[index] {
                    Some(form) => Bson::String(form.write(date)),
                    None => Bson::DateTime(date),
                },
                other => other,
            };
            desired.push((field.name.clone(), value));
        }
        let references = self.rules.references.clone();
        for reference in &references {
            self.resolve_reference(reference, record, &mut desired);
        }
        desired
    }

    /// Replaces a reference's written name by the user's name and adds the
    /// id; no or several matches leave the id alone, with a warning.
    fn resolve_reference(&mut self, reference: &Reference, record: &MappedRecord, desired: &mut Vec<(String, Bson)>) {
        let Some(position) = desired.iter().position(|(field, _)| *field == reference.field) else {
            return;
        };
        let written = match &desired[position].1 {
            Bson::String(text) => text.clone(),
            // A cleared owner clears the id with the name.
            _ => {
                desired.push((reference.id_field.clone(), Bson::Null));
                return;
            }
        };
        let Some(directory) = self.directories.get(&reference.collection) else {
            return;
        };
        match directory.resolve(&written) {
            Ok((id, name)) => {
                desired[position].1 = Bson::String(name.clone());
                desired.push((reference.id_field.clone(), Bson::String(id.clone())));
            }
            Err(count) => {
                let field_index = self.profile.field_index(&reference.field);
                let column = field_index.and_then(|index| self.columns[index].clone());
                let found = if count == 0 {
                    "no".to_owned()
                } else {
                    format!("{count}")
                };
                self.warnings.push(RowIssue {
                    row: record.row,
                    column,
                    value: Some(written),
                    reason: format!(
                        "{found} user(s) of `{}` have this e-mail or exact name; the name is stored as written and \
                         `{}` is left as it was",
                        reference.collection, reference.id_field
                    ),
                });
            }
        }
    }

    fn update(&mut self, row: usize, index: usize, desired: Vec<(String, Bson)>) {
        self.stored[index].matched = true;
        let prints = self.prints_of(index);
        let (mut set, mut unset) = (Document::new(), Document::new());
        for (field, value) in desired {
            // The key keeps the spelling the application stored: it is
            // compared folded.
            let key = self.profile.key.contains(&field);
            let position = self.compared.iter().position(|name| *name == field);
            if position.is_some_and(|position| prints[position] == self.prints.of(Some(&value), key)) {
                continue;
            }
            match value {
                Bson::Null => {
                    unset.insert(field, "");
                }
                value => {
                    set.insert(field, value);
                }
            }
        }
        if set.is_empty() && unset.is_empty() {
            self.changes.unchanged += 1;
            return;
        }
        let filter = self.stored[index].id.filter();
        self.summary.fields_written += set.len() + unset.len();
        set.insert("updated_at", self.timestamp());
        let mut update = doc! { "$set": set };
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        self.hold(Write::Update { row, filter, update });
        self.changes.updated += 1;
    }

    fn insert(&mut self, row: usize, desired: Vec<(String, Bson)>) {
        let mut document = doc! { "id": uuid::Uuid::new_v4().to_string() };
        self.summary.fields_written += desired.len();
        document.extend(desired);
        let now = self.timestamp();
        document.insert("created_at", now.clone());
        document.insert("updated_at", now);
        match RawDocumentBuf::from_document(&document) {
            Ok(encoded) => {
                self.hold(Write::Insert { row, document: encoded });
                self.changes.inserted += 1;
            }
            Err(error) => self.warnings.push(RowIssue {
                row,
                column: None,
                value: None,
                reason: format!("cannot be encoded for MongoDB ({error}); nothing was written for this row"),
            }),
        }
    }

    fn timestamp(&self) -> Bson {
        match self.timestamps_as_text {
            Some(_) => Bson::String(DateText::Moment.write(self.now)),
            None => Bson::DateTime(self.now),
        }
    }

    fn display_key(&self, index: usize) -> String {
        let (start, length) = self.stored[index].name;
        let (start, length) = (start as usize, length as usize);
        self.names.get(start..start + length).unwrap_or_default().to_owned()
    }

    /// Queues a write, unless more than `held_max` are queued already: then
    /// none is kept, and they are worked out again as they are written.
    fn hold(&mut self, write: Write) {
        if self.overflowed {
            return;
        }
        if self.writes.len() >= self.held_max {
            self.writes = Vec::new();
            self.overflowed = true;
            return;
        }
        self.writes.push(write);
    }

    /// Whether the change set was too large to hold (see [`Merge::hold`]).
    pub(super) fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Back to before the comparison, to work it out again while writing:
    /// the same decisions come out, since nothing was written yet.
    pub(super) fn restart(&mut self) {
        for stored in &mut self.stored {
            stored.matched = false;
        }
        self.writes.clear();
        self.overflowed = false;
        self.held_max = usize::MAX;
        self.changes = crate::report::Changes::default();
        self.summary.fields_written = 0;
        self.warnings.clear();
    }

    /// The writes queued since the last call.
    pub(super) fn drain_writes(&mut self) -> std::vec::Drain<'_, Write> {
        self.writes.drain(..)
    }

    /// Ends the comparison: documents the source no longer has are listed,
    /// and queued for deletion when the profile says so.
    pub fn finish(&mut self) {
        if self.list_missing() {
            for index in 0..self.stored.len() {
                if !self.stored[index].matched {
                    let filter = self.stored[index].id.filter();
                    self.hold(Write::Delete { filter });
                }
            }
        }
    }

    /// Lists and counts the documents the source no longer has; whether
    /// the profile deletes them.
    pub(super) fn list_missing(&mut self) -> bool {
        let missing: Vec<usize> = (0..self.stored.len())
            .filter(|index| !self.stored[*index].matched)
            .collect();
        self.summary.not_in_source_count = missing.len();
        self.summary.not_in_source = missing
            .iter()
            .take(LISTED_MISSING)
            .map(|index| self.display_key(*index))
            .collect();
        self.summary.not_in_source.sort();
        let delete = self.rules.on_missing == OnMissing::Delete;
        if delete {
            self.changes.removed += missing.len();
        }
        delete
    }

    /// The deletions of the documents the source no longer has, one at a
    /// time (a streamed change set sends them as they come).
    pub(super) fn deletions(&self) -> impl Iterator<Item = Write> + '_ {
        self.stored
            .iter()
            .filter(|stored| !stored.matched)
            .map(|stored| Write::Delete {
                filter: stored.id.filter(),
            })
    }

    /// Over the pairs of a stored document and the source's record with its
    /// key: how many pairs, and per profile field how many stored and how
    /// many new records of them hold a value (what the column guard weighs).
    pub fn paired_fill(&self, winners: &KeyMap<Winner>) -> FillCounts {
        let mut counts = FillCounts::new(self.profile.fields.len());
        for (key, winner) in winners {
            let Some(slot) = self.by_key.get(&self.prints.key(key)) else {
                continue;
            };
            for index in slot.indexes() {
                let [low, high] = self.stored[*index as usize].filled;
                counts.add(u128::from(low) | (u128::from(high) << 64), winner.filled);
            }
        }
        counts
    }

    /// Leaves the stored values of `fields` where a cell is blank.
    pub fn keep_stored(&mut self, fields: Vec<String>) {
        self.kept = fields;
    }

    /// The change set, for the writer.
    pub(super) fn take_writes(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.writes)
    }

    /// Documents in the collection before the merge.
    pub fn stored_count(&self) -> usize {
        self.stored.len()
    }
}

async fn load_directory(db: &Database, reference: &Reference) -> Result<Directory, StoreError> {
    let collection = &reference.collection;
    let describe = || format!("reading `{collection}` to resolve `{}`", reference.field);
    let users: Vec<Document> = db
        .collection::<Document>(collection)
        .find(doc! {})
        .projection(doc! { "id": 1, "email": 1, "name": 1 })
        .within(Operation::Read, describe)
        .await?
        .try_collect()
        .within(Operation::Read, describe)
        .await?;
    let mut directory = Directory::default();
    for user in users {
        let (Ok(id), Ok(name)) = (user.get_str("id"), user.get_str("name")) else {
            continue;
        };
        let entry = (id.to_owned(), name.to_owned());
        if let Ok(email) = user.get_str("email") {
            directory
                .by_email
                .entry(email.trim().to_lowercase())
                .or_default()
                .push(entry.clone());
        }
        directory.by_name.entry(name.trim().to_owned()).or_default().push(entry);
    }
    Ok(directory)
}
