//! Why a source could not be mapped at all (as opposed to the rows and
//! cells it rejects, which are reported and skipped).

use crate::source::SourceError;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MappingError {
    #[error("the source has no rows; check that the export or sheet tab is the right one")]
    EmptySource,
    #[error(
        "no header row with the required column(s) {missing}: the best candidate (row {row}) has columns [{found}]; \
         rename the column(s) in the source or add an alias"
    )]
    MissingRequiredColumns { row: usize, missing: String, found: String },
    #[error(
        "column {label:?} (row {row}) reads as fields {fields} equally well; nothing is guessed: rename the \
         column, or make one field's alias match it exactly"
    )]
    AmbiguousColumn { row: usize, label: String, fields: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SurveyError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
}
