//! The daemon's mutexes hold state that stays meaningful even if a holder
//! panicked (a map of runs, a timestamp), so a poisoned lock is used as is.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex whose data stays meaningful even if a holder panicked.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
