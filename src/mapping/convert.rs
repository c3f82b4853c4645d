//! Reading one cell into its field's type, with what it shows about the
//! source's conventions and what is wrong with it.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use mongodb::bson::Bson;

use super::conventions::Clue;
use super::mapper::Mapper;
use super::profile::{FieldKind, TargetProfile};
use super::values;
use super::values::dates::{DateOrder, Reading};
use super::values::numbers::NumberText;
use crate::source::table::Cell;

/// A cell read into its field's type.
pub(super) struct Converted {
    pub(super) value: Bson,
    pub(super) problem: Option<Problem>,
    /// What the cell shows about the source's conventions.
    pub(super) clue: Option<Clue>,
}

impl Converted {
    pub(super) fn value(value: Bson) -> Converted {
        Converted {
            value,
            problem: None,
            clue: None,
        }
    }

    pub(super) fn unreadable(reason: &'static str) -> Converted {
        Converted {
            value: Bson::Null,
            problem: Some(Problem::Unreadable(reason)),
            clue: None,
        }
    }
}

/// Why a cell did not convert cleanly.
pub(super) enum Problem {
    /// Kept as written, with the reason to report.
    Unknown(String),
    /// Not readable as the field's type.
    Unreadable(&'static str),
    /// Read by conventions that may not be decided yet.
    Doubt(Doubt),
}

pub(super) const DATE_EXPECTED: &str =
    "not a date (expected e.g. 2025-01-31, 31/01/2025, 31 Jan 2025 or a date serial)";

/// A reading whose verdict waits for the source's conventions.
#[derive(Debug)]
pub(super) enum Doubt {
    /// A numeric date that is a real date only in `only` order.
    OtherOrder { only: DateOrder, reading: String },
    /// `5.000`: thousands or decimals, by the column's convention.
    DecimalMark(NumberText),
}

impl Mapper<'_> {
    /// Reads `cell` into field `field`'s type. Without `keep`, a text, list
    /// or enum value is read (its problems and whether it holds a value are
    /// the same) but not copied: an empty string or list stands for it.
    pub(super) fn convert(&self, field: usize, cell: &Cell, keep: bool) -> Converted {
        let spec = &self.profile.fields[field];
        let zone = self.zone;
        let kept = |text: &str| match keep {
            true => text.to_owned(),
            false => String::new(),
        };
        match (&spec.kind, cell) {
            (_, Cell::Empty) => Converted::value(Bson::Null),
            (_, Cell::Fault(fault)) => Converted::unreadable(fault.reason()),
            (_, Cell::Link { text, target }) => {
                let shown = match self.link_field == Some(field) {
                    true => target,
                    false => text,
                };
                self.convert(field, &Cell::Text(shown.clone()), keep)
            }
            (FieldKind::Text, cell) => Converted::value(Bson::String(match keep {
                true => text_of(cell),
                false => String::new(),
            })),
            (FieldKind::Date, Cell::Text(text)) => {
                self.in_date_order(values::dates::read_date(text, zone), to_bson_date, DATE_EXPECTED)
            }
            (FieldKind::Month { .. }, Cell::Text(text)) => self.in_date_order(
                values::dates::read_month(text, zone),
                Bson::String,
                "not a month (expected e.g. 2025-01 or janv.-25)",
            ),
            (FieldKind::Month { .. }, Cell::Number(serial)) => match values::dates::serial_date(*serial) {
                Some(date) => Converted::value(Bson::String(values::dates::format_month(date.year(), date.month()))),
                None => Converted::unreadable("not a valid date serial"),
            },
            (FieldKind::Date, Cell::Number(serial)) => {
                match values::dates::serial_to_datetime(*serial, self.serial_zone) {
                    Some(moment) => Converted::value(to_bson_date(moment)),
                    None => Converted::unreadable("not a valid date serial"),
                }
            }
            (FieldKind::Number, Cell::Number(number)) => Converted::value(Bson::Double(*number)),
            (FieldKind::Number, Cell::Text(text)) => self.number(field, text),
            (FieldKind::Integer, Cell::Number(number)) => integer(*number),
            (FieldKind::Integer, Cell::Text(text)) => {
                let read = self.number(field, text);
                match read.value {
                    Bson::Double(number) => Converted {
                        clue: read.clue,
                        problem: read.problem,
                        ..integer(number)
                    },
                    _ => read,
                }
            }
            (FieldKind::List, _) if !keep => Converted::value(Bson::Array(Vec::new())),
            (FieldKind::List, cell) => Converted::value(values::list_items(&written(cell))),
            (FieldKind::Bool, Cell::Bool(checked)) => Converted::value(Bson::Boolean(*checked)),
            (FieldKind::Bool, cell) => match values::read_bool(&written(cell)) {
                Some(value) => Converted::value(Bson::Boolean(value)),
                None => {
                    Converted::unreadable("not a yes/no value (expected e.g. yes, no, true, false, oui, non, 1, 0)")
                }
            },
            (FieldKind::Enum(allowed), cell) => {
                let written = written(cell);
                let canonical = match &self.lookups[field] {
                    Some(lookup) => lookup.canonical(&written),
                    None => allowed.canonical(&written),
                };
                match canonical {
                    Some(value) => Converted::value(Bson::String(kept(value))),
                    None => Converted {
                        value: Bson::String(written.into_owned()),
                        problem: Some(Problem::Unknown(format!(
                            "unknown value, kept as written; expected one of: {}",
                            allowed.values.join(", ")
                        ))),
                        clue: None,
                    },
                }
            }
            (_, Cell::Bool(_)) => Converted::unreadable("a checkbox is not a value of this field"),
        }
    }

    /// A date or month in the source's day/month order, with what it shows
    /// about that order.
    pub(super) fn in_date_order<T: PartialEq>(
        &self,
        reading: Option<Reading<T>>,
        to_bson: impl Fn(T) -> Bson,
        expected: &'static str,
    ) -> Converted {
        let order = self.conventions.date_order;
        let (day_first, month_first) = match reading {
            None => return Converted::unreadable(expected),
            Some(Reading::Certain(value)) => return Converted::value(to_bson(value)),
            Some(Reading::Ordered { day_first, month_first }) => (day_first, month_first),
        };
        let (only, value) = match (day_first, month_first) {
            (Some(day_first), Some(month_first)) => {
                let value = if order == DateOrder::DayFirst {
                    day_first
                } else {
                    month_first
                };
                return Converted {
                    value: to_bson(value),
                    problem: None,
                    clue: Some(Clue::EitherOrder),
                };
            }
            (Some(value), None) => (DateOrder::DayFirst, to_bson(value)),
            (None, Some(value)) => (DateOrder::MonthFirst, to_bson(value)),
            (None, None) => return Converted::unreadable(expected),
        };
        let clue = Some(Clue::OnlyOrder(only));
        if only == order {
            return Converted {
                value,
                problem: None,
                clue,
            };
        }
        Converted {
            value: Bson::Null,
            problem: Some(Problem::Doubt(Doubt::OtherOrder {
                only,
                reading: describe_reading(&value),
            })),
            clue,
        }
    }

    pub(super) fn number(&self, field: usize, text: &str) -> Converted {
        match values::numbers::read_number(text) {
            None => Converted::unreadable("not a number (expected e.g. 5000, 5,000.50, 5 000,50 € or 1,2E+05)"),
            Some(NumberText::Certain { value, shows }) => Converted {
                value: Bson::Double(value),
                problem: None,
                clue: shows.map(Clue::Decimal),
            },
            Some(ambiguous) => {
                let (mark, _) = self.conventions.decimal_mark(field);
                Converted {
                    value: Bson::Double(ambiguous.in_convention(mark)),
                    problem: Some(Problem::Doubt(Doubt::DecimalMark(ambiguous))),
                    clue: None,
                }
            }
        }
    }
}

/// A whole number, or unreadable: a fraction is never rounded silently.
pub(super) fn integer(number: f64) -> Converted {
    // Doubles represent every integer up to 2^53 exactly; beyond, the cell
    // did not hold an exact count anyway.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if number.fract() == 0.0 && number.abs() <= EXACT {
        // In range and whole, so the conversion is exact.
        Converted::value(Bson::Int64(number as i64))
    } else {
        Converted::unreadable("not a whole number (expected e.g. 1204330 or 1,204,330)")
    }
}

/// A date or month as a report quotes it: `2025-01-13`, `2025-01-13 14:30
/// UTC`, `2025-01`.
pub(super) fn describe_reading(value: &Bson) -> String {
    match value {
        Bson::DateTime(date) => match crate::bson_dates::from_bson_date(*date) {
            Some(moment) if moment.time() == chrono::NaiveTime::MIN => moment.format("%Y-%m-%d").to_string(),
            Some(moment) => moment.format("%Y-%m-%d %H:%M UTC").to_string(),
            None => date.to_string(),
        },
        Bson::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Text as it reads in the sheet: whole numbers without a trailing `.0`.
pub(super) fn text_of(cell: &Cell) -> String {
    written(cell).into_owned()
}

/// [`text_of`], borrowed from a text cell: reading a text cell (most cells)
/// copies nothing unless its value is kept.
pub(super) fn written(cell: &Cell) -> Cow<'_, str> {
    match cell {
        Cell::Text(text) => Cow::Borrowed(values::trim(text)),
        Cell::Number(number) if number.fract() == 0.0 && number.abs() < 1e15 => {
            Cow::Owned(format!("{}", *number as i64))
        }
        other => Cow::Owned(other.display().trim().to_owned()),
    }
}

pub(super) fn to_bson_date(moment: DateTime<Utc>) -> Bson {
    Bson::DateTime(crate::bson_dates::to_bson_date(moment))
}

/// Fills fields computed from others (a month from its date) where the source
/// left them empty. A date-only value (00:00 UTC) gives its own month; a
/// moment gives the month of its calendar date in the zone it was read in
/// (`zone_of` the source field), as the sheet shows it.
pub(super) fn derive_fields(profile: &TargetProfile, values: &mut [Bson], zone_of: impl Fn(usize) -> Tz) {
    for (index, spec) in profile.fields.iter().enumerate() {
        let FieldKind::Month {
            derive_from: Some(source),
        } = &spec.kind
        else {
            continue;
        };
        if values[index] != Bson::Null {
            continue;
        }
        let Some(source) = profile.field_index(source) else {
            continue;
        };
        if let Bson::DateTime(date) = &values[source]
            && let Some(moment) = crate::bson_dates::from_bson_date(*date)
        {
            let day = match moment.time() == chrono::NaiveTime::MIN {
                true => moment.date_naive(),
                false => moment.with_timezone(&zone_of(source)).date_naive(),
            };
            values[index] = Bson::String(values::dates::format_month(day.year(), day.month()));
        }
    }
}
