//! Finding the header row and which column feeds which field; telling the
//! sheet's editor about values no header names.

use std::collections::HashMap;

use super::error::{MappingError, SurveyError};
use super::profile::TargetProfile;
use super::record::{HeaderColumn, RowIssue};
use super::values::fold_label;
use super::values::labels::{label_words, without_hint};
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

/// The header labels that select each field: its name and aliases, folded
/// (case, accents, punctuation and spacing), and as their words (any order,
/// without little words, abbreviations read).
pub(super) struct FieldLabels {
    /// Folded label -> (field, whether it is the field's own name).
    by_label: HashMap<String, (usize, bool)>,
    by_words: HashMap<String, Vec<usize>>,
}

/// What a header label names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LabelMatch {
    /// The field, and how closely: 0 its own name, 1 an alias as spelled,
    /// 2 by words; 3 to 5 the same without a trailing hint. When several
    /// columns name one field, the closest feeds it.
    Field(usize, u8),
    /// Several fields, equally well: never a guess.
    Ambiguous(Vec<usize>),
    Nothing,
}

impl FieldLabels {
    pub(super) fn new(profile: &TargetProfile) -> Self {
        let mut by_label = HashMap::new();
        let mut by_words: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, field) in profile.fields.iter().enumerate() {
            for (position, label) in std::iter::once(&field.name).chain(&field.aliases).enumerate() {
                by_label.entry(fold_label(label)).or_insert((index, position == 0));
                let fields = by_words.entry(label_words(label)).or_default();
                if !fields.contains(&index) {
                    fields.push(index);
                }
            }
        }
        by_words.remove("");
        FieldLabels { by_label, by_words }
    }

    /// The field `header` names: spelled as a label (folded), else by its
    /// words; then the same without a trailing hint (`(€)`, `- EUR`).
    pub(super) fn field_of(&self, header: &Cell) -> LabelMatch {
        let written = header.display();
        for (hinted, label) in std::iter::once(written.as_str())
            .chain(without_hint(&written))
            .enumerate()
        {
            let base = if hinted == 0 { 0 } else { 3 };
            if let Some((index, is_name)) = self.by_label.get(&fold_label(label)) {
                return LabelMatch::Field(*index, base + u8::from(!is_name));
            }
            match self.by_words.get(&label_words(label)).map(Vec::as_slice) {
                Some([index]) => return LabelMatch::Field(*index, base + 2),
                Some(several @ [_, _, ..]) => return LabelMatch::Ambiguous(several.to_vec()),
                _ => {}
            }
        }
        LabelMatch::Nothing
    }

    /// [`FieldLabels::field_of`], when it names exactly one field.
    fn one_field_of(&self, header: &Cell) -> Option<usize> {
        match self.field_of(header) {
            LabelMatch::Field(index, _) => Some(index),
            _ => None,
        }
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
        let fields: Vec<usize> = row.cells.iter().filter_map(|cell| labels.one_field_of(cell)).collect();
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
    let present: Vec<usize> = row.cells.iter().filter_map(|cell| labels.one_field_of(cell)).collect();
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

/// A labelled column: its index, its label, and the field it names with
/// how closely (see [`LabelMatch::Field`]).
type NamedColumn = (usize, String, Option<(usize, u8)>);

pub(super) fn resolve_columns(
    profile: &TargetProfile,
    labels: &FieldLabels,
    header: &Row,
) -> Result<Columns, MappingError> {
    let mut columns = Columns {
        assigned: Vec::new(),
        by_field: vec![None; profile.fields.len()],
        unknown: Vec::new(),
        header: Vec::new(),
        unlabelled: Vec::new(),
        warnings: Vec::new(),
        header_width: header.cells.len(),
    };
    // What each labelled column names, and how closely.
    let mut named: Vec<NamedColumn> = Vec::new();
    for (column, cell) in header.cells.iter().enumerate() {
        let written = cell.display().trim().to_owned();
        if written.is_empty() {
            columns.unlabelled.push(column);
            continue;
        }
        let field = match labels.field_of(cell) {
            LabelMatch::Field(field, rank) => Some((field, rank)),
            LabelMatch::Ambiguous(fields) => {
                let names: Vec<String> = fields
                    .iter()
                    .map(|field| format!("`{}`", profile.fields[*field].name))
                    .collect();
                return Err(MappingError::AmbiguousColumn {
                    row: header.number,
                    label: shortened(&written),
                    fields: names.join(" and "),
                });
            }
            LabelMatch::Nothing => None,
        };
        named.push((column, written, field));
    }
    // A field is fed by its closest column (its own name before an alias,
    // an alias before a word match), the leftmost among equals: a column
    // that only resembles the field never takes it from one named for it.
    let feeder = |field: usize| {
        named
            .iter()
            .filter_map(|(column, _, named)| {
                named
                    .filter(|(named, _)| *named == field)
                    .map(|(_, rank)| (rank, *column))
            })
            .min()
            .map(|(_, column)| column)
    };
    for (column, written, field) in named.iter().cloned() {
        let mut feeds = None;
        match field {
            Some((field, _)) if feeder(field) == Some(column) => {
                if let Some(slot) = columns.by_field.get_mut(field) {
                    *slot = Some(columns.assigned.len());
                }
                feeds = Some(profile.fields[field].name.clone());
                columns.assigned.push((field, column, written.clone()));
            }
            Some((field, _)) => {
                let chosen = feeder(field)
                    .and_then(|chosen| header.cells.get(chosen))
                    .map(Cell::display);
                columns.warnings.push(RowIssue {
                    row: header.number,
                    column: Some(written.clone()),
                    value: None,
                    reason: format!(
                        "column also maps to field `{}`, which is read from column {:?}; this one is ignored",
                        profile.fields[field].name,
                        chosen.unwrap_or_default().trim()
                    ),
                });
            }
            None => columns.unknown.push(written.clone()),
        }
        columns.header.push(HeaderColumn {
            label: written,
            field: feeds,
        });
    }
    Ok(columns)
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use std::sync::Arc;

    use crate::mapping::declare::Targets;

    /// Header spellings from real exports (HubSpot, Pipedrive, Salesforce
    /// reports, Excel in French, German and Spanish, hand-made sheets), each
    /// with the field it must feed; `None`: it must feed nothing.
    const SALES: &[(&str, Option<&str>)] = &[
        ("Client", Some("client")),
        ("Company name", Some("client")),
        ("Associated Company", Some("client")),
        ("Account Name", Some("client")),
        ("Nom du client", Some("client")),
        ("Société", Some("client")),
        ("Empresa", Some("client")),
        ("Stage", Some("stage")),
        ("Stage (HubSpot)", Some("stage")),
        ("Deal Stage", Some("stage")),
        ("Pipeline stage", Some("stage")),
        ("Étape", Some("stage")),
        ("Etapa", Some("stage")),
        ("Discovery Date", Some("discovery_date")),
        ("Discovery date (dd/mm/yyyy)", Some("discovery_date")),
        ("Date of discovery", Some("discovery_date")),
        ("Date de découverte", Some("discovery_date")),
        ("Create Date", Some("discovery_date")),
        ("Fecha de descubrimiento", Some("discovery_date")),
        ("Expected MRR", Some("expected_mrr")),
        ("Expected MRR (€)", Some("expected_mrr")),
        ("Exp. MRR", Some("expected_mrr")),
        ("MRR attendu", Some("expected_mrr")),
        ("Monthly recurring revenue", Some("expected_mrr")),
        ("Expected ARR", Some("expected_arr")),
        ("Exp. ARR", Some("expected_arr")),
        ("ARR - EUR", Some("expected_arr")),
        ("Annual Recurring Revenue", Some("expected_arr")),
        ("Amount", Some("pipeline")),
        ("Deal amount", Some("pipeline")),
        ("Montant", Some("pipeline")),
        ("Deal owner", Some("owner")),
        ("Opportunity Owner", Some("owner")),
        ("AE", Some("owner")),
        ("Owner (AE)", Some("owner")),
        ("Propriétaire", Some("owner")),
        ("SDR", Some("bdr")),
        ("BDR", Some("bdr")),
        ("Sales development rep", Some("bdr")),
        ("Lead source", Some("type_of_source")),
        ("Original Source", Some("type_of_source")),
        ("Type of source", Some("type_of_source")),
        ("Type de source", Some("type_of_source")),
        ("Deal type", Some("type_of_deal")),
        ("Type of deal", Some("type_of_deal")),
        ("Type d'affaire", Some("type_of_deal")),
        ("Opportunity Type", Some("type_of_deal")),
        ("Show / No Show", Some("show_noshow")),
        ("No-show", Some("show_noshow")),
        ("POA Date", Some("poa_date")),
        ("Date du POA", Some("poa_date")),
        ("Billing Start", Some("billing_start")),
        ("Début facturation", Some("billing_start")),
        ("First invoice date", Some("billing_start")),
        ("HubSpot Link", Some("hubspot_link")),
        ("Deal URL", Some("hubspot_link")),
        ("Product", Some("product")),
        ("Produit", Some("product")),
        ("Mois", Some("month")),
        ("Relevance", Some("relevance")),
        ("Pertinence", Some("relevance")),
        ("Supporters", Some("supporters")),
        ("Notes", None),
        ("Comments", None),
        ("Next step", None),
        ("Last contacted", None),
        ("(€)", None),
    ];

    const CUSTOMERS: &[(&str, Option<&str>)] = &[
        ("Company", Some("company_name")),
        ("Customer name", Some("company_name")),
        ("Raison sociale", Some("company_name")),
        ("Score santé", Some("health_score")),
        ("Score de santé", Some("health_score")),
        ("Health score (0-100)", Some("health_score")),
        ("Health", Some("health_status")),
        ("État de santé", Some("health_status")),
        ("ARR (€)", Some("arr")),
        ("Annual recurring revenue", Some("arr")),
        ("Setup fee", Some("one_time_setup_cost")),
        ("Renewal date", Some("renewal_date")),
        ("Date de renouvellement", Some("renewal_date")),
        ("Go-live", Some("go_live_date")),
        ("CSM", Some("csm_owner_name")),
        ("Customer Success Manager", Some("csm_owner_name")),
        ("Account manager", Some("am_owner_name")),
        ("Active users", Some("active_users")),
        ("Utilisateurs actifs", Some("active_users")),
        ("Licensed users", Some("total_licensed_users")),
        ("Nombre de licences", Some("total_licensed_users")),
        ("Tags", Some("tags")),
        ("Étiquettes", Some("tags")),
        ("Account status", Some("account_status")),
        ("Statut du compte", Some("account_status")),
        ("NPS", None),
    ];

    fn profile(name: &str) -> Arc<TargetProfile> {
        Targets::built_in().get(name).expect("a built-in profile")
    }

    fn field_of(profile: &TargetProfile, label: &str) -> Option<String> {
        match FieldLabels::new(profile).field_of(&Cell::text(label)) {
            LabelMatch::Field(index, _) => Some(profile.fields[index].name.clone()),
            LabelMatch::Ambiguous(fields) => panic!("{label:?} is ambiguous: {fields:?}"),
            LabelMatch::Nothing => None,
        }
    }

    #[test]
    fn headers_as_people_write_them() {
        assert!(SALES.len() + CUSTOMERS.len() >= 60);
        for (name, table) in [("sales_records", SALES), ("customers", CUSTOMERS)] {
            let profile = profile(name);
            let wrong: Vec<String> = table
                .iter()
                .filter(|(label, field)| field_of(&profile, label).as_deref() != *field)
                .map(|(label, field)| format!("{label:?} -> {:?}, expected {field:?}", field_of(&profile, label)))
                .collect();
            assert!(wrong.is_empty(), "{name}: {wrong:#?}");
        }
    }

    #[test]
    fn no_two_fields_of_a_built_in_profile_share_a_label() {
        for name in ["sales_records", "customers"] {
            let labels = FieldLabels::new(&profile(name));
            let shared: Vec<_> = labels.by_words.iter().filter(|(_, fields)| fields.len() > 1).collect();
            assert!(shared.is_empty(), "{name}: {shared:?}");
        }
    }

    #[test]
    fn a_label_two_fields_read_alike_is_an_error_naming_both() {
        let mut profile = (*profile("sales_records")).clone();
        profile.fields[0].aliases.push("deal value".to_owned());
        let header = Row {
            number: 1,
            cells: vec![Cell::text("Client"), Cell::text("Stage"), Cell::text("Value of deal")],
        };
        let labels = FieldLabels::new(&profile);
        let error = resolve_columns(&profile, &labels, &header).unwrap_err().to_string();
        assert!(
            error.contains("\"Value of deal\"") && error.contains("`month` and `pipeline`"),
            "{error}"
        );
    }

    #[test]
    fn a_column_named_for_a_field_feeds_it_before_one_that_resembles_it() {
        let profile = profile("sales_records");
        let labels = FieldLabels::new(&profile);
        let header = Row {
            number: 1,
            cells: ["Client", "Stage", "Amount", "Pipeline", "Deal owner", "Owner"]
                .map(Cell::text)
                .to_vec(),
        };
        let columns = resolve_columns(&profile, &labels, &header).unwrap();
        let feeds = |label: &str| {
            columns
                .header
                .iter()
                .find(|column| column.label == label)
                .and_then(|column| column.field.clone())
        };
        assert_eq!(feeds("Pipeline").as_deref(), Some("pipeline"));
        assert_eq!(feeds("Amount"), None);
        assert_eq!(feeds("Owner").as_deref(), Some("owner"));
        assert_eq!(feeds("Deal owner"), None);
        let ignored: Vec<_> = columns
            .warnings
            .iter()
            .filter_map(|warning| warning.column.as_deref())
            .collect();
        assert_eq!(ignored, ["Amount", "Deal owner"]);
        assert!(
            columns.warnings[0].reason.contains("read from column \"Pipeline\""),
            "{:?}",
            columns.warnings
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Reordered words, little words and a bracketed hint change nothing.
        #[test]
        fn word_order_little_words_and_hints_do_not_matter(
            pick in 0..SALES.len(),
            shuffle in any::<u64>(),
            filler in prop::sample::select(vec!["of", "the", "de", "du", "la", "der", "el"]),
            hint in prop::sample::select(vec!["", " (€)", " [EUR]", " - HubSpot", " (dd/mm/yyyy)"]),
        ) {
            let (label, field) = SALES[pick];
            prop_assume!(field.is_some() && !label.contains(['(', '[', '/', '-']));
            let profile = profile("sales_records");
            let mut words: Vec<&str> = label.split_whitespace().collect();
            let len = words.len();
            words.rotate_left((shuffle as usize) % len.max(1));
            words.insert((shuffle as usize / 7) % (len + 1), filler);
            let variant = format!("{}{hint}", words.join(" "));
            let found = field_of(&profile, &variant);
            prop_assert_eq!(found.as_deref(), field, "{:?} from {:?}", variant, label);
        }
    }
}
