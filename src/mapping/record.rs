//! What the mapping makes of rows: records (as a document, or as values in
//! profile order), their keys, and the problems people are told about.

use mongodb::bson::{Bson, Document};
use serde::{Deserialize, Serialize};

use super::profile::TargetProfile;
use super::values::fold_key_text_into;

/// Joins the folded fields of a key; it cannot occur in them.
pub const KEY_SEPARATOR: &str = "\u{1f}";

/// Maps keyed by record keys. They hold one entry per row of large sheets
/// and are hashed on every row of every pass, so they use foldhash (seeded
/// per process, as hashbrown's own default) rather than SipHash.
///
/// An `IndexMap`: its entries sit in one vector and its hash table holds
/// only their positions. A `HashMap` keeps the entries in the table itself,
/// which has a power-of-two number of slots at most 7/8 full: at 500,000
/// keys that is 1,048,576 slots of key and value, twice what is used. Here
/// the unused slots cost 8 bytes each, and the entries are in the order
/// they were first seen.
pub type KeyMap<V> = indexmap::IndexMap<String, V, foldhash::fast::RandomState>;

/// A problem with one row or one cell, reported to the person who edits the
/// source: row number as they see it, the column header, the value and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowIssue {
    pub row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub reason: String,
}

/// The row that stands for one key, and what its identity link names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Winner {
    pub row: usize,
    /// See [`super::values::links::link_ref`].
    pub link: Option<crate::mapping::values::links::LinkRef>,
    /// Which fields the record fills: bit `i` for the profile's field `i`
    /// (see [`filled_bits`]).
    pub filled: u128,
}

// One per row of large sheets: the memory budget counts on it.
const _: () = assert!(std::mem::size_of::<Winner>() == 32);

/// The most fields a target may declare: which fields a record fills is
/// kept as one bit per field (see [`filled_bits`]).
pub const MAX_FIELDS: usize = 128;

/// Bit `i` set for each field `i` that holds a value, in profile order.
/// Profiles of more than [`MAX_FIELDS`] fields are refused when declared.
pub fn filled_bits(holds: impl IntoIterator<Item = bool>) -> u128 {
    holds
        .into_iter()
        .take(MAX_FIELDS)
        .enumerate()
        .filter(|(_, holds)| *holds)
        .fold(0, |bits, (index, _)| bits | (1 << index))
}

/// One labelled column of a source's header, and the field it feeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderColumn {
    /// The header cell as written.
    pub label: String,
    /// The field the column is read into; `None` for a column no field
    /// takes (unknown, or a second column for a field already read).
    pub field: Option<String>,
}

#[cfg(test)]
impl HeaderColumn {
    /// `(label, field)` pairs as a header, for tests.
    pub fn list(columns: &[(&str, Option<&str>)]) -> Vec<HeaderColumn> {
        columns
            .iter()
            .map(|(label, field)| HeaderColumn {
                label: (*label).to_owned(),
                field: field.map(str::to_owned),
            })
            .collect()
    }
}

/// A row that lost to a later row with the same key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Duplicate {
    pub row: usize,
    pub superseded_by: usize,
}

/// One record ready to be given an identity and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedRecord {
    pub row: usize,
    /// The folded key values, joined; equal keys are the same record.
    pub key: String,
    /// The profile's fields in profile order, empty ones as null.
    pub fields: Document,
    /// Fields whose cell held something unreadable (null in `fields`, and
    /// reported): a merge leaves their stored values alone, where a blank
    /// cell would clear them.
    pub unreadable: Vec<String>,
}

/// A winning record as values in profile order, without the document a
/// [`MappedRecord`] holds: what counting changes needs (see
/// [`Mapper::each_winner_values`]).
#[derive(Debug)]
pub struct RecordValues<'p> {
    pub row: usize,
    pub key: String,
    pub values: Vec<Bson>,
    /// Fields whose cell held a value that could not be read.
    pub(super) unreadable: Vec<String>,
    pub(super) profile: &'p TargetProfile,
}

/// A record's key and named fields, however it is held.
pub trait RecordFields {
    fn key(&self) -> &str;
    /// The fields in profile order, as the stored document has them.
    fn fields(&self) -> impl Iterator<Item = (&str, &Bson)>;
    fn text(&self, name: &str) -> Option<&str> {
        match self.fields().find(|(field, _)| *field == name) {
            Some((_, Bson::String(text))) => Some(text),
            _ => None,
        }
    }
}

impl RecordFields for MappedRecord {
    fn key(&self) -> &str {
        &self.key
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &Bson)> {
        self.fields.iter().map(|(name, value)| (name.as_str(), value))
    }
}

impl RecordFields for RecordValues<'_> {
    fn key(&self) -> &str {
        &self.key
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &Bson)> {
        self.profile
            .fields
            .iter()
            .map(|spec| spec.name.as_str())
            .zip(&self.values)
    }
}

/// The record's identity: each key field folded (client names compared
/// trimmed and case- and whitespace-insensitively), joined by a separator that
/// cannot occur in them.
pub fn record_key(profile: &TargetProfile, fields: &Document) -> String {
    fold_key(profile.key.iter().map(|name| fields.get(name)))
}

pub(super) fn fold_key<'a>(parts: impl Iterator<Item = Option<&'a Bson>> + Clone) -> String {
    let text = |value: Option<&'a Bson>| match value {
        Some(Bson::String(text)) => Some(text.as_str()),
        _ => None,
    };
    // Folding ASCII text never lengthens it: one allocation, and a key
    // kept per record holds no spare capacity.
    let length = parts
        .clone()
        .map(|value| text(value).map_or(0, str::len) + KEY_SEPARATOR.len())
        .sum();
    let mut key = String::with_capacity(length);
    for (index, value) in parts.enumerate() {
        if index > 0 {
            key.push_str(KEY_SEPARATOR);
        }
        if let Some(text) = text(value) {
            fold_key_text_into(text, &mut key);
        }
    }
    key.shrink_to_fit();
    key
}
