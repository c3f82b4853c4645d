//! Cells as real spreadsheet exports write them, and the value each must
//! give: one table per parser, then properties over generated values.
//!
//! Origins: Google Sheets (en-US, fr-FR and de-DE locales, "Download > CSV"),
//! Excel (English, French and German, "Save as CSV"), LibreOffice Calc and
//! Apple Numbers exports, as displayed in the cell.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc};
use proptest::prelude::*;
use sheetsync::mapping::values::dates::{DateOrder, Reading, read_date, read_month};
use sheetsync::mapping::values::numbers::{DecimalMark, NumberText, read_number};

const DAY: DateOrder = DateOrder::DayFirst;
const MONTH: DateOrder = DateOrder::MonthFirst;

fn at(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> Option<DateTime<Utc>> {
    Some(Utc.with_ymd_and_hms(year, month, day, hour, minute, 0).unwrap())
}

fn on(year: i32, month: u32, day: u32) -> Option<DateTime<Utc>> {
    at(year, month, day, 0, 0)
}

/// `2025-01-13` or `2025-01-13 14:30`, in UTC.
fn utc(text: &str) -> DateTime<Utc> {
    let full = if text.len() == 10 {
        format!("{text} 00:00")
    } else {
        text.to_owned()
    };
    NaiveDateTime::parse_from_str(&full, "%Y-%m-%d %H:%M")
        .unwrap()
        .and_utc()
}

/// (origin, cell, the source's order, the date it must give, in UTC)
const DATES: &[(&str, &str, DateOrder, Option<&str>)] = &[
    ("Google Sheets en-US", "1/13/2025", MONTH, Some("2025-01-13")),
    ("Google Sheets en-US", "2/1/2025", MONTH, Some("2025-02-01")),
    (
        "Google Sheets en-US",
        "1/13/2025 14:30:00",
        MONTH,
        Some("2025-01-13 14:30"),
    ),
    ("Google Sheets fr-FR", "13/01/2025", DAY, Some("2025-01-13")),
    ("Google Sheets fr-FR", "02/01/2025", DAY, Some("2025-01-02")),
    (
        "Google Sheets fr-FR",
        "13/01/2025 14:30:00",
        DAY,
        Some("2025-01-13 14:30"),
    ),
    ("Google Sheets de-DE", "13.1.2025", DAY, Some("2025-01-13")),
    ("Google Sheets ISO", "2025-01-13", DAY, Some("2025-01-13")),
    ("Google Sheets ISO", "2025-01-13", MONTH, Some("2025-01-13")),
    (
        "Google Sheets ISO",
        "2025-01-13 14:30:00",
        MONTH,
        Some("2025-01-13 14:30"),
    ),
    ("Excel EN", "1/13/25", MONTH, Some("2025-01-13")),
    ("Excel EN", "13-Jan-25", MONTH, Some("2025-01-13")),
    ("Excel EN", "13-Jan-2025", DAY, Some("2025-01-13")),
    ("Excel EN", "Jan 10, 2025", DAY, Some("2025-01-10")),
    ("Excel EN", "January 10, 2025", MONTH, Some("2025-01-10")),
    ("Excel EN", "Tuesday, March 4, 2025", DAY, Some("2025-03-04")),
    ("Excel EN", "10 Jan 2025", MONTH, Some("2025-01-10")),
    ("Excel EN", "March 4th, 2025", DAY, Some("2025-03-04")),
    ("Excel FR", "13/01/2025", DAY, Some("2025-01-13")),
    ("Excel FR", "13-janv.-25", DAY, Some("2025-01-13")),
    ("Excel FR", "10 janv. 2025", DAY, Some("2025-01-10")),
    ("Excel FR", "10 janvier 2025", DAY, Some("2025-01-10")),
    ("Excel FR", "jeudi 10 janvier 2025", DAY, Some("2025-01-10")),
    ("Excel FR", "1er mars 2025", DAY, Some("2025-03-01")),
    ("Excel FR", "mar. 4 mars 2025", DAY, Some("2025-03-04")),
    ("Excel FR", "15 FÉVRIER 2025", DAY, Some("2025-02-15")),
    ("Excel FR", "1 août 2025", DAY, Some("2025-08-01")),
    ("Excel DE", "13.01.2025", DAY, Some("2025-01-13")),
    ("Excel DE", "13. Januar 2025", DAY, Some("2025-01-13")),
    ("Excel DE", "4. März 2025", DAY, Some("2025-03-04")),
    ("Excel DE", "13.01.25", DAY, Some("2025-01-13")),
    ("Excel ES", "10 de enero de 2025", DAY, Some("2025-01-10")),
    ("LibreOffice en-US", "01/13/25", MONTH, Some("2025-01-13")),
    ("LibreOffice fr-FR", "13/01/25", DAY, Some("2025-01-13")),
    ("LibreOffice", "2025-01-13T14:30:00Z", DAY, Some("2025-01-13 14:30")),
    (
        "LibreOffice",
        "2025-01-13T14:30:00+01:00",
        DAY,
        Some("2025-01-13 13:30"),
    ),
    ("Numbers", "13 Jan 2025", DAY, Some("2025-01-13")),
    ("Numbers", "Jan 13, 2025 2:30", MONTH, Some("2025-01-13 02:30")),
    ("Numbers", "2025/01/13", DAY, Some("2025-01-13")),
    ("serial as text", "45667", DAY, Some("2025-01-10")),
    ("serial as text", "45667.5", MONTH, Some("2025-01-10 12:00")),
    ("serial as text", "45667,75", DAY, Some("2025-01-10 18:00")),
    // Not dates: reported, never guessed.
    ("typo", "31/02/2025", DAY, None),
    ("typo", "31/02/2025", MONTH, None),
    ("year only", "2025", DAY, None),
    ("too small for a serial", "1200", DAY, None),
    ("no year", "10 Jan", DAY, None),
    ("two months", "Jan Feb 2025", DAY, None),
    ("words", "soon", DAY, None),
    ("day 32", "Jan 32, 2025", DAY, None),
];

#[test]
fn dates_from_real_exports() {
    for (origin, text, order, expected) in DATES {
        let read = read_date(text, chrono_tz::UTC).and_then(|reading| reading.in_order(*order));
        assert_eq!(read, expected.map(utc), "{origin}: {text:?} read {order:?}");
    }
}

#[test]
fn numeric_dates_give_both_readings_and_others_one() {
    assert_eq!(
        read_date("2/1/2025", chrono_tz::UTC),
        Some(Reading::Ordered {
            day_first: on(2025, 1, 2),
            month_first: on(2025, 2, 1)
        })
    );
    assert_eq!(
        read_date("1/13/2025", chrono_tz::UTC),
        Some(Reading::Ordered {
            day_first: None,
            month_first: on(2025, 1, 13)
        })
    );
    assert_eq!(
        read_date("5/5/2025", chrono_tz::UTC),
        on(2025, 5, 5).map(Reading::Certain)
    );
    assert_eq!(
        read_date("Jan 2, 2025", chrono_tz::UTC),
        on(2025, 1, 2).map(Reading::Certain)
    );
}

#[test]
fn a_serial_with_a_time_is_read_in_the_given_zone() {
    // 45667.5 is 2025-01-10 12:00 on the wall clock: 11:00 UTC in Paris.
    let read = read_date("45667.5", chrono_tz::Europe::Paris).and_then(|reading| reading.in_order(DAY));
    assert_eq!(read, at(2025, 1, 10, 11, 0));
}

/// (origin, cell, the source's order, the month it must give)
const MONTHS: &[(&str, &str, DateOrder, Option<&str>)] = &[
    ("ISO", "2025-01", DAY, Some("2025-01")),
    ("Excel FR", "janv.-25", DAY, Some("2025-01")),
    ("Excel FR", "févr.-25", DAY, Some("2025-02")),
    ("Excel EN", "Jan-25", DAY, Some("2025-01")),
    ("Excel DE", "Mrz 2025", DAY, Some("2025-03")),
    ("Google Sheets", "August 2025", DAY, Some("2025-08")),
    ("Google Sheets", "01/2025", MONTH, Some("2025-01")),
    ("full date", "15/03/2025", DAY, Some("2025-03")),
    ("full date en-US", "3/1/2025", MONTH, Some("2025-03")),
    ("full date fr-FR", "3/1/2025", DAY, Some("2025-01")),
    ("serial as text", "45667", DAY, Some("2025-01")),
    ("not a month", "13/2025", DAY, None),
    ("words", "someday", DAY, None),
];

#[test]
fn months_from_real_exports() {
    for (origin, text, order, expected) in MONTHS {
        let read = read_month(text, chrono_tz::UTC).and_then(|reading| reading.in_order(*order));
        assert_eq!(read.as_deref(), *expected, "{origin}: {text:?} read {order:?}");
    }
}

/// (origin, cell, the column's decimal mark, the number it must give)
const NUMBERS: &[(&str, &str, DecimalMark, Option<f64>)] = &[
    ("Google Sheets en-US", "5,000", DecimalMark::Dot, Some(5000.0)),
    ("Google Sheets en-US", "1,250.50", DecimalMark::Dot, Some(1250.5)),
    ("Google Sheets en-US", "$1,250.50", DecimalMark::Dot, Some(1250.5)),
    ("Google Sheets en-US", "12%", DecimalMark::Dot, Some(0.12)),
    ("Google Sheets en-US", "1.50E+04", DecimalMark::Dot, Some(15000.0)),
    ("Google Sheets en-US", "1,234,567", DecimalMark::Dot, Some(1_234_567.0)),
    ("Google Sheets fr-FR", "1 234,56", DecimalMark::Comma, Some(1234.56)),
    (
        "Google Sheets fr-FR",
        "5\u{202f}000,00\u{a0}€",
        DecimalMark::Comma,
        Some(5000.0),
    ),
    ("Google Sheets de-DE", "1.234,56 €", DecimalMark::Comma, Some(1234.56)),
    ("Excel EN", "1.2E+05", DecimalMark::Dot, Some(120_000.0)),
    ("Excel EN", "1.5e4", DecimalMark::Dot, Some(15_000.0)),
    ("Excel EN", "2.5E-3", DecimalMark::Dot, Some(0.0025)),
    ("Excel EN", "(1,200)", DecimalMark::Dot, Some(-1200.0)),
    ("Excel EN", "-$5.00", DecimalMark::Dot, Some(-5.0)),
    ("Excel EN", "$5,000.00", DecimalMark::Dot, Some(5000.0)),
    ("Excel EN", "USD 300", DecimalMark::Dot, Some(300.0)),
    ("Excel FR", "1,2E+05", DecimalMark::Comma, Some(120_000.0)),
    ("Excel FR", "4\u{a0}500,00\u{a0}€", DecimalMark::Comma, Some(4500.0)),
    ("Excel FR", "12,5 %", DecimalMark::Comma, Some(0.125)),
    ("Excel FR", "-1\u{a0}234,56", DecimalMark::Comma, Some(-1234.56)),
    ("Excel FR", "1,5", DecimalMark::Comma, Some(1.5)),
    ("Excel DE", "5.000 €", DecimalMark::Comma, Some(5000.0)),
    ("Excel DE", "€ 5.000", DecimalMark::Dot, Some(5000.0)),
    ("Excel DE", "EUR 12.500,00", DecimalMark::Comma, Some(12500.0)),
    ("Excel DE", "12.500,00", DecimalMark::Comma, Some(12500.0)),
    ("Excel DE", "1.234.567", DecimalMark::Comma, Some(1_234_567.0)),
    (
        "Excel DE, ambiguous, comma column",
        "5.000",
        DecimalMark::Comma,
        Some(5000.0),
    ),
    ("Excel EN, ambiguous, dot column", "5.000", DecimalMark::Dot, Some(5.0)),
    ("LibreOffice", "1\u{2009}234,5", DecimalMark::Comma, Some(1234.5)),
    ("LibreOffice", "0,500", DecimalMark::Dot, Some(0.5)),
    ("Numbers", "5 000,00 €", DecimalMark::Comma, Some(5000.0)),
    ("Swiss", "CHF 1'250.50", DecimalMark::Dot, Some(1250.5)),
    ("not a number", "n/a", DecimalMark::Dot, None),
    ("not a number", "12 apples", DecimalMark::Dot, None),
    ("not a number", "€", DecimalMark::Dot, None),
    ("not a number", "1e", DecimalMark::Dot, None),
    ("not a number", "1E+5000", DecimalMark::Dot, None),
];

#[test]
fn numbers_from_real_exports() {
    for (origin, text, mark, expected) in NUMBERS {
        let read = read_number(text).map(|number| number.in_convention(*mark));
        assert_eq!(read, *expected, "{origin}: {text:?} with {mark:?} decimals");
    }
}

#[test]
fn only_a_dot_before_three_digits_without_currency_is_ambiguous() {
    assert_eq!(
        read_number("5.000"),
        Some(NumberText::Ambiguous {
            dot_decimal: 5.0,
            comma_decimal: 5000.0
        })
    );
    for text in ["5,000", "5.000 €", "5.00", "1.234,5", "0.500", "1234.567"] {
        assert!(
            matches!(read_number(text), Some(NumberText::Certain { .. })),
            "{text:?}: {:?}",
            read_number(text)
        );
    }
    assert_eq!(
        read_number("1.234,56"),
        Some(NumberText::Certain {
            value: 1234.56,
            shows: Some(DecimalMark::Comma)
        })
    );
}

/// How a person in each convention writes a date.
fn write_date(date: NaiveDate, order: DateOrder, separator: char, short_year: bool) -> String {
    let year = date.format(if short_year { "%y" } else { "%Y" });
    let (first, second) = match order {
        DateOrder::DayFirst => (date.format("%d"), date.format("%m")),
        DateOrder::MonthFirst => (date.format("%m"), date.format("%d")),
    };
    format!("{first}{separator}{second}{separator}{year}")
}

/// How a person in each convention writes an amount of cents.
fn write_amount(cents: i64, mark: DecimalMark, grouped: bool, currency: bool) -> String {
    let (group, decimal) = match mark {
        DecimalMark::Dot => (",", "."),
        DecimalMark::Comma => (".", ","),
    };
    let whole = (cents.abs() / 100).to_string();
    let mut digits = String::new();
    for (index, digit) in whole.chars().enumerate() {
        if grouped && index > 0 && (whole.len() - index).is_multiple_of(3) {
            digits.push_str(group);
        }
        digits.push(digit);
    }
    let sign = if cents < 0 { "-" } else { "" };
    let suffix = if currency { " €" } else { "" };
    format!("{sign}{digits}{decimal}{:02}{suffix}", cents.abs() % 100)
}

fn any_order() -> impl Strategy<Value = DateOrder> {
    prop_oneof![Just(DateOrder::DayFirst), Just(DateOrder::MonthFirst)]
}

fn any_mark() -> impl Strategy<Value = DecimalMark> {
    prop_oneof![Just(DecimalMark::Dot), Just(DecimalMark::Comma)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A date written in a source's own order reads back as that date.
    #[test]
    fn dates_written_in_an_order_read_back(
        days in 0i64..54_000,
        order in any_order(),
        separator in prop::sample::select(vec!['/', '.', '-']),
        short_year in any::<bool>(),
    ) {
        let date = NaiveDate::from_ymd_opt(1950, 1, 1).unwrap() + chrono::Duration::days(days);
        prop_assume!(!short_year || date.year() >= 2000);
        let text = write_date(date, order, separator, short_year);
        let read = read_date(&text, chrono_tz::UTC).and_then(|reading| reading.in_order(order));
        prop_assert_eq!(read, Some(date.and_hms_opt(0, 0, 0).unwrap().and_utc()), "{}", text);
    }

    /// An amount written in a source's own convention reads back as that
    /// amount, with or without grouping and currency.
    #[test]
    fn amounts_written_in_a_convention_read_back(
        cents in -10_000_000_000i64..10_000_000_000,
        mark in any_mark(),
        grouped in any::<bool>(),
        currency in any::<bool>(),
    ) {
        let text = write_amount(cents, mark, grouped, currency);
        let read = read_number(&text).map(|number| number.in_convention(mark));
        prop_assert_eq!(read, Some(cents as f64 / 100.0), "{}", text);
    }

    /// Whatever a cell holds, the parsers answer (a value or none) and never
    /// panic.
    #[test]
    fn any_text_is_answered_without_panicking(text in "\\PC{0,40}") {
        let _ = read_date(&text, chrono_tz::Europe::Paris);
        let _ = read_month(&text, chrono_tz::Europe::Paris);
        let _ = read_number(&text);
    }
}

#[test]
fn separators_that_group_nothing_are_no_number() {
    for text in ["1.2.2025", "3.5.1", "1,2.3,4", "12,34,567", "1234,567.5"] {
        assert_eq!(read_number(text), None, "{text:?}");
    }
    let huge = "9".repeat(400);
    assert_eq!(read_number(&huge), None, "beyond f64 is no number");
}
