//! Finding the header row and which column feeds which field; telling the
//! sheet's editor about values no header names.

use std::collections::HashMap;

use super::error::{MappingError, SurveyError};
use super::profile::TargetProfile;
use super::record::{HeaderColumn, RowIssue};
use super::values::fold_label;
use crate::source::SourceRows;
use crate::source::table::{Cell, Row};

/// A missing-header error quotes at most this many cells of the candidate
/// row, each at most [`QUOTED_CELL_CHARS`] characters.
pub(super) const QUOTED_HEADER_CELLS: usize = 30;
pub(super) const QUOTED_CELL_CHARS: usize = 24;

/// `text` cut to [`QUOTED_CELL_CHARS`] characters, with `…` when cut.
pub(super) fn shortened(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CELL_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// How many leading rows may hold a title or notes above the header.
pub(super) const HEADER_SEARCH_ROWS: usize = 10;

/// The header row, among the first rows of the source.
pub(super) fn find_header(
    profile: &TargetProfile,
    labels: &FieldLabels,
    source: &SourceRows,
) -> Result<Row, SurveyError> {
    let mut rows = source.rows()?;
    let mut leading = Vec::with_capacity(HEADER_SEARCH_ROWS);
    while leading.len() < HEADER_SEARCH_ROWS {
        match rows.next_row() {
            Some(row) => leading.push(row?.clone()),
            None => break,
        }
    }
    let index = locate_header(profile, labels, &leading)?;
    Ok(leading.swap_remove(index))
}

/// Folded header labels that select each field.
pub(super) struct FieldLabels {
    pub(super) by_label: HashMap<String, usize>,
}

impl FieldLabels {
    pub(super) fn new(profile: &TargetProfile) -> Self {
        let mut by_label = HashMap::new();
        for (index, field) in profile.fields.iter().enumerate() {
            for label in std::iter::once(&field.name).chain(&field.aliases) {
                by_label.entry(fold_label(label)).or_insert(index);
            }
        }
        FieldLabels { by_label }
    }

    pub(super) fn field_of(&self, header: &Cell) -> Option<usize> {
        self.by_label.get(&fold_label(&header.display())).copied()
    }
}

/// The header is the row, among the first few, that names the most required
/// fields and then the most fields; title lines and notes above it name none.
pub(super) fn locate_header(
    profile: &TargetProfile,
    labels: &FieldLabels,
    leading: &[Row],
) -> Result<usize, MappingError> {
    let candidates = leading.iter().enumerate();
    let score = |row: &Row| {
        let fields: Vec<usize> = row.cells.iter().filter_map(|cell| labels.field_of(cell)).collect();
        let required = fields.iter().filter(|&&index| profile.fields[index].required).count();
        (required, fields.len())
    };
    let (best, best_score) = candidates
        .map(|(index, row)| (index, score(row)))
        .max_by_key(|&(index, score)| (score, std::cmp::Reverse(index)))
        .ok_or(MappingError::EmptySource)?;
    let required_total = profile.fields.iter().filter(|field| field.required).count();
    if best_score.0 == required_total {
        return Ok(best);
    }
    let row = &leading[best];
    let present: Vec<usize> = row.cells.iter().filter_map(|cell| labels.field_of(cell)).collect();
    let missing: Vec<&str> = profile
        .fields
        .iter()
        .enumerate()
        .filter(|(index, field)| field.required && !present.contains(index))
        .map(|(_, field)| field.name.as_str())
        .collect();
    // The error is stored and shown: it quotes header cells only, each cut
    // short, so a wrong source (a file that is not an export) never has its
    // content copied into reports.
    let mut found: Vec<String> = row
        .cells
        .iter()
        .filter(|cell| !cell.is_empty())
        .take(QUOTED_HEADER_CELLS)
        .map(|cell| format!("{:?}", shortened(&cell.display())))
        .collect();
    if row.cells.iter().filter(|cell| !cell.is_empty()).count() > QUOTED_HEADER_CELLS {
        found.push("…".to_owned());
    }
    Err(MappingError::MissingRequiredColumns {
        row: row.number,
        missing: missing.join(", "),
        found: found.join(", "),
    })
}

/// Which column feeds which field.
#[derive(Debug)]
pub(super) struct Columns {
    /// `(field index, column index, header as written)`.
    pub(super) assigned: Vec<(usize, usize, String)>,
    /// Per field, its entry in `assigned`: looked up for every cell.
    by_field: Vec<Option<usize>>,
    pub(super) unknown: Vec<String>,
    /// Every labelled column, in order, with the field it feeds.
    pub(super) header: Vec<HeaderColumn>,
    /// Columns whose header cell is empty.
    pub(super) unlabelled: Vec<usize>,
    pub(super) warnings: Vec<RowIssue>,
    pub(super) header_width: usize,
}

impl Columns {
    pub(super) fn of_field(&self, field: usize) -> Option<(usize, &str)> {
        let entry = self.by_field.get(field).copied().flatten()?;
        self.assigned
            .get(entry)
            .map(|(_, column, header)| (*column, header.as_str()))
    }
}

pub(super) fn resolve_columns(profile: &TargetProfile, labels: &FieldLabels, header: &Row) -> Columns {
    let mut columns = Columns {
        assigned: Vec::new(),
        by_field: vec![None; profile.fields.len()],
        unknown: Vec::new(),
        header: Vec::new(),
        unlabelled: Vec::new(),
        warnings: Vec::new(),
        header_width: header.cells.len(),
    };
    for (column, cell) in header.cells.iter().enumerate() {
        let written = cell.display().trim().to_owned();
        if written.is_empty() {
            columns.unlabelled.push(column);
            continue;
        }
        let mut feeds = None;
        match labels.field_of(cell) {
            Some(field) => match columns.of_field(field) {
                Some((_, first)) => columns.warnings.push(RowIssue {
                    row: header.number,
                    column: Some(written.clone()),
                    value: None,
                    reason: format!(
                        "column also maps to field `{}`, already read from column {first:?}; this one is ignored",
                        profile.fields[field].name
                    ),
                }),
                None => {
                    if let Some(slot) = columns.by_field.get_mut(field) {
                        *slot = Some(columns.assigned.len());
                    }
                    feeds = Some(profile.fields[field].name.clone());
                    columns.assigned.push((field, column, written.clone()));
                }
            },
            None => columns.unknown.push(written.clone()),
        }
        columns.header.push(HeaderColumn {
            label: written,
            field: feeds,
        });
    }
    columns
}

/// Values no column header names are not imported; the person editing the
/// source is told, row by row, so that a forgotten header is noticed.
pub(super) fn warn_about_ignored_values(columns: &Columns, row: &Row, warnings: &mut Vec<RowIssue>) {
    let has_value = |column: &usize| row.cells.get(*column).is_some_and(|cell| !cell.is_empty());
    let unlabelled: Vec<String> = columns
        .unlabelled
        .iter()
        .filter(|column| has_value(column))
        .map(|&column| column_letters(column))
        .collect();
    if !unlabelled.is_empty() {
        warnings.push(RowIssue {
            row: row.number,
            column: Some(unlabelled.join(", ")),
            value: None,
            reason: format!(
                "value(s) under column(s) {} were ignored: the header row leaves them unnamed; name the column or \
                 clear it",
                unlabelled.join(", ")
            ),
        });
    }
    let extra = row
        .cells
        .iter()
        .skip(columns.header_width)
        .filter(|cell| !cell.is_empty())
        .count();
    if extra > 0 {
        warnings.push(RowIssue {
            row: row.number,
            column: None,
            value: None,
            reason: format!(
                "{extra} value(s) beyond the header's {} columns were ignored",
                columns.header_width
            ),
        });
    }
}

/// A column's spreadsheet letters: 0 is `A`, 25 `Z`, 26 `AA`.
pub(super) fn column_letters(column: usize) -> String {
    let mut letters = Vec::new();
    let mut rest = column + 1;
    while rest > 0 {
        let digit = (rest - 1) % 26;
        // `digit` < 26, so the letter is ASCII.
        letters.push(char::from(b'A' + digit as u8));
        rest = (rest - 1) / 26;
    }
    letters.iter().rev().collect()
}
