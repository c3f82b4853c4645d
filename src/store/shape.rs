//! What a collection is besides its documents: the options it was created
//! with (validator, collation...) and its indexes. A swap replaces the
//! collection, so it must carry these over; they belong to the application
//! that owns the database, not to sheetsync.

use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

use super::{Operation, StoreError, Within};
use crate::mapping::profile::IndexSpec;

/// Options that `collMod` can set again on a collection that lost them. A
/// real MongoDB keeps every option through `renameCollection`; some
/// compatible servers (SecantusDB) drop them, and these are the ones that can
/// be restored afterwards.
const RESTORABLE_OPTIONS: &[&str] = &["validator", "validationLevel", "validationAction"];

/// Why a collection cannot be replaced by a swap.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{collection}` is a {kind}, which a refresh cannot replace (the swap renames a new collection over it); \
     point the view at a plain collection"
)]
pub struct Unswappable {
    pub collection: String,
    pub kind: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unswappable(#[from] Unswappable),
}

/// A collection's options and indexes, as `listCollections` and
/// `listIndexes` report them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    /// The `create` options (empty for a collection that does not exist).
    pub options: Document,
    /// Index specifications, ready for `createIndexes` (`_id_` left out:
    /// every collection has it).
    pub indexes: Vec<Document>,
}

impl Shape {
    /// Reads `collection`'s shape; a missing collection has the empty shape.
    /// Collections a rename cannot replace faithfully are refused.
    pub async fn read(db: &Database, collection: &str) -> Result<Shape, ShapeError> {
        let Some(entry) = list_entry(db, collection).await? else {
            return Ok(Shape::default());
        };
        let options = entry.get_document("options").cloned().unwrap_or_default();
        let kind = if entry.get_str("type") == Ok("view") {
            Some("view")
        } else if options.get_bool("capped") == Ok(true) {
            Some("capped collection")
        } else if options.contains_key("timeseries") {
            Some("time-series collection")
        } else if options.contains_key("clusteredIndex") {
            Some("clustered collection")
        } else {
            None
        };
        if let Some(kind) = kind {
            return Err(Unswappable {
                collection: collection.to_owned(),
                kind,
            }
            .into());
        }
        let indexes = list_indexes(db, collection).await?;
        Ok(Shape { options, indexes })
    }

    /// The index specifications to build on a copy: the collection's own,
    /// then each of `required` whose keys no index of the collection has yet.
    pub fn indexes_with(&self, required: &[IndexSpec]) -> Vec<Document> {
        let mut all = self.indexes.clone();
        for spec in required {
            let keys: Document = spec.keys.iter().map(|key| (key.to_string(), Bson::Int32(1))).collect();
            if all.iter().any(|index| index.get_document("key") == Ok(&keys)) {
                continue;
            }
            let name = spec
                .keys
                .iter()
                .map(|key| format!("{key}_1"))
                .collect::<Vec<_>>()
                .join("_");
            let mut index = doc! { "key": keys, "name": name };
            if spec.unique {
                index.insert("unique", true);
            }
            if let Some(seconds) = spec.expire_after_seconds {
                index.insert("expireAfterSeconds", i64::try_from(seconds).unwrap_or(i64::MAX));
            }
            all.push(index);
        }
        all
    }
}

/// Creates `collection` with `options`.
pub async fn create_with(db: &Database, collection: &str, options: &Document) -> Result<(), StoreError> {
    let mut command = doc! { "create": collection };
    command.extend(options.clone());
    db.run_command(command)
        .within(Operation::Write, || {
            format!("creating `{collection}` with the options of the collection it replaces")
        })
        .await?;
    Ok(())
}

/// Builds `indexes` on `collection` in one command.
pub async fn create_indexes(db: &Database, collection: &str, indexes: &[Document]) -> Result<(), StoreError> {
    if indexes.is_empty() {
        return Ok(());
    }
    db.run_command(doc! { "createIndexes": collection, "indexes": indexes.to_vec() })
        .within(Operation::IndexBuild, || {
            format!(
                "building the indexes of `{collection}` (those of the collection it replaces, and the schema's); \
                 a unique index the new records break fails here"
            )
        })
        .await?;
    Ok(())
}

/// After a swap: sets again the options `collection` should have but the
/// server did not keep, where `collMod` can, and names those it cannot.
pub async fn restore_options(db: &Database, collection: &str, wanted: &Document) -> Result<Vec<String>, ShapeError> {
    let current = |entry: Option<Document>| {
        entry
            .and_then(|entry| entry.get_document("options").ok().cloned())
            .unwrap_or_default()
    };
    let now = current(list_entry(db, collection).await?);
    let lost: Document = wanted
        .iter()
        .filter(|(name, value)| now.get(name.as_str()) != Some(*value))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if lost.is_empty() {
        return Ok(Vec::new());
    }
    let restorable: Document = lost
        .iter()
        .filter(|(name, _)| RESTORABLE_OPTIONS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if !restorable.is_empty() {
        let mut command = doc! { "collMod": collection };
        command.extend(restorable.clone());
        db.run_command(command)
            .within(Operation::Write, || {
                format!("setting the validator of `{collection}` again after the swap (collMod)")
            })
            .await?;
    }
    let after = current(list_entry(db, collection).await?);
    Ok(lost
        .keys()
        .filter(|name| after.get(name.as_str()) != wanted.get(name.as_str()))
        .map(|name| {
            format!(
                "the server did not keep the collection option `{name}` of `{collection}` through the swap and it \
                 cannot be set again (collMod does not accept it); set it again by hand, or use a server that keeps \
                 options on renameCollection (MongoDB does)"
            )
        })
        .collect())
}

/// The `listCollections` entry of `collection`, read raw: the driver's typed
/// options would drop the ones it does not know.
async fn list_entry(db: &Database, collection: &str) -> Result<Option<Document>, StoreError> {
    let reply = db
        .run_command(doc! { "listCollections": 1, "filter": { "name": collection } })
        .within(Operation::Read, || {
            format!("reading the options of `{collection}` (listCollections)")
        })
        .await?;
    Ok(first_batch(&reply).into_iter().find_map(|entry| match entry {
        Bson::Document(entry) => Some(entry),
        _ => None,
    }))
}

/// The documents of a command's cursor reply. Every answer sheetsync reads
/// this way fits the first batch (one collection, at most 64 indexes).
fn first_batch(reply: &Document) -> Vec<Bson> {
    reply
        .get_document("cursor")
        .and_then(|cursor| cursor.get_array("firstBatch"))
        .cloned()
        .unwrap_or_default()
}

/// Every index of `collection` but `_id_`, as `createIndexes` takes it.
async fn list_indexes(db: &Database, collection: &str) -> Result<Vec<Document>, StoreError> {
    let reply = db
        .run_command(doc! { "listIndexes": collection })
        .within(Operation::Read, || {
            format!("reading the indexes of `{collection}` (listIndexes)")
        })
        .await?;
    Ok(first_batch(&reply)
        .into_iter()
        .filter_map(|index| match index {
            Bson::Document(mut index) if index.get_str("name") != Ok("_id_") => {
                // `ns` is a stale leftover of old servers; `createIndexes`
                // would store it as is.
                index.remove("ns");
                Some(index)
            }
            _ => None,
        })
        .collect())
}
