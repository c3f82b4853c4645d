//! Numbers and money as spreadsheets write them, in every locale's notation.
//!
//! Most spellings say which mark is the decimal one (`1.234,56`, `5,5`,
//! `1,234,567`). One does not: a single `.` followed by exactly three digits
//! (`5.000`) groups thousands in German, Italian, Spanish or Dutch sheets and
//! marks decimals in English ones. Such values come back
//! [`NumberText::Ambiguous`], and the mapping reads them by the convention the
//! rest of the column shows. (`5,000` is not ambiguous in practice: no locale
//! writes five that way, so it is five thousand.)

use serde::Serialize;

/// The character that separates a number's whole part from its fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecimalMark {
    /// `1,234.56`: English-speaking countries, Asia.
    Dot,
    /// `1.234,56`, `1 234,56`: most of Europe and Latin America.
    Comma,
}

impl DecimalMark {
    fn of(separator: char) -> DecimalMark {
        if separator == ',' {
            DecimalMark::Comma
        } else {
            DecimalMark::Dot
        }
    }

    fn other(self) -> DecimalMark {
        match self {
            DecimalMark::Dot => DecimalMark::Comma,
            DecimalMark::Comma => DecimalMark::Dot,
        }
    }

    pub fn symbol(self) -> char {
        match self {
            DecimalMark::Dot => '.',
            DecimalMark::Comma => ',',
        }
    }
}

/// What a number's text may mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumberText {
    /// One reading; `shows` is the decimal mark its spelling proves, if any.
    Certain { value: f64, shows: Option<DecimalMark> },
    /// `5.000` without a currency: the value in a `Dot` and in a `Comma`
    /// convention.
    Ambiguous { dot_decimal: f64, comma_decimal: f64 },
}

impl NumberText {
    /// The value in a source whose decimal mark is `mark`.
    pub fn in_convention(self, mark: DecimalMark) -> f64 {
        match (self, mark) {
            (NumberText::Certain { value, .. }, _) => value,
            (NumberText::Ambiguous { dot_decimal, .. }, DecimalMark::Dot) => dot_decimal,
            (NumberText::Ambiguous { comma_decimal, .. }, DecimalMark::Comma) => comma_decimal,
        }
    }
}

/// A money amount or plain number: `5000`, `5,000.50`, `5 000,50 €`,
/// `€5,000`, `5.000 €`, `1.234,56`, `(1,200)` (accounting negative), `-12.5`,
/// `1,2E+05`, `1.5e4`, and percentages as fractions (`12,5 %` is 0.125).
/// Spaces of every width and `'` group thousands.
pub fn read_number(text: &str) -> Option<NumberText> {
    let body = super::trim(text);
    plain_decimal(body).or_else(|| spelled_number(body))
}

/// The most digits [`plain_decimal`] reads: below 2^53, so a double holds
/// them, and every power of ten they can be divided by, exactly.
const MAX_PLAIN_DIGITS: usize = 15;

/// Powers of ten a double holds exactly, for [`plain_decimal`].
const EXACT_POWERS_OF_TEN: [f64; MAX_PLAIN_DIGITS] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
];

/// The spellings nearly every amount column uses, `5000`, `5000,50`,
/// `12.5`: ASCII digits with at most one `,` or `.` between them, read
/// without copying a byte. Anything else (signs, groups, currencies,
/// exponents, more than [`MAX_PLAIN_DIGITS`] digits) is `None`, for
/// [`spelled_number`].
///
/// Reads exactly as [`spelled_number`] does: the digits are an integer a
/// double holds exactly, and so is the power of ten they are divided by, so
/// the one division rounds as parsing the decimal text would.
fn plain_decimal(text: &str) -> Option<NumberText> {
    let (digits, separator) = plain_digits(text.as_bytes())?;
    // At most 15 digits: exact.
    let whole_number = digits as f64;
    let Some((at, mark)) = separator else {
        return Some(NumberText::Certain {
            value: whole_number,
            shows: None,
        });
    };
    let (whole, decimals) = (&text.as_bytes()[..at], text.len() - at - 1);
    let as_decimals = whole_number / EXACT_POWERS_OF_TEN[decimals];
    // The rules of `separated_digits` for a lone separator.
    let could_group = decimals == 3 && whole.len() <= 3 && whole.iter().any(|&byte| byte != b'0');
    Some(match (could_group, mark) {
        (false, _) => NumberText::Certain {
            value: as_decimals,
            shows: Some(mark),
        },
        (true, DecimalMark::Comma) => NumberText::Certain {
            value: whole_number,
            shows: None,
        },
        (true, DecimalMark::Dot) => NumberText::Ambiguous {
            dot_decimal: as_decimals,
            comma_decimal: whole_number,
        },
    })
}

/// The digits of [`plain_decimal`]'s spellings as one integer, and where
/// its separator is and which it is, if it has one.
fn plain_digits(bytes: &[u8]) -> Option<(u64, Option<(usize, DecimalMark)>)> {
    if bytes.is_empty() || bytes.len() > MAX_PLAIN_DIGITS + 1 {
        return None;
    }
    let (mut digits, mut separator) = (0u64, None);
    for (index, &byte) in bytes.iter().enumerate() {
        match byte {
            b'0'..=b'9' => digits = digits * 10 + u64::from(byte - b'0'),
            b',' | b'.' if separator.is_none() && index > 0 && index + 1 < bytes.len() => {
                separator = Some((index, DecimalMark::of(char::from(byte))));
            }
            _ => return None,
        }
    }
    let count = bytes.len() - usize::from(separator.is_some());
    (count <= MAX_PLAIN_DIGITS).then_some((digits, separator))
}

/// [`read_number`] for every spelling, `text` trimmed.
fn spelled_number(text: &str) -> Option<NumberText> {
    let mut body = text;
    let mut negative = false;
    if body.starts_with('(') && body.ends_with(')') {
        negative = true;
        body = &body[1..body.len() - 1];
    }
    let mut digits = Digits::default();
    let (mut currency, mut percent, mut exponent) = (false, false, None);
    let mut previous = ' ';
    for (index, c) in body.char_indices() {
        match c {
            '0'..='9' | ',' | '.' => digits.push(c),
            '-' | '\u{2212}' if digits.is_empty() => negative = !negative,
            '+' if digits.is_empty() => {}
            // `1,2E+05`: the exponent follows a digit directly.
            'e' | 'E' if previous.is_ascii_digit() && parse_exponent(&body[index + 1..]).is_some() => {
                exponent = parse_exponent(&body[index + 1..]);
                break;
            }
            c if c.is_whitespace() || c == '\'' => {}
            '€' | '$' | '£' | '¥' => currency = true,
            '%' => percent = true,
            _ if is_currency_word(c, body) => currency = true,
            _ => return None,
        }
        previous = c;
    }
    let reading = match exponent {
        Some((exponent, rest)) => {
            if !rest.chars().all(|c| c.is_whitespace() || c == '%') {
                return None;
            }
            percent |= rest.contains('%');
            scientific(digits.as_str(), exponent)?
        }
        None => separated_digits(digits.as_str(), currency)?,
    };
    let adjust = |value: f64| {
        let value = if negative { -value } else { value };
        if percent { value / 100.0 } else { value }
    };
    Some(match reading {
        NumberText::Certain { value, shows } => NumberText::Certain {
            value: adjust(value),
            shows,
        },
        NumberText::Ambiguous {
            dot_decimal,
            comma_decimal,
        } => NumberText::Ambiguous {
            dot_decimal: adjust(dot_decimal),
            comma_decimal: adjust(comma_decimal),
        },
    })
}

/// The exponent after `e`/`E` and what follows it.
fn parse_exponent(text: &str) -> Option<(i32, &str)> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let end = unsigned.find(|c: char| !c.is_ascii_digit()).unwrap_or(unsigned.len());
    if end == 0 || end > 3 {
        return None;
    }
    let magnitude: i32 = unsigned[..end].parse().ok()?;
    let exponent = if text.starts_with('-') { -magnitude } else { magnitude };
    Some((exponent, &unsigned[end..]))
}

/// `1,2E+05`: the mantissa has at most one separator, the decimal mark.
fn scientific(mantissa: &str, exponent: i32) -> Option<NumberText> {
    let separators: Vec<char> = mantissa.chars().filter(|c| !c.is_ascii_digit()).collect();
    let shows = match separators.as_slice() {
        [] => None,
        [separator] => Some(DecimalMark::of(*separator)),
        _ => return None,
    };
    let value: f64 = format!("{}e{exponent}", mantissa.replace(',', ".")).parse().ok()?;
    value.is_finite().then_some(NumberText::Certain { value, shows })
}

/// Letters are only allowed as an ISO currency code around the amount.
fn is_currency_word(c: char, body: &str) -> bool {
    c.is_ascii_alphabetic() && {
        let letters: String = body.chars().filter(|c| c.is_ascii_alphabetic()).collect();
        matches!(letters.to_ascii_uppercase().as_str(), "EUR" | "USD" | "GBP" | "CHF")
    }
}

/// Digits and `,`/`.` separators: when both appear the last one is the
/// decimal mark; one repeated groups thousands; a single one is the decimal
/// mark, unless exactly three digits follow it after a short, non-zero whole
/// part (`5.000`, `5,000`): that is a thousands group next to a currency or
/// after a comma, and ambiguous otherwise.
fn separated_digits(digits: &str, currency: bool) -> Option<NumberText> {
    if !digits.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let (mut separators, mut last_one, mut single_kind) = (0, None, true);
    for (index, separator) in digits.char_indices().filter(|(_, c)| !c.is_ascii_digit()) {
        single_kind &= last_one.is_none_or(|(_, previous)| previous == separator);
        last_one = Some((index, separator));
        separators += 1;
    }
    let Some((last, last_separator)) = last_one else {
        let value = without_groups(digits, None)?;
        return Some(NumberText::Certain { value, shows: None });
    };
    let certain = |decimal: Option<usize>, shows: DecimalMark| {
        let value = without_groups(digits, decimal)?;
        Some(NumberText::Certain {
            value,
            shows: Some(shows),
        })
    };
    // Every separator but a decimal mark must group thousands: a first group
    // of one to three digits, then groups of three (`1.2.2025` is a date typed
    // in the wrong column, not 122025).
    let grouped = match (single_kind, separators) {
        (false, _) => Some(&digits[..last]),
        (true, 2..) => Some(digits),
        // A lone separator may be the decimal mark: see below.
        (true, _) => None,
    };
    if grouped.is_some_and(|grouped| !well_grouped(grouped)) {
        return None;
    }
    if !single_kind {
        return certain(Some(last), DecimalMark::of(last_separator));
    }
    if separators > 1 {
        return certain(None, DecimalMark::of(last_separator).other());
    }
    let (whole, fraction) = (&digits[..last], &digits[last + 1..]);
    let could_group =
        fraction.len() == 3 && (1..=3).contains(&whole.len()) && !whole.trim_start_matches('0').is_empty();
    if !could_group {
        return certain(Some(last), DecimalMark::of(last_separator));
    }
    if currency {
        // Money is never written with three decimals.
        return certain(None, DecimalMark::of(last_separator).other());
    }
    let as_group = without_groups(digits, None)?;
    if last_separator == ',' {
        // No locale writes `5,000` for five: a comma before three digits
        // groups thousands (it proves nothing about the column, though).
        return Some(NumberText::Certain {
            value: as_group,
            shows: None,
        });
    }
    Some(NumberText::Ambiguous {
        dot_decimal: without_groups(digits, Some(last))?,
        comma_decimal: as_group,
    })
}

/// `1,234,567` or `12.345`: one to three digits, then groups of exactly
/// three, one separator between them.
fn well_grouped(whole: &str) -> bool {
    let mut groups = whole.split([',', '.']);
    let first_ok = groups.next().is_some_and(|first| (1..=3).contains(&first.len()));
    first_ok && groups.all(|group| group.len() == 3)
}

/// The digits as a number, the separator at `decimal` as the decimal point
/// and every other separator dropped; `None` past `f64`'s range.
fn without_groups(digits: &str, decimal: Option<usize>) -> Option<f64> {
    let mut plain = Digits::default();
    for (index, c) in digits.char_indices() {
        if c.is_ascii_digit() {
            plain.push(c);
        } else if Some(index) == decimal {
            plain.push('.');
        }
    }
    plain.as_str().parse().ok().filter(|value: &f64| value.is_finite())
}

/// The digits and separators of a number as read, kept on the stack when
/// they fit (every amount a sheet holds): three numbers a row are read on
/// every pass, and allocating for each was a tenth of a pass.
#[derive(Default)]
struct Digits {
    inline: [u8; Digits::INLINE],
    length: usize,
    /// All of them, once there are more than fit inline.
    spilled: String,
}

impl Digits {
    /// `Default` is derived for arrays of up to 32.
    const INLINE: usize = 32;

    /// Appends an ASCII digit or separator.
    fn push(&mut self, c: char) {
        match u8::try_from(c) {
            Ok(byte) if byte.is_ascii() && self.spilled.is_empty() && self.length < Self::INLINE => {
                self.inline[self.length] = byte;
                self.length += 1;
            }
            _ => {
                if self.spilled.is_empty() {
                    self.spilled.push_str(ascii(&self.inline[..self.length]));
                }
                self.spilled.push(c);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.length == 0 && self.spilled.is_empty()
    }

    fn as_str(&self) -> &str {
        match self.spilled.is_empty() {
            true => self.inline_str(),
            false => &self.spilled,
        }
    }

    fn inline_str(&self) -> &str {
        ascii(&self.inline[..self.length])
    }
}

/// Bytes stored as ASCII, as text (ASCII is always UTF-8).
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string of up to six digits, separators, spaces and minus
    /// signs, longer ones around the 15-digit limit and pseudo-random ones
    /// of up to 16 digits with a separator anywhere: the fast reading agrees
    /// with the full one wherever it answers, and answers for the plain
    /// ones.
    #[test]
    fn plain_decimals_read_as_every_spelling_does() {
        let alphabet = ['0', '1', '5', '9', ',', '.', ' ', '-'];
        let mut texts = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..6 {
            frontier = frontier
                .iter()
                .flat_map(|text| alphabet.iter().map(move |c| format!("{text}{c}")))
                .collect();
            texts.extend(frontier.iter().cloned());
        }
        for digits in [14, 15, 16, 17] {
            let run = "987654321".repeat(2)[..digits].to_owned();
            for at in [1, 3, digits - 3, digits - 1] {
                texts.push(format!("{},{}", &run[..at], &run[at..]));
                texts.push(format!("{}.{}", &run[..at], &run[at..]));
            }
            texts.push(run);
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |below: u64| {
            // xorshift: reproducible, no dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        for _ in 0..50_000 {
            let length = 1 + next(16) as usize;
            let mut text: String = (0..length).map(|_| char::from(b'0' + next(10) as u8)).collect();
            if next(4) > 0 {
                let at = next(length as u64 + 1) as usize;
                text.insert(at, if next(2) == 0 { ',' } else { '.' });
            }
            texts.push(text);
        }
        let mut answered = 0;
        for text in &texts {
            if let Some(plain) = plain_decimal(text) {
                answered += 1;
                assert_eq!(Some(plain), spelled_number(text), "{text:?}");
            }
        }
        assert!(answered > 40_000, "{answered}");
        for plain in [
            "5000",
            "5000,50",
            "12.5",
            "5.000",
            "5,000",
            "0,5",
            "123456789012345",
            "12345678901234,5",
        ] {
            assert!(plain_decimal(plain).is_some(), "{plain}");
        }
        for other in ["1234567890123456", "1,234,5", ",5", "5.", "-5", "5 000"] {
            assert!(plain_decimal(other).is_none(), "{other}");
        }
    }

    #[test]
    fn a_number_longer_than_the_stack_buffer_reads_the_same() {
        let long = format!("1{}", "0".repeat(45));
        let grouped = format!("1{}", ",000".repeat(15));
        for (text, value) in [(long.as_str(), 1e45), (grouped.as_str(), 1e45), ("1234.5", 1234.5)] {
            match read_number(text) {
                Some(NumberText::Certain { value: read, .. }) => assert_eq!(read, value, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
