//! Workbooks as sources: `.xlsx`/`.xlsm`, `.xlsb`, `.xls` and `.ods` files,
//! read with their cells' own types.
//!
//! What a file is comes from its bytes, not its name: a zip archive with an
//! `xl/workbook.xml` part is an Excel workbook whatever it is called, and a
//! file named `.xlsx` that holds text is refused rather than parsed as CSV.
//!
//! A workbook is an archive made by someone else, and a zip archive's
//! declared sizes can lie. So before any of it is parsed, its parts are
//! counted and inflated once, to nowhere, against the `[sources]` caps; only
//! then does `calamine` read it. The chosen tab's cells are spooled row by
//! row (see [`super::spool`]): an `.xlsx` or `.xlsb` sheet is streamed, so
//! memory holds one row and the shared strings; `.xls` and `.ods` sheets are
//! read whole by `calamine`, within the same caps.
//!
//! Cells keep their types the way the Sheets API gives them
//! (`UNFORMATTED_VALUE`, `SERIAL_NUMBER`), so that a workbook and the same
//! sheet in Google Sheets map alike: numbers and percentages are numbers,
//! dates and date-times are serials counted from 1899-12-30 whatever the
//! workbook's date system (1904 included, Excel's phantom 1900-02-29 a
//! fault), error cells are their text (`#N/A`), and a formula saved without
//! its result is a fault, which the mapping reports as a row problem.

use std::io::{self, Read, Seek, SeekFrom};

use calamine::{Data, DataRef, ExcelDateTime, Ods, Reader, SheetType, SheetVisible, Xls, Xlsb, Xlsx};
use chrono::NaiveDate;

use super::spec::find_tab;
use super::spool::{RowSpool, SpoolError, SpooledRows};
use super::table::{Cell, CellFault};

/// The workbook formats `calamine` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkbookFormat {
    /// Office Open XML: `.xlsx`, and `.xlsm` with macros (never run).
    Xlsx,
    /// Excel's binary workbook.
    Xlsb,
    /// Excel 97-2003.
    Xls,
    /// OpenDocument spreadsheet (LibreOffice, Google's `.ods` download).
    Ods,
}

impl WorkbookFormat {
    pub fn name(self) -> &'static str {
        match self {
            WorkbookFormat::Xlsx => "xlsx",
            WorkbookFormat::Xlsb => "xlsb",
            WorkbookFormat::Xls => "xls",
            WorkbookFormat::Ods => "ods",
        }
    }

    /// The format a file name (or a URL's path) claims by its extension.
    pub fn claimed_by(name: &str) -> Option<WorkbookFormat> {
        let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match extension.as_str() {
            "xlsx" | "xlsm" => Some(WorkbookFormat::Xlsx),
            "xlsb" => Some(WorkbookFormat::Xlsb),
            "xls" => Some(WorkbookFormat::Xls),
            "ods" => Some(WorkbookFormat::Ods),
            _ => None,
        }
    }
}

/// The caps a workbook is read within (`[sources]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkbookLimits {
    /// The file itself (`max_download_bytes`, as for every source).
    pub max_bytes: u64,
    /// All its parts, inflated.
    pub max_unpacked_bytes: u64,
    /// Any one part, inflated (a sheet's XML, the shared strings).
    pub max_part_bytes: u64,
    /// The number of parts (files inside the archive).
    pub max_parts: usize,
    /// The cells of an `.xls` or `.ods` sheet's grid, which is built whole.
    pub max_cells: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkbookError {
    #[error(
        "{location} is named as a .{claimed} workbook but holds {found}; export it again, or name it for \
         what it is"
    )]
    NotAWorkbook {
        location: String,
        claimed: &'static str,
        found: &'static str,
    },
    #[error(
        "{location} is a zip archive with no workbook in it (no xl/workbook.xml, xl/workbook.bin or OpenDocument \
         spreadsheet); export the sheet again as .xlsx, .ods or CSV"
    )]
    NoWorkbookInArchive { location: String },
    #[error(
        "{location} is a password-protected workbook, which sheetsync cannot decrypt; save a copy without a \
         password and point the view at it"
    )]
    Encrypted { location: String },
    #[error(
        "{location} is not a readable {format} workbook ({reason}); it may be truncated or damaged: download \
         or export it again"
    )]
    Damaged {
        location: String,
        format: &'static str,
        reason: String,
    },
    #[error(
        "{location} {what} [sources] {setting} ({limit}); it was refused before being read: raise the setting \
         if the workbook is meant to be that large"
    )]
    TooLarge {
        location: String,
        what: &'static str,
        setting: &'static str,
        limit: u64,
    },
    #[error("{location} has no tab {tab:?}; its tabs are {available}: set sheet_name to one of them")]
    NoSuchTab {
        location: String,
        tab: String,
        available: String,
    },
    #[error(
        "{location} places a cell outside a worksheet's grid (1,048,576 rows by 16,384 columns); the file is \
         damaged or was not written by a spreadsheet application"
    )]
    OutsideTheGrid { location: String },
    #[error("{location} has no visible worksheet; set sheet_name to the tab to read")]
    NoTabs { location: String },
    #[error("cannot read {location}: {source}; check the path and that sheetsync may read it")]
    Read { location: String, source: io::Error },
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// What a file-like source's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Not an archive: a CSV export, read as text.
    Text,
    Workbook(WorkbookFormat),
}

/// A workbook's tabs, and the one a view's `sheet_name` chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkbookTabs {
    pub format: WorkbookFormat,
    /// Worksheets in workbook order, with whether each is hidden.
    pub tabs: Vec<(String, bool)>,
    pub chosen: String,
}

impl WorkbookTabs {
    /// The tabs as an error or `check` lists them, hidden ones marked.
    pub fn listed(&self) -> String {
        list_tabs(&self.tabs)
    }

    /// What `check` says of a workbook: its format, its tabs, the one read.
    pub fn summary(&self) -> String {
        format!(
            "{} workbook with tabs {}; tab {:?} found",
            self.format.name(),
            self.listed(),
            self.chosen
        )
    }
}

const ZIP_SIGNATURE: &[u8] = b"PK\x03\x04";
const EMPTY_ZIP_SIGNATURE: &[u8] = b"PK\x05\x06";
const COMPOUND_FILE_SIGNATURE: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
const ODS_MIMETYPE: &[u8] = b"application/vnd.oasis.opendocument.spreadsheet";

/// A file-like source opened for reading: where it is, what its name
/// claims, and the caps.
pub struct WorkbookSource<'a> {
    /// The source as errors name it.
    pub location: &'a str,
    /// The file name or URL path, whose extension says what it claims to be.
    pub name: &'a str,
    pub sheet_name: Option<&'a str>,
    pub limits: WorkbookLimits,
}

impl WorkbookSource<'_> {
    /// Reads `reader` as a workbook when its bytes are one: its chosen tab's
    /// rows, spooled. `None` for text (a CSV export), with the reader
    /// rewound; a name claiming a workbook for text is refused.
    pub fn read_if_workbook<R: Read + Seek>(&self, reader: &mut R) -> Result<Option<SpooledRows>, WorkbookError> {
        let Some(Admitted { format, has_hyperlinks }) = self.admit(reader)? else {
            return Ok(None);
        };
        let mut workbook = self.open(reader, format)?;
        let tab = self.choose_tab(&workbook, format)?.chosen;
        let mut spool = RowSpool::new(self.location);
        let read_whole = match &mut workbook {
            Workbook::Xlsx(book) => {
                let links = match has_hyperlinks {
                    true => book
                        .hyperlinks_by_sheet_name(&tab)
                        .map(Links::of)
                        .map_err(|error| self.damaged(format, error.into()))?,
                    false => Links::default(),
                };
                self.stream_xlsx(book, &tab, &links, &mut spool)?;
                None
            }
            Workbook::Xlsb(book) => {
                self.stream_xlsb(book, &tab, &mut spool)?;
                None
            }
            // Read whole: their grid was counted by `admit`.
            Workbook::Xls(book) => Some(book.worksheet_range(&tab).map_err(calamine::Error::from)),
            Workbook::Ods(book) => Some(book.worksheet_range(&tab).map_err(calamine::Error::from)),
        };
        if let Some(range) = read_whole {
            spool_range(&range.map_err(|error| self.damaged(format, error))?, &mut spool)?;
        }
        Ok(Some(spool.finish()?))
    }

    /// The workbook's tabs and the one chosen, without reading cells (for
    /// `sheetsync check`); `None` for text.
    pub fn tabs<R: Read + Seek>(&self, reader: &mut R) -> Result<Option<WorkbookTabs>, WorkbookError> {
        let Some(Admitted { format, .. }) = self.admit(reader)? else {
            return Ok(None);
        };
        let workbook = self.open(reader, format)?;
        self.choose_tab(&workbook, format).map(Some)
    }

    /// The workbook format of `reader`'s bytes, from the first, its caps
    /// checked; `None` for text. The reader is left rewound either way, so
    /// handles sharing one offset may be read in turn.
    fn admit<R: Read + Seek>(&self, reader: &mut R) -> Result<Option<Admitted>, WorkbookError> {
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| self.read_error(source))?;
        let content = self.sniff(reader)?;
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| self.read_error(source))?;
        let format = match (content, WorkbookFormat::claimed_by(self.name)) {
            (Content::Text, None) => return Ok(None),
            (Content::Text, Some(claimed)) => {
                return Err(WorkbookError::NotAWorkbook {
                    location: self.location.to_owned(),
                    claimed: claimed.name(),
                    found: "text, not a workbook archive",
                });
            }
            (Content::Workbook(format), _) => format,
        };
        let has_hyperlinks = match format {
            WorkbookFormat::Xls => false,
            _ => self.inflate_within_caps(reader, format)?,
        };
        self.grid_within_cap(reader, format)?;
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| self.read_error(source))?;
        Ok(Some(Admitted { format, has_hyperlinks }))
    }

    /// What the bytes are: a zip archive is told apart by its workbook part.
    fn sniff<R: Read + Seek>(&self, reader: &mut R) -> Result<Content, WorkbookError> {
        let mut start = [0u8; 8];
        let mut filled = 0;
        while filled < start.len() {
            match reader.read(&mut start[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(self.read_error(source)),
            }
        }
        let start = &start[..filled];
        let archive = [COMPOUND_FILE_SIGNATURE, ZIP_SIGNATURE, EMPTY_ZIP_SIGNATURE]
            .iter()
            .any(|signature| start.starts_with(signature));
        if !archive {
            return Ok(Content::Text);
        }
        // Before any of the archive is parsed.
        let length = reader
            .seek(SeekFrom::End(0))
            .map_err(|source| self.read_error(source))?;
        if length > self.limits.max_bytes {
            return Err(self.too_large("is larger than", "max_download_bytes", self.limits.max_bytes));
        }
        if start.starts_with(COMPOUND_FILE_SIGNATURE) {
            // `.xls`, or an encrypted Office Open XML file (told at `open`).
            return Ok(Content::Workbook(WorkbookFormat::Xls));
        }
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| self.read_error(source))?;
        let claimed = WorkbookFormat::claimed_by(self.name).map_or("zip", WorkbookFormat::name);
        let mut archive = zip::ZipArchive::new(&mut *reader).map_err(|error| self.zip_error(claimed, error))?;
        if archive.index_for_name("xl/workbook.xml").is_some() {
            return Ok(Content::Workbook(WorkbookFormat::Xlsx));
        }
        if archive.index_for_name("xl/workbook.bin").is_some() {
            return Ok(Content::Workbook(WorkbookFormat::Xlsb));
        }
        let mut mimetype = Vec::new();
        if let Ok(part) = archive.by_name("mimetype") {
            part.take(ODS_MIMETYPE.len() as u64 + 1)
                .read_to_end(&mut mimetype)
                .map_err(|error| self.zip_error(claimed, error.into()))?;
        }
        if mimetype == ODS_MIMETYPE {
            return Ok(Content::Workbook(WorkbookFormat::Ods));
        }
        Err(WorkbookError::NoWorkbookInArchive {
            location: self.location.to_owned(),
        })
    }

    /// Counts the archive's parts and inflates each, discarding the bytes,
    /// so that a part whose declared size lies is caught before `calamine`
    /// inflates it for real. Says, on the way, whether a worksheet has
    /// hyperlinks (a relationship of that type), which cost a pass of their
    /// own to read.
    fn inflate_within_caps<R: Read + Seek>(
        &self,
        reader: &mut R,
        format: WorkbookFormat,
    ) -> Result<bool, WorkbookError> {
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| self.read_error(source))?;
        let mut archive = zip::ZipArchive::new(&mut *reader).map_err(|error| self.zip_error(format.name(), error))?;
        let limits = self.limits;
        if archive.len() > limits.max_parts {
            return Err(self.too_large("has more parts than", "max_workbook_parts", limits.max_parts as u64));
        }
        let (mut total, mut has_hyperlinks) = (0u64, false);
        for index in 0..archive.len() {
            let part = archive
                .by_index(index)
                .map_err(|error| self.zip_error(format.name(), error))?;
            let mut sink = NeedleSink::new(part.name().starts_with("xl/worksheets/_rels/"));
            let inflated = io::copy(&mut part.take(limits.max_part_bytes + 1), &mut sink)
                .map_err(|error| self.zip_error(format.name(), error.into()))?;
            has_hyperlinks |= sink.found;
            if inflated > limits.max_part_bytes {
                return Err(self.too_large(
                    "has a part that inflates past",
                    "max_workbook_part_bytes",
                    limits.max_part_bytes,
                ));
            }
            total += inflated;
            if total > limits.max_unpacked_bytes {
                return Err(self.too_large(
                    "inflates past",
                    "max_workbook_unpacked_bytes",
                    limits.max_unpacked_bytes,
                ));
            }
        }
        Ok(has_hyperlinks)
    }

    /// For the formats read whole, the largest grid a sheet would make,
    /// held to `max_workbook_cells` before the reader builds it.
    fn grid_within_cap<R: Read + Seek>(&self, reader: &mut R, format: WorkbookFormat) -> Result<(), WorkbookError> {
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| self.read_error(source))?;
        let cells = match format {
            WorkbookFormat::Xlsx | WorkbookFormat::Xlsb => return Ok(()),
            WorkbookFormat::Xls => super::grid::xls_cells(&mut *reader).map_err(|source| self.read_error(source))?,
            WorkbookFormat::Ods => {
                let mut archive =
                    zip::ZipArchive::new(&mut *reader).map_err(|error| self.zip_error(format.name(), error))?;
                let content = archive
                    .by_name("content.xml")
                    .map_err(|error| self.zip_error(format.name(), error))?;
                let cells =
                    super::grid::ods_cells(io::BufReader::new(content)).map_err(|_| WorkbookError::Damaged {
                        location: self.location.to_owned(),
                        format: format.name(),
                        reason: "a part's XML is malformed".to_owned(),
                    })?;
                Some(cells)
            }
        };
        match cells {
            Some(cells) if cells > self.limits.max_cells => Err(self.too_large(
                "has a sheet whose grid (first to last used cell) holds more cells than",
                "max_workbook_cells",
                self.limits.max_cells,
            )),
            _ => Ok(()),
        }
    }

    fn open<'r, R: Read + Seek>(
        &self,
        reader: &'r mut R,
        format: WorkbookFormat,
    ) -> Result<Workbook<'r, R>, WorkbookError> {
        let opened = match format {
            WorkbookFormat::Xlsx => Xlsx::new(reader).map(Workbook::Xlsx).map_err(calamine::Error::from),
            WorkbookFormat::Xlsb => Xlsb::new(reader).map(Workbook::Xlsb).map_err(calamine::Error::from),
            WorkbookFormat::Ods => Ods::new(reader).map(Workbook::Ods).map_err(calamine::Error::from),
            WorkbookFormat::Xls => {
                // A compound file is `.xls`, or an encrypted `.xlsx`, which
                // the Office Open XML reader recognises.
                if let Err(calamine::XlsxError::Password) = Xlsx::new(&mut *reader) {
                    return Err(self.encrypted());
                }
                reader
                    .seek(SeekFrom::Start(0))
                    .map_err(|source| self.read_error(source))?;
                Xls::new(reader).map(Workbook::Xls).map_err(calamine::Error::from)
            }
        };
        opened.map_err(|error| self.damaged(format, error))
    }

    /// The tab `sheet_name` names (exactly, else ignoring case and
    /// surrounding spaces, as for Google Sheets), or the first visible
    /// worksheet: a hidden first tab is usually a lookup list, not the data.
    fn choose_tab<R: Read + Seek>(
        &self,
        workbook: &Workbook<'_, R>,
        format: WorkbookFormat,
    ) -> Result<WorkbookTabs, WorkbookError> {
        let tabs: Vec<(String, bool)> = workbook
            .sheets_metadata()
            .iter()
            .filter(|sheet| sheet.typ == SheetType::WorkSheet)
            .map(|sheet| (sheet.name.clone(), sheet.visible != SheetVisible::Visible))
            .collect();
        let chosen = match self.sheet_name {
            Some(wanted) => find_tab(tabs.iter().map(|(name, _)| name.as_str()), wanted).ok_or_else(|| {
                WorkbookError::NoSuchTab {
                    location: self.location.to_owned(),
                    tab: wanted.to_owned(),
                    available: list_tabs(&tabs),
                }
            })?,
            None => tabs
                .iter()
                .find(|(_, hidden)| !hidden)
                .map(|(name, _)| name.as_str())
                .ok_or_else(|| WorkbookError::NoTabs {
                    location: self.location.to_owned(),
                })?,
        }
        .to_owned();
        Ok(WorkbookTabs { format, tabs, chosen })
    }

    fn stream_xlsx<R: Read + Seek>(
        &self,
        book: &mut Xlsx<&mut R>,
        tab: &str,
        links: &Links,
        spool: &mut RowSpool,
    ) -> Result<(), WorkbookError> {
        let damaged = |error: calamine::XlsxError| self.damaged(WorkbookFormat::Xlsx, error.into());
        let mut cells = book.worksheet_cells_reader(tab).map_err(damaged)?;
        let mut rows = RowFiller::default();
        while let Some(cell) = cells.next_cell_with_formula().map_err(damaged)? {
            let value = match (cell.value, cell.formula) {
                (DataRef::Empty, Some(_)) => Cell::Fault(CellFault::FormulaWithoutValue),
                (value, _) => cell_of(Data::from(value)),
            };
            rows.place(cell.pos, links.apply(cell.pos, value), spool)?;
        }
        rows.finish(spool)
    }

    fn stream_xlsb<R: Read + Seek>(
        &self,
        book: &mut Xlsb<&mut R>,
        tab: &str,
        spool: &mut RowSpool,
    ) -> Result<(), WorkbookError> {
        let damaged = |error: calamine::XlsbError| self.damaged(WorkbookFormat::Xlsb, error.into());
        let mut cells = book.worksheet_cells_reader(tab).map_err(damaged)?;
        let mut rows = RowFiller::default();
        while let Some(cell) = cells.next_cell().map_err(damaged)? {
            let position = cell.get_position();
            rows.place(position, cell_of(Data::from(cell.get_value().clone())), spool)?;
        }
        rows.finish(spool)
    }

    fn damaged(&self, format: WorkbookFormat, error: calamine::Error) -> WorkbookError {
        if is_password_error(&error) {
            return self.encrypted();
        }
        WorkbookError::Damaged {
            location: self.location.to_owned(),
            format: format.name(),
            reason: structural_reason(&error),
        }
    }

    fn zip_error(&self, format: &'static str, error: zip::result::ZipError) -> WorkbookError {
        match error {
            zip::result::ZipError::UnsupportedArchive(message) if message.contains("assword") => self.encrypted(),
            error => WorkbookError::Damaged {
                location: self.location.to_owned(),
                format,
                reason: format!("as a zip archive: {error}"),
            },
        }
    }

    fn encrypted(&self) -> WorkbookError {
        WorkbookError::Encrypted {
            location: self.location.to_owned(),
        }
    }

    fn too_large(&self, what: &'static str, setting: &'static str, limit: u64) -> WorkbookError {
        WorkbookError::TooLarge {
            location: self.location.to_owned(),
            what,
            setting,
            limit,
        }
    }

    fn read_error(&self, source: io::Error) -> WorkbookError {
        WorkbookError::Read {
            location: self.location.to_owned(),
            source,
        }
    }
}

/// What [`WorkbookSource::admit`] found.
struct Admitted {
    format: WorkbookFormat,
    has_hyperlinks: bool,
}

/// The hyperlink relationship type, as a worksheet's `.rels` part names it
/// (in whichever quotes).
const HYPERLINK_RELATIONSHIP: &[u8] = b"/relationships/hyperlink";

/// A sink that, when asked to, watches the bytes going by for
/// [`HYPERLINK_RELATIONSHIP`], across the writes' boundaries.
struct NeedleSink {
    watching: bool,
    found: bool,
    /// The end of the previous write, in case the needle straddles two.
    tail: Vec<u8>,
}

impl NeedleSink {
    fn new(watching: bool) -> NeedleSink {
        NeedleSink {
            watching,
            found: false,
            tail: Vec::new(),
        }
    }
}

impl io::Write for NeedleSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.watching && !self.found {
            // The needle may begin in any earlier write, however short: the
            // tail keeps the last bytes seen, whatever writes they came in.
            let keep = HYPERLINK_RELATIONSHIP.len() - 1;
            self.tail.extend_from_slice(&bytes[..bytes.len().min(keep)]);
            self.found = memchr::memmem::find(&self.tail, HYPERLINK_RELATIONSHIP).is_some()
                || memchr::memmem::find(bytes, HYPERLINK_RELATIONSHIP).is_some();
            if bytes.len() >= keep {
                self.tail.clear();
                self.tail.extend_from_slice(&bytes[bytes.len() - keep..]);
            } else {
                let excess = self.tail.len().saturating_sub(keep);
                self.tail.drain(..excess);
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Multi-cell hyperlink ranges looked at, at most: each is checked against
/// every text cell, and a sales sheet links single cells.
const MAX_LINK_RANGES: usize = 1000;

/// A sheet's external hyperlinks (targets, not in-workbook locations), by
/// the cells they sit on.
#[derive(Default)]
struct Links {
    cells: std::collections::HashMap<(u32, u32), String>,
    ranges: Vec<(calamine::Dimensions, String)>,
}

impl Links {
    fn of(hyperlinks: Vec<calamine::Hyperlink>) -> Links {
        let mut links = Links::default();
        let mut skipped = 0usize;
        for hyperlink in hyperlinks {
            let Some(target) = hyperlink.target else {
                continue;
            };
            if hyperlink.range.start == hyperlink.range.end {
                links.cells.insert(hyperlink.range.start, target);
            } else if links.ranges.len() < MAX_LINK_RANGES {
                links.ranges.push((hyperlink.range, target));
            } else {
                skipped += 1;
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "hyperlinks spanning several cells past the first {MAX_LINK_RANGES} are not read; their cells give their text"
            );
        }
        links
    }

    /// A text cell that links elsewhere becomes a [`Cell::Link`].
    fn apply(&self, position: (u32, u32), value: Cell) -> Cell {
        let Cell::Text(text) = value else {
            return value;
        };
        let target = self.cells.get(&position).or_else(|| {
            self.ranges
                .iter()
                .find(|(range, _)| range.contains(position.0, position.1))
                .map(|(_, target)| target)
        });
        match target {
            Some(target) if target.trim() != text.trim() => Cell::Link {
                text,
                target: target.clone(),
            },
            _ => Cell::Text(text),
        }
    }
}

/// An opened workbook; `calamine`'s own `Sheets` enum, with each reader
/// kept by its type so that `.xlsx` and `.xlsb` sheets can be streamed.
enum Workbook<'r, R: Read + Seek> {
    Xlsx(Xlsx<&'r mut R>),
    Xlsb(Xlsb<&'r mut R>),
    Xls(Xls<&'r mut R>),
    Ods(Ods<&'r mut R>),
}

impl<R: Read + Seek> Workbook<'_, R> {
    fn sheets_metadata(&self) -> &[calamine::Sheet] {
        match self {
            Workbook::Xlsx(book) => book.sheets_metadata(),
            Workbook::Xlsb(book) => book.sheets_metadata(),
            Workbook::Xls(book) => book.sheets_metadata(),
            Workbook::Ods(book) => book.sheets_metadata(),
        }
    }
}

/// Gathers streamed cells (row-major, as a sheet stores them) into rows
/// numbered as the spreadsheet shows them, counting the rows with no cell.
#[derive(Default)]
struct RowFiller {
    /// The row being filled (0-based), if any.
    current: Option<u32>,
    /// Rows handed to the spool, blank ones included.
    handed: u32,
    cells: Vec<Cell>,
}

/// The largest grid a worksheet has (Excel's, which the other formats do
/// not exceed): a cell claimed past it is a damaged or hostile file, and
/// would otherwise make a row of billions of cells.
const MAX_ROWS: u32 = 1 << 20;
const MAX_COLUMNS: u32 = 1 << 14;

impl RowFiller {
    fn place(&mut self, (row, column): (u32, u32), value: Cell, spool: &mut RowSpool) -> Result<(), WorkbookError> {
        if row >= MAX_ROWS || column >= MAX_COLUMNS {
            return Err(WorkbookError::OutsideTheGrid {
                location: spool.location().to_owned(),
            });
        }
        if self.current != Some(row) {
            self.flush(spool)?;
            // Rows the sheet stores no cell for are blank.
            spool.add_blank_rows(row.saturating_sub(self.handed) as usize);
            self.handed = self.handed.max(row);
            self.current = Some(row);
        }
        let column = column as usize;
        if self.cells.len() <= column {
            self.cells.resize(column + 1, Cell::Empty);
        }
        self.cells[column] = value;
        Ok(())
    }

    fn flush(&mut self, spool: &mut RowSpool) -> Result<(), WorkbookError> {
        if let Some(row) = self.current.take() {
            spool.push(row as usize + 1, &self.cells)?;
            self.handed = row + 1;
            self.cells.clear();
        }
        Ok(())
    }

    fn finish(mut self, spool: &mut RowSpool) -> Result<(), WorkbookError> {
        self.flush(spool)
    }
}

/// A whole sheet `calamine` read at once (`.xls`, `.ods`), spooled.
fn spool_range(range: &calamine::Range<Data>, spool: &mut RowSpool) -> Result<(), WorkbookError> {
    let Some((first_row, first_column)) = range.start() else {
        return Ok(());
    };
    let mut rows = RowFiller::default();
    for (row_offset, row) in range.rows().enumerate() {
        for (column_offset, value) in row.iter().enumerate() {
            let position = (first_row + row_offset as u32, first_column + column_offset as u32);
            rows.place(position, cell_of(value.clone()), spool)?;
        }
    }
    rows.finish(spool)
}

/// A cell as the Sheets API would give it. Streamed cells arrive as
/// `DataRef`s, which become `Data` first (`Data::from`): a shared string is
/// copied once, as the cell keeps it anyway.
fn cell_of(value: Data) -> Cell {
    match value {
        Data::String(text) if text.trim().is_empty() => Cell::Empty,
        Data::String(text) => Cell::Text(text),
        Data::Empty => Cell::Empty,
        Data::Int(number) => Cell::Number(number as f64),
        Data::Float(number) => Cell::Number(number),
        Data::Bool(flag) => Cell::Bool(flag),
        Data::DateTime(moment) => date_cell(&moment),
        Data::DateTimeIso(text) => iso_date_cell(&text),
        Data::DurationIso(text) => iso_duration_cell(&text),
        Data::Error(error) => Cell::Text(error.to_string()),
    }
}

/// A date cell as the serial Google Sheets would give for the same date:
/// days since 1899-12-30, whatever the workbook's date system.
fn date_cell(moment: &ExcelDateTime) -> Cell {
    let value = moment.as_f64();
    // A duration, or a time of day without a date (`18:00` is 0.75): the
    // fraction of a day, as Google gives it. A serial past 9999-12-31 (or
    // negative) is no date either: the mapping reports it as such.
    if moment.is_duration() || !(1.0..MAX_SERIAL).contains(&value) {
        return Cell::Number(value);
    }
    let (year, month, day, hour, minute, second, milli) = moment.to_ymd_hms_milli();
    // Only Excel's 1900-02-29 is not a calendar date.
    match NaiveDate::from_ymd_opt(i32::from(year), u32::from(month), u32::from(day)) {
        Some(date) => {
            let millis =
                ((u64::from(hour) * 60 + u64::from(minute)) * 60 + u64::from(second)) * 1000 + u64::from(milli);
            Cell::Number(days_since_serial_epoch(date) as f64 + millis as f64 / 86_400_000.0)
        }
        None => Cell::Fault(CellFault::NonexistentDate),
    }
}

/// 9999-12-31's serial, plus one: the last day either date system counts.
const MAX_SERIAL: f64 = 2_958_466.0;

/// OpenDocument stores a time (`PT18H30M00S`) as an ISO 8601 duration: the
/// fraction of a day, as Excel's and Google's serials give it.
fn iso_duration_cell(text: &str) -> Cell {
    let parsed = (|| {
        let mut rest = text.strip_prefix("PT")?;
        let mut seconds = 0.0;
        for (unit, scale) in [('H', 3600.0), ('M', 60.0), ('S', 1.0)] {
            if let Some((number, after)) = rest.split_once(unit) {
                seconds += number.parse::<f64>().ok()? * scale;
                rest = after;
            }
        }
        rest.is_empty().then_some(seconds / 86_400.0)
    })();
    match parsed {
        Some(days) => Cell::Number(days),
        None => Cell::text(text),
    }
}

/// OpenDocument stores dates as ISO 8601 text; they become serials like
/// Excel's, so that an `.ods` and an `.xlsx` of one sheet read the same.
fn iso_date_cell(text: &str) -> Cell {
    if let Ok(moment) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        let since_midnight = moment.time().signed_duration_since(chrono::NaiveTime::MIN);
        let fraction = since_midnight.num_milliseconds() as f64 / 86_400_000.0;
        return Cell::Number(days_since_serial_epoch(moment.date()) as f64 + fraction);
    }
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) => Cell::Number(days_since_serial_epoch(date) as f64),
        Err(_) => Cell::text(text),
    }
}

/// Day 0 of Google Sheets' serials (and of Excel's, from March 1900).
const SERIAL_EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1899, 12, 30) {
    Some(date) => date,
    // Evaluated at compile time: a build cannot get here.
    None => panic!("1899-12-30 is a calendar date"),
};

fn days_since_serial_epoch(date: NaiveDate) -> i64 {
    date.signed_duration_since(SERIAL_EPOCH).num_days()
}

fn list_tabs(tabs: &[(String, bool)]) -> String {
    tabs.iter()
        .map(|(name, hidden)| match hidden {
            true => format!("{name:?} (hidden)"),
            false => format!("{name:?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_password_error(error: &calamine::Error) -> bool {
    matches!(
        error,
        calamine::Error::Xlsx(calamine::XlsxError::Password)
            | calamine::Error::Xls(calamine::XlsError::Password)
            | calamine::Error::Ods(calamine::OdsError::Password)
    )
}

/// What is wrong with a workbook's structure, in words that carry nothing
/// from inside it: error pages may be shown without authentication, and a
/// parser's message can quote the cell it stopped at. The full error goes
/// to the log, which only the operator reads.
fn structural_reason(error: &calamine::Error) -> String {
    tracing::debug!(%error, "workbook unreadable");
    let reason = match error {
        calamine::Error::Io(error) => return format!("reading it failed: {}", error.kind()),
        calamine::Error::Xlsx(calamine::XlsxError::Zip(error))
        | calamine::Error::Xlsb(calamine::XlsbError::Zip(error))
        | calamine::Error::Ods(calamine::OdsError::Zip(error)) => return format!("as a zip archive: {error}"),
        calamine::Error::Xlsx(calamine::XlsxError::Xml(_))
        | calamine::Error::Xlsb(calamine::XlsbError::Xml(_))
        | calamine::Error::Ods(calamine::OdsError::Xml(_)) => "a part's XML is malformed",
        calamine::Error::Xls(_) => "its compound-file structure could not be parsed",
        _ => "its structure could not be parsed",
    };
    reason.to_owned()
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write as _};

    use rust_xlsxwriter::{Format, Formula, Workbook as XlsxWriter};

    use super::*;
    use crate::source::table::Row;

    const LIMITS: WorkbookLimits = WorkbookLimits {
        max_bytes: 64 * 1024 * 1024,
        max_unpacked_bytes: 256 * 1024 * 1024,
        max_part_bytes: 128 * 1024 * 1024,
        max_parts: 100,
        max_cells: 1_000_000,
    };

    /// 2025-01-10 as a Google Sheets serial.
    const JAN_10: f64 = 45667.0;

    fn xlsx(build: impl FnOnce(&mut XlsxWriter)) -> Vec<u8> {
        let mut book = XlsxWriter::new();
        build(&mut book);
        book.save_to_buffer().unwrap()
    }

    // rewrite_part, encrypted_workbook, ods_archive.
    include!("../../tests/support/workbooks.rs");

    fn source<'a>(name: &'a str, sheet_name: Option<&'a str>, limits: WorkbookLimits) -> WorkbookSource<'a> {
        WorkbookSource {
            location: "file:///exports/deals.xlsx",
            name,
            sheet_name,
            limits,
        }
    }

    fn read_as(
        bytes: &[u8],
        name: &str,
        sheet_name: Option<&str>,
        limits: WorkbookLimits,
    ) -> Result<Vec<Row>, WorkbookError> {
        let rows = source(name, sheet_name, limits)
            .read_if_workbook(&mut Cursor::new(bytes))?
            .expect("a workbook");
        let mut pass = rows.rows();
        let mut read = Vec::new();
        while let Some(row) = pass.next_row() {
            read.push(row.unwrap().clone());
        }
        Ok(read)
    }

    fn read(bytes: &[u8], sheet_name: Option<&str>) -> Vec<Row> {
        read_as(bytes, "deals.xlsx", sheet_name, LIMITS).unwrap()
    }

    fn number(cell: &Cell) -> f64 {
        match cell {
            Cell::Number(number) => *number,
            other => panic!("not a number: {other:?}"),
        }
    }

    #[test]
    fn cells_read_as_the_sheets_api_gives_them() {
        let bytes = xlsx(|book| {
            let sheet = book.add_worksheet();
            let formats = ["dd/mm/yyyy", "mmm d, yyyy", "yyyy-mm-dd", "[$-40C]d mmmm yyyy"];
            for (column, format) in formats.iter().enumerate() {
                let format = Format::new().set_num_format(*format);
                sheet
                    .write_number_with_format(0, column as u16, JAN_10, &format)
                    .unwrap();
            }
            let moment = Format::new().set_num_format("dd/mm/yyyy hh:mm");
            sheet.write_number_with_format(0, 4, JAN_10 + 0.6875, &moment).unwrap();
            let euros = Format::new().set_num_format("#,##0.00 \"€\"");
            sheet.write_number_with_format(1, 0, 1234.5, &euros).unwrap();
            let percent = Format::new().set_num_format("0.0%");
            sheet.write_number_with_format(1, 1, 0.125, &percent).unwrap();
            sheet.write_formula(1, 2, Formula::new("=1+2").set_result("3")).unwrap();
            sheet
                .write_formula(1, 3, Formula::new("=NA()").set_result("#N/A"))
                .unwrap();
            sheet
                .write_formula(1, 4, Formula::new("=1/0").set_result("#DIV/0!"))
                .unwrap();
            sheet.write_string(1, 5, " Acme ").unwrap();
            sheet.write_boolean(1, 6, true).unwrap();
            sheet.write_string(1, 7, "   ").unwrap();
            sheet.write_number(1, 8, 42.0).unwrap();
            let time = Format::new().set_num_format("hh:mm");
            sheet.write_number_with_format(1, 9, 0.75, &time).unwrap();
        });
        let rows = read(&bytes, None);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].number, 1);
        for cell in &rows[0].cells[..4] {
            assert_eq!(number(cell), JAN_10, "{:?}", rows[0].cells);
        }
        assert!((number(&rows[0].cells[4]) - (JAN_10 + 0.6875)).abs() < 1e-9);
        assert_eq!(rows[1].number, 2);
        assert_eq!(
            rows[1].cells,
            vec![
                Cell::Number(1234.5),
                Cell::Number(0.125),
                Cell::Number(3.0),
                Cell::Text("#N/A".into()),
                Cell::Text("#DIV/0!".into()),
                Cell::Text(" Acme ".into()),
                Cell::Bool(true),
                Cell::Empty,
                Cell::Number(42.0),
                Cell::Number(0.75),
            ]
        );
    }

    #[test]
    fn a_sheet_read_whole_is_refused_past_the_cells_cap() {
        let sparse = include_bytes!("../../tests/fixtures/workbooks/sparse.xls");
        let error = read_as(sparse, "sparse.xls", None, LIMITS).unwrap_err();
        let expected = "has a sheet whose grid (first to last used cell) holds more cells than [sources] \
                        max_workbook_cells (1000000)";
        assert!(error.to_string().contains(expected), "{error}");
        let spread = ods_archive(
            r#"<table:table-row table:number-rows-repeated="1000000">
               <table:table-cell office:value-type="float" office:value="1" table:number-columns-repeated="100"/>
               </table:table-row>"#,
        );
        assert!(spread.len() < 4096, "a small file");
        let error = read_as(&spread, "deals.ods", None, LIMITS).unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
    }

    #[test]
    fn a_cell_outside_the_grid_is_refused_not_grown_into() {
        let mut spool = RowSpool::new("file:///exports/deals.xlsx");
        let mut rows = RowFiller::default();
        rows.place((0, 16_383), Cell::text("last column"), &mut spool).unwrap();
        let error = rows.place((1, 16_384), Cell::text("past it"), &mut spool).unwrap_err();
        assert!(matches!(error, WorkbookError::OutsideTheGrid { .. }), "{error}");
        let error = rows.place((1 << 20, 0), Cell::text("below"), &mut spool).unwrap_err();
        assert!(error.to_string().contains("outside a worksheet's grid"), "{error}");
    }

    #[test]
    fn dates_read_the_same_in_the_1904_system() {
        let date = Format::new().set_num_format("dd/mm/yyyy");
        let bytes = xlsx(|book| {
            let sheet = book.add_worksheet();
            // 1904 serials count 1462 days fewer for the same date.
            sheet.write_number_with_format(0, 0, JAN_10 - 1462.0, &date).unwrap();
            sheet.write_number(0, 1, 7.0).unwrap();
        });
        let bytes = rewrite_part(&bytes, "xl/workbook.xml", |xml| {
            xml.replacen("<workbookPr", "<workbookPr date1904=\"1\"", 1)
        });
        let rows = read(&bytes, None);
        assert_eq!(rows[0].cells, vec![Cell::Number(JAN_10), Cell::Number(7.0)]);
    }

    #[test]
    fn excel_s_phantom_1900_leap_day_is_a_fault_and_its_neighbours_are_dates() {
        let date = Format::new().set_num_format("yyyy-mm-dd");
        let bytes = xlsx(|book| {
            let sheet = book.add_worksheet();
            for (column, serial) in [1.0, 59.0, 60.0, 61.0].into_iter().enumerate() {
                sheet.write_number_with_format(0, column as u16, serial, &date).unwrap();
            }
        });
        let cells = &read(&bytes, None)[0].cells;
        let serial_of = |y, m, d| days_since_serial_epoch(NaiveDate::from_ymd_opt(y, m, d).unwrap()) as f64;
        assert_eq!(
            cells,
            &vec![
                Cell::Number(serial_of(1900, 1, 1)),
                Cell::Number(serial_of(1900, 2, 28)),
                Cell::Fault(CellFault::NonexistentDate),
                Cell::Number(serial_of(1900, 3, 1)),
            ]
        );
        assert_eq!(
            serial_of(1900, 3, 1),
            61.0,
            "from March 1900 Excel and Sheets serials agree"
        );
    }

    #[test]
    fn a_formula_saved_without_its_result_is_a_fault() {
        let bytes = xlsx(|book| {
            let sheet = book.add_worksheet();
            sheet.write_formula(0, 0, "=SUM(1,2)").unwrap();
            sheet.write_formula(0, 1, Formula::new("=2*2").set_result("4")).unwrap();
        });
        let bytes = rewrite_part(&bytes, "xl/worksheets/sheet1.xml", |xml| {
            xml.replace("<f>SUM(1,2)</f><v>0</v>", "<f>SUM(1,2)</f>")
        });
        let cells = &read(&bytes, None)[0].cells;
        assert_eq!(
            cells,
            &vec![Cell::Fault(CellFault::FormulaWithoutValue), Cell::Number(4.0)]
        );
    }

    #[test]
    fn rows_keep_the_sheet_s_numbers_and_columns() {
        let bytes = xlsx(|book| {
            let sheet = book.add_worksheet();
            sheet.write_string(0, 1, "Pipeline export").unwrap();
            sheet.write_string(3, 1, "Client").unwrap();
            sheet.write_string(3, 2, "Stage").unwrap();
            sheet.write_string(4, 1, "Acme").unwrap();
            sheet.write_string(6, 2, "Lost").unwrap();
        });
        let rows = source("deals.xlsx", None, LIMITS)
            .read_if_workbook(&mut Cursor::new(&bytes))
            .unwrap()
            .unwrap();
        assert_eq!(rows.blank_rows(), 3, "rows 2, 3 and 6 hold nothing");
        let rows = read(&bytes, None);
        let numbers: Vec<usize> = rows.iter().map(|row| row.number).collect();
        assert_eq!(numbers, [1, 4, 5, 7]);
        assert_eq!(
            rows[1].cells,
            vec![Cell::Empty, Cell::text("Client"), Cell::text("Stage")]
        );
        assert_eq!(rows[3].cells, vec![Cell::Empty, Cell::Empty, Cell::text("Lost")]);
    }

    #[test]
    fn an_xls_workbook_reads_its_typed_cells_from_its_first_visible_tab() {
        let bytes = include_bytes!("../../tests/fixtures/workbooks/deals.xls");
        let tabs = source("deals.xls", None, LIMITS)
            .tabs(&mut Cursor::new(&bytes[..]))
            .unwrap()
            .unwrap();
        assert_eq!(tabs.format, WorkbookFormat::Xls);
        assert_eq!(tabs.listed(), "\"Lookups\" (hidden), \"Deals\"");
        let rows = read_as(bytes, "deals.xls", None, LIMITS).unwrap();
        let numbers: Vec<usize> = rows.iter().map(|row| row.number).collect();
        assert_eq!(numbers, [1, 3, 4, 5], "a title row, a blank row, the header, two deals");
        let acme = &rows[2].cells;
        assert_eq!(
            acme[..5],
            [
                Cell::text("Acme Corp"),
                Cell::text("B Legals"),
                Cell::Number(JAN_10),
                Cell::Number(1234.5),
                Cell::Number(0.125),
            ]
        );
        assert!((number(&acme[5]) - (JAN_10 + 0.6875)).abs() < 1e-6, "{:?}", acme[5]);
        assert_eq!(rows[3].cells[3], Cell::Bool(true));
    }

    #[test]
    fn an_xlsb_workbook_streams_its_typed_cells() {
        let bytes = xlsb_workbook();
        let tabs = source("deals.xlsb", None, LIMITS)
            .tabs(&mut Cursor::new(&bytes))
            .unwrap()
            .unwrap();
        assert_eq!(
            (tabs.format, tabs.listed()),
            (WorkbookFormat::Xlsb, "\"Lookups\" (hidden), \"Deals\"".to_owned())
        );
        let rows = read_as(&bytes, "deals.xlsb", None, LIMITS).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1].cells,
            vec![
                Cell::text("Acme"),
                Cell::text("B Legals"),
                Cell::Number(JAN_10),
                Cell::Number(1234.5),
                Cell::Bool(true),
                Cell::Text("#N/A".into()),
            ]
        );
        assert_eq!(
            read_as(&bytes, "deals.xlsb", Some("lookups"), LIMITS).unwrap()[0].cells,
            vec![Cell::text("Lost")]
        );
    }

    #[test]
    fn a_hyperlink_cell_keeps_its_text_and_its_target() {
        let bytes = xlsx(|book| {
            let sheet = book.add_worksheet();
            sheet
                .write_url_with_text(0, 0, "https://app.hubspot.com/deals/42", "Open in HubSpot")
                .unwrap();
            sheet.write_url(0, 1, "https://app.hubspot.com/deals/43").unwrap();
            sheet.write_string(0, 2, "Acme").unwrap();
        });
        assert_eq!(
            read(&bytes, None)[0].cells,
            vec![
                Cell::Link {
                    text: "Open in HubSpot".into(),
                    target: "https://app.hubspot.com/deals/42".into()
                },
                Cell::text("https://app.hubspot.com/deals/43"),
                Cell::text("Acme"),
            ]
        );
    }

    #[test]
    fn the_hyperlink_needle_is_found_across_writes() {
        use std::io::Write as _;
        let text =
            b"<Relationship Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink\"/>";
        for first in 0..text.len() {
            for second in first..text.len() {
                let mut sink = NeedleSink::new(true);
                for part in [&text[..first], &text[first..second], &text[second..]] {
                    sink.write_all(part).unwrap();
                }
                assert!(sink.found, "split at {first} and {second}");
            }
        }
        let mut sink = NeedleSink::new(true);
        for byte in text.iter() {
            sink.write_all(std::slice::from_ref(byte)).unwrap();
        }
        assert!(sink.found, "a byte at a time");
        let mut unwatched = NeedleSink::new(false);
        unwatched.write_all(text).unwrap();
        assert!(!unwatched.found);
    }

    fn tabbed() -> Vec<u8> {
        xlsx(|book| {
            for (name, hidden) in [("Lookups", true), ("Master", false), ("Q1 pipeline", false)] {
                let sheet = book.add_worksheet();
                sheet.set_name(name).unwrap();
                sheet.write_string(0, 0, name).unwrap();
                if hidden {
                    sheet.set_hidden(true);
                } else if name == "Master" {
                    // A writer will not hide the active tab, the first by default.
                    sheet.set_active(true);
                }
            }
        })
    }

    #[test]
    fn tabs_are_chosen_as_for_google_sheets_skipping_hidden_ones_by_default() {
        let bytes = tabbed();
        let first = |sheet_name| read(&bytes, sheet_name)[0].cells[0].clone();
        assert_eq!(first(None), Cell::text("Master"), "the first visible tab");
        assert_eq!(first(Some("Q1 pipeline")), Cell::text("Q1 pipeline"));
        assert_eq!(first(Some(" q1 PIPELINE ")), Cell::text("Q1 pipeline"));
        assert_eq!(
            first(Some("Lookups")),
            Cell::text("Lookups"),
            "a hidden tab named is read"
        );
        let error = read_as(&bytes, "deals.xlsx", Some("Q2"), LIMITS).unwrap_err();
        assert_eq!(
            error.to_string(),
            "file:///exports/deals.xlsx has no tab \"Q2\"; its tabs are \"Lookups\" (hidden), \"Master\", \
             \"Q1 pipeline\": set sheet_name to one of them"
        );
        let tabs = source("deals.xlsx", Some("master"), LIMITS)
            .tabs(&mut Cursor::new(&bytes))
            .unwrap()
            .unwrap();
        assert_eq!((tabs.format, tabs.chosen.as_str()), (WorkbookFormat::Xlsx, "Master"));
    }

    #[test]
    fn the_content_decides_the_format_and_a_lying_name_is_refused() {
        let bytes = tabbed();
        assert_eq!(read_as(&bytes, "export.csv", None, LIMITS).unwrap().len(), 1);
        let text = b"Client,Stage\nAcme,Lost\n";
        let mut cursor = Cursor::new(&text[..]);
        assert!(
            source("deals.csv", None, LIMITS)
                .read_if_workbook(&mut cursor)
                .unwrap()
                .is_none()
        );
        assert_eq!(cursor.position(), 0, "rewound for the CSV reader");
        let error = read_as(text, "deals.xlsx", None, LIMITS).unwrap_err();
        assert!(
            matches!(error, WorkbookError::NotAWorkbook { claimed: "xlsx", .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("is named as a .xlsx workbook but holds text"),
            "{error}"
        );
        let mut archive = zip::ZipWriter::new(Cursor::new(Vec::new()));
        archive
            .start_file("readme.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        archive.write_all(b"not a workbook").unwrap();
        let plain_zip = archive.finish().unwrap().into_inner();
        let error = read_as(&plain_zip, "deals.xlsx", None, LIMITS).unwrap_err();
        assert!(
            error.to_string().contains("a zip archive with no workbook in it"),
            "{error}"
        );
    }

    #[test]
    fn a_truncated_workbook_is_damaged() {
        let bytes = tabbed();
        let error = read_as(&bytes[..bytes.len() / 2], "deals.xlsx", None, LIMITS).unwrap_err();
        assert!(
            matches!(error, WorkbookError::Damaged { format: "xlsx", .. }),
            "{error}"
        );
        assert!(error.to_string().contains("may be truncated or damaged"), "{error}");
    }

    /// A zip of `parts` parts of `size` spaces each, under xlsx names.
    fn bomb(parts: usize, size: usize) -> Vec<u8> {
        let bytes = tabbed();
        let mut archive = zip::ZipArchive::new(Cursor::new(&bytes)).unwrap();
        let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for index in 0..archive.len() {
            let part = archive.by_index_raw(index).unwrap();
            out.raw_copy_file(part).unwrap();
        }
        let padding = vec![b' '; size];
        for part in 0..parts {
            out.start_file(
                format!("xl/padding{part}.xml"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            out.write_all(&padding).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn an_archive_past_a_cap_is_refused_naming_the_setting() {
        let part = bomb(1, 4 * 1024 * 1024);
        assert!(part.len() < 64 * 1024, "a small file: {} bytes", part.len());
        let (total, many) = (bomb(4, 1024 * 1024), bomb(20, 10));
        let cases = [
            (
                &part,
                WorkbookLimits {
                    max_part_bytes: 1024 * 1024,
                    ..LIMITS
                },
                "has a part that inflates past [sources] max_workbook_part_bytes (1048576)",
            ),
            (
                &total,
                WorkbookLimits {
                    max_unpacked_bytes: 3 * 1024 * 1024,
                    ..LIMITS
                },
                "inflates past [sources] max_workbook_unpacked_bytes",
            ),
            (
                &many,
                WorkbookLimits {
                    max_parts: 20,
                    ..LIMITS
                },
                "has more parts than [sources] max_workbook_parts (20)",
            ),
            (
                &many,
                WorkbookLimits {
                    max_bytes: 100,
                    ..LIMITS
                },
                "is larger than [sources] max_download_bytes (100)",
            ),
        ];
        for (archive, limits, expected) in cases {
            let error = read_as(archive, "deals.xlsx", None, limits).unwrap_err();
            assert!(error.to_string().contains(expected), "{expected:?} not in {error}");
        }
    }

    #[test]
    fn a_password_protected_workbook_says_so() {
        let error = read_as(&encrypted_workbook(), "deals.xlsx", None, LIMITS).unwrap_err();
        assert!(matches!(error, WorkbookError::Encrypted { .. }), "{error}");
        assert!(
            error.to_string().contains("is a password-protected workbook"),
            "{error}"
        );
    }

    #[test]
    fn an_ods_of_the_same_sheet_reads_the_same_cells() {
        let ods = ods_archive(
            r#"<table:table-row>
                 <table:table-cell office:value-type="date" office:date-value="2025-01-10"><text:p>10/01/2025</text:p></table:table-cell>
                 <table:table-cell office:value-type="date" office:date-value="2025-01-10T16:30:00"><text:p>10/01/2025 16:30</text:p></table:table-cell>
                 <table:table-cell office:value-type="currency" office:currency="EUR" office:value="1234.5"><text:p>1 234,50 €</text:p></table:table-cell>
                 <table:table-cell office:value-type="percentage" office:value="0.125"><text:p>12,5 %</text:p></table:table-cell>
                 <table:table-cell office:value-type="string"><text:p>Acme</text:p></table:table-cell>
                 <table:table-cell office:value-type="time" office:time-value="PT18H00M00S"><text:p>18:00</text:p></table:table-cell>
               </table:table-row>"#,
        );
        let rows = read_as(&ods, "deals.ods", None, LIMITS).unwrap();
        let date = Format::new().set_num_format("dd/mm/yyyy");
        let moment = Format::new().set_num_format("dd/mm/yyyy hh:mm");
        let xlsx = xlsx(|book| {
            let sheet = book.add_worksheet();
            sheet.write_number_with_format(0, 0, JAN_10, &date).unwrap();
            sheet.write_number_with_format(0, 1, JAN_10 + 0.6875, &moment).unwrap();
            sheet.write_number(0, 2, 1234.5).unwrap();
            sheet.write_number(0, 3, 0.125).unwrap();
            sheet.write_string(0, 4, "Acme").unwrap();
            let time = Format::new().set_num_format("hh:mm");
            sheet.write_number_with_format(0, 5, 0.75, &time).unwrap();
        });
        assert_eq!(rows, read(&xlsx, None));
        assert_eq!(rows[0].cells[5], Cell::Number(0.75));
        assert_eq!(rows[0].cells[0], Cell::Number(JAN_10));
    }
}
