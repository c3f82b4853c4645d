//! Metric names and descriptions, through the `metrics` facade: a leaf, so
//! that any layer can count what it does.
//!
//! Without an installed recorder (the CLI) every `metrics` call is a no-op;
//! the daemon installs a Prometheus recorder, records its runs
//! (`daemon::metrics`) and renders it at `GET /metrics`. The Google Sheets
//! source increments the Google counters itself, at each request and retry.

pub const SYNC_RUNS: &str = "sheetsync_sync_runs_total";
pub const RECORDS_WRITTEN: &str = "sheetsync_records_written_total";
pub const ROWS_REJECTED: &str = "sheetsync_rows_rejected_total";
pub const SYNC_DURATION: &str = "sheetsync_sync_duration_seconds";
pub const LAST_SUCCESS: &str = "sheetsync_last_success_timestamp_seconds";
pub const SKIPPED_RUNS: &str = "sheetsync_skipped_runs_total";
pub const GOOGLE_API_CALLS: &str = "sheetsync_google_api_calls_total";
pub const GOOGLE_API_RETRIES: &str = "sheetsync_google_api_retries_total";
pub const MONGO_UP: &str = "sheetsync_mongo_up";
pub const AUTH_FAILURES: &str = "sheetsync_auth_failures_total";
pub const AUTH_THROTTLED: &str = "sheetsync_auth_throttled_total";

/// Histogram buckets of a sync's duration, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// Describes every metric and registers the label-less ones, so that a
/// scrape lists them (at 0) before anything happened.
pub fn describe() {
    metrics::describe_counter!(SYNC_RUNS, "Sync runs finished, by view, trigger and outcome.");
    metrics::describe_counter!(
        RECORDS_WRITTEN,
        "Records in the collection after successful runs, by view."
    );
    metrics::describe_counter!(ROWS_REJECTED, "Source rows rejected by the mapping, by view.");
    metrics::describe_histogram!(
        SYNC_DURATION,
        metrics::Unit::Seconds,
        "Duration of one view's sync, by view."
    );
    metrics::describe_gauge!(
        LAST_SUCCESS,
        metrics::Unit::Seconds,
        "Unix time of the last successful sync by this process, by view."
    );
    metrics::describe_counter!(
        SKIPPED_RUNS,
        "Scheduled runs skipped because another replica already did the slot, by view."
    );
    metrics::describe_counter!(
        GOOGLE_API_CALLS,
        "HTTP requests sent to the Google Sheets API, retries included."
    );
    metrics::describe_counter!(GOOGLE_API_RETRIES, "Google Sheets API requests retried after an error.");
    metrics::describe_gauge!(MONGO_UP, "1 when MongoDB answered the last ping, else 0.");
    metrics::describe_counter!(
        AUTH_FAILURES,
        "Failed authentications (a wrong or missing admin token), by route."
    );
    metrics::describe_counter!(
        AUTH_THROTTLED,
        "Requests refused with 429 because their address failed to authenticate too often, by route."
    );
    metrics::counter!(GOOGLE_API_CALLS).absolute(0);
    metrics::counter!(GOOGLE_API_RETRIES).absolute(0);
}
