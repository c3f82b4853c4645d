//! The setup every daemon test starts from: a fresh database whose views
//! read generated CSVs in a scratch directory, and its config file.

use std::path::{Path, PathBuf};

use mongodb::bson::{Document, doc};

use super::{server_url, test_db};

/// A fresh database whose views read generated CSVs in a scratch directory:
/// the setup every daemon test starts from.
pub struct DaemonFixture {
    pub url: String,
    pub name: String,
    pub db: mongodb::Database,
    pub dir: tempfile::TempDir,
}

impl DaemonFixture {
    /// `views`: (view id, view name, rows, product tag). View `Name` reads
    /// `name.csv` (lower case, spaces removed).
    pub async fn new(label: &str, views: &[(&str, &str, usize, &str)]) -> DaemonFixture {
        let url = server_url();
        let test = test_db(label).await;
        let (name, db) = (test.name, test.db);
        let dir = tempfile::tempdir().unwrap();
        let fixture = DaemonFixture { url, name, db, dir };
        let mut rows = Vec::new();
        for (id, view, count, tag) in views {
            let csv = fixture.csv(view);
            write_csv(&csv, *count, tag);
            rows.push((*id, *view, csv));
        }
        let refs: Vec<(&str, &str, &Path)> = rows.iter().map(|(id, view, csv)| (*id, *view, csv.as_path())).collect();
        insert_views(&fixture.db, &refs).await;
        fixture
    }

    /// The CSV file a view reads.
    pub fn csv(&self, view: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.csv", view.to_lowercase().replace(' ', "")))
    }

    /// A configuration for this database, with `daemon_extra` under `[daemon]`.
    pub fn config(&self, daemon_extra: &str) -> PathBuf {
        write_config(self.dir.path(), &self.url, &self.name, daemon_extra)
    }

    /// A second configuration in its own directory, for a second replica.
    pub fn config_in(&self, dir: &Path, daemon_extra: &str) -> PathBuf {
        write_config(dir, &self.url, &self.name, daemon_extra)
    }
}

/// A CSV of `rows` deals, every product cell set to `tag`.
pub fn write_csv(path: &Path, rows: usize, tag: &str) {
    let mut text = String::from("Client,Stage,Product\n");
    for row in 0..rows {
        text.push_str(&format!("Client {row},B Legals,{tag}\n"));
    }
    // Write then rename, so a reader never sees half a file.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

/// Inserts views `(id, name, csv path)` into the `views` collection.
pub async fn insert_views(db: &mongodb::Database, views: &[(&str, &str, &Path)]) {
    let documents: Vec<Document> = views
        .iter()
        .map(|(id, name, csv)| {
            doc! { "id": *id, "name": *name, "sheet_url": format!("file://{}", csv.display()), "is_master": false }
        })
        .collect();
    if !documents.is_empty() {
        db.collection::<Document>("views").insert_many(documents).await.unwrap();
    }
}

/// Writes a config file: the test database, a port picked by the OS, a
/// schedule that will not fire during a test, and `daemon_extra` lines.
pub fn write_config(dir: &Path, url: &str, db_name: &str, daemon_extra: &str) -> PathBuf {
    let path = dir.join("sheetsync.toml");
    let text = format!(
        "[mongo]\nurl = {url:?}\ndb_name = {db_name:?}\n\n[sources]\nfile_roots = [\"/\"]\n\n[daemon]\nlisten = \"127.0.0.1:0\"\n\
         schedule = \"0 0 0 1 1 *\"\nlease_secs = 6\nretry_min_secs = 1\nretry_max_secs = 2\n{daemon_extra}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}
