//! A value's fingerprint as the merge compares it, so that the stored side
//! can be held as 8 bytes a field instead of the document.
//!
//! Two values have the same fingerprint exactly when `compare::same_value`
//! (or, for a key field, `same_key`) says they are the same, up to 64-bit
//! hash collisions (about one chance in 10^19 per comparison): numbers by
//! value whatever their BSON type, an ISO date text by the moment it names,
//! a missing field as a cleared one, a key's text folded.

use std::hash::{BuildHasher, Hash, Hasher};

use mongodb::bson::{Bson, RawBsonRef};

use super::compare::iso_millis;
use crate::mapping::values::fold_key_text;

/// Seeded once per process; every fingerprint of a merge uses the same.
#[derive(Debug, Clone)]
pub(super) struct Fingerprints {
    state: foldhash::fast::RandomState,
}

impl Fingerprints {
    pub(super) fn new() -> Fingerprints {
        Fingerprints {
            state: foldhash::fast::RandomState::default(),
        }
    }

    /// A record key's (folded already) hash: documents are found by it.
    pub(super) fn key(&self, key: &str) -> u64 {
        self.state.hash_one(key)
    }

    /// A value the sheet wants (`None`: the field is absent).
    pub(super) fn of(&self, value: Option<&Bson>, key: bool) -> u64 {
        let mut hasher = self.state.build_hasher();
        feed(&mut hasher, value, key);
        hasher.finish()
    }

    /// A stored value, read in place where it can be (text, numbers,
    /// dates); anything else is decoded first.
    pub(super) fn of_raw(&self, value: Option<RawBsonRef<'_>>, key: bool) -> u64 {
        let mut hasher = self.state.build_hasher();
        match value {
            None | Some(RawBsonRef::Null) => feed(&mut hasher, None, key),
            Some(RawBsonRef::String(text)) => feed_text(&mut hasher, text, key),
            Some(RawBsonRef::Double(number)) => feed_number(&mut hasher, number),
            Some(RawBsonRef::Int32(number)) => feed_number(&mut hasher, f64::from(number)),
            // Counts stored by the app are far below 2^53.
            Some(RawBsonRef::Int64(number)) => feed_number(&mut hasher, number as f64),
            Some(RawBsonRef::DateTime(date)) => {
                6u8.hash(&mut hasher);
                date.timestamp_millis().hash(&mut hasher);
            }
            Some(other) => {
                let decoded = Bson::try_from(other.to_raw_bson()).ok();
                feed(&mut hasher, decoded.as_ref(), key);
            }
        }
        hasher.finish()
    }
}

fn feed(hasher: &mut impl Hasher, value: Option<&Bson>, key: bool) {
    match value {
        None | Some(Bson::Null) => 0u8.hash(hasher),
        Some(Bson::String(text)) => feed_text(hasher, text, key),
        Some(Bson::Double(number)) => feed_number(hasher, *number),
        Some(Bson::Int32(number)) => feed_number(hasher, f64::from(*number)),
        Some(Bson::Int64(number)) => feed_number(hasher, *number as f64),
        Some(Bson::DateTime(date)) => {
            6u8.hash(hasher);
            date.timestamp_millis().hash(hasher);
        }
        Some(Bson::Array(items)) => {
            5u8.hash(hasher);
            items.len().hash(hasher);
            for item in items {
                feed(hasher, Some(item), false);
            }
        }
        Some(Bson::Boolean(flag)) => {
            7u8.hash(hasher);
            flag.hash(hasher);
        }
        // Compared whole by `==`: their canonical extended JSON is as exact.
        Some(other) => {
            8u8.hash(hasher);
            other.clone().into_canonical_extjson().to_string().hash(hasher);
        }
    }
}

fn feed_number(hasher: &mut impl Hasher, number: f64) {
    1u8.hash(hasher);
    // -0.0 == 0.0 for the comparison.
    let number = if number == 0.0 { 0.0 } else { number };
    number.to_bits().hash(hasher);
}

fn feed_text(hasher: &mut impl Hasher, text: &str, key: bool) {
    if key {
        2u8.hash(hasher);
        fold_key_text(text).hash(hasher);
    } else if let Some(millis) = iso_millis(text) {
        3u8.hash(hasher);
        millis.hash(hasher);
    } else {
        4u8.hash(hasher);
        text.hash(hasher);
    }
}

#[cfg(test)]
mod tests {
    use super::super::compare::{same_key, same_value};
    use super::*;
    use mongodb::bson::{DateTime as BsonDateTime, RawDocumentBuf, doc};

    /// The fingerprints agree with the comparison on every pair of a set of
    /// values the app and the sheet write.
    #[test]
    fn fingerprints_agree_with_the_comparison() {
        let prints = Fingerprints::new();
        let values = vec![
            None,
            Some(Bson::Null),
            Some(Bson::Int32(82)),
            Some(Bson::Int64(82)),
            Some(Bson::Double(82.0)),
            Some(Bson::Double(82.5)),
            Some(Bson::Double(-0.0)),
            Some(Bson::Int32(0)),
            Some(Bson::String("82".into())),
            Some(Bson::String("Acme Corp".into())),
            Some(Bson::String("acme  corp".into())),
            Some(Bson::String("2024-01-31".into())),
            Some(Bson::String("2024-01-31T00:00:00Z".into())),
            Some(Bson::String("2024-01-31T00:00:00.000Z".into())),
            Some(Bson::String("2024-02-01".into())),
            Some(Bson::DateTime(BsonDateTime::from_millis(1_706_659_200_000))),
            Some(Bson::Boolean(true)),
            Some(Bson::Array(vec!["a".into(), "b".into()])),
            Some(Bson::Array(vec!["b".into(), "a".into()])),
            Some(Bson::Array(vec![Bson::Int32(1)])),
            Some(Bson::Array(vec![Bson::Double(1.0)])),
            Some(Bson::Document(doc! { "a": 1 })),
        ];
        for stored in &values {
            let raw_holder = stored.as_ref().map(|value| {
                let mut document = RawDocumentBuf::new();
                document.append("v", mongodb::bson::RawBson::try_from(value.clone()).unwrap());
                document
            });
            let raw = raw_holder.as_ref().and_then(|document| document.get("v").unwrap());
            for desired in values.iter().flatten() {
                for key in [false, true] {
                    let same = if key {
                        same_key(stored.as_ref(), desired) || same_value(stored.as_ref(), desired)
                    } else {
                        same_value(stored.as_ref(), desired)
                    };
                    // A key is matched by its folded text, so for a key only
                    // two texts meet (ISO dates are not keys).
                    let texts = matches!((stored, desired), (Some(Bson::String(left)), Bson::String(right))
                        if iso_millis(left).is_none() && iso_millis(right).is_none());
                    if key && !texts {
                        continue;
                    }
                    assert_eq!(
                        prints.of_raw(raw, key) == prints.of(Some(desired), key),
                        same,
                        "stored {stored:?}, desired {desired:?}, key {key}"
                    );
                }
            }
        }
    }
}
