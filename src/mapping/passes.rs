//! The passes after the survey: the winning records, in source order, read
//! on both cores.

use super::mapper::Mapper;
use super::parallel;
use super::record::{MappedRecord, RecordValues};
use super::survey::Survey;
use super::winners::Winners;
use crate::source::table::Row;
use crate::source::{RowReader, SourceError};

impl<'p> Mapper<'p> {
    /// A later pass: the winning records, in source order.
    pub fn winners<'a>(&'a self, survey: &'a Survey, rows: RowReader<'a>) -> Winners<'a, 'p> {
        Winners::new(self, survey, rows)
    }

    /// The row's values, if it is the row its key's record is read from.
    pub(super) fn winner_values(&self, row: &Row, survey: &Survey) -> Option<RecordValues<'p>> {
        if row.number <= self.header_row {
            return None;
        }
        let (values, key) = self.read_row(row)?;
        if survey.winners.get(&key).map(|winner| winner.row) != Some(row.number) {
            return None;
        }
        Some(RecordValues {
            row: row.number,
            unreadable: self.unreadable(row, &values),
            key,
            values,
            profile: self.profile,
        })
    }

    /// A later pass, read on both cores: each winning record's values,
    /// with what `prepare` makes of them on the reading threads, in source
    /// order. Returns how many there were.
    pub fn each_winner_values<T: Send>(
        &self,
        survey: &Survey,
        rows: RowReader<'_>,
        prepare: &(dyn Fn(&RecordValues<'p>) -> T + Sync),
        mut each: impl FnMut(RecordValues<'p>, T),
    ) -> Result<usize, SourceError> {
        let make = |values: RecordValues<'p>| {
            let prepared = prepare(&values);
            (values, prepared)
        };
        self.each_winner(survey, rows, &make, |(values, prepared)| each(values, prepared))
    }

    /// [`Mapper::each_winner_values`], each record with its document built
    /// (on the worker threads too).
    pub fn each_winner_record(
        &self,
        survey: &Survey,
        rows: RowReader<'_>,
        each: impl FnMut(MappedRecord),
    ) -> Result<usize, SourceError> {
        self.each_winner(survey, rows, &|values| self.record(values), each)
    }

    /// The winning rows of a pass, each made into a `T` on the reading
    /// threads and handed to `each` in source order; how many there were.
    fn each_winner<T: Send>(
        &self,
        survey: &Survey,
        rows: RowReader<'_>,
        make: &(dyn Fn(RecordValues<'p>) -> T + Sync),
        mut each: impl FnMut(T),
    ) -> Result<usize, SourceError> {
        let mut found = 0;
        let read = |row: &Row| self.winner_values(row, survey).map(make);
        parallel::read_rows(rows, &read, |_, made| {
            if let Some(made) = made {
                found += 1;
                each(made);
            }
        })?;
        Ok(found)
    }
}
