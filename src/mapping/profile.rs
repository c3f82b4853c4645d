//! What a sync target is, as data: its fields, its identity key, how it is
//! applied and which indexes its collections carry. Profiles are declared in
//! TOML ([`super::declare`]): the built-in ones ship in `targets/`, and an
//! operator adds or replaces them with `[[targets]]` in the config file.
//! Adding a target means writing a table, not mapping code.

use super::values::EnumSpec;

/// How a field's cells are read.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// Kept as written, trimmed.
    Text,
    /// A BSON date; date-only values at 00:00 UTC.
    Date,
    /// A double, from numbers or money in any common notation.
    Number,
    /// A whole number (64-bit), from the same notations; a fraction is
    /// unreadable, not rounded.
    Integer,
    /// `YYYY-MM`; when the cell is empty, taken from the named date field.
    Month { derive_from: Option<String> },
    /// One of a closed set of values; unknown values are kept as written.
    Enum(EnumSpec),
    /// Text items split on `,` or `;`, trimmed, empty items dropped.
    List,
    /// A checkbox, or yes/no, true/false, oui/non, 1/0.
    Bool,
}

impl FieldKind {
    /// The name a profile declares the kind with.
    pub fn name(&self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Date => "date",
            FieldKind::Number => "number",
            FieldKind::Integer => "integer",
            FieldKind::Month { .. } => "month",
            FieldKind::Enum(_) => "enum",
            FieldKind::List => "list",
            FieldKind::Bool => "bool",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// The document field, exactly as the schema names it.
    pub name: String,
    pub kind: FieldKind,
    /// Header labels that also mean this field. Labels are compared after
    /// folding case, accents and punctuation, and the field name itself always
    /// matches, so only genuinely different words belong here.
    pub aliases: Vec<String>,
    /// A row without this value cannot be stored and is rejected.
    pub required: bool,
}

/// How a target's records replace what the database held.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyMode {
    /// The source is the whole truth for one collection: build the new
    /// collection aside, then swap it in atomically.
    ReplaceCollection,
    /// The collection is shared with an application: documents are matched
    /// by key and only the changed fields are written.
    Merge(MergeRules),
}

/// How a merge treats what the sheet does not say.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeRules {
    pub on_missing: OnMissing,
    pub blank: Blank,
    pub dates: DateStorage,
    /// Cells naming a document of another collection (an owner).
    pub references: Vec<Reference>,
}

/// What becomes of a document whose key the sheet no longer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// Kept, and listed in the report as not in the source.
    #[default]
    Keep,
    /// Deleted, subject to the shrink guard.
    Delete,
}

/// What a blank cell in a mapped column does to the stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Blank {
    /// Clears the field: the sheet owns its columns.
    #[default]
    Clear,
    /// Leaves the stored value as it is.
    Keep,
}

/// How date fields are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DateStorage {
    /// As the collection's documents already hold each field (BSON dates
    /// when none holds it).
    #[default]
    Auto,
    /// Always BSON dates.
    Date,
    /// Always ISO `YYYY-MM-DD` strings.
    String,
}

/// A field whose cells name a document of another collection, by e-mail or
/// by exact name: the match's `id` goes into `id_field`, its `name` into
/// `field`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub field: String,
    pub id_field: String,
    pub collection: String,
}

/// One index on a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    pub keys: Vec<String>,
    pub unique: bool,
    /// TTL in seconds, for indexes that expire documents.
    pub expire_after_seconds: Option<u64>,
}

impl IndexSpec {
    pub fn plain(keys: &[&str]) -> IndexSpec {
        IndexSpec {
            keys: keys.iter().map(|key| (*key).to_owned()).collect(),
            unique: false,
            expire_after_seconds: None,
        }
    }

    pub fn unique(keys: &[&str]) -> IndexSpec {
        IndexSpec {
            unique: true,
            ..IndexSpec::plain(keys)
        }
    }
}

/// An index on another collection of the target's database: the app's own
/// schema, which syncs into that database keep in place.
#[derive(Debug, Clone, PartialEq)]
pub struct AppIndex {
    pub collection: String,
    pub index: IndexSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetProfile {
    /// The name syncs refer to, e.g. `sales_records`.
    pub name: String,
    /// The collection a sync writes when it names none.
    pub collection: Option<String>,
    pub fields: Vec<FieldSpec>,
    /// Fields whose folded values identify a record across refreshes. The
    /// last row with a given key wins.
    pub key: Vec<String>,
    /// A field holding a link to the same real-world object in another
    /// system (a HubSpot deal): a record whose link names an old record's
    /// object continues that record even when its key changed.
    pub identity_link: Option<String>,
    pub apply: ApplyMode,
    /// Indexes every collection of this target carries (staging included, so
    /// the swapped-in collection is ready to serve).
    pub indexes: Vec<IndexSpec>,
    /// Indexes of the application's other collections in the target's
    /// database.
    pub app_indexes: Vec<AppIndex>,
    /// Header labels no field takes on purpose (see `mapping::header_changes`).
    pub ignore_columns: Vec<String>,
}

impl TargetProfile {
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|field| field.name == name)
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|field| field.name == name)
    }

    pub fn merge_rules(&self) -> Option<&MergeRules> {
        match &self.apply {
            ApplyMode::Merge(rules) => Some(rules),
            ApplyMode::ReplaceCollection => None,
        }
    }
}
