//! Collections no sync may write.

use crate::store::views::VIEWS_COLLECTION;

/// Collections the dashboard or sheetsync itself keeps: a view's target
/// replaces its collection wholesale, so it may never be one of these.
pub(super) fn is_reserved_collection(name: &str) -> bool {
    name == VIEWS_COLLECTION
        || name.starts_with(crate::apply::swap::STAGING_PREFIX)
        || crate::store::indexes::FIXED_INDEXES
            .iter()
            .any(|(collection, _)| *collection == name)
}
