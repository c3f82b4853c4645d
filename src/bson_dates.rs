//! Dates between chrono and BSON: a leaf, because the mapping writes record
//! dates, the store stamps leases and runs, and the daemon reads them back.

use chrono::{DateTime, Utc};

/// chrono -> BSON, at the millisecond precision BSON dates have.
pub fn to_bson_date(moment: DateTime<Utc>) -> mongodb::bson::DateTime {
    mongodb::bson::DateTime::from_millis(moment.timestamp_millis())
}

/// BSON -> chrono; `None` only for dates outside chrono's range.
pub fn from_bson_date(date: mongodb::bson::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(date.timestamp_millis())
}
