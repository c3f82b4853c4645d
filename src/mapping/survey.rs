//! The survey: the first pass over a source. It finds the header, reads
//! every row once to collect problems, duplicate keys and the source's
//! conventions, and keeps keys only, so that later passes rebuild the
//! records instead of holding them.

use std::collections::HashSet;

use super::conventions::{Conventions, DateOrderDecision, Evidence, Example, ReadSettings};
use super::convert::{Doubt, Problem, text_of};
use super::error::SurveyError;
use super::header::{Columns, FieldLabels, find_header, resolve_columns, warn_about_ignored_values};
use super::mapper::Mapper;
use super::parallel;
use super::profile::{FieldKind, TargetProfile};
use super::record::{Duplicate, HeaderColumn, KeyMap, RowIssue, Winner, filled_bits};
use super::row::{CellNote, RowReading};
use super::values;
use super::values::dates::DateOrder;
use crate::concurrency::Threading;
use crate::progress::{Phase, Progress};
use crate::source::table::{Cell, Row};
use crate::source::{SourceError, SourceRows};

/// How many readings the first planning pass sets aside until the source's
/// conventions are known; a source with more is simply planned again once
/// they are.
pub(super) const MAX_DEFERRED: usize = 10_000;

/// The most keys a survey reserves room for before reading: the rows
/// expected are a guess, and a source with more grows its map as it fills.
const MAX_RESERVED_KEYS: usize = 1_000_000;

/// What the first pass over a source learned: where the header is, every
/// problem with the rows, and which row wins for each key. Only keys are
/// kept, so the records themselves can be rebuilt in a later pass instead of
/// being held in memory.
#[derive(Debug, Default)]
pub struct Survey {
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
    /// Every labelled column of the header, in order, with its field.
    pub header: Vec<HeaderColumn>,
    /// The day/month order numeric dates were read in, and why.
    pub date_order: Option<DateOrderDecision>,
    /// Facts about the whole source worth telling its editor.
    pub notices: Vec<String>,
    /// Passes the planning read the source in: 1, or 2 when the decided
    /// conventions changed what the first pass would have reported.
    pub survey_passes: usize,
    /// How the planning passes read their rows (inline or on threads).
    pub threading: Threading,
}

/// The header of `source` as `profile` reads it: its row, and each labelled
/// column with the field it feeds (what `sheetsync check` shows), without
/// reading the rows below it.
pub fn header_of(profile: &TargetProfile, source: &SourceRows) -> Result<(usize, Vec<HeaderColumn>), SurveyError> {
    let (row, columns) = read_header(profile, source)?;
    Ok((row, columns.header))
}

/// The header row's number and which column feeds which field.
fn read_header(profile: &TargetProfile, source: &SourceRows) -> Result<(usize, Columns), SurveyError> {
    let labels = FieldLabels::new(profile);
    let header = find_header(profile, &labels, source)?;
    let columns = resolve_columns(profile, &labels, &header)?;
    Ok((header.number, columns))
}

/// First pass: finds the header, reads every row once to collect problems,
/// duplicate keys and the source's conventions (date order, decimal marks),
/// and returns the mapper for the later passes.
///
/// The conventions are only known at the end of the pass, so readings that
/// depend on them are set aside and judged then. When the date order turns
/// out to differ from the one assumed (a US sheet), or too many readings
/// were set aside, the pass is made once more with the decided conventions.
pub fn survey<'p>(
    profile: &'p TargetProfile,
    source: &SourceRows,
    settings: &ReadSettings,
    progress: &Progress,
) -> Result<(Mapper<'p>, Survey), SurveyError> {
    let date_order = settings.date_order;
    let (header_row, columns) = read_header(profile, source)?;
    let lookups = profile
        .fields
        .iter()
        .map(|field| match &field.kind {
            FieldKind::Enum(allowed) => Some(allowed.lookup()),
            _ => None,
        })
        .collect();
    let serial_zone = match (settings.zone_is_the_syncs, source.serial_time_zone()) {
        (false, Some(sheet_zone)) => sheet_zone,
        _ => settings.time_zone,
    };
    let link_field = profile
        .identity_link
        .as_deref()
        .and_then(|name| profile.field_index(name));
    let mut mapper = Mapper {
        profile,
        zone: settings.time_zone,
        serial_zone,
        header_row,
        columns,
        lookups,
        conventions: Conventions::provisional(date_order),
        link_field,
        key_fields: profile.key.iter().map(|name| profile.field_index(name)).collect(),
        survey_values: values_a_survey_reads(profile, link_field),
    };
    let mut pass = mapper.survey_pass(source, progress)?;
    let (conventions, decision) = Conventions::decide(date_order, &pass.evidence);
    mapper.conventions = conventions;
    // The keys, and so the survey's winners, do not depend on the conventions
    // (see `read_row`): a second pass is only needed for warnings, when the
    // date order changed or a doubt that was not set aside may deserve one.
    let replan = decision.order != Conventions::provisional(date_order).date_order
        || pass.overflowed.iter().any(|kind| mapper.may_warn(kind));
    if replan {
        pass = mapper.survey_pass(source, progress)?;
    } else {
        for deferred in std::mem::take(&mut pass.deferred) {
            if let Some(warning) = mapper.judge(deferred) {
                pass.survey.warnings.push(warning);
            }
        }
        pass.survey.warnings.sort_by_key(|warning| warning.row);
    }
    let mut survey = pass.survey;
    survey.survey_passes = if replan { 2 } else { 1 };
    if let (true, Some(example)) = (decision.guessed, &pass.evidence.either_order.first) {
        let at = survey.warnings.partition_point(|warning| warning.row <= example.row);
        survey
            .warnings
            .insert(at, guessed_order_warning(&decision, &pass.evidence, example));
    }
    survey.date_order = Some(decision);
    if let Some(sheet_zone) = source.serial_time_zone().filter(|zone| *zone != settings.time_zone) {
        survey.notices.push(match settings.zone_is_the_syncs {
            false => format!(
                "the spreadsheet's time zone is {sheet_zone}: its date-times were read in it, and date-times \
                 written as text in {} (the configured time_zone), as its CSV export would be",
                settings.time_zone
            ),
            true => format!(
                "the spreadsheet's time zone is {sheet_zone}, but this sync's time_zone {} was used for all its \
                 date-times",
                settings.time_zone
            ),
        });
    }
    Ok((mapper, survey))
}

/// The fields whose values a survey reads (see `Mapper::survey_values`).
fn values_a_survey_reads(profile: &TargetProfile, link_field: Option<usize>) -> u128 {
    let derived_from = profile.fields.iter().filter_map(|spec| match &spec.kind {
        FieldKind::Month {
            derive_from: Some(source),
        } => Some(source),
        _ => None,
    });
    let by_name = profile
        .key
        .iter()
        .chain(derived_from)
        .filter_map(|name| profile.field_index(name));
    filled_bits(
        (0..profile.fields.len()).map(|index| link_field == Some(index) || by_name.clone().any(|field| field == index)),
    )
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
struct SurveyPass {
    survey: Survey,
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

/// The kind of a doubt about field `field`.
fn kind_of(doubt: &Doubt, field: usize) -> DoubtKind {
    match doubt {
        Doubt::OtherOrder { only, .. } => DoubtKind::OtherOrder { only: *only },
        Doubt::DecimalMark(_) => DoubtKind::DecimalMark { field },
    }
}

/// A reading whose verdict depends on conventions not decided yet.
#[derive(Debug)]
struct Deferred {
    field: usize,
    cell: Example,
    doubt: Doubt,
}

impl<'p> Mapper<'p> {
    fn survey_pass(&self, source: &SourceRows, progress: &Progress) -> Result<SurveyPass, SourceError> {
        progress.next(Phase::Mapping, None);
        let mut pass = SurveyPass {
            survey: Survey {
                header_row: self.header_row,
                unknown_columns: self.columns.unknown.clone(),
                header: self.columns.header.clone(),
                warnings: self.columns.warnings.clone(),
                ..Survey::default()
            },
            ..SurveyPass::default()
        };
        // Room for the rows expected spares rehashing the map as it doubles;
        // the guess only sizes it, so a failed reservation changes nothing.
        let expected = source.expected_rows().saturating_sub(self.header_row);
        let _ = pass.survey.winners.try_reserve(expected.min(MAX_RESERVED_KEYS));
        let header_row = self.header_row;
        // Planning keeps keys, not values.
        let read = |row: &Row| (row.number > header_row).then(|| self.survey_cells(row));
        let rows = source.rows()?;
        pass.survey.threading = rows.threading();
        pass.survey.blank_rows = parallel::read_rows(rows, &read, |row, reading| {
            if let Some(reading) = reading {
                self.add_reading(row, reading, &mut pass);
                progress.add(1);
            }
        })?;
        // Many duplicates (or a misleading start) leave the guess too high:
        // the map is kept for the whole sync, so what it does not use goes.
        if pass.survey.winners.capacity() > 2 * pass.survey.winners.len() {
            pass.survey.winners.shrink_to_fit();
        }
        Ok(pass)
    }

    /// Adds what was read from a row to the pass, in the order a person
    /// reads the row: values under unnamed columns, then each cell, then
    /// whether the row is imported and which row its key's record is.
    fn add_reading(&self, row: &Row, reading: RowReading<'p>, pass: &mut SurveyPass) {
        pass.survey.rows_read += 1;
        warn_about_ignored_values(&self.columns, row, &mut pass.survey.warnings);
        for note in reading.notes {
            self.add_note(row, note, pass);
        }
        let Some(key) = reading.key else {
            pass.survey.rejected.push(RowIssue {
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
            filled: reading.filled,
        };
        if let Some(previous) = pass.survey.winners.insert(key, winner) {
            pass.survey.duplicates.push(Duplicate {
                row: previous.row,
                superseded_by: row.number,
            });
        }
    }

    /// Adds what one cell showed to a planning pass: its evidence about the
    /// conventions, and its problem as a warning (or, while the conventions
    /// are not decided, set aside to be judged once they are).
    fn add_note(&self, row: &Row, note: CellNote, pass: &mut SurveyPass) {
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
                    pass.survey.warnings.extend(self.judge(deferred));
                } else if pass.deferred.len() < MAX_DEFERRED {
                    pass.deferred.push(deferred);
                } else {
                    pass.overflowed.insert(kind_of(&deferred.doubt, field));
                }
                None
            }
        };
        if let Some(reason) = reason {
            pass.survey.warnings.push(RowIssue {
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
