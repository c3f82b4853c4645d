//! The daemon's side of the metrics: the Prometheus recorder, and what each
//! run, skip and MongoDB check adds to it (names in `crate::telemetry`).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::report::{Outcome, SyncReport};
use crate::telemetry::{
    DURATION_BUCKETS, LAST_SUCCESS, MONGO_UP, RECORDS_WRITTEN, ROWS_REJECTED, SKIPPED_RUNS, SYNC_DURATION, SYNC_RUNS,
};

/// Installs the process's Prometheus recorder, every metric described.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(SYNC_DURATION.to_owned()), DURATION_BUCKETS)
        .map_err(|error| error.to_string())?
        .install_recorder()
        .map_err(|error| error.to_string())?;
    crate::telemetry::describe();
    Ok(handle)
}

/// Records one finished run.
pub fn record_run(report: &SyncReport) {
    let view = report.name.clone();
    metrics::counter!(
        SYNC_RUNS,
        "view" => view.clone(),
        "trigger" => report.trigger.as_str(),
        "outcome" => report.outcome.as_str(),
    )
    .increment(1);
    metrics::histogram!(SYNC_DURATION, "view" => view.clone()).record(report.duration_ms as f64 / 1000.0);
    metrics::counter!(ROWS_REJECTED, "view" => view.clone()).increment(report.rejected.len() as u64);
    if matches!(
        report.outcome,
        Outcome::Success | Outcome::SuccessWithWarnings | Outcome::Unchanged
    ) {
        metrics::counter!(RECORDS_WRITTEN, "view" => view.clone()).increment(report.records_written as u64);
        metrics::gauge!(LAST_SUCCESS, "view" => view).set(report.finished_at.timestamp() as f64);
    }
}

pub fn record_skip(view: &str) {
    metrics::counter!(SKIPPED_RUNS, "view" => view.to_owned()).increment(1);
}

pub fn set_mongo_up(up: bool) {
    metrics::gauge!(MONGO_UP).set(if up { 1.0 } else { 0.0 });
}
