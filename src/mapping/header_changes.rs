//! What changed in a source's header since the sync's last successful run,
//! told to the person who edits the sheet: a new column no field takes is
//! news (a warning, until it is mapped or ignored); a field now read from
//! another column, or a column gone without loss, is a notice. (A column
//! whose loss would empty stored data is the column guard's, in `apply`.)

use super::profile::TargetProfile;
use super::record::{HeaderColumn, RowIssue};
use super::values::{CLOSE_ENOUGH, fold_label, similarity};

/// The warnings (each on the header row) and notices of `header` against
/// `previous`; labels in `ignore` (as people spell them) are silent. Without
/// a previous header (a first run) there is nothing to compare.
pub fn header_changes(
    profile: &TargetProfile,
    header_row: usize,
    header: &[HeaderColumn],
    previous: Option<&[HeaderColumn]>,
    ignore: &[String],
) -> (Vec<RowIssue>, Vec<String>) {
    let Some(previous) = previous else {
        return (Vec::new(), Vec::new());
    };
    let ignored: Vec<String> = ignore.iter().map(|label| fold_label(label)).collect();
    let was_there = |label: &str| previous.iter().any(|column| column.label == label);
    let mapped = |field: &str| header.iter().any(|column| column.field.as_deref() == Some(field));
    let warnings = header
        .iter()
        .enumerate()
        .filter(|(_, column)| column.field.is_none() && !was_there(&column.label))
        .filter(|(_, column)| !ignored.contains(&fold_label(&column.label)))
        .map(|(position, column)| {
            // Standing where a field's column stood, which no column feeds
            // now: most likely that column renamed.
            let replaced = previous
                .get(position)
                .and_then(|old| old.field.as_deref())
                .filter(|field| !mapped(field));
            RowIssue {
                row: header_row,
                column: Some(column.label.clone()),
                value: None,
                reason: new_column_reason(profile, &column.label, replaced),
            }
        })
        .collect();
    let mut notices = Vec::new();
    for old in previous {
        let Some(field) = &old.field else { continue };
        if header.iter().any(|column| column.label == old.label) {
            continue;
        }
        match header.iter().find(|column| column.field.as_ref() == Some(field)) {
            Some(now) => notices.push(format!(
                "field {field} is now read from column `{}` (was `{}`)",
                now.label, old.label
            )),
            None => notices.push(format!("column `{}` ({field}) is gone from the header", old.label)),
        }
    }
    (warnings, notices)
}

/// The field whose name or alias is spelled most like `label`, when one is
/// close at all.
pub fn closest_field<'p>(profile: &'p TargetProfile, label: &str) -> Option<&'p str> {
    profile
        .fields
        .iter()
        .flat_map(|field| {
            std::iter::once(&field.name)
                .chain(&field.aliases)
                .map(move |name| (similarity(label, name), field))
        })
        .filter(|(score, _)| *score >= CLOSE_ENOUGH)
        .max_by(|left, right| left.0.total_cmp(&right.0))
        .map(|(_, field)| field.name.as_str())
}

/// Why a new label is news, with the field it most likely is (`replaced`,
/// else the one spelled most alike).
fn new_column_reason(profile: &TargetProfile, label: &str, replaced: Option<&str>) -> String {
    let hint = match replaced.or_else(|| closest_field(profile, label)) {
        Some(field) => format!(" (closest field: {field})"),
        None => String::new(),
    };
    format!(
        "new column maps to no field{hint}, so its values are not imported; add its label to a field's aliases, or \
         to ignore_columns if it is not meant to be"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::sales::SALES_RECORDS;

    #[test]
    fn only_new_unmapped_labels_are_news() {
        let previous = HeaderColumn::list(&[
            ("Client", Some("client")),
            ("Notes", None),
            ("MRR", Some("expected_mrr")),
        ]);
        let now = HeaderColumn::list(&[
            ("Client", Some("client")),
            ("Notes", None),
            ("Expected MRR", Some("expected_mrr")),
            ("Exp ARR", None),
            ("Internal", None),
        ]);
        let ignore = ["internal".to_owned()];
        let (warnings, notices) = header_changes(&SALES_RECORDS, 1, &now, Some(&previous), &ignore);
        let labels: Vec<_> = warnings.iter().map(|warning| warning.column.as_deref()).collect();
        assert_eq!(labels, [Some("Exp ARR")], "Notes was there, Internal is ignored");
        assert!(
            warnings[0].reason.contains("closest field: expected_arr"),
            "{}",
            warnings[0].reason
        );
        assert_eq!(
            notices,
            ["field expected_mrr is now read from column `Expected MRR` (was `MRR`)"]
        );
        assert_eq!(
            header_changes(&SALES_RECORDS, 1, &now, None, &ignore),
            (Vec::new(), Vec::new())
        );
    }

    #[test]
    fn a_new_label_where_a_lost_column_stood_is_that_column() {
        let previous = HeaderColumn::list(&[("Client", Some("client")), ("Expected MRR", Some("expected_mrr"))]);
        let now = HeaderColumn::list(&[("Client", Some("client")), ("Monthly value", None)]);
        let (warnings, _) = header_changes(&SALES_RECORDS, 1, &now, Some(&previous), &[]);
        assert!(
            warnings[0].reason.contains("closest field: expected_mrr"),
            "{}",
            warnings[0].reason
        );
    }
}
