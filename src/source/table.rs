//! The shape every source delivers: rows of cells with their row numbers.
//!
//! Sources do not decide which row is the header: a CSV export may carry a
//! title line above it, and only the mapping knows which labels it expects.

use chrono_tz::Tz;

/// One cell as the source delivered it. CSV only knows text; the Sheets API
/// sends typed JSON values (numbers, booleans), which keep their type so that
/// amounts and date serials need no locale guessing.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Number(f64),
    Bool(bool),
    /// Text that is also a hyperlink elsewhere (a workbook cell showing
    /// "Acme deal" that links to the CRM): the mapping reads the target for
    /// the target's identity link field (`hubspot_link`), the text for the
    /// others.
    Link {
        text: String,
        target: String,
    },
    /// A cell the source holds but cannot give a value for; reading it is a
    /// row problem with the fault's reason, never a silent empty.
    Fault(CellFault),
}

/// Why a workbook cell has no value to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellFault {
    /// A formula saved without its result (written by a program that does
    /// not calculate, and never opened in a spreadsheet application since).
    FormulaWithoutValue,
    /// Excel's 1900-02-29, a day its 1900 date system counts but that never
    /// existed.
    NonexistentDate,
}

impl CellFault {
    pub const ALL: [CellFault; 2] = [CellFault::FormulaWithoutValue, CellFault::NonexistentDate];

    pub fn reason(self) -> &'static str {
        match self {
            CellFault::FormulaWithoutValue => {
                "a formula with no saved result; open the workbook in a spreadsheet application and save it, so \
                 that its results are stored"
            }
            CellFault::NonexistentDate => {
                "1900-02-29, a date Excel's 1900 date system counts but that never existed; correct the cell"
            }
        }
    }

    /// A stable code, for the spool and digests.
    pub fn code(self) -> u8 {
        match self {
            CellFault::FormulaWithoutValue => 1,
            CellFault::NonexistentDate => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<CellFault> {
        CellFault::ALL.into_iter().find(|fault| fault.code() == code)
    }
}

impl Cell {
    /// A text cell, or `Empty` when the text is only whitespace.
    pub fn text(value: &str) -> Cell {
        if value.trim().is_empty() {
            Cell::Empty
        } else {
            Cell::Text(value.to_owned())
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Cell::Empty)
    }

    /// The cell as it would read in a report.
    pub fn display(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(text) => text.clone(),
            Cell::Number(number) => number.to_string(),
            Cell::Bool(flag) => flag.to_string(),
            Cell::Link { text, .. } => text.clone(),
            Cell::Fault(CellFault::FormulaWithoutValue) => "(formula without a saved result)".to_owned(),
            Cell::Fault(CellFault::NonexistentDate) => "1900-02-29".to_owned(),
        }
    }
}

/// One row, numbered as the person editing the source would count it
/// (the line in a CSV file, the row in a spreadsheet), so that a report can
/// send them straight to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub number: usize,
    pub cells: Vec<Cell>,
}

/// The non-blank rows of one source, header included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub rows: Vec<Row>,
    /// Rows skipped because every cell was empty.
    pub blank_rows: usize,
    /// The zone in which numeric date cells (spreadsheet serials) are read;
    /// `None` for sources that only deliver text.
    pub serial_time_zone: Option<Tz>,
    /// The Google Sheets tab the rows come from (its `gid`), for links to
    /// rows; `None` for other sources.
    pub tab_gid: Option<i64>,
}

impl Table {
    /// Appends a row unless every cell is empty, in which case it is counted
    /// as blank.
    pub fn push_row(&mut self, number: usize, cells: Vec<Cell>) {
        if cells.iter().all(Cell::is_empty) {
            self.blank_rows += 1;
        } else {
            self.rows.push(Row { number, cells });
        }
    }
}
