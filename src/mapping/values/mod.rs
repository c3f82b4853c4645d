//! Reading typed values out of what people type into spreadsheets.
//!
//! Every parser here is pure and forgiving about presentation (currency signs,
//! thousands separators, month names in several languages) but never guesses
//! a value it cannot read: it returns `None` and the caller reports the cell.
//! Where a spelling means different things in different locales (`02/01/2025`,
//! `5.000`) the parser returns every reading, and the mapping decides from the
//! rest of the source ([`crate::mapping::conventions`]).

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use unicode_normalization::UnicodeNormalization;

pub mod calendar;
pub mod dates;
pub mod labels;
pub mod links;
pub mod numbers;

/// `text` without leading and trailing whitespace, as [`str::trim`] has
/// it. Most cells start and end with a visible ASCII character: those are
/// returned as they are without decoding either end.
pub fn trim(text: &str) -> &str {
    match (text.as_bytes().first(), text.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

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
    let mut folded = String::with_capacity(text.len());
    fold_key_text_into(text, &mut folded);
    folded
}

/// [`fold_key_text`], appended to `folded`.
pub fn fold_key_text_into(text: &str, folded: &mut String) {
    // ASCII (most client names) is folded in place, without allocating.
    if text.is_ascii() {
        let start = folded.len();
        for word in text.split_ascii_whitespace() {
            if folded.len() > start {
                folded.push(' ');
            }
            folded.push_str(word);
        }
        folded[start..].make_ascii_lowercase();
        return;
    }
    folded.push_str(&text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase());
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

/// A list cell's items: split on `,` or `;`, trimmed, empty items dropped.
pub fn list_items(text: &str) -> mongodb::bson::Bson {
    let items = text
        .split([',', ';'])
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| mongodb::bson::Bson::String(item.to_owned()))
        .collect();
    mongodb::bson::Bson::Array(items)
}

/// A yes/no cell, in English or French, as words, letters or digits.
pub fn read_bool(text: &str) -> Option<bool> {
    match fold_label(text).as_str() {
        "yes" | "y" | "true" | "oui" | "o" | "vrai" | "1" | "x" => Some(true),
        "no" | "n" | "false" | "non" | "faux" | "0" => Some(false),
        _ => None,
    }
}

pub fn midnight_utc(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(NaiveTime::MIN).and_utc()
}

/// The closed set of values a field may hold, and how loosely a spelling may
/// match one of them.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumSpec {
    pub values: Vec<String>,
    /// Other spellings, matched after folding: `(spelling, canonical value)`.
    pub value_aliases: Vec<(String, String)>,
    /// Values like `B Legals` carry a one-letter ordering prefix that people
    /// often leave out (`legals`) or punctuate (`b - legals`).
    pub letter_prefixed: bool,
}

impl EnumSpec {
    /// The canonical value `text` stands for, if any. Builds the lookup each
    /// time: a sync builds it once with [`EnumSpec::lookup`].
    pub fn canonical(&self, text: &str) -> Option<&str> {
        let lookup = self.lookup();
        lookup.position(text).map(|index| self.values[index].as_str())
    }

    /// Every accepted spelling, folded once. Values come first, so an alias
    /// never shadows a value.
    pub fn lookup(&self) -> EnumLookup {
        let mut by_folded = HashMap::default();
        for (index, value) in self.values.iter().enumerate() {
            by_folded.entry(fold_label(value)).or_insert(index);
            if let Some(rest) = strip_letter_prefix(value).filter(|_| self.letter_prefixed) {
                by_folded.entry(fold_label(rest)).or_insert(index);
            }
        }
        for (alias, value) in &self.value_aliases {
            if let Some(index) = self.values.iter().position(|candidate| candidate == value) {
                by_folded.entry(fold_label(alias)).or_insert(index);
            }
        }
        // The spellings people type most (the values and aliases as
        // written) are also found as they are, without folding.
        let mut exact = HashMap::default();
        let spellings = self
            .values
            .iter()
            .chain(self.value_aliases.iter().map(|(alias, _)| alias));
        for spelling in spellings {
            if let Some(&index) = by_folded.get(&fold_label(spelling)) {
                exact.entry(spelling.clone()).or_insert(index);
            }
        }
        EnumLookup {
            by_folded,
            exact,
            values: self.values.clone(),
        }
    }

    /// Every spelling that folds to the same label as an earlier one and
    /// names another value: `(spelling, the value it would have meant)`.
    pub fn clashes(&self) -> Vec<(String, String)> {
        let mut seen: HashMap<String, &str> = HashMap::new();
        let mut clashes = Vec::new();
        let values = self.values.iter().map(|value| (value, value));
        let aliases = self.value_aliases.iter().map(|(alias, value)| (alias, value));
        for (spelling, value) in values.chain(aliases) {
            match seen.get(&fold_label(spelling)) {
                Some(first) if *first != value.as_str() => clashes.push((spelling.clone(), (*first).to_owned())),
                Some(_) if spelling != value => clashes.push((spelling.clone(), value.clone())),
                Some(_) => {}
                None => {
                    seen.insert(fold_label(spelling), value);
                }
            }
        }
        clashes
    }
}

/// An [`EnumSpec`] ready for fast matching.
#[derive(Debug, Clone)]
pub struct EnumLookup {
    by_folded: HashMap<String, usize, foldhash::fast::RandomState>,
    /// Spellings as declared, each with what its folded form finds.
    exact: HashMap<String, usize, foldhash::fast::RandomState>,
    values: Vec<String>,
}

impl EnumLookup {
    pub fn canonical(&self, text: &str) -> Option<&str> {
        self.position(text).map(|index| self.values[index].as_str())
    }

    fn position(&self, text: &str) -> Option<usize> {
        match self.exact.get(text) {
            Some(&index) => Some(index),
            None => self.by_folded.get(&fold_label(text)).copied(),
        }
    }
}

/// `"B Legals"` -> `Some("Legals")`; values without a single-letter prefix
/// (`"Lost"`) have none.
fn strip_letter_prefix(value: &str) -> Option<&str> {
    let (prefix, rest) = value.split_once(' ')?;
    (prefix.len() == 1 && prefix.chars().all(|c| c.is_ascii_uppercase())).then_some(rest)
}

/// How alike two labels must be (see [`similarity`]) to be suggested.
pub const CLOSE_ENOUGH: f64 = 0.3;

/// How alike two labels are, from 0 to 1: the share of their folded
/// spellings' three-letter runs they have in common (Jaccard).
pub fn similarity(left: &str, right: &str) -> f64 {
    let grams = |text: &str| -> std::collections::BTreeSet<String> {
        let folded: Vec<char> = format!("  {}  ", fold_label(text)).chars().collect();
        folded.windows(3).map(|window| window.iter().collect()).collect()
    };
    if fold_label(left).is_empty() || fold_label(right).is_empty() {
        return 0.0;
    }
    let (left, right) = (grams(left), grams(right));
    let shared = left.intersection(&right).count();
    let all = left.union(&right).count();
    if all == 0 { 0.0 } else { shared as f64 / all as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_trim_is_str_trim() {
        for text in [
            "",
            " ",
            "Acme",
            " Acme ",
            "Acme\t",
            "\u{a0}Acme",
            "Acme\u{a0}",
            "\u{2003}",
            "é",
            " é ",
            "\u{b}x",
            "x\u{c}",
            "a b",
            "\r\n",
            "(1,200)",
        ] {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }

    #[test]
    fn folding() {
        assert_eq!(fold_label("Show / No-Show"), "shownoshow");
        assert_eq!(fold_label("Date de découverte"), "datededecouverte");
        assert_eq!(fold_words("  B - Legals "), "b legals");
        assert_eq!(fold_key_text("  Acme   CORP "), "acme corp");
    }

    #[test]
    fn labels_are_close_by_their_spelling() {
        assert!(similarity("Health score", "health_score") > 0.9);
        assert!(similarity("Expected MRR", "Exp. MRR") > CLOSE_ENOUGH);
        assert!(similarity("Monthly value", "expected_mrr") < CLOSE_ENOUGH);
        assert_eq!(similarity("", ""), 0.0);
    }
}
