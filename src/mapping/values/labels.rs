//! Header labels as people write them: the words that name a field, in any
//! order, without the little words between them, with common abbreviations
//! read, and a trailing hint (`(€)`, `[dd/mm/yyyy]`, `- EUR`) set aside.

use super::fold_words;

/// Words that say nothing of a field, in the languages of the exports
/// sheetsync reads (English, French, German, Spanish).
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "for", "in", "of", "per", "the", "to", // English
    "au", "aux", "d", "de", "des", "du", "en", "et", "l", "la", "le", "les", "par", "pour", // French
    "das", "dem", "den", "der", "des", "die", "im", "und", "vom", "von", "zum", "zur", // German
    "al", "del", "el", "la", "las", "los", "por", "y", // Spanish
];

/// Abbreviations headers use, and the word each stands for.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("acct", "account"),
    ("amt", "amount"),
    ("dt", "date"),
    ("est", "estimated"),
    ("exp", "expected"),
    ("mgr", "manager"),
    ("nb", "number"),
    ("nbr", "number"),
    ("no", "number"),
    ("nr", "number"),
    ("num", "number"),
    ("qty", "quantity"),
    ("rev", "revenue"),
];

/// The words of a label that name its field: folded, abbreviations read,
/// stop words dropped, in sorted order (`Date of discovery` and `Discovery
/// date` give `date discovery`). Empty when nothing is left.
pub fn label_words(label: &str) -> String {
    let spaced = label.replace('#', " number ");
    let folded = fold_words(&spaced);
    let mut words: Vec<&str> = folded
        .split(' ')
        .map(|word| {
            ABBREVIATIONS
                .iter()
                .find(|(short, _)| *short == word)
                .map_or(word, |(_, long)| long)
        })
        .filter(|word| !word.is_empty() && !STOP_WORDS.contains(word))
        .collect();
    words.sort_unstable();
    words.dedup();
    words.join(" ")
}

/// The label without a trailing hint: text in parentheses or brackets at
/// its end, or after ` - `; `None` when it has none (or nothing else).
pub fn without_hint(label: &str) -> Option<&str> {
    let trimmed = label.trim_end();
    let cut = if let Some(rest) = trimmed.strip_suffix(')') {
        rest.rfind('(')
    } else if let Some(rest) = trimmed.strip_suffix(']') {
        rest.rfind('[')
    } else {
        trimmed.rfind(" - ")
    }?;
    let rest = trimmed[..cut].trim();
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_ignore_order_little_words_and_abbreviations() {
        assert_eq!(label_words("Date of discovery"), label_words("Discovery date"));
        assert_eq!(label_words("Score santé"), label_words("Score de santé"));
        assert_eq!(label_words("Exp. ARR"), label_words("expected arr"));
        assert_eq!(label_words("# of seats"), "number seats");
        assert_eq!(label_words("de la"), "");
    }

    #[test]
    fn a_trailing_hint_is_set_aside() {
        assert_eq!(without_hint("Expected MRR (€)"), Some("Expected MRR"));
        assert_eq!(without_hint("Discovery date [dd/mm/yyyy]"), Some("Discovery date"));
        assert_eq!(without_hint("ARR - EUR"), Some("ARR"));
        assert_eq!(without_hint("Stage"), None);
        assert_eq!(without_hint("(€)"), None);
    }
}
