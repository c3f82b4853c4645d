//! Two small pieces every layer that shares state or runs background tasks
//! needs: a lock that survives a holder's panic, and a task stopped when its
//! handle is dropped.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex whose data stays meaningful even if a holder panicked (a
/// map of runs, a timestamp, a cache filled by single inserts): a poisoned
/// lock is used as is rather than taking the process down with it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A background task stopped when this is dropped, including when a panic
/// unwinds past its owner: a lease renewal or a progress log must not
/// outlive the run it serves.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
