//! The refusals both modes make before writing anything: a refresh that
//! would wipe or drastically shrink the data, drop too many of the source's
//! rows, or empty a field the stored records fill (a renamed, deleted or
//! emptied column) is far more often a broken sheet than a real change.
//! `--force` overrides them.

use serde::Deserialize;

use crate::mapping::profile::{FieldKind, TargetProfile};
use crate::mapping::values::{CLOSE_ENOUGH, similarity};
use crate::mapping::{HeaderColumn, MAX_FIELDS, Survey};
use crate::report::{ColumnProblem, ColumnProblemKind};

/// Why a refresh was refused.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "refusing to apply: {rejected} of the source's {rows} row(s) with data were rejected (see the report), more \
         than sync.max_rejected_ratio = {max_ratio}; fix the rows, or if this is intended run `sheetsync sync \
         --force --view NAME`"
    )]
    TooManyRejected {
        rejected: usize,
        rows: usize,
        max_ratio: f64,
    },
    #[error(
        "refusing to replace {existing} record(s) in `{collection}` with {new}: {why}; \
         if this is intended, run `sheetsync sync --force --view NAME`"
    )]
    Shrink {
        collection: String,
        existing: u64,
        new: usize,
        why: String,
    },
    #[error(
        "refusing to apply to `{collection}`: {problems}; nothing was written, the previous data stands. {unmapped}\
         Map the column again (rename it back, or add its label to the field's aliases), or run `sheetsync sync \
         --force --view NAME`, or set on_lost_column = \"keep\" (carry the stored values over) or \"clear\""
    )]
    Columns {
        collection: String,
        /// Each problem's sentence, joined.
        problems: String,
        /// The new header's unmapped labels, as a sentence (or nothing).
        unmapped: String,
    },
}

/// What a run does when a field the stored records fill loses its column
/// or is emptied (`[sync] on_lost_column`, per view and per `[[syncs]]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLostColumn {
    /// Refuse the refresh; the old data stands (the default).
    #[default]
    Fail,
    /// Apply, carrying the stored values of those fields over.
    Keep,
    /// Apply as the source says: the fields are cleared.
    Clear,
}

/// A field's losses count once at least this many stored records hold it.
const MIN_FILLED: u64 = 5;

/// Over the pairs of a new record and the stored record it continues
/// (replaces in a swap, merges into in a merge): how many pairs, and per
/// profile field how many of the stored and of the new records hold a
/// value. Rows added or deleted are in no pair, so they never count as a
/// column lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillCounts {
    pub pairs: u64,
    pub stored: Vec<u64>,
    pub new: Vec<u64>,
}

impl FillCounts {
    pub fn new(fields: usize) -> FillCounts {
        FillCounts {
            pairs: 0,
            stored: vec![0; fields],
            new: vec![0; fields],
        }
    }

    /// One pair, each side's fields as [`crate::mapping::filled_bits`].
    pub fn add(&mut self, stored: u128, new: u128) {
        self.pairs += 1;
        for field in 0..self.stored.len().min(MAX_FIELDS) {
            self.stored[field] += u64::from(stored >> field & 1 == 1);
            self.new[field] += u64::from(new >> field & 1 == 1);
        }
    }
}

/// What the stored records hold of each field, against what the refresh
/// brings.
pub struct ColumnEvidence<'a> {
    pub profile: &'a TargetProfile,
    /// The new header.
    pub header: &'a [HeaderColumn],
    /// The header of the last successful run, when there was one.
    pub previous: Option<&'a [HeaderColumn]>,
    /// The fields filled on each side of the pairs.
    pub counts: &'a FillCounts,
    /// Whether an emptied cell clears the stored value (not so in a merge
    /// with `blank = "keep"`: then only a lost column can lose anything).
    pub blanks_clear: bool,
}

/// The fields the refresh would lose: a field at least half of the stored
/// records fill (at least [`MIN_FILLED`]) that no column feeds any more is
/// *lost*; one whose filled count would fall by more than half is
/// *emptied*. (A field derived from another column, like a month, is fed
/// when that column is.)
pub fn column_problems(evidence: &ColumnEvidence<'_>) -> Vec<ColumnProblem> {
    let fed = |name: &str| {
        evidence
            .header
            .iter()
            .any(|column| column.field.as_deref() == Some(name))
    };
    // A field derived from another (a month from its date) is fed when
    // its own column or its source's is.
    let mapped = |field: &crate::mapping::profile::FieldSpec| {
        fed(&field.name) || matches!(&field.kind, FieldKind::Month { derive_from: Some(source) } if fed(source))
    };
    let mut problems = Vec::new();
    for (index, field) in evidence.profile.fields.iter().enumerate() {
        let stored = evidence.counts.stored.get(index).copied().unwrap_or(0);
        let new = evidence.counts.new.get(index).copied().unwrap_or(0);
        if stored < MIN_FILLED || new * 2 >= stored {
            continue;
        }
        let kind = if !mapped(field) && stored * 2 >= evidence.counts.pairs {
            ColumnProblemKind::Lost
        } else if mapped(field) && !evidence.blanks_clear {
            continue;
        } else {
            ColumnProblemKind::Emptied
        };
        let label = evidence.previous.and_then(|previous| {
            previous
                .iter()
                .find(|column| column.field.as_deref() == Some(field.name.as_str()))
                .map(|column| column.label.clone())
        });
        let maybe = match kind {
            ColumnProblemKind::Lost => closest_unmapped(evidence, &field.name, label.as_deref()),
            ColumnProblemKind::Emptied => None,
        };
        problems.push(ColumnProblem {
            field: field.name.clone(),
            label,
            kind,
            stored_filled: stored,
            new_filled: new,
            maybe,
            kept: false,
        });
    }
    problems
}

/// The unmapped label of the new header that is most likely the lost
/// field's column renamed: the one standing where the column stood in the
/// last successful run's header, else the one whose spelling is closest to
/// the field's name, aliases or old label (when close at all).
fn closest_unmapped(evidence: &ColumnEvidence<'_>, field: &str, old_label: Option<&str>) -> Option<String> {
    // A label the last run already had is a column of its own, not this
    // one renamed.
    let known = |label: &str| {
        evidence
            .previous
            .is_some_and(|previous| previous.iter().any(|old| old.label == label))
    };
    let unmapped = |column: &&HeaderColumn| column.field.is_none() && !known(&column.label);
    if let (Some(previous), Some(old_label)) = (evidence.previous, old_label) {
        let position = previous.iter().position(|column| column.label == old_label);
        if let Some(column) = position.and_then(|at| evidence.header.get(at)).filter(unmapped) {
            return Some(column.label.clone());
        }
    }
    let spec = evidence.profile.field(field)?;
    let names: Vec<&str> = std::iter::once(spec.name.as_str())
        .chain(spec.aliases.iter().map(String::as_str))
        .chain(old_label)
        .collect();
    evidence
        .header
        .iter()
        .filter(unmapped)
        .map(|column| {
            let score = names
                .iter()
                .map(|name| similarity(&column.label, name))
                .fold(0.0, f64::max);
            (score, column)
        })
        .filter(|(score, _)| *score >= CLOSE_ENOUGH)
        .max_by(|left, right| left.0.total_cmp(&right.0))
        .map(|(_, column)| column.label.clone())
}

/// The column guard: `Err` when `policy` is to fail (and `--force` was not
/// given); else the fields whose stored values the run keeps (`keep`).
pub fn check_columns(
    collection: &str,
    problems: &[ColumnProblem],
    header: &[HeaderColumn],
    policy: OnLostColumn,
    force: bool,
) -> Result<Vec<String>, GuardError> {
    if problems.is_empty() {
        return Ok(Vec::new());
    }
    match (policy, force) {
        (OnLostColumn::Keep, _) => Ok(problems.iter().map(|problem| problem.field.clone()).collect()),
        (OnLostColumn::Clear, _) | (OnLostColumn::Fail, true) => Ok(Vec::new()),
        (OnLostColumn::Fail, false) => {
            let unmapped: Vec<String> = header
                .iter()
                .filter(|column| column.field.is_none())
                .map(|column| format!("`{}`", column.label))
                .collect();
            Err(GuardError::Columns {
                collection: collection.to_owned(),
                problems: problems
                    .iter()
                    .map(ColumnProblem::describe)
                    .collect::<Vec<_>>()
                    .join("; "),
                unmapped: if unmapped.is_empty() {
                    String::new()
                } else {
                    format!("The header's unmapped labels: {}. ", unmapped.join(", "))
                },
            })
        }
    }
}

/// The limits of the `[sync]` section the guards apply.
#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    /// `sync.min_ratio`.
    pub min_ratio: f64,
    /// `sync.max_rejected_ratio`.
    pub max_rejected_ratio: f64,
}

/// Both guards: the shrink guard, given what the collection holds and will
/// hold (`None` when nothing can shrink it), and the rejected-rows guard.
pub fn check_guards(
    limits: GuardLimits,
    collection: &str,
    shrink: Option<(u64, usize)>,
    survey: &Survey,
    force: bool,
) -> Result<(), GuardError> {
    if let Some((existing, new)) = shrink {
        check_shrink(collection, existing, new, limits.min_ratio, force)?;
    }
    check_rejected(
        survey.rows_read,
        survey.rejected.len(),
        limits.max_rejected_ratio,
        force,
    )
}

/// Refuses a refresh that would wipe or drastically shrink a collection.
pub fn check_shrink(
    collection: &str,
    existing: u64,
    new: usize,
    min_ratio: f64,
    force: bool,
) -> Result<(), GuardError> {
    if force || existing == 0 {
        return Ok(());
    }
    let why = if new == 0 {
        "the source yielded no records".to_owned()
    } else if (new as f64) < min_ratio * existing as f64 {
        format!("that is below sync.min_ratio = {min_ratio} of the current data")
    } else {
        return Ok(());
    };
    Err(GuardError::Shrink {
        collection: collection.to_owned(),
        existing,
        new,
        why,
    })
}

/// Refuses a refresh that would drop too many of the source's rows: a
/// cleared column (every stage gone) loses rows as surely as a truncated
/// export, and must not pass for a success.
pub fn check_rejected(rows_with_data: usize, rejected: usize, max_ratio: f64, force: bool) -> Result<(), GuardError> {
    if force || rejected == 0 || (rejected as f64) <= max_ratio * rows_with_data as f64 {
        return Ok(());
    }
    Err(GuardError::TooManyRejected {
        rejected,
        rows: rows_with_data,
        max_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_guard_thresholds() {
        assert!(
            check_shrink("c", 0, 0, 0.5, false).is_ok(),
            "an empty collection may stay empty"
        );
        assert!(
            check_shrink("c", 10, 5, 0.5, false).is_ok(),
            "exactly the ratio is allowed"
        );
        assert!(check_shrink("c", 10, 4, 0.5, false).is_err());
        assert!(
            check_shrink("c", 10, 0, 0.0, false).is_err(),
            "empty is refused even with ratio 0"
        );
        assert!(check_shrink("c", 10, 0, 0.5, true).is_ok(), "--force");
    }

    #[test]
    fn rejected_rows_guard_thresholds() {
        assert!(
            check_rejected(10, 2, 0.2, false).is_ok(),
            "exactly the ratio is allowed"
        );
        assert!(check_rejected(10, 3, 0.2, false).is_err());
        assert!(check_rejected(10, 4, 0.2, true).is_ok(), "--force");
        assert!(check_rejected(0, 0, 0.0, false).is_ok());
        assert!(check_rejected(3, 1, 0.0, false).is_err(), "0 allows none");
    }

    #[test]
    fn a_column_counts_as_lost_or_emptied_only_past_its_thresholds() {
        let profile = &*crate::mapping::sales::SALES_RECORDS;
        let index = |name: &str| profile.field_index(name).unwrap();
        let new = HeaderColumn::list(&[
            ("Client", Some("client")),
            ("Stage", Some("stage")),
            ("Monthly value", None),
        ]);
        let old = HeaderColumn::list(&[
            ("Client", Some("client")),
            ("Stage", Some("stage")),
            ("Expected MRR", Some("expected_mrr")),
        ]);
        let problems = |stored: u64, mrr_stored: u64, mrr_new: u64| {
            let mut counts = FillCounts::new(profile.fields.len());
            counts.pairs = stored;
            counts.stored[index("expected_mrr")] = mrr_stored;
            counts.new[index("expected_mrr")] = mrr_new;
            column_problems(&ColumnEvidence {
                profile,
                header: &new,
                previous: Some(&old),
                counts: &counts,
                blanks_clear: true,
            })
        };
        let lost = problems(10, 10, 0);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].kind, ColumnProblemKind::Lost);
        assert_eq!(lost[0].label.as_deref(), Some("Expected MRR"));
        assert_eq!(
            lost[0].maybe.as_deref(),
            Some("Monthly value"),
            "where the column stood"
        );
        assert!(problems(10, 4, 0).is_empty(), "fewer than 5 stored values");
        assert!(problems(10, 10, 5).is_empty(), "exactly half still filled");
        let emptied = problems(100, 10, 0);
        assert_eq!(
            emptied[0].kind,
            ColumnProblemKind::Emptied,
            "filled in under half the records"
        );
    }

    #[test]
    fn the_policy_decides_what_a_problem_does() {
        let problem = ColumnProblem {
            field: "arr".to_owned(),
            label: Some("ARR".to_owned()),
            kind: ColumnProblemKind::Lost,
            stored_filled: 8,
            new_filled: 0,
            maybe: None,
            kept: false,
        };
        let new = HeaderColumn::list(&[("Company", Some("company_name")), ("Annual value", None)]);
        let verdict = |policy, force| check_columns("customers", std::slice::from_ref(&problem), &new, policy, force);
        let refused = verdict(OnLostColumn::Fail, false).unwrap_err().to_string();
        assert!(refused.contains("unmapped labels: `Annual value`"), "{refused}");
        assert_eq!(verdict(OnLostColumn::Fail, true).unwrap(), Vec::<String>::new());
        assert_eq!(verdict(OnLostColumn::Keep, false).unwrap(), ["arr"]);
        assert_eq!(verdict(OnLostColumn::Clear, false).unwrap(), Vec::<String>::new());
    }
}
