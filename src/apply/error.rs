//! Why a sync's apply step failed; every variant leaves the previous data
//! standing (a merge: each document either as before or as the sheet says).

use super::guards::GuardError;
use super::merge::error::MergeError;
use super::swap::staging::SwapError;
use crate::source::SourceError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Refused(#[from] GuardError),
    #[error(transparent)]
    Swap(#[from] SwapError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the source changed while it was being read ({planned} records planned, {found} read on the next pass); \
         nothing was written: sync again"
    )]
    SourceChanged { planned: usize, found: usize },
    #[error("called off before the swap ({0}); nothing was written, the previous data stands")]
    CalledOff(String),
}

/// A later pass must find exactly the records the survey planned, or the
/// source changed while it was read.
pub(super) fn ensure_same_source(planned: usize, found: usize) -> Result<(), ApplyError> {
    if planned == found {
        Ok(())
    } else {
        Err(ApplyError::SourceChanged { planned, found })
    }
}
