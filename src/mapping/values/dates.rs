//! Dates as people write them into spreadsheets.
//!
//! A date written with numbers only (`02/01/2025`) means 2 January in most of
//! Europe and February 1st in the US. Those values come back as a
//! [`Reading::Ordered`] with both readings, and the mapping decides the
//! order once per source (see `mapping::conventions`). Every other shape
//! (ISO, month names, spreadsheet serials) has one reading.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::calendar;
use super::{fold_words, midnight_utc};

/// Which number comes first in a date written with numbers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DateOrder {
    /// `31/01/2025`: Europe, Latin America, most of the world.
    DayFirst,
    /// `01/31/2025`: the US.
    MonthFirst,
}

impl DateOrder {
    pub fn describe(self) -> &'static str {
        match self {
            DateOrder::DayFirst => "day-first",
            DateOrder::MonthFirst => "month-first",
        }
    }

    pub fn other(self) -> DateOrder {
        match self {
            DateOrder::DayFirst => DateOrder::MonthFirst,
            DateOrder::MonthFirst => DateOrder::DayFirst,
        }
    }
}

/// What a cell's text may mean.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading<T> {
    /// One meaning, whatever the source's day/month order.
    Certain(T),
    /// A numeric date: what it means read day-first and month-first, when
    /// that reading is a real date. At least one is; when both are, they
    /// differ (`05/05/2025` is certain).
    Ordered {
        day_first: Option<T>,
        month_first: Option<T>,
    },
}

impl<T: PartialEq> Reading<T> {
    fn ordered(day_first: Option<T>, month_first: Option<T>) -> Option<Reading<T>> {
        match (day_first, month_first) {
            (None, None) => None,
            (Some(a), Some(b)) if a == b => Some(Reading::Certain(a)),
            (day_first, month_first) => Some(Reading::Ordered { day_first, month_first }),
        }
    }

    pub fn map<U: PartialEq>(self, f: impl Fn(T) -> U) -> Reading<U> {
        match self {
            Reading::Certain(value) => Reading::Certain(f(value)),
            Reading::Ordered { day_first, month_first } => Reading::Ordered {
                day_first: day_first.map(&f),
                month_first: month_first.map(&f),
            },
        }
    }

    /// The value in `order`, if it reads as one.
    pub fn in_order(self, order: DateOrder) -> Option<T> {
        match (self, order) {
            (Reading::Certain(value), _) => Some(value),
            (Reading::Ordered { day_first, .. }, DateOrder::DayFirst) => day_first,
            (Reading::Ordered { month_first, .. }, DateOrder::MonthFirst) => month_first,
        }
    }
}

/// Spreadsheet serials accepted from text in a date column: 1950-01-01 to
/// 2100-12-31. Smaller numbers are more likely years (`2025`) or amounts
/// than dates before 1950, so they are reported rather than read.
pub const TEXT_SERIAL_RANGE: std::ops::RangeInclusive<f64> = 18_264.0..=73_415.0;

/// A calendar date or a moment: ISO 8601 (with or without time and offset),
/// numeric dates in either order (`31/01/2025`, `1/31/25`, `31.01.2025`,
/// with an optional `hh:mm[:ss]`), dates with month names in any language of
/// [`calendar::LANGUAGES`] (`Jan 10, 2025`, `10-Jan-25`, `jeudi 10 janvier
/// 2025`) and spreadsheet serials written as text (`45667`, `45667.5`).
///
/// Date-only values land at 00:00 UTC of that day; times without an offset,
/// serials' included, are wall-clock times in `zone`.
pub fn read_date(text: &str, zone: Tz) -> Option<Reading<DateTime<Utc>>> {
    let text = super::trim(text);
    if text.is_empty() {
        return None;
    }
    if let Some(date) = parse_iso_date(text) {
        return Some(Reading::Certain(midnight_utc(date)));
    }
    if let Some((day_first, month_first)) = numeric_date(text) {
        let in_zone = |naive: Option<NaiveDateTime>| naive.and_then(|naive| date_or_moment(naive, zone));
        return Reading::ordered(in_zone(day_first), in_zone(month_first));
    }
    if let Some(moment) = parse_iso_moment(text, zone) {
        return Some(Reading::Certain(moment));
    }
    if let Some(serial) = plain_number(text) {
        return TEXT_SERIAL_RANGE
            .contains(&serial)
            .then(|| serial_to_datetime(serial, zone))
            .flatten()
            .map(Reading::Certain);
    }
    named_date(text)
        .and_then(|naive| date_or_moment(naive, zone))
        .map(Reading::Certain)
}

/// A date without time is that calendar date at 00:00 UTC, like every
/// date-only value; a wall-clock time is read in `zone`.
fn date_or_moment(naive: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    if naive.time() == NaiveTime::MIN {
        Some(naive.and_utc())
    } else {
        local_moment(naive, zone)
    }
}

/// The moment a wall-clock time in `zone` names. In a DST gap the time does
/// not exist: it is moved forward by the gap's hour (02:30 reads as 03:30),
/// as spreadsheets do. In the repeated hour, the earlier of the two.
pub fn local_moment(local: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&local)
        .earliest()
        .or_else(|| zone.from_local_datetime(&(local + Duration::hours(1))).earliest())
        .map(|moment| moment.with_timezone(&Utc))
}

/// `yyyy-mm-dd` read without trying format strings one after another: the
/// shape nearly every export uses.
fn parse_iso_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        bytes[range].iter().try_fold(0u32, |value, &b| {
            b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
        })
    };
    let year = i32::try_from(number(0..4)?).ok().filter(|year| plausible_year(*year))?;
    NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)
}

fn plausible_year(year: i32) -> bool {
    (1900..=2999).contains(&year)
}

/// ISO date-times (without an offset: in `zone`) and year-first dates with
/// `/` or `.`.
fn parse_iso_moment(text: &str, zone: Tz) -> Option<DateTime<Utc>> {
    if let Ok(moment) = DateTime::parse_from_rfc3339(text) {
        return Some(moment.with_timezone(&Utc));
    }
    const DATE_TIMES: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    let moment = DATE_TIMES
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .or_else(|| {
            ["%Y/%m/%d", "%Y.%m.%d"]
                .iter()
                .find_map(|format| NaiveDate::parse_from_str(text, format).ok())
                .map(|date| date.and_time(NaiveTime::MIN))
        })?;
    plausible_year(moment.year())
        .then(|| date_or_moment(moment, zone))
        .flatten()
}

type MaybeDate = Option<NaiveDateTime>;

/// A date of three numbers, day and month first in either order, then the
/// year (four digits, or two for 20yy), one separator (`/`, `.` or `-`)
/// throughout, optionally followed by a time. Returns the day-first and the
/// month-first readings when the text has this shape.
fn numeric_date(text: &str) -> Option<(MaybeDate, MaybeDate)> {
    let (date, time) = match text.split_once(' ') {
        Some((date, time)) => (date, Some(parse_time(time.trim())?)),
        None => (text, None),
    };
    // Bytes, not chars: every byte of a numeric date is ASCII, and this runs
    // for every date cell of every pass.
    let bytes = date.as_bytes();
    let first_end = bytes.iter().position(|b| matches!(b, b'/' | b'.' | b'-'))?;
    let separator = bytes[first_end];
    let rest = &bytes[first_end + 1..];
    let second_end = rest.iter().position(|&b| b == separator)?;
    let (first, second, year) = (&bytes[..first_end], &rest[..second_end], &rest[second_end + 1..]);
    let short = |part: &[u8]| (1..=2).contains(&part.len());
    if !short(first) || !short(second) {
        return None;
    }
    let (first, second) = (digits_value(first)?, digits_value(second)?);
    let year = match (year.len(), i32::try_from(digits_value(year)?).ok()?) {
        (2, short_year) => 2000 + short_year,
        (4, year) if plausible_year(year) => year,
        _ => return None,
    };
    let at = |day: u32, month: u32| {
        let date = NaiveDate::from_ymd_opt(year, month, day)?;
        Some(date.and_time(time.unwrap_or(NaiveTime::MIN)))
    };
    Some((at(first, second), at(second, first)))
}

/// ASCII digits (at most four: a year) as their value; `None` for anything
/// else.
fn digits_value(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    digits.iter().try_fold(0u32, |value, &b| {
        b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
    })
}

/// `14:30`, `14:30:05`.
fn parse_time(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .ok()
}

/// Digits with at most one `.` or `,` decimal mark and nothing else: how a
/// date serial reads when a sheet exported it as text.
fn plain_number(text: &str) -> Option<f64> {
    let mut marks = 0;
    for b in text.bytes() {
        match b {
            b'0'..=b'9' => {}
            b'.' | b',' => marks += 1,
            _ => return None,
        }
    }
    if marks > 1 || !text.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    text.replace(',', ".").parse().ok()
}

/// A date with its month spelled out: the month name, a day (`10`, `1er`,
/// `4th`) and a year (four digits, or two for 20yy, last), in any order
/// people write them, with an optional weekday before and an optional time
/// after: `Jan 10, 2025`, `10-Jan-25`, `Tuesday, March 4, 2025 14:30`,
/// `1er mars 2025`, `10 de enero de 2025`.
fn named_date(text: &str) -> Option<NaiveDateTime> {
    let (date, time) = split_trailing_time(text);
    let words = fold_words(date);
    let mut words: Vec<&str> = words
        .split(' ')
        .filter(|word| !calendar::FILLER_WORDS.contains(word))
        .collect();
    // A leading weekday says nothing the date does not (`mar` is both
    // "mardi" and "March", so only a word before a month name is dropped).
    if words.len() == 4 && calendar::is_weekday(words[0]) && words[1..].iter().any(|word| is_month(word)) {
        words.remove(0);
    }
    let [a, b, c] = words.as_slice() else {
        return None;
    };
    let (month, day, year) = match (calendar::month_number(a), calendar::month_number(b)) {
        (Some(month), _) => (month, calendar::day_number(b)?, c),
        (None, Some(month)) => (month, calendar::day_number(a)?, c),
        (None, None) => return None,
    };
    let year: i32 = match year.len() {
        2 if year.bytes().all(|b| b.is_ascii_digit()) => 2000 + year.parse::<i32>().ok()?,
        4 => year.parse().ok().filter(|year| plausible_year(*year))?,
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    Some(date.and_time(time.unwrap_or(NaiveTime::MIN)))
}

fn is_month(word: &str) -> bool {
    calendar::month_number(word).is_some()
}

/// `"10 Jan 2025 14:30"` -> (`"10 Jan 2025"`, 14:30); the time must be the
/// last word and hold a `:`.
fn split_trailing_time(text: &str) -> (&str, Option<NaiveTime>) {
    match text.rsplit_once(' ') {
        Some((date, last)) if last.contains(':') => match parse_time(last) {
            Some(time) => (date, Some(time)),
            None => (text, None),
        },
        _ => (text, None),
    }
}

/// A spreadsheet date serial (days since 1899-12-30, fraction = time of day).
/// A whole serial is a date and lands at 00:00 UTC like every date-only
/// value; a serial with a time is the wall-clock moment in `zone`.
pub fn serial_to_datetime(serial: f64, zone: Tz) -> Option<DateTime<Utc>> {
    let date = serial_date(serial)?;
    let millis = ((serial - serial.floor()) * 86_400_000.0).round() as i64;
    if millis == 0 {
        return Some(midnight_utc(date));
    }
    if millis >= 86_400_000 {
        // A time that rounds to 24:00 is the next date.
        return Some(midnight_utc(date.succ_opt()?));
    }
    local_moment(date.and_time(NaiveTime::MIN) + Duration::milliseconds(millis), zone)
}

/// The calendar date of a spreadsheet serial, in the sheet's own zone (the
/// serial counts local days, so no conversion is involved).
pub fn serial_date(serial: f64) -> Option<NaiveDate> {
    if !serial.is_finite() || !(0.0..=2_958_465.0).contains(&serial) {
        return None;
    }
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 30)?;
    epoch.checked_add_signed(Duration::days(serial.floor() as i64))
}

/// `YYYY-MM` from how people write a month: `2025-01`, `01/2025`,
/// `janv.-25`, `Jan-25`, `January 2025`, `févr. 2025`, or a full date (whose
/// day/month order may matter).
pub fn read_month(text: &str, zone: Tz) -> Option<Reading<String>> {
    let text = super::trim(text);
    if let Some(month) = parse_iso_month(text) {
        return Some(Reading::Certain(month));
    }
    if let Some(reading) = read_date(text, zone) {
        return Some(reading.map(|date| format_month(date.year(), date.month())));
    }
    let words = fold_words(text);
    let parts: Vec<&str> = words.split(' ').collect();
    let (month, year) = match parts.as_slice() {
        [a, b] if a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit()) => {
            if a.len() == 4 {
                (b.parse().ok()?, a.parse().ok()?)
            } else {
                (a.parse().ok()?, b.parse().ok()?)
            }
        }
        [name, year] => (calendar::month_number(name)?, year.parse().ok()?),
        _ => return None,
    };
    let year: i32 = if year < 100 { 2000 + year } else { year };
    ((1..=12).contains(&month) && plausible_year(year)).then(|| Reading::Certain(format_month(year, month)))
}

/// `YYYY-MM` as written, checked.
fn parse_iso_month(text: &str) -> Option<String> {
    let (year, month) = text.split_once('-')?;
    if year.len() != 4 || month.len() != 2 || !(year.bytes().chain(month.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, month): (i32, u32) = (year.parse().ok()?, month.parse().ok()?);
    ((1..=12).contains(&month) && plausible_year(year)).then(|| format_month(year, month))
}

/// `YYYY-MM`.
pub fn format_month(year: i32, month: u32) -> String {
    // Written by hand for the years a sheet holds: a month field is read on
    // every row of every pass, and `format!` cost more than reading it.
    match u32::try_from(year) {
        Ok(year @ 1000..=9999) if (1..=12).contains(&month) => {
            let digit = |value: u32| char::from(b'0' + (value % 10) as u8);
            [year / 1000, year / 100, year / 10, year]
                .into_iter()
                .map(digit)
                .chain(['-', digit(month / 10), digit(month)])
                .collect()
        }
        _ => format!("{year:04}-{month:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_written_as_format_writes_them() {
        for year in [-5, 0, 999, 1000, 1900, 2025, 9999, 10_000] {
            for month in 0..=13 {
                assert_eq!(format_month(year, month), format!("{year:04}-{month:02}"));
            }
        }
    }

    #[test]
    fn numeric_dates_split_as_bytes_read_every_shape() {
        let zone = chrono_tz::Europe::Paris;
        let day = |text: &str| match read_date(text, zone) {
            Some(Reading::Certain(moment)) => Some(moment.format("%Y-%m-%d").to_string()),
            Some(Reading::Ordered { day_first, month_first }) => day_first
                .or(month_first)
                .map(|moment| moment.format("%Y-%m-%d").to_string()),
            None => None,
        };
        assert_eq!(day("31/01/2025").as_deref(), Some("2025-01-31"));
        assert_eq!(day("1.2.25").as_deref(), Some("2025-02-01"));
        assert_eq!(day("13-01-2025").as_deref(), Some("2025-01-13"));
        for not_numeric in [
            "31/01",
            "31/01/2025/1",
            "31/01/202",
            "31/01/20255",
            "311/01/2025",
            "/01/2025",
            "3a/01/2025",
            "31/01-2025",
            "31/01/1800",
        ] {
            assert!(numeric_date(not_numeric).is_none(), "{not_numeric}");
        }
    }
}
