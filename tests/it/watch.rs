//! `[watch]`: the daemon follows its sources between scheduled runs. An
//! edited spreadsheet (its Drive `version` moves) or a rewritten CSV file
//! is synced once after the quiet period; an untouched source is not; a
//! spreadsheet Drive will not describe is left to the schedule, with why.

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use serde_json::Value;

use crate::google_sheets::{add_q1_hooli, insert_views, two_spreadsheets};
use crate::harness::daemon_fixture::{DaemonFixture, write_config, write_csv};
use crate::harness::fake_google::{Endpoint, FakeGoogle, Fault};
use crate::harness::process::DaemonProc;
use crate::harness::{ADMIN_TOKEN, eventually, get_json, http, server_url, test_db};

const WATCH: &str = "catch_up = false\n\n[watch]\ninterval_secs = 1\nquiet_secs = 1\nmax_delay_secs = 10";

async fn change_runs(db: &mongodb::Database, view_id: &str) -> u64 {
    db.collection::<Document>("sync_runs")
        .count_documents(doc! { "trigger": "change", "view_id": view_id })
        .await
        .unwrap()
}

async fn all_runs(db: &mongodb::Database) -> u64 {
    db.collection::<Document>("sync_runs")
        .count_documents(doc! {})
        .await
        .unwrap()
}

/// A daemon watching the views of the fake Google's two spreadsheets, with
/// the admin token; ready. The directory holds its config.
async fn google_daemon(label: &str, fake: &FakeGoogle) -> (crate::harness::TestDb, tempfile::TempDir, DaemonProc) {
    let db = test_db(label).await;
    insert_views(&db.db).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server_url(), &db.name, WATCH);
    let key_file = fake.key_file.display().to_string();
    let mut daemon = DaemonProc::start(
        &config,
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", &key_file),
            ("SHEETSYNC_SHEETS_API_URL", &fake.api_url),
            ("SHEETSYNC_DRIVE_API_URL", &fake.api_url),
            ("SHEETSYNC_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    );
    daemon.wait_log("ready");
    (db, dir, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_spreadsheet_is_synced_once_after_the_quiet_period() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    let (db, _dir, daemon) = google_daemon("watch_sheets", &fake).await;
    eventually("the watcher's first look", || async {
        (fake.seen().drive_requests >= 4).then_some(())
    })
    .await;
    assert_eq!(all_runs(&db.db).await, 0, "no change, no sync");
    // The page tells when the sheet was edited (Drive's modifiedTime) and
    // when it is checked next.
    let page = http().get(&daemon.base).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Sheet last edited"), "{page}");
    assert!(page.contains("next check <time"), "{page}");
    assert!(
        page.contains("datetime=\"2026-12-05T10:01:00+00:00\""),
        "Drive's modifiedTime: {page}"
    );

    add_q1_hooli(&fake);
    eventually("the edited spreadsheet to be synced", || async {
        (change_runs(&db.db, "view-signal-1").await == 1).then_some(())
    })
    .await;
    // Well past another quiet period: still one run, and none for the
    // spreadsheet nobody edited.
    let seen = fake.seen().drive_requests;
    eventually("the watcher to look again", || async {
        (fake.seen().drive_requests >= seen + 4).then_some(())
    })
    .await;
    assert_eq!(change_runs(&db.db, "view-signal-1").await, 1);
    assert_eq!(change_runs(&db.db, "view-market-1").await, 0);
    assert_eq!(db.records("sales_records_signal").await.len(), 4, "Q1 Hooli arrived");
    daemon.stop();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spreadsheet_drive_will_not_describe_is_left_to_the_schedule_with_why() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    fake.script(
        crate::google_sheets::SHEET_B,
        Endpoint::DriveFile,
        std::iter::repeat_n(Fault::ApiDisabled, 50),
    );
    let (db, _dir, daemon) = google_daemon("watch_refused", &fake).await;
    let status_url = format!("{}/status", daemon.base);
    let status: Value = eventually("the refusal on /status", || async {
        let status = get_json(&status_url, Some(ADMIN_TOKEN)).await?;
        (status["watch"]["not_watched_count"] == 1).then_some(status)
    })
    .await;
    let message = status["watch"]["not_watched"][0].as_str().unwrap();
    assert!(
        message.contains(crate::google_sheets::SHEET_B) && message.contains("Google Drive API"),
        "{message}"
    );
    assert!(message.contains("only synced on schedule"), "{message}");
    let public: Value = http().get(&status_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(public["watch"]["not_watched_count"], 1);
    assert!(public["watch"].get("not_watched").is_none(), "ids need the token");
    let ready = http().get(format!("{}/readyz", daemon.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "watching is not readiness");
    let ready = ready.text().await.unwrap();
    assert!(
        ready.contains("1 source(s) not watched") && ready.contains("Google Drive API"),
        "{ready}"
    );
    assert!(
        !ready.contains(crate::google_sheets::SHEET_B),
        "no id without the token"
    );
    assert_eq!(
        daemon.count_logs("a source is not watched, only synced on schedule"),
        1,
        "said once"
    );
    daemon.stop();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_csv_is_synced_and_an_untouched_one_is_not() {
    let fixture = DaemonFixture::new(
        "watch_files",
        &[("view-organic", "Organic", 3, "v1"), ("view-signal", "Signal", 2, "v1")],
    )
    .await;
    let config = fixture.config(WATCH);
    let mut daemon = DaemonProc::start(&config, &[]);
    daemon.wait_log("ready");
    // Two looks at least: the baseline, then no change.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(all_runs(&fixture.db).await, 0);
    write_csv(&fixture.csv("Organic"), 5, "v2");
    eventually("the rewritten file to be synced", || async {
        (change_runs(&fixture.db, "view-organic").await == 1).then_some(())
    })
    .await;
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(change_runs(&fixture.db, "view-organic").await, 1);
    assert_eq!(change_runs(&fixture.db, "view-signal").await, 0);
    daemon.stop();
    drop(fixture);
}

/// Commands sent about `collection`: (command name, collection).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// An engine whose client records every command naming `sales_records`.
async fn watched_engine(config: sheetsync::config::Config) -> (sheetsync::engine::Engine, Seen) {
    use mongodb::event::EventHandler;
    use mongodb::event::command::CommandEvent;
    let seen: Seen = Seen::default();
    let log = std::sync::Arc::clone(&seen);
    let mut options = mongodb::options::ClientOptions::parse(&config.mongo_url).await.unwrap();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        let CommandEvent::Started(started) = event else {
            return;
        };
        let name = started.command_name.clone();
        if started.command.get_str(&name) == Ok("sales_records") {
            log.lock().unwrap().push(name);
        }
    }));
    let client = mongodb::Client::with_options(options).unwrap();
    let sources = config.sources().unwrap();
    (
        sheetsync::engine::Engine::new(client.database(&config.db_name), config, sources),
        seen,
    )
}

async fn sync_once(
    engine: &sheetsync::engine::Engine,
    trigger: sheetsync::report::Trigger,
) -> sheetsync::report::SyncReport {
    let mut reports = engine
        .sync(&[], trigger, sheetsync::engine::SyncOptions::default())
        .await
        .unwrap();
    reports.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_source_is_not_read_again_until_the_scheduled_full_compare() {
    use sheetsync::report::{Outcome, Trigger};
    let db = test_db("unchanged_source").await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("organic.csv");
    write_csv(&csv, 3, "v1");
    db.add_view("view-organic", "Organic", &format!("file://{}", csv.display()))
        .await;
    let (engine, seen) = watched_engine(db.config()).await;

    let first = sync_once(&engine, Trigger::Admin).await;
    assert_eq!(first.outcome, Outcome::Success, "{first:#?}");
    assert!(first.source_digest.is_some() && first.target_mark.is_some());
    seen.lock().unwrap().clear();

    let second = sync_once(&engine, Trigger::Change).await;
    assert_eq!(second.outcome, Outcome::Unchanged, "{second:#?}");
    assert_eq!(second.records_written, 3);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|command| command != "find" && command != "insert"),
        "the stored records were neither read nor written: {:?}",
        seen.lock().unwrap()
    );
    let stored: Vec<Document> = db
        .db
        .collection::<Document>("sync_runs")
        .find(doc! { "outcome": "unchanged" })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "recorded as unchanged");

    // Another writer edits a record in place: an identical source still
    // skips, and the next scheduled run, a full compare, puts it right.
    let records = db.db.collection::<Document>("sales_records");
    records
        .update_one(
            doc! { "client": "Client 1" },
            doc! { "$set": { "product": "tampered" } },
        )
        .await
        .unwrap();
    assert_eq!(sync_once(&engine, Trigger::Admin).await.outcome, Outcome::Unchanged);
    let scheduled = sync_once(&engine, Trigger::Schedule).await;
    assert_eq!(scheduled.outcome, Outcome::Success, "{scheduled:#?}");
    let repaired = records.find_one(doc! { "client": "Client 1" }).await.unwrap().unwrap();
    assert_eq!(repaired.get_str("product"), Ok("v1"));

    // A changed source, or a deleted document, is never skipped.
    records.delete_one(doc! { "client": "Client 2" }).await.unwrap();
    assert_eq!(sync_once(&engine, Trigger::Admin).await.outcome, Outcome::Success);
    write_csv(&csv, 4, "v1");
    let changed = sync_once(&engine, Trigger::Admin).await;
    assert_eq!(changed.outcome, Outcome::Success);
    assert_eq!(db.records("sales_records").await.len(), 4);
    db.drop().await;
}

/// A download watched by its `ETag`, asked with `HEAD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_is_watched_by_its_etag() {
    use axum::http::{HeaderMap, Method, header};
    use std::sync::{Arc, Mutex};
    // (version, HEAD requests seen)
    let state = Arc::new(Mutex::new((1u32, 0usize)));
    let served = Arc::clone(&state);
    let app = axum::Router::new().route(
        "/deals.csv",
        axum::routing::any(move |method: Method| {
            let served = Arc::clone(&served);
            async move {
                let mut state = served.lock().unwrap();
                if method == Method::HEAD {
                    state.1 += 1;
                }
                let version = state.0;
                let mut headers = HeaderMap::new();
                headers.insert(header::ETAG, format!("\"v{version}\"").parse().unwrap());
                let rows: String = (0..version + 2)
                    .map(|row| format!("Client {row},B Legals,p\n"))
                    .collect();
                (headers, format!("Client,Stage,Product\n{rows}"))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let db = test_db("watch_download").await;
    db.add_view("view-organic", "Organic", &format!("http://localhost:{port}/deals.csv"))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server_url(), &db.name, WATCH);
    let mut daemon = DaemonProc::start(
        &config,
        &[
            ("SHEETSYNC_HTTP_HOSTS", "localhost"),
            ("SHEETSYNC_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"),
        ],
    );
    daemon.wait_log("ready");
    eventually("two looks", || async { (state.lock().unwrap().1 >= 2).then_some(()) }).await;
    assert_eq!(all_runs(&db.db).await, 0);
    state.lock().unwrap().0 = 2;
    eventually("the changed download to be synced", || async {
        (change_runs(&db.db, "view-organic").await == 1).then_some(())
    })
    .await;
    assert_eq!(db.records("sales_records").await.len(), 4);
    daemon.stop();
    db.drop().await;
}

/// Commands the engine sent about `sales_records`, by name.
fn commands(seen: &Seen) -> Vec<String> {
    seen.lock().unwrap().clone()
}

async fn records_of(db: &mongodb::Database) -> Vec<Document> {
    db.collection::<Document>("sales_records")
        .find(doc! {})
        .sort(doc! { "client": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_row_is_written_in_place_in_a_transaction() {
    use sheetsync::report::{Outcome, Trigger};
    // The shared test server runs standalone: there a change swaps.
    let standalone = test_db("in_place_standalone").await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("organic.csv");
    write_csv(&csv, 20, "v1");
    let source = format!("file://{}", csv.display());
    standalone.add_view("view-organic", "Organic", &source).await;
    let (engine, _) = watched_engine(standalone.config()).await;
    assert_eq!(sync_once(&engine, Trigger::Cli).await.write_path, Some("swap"));
    let edit = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&csv).unwrap().replace(from, to);
        std::fs::write(&csv, text).unwrap();
    };
    edit("Client 7,B Legals,v1", "Client 7,B Legals,v2");
    assert_eq!(
        sync_once(&engine, Trigger::Cli).await.write_path,
        Some("swap"),
        "no transactions, no in-place writes"
    );
    standalone.drop().await;

    // A replica set has transactions.
    write_csv(&csv, 20, "v1");
    let server = crate::harness::own_server::OwnServer::start_replica_set();
    let config = crate::harness::config(&server.url, "in_place");
    let db = config.connect().await.unwrap();
    db.collection::<Document>("views")
        .insert_one(doc! { "id": "view-organic", "name": "Organic", "sheet_url": &source, "is_master": false })
        .await
        .unwrap();
    let (engine, seen) = watched_engine(config).await;
    let first = sync_once(&engine, Trigger::Cli).await;
    assert_eq!(first.outcome, Outcome::Success, "{first:#?}");
    assert_eq!(first.write_path, Some("swap"), "a first load swaps");
    let ids_before: Vec<String> = records_of(&db)
        .await
        .iter()
        .map(|record| record.get_str("id").unwrap().to_owned())
        .collect();
    let mark_before = first.target_mark.clone().unwrap();

    // One row changed out of 20.
    edit("Client 7,B Legals,v1", "Client 7,B Legals,v2");
    seen.lock().unwrap().clear();
    let second = sync_once(&engine, Trigger::Cli).await;
    assert_eq!(second.outcome, Outcome::Success, "{second:#?}");
    assert_eq!(second.write_path, Some("in_place"), "{second:#?}");
    assert_eq!((second.changes.updated, second.changes.unchanged), (1, 19));
    let sent = commands(&seen);
    assert_eq!(
        sent.iter().filter(|command| *command == "update").count(),
        1,
        "one update command: {sent:?}"
    );
    assert!(
        !sent.iter().any(|command| command == "insert"),
        "no staging fill: {sent:?}"
    );
    let records = records_of(&db).await;
    let ids_after: Vec<String> = records
        .iter()
        .map(|record| record.get_str("id").unwrap().to_owned())
        .collect();
    assert_eq!(ids_after, ids_before, "ids stay");
    let seven = records
        .iter()
        .find(|record| record.get_str("client") == Ok("Client 7"))
        .unwrap();
    assert_eq!(seven.get_str("product"), Ok("v2"));
    let uuid = |mark: &str| mark.split(" / ").next().unwrap().to_owned();
    assert_eq!(
        uuid(second.target_mark.as_deref().unwrap()),
        uuid(&mark_before),
        "the same collection, not a renamed one"
    );

    // A removed row and an added one: in place too (2 of 20 is a tenth).
    edit("Client 3,B Legals,v1\n", "");
    edit(
        "Client 4,B Legals,v1\n",
        "Client 4,B Legals,v1\nClient 99,B Legals,v1\n",
    );
    let third = sync_once(&engine, Trigger::Cli).await;
    assert_eq!(third.write_path, Some("in_place"), "{third:#?}");
    assert_eq!((third.changes.inserted, third.changes.removed), (1, 1));
    let clients: Vec<String> = records_of(&db)
        .await
        .iter()
        .map(|record| record.get_str("client").unwrap().to_owned())
        .collect();
    assert!(clients.contains(&"Client 99".to_owned()) && !clients.contains(&"Client 3".to_owned()));
    assert_eq!(clients.len(), 20);

    // Many changes: a swap.
    write_csv(&csv, 20, "v3");
    assert_eq!(sync_once(&engine, Trigger::Cli).await.write_path, Some("swap"));
    server.stop();
}

/// A write failing inside the in-place transaction rolls all of it back:
/// the view is whole as before, and the next refresh completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_inside_the_in_place_transaction_leaves_the_old_view_whole() {
    use sheetsync::report::{Outcome, Trigger};
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("organic.csv");
    write_csv(&csv, 20, "v1");
    let server = crate::harness::own_server::OwnServer::start_replica_set();
    let app_name = "in-place-failpoint";
    let separator = if server.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}appName={app_name}", server.url);
    let config = crate::harness::config(&url, "in_place_cut");
    let db = config.connect().await.unwrap();
    let source = format!("file://{}", csv.display());
    db.collection::<Document>("views")
        .insert_one(doc! { "id": "view-organic", "name": "Organic", "sheet_url": &source, "is_master": false })
        .await
        .unwrap();
    // One statement per command, so the failure falls between two writes.
    let mut config = config;
    config.sync.insert_batch_size = 1;
    let (engine, _) = watched_engine(config).await;
    assert_eq!(sync_once(&engine, Trigger::Cli).await.write_path, Some("swap"));
    let before = records_of(&db).await;

    let text = std::fs::read_to_string(&csv)
        .unwrap()
        .replace("Client 3,B Legals,v1", "Client 3,B Legals,v2")
        .replace("Client 4,B Legals,v1", "Client 4,B Legals,v2");
    std::fs::write(&csv, text).unwrap();
    let admin = db.client().database("admin");
    admin
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": { "skip": 1 },
            "data": { "failCommands": ["update"], "errorCode": 2, "appName": app_name },
        })
        .await
        .unwrap();
    let failed = sync_once(&engine, Trigger::Cli).await;
    admin
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
        .await
        .unwrap();
    assert_eq!(failed.outcome, Outcome::Failed, "{failed:#?}");
    assert!(
        failed.error.as_deref().unwrap_or_default().contains("rolled back"),
        "{failed:#?}"
    );
    assert_eq!(records_of(&db).await, before, "the first update was rolled back too");

    // Completed while a reader polls: it sees the old pair or the new one,
    // never one of each.
    let polling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (db, polling) = (db.clone(), std::sync::Arc::clone(&polling));
        tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            while polling.load(std::sync::atomic::Ordering::SeqCst) {
                let records = records_of(&db).await;
                let pair: Vec<String> = ["Client 3", "Client 4"]
                    .iter()
                    .map(|client| {
                        records
                            .iter()
                            .find(|record| record.get_str("client") == Ok(client))
                            .and_then(|record| record.get_str("product").ok())
                            .unwrap_or("missing")
                            .to_owned()
                    })
                    .collect();
                seen.insert(pair);
            }
            seen
        })
    };
    let again = sync_once(&engine, Trigger::Cli).await;
    polling.store(false, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let old = vec!["v1".to_owned(), "v1".to_owned()];
    let new = vec!["v2".to_owned(), "v2".to_owned()];
    assert!(
        seen.iter().all(|pair| *pair == old || *pair == new),
        "a reader saw a mix: {seen:?}"
    );
    assert_eq!((again.outcome, again.write_path), (Outcome::Success, Some("in_place")));
    let records = records_of(&db).await;
    let product = |client: &str| {
        records
            .iter()
            .find(|record| record.get_str("client") == Ok(client))
            .and_then(|record| record.get_str("product").ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        (product("Client 3"), product("Client 4")),
        ("v2".to_owned(), "v2".to_owned())
    );
    server.stop();
}
