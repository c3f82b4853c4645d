//! The dashboard's `views` collection, as stored: another application (its
//! admin UI) writes it, so what is read here is untrusted input that
//! `syncs::views` checks field by field.

use futures_util::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Document, doc};

use super::{Operation, StoreError, Within};

pub const VIEWS_COLLECTION: &str = "views";

/// Every view document, by name.
pub async fn read_all(db: &Database) -> Result<Vec<Document>, StoreError> {
    let describe = || format!("reading the `{VIEWS_COLLECTION}` collection");
    db.collection::<Document>(VIEWS_COLLECTION)
        .find(doc! {})
        .sort(doc! { "name": 1 })
        .within(Operation::Read, describe)
        .await?
        .try_collect()
        .within(Operation::Read, describe)
        .await
}
