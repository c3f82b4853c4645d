//! One later pass as an iterator of the winning records, in source order,
//! on the calling thread (the swap's write pass takes them batch by batch).

use super::mapper::Mapper;
use super::record::{MappedRecord, RecordValues};
use super::survey::Survey;
use crate::source::{RowReader, SourceError};

/// The winning records of one pass; see [`Mapper::winners`].
pub struct Winners<'a, 'p> {
    mapper: &'a Mapper<'p>,
    survey: &'a Survey,
    rows: RowReader<'a>,
}

impl<'a, 'p> Winners<'a, 'p> {
    pub(super) fn new(mapper: &'a Mapper<'p>, survey: &'a Survey, rows: RowReader<'a>) -> Winners<'a, 'p> {
        Winners { mapper, survey, rows }
    }

    pub fn next_record(&mut self) -> Option<Result<MappedRecord, SourceError>> {
        Some(self.next_values()?.map(|values| self.mapper.record(values)))
    }

    /// The next winning record's key and values.
    fn next_values(&mut self) -> Option<Result<RecordValues<'p>, SourceError>> {
        loop {
            let row = match self.rows.next_row()? {
                Ok(row) => row,
                Err(error) => return Some(Err(error)),
            };
            if let Some(values) = self.mapper.winner_values(row, self.survey) {
                return Some(Ok(values));
            }
        }
    }
}
