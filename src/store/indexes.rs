//! The indexes the schema document recommends, created idempotently.

use std::sync::LazyLock;
use std::time::Duration;

use mongodb::bson::Document;
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

use super::{Operation, StoreError, Within, timed};
use crate::mapping::profile::{IndexSpec, TargetProfile};

fn plain(keys: &[&str]) -> IndexSpec {
    IndexSpec::plain(keys)
}

fn unique(keys: &[&str]) -> IndexSpec {
    IndexSpec::unique(keys)
}

/// How long run history is kept.
pub const SYNC_RUNS_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Indexes of the collections with fixed names: the schema document's
/// "Indexes Recommendations" (plus `data_metadata.last_update`, listed in its
/// collection section) and sheetsync's own bookkeeping.
pub static FIXED_INDEXES: LazyLock<Vec<(&str, Vec<IndexSpec>)>> = LazyLock::new(|| {
    vec![
        (
            "users",
            vec![unique(&["email"]), plain(&["role"]), plain(&["view_access"])],
        ),
        (
            "user_sessions",
            vec![
                unique(&["session_token"]),
                plain(&["user_id"]),
                IndexSpec {
                    keys: vec!["expires_at".to_owned()],
                    unique: false,
                    expire_after_seconds: Some(0),
                },
            ],
        ),
        (
            "views",
            vec![
                unique(&["id"]),
                unique(&["name"]),
                plain(&["is_master"]),
                plain(&["is_default"]),
            ],
        ),
        (
            "data_metadata",
            vec![
                unique(&["type", "view_id"]),
                plain(&["view_id"]),
                plain(&["last_update"]),
            ],
        ),
        (
            "user_projections_preferences",
            vec![
                unique(&["user_id", "view_id"]),
                plain(&["user_id"]),
                plain(&["view_id"]),
            ],
        ),
        (
            "user_pipeline_preferences",
            vec![
                unique(&["user_id", "view_id"]),
                plain(&["user_id"]),
                plain(&["view_id"]),
            ],
        ),
        ("asher_pov", vec![unique(&["view_id"])]),
        (
            super::runs::SYNC_RUNS_COLLECTION,
            vec![
                IndexSpec {
                    keys: vec!["started_at".to_owned()],
                    unique: false,
                    expire_after_seconds: Some(SYNC_RUNS_TTL.as_secs()),
                },
                plain(&["view", "started_at"]),
                unique(&["run_id"]),
            ],
        ),
        // `_id` is the view id; expiry is what a takeover filters on.
        (super::lease::SYNC_LOCKS_COLLECTION, vec![plain(&["expires_at"])]),
    ]
});

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
    let fixed = FIXED_INDEXES
        .iter()
        .map(|(collection, specs)| (*collection, specs.as_slice()));
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

/// What [`ensure_app`] did.
#[derive(Debug, Default)]
pub struct AppIndexes {
    pub touched: Vec<String>,
    /// Indexes that could not be created, and why: one with the same keys
    /// and other options exists (reported, never dropped: the application
    /// may rely on it), or the data does not allow it yet (duplicates under
    /// a unique index). The sync goes on either way.
    pub conflicts: Vec<String>,
}

/// Creates a configured target's indexes on its collection, the
/// application's indexes in its database and sheetsync's run history
/// indexes (its TTL included) there, one by one, so that one index the data
/// or the application does not allow does not stop the others.
pub async fn ensure_app(db: &Database, collection: &str, profile: &TargetProfile) -> Result<AppIndexes, StoreError> {
    let mut wanted: Vec<(&str, &IndexSpec)> = Vec::new();
    wanted.extend(profile.indexes.iter().map(|index| (collection, index)));
    for index in &profile.app_indexes {
        wanted.push((index.collection.as_str(), &index.index));
    }
    for (name, specs) in FIXED_INDEXES.iter() {
        if *name == super::runs::SYNC_RUNS_COLLECTION {
            wanted.extend(specs.iter().map(|spec| (*name, spec)));
        }
    }
    let mut outcome = AppIndexes::default();
    for (collection, spec) in wanted {
        let created = timed(
            Operation::IndexBuild,
            db.collection::<Document>(collection).create_index(model(spec)),
            || format!("creating an index on `{collection}`"),
        )
        .await?;
        let keys = spec.keys.join(", ");
        match created {
            Ok(_) => {}
            Err(error) if is_conflict(&error) => outcome.conflicts.push(format!(
                "`{}.{collection}` already has an index on {keys} with other options; it was left as it is \
                 (sheetsync wants unique = {})",
                db.name(),
                spec.unique
            )),
            Err(error) => outcome.conflicts.push(format!(
                "the index on {keys} of `{}.{collection}` could not be created ({}); fix the data (e.g. duplicate \
                 values under a unique index) and it will be created by the next sync",
                db.name(),
                command_message(&error)
            )),
        }
        if !outcome.touched.iter().any(|touched| touched == collection) {
            outcome.touched.push(collection.to_owned());
        }
    }
    Ok(outcome)
}

/// The server's words for a refused command, without the raw reply.
fn command_message(error: &mongodb::error::Error) -> String {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(command) => format!("{} ({})", command.message, command.code_name),
        _ => error.to_string(),
    }
}

/// IndexOptionsConflict (85), IndexKeySpecsConflict (86), or a name taken
/// by an index on other keys.
fn is_conflict(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(command) => matches!(command.code, 85 | 86),
        _ => false,
    }
}
