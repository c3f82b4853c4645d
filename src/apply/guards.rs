//! The refusals both modes make before writing anything: a refresh that
//! would wipe or drastically shrink the data, or drop too many of the
//! source's rows, is far more often a broken export than a real change.
//! `--force` overrides both.

use crate::mapping::Survey;

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
}
