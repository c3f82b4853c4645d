//! Sources named in `views` are untrusted: what the policy refuses is never
//! read, and a refusal says which setting would allow the source. Real
//! server, real HTTP downloads from a local server.

use std::path::Path;

use crate::harness::{TestDb, engine_for, test_db};
use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use mongodb::bson::{Document, doc};
use sheetsync::config::Config;
use sheetsync::engine::SyncOptions;
use sheetsync::report::{Outcome, SyncReport, Trigger};

/// A local HTTP server: `/a.csv` (a small export), `/big.csv` and
/// `/to-metadata` (a redirect to the cloud metadata address).
async fn csv_server() -> String {
    let app = Router::new()
        .route("/a.csv", get(|| async { "Client,Stage\nAcme,Lost\nGlobex,Lost\n" }))
        .route(
            "/big.csv",
            get(|| async { format!("Client,Stage\n{}", "Acme,Lost\n".repeat(100)) }),
        )
        .route(
            "/to-metadata",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://localhost:{port}")
}

/// The test database's configuration with a `[sources]` section.
fn config(db: &TestDb, sources: &str) -> Config {
    let text = format!("[sources]\n{sources}\n");
    let url = crate::harness::server_url();
    let name = db.name.clone();
    Config::resolve(Some((&text, Path::new("test.toml"))), move |variable| match variable {
        "MONGO_URL" => Some(url.clone()),
        "DB_NAME" => Some(name.clone()),
        _ => None,
    })
    .unwrap()
}

async fn sync_one(db: &TestDb, config: Config, source: &str) -> SyncReport {
    db.db
        .collection::<Document>("views")
        .delete_many(doc! {})
        .await
        .unwrap();
    db.add_view("view-organic", "Organic", source).await;
    let engine = engine_for(config).await;
    let mut reports = engine.sync(&[], Trigger::Cli, SyncOptions::default()).await.unwrap();
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

fn refused(report: &SyncReport, expected: &str) {
    assert_eq!(report.outcome, Outcome::Failed, "{report:#?}");
    let error = report.error.as_deref().unwrap();
    assert!(error.contains(expected), "{expected:?} not in {error:?}");
}

#[tokio::test]
async fn files_are_read_only_under_the_configured_roots() {
    let db = test_db("policy_files").await;
    let root = tempfile::tempdir().unwrap();
    let export = root.path().join("export.csv");
    std::fs::write(&export, "Client,Stage\nAcme,Lost\n").unwrap();
    let roots = format!("file_roots = [{:?}]", root.path().display().to_string());

    let report = sync_one(&db, config(&db, &roots), "file:///etc/passwd").await;
    refused(&report, "is outside the directories sheetsync may read");
    refused(&report, "list its directory in [sources] file_roots");
    assert!(
        !format!("{report:?}").contains("root:"),
        "nothing of the file is quoted"
    );
    let escape = format!("{}/../../etc/passwd", root.path().display());
    refused(
        &sync_one(&db, config(&db, &roots), &escape).await,
        "[sources] file_roots",
    );
    refused(
        &sync_one(&db, config(&db, ""), &format!("file://{}", export.display())).await,
        "file_roots",
    );

    let allowed = sync_one(&db, config(&db, &roots), &format!("file://{}", export.display())).await;
    assert_eq!(allowed.outcome, Outcome::Success, "{allowed:#?}");
    assert_eq!(db.count("sales_records").await, 1);
    db.drop().await;
}

#[tokio::test]
async fn downloads_only_from_listed_hosts_never_internal_addresses() {
    let db = test_db("policy_http").await;
    let base = csv_server().await;
    let csv = format!("{base}/a.csv");

    refused(
        &sync_one(&db, config(&db, ""), "http://169.254.169.254/latest/meta-data/").await,
        "add its network to [sources] allowed_networks",
    );
    refused(
        &sync_one(&db, config(&db, ""), &csv).await,
        "add it to [sources] http_hosts",
    );
    // Listed, but `localhost` resolves to loopback: refused once resolved.
    let listed = "http_hosts = [\"localhost\"]";
    refused(&sync_one(&db, config(&db, listed), &csv).await, "allowed_networks");

    let trusted = "http_hosts = [\"localhost\"]\nallowed_networks = [\"127.0.0.0/8\", \"::1/128\"]";
    let downloaded = sync_one(&db, config(&db, trusted), &csv).await;
    assert_eq!(downloaded.outcome, Outcome::Success, "{downloaded:#?}");
    assert_eq!(db.count("sales_records").await, 2);

    // Every redirect is checked too.
    refused(
        &sync_one(&db, config(&db, trusted), &format!("{base}/to-metadata")).await,
        "redirected to a refused address",
    );
    // Downloads are capped.
    let capped = format!("{trusted}\nmax_download_bytes = 200");
    refused(
        &sync_one(&db, config(&db, &capped), &format!("{base}/big.csv")).await,
        "larger than [sources] max_download_bytes (200 bytes)",
    );
    assert_eq!(db.count("sales_records").await, 2, "refusals left the data as it was");
    db.drop().await;
}

/// A symlink out of a root, placed before a sync or swapped in for a
/// directory after the policy checked the path: refused either way, and
/// nothing outside is read.
#[tokio::test]
async fn symlinks_out_of_a_root_are_refused_even_when_swapped_in_after_the_check() {
    use sheetsync::source::policy::{SourcePolicy, SourcesSettings};
    use sheetsync::source::{SourceError, SourceSpec, Sources};
    use std::os::unix::fs::symlink;

    let db = test_db("policy_symlinks").await;
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    let outside = scratch.path().join("outside");
    std::fs::create_dir_all(root.join("exports")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(root.join("exports/deals.csv"), "Client,Stage\nAcme,Lost\n").unwrap();
    std::fs::write(
        outside.join("deals.csv"),
        "Client,Stage\nSECRET Corp,Lost\nOther,Lost\n",
    )
    .unwrap();
    symlink(outside.join("deals.csv"), root.join("link.csv")).unwrap();
    let roots = format!("file_roots = [{:?}]", root.display().to_string());

    let link = sync_one(
        &db,
        config(&db, &roots),
        &format!("file://{}", root.join("link.csv").display()),
    )
    .await;
    refused(&link, "is outside the directories sheetsync may read");

    let inside = format!("file://{}", root.join("exports/deals.csv").display());
    let first = sync_one(&db, config(&db, &roots), &inside).await;
    assert_eq!(first.outcome, Outcome::Success, "{first:#?}");
    let before = db.records("sales_records").await;

    // Between two syncs the directory becomes a symlink out.
    std::fs::remove_dir_all(root.join("exports")).unwrap();
    symlink(&outside, root.join("exports")).unwrap();
    let second = sync_one(&db, config(&db, &roots), &inside).await;
    refused(&second, "is outside the directories sheetsync may read");
    assert!(!format!("{second:?}").contains("SECRET"), "nothing outside is read");
    assert_eq!(db.records("sales_records").await, before, "the view keeps its data");

    // Swapped between the check and the open: the open itself refuses.
    std::fs::remove_file(root.join("exports")).unwrap();
    std::fs::create_dir_all(root.join("exports")).unwrap();
    std::fs::write(root.join("exports/deals.csv"), "Client,Stage\nAcme,Lost\n").unwrap();
    let settings = SourcesSettings {
        file_roots: vec![root.clone()],
        ..SourcesSettings::default()
    };
    let checked = SourcePolicy::new(&settings)
        .admit(SourceSpec::File {
            path: root.join("exports/deals.csv"),
            sheet_name: None,
        })
        .unwrap();
    std::fs::remove_dir_all(root.join("exports")).unwrap();
    symlink(&outside, root.join("exports")).unwrap();
    let sources = Sources::new(&settings, Default::default(), std::time::Duration::from_secs(5)).unwrap();
    let error = sources.fetch(&checked).await.expect_err("the swapped path is refused");
    assert!(matches!(error, SourceError::Refused(_)), "{error}");
    db.drop().await;
}
