//! The schema's `data_metadata` "last_update" record, which the dashboard
//! shows as "data refreshed at".

use mongodb::Database;
use mongodb::bson::{DateTime as BsonDateTime, Document, doc};

use super::{Doing, StoreError};
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
        .await
        .doing(|| format!("recording the last update of view {view_id} in `{DATA_METADATA_COLLECTION}`"))?;
    Ok(())
}
