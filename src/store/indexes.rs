//! The indexes the schema document recommends, created idempotently.

use std::time::Duration;

use mongodb::bson::Document;
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

use super::{Operation, StoreError, Within};
use crate::mapping::profile::IndexSpec;

const fn plain(keys: &'static [&'static str]) -> IndexSpec {
    IndexSpec {
        keys,
        unique: false,
        expire_after_seconds: None,
    }
}

const fn unique(keys: &'static [&'static str]) -> IndexSpec {
    IndexSpec {
        keys,
        unique: true,
        expire_after_seconds: None,
    }
}

/// How long run history is kept.
pub const SYNC_RUNS_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Indexes of the collections with fixed names: the schema document's
/// "Indexes Recommendations" (plus `data_metadata.last_update`, listed in its
/// collection section) and sheetsync's own bookkeeping.
pub const FIXED_INDEXES: &[(&str, &[IndexSpec])] = &[
    (
        "users",
        &[unique(&["email"]), plain(&["role"]), plain(&["view_access"])],
    ),
    (
        "user_sessions",
        &[
            unique(&["session_token"]),
            plain(&["user_id"]),
            IndexSpec {
                keys: &["expires_at"],
                unique: false,
                expire_after_seconds: Some(0),
            },
        ],
    ),
    (
        "views",
        &[
            unique(&["id"]),
            unique(&["name"]),
            plain(&["is_master"]),
            plain(&["is_default"]),
        ],
    ),
    (
        "data_metadata",
        &[
            unique(&["type", "view_id"]),
            plain(&["view_id"]),
            plain(&["last_update"]),
        ],
    ),
    (
        "user_projections_preferences",
        &[
            unique(&["user_id", "view_id"]),
            plain(&["user_id"]),
            plain(&["view_id"]),
        ],
    ),
    (
        "user_pipeline_preferences",
        &[
            unique(&["user_id", "view_id"]),
            plain(&["user_id"]),
            plain(&["view_id"]),
        ],
    ),
    ("asher_pov", &[unique(&["view_id"])]),
    (
        super::runs::SYNC_RUNS_COLLECTION,
        &[
            IndexSpec {
                keys: &["started_at"],
                unique: false,
                expire_after_seconds: Some(SYNC_RUNS_TTL.as_secs()),
            },
            plain(&["view", "started_at"]),
            unique(&["run_id"]),
        ],
    ),
    // `_id` is the view id; expiry is what a takeover filters on.
    (super::lease::SYNC_LOCKS_COLLECTION, &[plain(&["expires_at"])]),
];

fn model(spec: &IndexSpec) -> IndexModel {
    let keys: Document = spec.keys.iter().map(|key| (key.to_string(), 1.into())).collect();
    let mut options = IndexOptions::default();
    if spec.unique {
        options.unique = Some(true);
    }
    options.expire_after = spec.expire_after_seconds.map(Duration::from_secs);
    IndexModel::builder().keys(keys).options(options).build()
}

/// Creates `specs` on `collection`. Creating an index that exists with the
/// same options is a no-op, so this runs on every sync.
pub async fn create(db: &Database, collection: &str, specs: &[IndexSpec]) -> Result<(), StoreError> {
    if specs.is_empty() {
        return Ok(());
    }
    db.collection::<Document>(collection)
        .create_indexes(specs.iter().map(model))
        .within(Operation::IndexBuild, || {
            format!(
                "creating indexes on `{collection}` (an index with the same keys but other options, or duplicate \
                 values under a unique index, must be fixed by hand)"
            )
        })
        .await?;
    Ok(())
}

/// Every collection the schema gives indexes, with its indexes: the fixed
/// collections, then each view collection with the record indexes.
pub fn all_targets<'a>(
    record_collections: &'a [String],
    record_indexes: &'a [IndexSpec],
) -> impl Iterator<Item = (&'a str, &'a [IndexSpec])> {
    let fixed = FIXED_INDEXES.iter().map(|(collection, specs)| (*collection, *specs));
    let records = record_collections
        .iter()
        .map(move |collection| (collection.as_str(), record_indexes));
    fixed.chain(records)
}

/// Every index the schema lists (see [`all_targets`]). Returns the
/// collections touched.
pub async fn ensure_all(
    db: &Database,
    record_collections: &[String],
    record_indexes: &[IndexSpec],
) -> Result<Vec<String>, StoreError> {
    let mut touched = Vec::new();
    for (collection, specs) in all_targets(record_collections, record_indexes) {
        create(db, collection, specs).await?;
        touched.push(collection.to_owned());
    }
    Ok(touched)
}
