//! The grid a whole-sheet reader would build, counted before it is built.
//!
//! `calamine` reads an `.xls` or `.ods` sheet whole, into a grid spanning
//! its first to its last used cell. That grid's size is not the file's: two
//! cells far apart, or OpenDocument's repeat counts, make a kilobyte file
//! ask for gigabytes. So these formats are scanned first, streaming, for
//! the largest grid any of their sheets would make, which is then held to
//! `[sources] max_workbook_cells`. (`.xlsx` and `.xlsb` are streamed cell by
//! cell and need no such count.)

use std::io::{self, BufRead, BufReader, Read, Seek};

/// Excel's grid, past which nothing is counted: a claim beyond it is
/// capped as the readers cap it.
const MAX_ROWS: u64 = 1 << 20;
const MAX_COLUMNS: u64 = 1 << 14;

/// The used extent of one sheet, zero-based and inclusive.
#[derive(Debug, Default, Clone, Copy)]
struct Extent {
    rows: Option<(u64, u64)>,
    columns: Option<(u64, u64)>,
}

impl Extent {
    fn add(&mut self, row: u64, first_column: u64, last_column: u64) {
        let widen = |span: &mut Option<(u64, u64)>, low: u64, high: u64| {
            *span = Some(match *span {
                Some((start, end)) => (start.min(low), end.max(high)),
                None => (low, high),
            });
        };
        widen(&mut self.rows, row, row);
        widen(&mut self.columns, first_column, last_column);
    }

    fn cells(&self) -> u64 {
        match (self.rows, self.columns) {
            (Some((top, bottom)), Some((left, right))) => (bottom - top + 1).saturating_mul(right - left + 1),
            _ => 0,
        }
    }
}

/// The largest grid (rows × columns between the first and the last used
/// cell) of any worksheet of an `.xls` (a compound file whose `Workbook`
/// stream holds BIFF records). `None` when the file has no such stream (an
/// encrypted `.xlsx` in a compound file, or a damaged file, which the reader
/// then reports).
pub fn xls_cells<R: Read + Seek>(reader: R) -> io::Result<Option<u64>> {
    let Ok(mut file) = cfb::CompoundFile::open(reader) else {
        return Ok(None);
    };
    let name = match (file.exists("/Workbook"), file.exists("/Book")) {
        (true, _) => "/Workbook",
        (false, true) => "/Book",
        (false, false) => return Ok(None),
    };
    let mut stream = BufReader::new(file.open_stream(name)?);
    let (mut largest, mut sheet) = (0u64, Extent::default());
    let mut record = Vec::new();
    while let Some(kind) = next_biff_record(&mut stream, &mut record)? {
        match kind {
            // BOF and EOF: a substream (a sheet) starts or ends.
            0x0809 | 0x000A => {
                largest = largest.max(sheet.cells());
                sheet = Extent::default();
            }
            // MULRK, MULBLANK: a row, a first column, ..., a last column.
            0x00BD | 0x00BE if record.len() >= 6 => {
                let last = u16::from_le_bytes([record[record.len() - 2], record[record.len() - 1]]);
                sheet.add(
                    u64::from(le16(&record, 0)),
                    u64::from(le16(&record, 2)),
                    u64::from(last),
                );
            }
            // FORMULA, RSTRING, LABELSST, BLANK, NUMBER, LABEL, BOOLERR, RK:
            // a row and a column first.
            0x0006 | 0x00D6 | 0x00FD | 0x0201 | 0x0203 | 0x0204 | 0x0205 | 0x027E if record.len() >= 4 => {
                let column = u64::from(le16(&record, 2));
                sheet.add(u64::from(le16(&record, 0)), column, column);
            }
            _ => {}
        }
    }
    Ok(Some(largest.max(sheet.cells())))
}

fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// The next BIFF record's type, its data in `record`; `None` at the end of
/// the stream. A record is at most 8,224 bytes by the format; its length
/// field cannot say more than 65,535.
fn next_biff_record(stream: &mut impl Read, record: &mut Vec<u8>) -> io::Result<Option<u16>> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    record.resize(usize::from(le16(&header, 2)), 0);
    match stream.read_exact(record) {
        Ok(()) => Ok(Some(le16(&header, 0))),
        // A stream cut inside a record: what came before is counted.
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(error) => Err(error),
    }
}

/// The largest grid `calamine` would build for any table of an
/// OpenDocument `content.xml`, as it builds it: the rows between the first
/// and the last that hold a value (repeats counted) by the columns up to the
/// last value, and, read on the way, every cell up to a row's last value
/// (column repeats expanded). Empty cells a row ends with cost nothing.
pub fn ods_cells(content: impl BufRead) -> Result<u64, quick_xml::Error> {
    let mut reader = quick_xml::Reader::from_reader(content);
    let mut buffer = Vec::new();
    let (mut largest, mut table) = (0u64, OdsTable::default());
    loop {
        let event = reader.read_event_into(&mut buffer)?;
        match &event {
            quick_xml::events::Event::Start(element) | quick_xml::events::Event::Empty(element) => {
                let empty = matches!(event, quick_xml::events::Event::Empty(_));
                let repeats = |name: &[u8]| -> u64 {
                    element
                        .try_get_attribute(name)
                        .ok()
                        .flatten()
                        .and_then(|attribute| std::str::from_utf8(&attribute.value).ok()?.parse().ok())
                        .unwrap_or(1)
                };
                match element.name().as_ref() {
                    b"table:table" => table = OdsTable::default(),
                    b"table:table-row" => {
                        table.start_row(repeats(b"table:number-rows-repeated"));
                        if empty {
                            table.end_row();
                        }
                    }
                    b"table:table-cell" | b"table:covered-table-cell" => {
                        // A value is an attribute (office:value-type) or
                        // content (text); an empty element has neither.
                        let has_value =
                            !empty || element.try_get_attribute(b"office:value-type").ok().flatten().is_some();
                        table.cell(repeats(b"table:number-columns-repeated"), has_value);
                    }
                    _ => {}
                }
            }
            quick_xml::events::Event::End(element) => match element.name().as_ref() {
                b"table:table-row" => table.end_row(),
                b"table:table" => largest = largest.max(table.cells()),
                _ => {}
            },
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
        buffer.clear();
    }
    Ok(largest.max(table.cells()))
}

/// One OpenDocument table being counted.
#[derive(Debug, Default)]
struct OdsTable {
    /// Rows so far, repeats counted.
    row: u64,
    repeats: u64,
    /// The row being read: its next column, the column after its last
    /// value, and whether it has one.
    column: u64,
    row_end: u64,
    extent: Extent,
    /// Cells read up to each row's last value, repeats expanded.
    read: u64,
}

impl OdsTable {
    fn start_row(&mut self, repeats: u64) {
        self.repeats = repeats.clamp(1, MAX_ROWS);
        (self.column, self.row_end) = (0, 0);
    }

    fn cell(&mut self, repeats: u64, has_value: bool) {
        self.column = (self.column + repeats.max(1)).min(MAX_COLUMNS);
        if has_value {
            self.row_end = self.column;
        }
    }

    fn end_row(&mut self) {
        if self.row_end > 0 {
            let last_row = (self.row + self.repeats - 1).min(MAX_ROWS - 1);
            self.extent.add(self.row.min(MAX_ROWS - 1), 0, self.row_end - 1);
            self.extent.add(last_row, 0, self.row_end - 1);
            self.read = self.read.saturating_add(self.row_end);
        }
        self.row = (self.row + self.repeats).min(MAX_ROWS);
        self.row_end = 0;
    }

    fn cells(&self) -> u64 {
        self.extent.cells().max(self.read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xls_grid_spans_its_first_to_its_last_cell() {
        let deals = include_bytes!("../../tests/fixtures/workbooks/deals.xls");
        // Lookups: one cell; Deals: rows 1 to 5, columns A to F.
        assert_eq!(xls_cells(io::Cursor::new(&deals[..])).unwrap(), Some(5 * 6));
        let sparse = include_bytes!("../../tests/fixtures/workbooks/sparse.xls");
        assert_eq!(xls_cells(io::Cursor::new(&sparse[..])).unwrap(), Some(65_536 * 256));
        assert_eq!(xls_cells(io::Cursor::new(&b"not a compound file"[..])).unwrap(), None);
    }

    fn ods(rows: &str) -> u64 {
        let content = format!(
            "<office:document-content><office:body><office:spreadsheet><table:table table:name=\"Sheet1\">{rows}\
             </table:table></office:spreadsheet></office:body></office:document-content>"
        );
        ods_cells(content.as_bytes()).unwrap()
    }

    #[test]
    fn an_ods_grid_counts_repeats_but_not_trailing_empty_cells() {
        let value = "<table:table-cell office:value-type=\"float\" office:value=\"1\"/>";
        let row = |cells: &str| format!("<table:table-row>{cells}</table:table-row>");
        assert_eq!(ods(&row(&format!("{value}{value}"))), 2);
        // LibreOffice ends every sheet with repeated empty rows and cells.
        let trailing = "<table:table-row table:number-rows-repeated=\"1048570\">\
                        <table:table-cell table:number-columns-repeated=\"1024\"/></table:table-row>";
        assert_eq!(ods(&format!("{}{trailing}", row(&format!("{value}{value}")))), 2);
        let spread = "<table:table-row table:number-rows-repeated=\"1000000\">\
                      <table:table-cell office:value-type=\"float\" office:value=\"1\" \
                      table:number-columns-repeated=\"100\"/></table:table-row>";
        assert_eq!(ods(spread), 100_000_000);
        let far = format!(
            "{}<table:table-row table:number-rows-repeated=\"9999\"/>{}",
            row(value),
            row(&format!(
                "<table:table-cell table:number-columns-repeated=\"499\"/>{value}"
            ))
        );
        assert_eq!(ods(&far), 10_001 * 500);
    }
}
