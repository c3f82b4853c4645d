//! Why the list of syncs could not be had, or a selection made from it.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    #[error(transparent)]
    Read(#[from] StoreError),
    #[error("view {0:?} is the Master view: it aggregates the others and has no collection to sync")]
    MasterSelected(String),
    #[error("unknown view(s) {unknown}; the views collection has: {available}")]
    Unknown { unknown: String, available: String },
}
