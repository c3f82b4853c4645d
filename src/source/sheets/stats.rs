//! Counters of the Sheets API traffic, kept for `/status` and tests and
//! mirrored into the process's metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::telemetry;

/// Counters of Google API traffic since start, for metrics and tests.
#[derive(Debug, Default)]
pub struct GoogleStats {
    requests: AtomicU64,
    metadata_calls: AtomicU64,
    batch_get_calls: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    failed_calls: AtomicU64,
}

/// A copy of [`GoogleStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GoogleStatsSnapshot {
    /// HTTP requests sent to the Sheets API, retries included (token
    /// requests excluded: `auth` makes those).
    pub requests: u64,
    /// `spreadsheets.get` calls (each may take several requests).
    pub metadata_calls: u64,
    /// `values:batchGet` calls.
    pub batch_get_calls: u64,
    /// Requests that were repeats of a failed one.
    pub retries: u64,
    /// HTTP 429 answers.
    pub rate_limited: u64,
    /// Calls that ended in an error, after any retries.
    pub failed_calls: u64,
}

impl GoogleStats {
    /// One HTTP request sent, counted here and in the metrics.
    pub(super) fn record_request(&self) {
        bump(&self.requests);
        metrics::counter!(telemetry::GOOGLE_API_CALLS).increment(1);
    }

    /// One request that repeats a failed one, counted here and in the metrics.
    pub(super) fn record_retry(&self) {
        bump(&self.retries);
        metrics::counter!(telemetry::GOOGLE_API_RETRIES).increment(1);
    }

    pub(super) fn record_metadata_call(&self) {
        bump(&self.metadata_calls);
    }

    pub(super) fn record_batch_get(&self) {
        bump(&self.batch_get_calls);
    }

    pub(super) fn record_rate_limited(&self) {
        bump(&self.rate_limited);
    }

    /// A call that ended in an error, after any retries.
    pub(super) fn record_failed_call(&self) {
        bump(&self.failed_calls);
    }

    pub fn snapshot(&self) -> GoogleStatsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        GoogleStatsSnapshot {
            requests: read(&self.requests),
            metadata_calls: read(&self.metadata_calls),
            batch_get_calls: read(&self.batch_get_calls),
            retries: read(&self.retries),
            rate_limited: read(&self.rate_limited),
            failed_calls: read(&self.failed_calls),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
