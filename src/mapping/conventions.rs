//! The conventions a source is written in, decided from the source itself.
//!
//! A sheet is written in one locale, so its own values say how to read the
//! ones that could go either way: a `13/01/2025` somewhere proves that
//! `02/01/2025` means 2 January, and a `1.234,56` in a column proves that its
//! `5.000` means five thousand. The planning pass gathers this [`Evidence`];
//! [`Conventions::decide`] turns it into the order and decimal marks the
//! source is read with, and the report says which and why.

use serde::{Deserialize, Serialize};

use super::values::dates::DateOrder;
use super::values::numbers::DecimalMark;

/// `date_order` in `[sync]` or a view's section: how numeric dates are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DateOrderSetting {
    /// Decided from the source's own values; day-first when none decides.
    #[default]
    Auto,
    /// Always day-first; values that only read month-first are reported.
    Dmy,
    /// Always month-first; values that only read day-first are reported.
    Mdy,
}

impl DateOrderSetting {
    fn forced(self) -> Option<DateOrder> {
        match self {
            DateOrderSetting::Auto => None,
            DateOrderSetting::Dmy => Some(DateOrder::DayFirst),
            DateOrderSetting::Mdy => Some(DateOrder::MonthFirst),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DateOrderSetting::Auto => "auto",
            DateOrderSetting::Dmy => "dmy",
            DateOrderSetting::Mdy => "mdy",
        }
    }
}

/// What the configuration says about reading one source's cells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadSettings {
    pub date_order: DateOrderSetting,
    /// The zone of date-times written as text without an offset (CSV
    /// exports, text cells): `[sync] time_zone`, or the sync's own.
    pub time_zone: chrono_tz::Tz,
    /// Set when the view or sync names its own `time_zone`: it then applies
    /// to spreadsheet serials too. Otherwise a serial is read in its
    /// spreadsheet's zone (that of its `NOW()` and of its formatting).
    pub zone_is_the_syncs: bool,
}

/// A cell quoted as evidence in a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub row: usize,
    pub column: String,
    pub value: String,
}

impl std::fmt::Display for Example {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} at row {}, column {:?}", self.value, self.row, self.column)
    }
}

/// How many cells showed one thing, and the first of them.
#[derive(Debug, Default)]
pub struct Tally {
    pub count: usize,
    pub first: Option<Example>,
}

impl Tally {
    fn add(&mut self, example: impl FnOnce() -> Example) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(example());
        }
    }
}

/// What one cell shows about the source's conventions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clue {
    /// A numeric date that is a real date in only this order.
    OnlyOrder(DateOrder),
    /// A numeric date that is a different real date in each order.
    EitherOrder,
    /// A number whose spelling proves its column's decimal mark.
    Decimal(DecimalMark),
}

/// Everything the cells of one source showed.
#[derive(Debug, Default)]
pub struct Evidence {
    pub day_first_only: Tally,
    pub month_first_only: Tally,
    pub either_order: Tally,
    /// Per field, how many values proved `.` and `,` as the decimal mark.
    decimal_marks: Vec<[usize; 2]>,
}

impl Evidence {
    pub fn record(&mut self, field: usize, clue: Clue, example: impl FnOnce() -> Example) {
        match clue {
            Clue::OnlyOrder(DateOrder::DayFirst) => self.day_first_only.add(example),
            Clue::OnlyOrder(DateOrder::MonthFirst) => self.month_first_only.add(example),
            Clue::EitherOrder => self.either_order.add(example),
            Clue::Decimal(mark) => {
                if self.decimal_marks.len() <= field {
                    self.decimal_marks.resize(field + 1, [0, 0]);
                }
                self.decimal_marks[field][mark as usize] += 1;
            }
        }
    }
}

/// The order numeric dates were read in, and why: part of every report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DateOrderDecision {
    pub order: DateOrder,
    pub reason: String,
    /// The order came from no value and no setting, while some dates could
    /// be read either way: the report warns about them.
    #[serde(skip)]
    pub guessed: bool,
}

/// How a source's values are read.
#[derive(Debug, Clone)]
pub struct Conventions {
    pub date_order: DateOrder,
    /// Per field, the decimal mark most of its column's values prove.
    pub decimal_marks: Vec<Option<DecimalMark>>,
    /// The mark most number values of the whole source prove.
    pub source_decimal_mark: Option<DecimalMark>,
    /// False during the first planning pass, while the evidence is gathered:
    /// readings that depend on the decision are then set aside, not judged.
    pub settled: bool,
}

impl Conventions {
    /// What the first planning pass assumes: the configured order, or
    /// day-first, and no decimal mark decided yet.
    pub fn provisional(setting: DateOrderSetting) -> Conventions {
        Conventions {
            date_order: setting.forced().unwrap_or(DateOrder::DayFirst),
            decimal_marks: Vec::new(),
            source_decimal_mark: None,
            settled: false,
        }
    }

    /// The conventions the evidence shows, and why the date order is what
    /// it is.
    pub fn decide(setting: DateOrderSetting, evidence: &Evidence) -> (Conventions, DateOrderDecision) {
        let decision = decide_date_order(setting, evidence);
        let totals = evidence
            .decimal_marks
            .iter()
            .fold([0, 0], |sum, counts| [sum[0] + counts[0], sum[1] + counts[1]]);
        let conventions = Conventions {
            date_order: decision.order,
            decimal_marks: evidence.decimal_marks.iter().map(majority).collect(),
            source_decimal_mark: majority(&totals),
            settled: true,
        };
        (conventions, decision)
    }

    /// The decimal mark an ambiguous number of `field` is read with, and
    /// where it comes from when the column itself does not show it.
    pub fn decimal_mark(&self, field: usize) -> (DecimalMark, Option<&'static str>) {
        match self.decimal_marks.get(field).copied().flatten() {
            Some(mark) => (mark, None),
            None => match self.source_decimal_mark {
                Some(mark) => (mark, Some("the convention of the source's other number columns")),
                None => (DecimalMark::Dot, Some("the default, `.` as the decimal mark")),
            },
        }
    }
}

/// The mark more values proved; none on a tie.
fn majority(counts: &[usize; 2]) -> Option<DecimalMark> {
    match counts[0].cmp(&counts[1]) {
        std::cmp::Ordering::Greater => Some(DecimalMark::Dot),
        std::cmp::Ordering::Less => Some(DecimalMark::Comma),
        std::cmp::Ordering::Equal => None,
    }
}

fn decide_date_order(setting: DateOrderSetting, evidence: &Evidence) -> DateOrderDecision {
    let (day, month) = (&evidence.day_first_only, &evidence.month_first_only);
    let shown = |tally: &Tally, order: DateOrder| match &tally.first {
        Some(example) => format!(
            "{} value(s) only read {} (e.g. {example})",
            tally.count,
            order.describe()
        ),
        None => format!("no value only reads {}", order.describe()),
    };
    if let Some(order) = setting.forced() {
        return DateOrderDecision {
            order,
            reason: format!("date_order = {:?} in the configuration", setting.as_str()),
            guessed: false,
        };
    }
    let (order, reason) = match day.count.cmp(&month.count) {
        std::cmp::Ordering::Greater => (
            DateOrder::DayFirst,
            format!(
                "{}, {}",
                shown(day, DateOrder::DayFirst),
                shown(month, DateOrder::MonthFirst)
            ),
        ),
        std::cmp::Ordering::Less => (
            DateOrder::MonthFirst,
            format!(
                "{}, {}",
                shown(month, DateOrder::MonthFirst),
                shown(day, DateOrder::DayFirst)
            ),
        ),
        std::cmp::Ordering::Equal if day.count == 0 => (
            DateOrder::DayFirst,
            "no date in the source shows the order; day-first is the default (set date_order to choose)".to_owned(),
        ),
        std::cmp::Ordering::Equal => (
            DateOrder::DayFirst,
            format!(
                "as many values only read day-first as month-first ({} each); day-first is the default \
                 (set date_order to choose)",
                day.count
            ),
        ),
    };
    let guessed = day.count == month.count && evidence.either_order.count > 0;
    DateOrderDecision { order, reason, guessed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(value: &str) -> impl FnOnce() -> Example {
        let value = value.to_owned();
        move || Example {
            row: 2,
            column: "Date".into(),
            value,
        }
    }

    #[test]
    fn the_values_that_only_read_one_way_decide() {
        let mut evidence = Evidence::default();
        evidence.record(0, Clue::OnlyOrder(DateOrder::MonthFirst), example("1/13/2025"));
        evidence.record(0, Clue::EitherOrder, example("2/1/2025"));
        let (conventions, decision) = Conventions::decide(DateOrderSetting::Auto, &evidence);
        assert_eq!(conventions.date_order, DateOrder::MonthFirst);
        assert!(
            decision.reason.contains("\"1/13/2025\" at row 2"),
            "{}",
            decision.reason
        );
        assert!(!decision.guessed);

        evidence.record(0, Clue::OnlyOrder(DateOrder::DayFirst), example("13/1/2025"));
        let (conventions, decision) = Conventions::decide(DateOrderSetting::Auto, &evidence);
        assert_eq!(
            conventions.date_order,
            DateOrder::DayFirst,
            "a tie falls back to day-first"
        );
        assert!(decision.guessed);

        let (conventions, decision) = Conventions::decide(DateOrderSetting::Mdy, &evidence);
        assert_eq!(conventions.date_order, DateOrder::MonthFirst);
        assert!(decision.reason.contains("date_order = \"mdy\""), "{}", decision.reason);
    }

    #[test]
    fn decimal_marks_by_column_then_by_source() {
        let mut evidence = Evidence::default();
        for _ in 0..2 {
            evidence.record(1, Clue::Decimal(DecimalMark::Comma), example("1,5"));
        }
        evidence.record(1, Clue::Decimal(DecimalMark::Dot), example("1,234,567"));
        evidence.record(2, Clue::Decimal(DecimalMark::Dot), example("2.5"));
        evidence.record(2, Clue::Decimal(DecimalMark::Comma), example("2,5"));
        let (conventions, _) = Conventions::decide(DateOrderSetting::Auto, &evidence);
        assert_eq!(conventions.decimal_mark(1), (DecimalMark::Comma, None));
        let (mark, origin) = conventions.decimal_mark(2);
        assert_eq!(mark, DecimalMark::Comma, "the column ties, the source decides");
        assert!(origin.is_some_and(|origin| origin.contains("other number columns")));
        let (mark, origin) = conventions.decimal_mark(0);
        assert_eq!(mark, DecimalMark::Comma);
        assert!(origin.is_some());
        let (mark, origin) = Conventions::provisional(DateOrderSetting::Auto).decimal_mark(0);
        assert_eq!(mark, DecimalMark::Dot);
        assert!(origin.is_some_and(|origin| origin.contains("default")));
    }
}
