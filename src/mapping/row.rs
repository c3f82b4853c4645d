//! One row into its record's values, key and identity link, and the notes
//! a survey adds up (conventions shown, problems met). Depends on nothing
//! but the row, so that it runs on any thread.

use mongodb::bson::Bson;

use super::conventions::Clue;
use super::convert::{Problem, derive_fields};
use super::mapper::Mapper;
use super::record::{MappedRecord, RecordValues, filled_bits, fold_key};
use super::values;
use crate::source::table::{Cell, Row};

/// What converting one row's cells found, before a planning pass adds it up
/// (see [`Mapper::read_cells`]).
pub(super) struct RowReading<'p> {
    /// `None` when a required value is missing.
    pub(super) key: Option<String>,
    /// The identity link's reference (planning passes only).
    pub(super) link: Option<crate::mapping::values::links::LinkRef>,
    /// Which fields hold a value (see `Winner::filled`).
    pub(super) filled: u128,
    /// The required fields without a value.
    pub(super) missing: Vec<&'p str>,
    /// The cells that showed a convention or had a problem.
    pub(super) notes: Vec<CellNote>,
}

pub(super) struct CellNote {
    pub(super) field: usize,
    pub(super) clue: Option<Clue>,
    pub(super) problem: Option<Problem>,
}

impl<'p> Mapper<'p> {
    /// The record of a row's values, fields named as the profile names them.
    pub(super) fn record(&self, read: RecordValues<'_>) -> MappedRecord {
        let fields = self
            .profile
            .fields
            .iter()
            .map(|spec| spec.name.clone())
            .zip(read.values)
            .collect();
        MappedRecord {
            row: read.row,
            key: read.key,
            fields,
            unreadable: read.unreadable,
        }
    }

    /// The fields read as null whose cell was not empty.
    pub(super) fn unreadable(&self, row: &Row, values: &[Bson]) -> Vec<String> {
        self.profile
            .fields
            .iter()
            .enumerate()
            .filter(|(index, _)| matches!(values[*index], Bson::Null))
            .filter(|(index, _)| {
                self.columns
                    .of_field(*index)
                    .and_then(|(column, _)| row.cells.get(column))
                    .is_some_and(|cell| !cell.is_empty())
            })
            .map(|(_, spec)| spec.name.clone())
            .collect()
    }

    /// The row's values in profile order and its key, or `None` when the
    /// row lacks a required value.
    ///
    /// Keys are read from text and enum fields only, which no convention
    /// changes: a planning pass made before the conventions are decided finds
    /// the same keys as the passes after.
    pub(super) fn read_row(&self, row: &Row) -> Option<(Vec<Bson>, String)> {
        let mut values = Vec::with_capacity(self.profile.fields.len());
        let reading = self.read_cells(row, false, &mut values);
        Some((values, reading.key?))
    }

    /// [`Mapper::read_cells`] for a survey, which keeps what the values
    /// show, not the values: they go in a buffer each thread reuses, since
    /// a row's values (18 of 112 bytes each, for a sales sheet) are too big
    /// for the allocator's fast path.
    pub(super) fn survey_cells(&self, row: &Row) -> RowReading<'p> {
        thread_local! {
            static VALUES: std::cell::RefCell<Vec<Bson>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        VALUES.with_borrow_mut(|values| self.read_cells(row, true, values))
    }

    /// Converts every cell of the row into `values` (each into its field's
    /// type; an unreadable value becomes null). With `notes`, also keeps
    /// what each cell shows about the source's conventions and its
    /// problems, for a planning pass to add up. Depends on nothing but the
    /// row, so that it runs on any thread.
    fn read_cells(&self, row: &Row, notes: bool, values: &mut Vec<Bson>) -> RowReading<'p> {
        values.clear();
        let mut reading = RowReading {
            key: None,
            link: None,
            filled: 0,
            missing: Vec::new(),
            notes: Vec::new(),
        };
        for (index, spec) in self.profile.fields.iter().enumerate() {
            let value = match self.columns.of_field(index) {
                Some((column, _)) => {
                    let keep = !notes || self.survey_values & (1 << index) != 0;
                    let converted = self.convert(index, row.cells.get(column).unwrap_or(&Cell::Empty), keep);
                    if notes && (converted.clue.is_some() || converted.problem.is_some()) {
                        reading.notes.push(CellNote {
                            field: index,
                            clue: converted.clue,
                            problem: converted.problem,
                        });
                    }
                    converted.value
                }
                None => Bson::Null,
            };
            if spec.required && matches!(value, Bson::Null) {
                reading.missing.push(spec.name.as_str());
            }
            values.push(value);
        }
        // A moment's calendar date is the one of the zone it was read in.
        let zone_of = |field: usize| match self
            .columns
            .of_field(field)
            .and_then(|(column, _)| row.cells.get(column))
        {
            Some(Cell::Number(_)) => self.serial_zone,
            _ => self.zone,
        };
        derive_fields(self.profile, values, zone_of);
        if notes {
            // Only a survey counts which fields records fill.
            reading.filled = filled_bits(values.iter().map(|value| !matches!(value, Bson::Null)));
        }
        if reading.missing.is_empty() {
            reading.key = Some(fold_key(
                self.key_fields
                    .iter()
                    .map(|index| index.and_then(|index| values.get(index))),
            ));
            reading.link = self
                .link_field
                .filter(|_| notes)
                .and_then(|index| match &values[index] {
                    Bson::String(url) => values::links::link_ref(url),
                    _ => None,
                });
        }
        reading
    }
}
