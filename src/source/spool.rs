//! Rows kept on disk between passes.
//!
//! The mapping reads a source several times (see `mapping::survey`). A CSV
//! export is simply parsed again on each pass, but rows that arrive through
//! an API (the Sheets `values:batchGet` pages) exist nowhere else, and held
//! as cells they cost far more memory than the sheet's text: half a million
//! rows came to a gigabyte. So they are written, as they are parsed, to an
//! unnamed temporary file in a compact encoding and read back on each pass;
//! memory then holds one row, whatever the sheet's size.
//!
//! Where no temporary file can be made (a read-only file system without a
//! writable `TMPDIR`), the same encoding is kept in memory, which still
//! costs a fraction of the cells.
//!
//! The encoding, per row: the row number (`u64`), the cell count (`u32`),
//! then each cell as a tag byte followed by its value: nothing for an empty
//! cell, `u32` length and UTF-8 bytes for text, an `f64` for a number, and
//! the tag alone for `true` and `false`, a code byte for a cell's fault,
//! and two texts (shown, target) for a link.
//! Little-endian throughout. Blank rows
//! are counted, not written.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use chrono_tz::Tz;

use super::table::{Cell, CellFault, Row};

const EMPTY: u8 = 0;
const TEXT: u8 = 1;
const NUMBER: u8 = 2;
const FALSE: u8 = 3;
const TRUE: u8 = 4;
const FAULT: u8 = 5;
const LINK: u8 = 6;

/// Read buffer of a pass.
const READ_BUFFER: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot write the rows of {location} to a temporary file: {source}; check TMPDIR's free space")]
    Write { location: String, source: io::Error },
    #[error("cannot read back the rows of {location} from their temporary file: {source}")]
    Read { location: String, source: io::Error },
}

/// Where the encoded rows are.
#[derive(Debug)]
enum Store {
    File(BufWriter<File>),
    Memory(Vec<u8>),
}

/// Rows being written, one at a time.
#[derive(Debug)]
pub struct RowSpool {
    location: String,
    store: Store,
    written: u64,
    rows: usize,
    blank_rows: usize,
    /// Reused for each row's encoding.
    scratch: Vec<u8>,
}

/// A point [`RowSpool::rollback`] can return to: everything written after
/// it is forgotten (a page that failed half-way and is read again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    written: u64,
    rows: usize,
    blank_rows: usize,
}

impl RowSpool {
    /// A spool in a fresh unnamed temporary file (deleted by the system when
    /// closed, even after a crash), or in memory when none can be made.
    pub fn new(location: &str) -> RowSpool {
        let store = match tempfile::tempfile() {
            Ok(file) => Store::File(BufWriter::with_capacity(READ_BUFFER, file)),
            Err(error) => {
                tracing::warn!(%error, location, "no temporary file for the rows read; they are held in memory (set TMPDIR)");
                Store::Memory(Vec::new())
            }
        };
        RowSpool {
            location: location.to_owned(),
            store,
            written: 0,
            rows: 0,
            blank_rows: 0,
            scratch: Vec::new(),
        }
    }

    /// Appends a row, or counts it as blank when every cell is empty.
    pub fn push(&mut self, number: usize, cells: &[Cell]) -> Result<(), SpoolError> {
        if cells.iter().all(Cell::is_empty) {
            self.blank_rows += 1;
            return Ok(());
        }
        self.scratch.clear();
        encode_row(&mut self.scratch, number, cells).map_err(|source| self.write_error(source))?;
        let result = match &mut self.store {
            Store::File(writer) => writer.write_all(&self.scratch),
            Store::Memory(bytes) => {
                bytes.extend_from_slice(&self.scratch);
                Ok(())
            }
        };
        result.map_err(|source| self.write_error(source))?;
        self.written += self.scratch.len() as u64;
        self.rows += 1;
        Ok(())
    }

    /// The source the rows come from, as errors name it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Counts rows known to be blank without reading them (the rows Google
    /// leaves out at the end of a page).
    pub fn add_blank_rows(&mut self, count: usize) {
        self.blank_rows += count;
    }

    pub fn mark(&self) -> Mark {
        Mark {
            written: self.written,
            rows: self.rows,
            blank_rows: self.blank_rows,
        }
    }

    /// Forgets everything pushed since `mark`.
    pub fn rollback(&mut self, mark: Mark) -> Result<(), SpoolError> {
        if mark == self.mark() {
            return Ok(());
        }
        let result = match &mut self.store {
            Store::File(writer) => writer.flush().and_then(|()| {
                let file = writer.get_mut();
                file.set_len(mark.written)?;
                file.seek(SeekFrom::Start(mark.written)).map(|_| ())
            }),
            Store::Memory(bytes) => {
                bytes.truncate(usize::try_from(mark.written).unwrap_or(usize::MAX));
                Ok(())
            }
        };
        result.map_err(|source| self.write_error(source))?;
        self.written = mark.written;
        self.rows = mark.rows;
        self.blank_rows = mark.blank_rows;
        Ok(())
    }

    /// The rows written, ready to be read in passes.
    pub fn finish(self) -> Result<SpooledRows, SpoolError> {
        let RowSpool {
            location,
            store,
            written,
            rows,
            blank_rows,
            ..
        } = self;
        let data = match store {
            Store::File(writer) => match writer.into_inner() {
                Ok(file) => Data::File(file),
                Err(error) => {
                    return Err(SpoolError::Write {
                        location,
                        source: error.into_error(),
                    });
                }
            },
            Store::Memory(bytes) => Data::Memory(bytes),
        };
        Ok(SpooledRows {
            inner: Arc::new(Spooled {
                location,
                data,
                length: written,
                rows,
                blank_rows,
            }),
            serial_time_zone: None,
            tab_gid: None,
        })
    }

    fn write_error(&self, source: io::Error) -> SpoolError {
        SpoolError::Write {
            location: self.location.clone(),
            source,
        }
    }
}

fn too_large(_: std::num::TryFromIntError) -> io::Error {
    io::Error::other("a row or a cell is larger than the spool's 4 GiB limit")
}

/// A text as its `u32` length and UTF-8 bytes.
fn encode_text(out: &mut Vec<u8>, text: &str) -> io::Result<()> {
    let length = u32::try_from(text.len()).map_err(too_large)?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// A text written by [`encode_text`], read into `buffer`'s allocation.
fn read_text(reader: &mut impl Read, buffer: String) -> io::Result<String> {
    let mut length = [0u8; 4];
    reader.read_exact(&mut length)?;
    let mut bytes = buffer.into_bytes();
    bytes.clear();
    bytes.resize(u32::from_le_bytes(length) as usize, 0);
    reader.read_exact(&mut bytes)?;
    String::from_utf8(bytes).map_err(io::Error::other)
}

fn encode_row(out: &mut Vec<u8>, number: usize, cells: &[Cell]) -> io::Result<()> {
    out.extend_from_slice(&(number as u64).to_le_bytes());
    out.extend_from_slice(&u32::try_from(cells.len()).map_err(too_large)?.to_le_bytes());
    for cell in cells {
        match cell {
            Cell::Empty => out.push(EMPTY),
            Cell::Text(text) => {
                out.push(TEXT);
                encode_text(out, text)?;
            }
            Cell::Link { text, target } => {
                out.push(LINK);
                encode_text(out, text)?;
                encode_text(out, target)?;
            }
            Cell::Number(number) => {
                out.push(NUMBER);
                out.extend_from_slice(&number.to_le_bytes());
            }
            Cell::Bool(false) => out.push(FALSE),
            Cell::Bool(true) => out.push(TRUE),
            Cell::Fault(fault) => out.extend_from_slice(&[FAULT, fault.code()]),
        }
    }
    Ok(())
}

#[derive(Debug)]
enum Data {
    File(File),
    Memory(Vec<u8>),
}

#[derive(Debug)]
struct Spooled {
    location: String,
    data: Data,
    length: u64,
    rows: usize,
    blank_rows: usize,
}

/// Spooled rows, read in passes; clones share the file, which is closed
/// (and so deleted) with the last of them.
#[derive(Debug, Clone)]
pub struct SpooledRows {
    inner: Arc<Spooled>,
    /// The zone in which numeric date cells (spreadsheet serials) are read.
    pub serial_time_zone: Option<Tz>,
    /// The Google Sheets tab the rows come from (its `gid`).
    pub tab_gid: Option<i64>,
}

impl SpooledRows {
    /// Non-blank rows.
    pub fn len(&self) -> usize {
        self.inner.rows
    }

    pub fn is_empty(&self) -> bool {
        self.inner.rows == 0
    }

    pub fn blank_rows(&self) -> usize {
        self.inner.blank_rows
    }

    /// Starts a pass. Passes may run side by side: each reads the file at
    /// its own offset.
    pub fn rows(&self) -> SpoolPass {
        SpoolPass {
            location: self.inner.location.clone(),
            reader: BufReader::with_capacity(
                READ_BUFFER,
                SpoolAt {
                    spooled: Arc::clone(&self.inner),
                    offset: 0,
                },
            ),
            left: self.inner.rows,
            row: Row {
                number: 0,
                cells: Vec::new(),
            },
        }
    }
}

/// Reads the spool from an offset of its own (`pread` for a file), so that
/// the writer's and other passes' offsets do not matter.
struct SpoolAt {
    spooled: Arc<Spooled>,
    offset: u64,
}

impl Read for SpoolAt {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let left = self.spooled.length.saturating_sub(self.offset);
        let wanted = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let read = match &self.spooled.data {
            Data::File(file) => std::os::unix::fs::FileExt::read_at(file, &mut buffer[..wanted], self.offset)?,
            Data::Memory(bytes) => {
                let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
                let rest = bytes.get(start..).unwrap_or_default();
                let read = rest.len().min(wanted);
                buffer[..read].copy_from_slice(&rest[..read]);
                read
            }
        };
        self.offset += read as u64;
        Ok(read)
    }
}

/// One pass over spooled rows. The row is decoded into the same buffers
/// each time: a pass allocates only for text longer than any before it.
pub struct SpoolPass {
    location: String,
    reader: BufReader<SpoolAt>,
    left: usize,
    row: Row,
}

impl SpoolPass {
    /// The next row, or `None` after the last.
    pub fn next_row(&mut self) -> Option<Result<&Row, SpoolError>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match decode_row(&mut self.reader, &mut self.row) {
            Ok(()) => Some(Ok(&self.row)),
            Err(source) => {
                self.left = 0;
                Some(Err(SpoolError::Read {
                    location: self.location.clone(),
                    source,
                }))
            }
        }
    }
}

fn decode_row(reader: &mut impl Read, row: &mut Row) -> io::Result<()> {
    let mut word = [0u8; 8];
    reader.read_exact(&mut word)?;
    row.number = usize::try_from(u64::from_le_bytes(word)).map_err(io::Error::other)?;
    let mut count = [0u8; 4];
    reader.read_exact(&mut count)?;
    let count = u32::from_le_bytes(count) as usize;
    row.cells.truncate(count);
    for index in 0..count {
        let mut tag = [0u8; 1];
        reader.read_exact(&mut tag)?;
        let cell = match tag[0] {
            EMPTY => Cell::Empty,
            TEXT => {
                // The slot's own string is refilled when it has one.
                let slot = match row.cells.get_mut(index) {
                    Some(Cell::Text(text)) => std::mem::take(text),
                    _ => String::new(),
                };
                Cell::Text(read_text(reader, slot)?)
            }
            LINK => {
                let text = read_text(reader, String::new())?;
                let target = read_text(reader, String::new())?;
                Cell::Link { text, target }
            }
            NUMBER => {
                reader.read_exact(&mut word)?;
                Cell::Number(f64::from_le_bytes(word))
            }
            FALSE => Cell::Bool(false),
            TRUE => Cell::Bool(true),
            FAULT => {
                let mut code = [0u8; 1];
                reader.read_exact(&mut code)?;
                Cell::Fault(CellFault::from_code(code[0]).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("unknown cell fault {}", code[0]))
                })?)
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown cell tag {other}"),
                ));
            }
        };
        match row.cells.get_mut(index) {
            Some(slot) => *slot = cell,
            None => row.cells.push(cell),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells() -> Vec<Cell> {
        vec![
            Cell::text("Acme"),
            Cell::Empty,
            Cell::Number(45_667.5),
            Cell::Bool(true),
            Cell::Bool(false),
            Cell::text("Ünïcode ✓"),
        ]
    }

    fn read_all(spooled: &SpooledRows) -> Vec<Row> {
        let mut pass = spooled.rows();
        let mut rows = Vec::new();
        while let Some(row) = pass.next_row() {
            rows.push(row.unwrap().clone());
        }
        rows
    }

    #[test]
    fn rows_come_back_as_written_on_every_pass() {
        let mut spool = RowSpool::new("test");
        spool.push(1, &cells()).unwrap();
        spool.push(2, &[Cell::Empty, Cell::Empty]).unwrap();
        spool.push(3, &[Cell::text("x")]).unwrap();
        spool.push(7, &cells()[2..]).unwrap();
        let spooled = spool.finish().unwrap();
        assert_eq!((spooled.len(), spooled.blank_rows()), (3, 1));
        let expected = vec![
            Row {
                number: 1,
                cells: cells(),
            },
            Row {
                number: 3,
                cells: vec![Cell::text("x")],
            },
            Row {
                number: 7,
                cells: cells()[2..].to_vec(),
            },
        ];
        assert_eq!(read_all(&spooled), expected);
        // A second pass, and one from a clone, side by side.
        let twin = spooled.clone();
        let (mut first, mut second) = (spooled.rows(), twin.rows());
        assert_eq!(first.next_row().unwrap().unwrap().number, 1);
        assert_eq!(second.next_row().unwrap().unwrap().number, 1);
        assert_eq!(first.next_row().unwrap().unwrap().number, 3);
    }

    #[test]
    fn a_rollback_forgets_a_failed_page() {
        let mut spool = RowSpool::new("test");
        spool.push(1, &cells()).unwrap();
        let mark = spool.mark();
        spool.push(2, &[Cell::text("half a page")]).unwrap();
        spool.push(3, &[Cell::Empty]).unwrap();
        spool.rollback(mark).unwrap();
        spool.push(2, &[Cell::text("the page again")]).unwrap();
        let spooled = spool.finish().unwrap();
        assert_eq!(spooled.blank_rows(), 0);
        let rows = read_all(&spooled);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].cells, vec![Cell::text("the page again")]);
    }

    #[test]
    fn the_memory_fallback_reads_the_same() {
        let mut spool = RowSpool {
            store: Store::Memory(Vec::new()),
            ..RowSpool::new("test")
        };
        spool.push(4, &cells()).unwrap();
        let mark = spool.mark();
        spool.push(5, &cells()).unwrap();
        spool.rollback(mark).unwrap();
        let spooled = spool.finish().unwrap();
        assert_eq!(
            read_all(&spooled),
            vec![Row {
                number: 4,
                cells: cells()
            }]
        );
    }

    #[test]
    fn a_damaged_spool_is_an_error_not_a_guess() {
        let mut spool = RowSpool {
            store: Store::Memory(Vec::new()),
            ..RowSpool::new("test")
        };
        spool.push(1, &cells()).unwrap();
        let mut spooled = spool.finish().unwrap();
        if let Some(inner) = Arc::get_mut(&mut spooled.inner)
            && let Data::Memory(bytes) = &mut inner.data
        {
            bytes[12] = 9;
        }
        let mut pass = spooled.rows();
        let error = pass.next_row().unwrap().unwrap_err();
        assert!(error.to_string().contains("unknown cell tag 9"), "{error}");
        assert!(pass.next_row().is_none());
    }
}
