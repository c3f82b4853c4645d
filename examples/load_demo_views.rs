//! Loads the demo views (`config/demo/views.json`) into a database, as the
//! dashboard's admin UI would, with each `sheet_url` made an absolute
//! `file://` URL next to the JSON file. Used by `scripts/demo`.
//!
//! Usage: load_demo_views MONGO_URL DB_NAME config/demo/views.json

use std::path::Path;

use anyhow::{Context, bail};
use mongodb::bson::{self, Bson, Document, doc};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, db_name, views_file] = args.as_slice() else {
        bail!("usage: load_demo_views MONGO_URL DB_NAME VIEWS_JSON");
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
    Ok(())
}
