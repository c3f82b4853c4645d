//! CSV exports as people actually produce them: Google Sheets downloads,
//! French Excel "CSV (point-virgule)" files in Windows-1252, tab-separated
//! pastes, with BOMs, CRLF, quoted newlines, ragged rows and title lines.
//!
//! A [`CsvSource`] is read row by row and may be read several times (the sync
//! makes one pass to find duplicates and another to write), so a large export
//! never has to sit in memory as cells.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::{Arc, mpsc};

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};
use encoding_rs_io::DecodeReaderBytesBuilder;

use super::table::{Cell, Row};
use crate::concurrency::Threading;

/// Delimiters tried, in order of preference when they score the same.
const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];
/// Records sampled to pick the delimiter.
const SAMPLE_RECORDS: usize = 30;
/// Bytes sampled to pick the delimiter.
const SAMPLE_BYTES: usize = 64 * 1024;
/// Bytes a pass's parser asks for at a time. From a UTF-8 file the sniff
/// checked, a read this large goes straight to the file (the buffered
/// reader beneath hands it through): 400 reads for an export of 100 MB
/// rather than 13,000. A decoded file still reads through the decoder's
/// buffer.
const PASS_BUFFER: usize = 256 * 1024;
/// Bytes hashed at a time by [`CsvSource::feed_digest`].
const DIGEST_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("CSV from {location} is malformed near line {line}: {message}")]
    Malformed {
        location: String,
        line: usize,
        message: String,
    },
    #[error("cannot read {location}: {source}; check the path and that sheetsync may read it")]
    Read { location: String, source: io::Error },
    #[error(
        "{location} changed while it was being read (size or modification time differ between passes); \
         nothing was written: sync again once the export is complete"
    )]
    Changed { location: String },
}

/// Where the bytes are.
#[derive(Debug, Clone)]
enum Origin {
    /// A file, with the size and modification time it had when it was sniffed:
    /// every pass checks them, so a file rewritten mid-sync is refused rather
    /// than read half old, half new.
    /// Every pass reads the handle opened once, at its own offset: the
    /// path is never opened again, so what is read is what was admitted.
    File { file: Arc<File>, stamp: FileStamp },
    /// A download written to a spool file (deleted with the last clone of
    /// the source), parsed on every pass.
    Spooled {
        file: Arc<tempfile::NamedTempFile>,
        stamp: FileStamp,
    },
    /// A download held in memory, where no spool file could be made.
    Bytes(Arc<[u8]>),
}

/// A CSV export whose encoding and delimiter have been worked out, ready to be
/// read row by row.
#[derive(Debug, Clone)]
pub struct CsvSource {
    location: String,
    origin: Origin,
    encoding: &'static Encoding,
    /// Every byte was checked to be UTF-8 (not only announced by a BOM).
    utf8_checked: bool,
    delimiter: u8,
    /// About how many rows a pass will read (see [`CsvSource::expected_rows`]).
    expected_rows: usize,
}

impl CsvSource {
    /// An opened file (see `SourcePolicy::open_file`), scanned once for
    /// its encoding and delimiter.
    pub fn from_file(file: File, location: &str) -> Result<CsvSource, CsvError> {
        let read_error = |source| CsvError::Read {
            location: location.to_owned(),
            source,
        };
        let file = Arc::new(file);
        let stamp = FileStamp::of(&file).map_err(read_error)?;
        let sniffed = sniff(BufReader::new(FileFrom::start(&file))).map_err(read_error)?;
        Ok(CsvSource {
            location: location.to_owned(),
            delimiter: detect_delimiter(&sniffed.sample),
            expected_rows: sniffed.expected_rows(stamp.length),
            origin: Origin::File { file, stamp },
            encoding: sniffed.encoding,
            utf8_checked: sniffed.utf8_checked,
        })
    }

    /// A download spooled to `file`, scanned once like a file.
    pub fn from_spool(file: tempfile::NamedTempFile, location: &str) -> Result<CsvSource, CsvError> {
        let read_error = |source| CsvError::Read {
            location: location.to_owned(),
            source,
        };
        let opened = file.reopen().map_err(read_error)?;
        let stamp = FileStamp::of(&opened).map_err(read_error)?;
        let sniffed = sniff(BufReader::new(opened)).map_err(read_error)?;
        Ok(CsvSource {
            location: location.to_owned(),
            delimiter: detect_delimiter(&sniffed.sample),
            expected_rows: sniffed.expected_rows(stamp.length),
            origin: Origin::Spooled {
                file: Arc::new(file),
                stamp,
            },
            encoding: sniffed.encoding,
            utf8_checked: sniffed.utf8_checked,
        })
    }

    /// Bytes already downloaded.
    pub fn from_bytes(bytes: Vec<u8>, location: &str) -> CsvSource {
        // In memory: the same sniff, over the bytes.
        let sniffed = match sniff(bytes.as_slice()) {
            Ok(sniffed) => sniffed,
            // Reading a slice cannot fail; should it, the bytes are decoded.
            Err(_) => Sniffed {
                encoding: WINDOWS_1252,
                utf8_checked: false,
                sample: decode(&bytes[..bytes.len().min(SAMPLE_BYTES)]),
                head_lines: 0,
                head_bytes: 0,
            },
        };
        CsvSource {
            location: location.to_owned(),
            delimiter: detect_delimiter(&sniffed.sample),
            expected_rows: sniffed.expected_rows(bytes.len() as u64),
            origin: Origin::Bytes(bytes.into()),
            encoding: sniffed.encoding,
            utf8_checked: sniffed.utf8_checked,
        }
    }

    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// About how many rows (blank ones and the header included) a pass
    /// will read, from the file's length and the lines of its first bytes:
    /// a guess for sizing what a pass fills, never a count.
    pub fn expected_rows(&self) -> usize {
        self.expected_rows
    }

    pub fn encoding(&self) -> &'static Encoding {
        self.encoding
    }

    /// Feeds the file's bytes, as stored, to `context`: what an unchanged
    /// export's digest needs, without splitting a field. The bytes decide
    /// the rows (the encoding and delimiter are read from them), and hashing
    /// them costs a fraction of parsing them.
    pub fn feed_digest(&self, context: &mut ring::digest::Context) -> Result<(), CsvError> {
        let mut raw = self.raw_bytes()?;
        let mut chunk = vec![0; DIGEST_CHUNK];
        loop {
            let read = raw.read(&mut chunk).map_err(|source| CsvError::Read {
                location: self.location.clone(),
                source,
            })?;
            if read == 0 {
                return Ok(());
            }
            context.update(&chunk[..read]);
        }
    }

    /// A reader of the source's bytes from the start, once the file is
    /// checked to be the one sniffed.
    fn raw_bytes(&self) -> Result<Box<dyn Read + Send>, CsvError> {
        let read_error = |source| CsvError::Read {
            location: self.location.clone(),
            source,
        };
        Ok(match &self.origin {
            Origin::File { file, stamp } => {
                if FileStamp::of(file).map_err(read_error)? != *stamp {
                    return Err(CsvError::Changed {
                        location: self.location.clone(),
                    });
                }
                Box::new(BufReader::new(FileFrom::start(file)))
            }
            Origin::Spooled { file, stamp } => {
                let opened = file.reopen().map_err(read_error)?;
                if FileStamp::of(&opened).map_err(read_error)? != *stamp {
                    return Err(CsvError::Changed {
                        location: self.location.clone(),
                    });
                }
                Box::new(BufReader::new(opened))
            }
            Origin::Bytes(bytes) => Box::new(io::Cursor::new(Arc::clone(bytes))),
        })
    }

    /// Starts a pass over the rows, parsed on the calling thread or on a
    /// thread of its own.
    pub fn rows(&self, threading: Threading) -> Result<CsvRows, CsvError> {
        let raw = self.raw_bytes()?;
        // UTF-8 needs no decoding when the sniff checked every byte (the
        // stamp check says the file is still the one sniffed). A file that
        // only a BOM calls UTF-8 is decoded, a bad byte becoming U+FFFD.
        let decoded: Box<dyn Read + Send> = if self.encoding == UTF_8 && self.utf8_checked {
            Box::new(WithoutUtf8Bom::new(raw))
        } else {
            Box::new(
                DecodeReaderBytesBuilder::new()
                    .encoding(Some(self.encoding))
                    .strip_bom(true)
                    .build(raw),
            )
        };
        let reader = csv::ReaderBuilder::new()
            .buffer_capacity(PASS_BUFFER)
            .delimiter(self.delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(LineTracker::new(decoded));
        let parser = CsvParser {
            location: self.location.clone(),
            reader,
            record: csv::ByteRecord::new(),
            blank_rows: 0,
        };
        Ok(CsvRows::start(parser, threading))
    }
}

/// A UTF-8 stream without its byte-order mark, if it has one.
struct WithoutUtf8Bom {
    inner: Box<dyn Read + Send>,
    /// The first bytes, read to look for the mark, not yet handed on.
    head: Vec<u8>,
    checked: bool,
}

impl WithoutUtf8Bom {
    fn new(inner: Box<dyn Read + Send>) -> Self {
        WithoutUtf8Bom {
            inner,
            head: Vec::new(),
            checked: false,
        }
    }
}

impl Read for WithoutUtf8Bom {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if !self.checked {
            self.checked = true;
            (&mut self.inner).take(3).read_to_end(&mut self.head)?;
            if self.head == b"\xEF\xBB\xBF" {
                self.head.clear();
            }
        }
        if !self.head.is_empty() {
            let count = buffer.len().min(self.head.len());
            buffer[..count].copy_from_slice(&self.head[..count]);
            self.head.drain(..count);
            return Ok(count);
        }
        self.inner.read(buffer)
    }
}

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    length: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileStamp {
    fn of(file: &File) -> io::Result<FileStamp> {
        let metadata = file.metadata()?;
        Ok(FileStamp {
            length: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }
}

/// A reader of a shared file handle from its start, at an offset of its
/// own (positional reads), so that passes never disturb each other.
struct FileFrom {
    file: Arc<File>,
    offset: u64,
}

impl FileFrom {
    fn start(file: &Arc<File>) -> FileFrom {
        FileFrom {
            file: Arc::clone(file),
            offset: 0,
        }
    }
}

impl Read for FileFrom {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt as _;
        let read = self.file.read_at(buf, self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}

/// Rows handed from the parsing thread to the pass at a time.
const BATCH_ROWS: usize = 512;
/// Batches parsed ahead of the pass (memory: this many batches of rows).
const BATCHES_AHEAD: usize = 4;

/// One pass over a CSV's non-blank rows, split into fields on the calling
/// thread or on a thread of its own (see [`Threading`]).
pub struct CsvRows(Pass);

enum Pass {
    /// Boxed: the parser carries its buffers.
    Inline(Box<InlineRows>),
    Threaded(ThreadedRows),
}

impl CsvRows {
    fn start(parser: CsvParser, threading: Threading) -> CsvRows {
        CsvRows(match threading {
            Threading::Inline => Pass::Inline(Box::new(InlineRows {
                parser,
                row: Row {
                    number: 0,
                    cells: Vec::new(),
                },
                ended: false,
            })),
            Threading::Parallel => Pass::Threaded(ThreadedRows::start(parser)),
        })
    }

    /// The next row with at least one non-empty cell.
    pub fn next_row(&mut self) -> Option<Result<&Row, CsvError>> {
        match &mut self.0 {
            Pass::Inline(rows) => rows.next_row(),
            Pass::Threaded(rows) => rows.next_row(),
        }
    }

    /// Blank rows skipped (all of them, once the pass is over).
    pub fn blank_rows(&self) -> usize {
        match &self.0 {
            Pass::Inline(rows) => rows.parser.blank_rows,
            Pass::Threaded(rows) => rows.blank_rows,
        }
    }

    /// The parser thread's rows not lent yet, as a batch to hand to other
    /// threads (empty at the end); `None` for a pass parsed inline, which
    /// makes no batches.
    pub fn next_batch(&mut self) -> Option<Result<Vec<Row>, CsvError>> {
        match &mut self.0 {
            Pass::Inline(_) => None,
            Pass::Threaded(rows) => Some(rows.next_batch()),
        }
    }

    /// Where read batches go back to the parser thread to be refilled, if
    /// the pass has one.
    pub fn recycler(&self) -> Option<mpsc::SyncSender<Vec<Row>>> {
        match &self.0 {
            Pass::Inline(_) => None,
            Pass::Threaded(rows) => Some(rows.empties.clone()),
        }
    }
}

/// A pass parsed on the calling thread, one row at a time into the same
/// buffers.
struct InlineRows {
    parser: CsvParser,
    row: Row,
    /// Set at the end or after a failure (returned once).
    ended: bool,
}

impl InlineRows {
    fn next_row(&mut self) -> Option<Result<&Row, CsvError>> {
        if self.ended {
            return None;
        }
        match self.parser.next_into(&mut self.row) {
            Ok(true) => Some(Ok(&self.row)),
            Ok(false) => {
                self.ended = true;
                None
            }
            Err(error) => {
                self.ended = true;
                Some(Err(error))
            }
        }
    }
}

/// A pass split into fields on a thread of its own while the pass maps the
/// rows already split: on two cores the mapping no longer waits for the
/// parser. Rows travel in batches, and emptied batches go back to the parser
/// to be refilled, so a pass allocates little beyond its first batches.
struct ThreadedRows {
    batches: mpsc::Receiver<Parsed>,
    empties: mpsc::SyncSender<Vec<Row>>,
    batch: Vec<Row>,
    /// The next row of `batch` to lend.
    next: usize,
    blank_rows: usize,
    finished: bool,
}

/// What the parsing thread sends.
enum Parsed {
    Rows(Vec<Row>),
    Failed(CsvError),
    /// The end of the file, with the blank rows skipped.
    End {
        blank_rows: usize,
    },
}

impl ThreadedRows {
    fn start(mut parser: CsvParser) -> ThreadedRows {
        let (sender, batches) = mpsc::sync_channel(BATCHES_AHEAD);
        let (empties, recycled) = mpsc::sync_channel::<Vec<Row>>(BATCHES_AHEAD + 2);
        let spawned = std::thread::Builder::new()
            .name("sheetsync-csv".to_owned())
            .spawn(move || parser.send_batches(&sender, &recycled));
        let batches = match spawned {
            Ok(_) => batches,
            Err(error) => {
                // No thread to parse on: the pass fails with the reason.
                let (sender, batches) = mpsc::sync_channel(1);
                let _ = sender.send(Parsed::Failed(CsvError::Read {
                    location: "the CSV parser thread".to_owned(),
                    source: error,
                }));
                batches
            }
        };
        ThreadedRows {
            batches,
            empties,
            batch: Vec::new(),
            next: 0,
            blank_rows: 0,
            finished: false,
        }
    }

    fn next_row(&mut self) -> Option<Result<&Row, CsvError>> {
        while self.next >= self.batch.len() {
            match self.receive() {
                Ok(Some(rows)) => {
                    let empty = std::mem::replace(&mut self.batch, rows);
                    // A full queue only means the parser has enough buffers.
                    let _ = self.empties.try_send(empty);
                    self.next = 0;
                }
                Ok(None) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
        self.next += 1;
        self.batch.get(self.next - 1).map(Ok)
    }

    /// The rows not lent yet of the current batch, or the next batch; empty
    /// at the end.
    fn next_batch(&mut self) -> Result<Vec<Row>, CsvError> {
        if self.next < self.batch.len() {
            let rest = self.batch.split_off(self.next);
            self.next = 0;
            self.batch.clear();
            return Ok(rest);
        }
        Ok(self.receive()?.unwrap_or_default())
    }

    /// The parser thread's next batch; `None` at the end (or after a
    /// failure, which is returned once).
    fn receive(&mut self) -> Result<Option<Vec<Row>>, CsvError> {
        if self.finished {
            return Ok(None);
        }
        let parsed = self.batches.recv();
        self.finished = !matches!(parsed, Ok(Parsed::Rows(_)));
        match parsed {
            Ok(Parsed::Rows(rows)) => Ok(Some(rows)),
            Ok(Parsed::Failed(error)) => Err(error),
            Ok(Parsed::End { blank_rows }) => {
                self.blank_rows = blank_rows;
                Ok(None)
            }
            // The thread ended without a word: it panicked.
            Err(_) => Err(parser_stopped()),
        }
    }
}

fn parser_stopped() -> CsvError {
    CsvError::Read {
        location: "the CSV parser thread".to_owned(),
        source: io::Error::other("it stopped unexpectedly"),
    }
}

/// The parsing side of a pass.
struct CsvParser {
    location: String,
    reader: csv::Reader<LineTracker>,
    record: csv::ByteRecord,
    blank_rows: usize,
}

impl CsvParser {
    /// Parses the whole file into batches, until the end, an error, or the
    /// pass being dropped (a closed channel).
    fn send_batches(&mut self, batches: &mpsc::SyncSender<Parsed>, empties: &mpsc::Receiver<Vec<Row>>) {
        loop {
            let mut batch = empties.try_recv().unwrap_or_default();
            let mut filled = 0;
            let mut failure = None;
            while filled < BATCH_ROWS {
                if batch.len() == filled {
                    batch.push(Row {
                        number: 0,
                        cells: Vec::new(),
                    });
                }
                match self.next_into(&mut batch[filled]) {
                    Ok(true) => filled += 1,
                    Ok(false) => break,
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            batch.truncate(filled);
            let more = filled == BATCH_ROWS;
            if filled > 0 && batches.send(Parsed::Rows(batch)).is_err() {
                return;
            }
            if let Some(error) = failure {
                let _ = batches.send(Parsed::Failed(error));
                return;
            }
            if !more {
                let _ = batches.send(Parsed::End {
                    blank_rows: self.blank_rows,
                });
                return;
            }
        }
    }

    /// Reads the next non-blank row into `row`; `false` at the end.
    fn next_into(&mut self, row: &mut Row) -> Result<bool, CsvError> {
        loop {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => return Ok(false),
                Ok(true) => {
                    // Numbered even when blank: the tracker then forgets the
                    // bytes before it, so a long run of blank lines is never
                    // held.
                    let start = self.record.position().map_or(0, csv::Position::byte);
                    let number = self.reader.get_mut().line_at(start);
                    fill_cells(&mut row.cells, &self.record).map_err(|NotUtf8 { field }| CsvError::Malformed {
                        location: self.location.clone(),
                        line: number,
                        message: format!("field {} is not valid UTF-8 text", field + 1),
                    })?;
                    if row.cells.iter().all(Cell::is_empty) {
                        self.blank_rows += 1;
                        continue;
                    }
                    row.number = number;
                    return Ok(true);
                }
                Err(error) => {
                    let start = error.position().map_or(0, csv::Position::byte);
                    return Err(CsvError::Malformed {
                        location: self.location.clone(),
                        line: self.reader.get_mut().line_at(start),
                        message: error.to_string(),
                    });
                }
            }
        }
    }
}

/// A record's field (its index) that is not UTF-8.
#[derive(Debug, PartialEq, Eq)]
struct NotUtf8 {
    field: usize,
}

/// The record's fields as cells, as [`Cell::text`] reads them, reusing the
/// strings the previous row left in `cells`.
///
/// The stream is UTF-8 already (decoded, or checked whole by the sniff), so
/// this check is a formality that must still be made: the record's bytes
/// are checked in one call, and each field is then a slice of them whose
/// ends must fall between characters (`str::get`), instead of one check per
/// field.
fn fill_cells(cells: &mut Vec<Cell>, record: &csv::ByteRecord) -> Result<(), NotUtf8> {
    let text = std::str::from_utf8(record.as_slice()).map_err(|error| NotUtf8 {
        field: field_at(record, error.valid_up_to()),
    })?;
    cells.truncate(record.len());
    let mut end = 0;
    for (index, field) in record.iter().enumerate() {
        let start = end;
        end += field.len();
        let field = text.get(start..end).ok_or(NotUtf8 { field: index })?;
        let cell = match cells.get_mut(index) {
            Some(cell) => cell,
            None => {
                cells.push(Cell::Empty);
                &mut cells[index]
            }
        };
        if is_blank(field) {
            *cell = Cell::Empty;
        } else if let Cell::Text(text) = cell {
            text.clear();
            text.push_str(field);
        } else {
            *cell = Cell::Text(field.to_owned());
        }
    }
    Ok(())
}

/// The index of the field of `record` holding byte `at` of its fields.
fn field_at(record: &csv::ByteRecord, at: usize) -> usize {
    let mut end = 0;
    record
        .iter()
        .position(|field| {
            end += field.len();
            at < end
        })
        .unwrap_or(record.len().saturating_sub(1))
}

/// Whether a field is only whitespace, as [`Cell::text`] decides, without
/// trimming the fields that start with a letter or digit (most of them).
fn is_blank(field: &str) -> bool {
    match field.as_bytes().first() {
        Some(first) if first.is_ascii_alphanumeric() => false,
        _ => field.trim().is_empty(),
    }
}

/// Counts lines in the decoded stream so rows can be numbered as the file's
/// own lines. (The csv crate's line count skips empty lines, which would send
/// people to the wrong row.) Only the line ends between the last numbered
/// record and the reader's look-ahead are kept.
struct LineTracker {
    inner: Box<dyn Read + Send>,
    /// The runs of `\r` and `\n` read by the parser and not yet counted.
    /// A run is one entry however long: the parser skips empty lines
    /// without a record to number, so a file of blank lines would otherwise
    /// be held as an entry per line until the next record.
    ends: VecDeque<LineEnds>,
    /// Stream offset of the next byte read.
    read_to: u64,
    /// Line number after the ends counted so far.
    line: usize,
    /// Whether the last byte read was `\r`.
    after_cr: bool,
}

/// Consecutive line-end bytes of the stream: offsets `from..to`, ending
/// `lines` lines (a `\n` right after a `\r` ends none: `\r\n` is one
/// line end).
#[derive(Debug, Clone, Copy)]
struct LineEnds {
    from: u64,
    to: u64,
    lines: usize,
}

impl LineTracker {
    fn new(inner: Box<dyn Read + Send>) -> Self {
        LineTracker {
            inner,
            ends: VecDeque::new(),
            read_to: 0,
            line: 1,
            after_cr: false,
        }
    }

    /// The line of the record the csv reader says starts at `byte`. It reports
    /// where it began scanning, which may be the previous record's terminator
    /// or blank lines, so those are skipped. Offsets never decrease.
    fn line_at(&mut self, byte: u64) -> usize {
        let mut start = byte;
        // A run that begins at or before the record's start is all behind
        // it: a run reaching the start is the terminator or blank lines the
        // reader scanned from there.
        while let Some(run) = self.ends.front().copied() {
            if run.from > start {
                break;
            }
            start = start.max(run.to);
            self.line += run.lines;
            self.ends.pop_front();
        }
        self.line
    }

    /// Notes a line-end byte at stream offset `at`.
    fn push_end(&mut self, at: u64, ends_line: bool) {
        let lines = usize::from(ends_line);
        match self.ends.back_mut() {
            Some(run) if run.to == at => {
                run.to += 1;
                run.lines += lines;
            }
            _ => self.ends.push_back(LineEnds {
                from: at,
                to: at + 1,
                lines,
            }),
        }
    }
}

impl Read for LineTracker {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        let bytes = &buffer[..read];
        // `\n`, `\r\n` and a lone `\r` (old Mac Excel) each end one line.
        for at in memchr::memchr2_iter(b'\r', b'\n', bytes) {
            let after_cr = match at {
                0 => self.after_cr,
                _ => bytes[at - 1] == b'\r',
            };
            let ends_line = bytes[at] == b'\r' || !after_cr;
            self.push_end(self.read_to + at as u64, ends_line);
        }
        if let Some(&last) = bytes.last() {
            self.after_cr = last == b'\r';
        }
        self.read_to += read as u64;
        Ok(read)
    }
}

/// What the sniff found: the encoding, whether every byte was checked to
/// be UTF-8, and a decoded sample of the start.
struct Sniffed {
    encoding: &'static Encoding,
    utf8_checked: bool,
    sample: String,
    /// Line ends in the first [`SAMPLE_BYTES`], and how many bytes those were.
    head_lines: usize,
    head_bytes: usize,
}

impl Sniffed {
    /// The lines a stream of `length` bytes holds if it goes on as its
    /// first bytes do; capped, as only a guess for sizing.
    fn expected_rows(&self, length: u64) -> usize {
        const MAX_GUESS: u64 = 5_000_000;
        if self.head_bytes == 0 {
            return 0;
        }
        let guess = u128::from(length) * self.head_lines as u128 / self.head_bytes as u128;
        // Capped below, so it fits.
        u64::try_from(guess).unwrap_or(u64::MAX).min(MAX_GUESS) as usize
    }
}

/// The encoding of a whole stream, and a decoded sample of its start.
///
/// UTF-8 or UTF-16 when a BOM says so, UTF-8 when every byte is valid UTF-8,
/// else Windows-1252, which is what Excel writes on French Windows. (Every
/// byte sequence is valid Windows-1252, so this never fails.) The bytes
/// after a UTF-8 BOM are checked too, so that only a file valid throughout
/// is read without decoding.
fn sniff(mut reader: impl Read) -> io::Result<Sniffed> {
    let mut head = Vec::with_capacity(SAMPLE_BYTES);
    (&mut reader).take(SAMPLE_BYTES as u64).read_to_end(&mut head)?;
    let bom = Encoding::for_bom(&head);
    // `\n` ends a line in every encoding read (a UTF-16 `\n` holds the
    // byte once), `\r` in old Mac files.
    let head_lines = memchr::memchr_iter(b'\n', &head)
        .count()
        .max(memchr::memchr_iter(b'\r', &head).count());
    let head_bytes = head.len();
    if let Some((encoding, _)) = bom.filter(|(encoding, _)| *encoding != UTF_8) {
        return Ok(Sniffed {
            encoding,
            utf8_checked: false,
            sample: decode(&head),
            head_lines,
            head_bytes,
        });
    }
    let bom_length = bom.map_or(0, |(_, length)| length);
    let mut validator = Utf8Validator::default();
    let mut valid = validator.feed(&head[bom_length..]);
    let mut chunk = vec![0; SAMPLE_BYTES];
    while valid {
        let read = reader.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        valid = validator.feed(&chunk[..read]);
    }
    let utf8_checked = valid && validator.is_complete();
    let encoding = if utf8_checked || bom.is_some() {
        UTF_8
    } else {
        WINDOWS_1252
    };
    Ok(Sniffed {
        encoding,
        utf8_checked,
        sample: decode(&head),
        head_lines,
        head_bytes,
    })
}

/// Validates UTF-8 fed in chunks that may split a character.
#[derive(Default)]
struct Utf8Validator {
    carry: Vec<u8>,
}

impl Utf8Validator {
    fn feed(&mut self, chunk: &[u8]) -> bool {
        // The common case, checked in place: nothing carried over.
        if self.carry.is_empty() {
            return self.check(chunk);
        }
        let mut joined = std::mem::take(&mut self.carry);
        joined.extend_from_slice(chunk);
        self.check(&joined)
    }

    /// Whether `bytes` are UTF-8 but for an incomplete character at the
    /// end, which is kept to finish in the next chunk.
    fn check(&mut self, bytes: &[u8]) -> bool {
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(error) if error.error_len().is_none() => {
                self.carry = bytes[error.valid_up_to()..].to_vec();
                true
            }
            Err(_) => false,
        }
    }

    fn is_complete(&self) -> bool {
        self.carry.is_empty()
    }
}

/// Decodes a whole buffer with the same rules as [`sniff`] (a cut character
/// at the end of a sample is replaced, which does not affect detection).
pub fn decode(bytes: &[u8]) -> String {
    if let Some((encoding, bom_length)) = Encoding::for_bom(bytes) {
        return encoding
            .decode_without_bom_handling(&bytes[bom_length..])
            .0
            .into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(error) if error.error_len().is_none() => String::from_utf8_lossy(bytes).into_owned(),
        Err(_) => WINDOWS_1252.decode_without_bom_handling(bytes).0.into_owned(),
    }
}

/// The delimiter under which the most sampled records share one width of two
/// or more fields. A title line or a ragged row does not sway it, and a comma
/// inside `4 500,00 €` does not beat the semicolons around it.
pub fn detect_delimiter(text: &str) -> u8 {
    let score = |delimiter: u8| {
        let mut widths: Vec<usize> = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes())
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

    /// The rows of a pass, and its blank rows: the same parsed inline and
    /// on a parser thread.
    fn rows(source: &CsvSource) -> (Vec<(usize, Vec<String>)>, usize) {
        let read = |threading| {
            let mut pass = source.rows(threading).unwrap();
            let mut rows = Vec::new();
            while let Some(row) = pass.next_row() {
                let row = row.unwrap();
                rows.push((row.number, row.cells.iter().map(Cell::display).collect()));
            }
            (rows, pass.blank_rows())
        };
        let inline = read(Threading::Inline);
        assert_eq!(inline, read(Threading::Parallel), "inline and threaded passes differ");
        inline
    }

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|cell| cell.to_string()).collect()
    }

    #[test]
    fn decodes_every_encoding_seen_in_exports() {
        let cases: [(&[u8], &str); 4] = [
            (b"\xEF\xBB\xBFClient,Stage\n", "Client"),
            ("Société,Stage\n".as_bytes(), "Société"),
            (b"Soci\xe9t\xe9 \x80,Stage\n", "Société €"),
            (b"\xFF\xFEC\x00l\x00,\x00S\x00\n\x00", "Cl"),
        ];
        for (bytes, first_cell) in cases {
            let from_bytes = CsvSource::from_bytes(bytes.to_vec(), "test");
            assert_eq!(rows(&from_bytes).0[0].1[0], first_cell, "{bytes:?}");
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), bytes).unwrap();
            let from_file = CsvSource::from_file(File::open(file.path()).unwrap(), "test").unwrap();
            assert_eq!(rows(&from_file).0[0].1[0], first_cell, "{bytes:?}");
        }
    }

    #[test]
    fn windows_1252_is_detected_past_the_sample() {
        let mut bytes = "Client,Stage\n".repeat(10_000).into_bytes();
        bytes.extend_from_slice(b"Soci\xe9t\xe9,Lost\n");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        let source = CsvSource::from_file(File::open(file.path()).unwrap(), "test").unwrap();
        assert_eq!(source.encoding(), WINDOWS_1252);
        assert_eq!(rows(&source).0.last().unwrap().1[0], "Société");
    }

    #[test]
    fn a_bom_file_with_a_bad_byte_is_decoded_not_refused() {
        let mut bytes = b"\xEF\xBB\xBFClient,Stage\nCaf\xE9,Lost\n".to_vec();
        let source = CsvSource::from_bytes(bytes.clone(), "test");
        let (decoded, _) = rows(&source);
        assert_eq!(decoded[1].1, strings(&["Caf\u{FFFD}", "Lost"]));
        // Valid throughout: read as it is, the BOM dropped.
        bytes[19] = b'e';
        let (valid, _) = rows(&CsvSource::from_bytes(bytes, "test"));
        assert_eq!(valid[0].1, strings(&["Client", "Stage"]));
        assert_eq!(valid[1].1, strings(&["Cafe", "Lost"]));
    }

    #[test]
    fn a_long_run_of_blank_rows_is_counted_and_numbered_past() {
        let mut text = String::from("Client,Stage\n");
        text.push_str(&",,\r\n".repeat(20_000));
        text.push_str("Acme,Lost\n");
        let (rows, blank) = rows(&CsvSource::from_bytes(text.into_bytes(), "test"));
        assert_eq!(blank, 20_000);
        assert_eq!(rows.last().map(|row| row.0), Some(20_002));
    }

    #[test]
    fn a_run_of_empty_lines_is_held_as_one_entry_and_numbered_past() {
        let mut text = String::from("Client,Stage\n");
        text.push_str(&"\r\n".repeat(100_000));
        text.push_str("Acme,Lost\n");
        let mut tracker = LineTracker::new(Box::new(io::Cursor::new(text.clone().into_bytes())));
        io::copy(&mut tracker, &mut io::sink()).unwrap();
        assert_eq!(
            tracker.ends.len(),
            2,
            "the header's end with the empty lines, and the last row's"
        );
        let (rows, blank) = rows(&CsvSource::from_bytes(text.into_bytes(), "test"));
        assert_eq!(blank, 0, "empty lines are not rows");
        assert_eq!(rows.last().map(|row| row.0), Some(100_002));
    }

    #[test]
    fn utf8_split_across_chunks_is_still_utf8() {
        let mut validator = Utf8Validator::default();
        let text = "é".as_bytes();
        assert!(validator.feed(&text[..1]) && validator.feed(&text[1..]) && validator.is_complete());
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
        let source = CsvSource::from_bytes(
            b"Client,Stage\r\n\r\n,,\r\n\"Acme\nCorp\",Lost\r\nGlobex,Lost".to_vec(),
            "t",
        );
        let (rows, blank) = rows(&source);
        assert_eq!(
            rows,
            vec![
                (1, strings(&["Client", "Stage"])),
                (4, strings(&["Acme\nCorp", "Lost"])),
                (6, strings(&["Globex", "Lost"]))
            ]
        );
        assert_eq!(
            blank, 1,
            "the line of bare commas is blank; an empty line is not a record"
        );
    }

    #[test]
    fn old_mac_line_ends_are_numbered_too() {
        let source = CsvSource::from_bytes(b"Client,Stage\rAcme,Lost\r\rGlobex,Lost\r".to_vec(), "t");
        let numbers: Vec<usize> = rows(&source).0.iter().map(|(number, _)| *number).collect();
        assert_eq!(numbers, vec![1, 2, 4]);
    }

    /// A reader handing over one byte a call: every line end then falls
    /// across a read.
    struct ByteByByte(io::Cursor<Vec<u8>>);

    impl Read for ByteByByte {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            let end = buffer.len().min(1);
            self.0.read(&mut buffer[..end])
        }
    }

    #[test]
    fn line_ends_split_across_reads_are_counted_once() {
        let text = b"Client,Stage\r\n\r\n,,\r\n\"Acme\r\nCorp\",Lost\r\rGlobex,Lost\nInitech,Won\r\n".to_vec();
        let numbers = |inner: Box<dyn Read + Send>| {
            let mut parser = CsvParser {
                location: "t".to_owned(),
                reader: csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(LineTracker::new(inner)),
                record: csv::ByteRecord::new(),
                blank_rows: 0,
            };
            let mut row = Row {
                number: 0,
                cells: Vec::new(),
            };
            let mut numbers = Vec::new();
            while parser.next_into(&mut row).unwrap() {
                numbers.push(row.number);
            }
            numbers
        };
        let whole = numbers(Box::new(io::Cursor::new(text.clone())));
        assert_eq!(whole, vec![1, 4, 7, 8]);
        assert_eq!(numbers(Box::new(ByteByByte(io::Cursor::new(text)))), whole);
    }

    #[test]
    fn a_field_is_blank_as_a_cell_is_empty() {
        for field in ["", " ", "\t", "\u{a0}", "\u{b}", "a", " a", "\u{a0}a", "é", ";"] {
            assert_eq!(is_blank(field), Cell::text(field).is_empty(), "{field:?}");
        }
    }

    #[test]
    fn every_pass_reads_the_same_rows() {
        let source = CsvSource::from_bytes(b"a;b\n1;2\n\n3;4\n".to_vec(), "t");
        assert_eq!(rows(&source), rows(&source));
        assert_eq!(rows(&source).0.len(), 3);
    }

    #[test]
    fn a_field_that_is_not_utf8_is_named_even_when_the_record_is() {
        let mut cells = Vec::new();
        let fine = csv::ByteRecord::from(vec!["Léa".as_bytes(), b"", b" ", b"Won"]);
        assert_eq!(fill_cells(&mut cells, &fine), Ok(()));
        assert_eq!(cells, [Cell::text("Léa"), Cell::Empty, Cell::Empty, Cell::text("Won")]);
        // `é` split between two fields: the bytes together are UTF-8.
        let split = csv::ByteRecord::from(vec![b"ok".as_slice(), b"\xC3", b"\xA9x"]);
        assert_eq!(fill_cells(&mut cells, &split), Err(NotUtf8 { field: 1 }));
        let invalid = csv::ByteRecord::from(vec![b"ok".as_slice(), b"fine", b"bad\xFF"]);
        assert_eq!(fill_cells(&mut cells, &invalid), Err(NotUtf8 { field: 2 }));
    }

    #[test]
    fn a_record_that_is_not_utf8_fails_the_pass_with_its_line_and_field() {
        // Past the sniff (a file changed in place): bytes straight to the parser.
        let bytes = b"Client,Stage\n\nAcme,Lo\xFFst\n".to_vec();
        let mut parser = CsvParser {
            location: "file:///export.csv".to_owned(),
            reader: csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(LineTracker::new(Box::new(io::Cursor::new(bytes)))),
            record: csv::ByteRecord::new(),
            blank_rows: 0,
        };
        let mut row = Row {
            number: 0,
            cells: Vec::new(),
        };
        assert!(parser.next_into(&mut row).unwrap());
        let error = parser.next_into(&mut row).expect_err("not UTF-8");
        let message = error.to_string();
        assert!(matches!(error, CsvError::Malformed { line: 3, .. }), "{message}");
        assert!(message.contains("field 2 is not valid UTF-8"), "{message}");
    }

    #[test]
    fn the_rows_a_pass_reads_are_guessed_from_the_first_bytes() {
        let row = "Acme Industries 1,B Legals,2025-01-31,\"5 000,50\"\n";
        let text = row.repeat(20_000);
        let guess = CsvSource::from_bytes(text.clone().into_bytes(), "t").expected_rows();
        assert!((19_000..=21_000).contains(&guess), "{guess}");
        let small = CsvSource::from_bytes(row.repeat(3).into_bytes(), "t").expected_rows();
        assert_eq!(small, 3);
        assert_eq!(CsvSource::from_bytes(Vec::new(), "t").expected_rows(), 0);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &text).unwrap();
        let from_file = CsvSource::from_file(File::open(file.path()).unwrap(), "t").unwrap();
        assert_eq!(from_file.expected_rows(), guess);
    }

    #[test]
    fn unterminated_quote_is_read_to_the_end_not_lost() {
        let source = CsvSource::from_bytes(b"Client,Stage\n\"Acme,Lost\n".to_vec(), "t");
        assert_eq!(rows(&source).0.len(), 2);
    }

    #[test]
    fn a_file_rewritten_between_passes_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"Client,Stage\nAcme,Lost\n").unwrap();
        let source = CsvSource::from_file(File::open(file.path()).unwrap(), "file:///export.csv").unwrap();
        assert_eq!(rows(&source).0.len(), 2);
        std::fs::write(file.path(), b"Client,Stage\nAcme,Lost\nGlobex,Lost\n").unwrap();
        let error = source.rows(Threading::Inline).err().expect("a changed file is refused");
        assert!(matches!(error, CsvError::Changed { .. }), "{error}");
    }
}
