//! History of sync runs, failed ones included, kept 90 days (TTL index on
//! `started_at`, see `indexes`).

use mongodb::Database;
use mongodb::bson::{self, Document, doc};

use super::{Doing, Operation, StoreError, Within};
use crate::bson_dates::to_bson_date;
use crate::mapping::HeaderColumn;
use crate::report::SyncReport;

pub const SYNC_RUNS_COLLECTION: &str = "sync_runs";

/// At most this many warnings are stored per run; the count is always exact.
const STORED_ISSUES: usize = 200;

/// Stores one view's run.
pub async fn record(db: &Database, report: &SyncReport) -> Result<(), StoreError> {
    let document = to_document(report)
        .map_err(mongodb::error::Error::from)
        .doing(|| format!("encoding run {} for `{SYNC_RUNS_COLLECTION}`", report.run_id))?;
    db.collection::<Document>(SYNC_RUNS_COLLECTION)
        .insert_one(document)
        .within(Operation::Write, || {
            format!(
                "recording run {} of view {:?} in `{SYNC_RUNS_COLLECTION}`",
                report.run_id, report.name
            )
        })
        .await?;
    Ok(())
}

/// The latest stored run of `view` matching `filter` (e.g. failed ones).
pub async fn latest(db: &Database, view: &str, mut filter: Document) -> Result<Option<Document>, StoreError> {
    filter.insert("view", view);
    db.collection::<Document>(SYNC_RUNS_COLLECTION)
        .find_one(filter)
        .sort(doc! { "started_at": -1 })
        .within(Operation::Read, || format!("reading the latest run of view {view:?}"))
        .await
}

/// The header of `view`'s last successful run, if one recorded it.
pub async fn last_header(db: &Database, view: &str) -> Result<Option<Vec<HeaderColumn>>, StoreError> {
    let succeeded = doc! { "outcome": { "$in": ["success", "success_with_warnings"] } };
    let Some(run) = latest(db, view, succeeded).await? else {
        return Ok(None);
    };
    // A run recorded before headers were kept, or an unreadable one, has none.
    Ok(run
        .get("header")
        .cloned()
        .and_then(|header| bson::from_bson(header).ok()))
}

/// What changes when anyone rewrites `collection`, read cheaply (its
/// metadata, no scan): the collection's identity (a swap makes a new
/// collection) and its document count. In-place edits by another writer
/// keep both: the scheduled full compare puts those right.
pub async fn collection_mark(db: &Database, collection: &str) -> Result<String, StoreError> {
    let describe = || format!("reading the identity of `{collection}`");
    let listed = db
        .run_command(doc! { "listCollections": 1, "filter": { "name": collection }, "nameOnly": false })
        .within(Operation::Read, describe)
        .await?;
    let uuid = listed
        .get_document("cursor")
        .ok()
        .and_then(|cursor| cursor.get_array("firstBatch").ok())
        .and_then(|batch| batch.first())
        .and_then(|entry| entry.as_document())
        .and_then(|entry| entry.get_document("info").ok())
        .and_then(|info| info.get("uuid"))
        .map(|uuid| uuid.to_string())
        .unwrap_or_default();
    let count = db
        .collection::<Document>(collection)
        .estimated_document_count()
        .within(Operation::Read, describe)
        .await?;
    Ok(format!("{uuid} / {count}"))
}

/// A count stored in a run document (`records_written`, `rows_read`...),
/// whichever integer type the server kept it as; 0 when absent.
pub fn stored_count(document: &Document, field: &str) -> i64 {
    match document.get(field) {
        Some(bson::Bson::Int32(value)) => i64::from(*value),
        Some(bson::Bson::Int64(value)) => *value,
        // Counts are whole and far below 2^53.
        Some(bson::Bson::Double(value)) => *value as i64,
        _ => 0,
    }
}

/// The latest successful run of `view` that recorded a source digest.
pub async fn last_applied(db: &Database, view: &str) -> Result<Option<Document>, StoreError> {
    let filter = doc! {
        "outcome": { "$in": ["success", "success_with_warnings", "unchanged"] },
        "source_digest": { "$exists": true },
    };
    latest(db, view, filter).await
}

/// The stored run with this id, if any.
pub async fn by_id(db: &Database, run_id: &str) -> Result<Option<Document>, StoreError> {
    db.collection::<Document>(SYNC_RUNS_COLLECTION)
        .find_one(doc! { "run_id": run_id })
        .within(Operation::Read, || format!("reading run {run_id} in `{}`", db.name()))
        .await
}

/// The last `limit` runs of `view`, newest first, without their row lists.
pub async fn recent(db: &Database, view: &str, limit: i64) -> Result<Vec<Document>, StoreError> {
    use futures_util::TryStreamExt;
    let describe = || format!("reading the recent runs of view {view:?}");
    db.collection::<Document>(SYNC_RUNS_COLLECTION)
        .find(doc! { "view": view })
        .sort(doc! { "started_at": -1 })
        .limit(limit)
        .projection(
            doc! { "started_at": 1, "duration_ms": 1, "records_written": 1, "outcome": 1, "column_problems": 1 },
        )
        .within(Operation::Read, describe)
        .await?
        .try_collect()
        .within(Operation::Read, describe)
        .await
}

fn to_document(report: &SyncReport) -> Result<Document, bson::ser::Error> {
    let mut trimmed = report.clone();
    trimmed.warnings.truncate(STORED_ISSUES);
    trimmed.rejected.truncate(STORED_ISSUES);
    trimmed.duplicates.truncate(STORED_ISSUES);
    trimmed.moves.truncate(STORED_ISSUES);
    let mut document = bson::to_document(&trimmed)?;
    // The lists are cut; their lengths are kept whole.
    document.insert(
        "rejected_count",
        i64::try_from(report.rejected.len()).unwrap_or(i64::MAX),
    );
    document.insert(
        "warnings_count",
        i64::try_from(report.warnings.len()).unwrap_or(i64::MAX),
    );
    // Real dates, so the TTL index can expire them and queries can range.
    document.insert("started_at", to_bson_date(report.started_at));
    document.insert("finished_at", to_bson_date(report.finished_at));
    Ok(document)
}
