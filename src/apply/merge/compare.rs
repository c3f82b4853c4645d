//! Whether a stored value already says what the sheet says, as the
//! application would read it: numbers by value whatever their BSON type,
//! ISO dates by the moment they name, keys folded. The merge compares
//! fingerprints (`fingerprint`); `same_value` and `same_key` are the rule
//! they follow, which their tests hold them to.

use chrono::SecondsFormat;
#[cfg(test)]
use mongodb::bson::Bson;
use mongodb::bson::DateTime as BsonDateTime;

use crate::bson_dates::from_bson_date;
#[cfg(test)]
use crate::mapping::values::fold_key_text;

/// How a collection writes dates as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DateText {
    /// `2025-01-31`; a value with a time of day is written as a moment.
    DateOnly,
    /// `2025-01-31T00:00:00.000Z`, as JavaScript's `toISOString` writes it.
    Moment,
}

impl DateText {
    pub(super) fn write(self, date: BsonDateTime) -> String {
        match from_bson_date(date) {
            Some(moment) if self == DateText::DateOnly && moment.time() == chrono::NaiveTime::MIN => {
                moment.format("%Y-%m-%d").to_string()
            }
            Some(moment) => moment.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => date.to_string(),
        }
    }
}

/// A stored ISO date or date-time as milliseconds since the epoch, so that
/// `2025-01-31` and `2025-01-31T00:00:00Z` are the same value.
pub(super) fn iso_millis(text: &str) -> Option<i64> {
    if let Ok(moment) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(moment.timestamp_millis());
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(crate::mapping::values::midnight_utc(day).timestamp_millis())
}

#[cfg(test)]
pub(super) fn same_key(stored: Option<&Bson>, desired: &Bson) -> bool {
    match (stored, desired) {
        (Some(Bson::String(stored)), Bson::String(desired)) => fold_key_text(stored) == fold_key_text(desired),
        _ => false,
    }
}

#[cfg(test)]
/// Whether the stored value already says what the sheet says: numbers are
/// compared by value whatever their BSON type (the app may store 82 as an
/// int), a missing field equals a cleared one.
pub(super) fn same_value(stored: Option<&Bson>, desired: &Bson) -> bool {
    match (stored, desired) {
        (None | Some(Bson::Null), Bson::Null) => true,
        (Some(stored), desired) => match (number(stored), number(desired)) {
            (Some(left), Some(right)) => left == right,
            _ => match (stored, desired) {
                (Bson::Array(left), Bson::Array(right)) => {
                    left.len() == right.len()
                        && left
                            .iter()
                            .zip(right)
                            .all(|(left, right)| same_value(Some(left), right))
                }
                (Bson::String(left), Bson::String(right)) if left != right => {
                    matches!((iso_millis(left), iso_millis(right)), (Some(left), Some(right)) if left == right)
                }
                _ => stored == desired,
            },
        },
        (None, _) => false,
    }
}

#[cfg(test)]
fn number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Double(number) => Some(*number),
        Bson::Int32(number) => Some(f64::from(*number)),
        // Counts stored by the app are far below 2^53.
        Bson::Int64(number) => Some(*number as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_as_the_app_would_read_them() {
        assert!(same_value(Some(&Bson::Int32(82)), &Bson::Double(82.0)));
        assert!(same_value(None, &Bson::Null));
        assert!(!same_value(None, &Bson::String("x".into())));
        assert!(!same_value(Some(&Bson::Int64(3)), &Bson::Double(3.5)));
        let tags = |items: &[&str]| Bson::Array(items.iter().map(|item| Bson::String((*item).into())).collect());
        assert!(same_value(Some(&tags(&["a", "b"])), &tags(&["a", "b"])));
        assert!(!same_value(Some(&tags(&["a", "b"])), &tags(&["b", "a"])));
        assert!(same_key(
            Some(&Bson::String("Acme Corp".into())),
            &Bson::String("acme  corp".into())
        ));
    }

    #[test]
    fn dates_keep_their_iso_form() {
        let day = BsonDateTime::from_millis(1_706_659_200_000);
        assert_eq!(DateText::DateOnly.write(day), "2024-01-31");
        assert_eq!(DateText::Moment.write(day), "2024-01-31T00:00:00.000Z");
        let stored = Bson::String("2024-01-31T00:00:00Z".into());
        assert!(same_value(Some(&stored), &Bson::String("2024-01-31".into())));
        assert!(!same_value(Some(&stored), &Bson::String("2024-02-01".into())));
    }
}
