//! Loads the demo views (`config/demo/views.json`) into a database, as the
//! dashboard's admin UI would, with each `sheet_url` made an absolute
//! `file://` URL next to the JSON file. Used by `scripts/demo`.
//!
//! With two more arguments it also loads the customer-success demo's users
//! (`config/demo/users.json`) into that app's database, so that the demo's
//! customer sync has owners to resolve.
//!
//! Usage: load_demo_views MONGO_URL DB_NAME config/demo/views.json [CS_DB_NAME config/demo/users.json]

use std::path::Path;

use anyhow::{Context, bail};
use mongodb::bson::{self, Bson, Document, doc};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, db_name, views_file, users) = match args.as_slice() {
        [url, db_name, views_file] => (url, db_name, views_file, None),
        [url, db_name, views_file, cs_db, users_file] => (url, db_name, views_file, Some((cs_db, users_file))),
        _ => bail!("usage: load_demo_views MONGO_URL DB_NAME VIEWS_JSON [CS_DB_NAME USERS_JSON]"),
    };
    sheetsync::tls::install_crypto_provider();
    let views_file = Path::new(views_file)
        .canonicalize()
        .context("locating the views file")?;
    let folder = views_file.parent().context("the views file has a folder")?;
    let text = std::fs::read_to_string(&views_file).context("reading the views file")?;
    let views: Vec<serde_json::Value> = serde_json::from_str(&text).context("parsing the views file")?;

    let client = mongodb::Client::with_uri_str(url).await.context("connecting")?;
    let collection = client.database(db_name).collection::<Document>("views");
    for view in views {
        let mut document = bson::to_document(&view).context("converting a view")?;
        if let Ok(file) = document.get_str("sheet_url") {
            let absolute = format!("file://{}", folder.join(file).display());
            document.insert("sheet_url", absolute);
        }
        document.insert("created_at", Bson::DateTime(bson::DateTime::now()));
        let id = document.get_str("id").context("every view has an id")?.to_owned();
        collection
            .replace_one(doc! { "id": &id }, document)
            .upsert(true)
            .await
            .with_context(|| format!("writing view {id}"))?;
        println!("view {id} loaded");
    }
    if let Some((cs_db, users_file)) = users {
        let text = std::fs::read_to_string(users_file).context("reading the users file")?;
        let users: Vec<serde_json::Value> = serde_json::from_str(&text).context("parsing the users file")?;
        let collection = client.database(cs_db).collection::<Document>("users");
        for user in users {
            let document = bson::to_document(&user).context("converting a user")?;
            let email = document
                .get_str("email")
                .context("every user has an e-mail")?
                .to_owned();
            collection
                .replace_one(doc! { "email": &email }, document)
                .upsert(true)
                .await
                .with_context(|| format!("writing user {email}"))?;
            println!("user {email} loaded into {cs_db}");
        }
    }
    Ok(())
}
