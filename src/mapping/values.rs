//! Reading typed values out of what people type into spreadsheets.
//!
//! Every parser here is pure and forgiving about presentation (currency signs,
//! thousands separators, French or English month names) but never guesses a
//! value it cannot read: it returns `None` and the caller reports the cell.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use unicode_normalization::UnicodeNormalization;

/// Lower-case, accent-free, with every non-alphanumeric character removed:
/// `"Show / No-Show"` and `"show_noshow"` both become `"shownoshow"`.
pub fn fold_label(text: &str) -> String {
    strip_accents(text)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Lower-case, accent-free words separated by single spaces:
/// `"  B - Legals "` becomes `"b legals"`.
pub fn fold_words(text: &str) -> String {
    let spaced: String = strip_accents(text)
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .flat_map(char::to_lowercase)
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Trimmed, lower-case, inner whitespace collapsed: how two spellings of one
/// client name are recognised as the same client.
pub fn fold_key_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn strip_accents(text: &str) -> Cow<'_, str> {
    // Most cells are ASCII, which has no accents to strip.
    if text.is_ascii() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.nfd()
            .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
            .collect(),
    )
}

/// A calendar date or a moment, from the formats sales exports use:
/// ISO 8601 (with or without time and offset), `dd/mm/yyyy`, `dd/mm/yy`,
/// `dd.mm.yyyy`, `dd-mm-yyyy` and `yyyy-mm-dd hh:mm[:ss]`.
///
/// Date-only values land at 00:00 UTC of that day; times without an offset
/// are read as UTC.
pub fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Some(date) = parse_common_date(text) {
        return Some(midnight_utc(date));
    }
    if let Ok(moment) = DateTime::parse_from_rfc3339(text) {
        return Some(moment.with_timezone(&Utc));
    }
    const DATE_TIMES: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%d/%m/%Y %H:%M:%S",
        "%d/%m/%Y %H:%M",
    ];
    for format in DATE_TIMES {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    const DATES: &[&str] = &["%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y"];
    for format in DATES {
        if let Ok(date) = NaiveDate::parse_from_str(text, format) {
            if (1900..=2999).contains(&date.year()) {
                return Some(midnight_utc(date));
            }
        }
    }
    parse_short_year_date(text).map(midnight_utc)
}

/// The two shapes nearly every export uses, `yyyy-mm-dd` and `dd/mm/yyyy`,
/// read without trying format strings one after another (the same rules as
/// the general path: a real calendar date, a year from 1900 to 2999).
fn parse_common_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        bytes[range].iter().try_fold(0u32, |value, &b| {
            b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
        })
    };
    let (year, month, day) = match (bytes[2], bytes[4], bytes[5], bytes[7]) {
        (_, b'-', _, b'-') => (number(0..4)?, number(5..7)?, number(8..10)?),
        (b'/', _, b'/', _) => (number(6..10)?, number(3..5)?, number(0..2)?),
        _ => return None,
    };
    let year = i32::try_from(year).ok().filter(|year| (1900..=2999).contains(year))?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// `dd/mm/yy` (also with `.` or `-`): two-digit years are 20yy.
fn parse_short_year_date(text: &str) -> Option<NaiveDate> {
    let parts: Vec<&str> = text.split(['/', '.', '-']).collect();
    let [day, month, year] = parts.as_slice() else {
        return None;
    };
    if year.len() != 2 || day.len() > 2 || month.len() > 2 {
        return None;
    }
    NaiveDate::from_ymd_opt(2000 + year.parse::<i32>().ok()?, month.parse().ok()?, day.parse().ok()?)
}

/// chrono -> BSON, at the millisecond precision BSON dates have.
pub fn to_bson_date(moment: DateTime<Utc>) -> mongodb::bson::DateTime {
    mongodb::bson::DateTime::from_millis(moment.timestamp_millis())
}

/// BSON -> chrono; `None` only for dates outside chrono's range.
pub fn from_bson_date(date: mongodb::bson::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(date.timestamp_millis())
}

pub fn midnight_utc(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(NaiveTime::MIN).and_utc()
}

/// A spreadsheet date serial (days since 1899-12-30, fraction = time of day)
/// read in the spreadsheet's own time zone. A whole serial is a date and lands
/// at 00:00 UTC like every date-only value; a serial with a time is the local
/// wall-clock moment in `zone`, converted to UTC.
pub fn serial_to_datetime(serial: f64, zone: Tz) -> Option<DateTime<Utc>> {
    if !serial.is_finite() || !(0.0..=2_958_465.0).contains(&serial) {
        return None;
    }
    let date = serial_date(serial)?;
    let millis = ((serial - serial.floor()) * 86_400_000.0).round() as i64;
    if millis == 0 {
        return Some(midnight_utc(date));
    }
    if millis >= 86_400_000 {
        // A time that rounds to 24:00 is the next date.
        return Some(midnight_utc(date.succ_opt()?));
    }
    let local = date.and_time(NaiveTime::MIN) + Duration::milliseconds(millis);
    // In a DST gap the wall-clock time does not exist; the earliest valid
    // reading after it is what the sheet's owner would expect.
    zone.from_local_datetime(&local)
        .earliest()
        .or_else(|| zone.from_local_datetime(&(local + Duration::hours(1))).earliest())
        .map(|moment| moment.with_timezone(&Utc))
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

/// A money amount or plain number: `5000`, `5,000.50`, `5 000,50 €`,
/// `€5,000`, `1.234,56`, `(1,200)` (accounting negative), `-12.5`, `12%`.
pub fn parse_number(text: &str) -> Option<f64> {
    let mut body = text.trim();
    let mut negative = false;
    if body.starts_with('(') && body.ends_with(')') {
        negative = true;
        body = &body[1..body.len() - 1];
    }
    let mut digits = String::with_capacity(body.len());
    for c in body.chars() {
        match c {
            '0'..='9' | ',' | '.' => digits.push(c),
            '-' | '\u{2212}' if digits.is_empty() => negative = !negative,
            '+' if digits.is_empty() => {}
            // Spaces of every width are thousands separators in French exports.
            c if c.is_whitespace() || c == '\u{202f}' || c == '\'' => {}
            '€' | '$' | '£' | '%' => {}
            _ if is_currency_word(c, body) => {}
            _ => return None,
        }
    }
    let value = parse_separated_digits(&digits)?;
    Some(if negative { -value } else { value })
}

/// Letters are only allowed as an ISO currency code around the amount.
fn is_currency_word(c: char, body: &str) -> bool {
    c.is_ascii_alphabetic() && {
        let letters: String = body.chars().filter(|c| c.is_ascii_alphabetic()).collect();
        matches!(letters.to_ascii_uppercase().as_str(), "EUR" | "USD" | "GBP" | "CHF")
    }
}

/// Decides which of `,` and `.` is the decimal separator. When both appear the
/// last one is; a lone comma followed by exactly three digits (`5,000`) or
/// repeated separators (`1,234,567`) group thousands.
fn parse_separated_digits(digits: &str) -> Option<f64> {
    if !digits.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let last_comma = digits.rfind(',');
    let last_dot = digits.rfind('.');
    let decimal = match (last_comma, last_dot) {
        (Some(comma), Some(dot)) => Some(comma.max(dot)),
        (Some(only), None) | (None, Some(only)) => {
            let separator = &digits[only..=only];
            let repeated = digits.matches(separator).count() > 1;
            let grouped = digits.len() - only - 1 == 3 && only > 0;
            if repeated || (separator == "," && grouped) {
                None
            } else {
                Some(only)
            }
        }
        (None, None) => None,
    };
    let mut plain = String::with_capacity(digits.len());
    for (index, c) in digits.char_indices() {
        if c.is_ascii_digit() {
            plain.push(c);
        } else if Some(index) == decimal {
            plain.push('.');
        }
    }
    plain.parse().ok()
}

/// `YYYY-MM` from how people write a month: `2025-01`, `01/2025`,
/// `janv.-25`, `Jan-25`, `January 2025`, `févr. 2025`, or a full date.
pub fn parse_month(text: &str) -> Option<String> {
    let text = text.trim();
    if let Some(month) = parse_iso_month(text) {
        return Some(month);
    }
    if let Some(date) = parse_date(text) {
        return Some(format_month(date.year(), date.month()));
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
        [name, year] => (month_from_name(name)?, year.parse().ok()?),
        _ => return None,
    };
    let year: i32 = if year < 100 { 2000 + year } else { year };
    ((1..=12).contains(&month) && (1900..=2999).contains(&year)).then(|| format_month(year, month))
}

/// `YYYY-MM` as written, checked.
fn parse_iso_month(text: &str) -> Option<String> {
    let (year, month) = text.split_once('-')?;
    if year.len() != 4 || month.len() != 2 || !(year.bytes().chain(month.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, month): (i32, u32) = (year.parse().ok()?, month.parse().ok()?);
    ((1..=12).contains(&month) && (1900..=2999).contains(&year)).then(|| format_month(year, month))
}

/// `YYYY-MM`.
pub fn format_month(year: i32, month: u32) -> String {
    format!("{year:04}-{month:02}")
}

/// English and French month names and their usual abbreviations.
fn month_from_name(name: &str) -> Option<u32> {
    const MONTHS: [&[&str]; 12] = [
        &["jan", "january", "janv", "janvier"],
        &["feb", "february", "fev", "fevr", "fevrier"],
        &["mar", "march", "mars"],
        &["apr", "april", "avr", "avril"],
        &["may", "mai"],
        &["jun", "june", "juin"],
        &["jul", "july", "juil", "juillet"],
        &["aug", "august", "aou", "aout"],
        &["sep", "sept", "september", "septembre"],
        &["oct", "october", "octobre"],
        &["nov", "november", "novembre"],
        &["dec", "december", "decembre"],
    ];
    MONTHS
        .iter()
        .position(|names| names.contains(&name))
        .map(|index| index as u32 + 1)
}

/// The closed set of values a field may hold, and how loosely a spelling may
/// match one of them.
#[derive(Debug)]
pub struct EnumSpec {
    pub values: &'static [&'static str],
    /// Other spellings, matched after folding: `(spelling, canonical value)`.
    pub aliases: &'static [(&'static str, &'static str)],
    /// Values like `B Legals` carry a one-letter ordering prefix that people
    /// often leave out (`legals`) or punctuate (`b - legals`).
    pub letter_prefixed: bool,
}

impl EnumSpec {
    /// The canonical value `text` stands for, if any. Builds the lookup each
    /// time: a sync builds it once with [`EnumSpec::lookup`].
    pub fn canonical(&self, text: &str) -> Option<&'static str> {
        self.lookup().canonical(text)
    }

    /// Every accepted spelling, folded once. Values come first, so an alias
    /// never shadows a value.
    pub fn lookup(&self) -> EnumLookup {
        let mut by_folded = HashMap::new();
        for value in self.values {
            by_folded.entry(fold_label(value)).or_insert(*value);
            if let Some(rest) = strip_letter_prefix(value).filter(|_| self.letter_prefixed) {
                by_folded.entry(fold_label(rest)).or_insert(*value);
            }
        }
        for (alias, value) in self.aliases {
            by_folded.entry(fold_label(alias)).or_insert(*value);
        }
        EnumLookup { by_folded }
    }
}

/// An [`EnumSpec`] ready for fast matching.
#[derive(Debug, Clone)]
pub struct EnumLookup {
    by_folded: HashMap<String, &'static str>,
}

impl EnumLookup {
    pub fn canonical(&self, text: &str) -> Option<&'static str> {
        self.by_folded.get(&fold_label(text)).copied()
    }
}

/// `"B Legals"` -> `Some("Legals")`; values without a single-letter prefix
/// (`"Lost"`) have none.
fn strip_letter_prefix(value: &str) -> Option<&str> {
    let (prefix, rest) = value.split_once(' ')?;
    (prefix.len() == 1 && prefix.chars().all(|c| c.is_ascii_uppercase())).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        midnight_utc(NaiveDate::from_ymd_opt(y, m, d).unwrap())
    }

    #[test]
    fn dates_in_every_accepted_format() {
        let cases = [
            ("2025-01-10", Some(day(2025, 1, 10))),
            ("10/01/2025", Some(day(2025, 1, 10))),
            ("10/01/25", Some(day(2025, 1, 10))),
            ("1/2/25", Some(day(2025, 2, 1))),
            ("10.01.2025", Some(day(2025, 1, 10))),
            (" 2025/01/10 ", Some(day(2025, 1, 10))),
            (
                "2025-01-10 14:30",
                Some(day(2025, 1, 10) + Duration::minutes(14 * 60 + 30)),
            ),
            (
                "2025-01-10T14:30:00Z",
                Some(day(2025, 1, 10) + Duration::minutes(14 * 60 + 30)),
            ),
            (
                "2025-01-10T14:30:00+01:00",
                Some(day(2025, 1, 10) + Duration::minutes(13 * 60 + 30)),
            ),
            ("31/02/2025", None),
            ("soon", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_date(text), expected, "parsing {text:?}");
        }
    }

    #[test]
    fn numbers_in_every_accepted_format() {
        let cases = [
            ("5000", Some(5000.0)),
            ("5,000", Some(5000.0)),
            ("5,000.50", Some(5000.5)),
            ("5 000,50 €", Some(5000.5)),
            ("4\u{a0}500,00\u{a0}€", Some(4500.0)),
            ("4\u{202f}500,00 €", Some(4500.0)),
            ("€5,000", Some(5000.0)),
            ("$1,250.50", Some(1250.5)),
            ("(1,200)", Some(-1200.0)),
            ("-12.5", Some(-12.5)),
            ("1.234,56", Some(1234.56)),
            ("1,234,567", Some(1_234_567.0)),
            ("1,5", Some(1.5)),
            ("0.75", Some(0.75)),
            ("EUR 300", Some(300.0)),
            ("n/a", None),
            ("12 apples", None),
            ("€", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_number(text), expected, "parsing {text:?}");
        }
    }

    #[test]
    fn months_in_every_accepted_format() {
        let cases = [
            ("2025-01", Some("2025-01")),
            ("01/2025", Some("2025-01")),
            ("janv.-25", Some("2025-01")),
            ("févr.-25", Some("2025-02")),
            ("Jan-25", Some("2025-01")),
            ("August 2025", Some("2025-08")),
            ("15/03/2025", Some("2025-03")),
            ("13/2025", None),
            ("someday", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_month(text).as_deref(), expected, "parsing {text:?}");
        }
    }

    #[test]
    fn serials_are_read_in_the_sheet_zone() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // 45667 is 2025-01-10; a whole serial is a date at 00:00 UTC.
        assert_eq!(serial_to_datetime(45667.0, paris), Some(day(2025, 1, 10)));
        // A time that rounds to midnight is the next date.
        assert_eq!(serial_to_datetime(45_667.999_999_999, paris), Some(day(2025, 1, 11)));
        // 12:00 in Paris in winter is 11:00 UTC, in summer 10:00 UTC.
        assert_eq!(
            serial_to_datetime(45667.5, paris),
            Some(day(2025, 1, 10) + Duration::hours(11))
        );
        assert_eq!(
            serial_to_datetime(45848.5, paris),
            Some(day(2025, 7, 10) + Duration::hours(10))
        );
        assert_eq!(serial_to_datetime(f64::NAN, paris), None);
    }

    #[test]
    fn folding() {
        assert_eq!(fold_label("Show / No-Show"), "shownoshow");
        assert_eq!(fold_label("Date de découverte"), "datededecouverte");
        assert_eq!(fold_words("  B - Legals "), "b legals");
        assert_eq!(fold_key_text("  Acme   CORP "), "acme corp");
    }
}
