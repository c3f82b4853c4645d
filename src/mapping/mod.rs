//! Turning a source's rows into a target's documents.
//!
//! The mapping is driven entirely by a [`profile::TargetProfile`]: it finds the header
//! row, matches columns to fields, reads every cell into its field's type and
//! keys each record for de-duplication. It never drops a row silently: every
//! rejected row, unreadable value and superseded duplicate is reported.

pub mod conventions;
mod convert;
pub mod declare;
mod error;
mod header;
mod header_changes;
mod mapper;
mod parallel;
mod passes;
pub mod profile;
mod record;
mod row;
pub mod sales;
mod survey;
#[cfg(test)]
mod tests;
pub mod values;
mod winners;

pub use error::{MappingError, SurveyError};
pub use header_changes::{closest_field, header_changes};
pub use mapper::Mapper;
pub use record::{
    Duplicate, HeaderColumn, KEY_SEPARATOR, KeyMap, MAX_FIELDS, MappedRecord, RecordFields, RecordValues, RowIssue,
    Winner, filled_bits, record_key,
};
pub use survey::{Survey, header_of, survey};
pub use winners::Winners;
