//! CSV exports as people actually produce them: Google Sheets downloads,
//! French Excel "CSV (point-virgule)" files in Windows-1252, tab-separated
//! pastes, with BOMs, CRLF, quoted newlines, ragged rows and title lines.

use encoding_rs::{Encoding, WINDOWS_1252};

use super::table::{Cell, Table};

/// Delimiters tried, in order of preference when they score the same.
const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];
/// Records sampled to pick the delimiter.
const SAMPLE_RECORDS: usize = 30;

#[derive(Debug, thiserror::Error)]
#[error("CSV from {location} is malformed near line {line}: {message}")]
pub struct CsvError {
    pub location: String,
    pub line: usize,
    pub message: String,
}

/// Parses a whole export into a table. `location` names it in errors.
pub fn parse(bytes: &[u8], location: &str) -> Result<Table, CsvError> {
    let text = decode(bytes);
    let delimiter = detect_delimiter(&text);
    let mut reader = reader(&text, delimiter);
    let mut table = Table::default();
    let mut record = csv::StringRecord::new();
    let mut lines = LineCounter::new(&text);
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = lines.line_at(record.position().map_or(0, csv::Position::byte));
                let cells = record.iter().map(Cell::text).collect();
                table.push_row(line, cells);
            }
            Err(error) => {
                return Err(CsvError {
                    location: location.to_owned(),
                    line: lines.line_at(error.position().map_or(0, csv::Position::byte)),
                    message: error.to_string(),
                });
            }
        }
    }
    Ok(table)
}

/// Line numbers from byte offsets. The csv crate's own line count skips empty
/// lines, which would send people to the wrong row of their file.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        LineCounter {
            text: text.as_bytes(),
            offset: 0,
            line: 1,
        }
    }

    /// The 1-based line of the record the reader says starts at `byte`; it
    /// reports where it began scanning, which may be the previous record's
    /// line terminator or blank lines, so those are skipped first. Offsets
    /// must not decrease between calls.
    fn line_at(&mut self, byte: u64) -> usize {
        let mut target = usize::try_from(byte).unwrap_or(usize::MAX).min(self.text.len());
        while matches!(self.text.get(target), Some(b'\r' | b'\n')) {
            target += 1;
        }
        if target > self.offset {
            self.line += self.text[self.offset..target].iter().filter(|&&b| b == b'\n').count();
            self.offset = target;
        }
        self.line
    }
}

/// UTF-8 or UTF-16 when a BOM says so, UTF-8 when the bytes are valid UTF-8,
/// else Windows-1252, which is what Excel writes on French Windows. (Every
/// byte sequence is valid Windows-1252, so this never fails.)
pub fn decode(bytes: &[u8]) -> String {
    if let Some((encoding, bom_length)) = Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_length..]);
        return text.into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => WINDOWS_1252.decode_without_bom_handling(bytes).0.into_owned(),
    }
}

fn reader(text: &str, delimiter: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
}

/// The delimiter under which the most sampled records share one width of two
/// or more fields. A title line or a ragged row does not sway it, and a comma
/// inside `4 500,00 €` does not beat the semicolons around it.
pub fn detect_delimiter(text: &str) -> u8 {
    let score = |delimiter: u8| {
        let mut widths: Vec<usize> = reader(text, delimiter)
            .records()
            .take(SAMPLE_RECORDS)
            .filter_map(Result::ok)
            .map(|record| record.len())
            .filter(|&width| width > 1)
            .collect();
        widths.sort_unstable();
        let mut best = (0, 0);
        for width in widths.chunk_by(|a, b| a == b) {
            best = best.max((width.len(), width[0]));
        }
        best
    };
    let mut chosen = DELIMITERS[0];
    let mut chosen_score = score(chosen);
    for &delimiter in &DELIMITERS[1..] {
        let candidate = score(delimiter);
        if candidate > chosen_score {
            (chosen, chosen_score) = (delimiter, candidate);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(table: &Table) -> Vec<Vec<String>> {
        table
            .rows
            .iter()
            .map(|row| row.cells.iter().map(Cell::display).collect())
            .collect()
    }

    #[test]
    fn decodes_every_encoding_seen_in_exports() {
        assert_eq!(decode(b"\xEF\xBB\xBFClient"), "Client");
        assert_eq!(decode("Société".as_bytes()), "Société");
        assert_eq!(decode(b"Soci\xe9t\xe9 \x80"), "Société €");
        assert_eq!(decode(b"\xFF\xFEC\x00l\x00"), "Cl");
    }

    #[test]
    fn detects_each_delimiter() {
        assert_eq!(detect_delimiter("a,b,c\n1,2,3\n"), b',');
        assert_eq!(detect_delimiter("a;b;c\n1;4 500,00 €;3\n"), b';');
        assert_eq!(detect_delimiter("a\tb\tc\n1\t2,5\t3\n"), b'\t');
        assert_eq!(detect_delimiter("Pipeline export, Q1\na;b;c\n1;2;3\n4;5;6\n"), b';');
    }

    #[test]
    fn keeps_line_numbers_and_skips_blank_rows() {
        let table = parse(b"Client,Stage\r\n\r\n,,\r\n\"Acme\nCorp\",Lost\r\nGlobex,Lost", "test").unwrap();
        assert_eq!(
            texts(&table),
            vec![
                vec!["Client", "Stage"],
                vec!["Acme\nCorp", "Lost"],
                vec!["Globex", "Lost"]
            ]
        );
        assert_eq!(
            table.rows.iter().map(|row| row.number).collect::<Vec<_>>(),
            vec![1, 4, 6]
        );
        assert_eq!(
            table.blank_rows, 1,
            "the line of bare commas is blank; an empty line is not a record"
        );
    }

    #[test]
    fn unterminated_quote_is_read_to_the_end_not_lost() {
        let table = parse(b"Client,Stage\n\"Acme,Lost\n", "test").unwrap();
        assert_eq!(table.rows.len(), 2);
    }
}
