//! Turning a source's rows into a target's documents.
//!
//! The mapping is driven entirely by a [`TargetProfile`]: it finds the header
//! row, matches columns to fields, reads every cell into its field's type and
//! keys each record for de-duplication. It never drops a row silently: every
//! rejected row, unreadable value and superseded duplicate is reported.

pub mod conventions;
mod convert;
pub mod declare;
mod header;
mod parallel;
pub mod profile;
pub mod sales;
pub mod values;

use std::collections::{HashMap, HashSet};

use chrono_tz::Tz;
use mongodb::bson::{Bson, Document};
use serde::Serialize;

use crate::source::table::{Cell, Row};
use crate::source::{Fetched, RowReader, SourceError};
use conventions::{Clue, Conventions, DateOrderDecision, Evidence, Example, ReadSettings};
use convert::{Problem, derive_fields, text_of};
use header::{Columns, FieldLabels, find_header, resolve_columns, warn_about_ignored_values};
use profile::{FieldKind, TargetProfile};
use values::dates::DateOrder;
use values::fold_key_text;
use values::numbers::NumberText;

/// Joins the folded fields of a key; it cannot occur in them.
pub const KEY_SEPARATOR: &str = "\u{1f}";

/// How many readings the first planning pass sets aside until the source's
/// conventions are known; a source with more is simply planned again once
/// they are.
const MAX_DEFERRED: usize = 10_000;

/// Maps keyed by record keys. They hold one entry per row of large sheets
/// and are hashed on every row of every pass, so they use foldhash (seeded
/// per process, as hashbrown's own default) rather than SipHash.
pub type KeyMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

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
    /// See [`values::links::link_ref`].
    pub link: Option<u64>,
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

/// What the first pass over a source learned: where the header is, every
/// problem with the rows, and which row wins for each key. Only keys are
/// kept, so the records themselves can be rebuilt in a later pass instead of
/// being held in memory.
#[derive(Debug, Default)]
pub struct Plan {
    pub header_row: usize,
    /// Data rows below the header (blank rows excluded).
    pub rows_read: usize,
    pub blank_rows: usize,
    /// Key -> the row that wins (the last one with that key).
    pub winners: KeyMap<Winner>,
    pub duplicates: Vec<Duplicate>,
    pub rejected: Vec<RowIssue>,
    pub warnings: Vec<RowIssue>,
    /// Header labels that match no field, as written.
    pub unknown_columns: Vec<String>,
    /// The day/month order numeric dates were read in, and why.
    pub date_order: Option<DateOrderDecision>,
    /// Facts about the whole source worth telling its editor.
    pub notices: Vec<String>,
    /// Passes the planning read the source in: 1, or 2 when the decided
    /// conventions changed what the first pass would have reported.
    pub planning_passes: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MappingError {
    #[error("the source has no rows; check that the export or sheet tab is the right one")]
    EmptySource,
    #[error(
        "no header row with the required column(s) {missing}: the best candidate (row {row}) has columns [{found}]; \
         rename the column(s) in the source or add an alias"
    )]
    MissingRequiredColumns { row: usize, missing: String, found: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
}

/// Reads a source's rows into `profile`'s records.
#[derive(Debug)]
pub struct Mapper<'p> {
    profile: &'p TargetProfile,
    columns: Columns,
    /// The zone of date-times written without an offset.
    zone: Tz,
    header_row: usize,
    /// Each enum field's accepted spellings, folded once per sync (folding
    /// them for every cell was a third of a sync's time).
    lookups: Vec<Option<values::EnumLookup>>,
    conventions: Conventions,
    /// The index of the profile's identity link field.
    link_field: Option<usize>,
}

/// First pass: finds the header, reads every row once to collect problems,
/// duplicate keys and the source's conventions (date order, decimal marks),
/// and returns the mapper for the later passes.
///
/// The conventions are only known at the end of the pass, so readings that
/// depend on them are set aside and judged then. When the date order turns
/// out to differ from the one assumed (a US sheet), or too many readings
/// were set aside, the pass is made once more with the decided conventions.
pub fn plan<'p>(
    profile: &'p TargetProfile,
    source: &Fetched,
    settings: &ReadSettings,
) -> Result<(Mapper<'p>, Plan), PlanError> {
    let date_order = settings.date_order;
    let labels = FieldLabels::new(profile);
    let header = find_header(profile, &labels, source)?;
    let columns = resolve_columns(profile, &labels, &header);
    let lookups = profile
        .fields
        .iter()
        .map(|field| match &field.kind {
            FieldKind::Enum(allowed) => Some(allowed.lookup()),
            _ => None,
        })
        .collect();
    let mut mapper = Mapper {
        profile,
        zone: settings.time_zone,
        header_row: header.number,
        columns,
        lookups,
        conventions: Conventions::provisional(date_order),
        link_field: profile
            .identity_link
            .as_deref()
            .and_then(|name| profile.field_index(name)),
    };
    let mut pass = mapper.planning_pass(source)?;
    let (conventions, decision) = Conventions::decide(date_order, &pass.evidence);
    mapper.conventions = conventions;
    // The keys, and so the plan's winners, do not depend on the conventions
    // (see `read_row`): a second pass is only needed for warnings, when the
    // date order changed or a doubt that was not set aside may deserve one.
    let replan = decision.order != Conventions::provisional(date_order).date_order
        || pass.overflowed.iter().any(|kind| mapper.may_warn(kind));
    if replan {
        pass = mapper.planning_pass(source)?;
    } else {
        for deferred in std::mem::take(&mut pass.deferred) {
            if let Some(warning) = mapper.judge(deferred) {
                pass.plan.warnings.push(warning);
            }
        }
        pass.plan.warnings.sort_by_key(|warning| warning.row);
    }
    let mut plan = pass.plan;
    plan.planning_passes = if replan { 2 } else { 1 };
    if let (true, Some(example)) = (decision.guessed, &pass.evidence.either_order.first) {
        let at = plan.warnings.partition_point(|warning| warning.row <= example.row);
        plan.warnings
            .insert(at, guessed_order_warning(&decision, &pass.evidence, example));
    }
    plan.date_order = Some(decision);
    if let Some(sheet_zone) = source.serial_time_zone().filter(|zone| *zone != settings.time_zone) {
        plan.notices.push(format!(
            "the spreadsheet's time zone is {sheet_zone} but date-times are read in {} ([sync] time_zone), as \
             from a CSV export; set time_zone to {sheet_zone} if that is the sheet's clock",
            settings.time_zone
        ));
    }
    Ok((mapper, plan))
}

/// No value decided the day/month order and some dates read differently in
/// each: the person editing the sheet is told which reading was taken.
fn guessed_order_warning(decision: &DateOrderDecision, evidence: &Evidence, example: &Example) -> RowIssue {
    RowIssue {
        row: example.row,
        column: Some(example.column.clone()),
        value: Some(example.value.clone()),
        reason: format!(
            "{} date(s) of this source, this one first, read as different dates day-first and month-first, and no \
             value decides which: they were read {}, the default; set date_order if the source is written {}",
            evidence.either_order.count,
            decision.order.describe(),
            decision.order.other().describe()
        ),
    }
}

/// What one planning pass over the rows found.
#[derive(Debug, Default)]
struct PlanningPass {
    plan: Plan,
    evidence: Evidence,
    /// Readings to judge once the conventions are decided.
    deferred: Vec<Deferred>,
    /// The kinds of doubt met after [`MAX_DEFERRED`] readings were set
    /// aside, which were not kept.
    overflowed: HashSet<DoubtKind>,
}

/// What a doubt is about, without its cell: enough to know whether any
/// doubt of the kind can deserve a warning once the conventions are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DoubtKind {
    DecimalMark { field: usize },
    OtherOrder { only: DateOrder },
}

impl Doubt {
    fn kind(&self, field: usize) -> DoubtKind {
        match self {
            Doubt::OtherOrder { only, .. } => DoubtKind::OtherOrder { only: *only },
            Doubt::DecimalMark(_) => DoubtKind::DecimalMark { field },
        }
    }
}

/// A reading whose verdict depends on conventions not decided yet.
#[derive(Debug)]
struct Deferred {
    field: usize,
    cell: Example,
    doubt: Doubt,
}

#[derive(Debug)]
enum Doubt {
    /// A numeric date that is a real date only in `only` order.
    OtherOrder { only: DateOrder, reading: String },
    /// `5.000`: thousands or decimals, by the column's convention.
    DecimalMark(NumberText),
}

/// What converting one row's cells found, before a planning pass adds it up
/// (see [`Mapper::read_cells`]).
struct RowReading<'p> {
    values: Vec<Bson>,
    /// `None` when a required value is missing.
    key: Option<String>,
    /// The identity link's reference (planning passes only).
    link: Option<u64>,
    /// The required fields without a value.
    missing: Vec<&'p str>,
    /// The cells that showed a convention or had a problem.
    notes: Vec<CellNote>,
}

struct CellNote {
    field: usize,
    clue: Option<Clue>,
    problem: Option<Problem>,
}

impl<'p> Mapper<'p> {
    fn planning_pass(&self, source: &Fetched) -> Result<PlanningPass, SourceError> {
        let mut pass = PlanningPass {
            plan: Plan {
                header_row: self.header_row,
                unknown_columns: self.columns.unknown.clone(),
                warnings: self.columns.warnings.clone(),
                ..Plan::default()
            },
            ..PlanningPass::default()
        };
        let header_row = self.header_row;
        let read = |row: &Row| {
            (row.number > header_row).then(|| RowReading {
                // Planning keeps keys, not values: they are dropped where read.
                values: Vec::new(),
                ..self.read_cells(row, true)
            })
        };
        pass.plan.blank_rows = parallel::read_rows(source.rows()?, &read, |row, reading| {
            if let Some(reading) = reading {
                self.add_reading(row, reading, &mut pass);
            }
        })?;
        Ok(pass)
    }

    /// Adds what was read from a row to the pass, in the order a person
    /// reads the row: values under unnamed columns, then each cell, then
    /// whether the row is imported and which row its key's record is.
    fn add_reading(&self, row: &Row, reading: RowReading<'p>, pass: &mut PlanningPass) {
        pass.plan.rows_read += 1;
        warn_about_ignored_values(&self.columns, row, &mut pass.plan.warnings);
        for note in reading.notes {
            self.add_note(row, note, pass);
        }
        let Some(key) = reading.key else {
            pass.plan.rejected.push(RowIssue {
                row: row.number,
                column: None,
                value: None,
                reason: format!(
                    "no {}: the row cannot be identified, so it was not imported",
                    reading.missing.join(" and no ")
                ),
            });
            return;
        };
        let winner = Winner {
            row: row.number,
            link: reading.link,
        };
        if let Some(previous) = pass.plan.winners.insert(key, winner) {
            pass.plan.duplicates.push(Duplicate {
                row: previous.row,
                superseded_by: row.number,
            });
        }
    }

    /// Per profile field, the header of the column it is read from, or
    /// `None` when the source has no such column.
    pub fn column_headers(&self) -> Vec<Option<String>> {
        (0..self.profile.fields.len())
            .map(|field| self.columns.of_field(field).map(|(_, header)| header.to_owned()))
            .collect()
    }

    /// A later pass: the winning records, in source order.
    pub fn winners<'a>(&'a self, plan: &'a Plan, rows: RowReader<'a>) -> Winners<'a, 'p> {
        Winners {
            mapper: self,
            plan,
            rows,
        }
    }
}

/// The winning records of one pass; see [`Mapper::winners`].
pub struct Winners<'a, 'p> {
    mapper: &'a Mapper<'p>,
    plan: &'a Plan,
    rows: RowReader<'a>,
}

impl<'p> Winners<'_, 'p> {
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
            if let Some(values) = self.mapper.winner_values(row, self.plan) {
                return Some(Ok(values));
            }
        }
    }
}

impl<'p> Mapper<'p> {
    /// The row's values, if it is the row its key's record is read from.
    fn winner_values(&self, row: &Row, plan: &Plan) -> Option<RecordValues<'p>> {
        if row.number <= self.header_row {
            return None;
        }
        let (values, key) = self.read_row(row)?;
        if plan.winners.get(&key).map(|winner| winner.row) != Some(row.number) {
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
        plan: &Plan,
        rows: RowReader<'_>,
        prepare: &(dyn Fn(&RecordValues<'p>) -> T + Sync),
        mut each: impl FnMut(RecordValues<'p>, T),
    ) -> Result<usize, SourceError> {
        let make = |values: RecordValues<'p>| {
            let prepared = prepare(&values);
            (values, prepared)
        };
        self.each_winner(plan, rows, &make, |(values, prepared)| each(values, prepared))
    }

    /// [`Mapper::each_winner_values`], each record with its document built
    /// (on the worker threads too).
    pub fn each_winner_record(
        &self,
        plan: &Plan,
        rows: RowReader<'_>,
        each: impl FnMut(MappedRecord),
    ) -> Result<usize, SourceError> {
        self.each_winner(plan, rows, &|values| self.record(values), each)
    }

    /// The winning rows of a pass, each made into a `T` on the reading
    /// threads and handed to `each` in source order; how many there were.
    fn each_winner<T: Send>(
        &self,
        plan: &Plan,
        rows: RowReader<'_>,
        make: &(dyn Fn(RecordValues<'p>) -> T + Sync),
        mut each: impl FnMut(T),
    ) -> Result<usize, SourceError> {
        let mut found = 0;
        let read = |row: &Row| self.winner_values(row, plan).map(make);
        parallel::read_rows(rows, &read, |_, made| {
            if let Some(made) = made {
                found += 1;
                each(made);
            }
        })?;
        Ok(found)
    }
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
    unreadable: Vec<String>,
    profile: &'p TargetProfile,
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

impl<'p> Mapper<'p> {
    /// The record of a row's values, fields named as the profile names them.
    fn record(&self, read: RecordValues<'_>) -> MappedRecord {
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
    fn unreadable(&self, row: &Row, values: &[Bson]) -> Vec<String> {
        self.profile
            .fields
            .iter()
            .enumerate()
            .filter(|(index, _)| values[*index] == Bson::Null)
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
    fn read_row(&self, row: &Row) -> Option<(Vec<Bson>, String)> {
        let reading = self.read_cells(row, false);
        Some((reading.values, reading.key?))
    }

    /// Converts every cell of the row (each into its field's type; an
    /// unreadable value becomes null). With `notes`, also keeps what each
    /// cell shows about the source's conventions and its problems, for a
    /// planning pass to add up. Depends on nothing but the row, so that it
    /// runs on any thread.
    fn read_cells(&self, row: &Row, notes: bool) -> RowReading<'p> {
        let mut reading = RowReading {
            values: Vec::with_capacity(self.profile.fields.len()),
            key: None,
            link: None,
            missing: Vec::new(),
            notes: Vec::new(),
        };
        for (index, spec) in self.profile.fields.iter().enumerate() {
            let value = match self.columns.of_field(index) {
                Some((column, _)) => {
                    let converted = self.convert(index, row.cells.get(column).unwrap_or(&Cell::Empty));
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
            if spec.required && value == Bson::Null {
                reading.missing.push(spec.name.as_str());
            }
            reading.values.push(value);
        }
        derive_fields(self.profile, &mut reading.values, self.zone);
        if reading.missing.is_empty() {
            let values = &reading.values;
            reading.key = Some(fold_key(self.profile.key.iter().map(|name| {
                let index = self.profile.field_index(name);
                index.and_then(|index| values.get(index))
            })));
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

    /// Adds what one cell showed to a planning pass: its evidence about the
    /// conventions, and its problem as a warning (or, while the conventions
    /// are not decided, set aside to be judged once they are).
    fn add_note(&self, row: &Row, note: CellNote, pass: &mut PlanningPass) {
        let CellNote { field, clue, problem } = note;
        let Some((column, header)) = self.columns.of_field(field) else {
            return;
        };
        let cell = row.cells.get(column).unwrap_or(&Cell::Empty);
        let example = || Example {
            row: row.number,
            column: header.to_owned(),
            value: text_of(cell),
        };
        if let Some(clue) = clue {
            pass.evidence.record(field, clue, example);
        }
        let reason = match problem {
            None => None,
            Some(Problem::Unknown(reason)) => Some(reason),
            Some(Problem::Unreadable(reason)) => Some(format!("{reason}; {}", self.unreadable_outcome())),
            Some(Problem::Doubt(doubt)) => {
                let deferred = Deferred {
                    field,
                    cell: example(),
                    doubt,
                };
                if self.conventions.settled {
                    pass.plan.warnings.extend(self.judge(deferred));
                } else if pass.deferred.len() < MAX_DEFERRED {
                    pass.deferred.push(deferred);
                } else {
                    pass.overflowed.insert(deferred.doubt.kind(field));
                }
                None
            }
        };
        if let Some(reason) = reason {
            pass.plan.warnings.push(RowIssue {
                row: row.number,
                column: Some(header.to_owned()),
                value: Some(text_of(cell)),
                reason,
            });
        }
    }

    /// What becomes of an unreadable value: null in a swapped collection;
    /// a merge keeps what the document held.
    fn unreadable_outcome(&self) -> &'static str {
        match self.profile.merge_rules() {
            Some(_) => "the stored value is kept",
            None => "stored as null",
        }
    }

    /// Whether, under the decided conventions, some doubt of `kind` gets a
    /// warning (mirrors [`Mapper::judge`]).
    fn may_warn(&self, kind: &DoubtKind) -> bool {
        match kind {
            DoubtKind::OtherOrder { only } => *only != self.conventions.date_order,
            DoubtKind::DecimalMark { field } => self.conventions.decimal_mark(*field).1.is_some(),
        }
    }

    /// The warning a doubtful reading deserves under the decided
    /// conventions, if any.
    fn judge(&self, deferred: Deferred) -> Option<RowIssue> {
        let Deferred { field, cell, doubt } = deferred;
        let reason = match doubt {
            Doubt::OtherOrder { only, reading } => {
                let order = self.conventions.date_order;
                if only == order {
                    return None;
                }
                format!(
                    "read {} this is no date, read {} it is {reading}; this source's dates are read {} (see the \
                     report's date order), so it is {}",
                    order.describe(),
                    only.describe(),
                    order.describe(),
                    self.unreadable_outcome()
                )
            }
            Doubt::DecimalMark(number) => {
                let (mark, origin) = self.conventions.decimal_mark(field);
                let origin = origin?;
                let (dot, comma) = (
                    number.in_convention(values::numbers::DecimalMark::Dot),
                    number.in_convention(values::numbers::DecimalMark::Comma),
                );
                format!(
                    "ambiguous: {dot} if `.` is the decimal mark, {comma} if `,` is; this column's other values do \
                     not show which, so it was read as {} ({origin})",
                    number.in_convention(mark)
                )
            }
        };
        Some(RowIssue {
            row: cell.row,
            column: Some(cell.column),
            value: Some(cell.value),
            reason,
        })
    }
}

/// The record's identity: each key field folded (client names compared
/// trimmed and case- and whitespace-insensitively), joined by a separator that
/// cannot occur in them.
pub fn record_key(profile: &TargetProfile, fields: &Document) -> String {
    fold_key(profile.key.iter().map(|name| fields.get(name)))
}

fn fold_key<'a>(parts: impl Iterator<Item = Option<&'a Bson>>) -> String {
    parts
        .map(|value| match value {
            Some(Bson::String(text)) => fold_key_text(text),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join(KEY_SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::csv::CsvSource;
    use crate::source::table::Table;
    use chrono::Utc;
    use conventions::DateOrderSetting;
    use convert::to_bson_date;
    use header::column_letters;
    use sales::SALES_RECORDS;

    /// Both passes over a source, as the sync makes them.
    struct Mapping {
        header_row: usize,
        rows_read: usize,
        records: Vec<MappedRecord>,
        duplicates: Vec<Duplicate>,
        rejected: Vec<RowIssue>,
        warnings: Vec<RowIssue>,
        unknown_columns: Vec<String>,
        date_order: Option<DateOrderDecision>,
        notices: Vec<String>,
        planning_passes: usize,
    }

    fn map_fetched(fetched: Fetched) -> Result<Mapping, PlanError> {
        map_fetched_with(fetched, DateOrderSetting::Auto)
    }

    /// As the default configuration reads: date-times in Europe/Paris.
    fn map_fetched_with(fetched: Fetched, date_order: DateOrderSetting) -> Result<Mapping, PlanError> {
        let settings = ReadSettings {
            date_order,
            time_zone: chrono_tz::Europe::Paris,
        };
        let (mapper, plan) = plan(&SALES_RECORDS, &fetched, &settings)?;
        let mut winners = mapper.winners(&plan, fetched.rows()?);
        let mut records = Vec::new();
        while let Some(record) = winners.next_record() {
            records.push(record?);
        }
        Ok(Mapping {
            header_row: plan.header_row,
            rows_read: plan.rows_read,
            records,
            duplicates: plan.duplicates,
            rejected: plan.rejected,
            warnings: plan.warnings,
            unknown_columns: plan.unknown_columns,
            date_order: plan.date_order,
            notices: plan.notices,
            planning_passes: plan.planning_passes,
        })
    }

    fn map_csv(text: &str) -> Mapping {
        map_csv_with(text, DateOrderSetting::Auto)
    }

    fn map_csv_with(text: &str, date_order: DateOrderSetting) -> Mapping {
        let source = CsvSource::from_bytes(text.as_bytes().to_vec(), "test");
        map_fetched_with(Fetched::Csv(source), date_order).unwrap()
    }

    /// Each record's value of `name`, in source order.
    fn column(mapping: &Mapping, name: &str) -> Vec<Bson> {
        mapping
            .records
            .iter()
            .map(|record| record.fields.get(name).cloned().unwrap_or(Bson::Null))
            .collect()
    }

    fn warned_rows(mapping: &Mapping) -> Vec<(usize, &str)> {
        mapping
            .warnings
            .iter()
            .map(|warning| (warning.row, warning.column.as_deref().unwrap_or("")))
            .collect()
    }

    fn date(year: i32, month: u32, day: u32) -> Bson {
        bson_date(year, month, day, 0, 0)
    }

    #[test]
    fn a_us_sheet_is_read_month_first_from_its_own_dates() {
        let mapping = map_csv("Client,Stage,Discovery date,POA date\nA,Lost,1/13/2025,2/1/2025\nB,Lost,2/1/2025,\n");
        assert_eq!(
            column(&mapping, "discovery_date"),
            [date(2025, 1, 13), date(2025, 2, 1)]
        );
        assert_eq!(column(&mapping, "poa_date"), [date(2025, 2, 1), Bson::Null]);
        assert_eq!(mapping.warnings, []);
        let decision = mapping.date_order.unwrap();
        assert_eq!(decision.order, DateOrder::MonthFirst);
        assert!(
            decision
                .reason
                .contains("1 value(s) only read month-first (e.g. \"1/13/2025\" at row 2"),
            "{}",
            decision.reason
        );
    }

    #[test]
    fn dates_against_the_decided_order_are_reported_with_both_readings() {
        // Day-first wins 2 to 1: the month-first-only date is not guessed.
        let mapping = map_csv("Client,Stage,Discovery date\nA,Lost,13/01/2025\nB,Lost,1/14/2025\nC,Lost,14/01/2025\n");
        assert_eq!(
            column(&mapping, "discovery_date"),
            [date(2025, 1, 13), Bson::Null, date(2025, 1, 14)]
        );
        assert_eq!(warned_rows(&mapping), [(3, "Discovery date")]);
        let reason = &mapping.warnings[0].reason;
        assert!(
            reason.contains("read day-first this is no date, read month-first it is 2025-01-14"),
            "{reason}"
        );
        // Month-first wins: the pass assumed day-first, so it is made again.
        let mapping = map_csv(
            "Client,Stage,Discovery date\nA,Lost,1/13/2025\nB,Lost,14/01/2025\nC,Lost,1/14/2025\nD,Lost,2/1/2025\n",
        );
        assert_eq!(
            column(&mapping, "discovery_date"),
            [date(2025, 1, 13), Bson::Null, date(2025, 1, 14), date(2025, 2, 1)]
        );
        assert_eq!(warned_rows(&mapping), [(3, "Discovery date")]);
        assert!(mapping.warnings[0].reason.contains("read day-first it is 2025-01-14"));
    }

    #[test]
    fn a_month_derived_from_a_moment_is_its_date_in_the_configured_zone() {
        // 00:30 in Paris on 1 February is still 31 January in UTC.
        let mapping = map_csv("Client,Stage,Discovery date\nA,Lost,2025-02-01 00:30\nB,Lost,01/02/2025\n");
        assert_eq!(
            column(&mapping, "discovery_date"),
            [bson_date(2025, 1, 31, 23, 30), date(2025, 2, 1)]
        );
        assert_eq!(
            column(&mapping, "month"),
            [Bson::from("2025-02"), Bson::from("2025-02")]
        );
    }

    #[test]
    fn a_spreadsheet_on_another_clock_is_noticed() {
        let mut table = Table {
            serial_time_zone: Some(chrono_tz::America::New_York),
            ..Table::default()
        };
        table.push_row(
            1,
            vec![Cell::text("Client"), Cell::text("Stage"), Cell::text("Discovery date")],
        );
        table.push_row(2, vec![Cell::text("A"), Cell::text("Lost"), Cell::Number(45667.5)]);
        let mapping = map_fetched(Fetched::Table(table)).unwrap();
        assert_eq!(
            column(&mapping, "discovery_date"),
            [bson_date(2025, 1, 10, 11, 0)],
            "noon in Paris"
        );
        assert_eq!(mapping.notices.len(), 1);
        assert!(mapping.notices[0].contains("America/New_York"), "{:?}", mapping.notices);
    }

    #[test]
    fn a_configured_order_wins_over_the_data() {
        let mapping = map_csv_with(
            "Client,Stage,Discovery date\nA,Lost,13/01/2025\nB,Lost,2/1/2025\n",
            DateOrderSetting::Mdy,
        );
        assert_eq!(column(&mapping, "discovery_date"), [Bson::Null, date(2025, 2, 1)]);
        assert_eq!(warned_rows(&mapping), [(2, "Discovery date")]);
        assert!(mapping.date_order.unwrap().reason.contains("date_order = \"mdy\""));
    }

    #[test]
    fn undecided_dates_are_read_day_first_with_one_warning() {
        let mapping = map_csv("Client,Stage,Discovery date\nA,Lost,2025-01-20\nB,Lost,2/1/2025\nC,Lost,3/1/2025\n");
        assert_eq!(
            column(&mapping, "discovery_date"),
            [date(2025, 1, 20), date(2025, 1, 2), date(2025, 1, 3)]
        );
        assert_eq!(warned_rows(&mapping), [(3, "Discovery date")], "{:?}", mapping.warnings);
        assert!(mapping.warnings[0].reason.starts_with("2 date(s) of this source"));
        assert!(
            mapping
                .date_order
                .unwrap()
                .reason
                .contains("no date in the source shows the order")
        );
    }

    #[test]
    fn ambiguous_amounts_follow_their_column_then_the_source() {
        // Expected MRR proves `,` decimals; Pipeline has no proof of its own.
        let mapping = map_csv(
            "Client,Stage,Expected MRR,Pipeline,Expected ARR\nA,Lost,\"1.234,56\",5.000,\nB,Lost,5.000,,7.500\n",
        );
        assert_eq!(
            column(&mapping, "expected_mrr"),
            [Bson::Double(1234.56), Bson::Double(5000.0)]
        );
        assert_eq!(column(&mapping, "pipeline"), [Bson::Double(5000.0), Bson::Null]);
        assert_eq!(column(&mapping, "expected_arr"), [Bson::Null, Bson::Double(7500.0)]);
        assert_eq!(warned_rows(&mapping), [(2, "Pipeline"), (3, "Expected ARR")]);
        assert!(
            mapping.warnings[0]
                .reason
                .contains("5 if `.` is the decimal mark, 5000 if `,` is"),
            "{:?}",
            mapping.warnings
        );
        assert!(mapping.warnings[0].reason.contains("other number columns"));
        // Nothing anywhere decides: `.` stays the decimal mark, with a warning.
        let mapping = map_csv("Client,Stage,Pipeline\nA,Lost,5.000\n");
        assert_eq!(column(&mapping, "pipeline"), [Bson::Double(5.0)]);
        assert!(mapping.warnings[0].reason.contains("the default"));
    }

    #[test]
    fn more_doubts_than_can_be_set_aside_are_judged_on_a_second_pass() {
        let mut text = String::from("Client,Stage,Pipeline\n");
        for index in 0..=MAX_DEFERRED {
            text.push_str(&format!("C{index},Lost,5.000\n"));
        }
        let undecided = map_csv(&text);
        assert_eq!(
            undecided.warnings.len(),
            MAX_DEFERRED + 1,
            "every ambiguous value is reported"
        );
        assert_eq!(
            undecided.warnings.last().map(|warning| warning.row),
            Some(MAX_DEFERRED + 2)
        );
        assert_eq!(undecided.planning_passes, 2);
        text.push_str("Last,Lost,\"1,5\"\n");
        let decided = map_csv(&text);
        assert_eq!(decided.records.len(), MAX_DEFERRED + 2);
        assert_eq!(decided.records[0].fields.get("pipeline"), Some(&Bson::Double(5000.0)));
        assert_eq!(decided.warnings, [], "the column decides every one of them");
        assert_eq!(
            decided.planning_passes, 1,
            "no doubt past the ones set aside can warn: no second pass"
        );
        // A US sheet: the order decided differs from the first pass's.
        let us = map_csv("Client,Stage,Discovery Date\nA,Lost,12/31/2025\nB,Lost,01/02/2025\n");
        assert_eq!(us.planning_passes, 2);
    }

    fn mapping_error(fetched: Fetched) -> MappingError {
        match map_fetched(fetched) {
            Err(PlanError::Mapping(error)) => error,
            other => panic!(
                "expected a mapping error, got {:?}",
                other.map(|mapping| mapping.records)
            ),
        }
    }

    fn field<'a>(mapping: &'a Mapping, index: usize, name: &str) -> &'a Bson {
        mapping.records[index].fields.get(name).unwrap()
    }

    #[test]
    fn header_labels_match_loosely_with_aliases() {
        let mapping = map_csv(
            "CLIENT,Étape,Discovery date,Expected MRR,Show/No show,Type of source,Owner (AE),Date POA,Produit,Mystery\n\
             Acme,Lost,2025-01-02,10,no show,inbound,Ann,03/01/2025,SEO,?\n",
        );
        let record = &mapping.records[0].fields;
        assert_eq!(record.get_str("client"), Ok("Acme"));
        assert_eq!(record.get_str("stage"), Ok("Lost"));
        assert_eq!(record.get_str("show_noshow"), Ok("Noshow"));
        assert_eq!(record.get_str("type_of_source"), Ok("Inbound"));
        assert_eq!(record.get_str("owner"), Ok("Ann"));
        assert_eq!(record.get_str("product"), Ok("SEO"));
        assert_eq!(record.get_f64("expected_mrr"), Ok(10.0));
        assert!(record.get_datetime("poa_date").is_ok());
        assert_eq!(mapping.unknown_columns, vec!["Mystery"]);
    }

    #[test]
    fn title_lines_ragged_rows_and_repeated_columns() {
        let mapping = map_csv(
            "Pipeline,,\nexported 2025-03-01\nClient,Stage,MRR,Expected MRR\nAcme,Lost\nGlobex,Lost,5,6,extra\n",
        );
        assert_eq!(mapping.header_row, 3);
        assert_eq!(mapping.records.len(), 2);
        assert_eq!(
            field(&mapping, 0, "expected_mrr"),
            &Bson::Null,
            "short row padded with empties"
        );
        assert_eq!(
            field(&mapping, 1, "expected_mrr"),
            &Bson::Double(5.0),
            "first matching column wins"
        );
        let reasons: Vec<&str> = mapping.warnings.iter().map(|w| w.reason.as_str()).collect();
        assert!(
            reasons.iter().any(|r| r.contains("already read from column \"MRR\"")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("beyond the header's 4 columns")),
            "{reasons:?}"
        );
    }

    #[test]
    fn values_under_an_unnamed_column_are_reported() {
        let mapping = map_csv("Client,,Stage,\nAcme,note,Lost,\nGlobex,,Lost,x\nInitech,,Lost,\n");
        assert_eq!(mapping.records.len(), 3, "the rows themselves are imported");
        let ignored: Vec<(usize, Option<&str>)> = mapping
            .warnings
            .iter()
            .map(|warning| (warning.row, warning.column.as_deref()))
            .collect();
        assert_eq!(ignored, [(2, Some("B")), (3, Some("D"))]);
        assert!(
            mapping.warnings[0].reason.contains("name the column"),
            "{:?}",
            mapping.warnings
        );
        assert_eq!(
            [0, 25, 26, 51, 52, 701, 702].map(column_letters),
            ["A", "Z", "AA", "AZ", "BA", "ZZ", "AAA"]
        );
    }

    #[test]
    fn every_value_rule() {
        // (column, cell, field, expected value, whether a warning is expected)
        let cases: &[(&str, &str, &str, Bson, bool)] = &[
            (
                "Discovery Date",
                "2025-01-10",
                "discovery_date",
                bson_date(2025, 1, 10, 0, 0),
                false,
            ),
            // Alone in its source, a date whose day is 12 or less is read
            // day-first with a warning that nothing decided the order.
            (
                "Discovery Date",
                "10/01/2025",
                "discovery_date",
                bson_date(2025, 1, 10, 0, 0),
                true,
            ),
            (
                "Discovery Date",
                "10/01/25",
                "discovery_date",
                bson_date(2025, 1, 10, 0, 0),
                true,
            ),
            (
                "Discovery Date",
                "13/01/25",
                "discovery_date",
                bson_date(2025, 1, 13, 0, 0),
                false,
            ),
            // Wall-clock times are read in [sync] time_zone (Paris: UTC+1
            // in January); offsets are kept.
            (
                "Discovery Date",
                "2025-01-10 14:30",
                "discovery_date",
                bson_date(2025, 1, 10, 13, 30),
                false,
            ),
            (
                "Discovery Date",
                "2025-01-10T14:30:00Z",
                "discovery_date",
                bson_date(2025, 1, 10, 14, 30),
                false,
            ),
            ("Pipeline", "12%", "pipeline", Bson::Double(0.12), false),
            ("Discovery Date", "someday", "discovery_date", Bson::Null, true),
            (
                "POA Date",
                "31/12/2024",
                "poa_date",
                bson_date(2024, 12, 31, 0, 0),
                false,
            ),
            (
                "Billing Start",
                "2025-02-01",
                "billing_start",
                bson_date(2025, 2, 1, 0, 0),
                false,
            ),
            ("Expected MRR", "5000", "expected_mrr", Bson::Double(5000.0), false),
            ("Expected MRR", "5,000.50", "expected_mrr", Bson::Double(5000.5), false),
            (
                "Expected ARR",
                "5 000,50 €",
                "expected_arr",
                Bson::Double(5000.5),
                false,
            ),
            ("Pipeline", "€5,000", "pipeline", Bson::Double(5000.0), false),
            ("Pipeline", "(1,200)", "pipeline", Bson::Double(-1200.0), false),
            ("Pipeline", "a lot", "pipeline", Bson::Null, true),
            (
                "Show/Noshow",
                "NO-SHOW",
                "show_noshow",
                Bson::String("Noshow".into()),
                false,
            ),
            (
                "Show/Noshow",
                "maybe",
                "show_noshow",
                Bson::String("maybe".into()),
                true,
            ),
            (
                "Type of Source",
                "client referral",
                "type_of_source",
                Bson::String("Client referral".into()),
                false,
            ),
            (
                "Type of Source",
                "Webinar",
                "type_of_source",
                Bson::String("Webinar".into()),
                true,
            ),
            ("Month", "janv.-25", "month", Bson::String("2025-01".into()), false),
            ("Month", "2025-03", "month", Bson::String("2025-03".into()), false),
            ("Month", "later", "month", Bson::Null, true),
            ("Relevance", "  High ", "relevance", Bson::String("High".into()), false),
            ("Relevance", "", "relevance", Bson::Null, false),
        ];
        for (column, cell, name, expected, warns) in cases {
            let mapping = map_csv(&format!("Client,Stage,{column}\nAcme,Lost,\"{cell}\"\n"));
            assert_eq!(field(&mapping, 0, name), expected, "{column} = {cell:?}");
            assert_eq!(
                !mapping.warnings.is_empty(),
                *warns,
                "{column} = {cell:?}: {:?}",
                mapping.warnings
            );
            if let Some(warning) = mapping.warnings.first() {
                assert_eq!((warning.row, warning.column.as_deref()), (2, Some(*column)));
                assert_eq!(warning.value.as_deref(), Some(*cell));
            }
        }
    }

    #[test]
    fn stage_is_canonical_and_month_derives_from_discovery_date() {
        let mapping = map_csv("Client,Stage,Discovery date\nAcme,b - legals,15/03/2025\nBeta,legals,\n");
        assert_eq!(field(&mapping, 0, "stage"), &Bson::String("B Legals".into()));
        assert_eq!(field(&mapping, 0, "month"), &Bson::String("2025-03".into()));
        assert_eq!(field(&mapping, 1, "month"), &Bson::Null);
    }

    #[test]
    fn only_rows_without_client_or_stage_are_rejected() {
        let mapping = map_csv("Client,Stage,Owner\n,Lost,Ann\nAcme,,Ann\n ,  ,Ann\nBeta,Lost,\n");
        assert_eq!(mapping.rows_read, 4);
        assert_eq!(mapping.records.len(), 1);
        let rejected: Vec<(usize, &str)> = mapping.rejected.iter().map(|r| (r.row, r.reason.as_str())).collect();
        assert_eq!(rejected.len(), 3);
        assert!(rejected[0].1.starts_with("no client:"), "{rejected:?}");
        assert!(rejected[1].1.starts_with("no stage:"), "{rejected:?}");
        assert!(rejected[2].1.starts_with("no client and no stage:"), "{rejected:?}");
        assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 3, 4]);
    }

    #[test]
    fn duplicates_by_client_and_stage_last_row_wins() {
        let mapping = map_csv(
            "Client,Stage,Expected MRR\nAcme Corp,B Legals,1\nAcme Corp,Lost,2\n  acme   CORP ,legals,3\nGlobex,Lost,4\n",
        );
        assert_eq!(mapping.records.len(), 3);
        let rows: Vec<usize> = mapping.records.iter().map(|record| record.row).collect();
        assert_eq!(rows, vec![3, 4, 5], "winners come in source order");
        assert_eq!(field(&mapping, 1, "expected_mrr"), &Bson::Double(3.0));
        assert_eq!(field(&mapping, 1, "client"), &Bson::String("acme   CORP".into()));
        assert_eq!(
            mapping.duplicates,
            vec![Duplicate {
                row: 2,
                superseded_by: 4
            }]
        );
    }

    #[test]
    fn missing_required_header_names_the_columns_found() {
        let source = CsvSource::from_bytes(b"Title\nFirm,Phase,Owner\nAcme,Lost,Ann\n".to_vec(), "test");
        let error = mapping_error(Fetched::Csv(source));
        assert_eq!(
            error,
            MappingError::MissingRequiredColumns {
                row: 2,
                missing: "client, stage".into(),
                found: "\"Firm\", \"Phase\", \"Owner\"".into(),
            }
        );
        assert_eq!(
            mapping_error(Fetched::Table(Table::default())),
            MappingError::EmptySource
        );
    }

    #[test]
    fn a_missing_header_error_quotes_only_short_header_cells() {
        let line = format!(
            "root:x:0:0:root:/root:/bin/bash,{}\n",
            (0..40).map(|n| format!("c{n}")).collect::<Vec<_>>().join(",")
        );
        let source = CsvSource::from_bytes(format!("{line}second line secret\n").into_bytes(), "test");
        let MappingError::MissingRequiredColumns { found, .. } = mapping_error(Fetched::Csv(source)) else {
            panic!("expected a missing header");
        };
        assert!(found.starts_with("\"root:x:0:0:root:/root:/b…\""), "{found}");
        assert!(found.ends_with("\"c28\", …"), "{found}");
        assert!(!found.contains("secret"));
    }

    #[test]
    fn typed_cells_from_spreadsheets() {
        let mut table = Table {
            serial_time_zone: Some(chrono_tz::Europe::Paris),
            ..Table::default()
        };
        let text = |value: &str| Cell::Text(value.to_owned());
        table.push_row(
            1,
            vec![
                text("Client"),
                text("Stage"),
                text("Discovery date"),
                text("Expected MRR"),
                text("Month"),
            ],
        );
        table.push_row(
            2,
            vec![
                Cell::Number(42.0),
                text("Lost"),
                Cell::Number(45667.0),
                Cell::Number(1250.5),
                Cell::Number(45667.0),
            ],
        );
        table.push_row(3, vec![text("Beta"), text("Lost"), Cell::Bool(true)]);
        let mapping = map_fetched(Fetched::Table(table)).unwrap();
        assert_eq!(field(&mapping, 0, "client"), &Bson::String("42".into()));
        assert_eq!(field(&mapping, 0, "discovery_date"), &bson_date(2025, 1, 10, 0, 0));
        assert_eq!(field(&mapping, 0, "expected_mrr"), &Bson::Double(1250.5));
        assert_eq!(field(&mapping, 0, "month"), &Bson::String("2025-01".into()));
        assert_eq!(field(&mapping, 1, "discovery_date"), &Bson::Null);
        assert_eq!(mapping.warnings.len(), 1, "{:?}", mapping.warnings);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// A sheet written in one convention (day/month order, decimal
        /// mark) maps back to the dates and amounts that were written, with
        /// no warning, whatever the order its rows come in. Its first row is
        /// dated the 25th, which shows the order as any real sheet soon does.
        #[test]
        fn a_sheet_in_one_convention_maps_back_to_its_values(
            rows in proptest::collection::vec((0i64..40_000, -100_000_000i64..100_000_000), 1..20),
            month_first in proptest::prelude::any::<bool>(),
            comma_decimals in proptest::prelude::any::<bool>(),
        ) {
            let write_date = |date: chrono::NaiveDate| match month_first {
                true => date.format("%-m/%-d/%Y").to_string(),
                false => date.format("%d/%m/%Y").to_string(),
            };
            let write_amount = |cents: i64| {
                let text = format!("{}.{:02}", cents / 100, (cents % 100).abs());
                let text = if cents < 0 && cents > -100 { format!("-{text}") } else { text };
                if comma_decimals { format!("\"{}\"", text.replace('.', ",")) } else { text }
            };
            let first = chrono::NaiveDate::from_ymd_opt(2025, 1, 25).unwrap();
            let epoch = chrono::NaiveDate::from_ymd_opt(1960, 1, 1).unwrap();
            let mut csv = format!("Client,Stage,Discovery date,Pipeline\nC,Lost,{},1\n", write_date(first));
            let mut expected = Vec::new();
            for (index, (days, cents)) in rows.iter().enumerate() {
                let date = epoch + chrono::Duration::days(*days);
                csv.push_str(&format!("C{index},Lost,{},{}\n", write_date(date), write_amount(*cents)));
                expected.push((Bson::DateTime(crate::bson_dates::to_bson_date(values::midnight_utc(date))), Bson::Double(*cents as f64 / 100.0)));
            }
            let mapping = map_csv(&csv);
            proptest::prop_assert_eq!(&mapping.warnings, &[]);
            let read: Vec<(Bson, Bson)> = column(&mapping, "discovery_date")
                .into_iter()
                .zip(column(&mapping, "pipeline"))
                .skip(1)
                .collect();
            proptest::prop_assert_eq!(read, expected, "{}", csv);
        }
    }

    fn bson_date(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> Bson {
        use chrono::TimeZone;
        to_bson_date(Utc.with_ymd_and_hms(year, month, day, hour, minute, 0).unwrap())
    }
}
