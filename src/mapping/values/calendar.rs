//! Month and weekday names, as data: one entry per language, every spelling
//! already folded (lower case, no accents, no punctuation, see
//! [`super::fold_words`]). Adding a language is adding an entry here; the
//! date and month parsers read every language at once, so a sheet may mix
//! them.

/// The words one language uses for months, weekdays and ordinal days.
pub struct Language {
    pub name: &'static str,
    /// January first; full names and the abbreviations spreadsheets print.
    pub months: [&'static [&'static str]; 12],
    /// Monday first. Weekdays carry no information a date needs, so they
    /// are only recognised to be skipped.
    pub weekdays: [&'static [&'static str]; 7],
    /// Suffixes written after a day number: `1st`, `1er`.
    pub ordinal_suffixes: &'static [&'static str],
}

pub const LANGUAGES: &[Language] = &[
    Language {
        name: "English",
        months: [
            &["jan", "january"],
            &["feb", "february"],
            &["mar", "march"],
            &["apr", "april"],
            &["may"],
            &["jun", "june"],
            &["jul", "july"],
            &["aug", "august"],
            &["sep", "sept", "september"],
            &["oct", "october"],
            &["nov", "november"],
            &["dec", "december"],
        ],
        weekdays: [
            &["mon", "monday"],
            &["tue", "tues", "tuesday"],
            &["wed", "wednesday"],
            &["thu", "thur", "thurs", "thursday"],
            &["fri", "friday"],
            &["sat", "saturday"],
            &["sun", "sunday"],
        ],
        ordinal_suffixes: &["st", "nd", "rd", "th"],
    },
    Language {
        name: "French",
        months: [
            &["janv", "janvier"],
            &["fev", "fevr", "fevrier"],
            &["mars"],
            &["avr", "avril"],
            &["mai"],
            &["juin"],
            &["juil", "juillet"],
            &["aou", "aout"],
            &["sept", "septembre"],
            &["oct", "octobre"],
            &["nov", "novembre"],
            &["dec", "decembre"],
        ],
        weekdays: [
            &["lun", "lundi"],
            &["mar", "mardi"],
            &["mer", "mercredi"],
            &["jeu", "jeudi"],
            &["ven", "vendredi"],
            &["sam", "samedi"],
            &["dim", "dimanche"],
        ],
        ordinal_suffixes: &["er", "re", "e", "eme"],
    },
    Language {
        name: "German",
        months: [
            &["jan", "januar", "jaen", "jaenner", "janner"],
            &["feb", "februar"],
            &["maer", "maerz", "marz", "mrz"],
            &["apr", "april"],
            &["mai"],
            &["jun", "juni"],
            &["jul", "juli"],
            &["aug", "august"],
            &["sep", "sept", "september"],
            &["okt", "oktober"],
            &["nov", "november"],
            &["dez", "dezember"],
        ],
        weekdays: [
            &["mo", "montag"],
            &["di", "dienstag"],
            &["mi", "mittwoch"],
            &["do", "donnerstag"],
            &["fr", "freitag"],
            &["sa", "samstag", "sonnabend"],
            &["so", "sonntag"],
        ],
        ordinal_suffixes: &[],
    },
    Language {
        name: "Spanish",
        months: [
            &["ene", "enero"],
            &["feb", "febrero"],
            &["mar", "marzo"],
            &["abr", "abril"],
            &["may", "mayo"],
            &["jun", "junio"],
            &["jul", "julio"],
            &["ago", "agosto"],
            &["sep", "sept", "septiembre", "set", "setiembre"],
            &["oct", "octubre"],
            &["nov", "noviembre"],
            &["dic", "diciembre"],
        ],
        weekdays: [
            &["lun", "lunes"],
            &["mar", "martes"],
            &["mie", "miercoles"],
            &["jue", "jueves"],
            &["vie", "viernes"],
            &["sab", "sabado"],
            &["dom", "domingo"],
        ],
        ordinal_suffixes: &["o"],
    },
];

/// Words that may sit between a date's parts and mean nothing: `le 10 mars`,
/// `10 de marzo de 2025`, `March 4th, 2025`.
pub const FILLER_WORDS: &[&str] = &["le", "de", "del", "the", "of", "den"];

/// The month (1 to 12) a folded word names, in any language.
pub fn month_number(word: &str) -> Option<u32> {
    LANGUAGES.iter().find_map(|language| {
        language
            .months
            .iter()
            .position(|names| names.contains(&word))
            .map(|index| index as u32 + 1)
    })
}

/// Whether a folded word is a weekday in any language.
pub fn is_weekday(word: &str) -> bool {
    LANGUAGES
        .iter()
        .any(|language| language.weekdays.iter().any(|names| names.contains(&word)))
}

/// The day number of `1`, `01`, `1st`, `1er`: digits, then at most one
/// ordinal suffix of some language.
pub fn day_number(word: &str) -> Option<u32> {
    let digits_end = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
    let (digits, suffix) = word.split_at(digits_end);
    if digits.is_empty() || digits.len() > 2 {
        return None;
    }
    let known_suffix = suffix.is_empty()
        || LANGUAGES
            .iter()
            .any(|language| language.ordinal_suffixes.contains(&suffix));
    let day: u32 = digits.parse().ok()?;
    (known_suffix && (1..=31).contains(&day)).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::values::fold_words;

    #[test]
    fn every_spelling_is_already_folded() {
        for language in LANGUAGES {
            let words = language
                .months
                .iter()
                .chain(language.weekdays.iter())
                .flat_map(|names| names.iter());
            for word in words.chain(language.ordinal_suffixes) {
                assert_eq!(&fold_words(word), word, "{}: {word:?} is not folded", language.name);
            }
        }
    }

    #[test]
    fn no_word_names_two_months() {
        for language in LANGUAGES {
            for (index, names) in language.months.iter().enumerate() {
                for name in *names {
                    assert_eq!(month_number(name), Some(index as u32 + 1), "{}: {name}", language.name);
                }
            }
        }
    }

    #[test]
    fn day_numbers_with_ordinals() {
        assert_eq!(day_number("1er"), Some(1));
        assert_eq!(day_number("4th"), Some(4));
        assert_eq!(day_number("04"), Some(4));
        assert_eq!(day_number("32"), None);
        assert_eq!(day_number("4x"), None);
        assert_eq!(day_number("2025"), None);
    }
}
