//! What a sync target is, as data: its fields, its identity key, how it is
//! applied and which indexes its collections carry. Adding a target (the
//! customer-success platform is next) means writing one of these tables, not
//! new mapping code.

use super::values::EnumSpec;

/// How a field's cells are read.
#[derive(Debug)]
pub enum FieldKind {
    /// Kept as written, trimmed.
    Text,
    /// A BSON date; date-only values at 00:00 UTC.
    Date,
    /// A double, from numbers or money in any common notation.
    Number,
    /// `YYYY-MM`; when the cell is empty, taken from the named date field.
    Month { derive_from: Option<&'static str> },
    /// One of a closed set of values; unknown values are kept as written.
    Enum(&'static EnumSpec),
}

#[derive(Debug)]
pub struct FieldSpec {
    /// The document field, exactly as the schema names it.
    pub name: &'static str,
    pub kind: FieldKind,
    /// Header labels that also mean this field. Labels are compared after
    /// folding case, accents and punctuation, and the field name itself always
    /// matches, so only genuinely different words belong here.
    pub aliases: &'static [&'static str],
    /// A row without this value cannot be stored and is rejected.
    pub required: bool,
}

/// How a target's records replace what the database held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// The source is the whole truth for one collection: build the new
    /// collection aside, then swap it in atomically.
    ReplaceCollection,
}

/// One index on a target collection.
#[derive(Debug)]
pub struct IndexSpec {
    pub keys: &'static [&'static str],
    pub unique: bool,
    /// TTL in seconds, for indexes that expire documents.
    pub expire_after_seconds: Option<u64>,
}

#[derive(Debug)]
pub struct TargetProfile {
    /// A name for reports and logs, e.g. `sales_records`.
    pub name: &'static str,
    pub fields: &'static [FieldSpec],
    /// Fields whose folded values identify a record across refreshes. The
    /// last row with a given key wins.
    pub key: &'static [&'static str],
    /// A field holding a link to the same real-world object in another
    /// system (a HubSpot deal): a record whose link names an old record's
    /// object continues that record even when its key changed.
    pub identity_link: Option<&'static str>,
    pub apply: ApplyMode,
    /// Indexes every collection of this target carries (staging included, so
    /// the swapped-in collection is ready to serve).
    pub indexes: &'static [IndexSpec],
}

impl TargetProfile {
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|field| field.name == name)
    }
}
