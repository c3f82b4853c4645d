//! Why a merge's writes stopped, and how much was written before.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "writing `{collection}` stopped at {at}: {message}; {written} document(s) were written before it, each \
         either as before or as the sheet says: fix the cause and sync again to complete the rest"
    )]
    Write {
        collection: String,
        /// `row 14` (the sheet's row), or what else was being written.
        at: String,
        message: String,
        written: usize,
    },
    #[error(
        "called off while writing `{collection}` ({reason}); {written} document(s) were written, each either as \
         before or as the sheet says: the next sync completes the rest"
    )]
    CalledOff {
        collection: String,
        reason: String,
        written: usize,
    },
}

impl MergeError {
    /// Documents written before the failure.
    pub(super) fn written(&self) -> usize {
        match self {
            MergeError::Store(_) => 0,
            MergeError::Write { written, .. } | MergeError::CalledOff { written, .. } => *written,
        }
    }
}
