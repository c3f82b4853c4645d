//! Small pieces every layer that shares state or runs background work
//! needs: a lock that survives a holder's panic, a task stopped when its
//! handle is dropped, and whether a pass over rows may use threads at all.

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

/// How a pass over a source's rows runs: on the calling thread alone, or
/// with its parsing and converting spread over threads.
///
/// Threads pay off only when they can run at once. Where the process may
/// use a single core (a container or a systemd unit with a one-CPU quota,
/// `taskset`), every row handed from thread to thread is work the one core
/// does on top of the pass, and cold caches besides: measured on a 500k-row
/// export, the threaded pass cost 40% more there than the same pass inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threading {
    /// Every row parsed, converted and added up on the calling thread:
    /// always correct, so the default.
    #[default]
    Inline,
    /// Parsing, converting and adding up on threads of their own.
    Parallel,
}

impl Threading {
    /// What this process's cores allow now: `Parallel` when it may run on
    /// more than one (its CPU affinity and cgroup quota, as the standard
    /// library reads them). Asked at the start of each pass, so that a
    /// daemon whose quota or affinity is changed follows it; the few system
    /// calls are nothing next to a pass.
    pub fn of_this_process() -> Threading {
        Threading::for_cores(std::thread::available_parallelism().ok().map(usize::from))
    }

    /// The threading for `cores` cores; an unknown count counts as one:
    /// inline is always correct, only slower where there are more.
    pub fn for_cores(cores: Option<usize>) -> Threading {
        match cores {
            Some(cores) if cores > 1 => Threading::Parallel,
            _ => Threading::Inline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_only_where_there_are_cores_to_run_them() {
        assert_eq!(Threading::for_cores(None), Threading::Inline);
        assert_eq!(Threading::for_cores(Some(0)), Threading::Inline);
        assert_eq!(Threading::for_cores(Some(1)), Threading::Inline);
        assert_eq!(Threading::for_cores(Some(2)), Threading::Parallel);
        assert_eq!(Threading::for_cores(Some(64)), Threading::Parallel);
    }
}
