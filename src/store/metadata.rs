//! The schema's `data_metadata` "last_update" record, which the dashboard
//! shows as "data refreshed at".

use chrono::{DateTime, Utc};
use mongodb::Database;
use mongodb::bson::{DateTime as BsonDateTime, Document, doc};

use super::{Operation, StoreError, Within};
use crate::source::SourceType;

pub const DATA_METADATA_COLLECTION: &str = "data_metadata";

/// Upserts the view's last-update record. `created_at` is set only when the
/// record is first created.
pub async fn record_last_update(
    db: &Database,
    view_id: &str,
    source_type: SourceType,
    source_url: &str,
    records_count: usize,
    now: BsonDateTime,
) -> Result<(), StoreError> {
    let count = i64::try_from(records_count).unwrap_or(i64::MAX);
    db.collection::<Document>(DATA_METADATA_COLLECTION)
        .update_one(
            doc! { "type": "last_update", "view_id": view_id },
            doc! {
                "$set": {
                    "source_type": source_type.as_str(),
                    "source_url": source_url,
                    "last_update": now,
                    "records_count": count,
                },
                "$setOnInsert": { "created_at": now },
            },
        )
        .upsert(true)
        .within(Operation::Write, || {
            format!("recording the last update of view {view_id} in `{DATA_METADATA_COLLECTION}`")
        })
        .await?;
    Ok(())
}

/// When the view was last refreshed successfully (by any process), and how
/// many records that left; `None` when it never was.
pub async fn last_update(db: &Database, view_id: &str) -> Result<Option<(DateTime<Utc>, i64)>, StoreError> {
    let found = db
        .collection::<Document>(DATA_METADATA_COLLECTION)
        .find_one(doc! { "type": "last_update", "view_id": view_id })
        .within(Operation::Read, || {
            format!("reading the last update of view {view_id} from `{DATA_METADATA_COLLECTION}`")
        })
        .await?;
    Ok(found.and_then(|document| {
        let when = crate::bson_dates::from_bson_date(*document.get_datetime("last_update").ok()?)?;
        let count = match document.get("records_count") {
            Some(mongodb::bson::Bson::Int64(count)) => *count,
            Some(mongodb::bson::Bson::Int32(count)) => i64::from(*count),
            _ => 0,
        };
        Some((when, count))
    }))
}
