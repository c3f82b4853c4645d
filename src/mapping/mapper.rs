//! The mapper: what the survey learned about a source's columns and
//! conventions, applied by every later pass.

use chrono_tz::Tz;

use super::conventions::Conventions;
use super::header::Columns;
use super::profile::TargetProfile;
use super::values;

/// Reads a source's rows into `profile`'s records.
#[derive(Debug)]
pub struct Mapper<'p> {
    pub(super) profile: &'p TargetProfile,
    pub(super) columns: Columns,
    /// The zone of date-times written as text without an offset.
    pub(super) zone: Tz,
    /// The zone of spreadsheet serials (see `ReadSettings::zone_is_the_syncs`).
    pub(super) serial_zone: Tz,
    pub(super) header_row: usize,
    /// Each enum field's accepted spellings, folded once per sync (folding
    /// them for every cell was a third of a sync's time).
    pub(super) lookups: Vec<Option<values::EnumLookup>>,
    pub(super) conventions: Conventions,
    /// The index of the profile's identity link field.
    pub(super) link_field: Option<usize>,
    /// The indexes of the key's fields, in key order (looked up once, not
    /// by name on every row).
    pub(super) key_fields: Vec<Option<usize>>,
    /// The fields whose values a survey reads (bit `i` for field `i`): the
    /// key's, the identity link's and those others are derived from. Of the
    /// rest it only needs to know whether they hold a value, so their text
    /// is not copied.
    pub(super) survey_values: u128,
}

impl Mapper<'_> {
    /// Per profile field, the header of the column it is read from, or
    /// `None` when the source has no such column.
    pub fn column_headers(&self) -> Vec<Option<String>> {
        (0..self.profile.fields.len())
            .map(|field| self.columns.of_field(field).map(|(_, header)| header.to_owned()))
            .collect()
    }
}
