//! The sync engine end to end against a real MongoDB wire-protocol server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::harness::{fixture_url, generated_csv, test_db, write_source};
use chrono::{TimeZone, Utc};
use mongodb::bson::{Bson, DateTime as BsonDateTime, Document, doc};
use sheetsync::engine::SyncOptions;
use sheetsync::report::{Changes, Outcome, SyncReport, Trigger};

fn date(y: i32, m: u32, d: u32) -> Bson {
    Bson::DateTime(BsonDateTime::from_millis(
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap().timestamp_millis(),
    ))
}

/// `sales_records` fields as the schema document lists them (without `_id`).
const SCHEMA_FIELDS: [&str; 20] = [
    "id",
    "month",
    "discovery_date",
    "client",
    "hubspot_link",
    "stage",
    "relevance",
    "show_noshow",
    "poa_date",
    "expected_mrr",
    "expected_arr",
    "pipeline",
    "type_of_deal",
    "bdr",
    "type_of_source",
    "product",
    "owner",
    "supporters",
    "billing_start",
    "created_at",
];

fn only(reports: Vec<SyncReport>) -> SyncReport {
    assert_eq!(reports.len(), 1, "{reports:#?}");
    reports.into_iter().next().unwrap()
}

/// `--force`: apply even past the shrink and rejected-rows guards.
fn forced() -> SyncOptions {
    SyncOptions {
        force: true,
        ..SyncOptions::default()
    }
}

/// `--dry-run`: read, map and compare, write nothing.
fn dry_run() -> SyncOptions {
    SyncOptions {
        dry_run: true,
        ..SyncOptions::default()
    }
}

async fn sync_all(db: &crate::harness::TestDb, options: SyncOptions) -> Vec<SyncReport> {
    db.engine()
        .await
        .sync(&[], Trigger::Cli, options)
        .await
        .expect("sync cycle runs")
}

fn find<'a>(records: &'a [Document], client: &str, stage: &str) -> &'a Document {
    records
        .iter()
        .find(|record| record.get_str("client") == Ok(client) && record.get_str("stage") == Ok(stage))
        .unwrap_or_else(|| panic!("no record {client}/{stage} in {records:#?}"))
}

#[tokio::test]
async fn google_sheets_csv_export_becomes_schema_documents() {
    let db = test_db("gsheet_fixture").await;
    db.add_view("view-signal-1", "Signal", &fixture_url("google-sheets-export.csv"))
        .await;

    let report = only(sync_all(&db, SyncOptions::default()).await);
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    assert_eq!(
        (report.rows_read, report.records_written, report.duplicates_merged),
        (7, 6, 1)
    );
    assert_eq!(report.blank_rows, 1);
    assert!(report.rejected.is_empty() && report.warnings.is_empty(), "{report:#?}");

    let records = db.records("sales_records_signal").await;
    assert_eq!(records.len(), 6);
    let acme = find(&records, "acme corp", "B Legals");
    assert_eq!(acme.get("expected_mrr"), Some(&Bson::Double(5500.0)));
    assert_eq!(acme.get("discovery_date"), Some(&date(2025, 2, 5)));
    assert_eq!(acme.get_str("month"), Ok("2025-02"));
    let globex = find(&records, "Globex", "D POA Booked");
    assert_eq!(globex.get("poa_date"), Some(&Bson::Null));
    assert_eq!(globex.get("expected_mrr"), Some(&Bson::Double(1250.5)));
    assert_eq!(globex.get("expected_arr"), Some(&Bson::Double(15006.0)));
    assert_eq!(globex.get_str("show_noshow"), Ok("Noshow"));
    let initech = find(&records, "Initech", "F Inbox");
    assert_eq!(initech.get_str("type_of_source"), Ok("Upsell/Cross-sell"));
    assert_eq!(initech.get("hubspot_link"), Some(&Bson::Null));
    for record in &records {
        let fields: Vec<&str> = record.keys().map(String::as_str).collect();
        assert_eq!(fields, SCHEMA_FIELDS, "exactly the schema's fields, in its order");
        uuid::Uuid::parse_str(record.get_str("id").unwrap()).expect("id is a UUID");
        assert!(matches!(record.get("created_at"), Some(Bson::DateTime(_))));
        for money in ["expected_mrr", "expected_arr", "pipeline"] {
            assert!(
                matches!(record.get(money), Some(Bson::Double(_) | Bson::Null)),
                "{money}: {record:?}"
            );
        }
    }
    db.drop().await;
}

#[tokio::test]
async fn french_excel_export_becomes_schema_documents() {
    let db = test_db("excel_fixture").await;
    db.add_view("view-market-1", "Market", &fixture_url("excel-fr-export.csv"))
        .await;

    let report = only(sync_all(&db, SyncOptions::default()).await);
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    let records = db.records("sales_records_market").await;
    assert_eq!(records.len(), 3);
    let societe = find(&records, "Société Générale", "D POA Booked");
    assert_eq!(societe.get_str("month"), Ok("2025-01"));
    assert_eq!(societe.get("expected_mrr"), Some(&Bson::Double(4500.0)));
    assert_eq!(societe.get("discovery_date"), Some(&date(2025, 1, 8)));
    assert_eq!(societe.get_str("product"), Ok("Audit SEO"));
    assert_eq!(societe.get_str("relevance"), Ok("Haute"));
    let chateau = find(&records, "Château Margaux", "F Inbox");
    assert_eq!(chateau.get_str("month"), Ok("2025-02"));
    assert_eq!(chateau.get("expected_mrr"), Some(&Bson::Null));
    db.drop().await;
}

#[tokio::test]
async fn ids_and_created_at_survive_refreshes() {
    let db = test_db("stable_ids").await;
    let dir = tempfile::tempdir().unwrap();
    let first = "Client,Stage,Expected MRR\nAcme,B Legals,100\nGlobex,F Inbox,200\n";
    let url = write_source(dir.path(), "view.csv", first.as_bytes());
    db.add_view("view-organic", "Organic", &url).await;
    only(sync_all(&db, SyncOptions::default()).await);
    let before = db.records("sales_records").await;

    // Same deals, respelled and reordered, one changed, one new.
    let second = "Client,Stage,Expected MRR\nNew Co,Lost,1\n  GLOBEX ,inbox,200\nacme,b - legals,150\n";
    write_source(dir.path(), "view.csv", second.as_bytes());
    let report = only(sync_all(&db, SyncOptions::default()).await);
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    assert_eq!(
        (report.changes.inserted, report.changes.updated, report.changes.removed),
        (1, 2, 0)
    );
    let after = db.records("sales_records").await;
    for (client_before, client_after, stage) in [("Acme", "acme", "B Legals"), ("Globex", "GLOBEX", "F Inbox")] {
        let (old, new) = (find(&before, client_before, stage), find(&after, client_after, stage));
        assert_eq!(old.get_str("id"), new.get_str("id"), "{stage} keeps its id");
        assert_eq!(old.get("created_at"), new.get("created_at"), "{stage} keeps created_at");
    }
    assert_eq!(
        find(&after, "acme", "B Legals").get("expected_mrr"),
        Some(&Bson::Double(150.0))
    );

    // An unchanged source leaves the collection as it is.
    let report = only(sync_all(&db, SyncOptions::default()).await);
    assert!(!report.swapped && report.changes.unchanged == 3, "{report:#?}");
    assert_eq!(db.records("sales_records").await, after);
    db.drop().await;
}

/// Deal identity across refreshes, on a real server: stage moves, a renamed
/// client with the same HubSpot deal, ambiguous moves, delete then re-add.
#[tokio::test]
async fn deal_ids_survive_stage_moves_and_renames() {
    let db = test_db("deal_identity").await;
    let dir = tempfile::tempdir().unwrap();
    let sheet = |rows: &str| format!("Client,Stage,Hubspot Link\n{rows}");
    let url = write_source(
        dir.path(),
        "v.csv",
        sheet(
            "Globex,D POA Booked,\n\
             Acme Corp,B Legals,https://app.hubspot.com/deals/42\n\
             Initech,F Inbox,\nInitech,Lost,\n\
             Umbrella,A Closed,\n",
        )
        .as_bytes(),
    );
    db.add_view("view-organic", "Organic", &url).await;
    only(sync_all(&db, SyncOptions::default()).await);
    let before = db.records("sales_records").await;
    let id_of = |records: &[Document], client: &str, stage: &str| {
        find(records, client, stage).get_str("id").unwrap().to_owned()
    };

    write_source(
        dir.path(),
        "v.csv",
        sheet(
            "Globex,C Proposal sent,\n\
             ACME Corporation,A Closed,https://app.hubspot.com/contacts/9/record/0-3/42\n\
             Initech,C Proposal sent,\nInitech,A Closed,\n",
        )
        .as_bytes(),
    );
    let report = only(sync_all(&db, forced()).await);
    assert!(report.succeeded(), "{report:#?}");
    let after = db.records("sales_records").await;
    assert_eq!(
        id_of(&after, "Globex", "C Proposal sent"),
        id_of(&before, "Globex", "D POA Booked")
    );
    assert_eq!(
        find(&after, "Globex", "C Proposal sent").get("created_at"),
        find(&before, "Globex", "D POA Booked").get("created_at")
    );
    assert_eq!(
        id_of(&after, "ACME Corporation", "A Closed"),
        id_of(&before, "Acme Corp", "B Legals")
    );
    let initech_new = [
        id_of(&after, "Initech", "C Proposal sent"),
        id_of(&after, "Initech", "A Closed"),
    ];
    assert_eq!(
        initech_new,
        [
            sheetsync::apply::swap::identity::stable_id("view-organic", "initech\u{1f}c proposal sent"),
            sheetsync::apply::swap::identity::stable_id("view-organic", "initech\u{1f}a closed"),
        ],
        "no guess between two old and two new Initech deals"
    );
    assert_eq!(
        (report.changes.moved, report.changes.inserted, report.changes.removed),
        (2, 2, 3),
        "{report:#?}"
    );
    assert!(
        report
            .moves
            .contains(&"Globex: D POA Booked -> C Proposal sent, id kept".to_owned()),
        "{:?}",
        report.moves
    );
    assert_eq!(report.ambiguous.len(), 1, "{:?}", report.ambiguous);
    assert!(
        report.ambiguous[0].starts_with("Initech: 2 old and 2 new"),
        "{:?}",
        report.ambiguous
    );
    let text = sheetsync::report::render_text(std::slice::from_ref(&report));
    assert!(text.contains("2 moved"), "{text}");
    assert!(
        text.contains("moved: Globex: D POA Booked -> C Proposal sent, id kept"),
        "{text}"
    );
    let run = db
        .db
        .collection::<Document>("sync_runs")
        .find_one(doc! { "run_id": &report.run_id })
        .await
        .unwrap()
        .unwrap();
    let moved = run.get_document("changes").unwrap().get("moved");
    assert!(
        matches!(moved, Some(Bson::Int32(2) | Bson::Int64(2))),
        "sync_runs counts moves: {run:?}"
    );

    // Umbrella was deleted from the sheet; added again, it gets its id back.
    write_source(
        dir.path(),
        "v.csv",
        sheet(
            "Globex,C Proposal sent,\nACME Corporation,A Closed,https://app.hubspot.com/deals/42\nUmbrella,A Closed,\n",
        )
        .as_bytes(),
    );
    only(sync_all(&db, forced()).await);
    let again = db.records("sales_records").await;
    assert_eq!(
        id_of(&again, "Umbrella", "A Closed"),
        id_of(&before, "Umbrella", "A Closed")
    );
    db.drop().await;
}

#[tokio::test]
async fn ids_are_derived_from_view_client_and_stage() {
    let db = test_db("derived_ids").await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(dir.path(), "v.csv", b"Client,Stage\nAcme,Lost\n");
    db.add_view("view-organic", "Organic", &url).await;
    only(sync_all(&db, SyncOptions::default()).await);
    let id = db.records("sales_records").await[0].get_str("id").unwrap().to_owned();
    // Even a collection emptied by hand gets the same id back.
    db.db
        .collection::<Document>("sales_records")
        .delete_many(doc! {})
        .await
        .unwrap();
    only(sync_all(&db, SyncOptions::default()).await);
    assert_eq!(db.records("sales_records").await[0].get_str("id").unwrap(), id);
    assert_eq!(
        id,
        sheetsync::apply::swap::identity::stable_id("view-organic", "acme\u{1f}lost")
    );
    db.drop().await;
}

#[tokio::test]
async fn readers_never_see_a_partial_collection() {
    let db = test_db("atomic_swap").await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(dir.path(), "v.csv", generated_csv(1500, "Lost", 1).as_bytes());
    db.add_view("view-organic", "Organic", &url).await;
    only(sync_all(&db, SyncOptions::default()).await);
    assert_eq!(db.count("sales_records").await, 1500);

    write_source(dir.path(), "v.csv", generated_csv(2500, "Lost", 2).as_bytes());
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (collection, done) = (db.db.collection::<Document>("sales_records"), done.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !done.load(Ordering::SeqCst) {
                seen.push(collection.count_documents(doc! {}).await.expect("count while syncing"));
            }
            seen
        })
    };
    let report = only(sync_all(&db, SyncOptions::default()).await);
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|count| *count == 1500 || *count == 2500),
        "partial counts seen: {seen:?}"
    );
    assert_eq!(db.count("sales_records").await, 2500);
    db.drop().await;
}

#[tokio::test]
async fn failure_while_building_leaves_the_old_data() {
    let db = test_db("fail_midway").await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(dir.path(), "v.csv", generated_csv(30, "Lost", 1).as_bytes());
    db.add_view("view-organic", "Organic", &url).await;
    only(sync_all(&db, SyncOptions::default()).await);
    let before = db.records("sales_records").await;

    // The server fails the second insert batch of this client only (the fail
    // point is scoped by appName, so parallel tests are unaffected).
    let app_name = format!("failpoint-{}", db.name);
    let mut config = crate::harness::config(&crate::harness::url_with(&format!("appName={app_name}")), &db.name);
    config.sync.insert_batch_size = 10;
    let engine = crate::harness::engine_for(config).await;
    db.db
        .client()
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": { "skip": 1 },
            "data": { "failCommands": ["insert"], "errorCode": 2, "appName": &app_name },
        })
        .await
        .expect("the test server accepts fail points (scripts/test starts it with --enable-test-commands)");
    write_source(dir.path(), "v.csv", generated_csv(30, "Lost", 2).as_bytes());
    let report = only(engine.sync(&[], Trigger::Cli, SyncOptions::default()).await.unwrap());
    db.db
        .client()
        .database("admin")
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
        .await
        .unwrap();

    assert_eq!(report.outcome, Outcome::Failed);
    let error = report.error.unwrap();
    assert!(error.contains("writing records to staging collection"), "{error}");
    assert_eq!(db.records("sales_records").await, before, "old data untouched");
    let names = db.db.list_collection_names().await.unwrap();
    assert!(
        !names.iter().any(|name| name.starts_with("_sheetsync_staging")),
        "staging dropped: {names:?}"
    );
    db.drop().await;
}

#[tokio::test]
async fn leftover_staging_collections_are_cleaned_up() {
    let db = test_db("leftover").await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(dir.path(), "v.csv", b"Client,Stage\nAcme,Lost\n");
    db.add_view("view-organic", "Organic", &url).await;
    let leftover = "_sheetsync_staging.sales_records.deadbeef";
    db.db
        .collection::<Document>(leftover)
        .insert_one(doc! { "x": 1 })
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let running = format!("_sheetsync_staging.sales_records.{now}.otherrun");
    db.db
        .collection::<Document>(&running)
        .insert_one(doc! { "x": 1 })
        .await
        .unwrap();
    let other_view = "_sheetsync_staging.sales_records_signal.deadbeef";
    db.db
        .collection::<Document>(other_view)
        .insert_one(doc! { "x": 1 })
        .await
        .unwrap();

    only(sync_all(&db, SyncOptions::default()).await);
    let names = db.db.list_collection_names().await.unwrap();
    assert!(!names.contains(&leftover.to_owned()), "{names:?}");
    assert!(
        names.contains(&other_view.to_owned()),
        "another view's staging is not ours to drop"
    );
    assert!(
        names.contains(&running),
        "a fresh staging may belong to a sync running elsewhere"
    );
    db.drop().await;
}

#[tokio::test]
async fn shrink_guard_refuses_then_force_applies() {
    let db = test_db("shrink").await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(dir.path(), "v.csv", generated_csv(10, "Lost", 1).as_bytes());
    db.add_view("view-organic", "Organic", &url).await;
    only(sync_all(&db, SyncOptions::default()).await);
    let before = db.records("sales_records").await;
    let metadata_before = db.records("data_metadata").await;

    for (csv, expected) in [
        (generated_csv(4, "Lost", 1), "below sync.min_ratio = 0.5"),
        (
            crate::harness::HEADER.to_owned() + "\n",
            "the source yielded no records",
        ),
    ] {
        write_source(dir.path(), "v.csv", csv.as_bytes());
        let report = only(sync_all(&db, SyncOptions::default()).await);
        assert_eq!(report.outcome, Outcome::Failed);
        let error = report.error.unwrap();
        assert!(error.contains(expected) && error.contains("--force"), "{error}");
        assert_eq!(db.records("sales_records").await, before);
        assert_eq!(
            db.records("data_metadata").await,
            metadata_before,
            "no metadata update on refusal"
        );
    }

    // Exactly at the ratio is allowed; below it only with --force.
    write_source(dir.path(), "v.csv", generated_csv(4, "Lost", 1).as_bytes());
    let report = only(sync_all(&db, forced()).await);
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    assert_eq!(report.changes.removed, 6);
    assert_eq!(db.count("sales_records").await, 4);
    db.drop().await;
}

#[tokio::test]
async fn data_metadata_matches_the_schema() {
    let db = test_db("metadata").await;
    let url = fixture_url("google-sheets-export.csv");
    db.add_view("view-signal-1", "Signal", &url).await;
    only(sync_all(&db, SyncOptions::default()).await);
    let first = db.records("data_metadata").await;
    assert_eq!(first.len(), 1);
    let entry = &first[0];
    assert_eq!(entry.get_str("type"), Ok("last_update"));
    assert_eq!(entry.get_str("view_id"), Ok("view-signal-1"));
    assert_eq!(entry.get_str("source_type"), Ok("csv"));
    assert_eq!(entry.get_str("source_url"), Ok(url.as_str()));
    assert!(matches!(entry.get("records_count"), Some(Bson::Int64(6))), "{entry:?}");
    assert!(matches!(entry.get("last_update"), Some(Bson::DateTime(_))));
    assert!(matches!(entry.get("created_at"), Some(Bson::DateTime(_))));

    only(sync_all(&db, SyncOptions::default()).await);
    let second = db.records("data_metadata").await;
    assert_eq!(second.len(), 1, "upserted, not duplicated");
    assert_eq!(second[0].get("created_at"), entry.get("created_at"), "created_at kept");
    assert!(second[0].get_datetime("last_update").unwrap() > entry.get_datetime("last_update").unwrap());
    db.drop().await;
}

#[tokio::test]
async fn every_run_is_recorded_failed_ones_too() {
    let db = test_db("runs").await;
    db.add_view("view-organic", "Organic", &fixture_url("google-sheets-export.csv"))
        .await;
    db.add_view("view-signal", "Signal", "file:///nonexistent/export.csv")
        .await;
    db.add_master_view().await;
    let reports = sync_all(&db, SyncOptions::default()).await;
    assert_eq!(reports.len(), 2, "the master view is never synced");
    let master = db
        .engine()
        .await
        .sync(&["master".to_owned()], Trigger::Cli, SyncOptions::default())
        .await;
    assert!(master.unwrap_err().to_string().contains("Master view"));

    let runs = db.records("sync_runs").await;
    let run = |view: &str| {
        runs.iter()
            .find(|run| run.get_str("view") == Ok(view))
            .expect("run recorded")
    };
    let failed = run("Signal");
    assert_eq!(failed.get_str("outcome"), Ok("failed"));
    assert!(failed.get_str("error").unwrap().contains("/nonexistent/export.csv"));
    let succeeded = run("Organic");
    assert_eq!(succeeded.get_str("outcome"), Ok("success"));
    assert_eq!(succeeded.get_str("trigger"), Ok("cli"));
    assert!(matches!(succeeded.get("started_at"), Some(Bson::DateTime(_))));
    assert!(matches!(succeeded.get("finished_at"), Some(Bson::DateTime(_))));
    assert_eq!(
        db.count("sales_records").await,
        6,
        "one failing view does not stop the others"
    );
    assert_eq!(db.count("sales_records_signal").await, 0);
    db.drop().await;
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let db = test_db("dry_run").await;
    db.add_view("view-organic", "Organic", &fixture_url("google-sheets-export.csv"))
        .await;
    let report = only(sync_all(&db, dry_run()).await);
    assert_eq!(report.outcome, Outcome::DryRun);
    assert_eq!(report.changes.inserted, 6);
    let names = db.db.list_collection_names().await.unwrap();
    assert_eq!(names, vec!["views".to_owned()], "nothing but the views collection");
    db.drop().await;
}

/// A dry run counts changes without building the records' documents; it
/// must count exactly what the real sync then does.
#[tokio::test]
async fn a_dry_run_counts_the_changes_the_sync_then_makes() {
    let db = test_db("dry_run_counts").await;
    let dir = tempfile::tempdir().unwrap();
    let before = generated_csv(6, "Lost", 2);
    let url = write_source(dir.path(), "v.csv", before.as_bytes());
    db.add_view("view-organic", "Organic", &url).await;
    only(sync_all(&db, SyncOptions::default()).await);
    // Client 0 changes amount, client 1 moves stage, client 5 leaves,
    // client 6 arrives; clients 2-4 are as they were.
    let after: String = before
        .lines()
        .filter(|line| !line.contains("Client 5,"))
        .map(|line| {
            if line.contains("Client 0,") {
                line.replace(",Lost,High,Show,,2,", ",Lost,High,Show,,3,")
            } else if line.contains("Client 1,") {
                line.replace(",Lost,", ",A Closed,")
            } else {
                line.to_owned()
            }
        })
        .chain(generated_csv(7, "Lost", 2).lines().last().map(str::to_owned))
        .map(|line| line + "\n")
        .collect();
    write_source(dir.path(), "v.csv", after.as_bytes());
    let dry = only(sync_all(&db, dry_run()).await);
    assert_eq!(dry.outcome, Outcome::DryRun);
    let expected = Changes {
        inserted: 1,
        updated: 1,
        removed: 1,
        moved: 1,
        unchanged: 3,
    };
    assert_eq!(dry.changes, expected, "{dry:#?}");
    assert_eq!(dry.moves.len(), 1);
    assert!(
        dry.moves[0].starts_with("Client 1: Lost -> A Closed"),
        "{:?}",
        dry.moves
    );
    let applied = only(sync_all(&db, forced()).await);
    assert_eq!(applied.changes, dry.changes);
    assert_eq!(applied.moves, dry.moves);
    db.drop().await;
}

#[tokio::test]
async fn rejected_rows_and_warnings_name_row_column_and_reason() {
    let db = test_db("issues").await;
    let dir = tempfile::tempdir().unwrap();
    let csv = "Pipeline export (do not edit)\n\
               Client,Stage,Discovery date,Expected MRR,Notes\n\
               Acme,B Legals,soon,5000,x\n\
               ,Lost,01/01/2025,1,\n\
               Globex,Negotiation,01/01/2025,lots,\n";
    let url = write_source(dir.path(), "v.csv", csv.as_bytes());
    db.add_view("view-organic", "Organic", &url).await;
    // One of three rows is rejected, above sync.max_rejected_ratio: forced,
    // so that the report of an applied sync is what this test reads.
    let report = only(sync_all(&db, forced()).await);
    assert_eq!(report.outcome, Outcome::SuccessWithWarnings, "{report:#?}");
    assert_eq!(report.header_row, Some(2));
    assert_eq!(report.unknown_columns, vec!["Notes".to_owned()]);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].row, 4);
    assert!(report.rejected[0].reason.contains("no client"));
    let warning = |row: usize, column: &str| {
        report
            .warnings
            .iter()
            .find(|w| w.row == row && w.column.as_deref() == Some(column))
            .unwrap_or_else(|| panic!("no warning for row {row} {column}: {:#?}", report.warnings))
    };
    assert_eq!(warning(3, "Discovery date").value.as_deref(), Some("soon"));
    assert_eq!(warning(5, "Expected MRR").value.as_deref(), Some("lots"));
    assert!(warning(5, "Stage").reason.contains("unknown value"));
    let records = db.records("sales_records").await;
    assert_eq!(records.len(), 2);
    assert_eq!(
        find(&records, "Globex", "Negotiation").get("expected_mrr"),
        Some(&Bson::Null)
    );
    assert_eq!(
        find(&records, "Acme", "B Legals").get("discovery_date"),
        Some(&Bson::Null)
    );
    db.drop().await;
}

#[tokio::test]
async fn header_without_client_fails_the_view_naming_its_columns() {
    let db = test_db("no_client").await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(dir.path(), "v.csv", b"Firm name,Progress\nAcme,Lost\n");
    db.add_view("view-organic", "Organic", &url).await;
    let report = only(sync_all(&db, SyncOptions::default()).await);
    assert_eq!(report.outcome, Outcome::Failed);
    let error = report.error.unwrap();
    assert!(
        error.contains("client, stage") && error.contains("\"Firm name\", \"Progress\""),
        "{error}"
    );
    db.drop().await;
}

#[tokio::test]
async fn view_collections_follow_the_schema_map_and_config_overrides() {
    let db = test_db("collections").await;
    for (id, name) in [
        ("v1", "Organic"),
        ("v2", "Signal"),
        ("v3", "Full Funnel"),
        ("v4", "Market"),
    ] {
        db.add_view(id, name, &fixture_url("google-sheets-export.csv")).await;
    }
    let mut config = db.config();
    config.views.insert(
        "Market".to_owned(),
        sheetsync::syncs::settings::ViewOverride {
            collection: Some("market_override".to_owned()),
            source: Some(fixture_url("excel-fr-export.csv")),
            ..Default::default()
        },
    );
    let engine = crate::harness::engine_for(config).await;
    let reports = engine.sync(&[], Trigger::Cli, SyncOptions::default()).await.unwrap();
    assert!(reports.iter().all(SyncReport::succeeded), "{reports:#?}");
    for collection in ["sales_records", "sales_records_signal", "sales_records_fullfunnel"] {
        assert_eq!(db.count(collection).await, 6, "{collection}");
    }
    assert_eq!(db.count("market_override").await, 3);
    assert_eq!(db.count("sales_records_market").await, 0);

    let only_signal = engine
        .sync(&["signal".to_owned()], Trigger::Cli, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(only_signal.len(), 1);
    let unknown = engine
        .sync(&["Nope".to_owned()], Trigger::Cli, SyncOptions::default())
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("\"Nope\"") && unknown.to_string().contains("\"Signal\""));
    db.drop().await;
}

#[tokio::test]
async fn old_data_with_shared_ids_and_no_indexes_is_repaired() {
    let db = test_db("shared_ids").await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(dir.path(), "v.csv", b"Client,Stage\nAcme,Lost\nGlobex,Lost\n");
    db.add_view("view-organic", "Organic", &url).await;
    // As an old upload left it: no unique index, one id on two deals.
    let records = db.db.collection::<Document>("sales_records");
    records
        .insert_many([
            doc! { "id": "same", "client": "Acme", "stage": "Lost" },
            doc! { "id": "same", "client": "Globex", "stage": "Lost" },
        ])
        .await
        .unwrap();

    let report = only(sync_all(&db, SyncOptions::default()).await);
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    let after = db.records("sales_records").await;
    let ids: std::collections::HashSet<&str> = after.iter().map(|r| r.get_str("id").unwrap()).collect();
    assert_eq!(ids.len(), 2, "ids are unique again: {after:#?}");
    assert!(ids.contains("same"), "the first deal keeps its id");
    db.drop().await;
}

#[tokio::test]
async fn views_may_not_target_reserved_or_shared_collections() {
    let db = test_db("reserved").await;
    let csv = fixture_url("google-sheets-export.csv");
    for (id, name) in [("v1", "Organic"), ("v2", "Signal"), ("v3", "Market")] {
        db.add_view(id, name, &csv).await;
    }
    let mut config = db.config();
    let target = |collection: &str| sheetsync::syncs::settings::ViewOverride {
        collection: Some(collection.to_owned()),
        ..Default::default()
    };
    config.views.insert("Organic".to_owned(), target("users"));
    config.views.insert("Signal".to_owned(), target("shared"));
    config.views.insert("Market".to_owned(), target("shared"));
    let reports = crate::harness::engine_for(config)
        .await
        .sync(&[], Trigger::Cli, SyncOptions::default())
        .await
        .unwrap();
    assert!(
        reports.iter().all(|report| report.outcome == Outcome::Failed),
        "{reports:#?}"
    );
    let error = |view: &str| reports.iter().find(|r| r.name == view).unwrap().error.clone().unwrap();
    assert!(
        error("Organic").contains("would replace `users`"),
        "{}",
        error("Organic")
    );
    assert!(
        error("Signal").contains("all write collection `shared`"),
        "{}",
        error("Signal")
    );
    assert_eq!(db.count("users").await, 0);
    assert_eq!(db.count("shared").await, 0);
    db.drop().await;
}

#[tokio::test]
async fn a_sync_called_off_before_its_swap_writes_nothing() {
    let db = test_db("called_off").await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(dir.path(), "v.csv", generated_csv(20, "Lost", 1).as_bytes());
    db.add_view("view-organic", "Organic", &url).await;
    only(sync_all(&db, SyncOptions::default()).await);
    let before = db.records("sales_records").await;
    let metadata_before = db.records("data_metadata").await;

    write_source(dir.path(), "v.csv", generated_csv(25, "Lost", 2).as_bytes());
    let options = SyncOptions::default();
    options.abort.abort("shutdown grace period ran out");
    let report = only(sync_all(&db, options).await);
    assert_eq!(report.outcome, Outcome::Failed);
    let error = report.error.unwrap();
    assert!(
        error.contains("called off before the swap (shutdown grace period ran out)"),
        "{error}"
    );
    assert_eq!(db.records("sales_records").await, before);
    assert_eq!(db.records("data_metadata").await, metadata_before);
    let names = db.db.list_collection_names().await.unwrap();
    assert!(
        !names.iter().any(|name| name.starts_with("_sheetsync_staging")),
        "{names:?}"
    );
    db.drop().await;
}

/// Leases are timed by the server's clock: nothing a replica passes in.
#[tokio::test]
async fn leases_exclude_other_processes_until_released_or_expired() {
    use sheetsync::store::lease::{Leases, SYNC_LOCKS_COLLECTION};
    use std::time::Duration;

    let db = test_db("leases").await;
    let hour = Duration::from_secs(3600);
    let first = Leases::new(db.db.clone(), "replica-1".to_owned(), hour);
    let second = Leases::new(db.db.clone(), "replica-2".to_owned(), hour);

    assert!(first.try_acquire("view-a").await.unwrap(), "a free lease is taken");
    assert!(!second.try_acquire("view-a").await.unwrap(), "a live lease is not");
    assert!(second.try_acquire("view-b").await.unwrap(), "leases are per view");
    assert!(
        first.try_acquire("view-a").await.unwrap(),
        "the owner may take it again"
    );
    assert!(first.renew("view-a").await.unwrap());
    assert!(!second.renew("view-a").await.unwrap(), "only the owner renews");

    let lease = db
        .db
        .collection::<Document>(SYNC_LOCKS_COLLECTION)
        .find_one(doc! { "_id": "view-a" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.get_str("owner"), Ok("replica-1"));
    let acquired = lease.get_datetime("acquired_at").unwrap().timestamp_millis();
    let expires = lease.get_datetime("expires_at").unwrap().timestamp_millis();
    assert!(
        expires - acquired >= 3_600_000,
        "expiry is a lease time after the server's now: {lease:?}"
    );

    second.release("view-a").await.unwrap();
    assert!(!second.try_acquire("view-a").await.unwrap(), "only the owner releases");
    first.release("view-a").await.unwrap();
    assert!(second.try_acquire("view-a").await.unwrap(), "a released lease is free");

    // A lease that lives no time at all has expired once the server's clock
    // moves on, and another process takes it over.
    let fleeting = Leases::new(db.db.clone(), "replica-3".to_owned(), Duration::ZERO);
    assert!(fleeting.try_acquire("view-c").await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        first.try_acquire("view-c").await.unwrap(),
        "an expired lease is taken over"
    );
    assert!(
        !fleeting.renew("view-c").await.unwrap(),
        "and its old owner has lost it"
    );
    db.drop().await;
}

/// The options and indexes of a target as the server lists them, minus what
/// differs by nature between two collections (`ns`, the uuid).
async fn shape_of(db: &mongodb::Database, collection: &str) -> (Document, Vec<Document>) {
    let listed = db
        .run_command(doc! { "listCollections": 1, "filter": { "name": collection } })
        .await
        .unwrap();
    let entry = listed.get_document("cursor").unwrap().get_array("firstBatch").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    let options = entry.get_document("options").unwrap().clone();
    let indexes = db.run_command(doc! { "listIndexes": collection }).await.unwrap();
    let mut indexes: Vec<Document> = indexes
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .map(|index| {
            let mut index = index.as_document().unwrap().clone();
            index.remove("ns");
            index
        })
        .collect();
    indexes.sort_by_key(|index| index.get_str("name").unwrap().to_owned());
    (options, indexes)
}

#[tokio::test]
async fn a_swap_keeps_the_collections_own_indexes_validator_and_options() {
    let db = test_db("swap_keeps_shape").await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(
        dir.path(),
        "v.csv",
        b"Client,Stage,Owner\nAcme,Lost,Ann\nGlobex,Lost,Bob\n",
    );
    db.add_view("view-organic", "Organic", &url).await;
    // The dashboard's team made the collection theirs before any refresh.
    db.db
        .run_command(doc! {
            "create": "sales_records",
            "validator": { "$jsonSchema": {
                "bsonType": "object",
                "required": ["client", "stage"],
                "properties": { "owner": { "bsonType": ["string", "null"], "maxLength": 20 } },
            } },
            "validationLevel": "strict",
            "validationAction": "error",
            "collation": { "locale": "fr", "strength": 2 },
        })
        .await
        .unwrap();
    db.db
        .run_command(doc! { "createIndexes": "sales_records", "indexes": [
            { "key": { "client": 1, "owner": 1 }, "name": "client_owner" },
            { "key": { "hubspot_link": 1 }, "name": "one_record_per_deal", "unique": true,
              "partialFilterExpression": { "hubspot_link": { "$type": "string" } } },
            { "key": { "archived_at": 1 }, "name": "archive_ttl", "expireAfterSeconds": 86_400 },
            { "key": { "owner": 1 }, "name": "owner_fr", "collation": { "locale": "fr", "strength": 1 } },
        ] })
        .await
        .unwrap();
    let (options, app_indexes) = shape_of(&db.db, "sales_records").await;

    let first = only(sync_all(&db, SyncOptions::default()).await);
    assert!(first.succeeded() && first.swapped, "{first:#?}");
    write_source(
        dir.path(),
        "v.csv",
        b"Client,Stage,Owner\nAcme,Lost,Ann\nGlobex,Lost,Bea\nInitech,Lost,Cy\n",
    );
    let second = only(sync_all(&db, SyncOptions::default()).await);
    assert!(second.succeeded() && second.swapped, "{second:#?}");
    assert_eq!(db.count("sales_records").await, 3);

    let (options_after, indexes_after) = shape_of(&db.db, "sales_records").await;
    for index in &app_indexes {
        assert!(
            indexes_after.contains(index),
            "{index:?} lost or changed: {indexes_after:#?}"
        );
    }
    let schema_index = indexes_after
        .iter()
        .any(|index| index.get_document("key") == Ok(&doc! { "id": 1 }));
    assert!(schema_index, "the schema's indexes are added: {indexes_after:#?}");
    for option in ["validator", "validationLevel", "validationAction"] {
        assert_eq!(options_after.get(option), options.get(option), "{option}");
    }
    // MongoDB keeps the collation through the rename; a server that drops it
    // (SecantusDB) and cannot take it back by collMod gets it reported by the
    // refresh that lost it.
    if options_after.get("collation") != options.get("collation") {
        assert!(
            first.notices.iter().any(|notice| notice.contains("`collation`")),
            "{:?}",
            first.notices
        );
    }

    // A row the validator refuses fails the view, naming the row; the old
    // data stands.
    let before = db.records("sales_records").await;
    write_source(
        dir.path(),
        "v.csv",
        b"Client,Stage,Owner\nAcme,Lost,Ann\nGlobex,Lost,Somebody With A Very Long Name\nInitech,Lost,Cy\n",
    );
    let refused = only(sync_all(&db, SyncOptions::default()).await);
    assert_eq!(refused.outcome, Outcome::Failed, "{refused:#?}");
    let error = refused.error.as_deref().unwrap();
    assert!(
        error.contains("row 3 was refused by the rules of `sales_records`"),
        "{error}"
    );
    assert!(error.contains("ocument failed validation"), "{error}");
    assert_eq!(db.records("sales_records").await, before);
    db.drop().await;
}

#[tokio::test]
async fn a_capped_target_is_refused_with_a_clear_message() {
    let db = test_db("capped_target").await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(dir.path(), "v.csv", b"Client,Stage\nAcme,Lost\n");
    db.add_view("view-organic", "Organic", &url).await;
    db.db
        .run_command(doc! { "create": "sales_records", "capped": true, "size": 65_536 })
        .await
        .unwrap();
    let report = only(sync_all(&db, SyncOptions::default()).await);
    assert_eq!(report.outcome, Outcome::Failed);
    let error = report.error.unwrap();
    assert!(error.contains("`sales_records` is a capped collection"), "{error}");
    db.drop().await;
}

#[tokio::test]
async fn rejected_rows_count_toward_the_guard_and_the_outcome() {
    let db = test_db("rejected_guard").await;
    let dir = tempfile::tempdir().unwrap();
    let rows = |cleared: usize| {
        let mut csv = String::from("Client,Stage\n");
        for index in 0..10 {
            let stage = if index < cleared { "" } else { "Lost" };
            csv.push_str(&format!("Client {index},{stage}\n"));
        }
        csv
    };
    let url = write_source(dir.path(), "v.csv", rows(4).as_bytes());
    db.add_view("view-organic", "Organic", &url).await;
    // 4 of 10 rows lost their stage: more than max_rejected_ratio (0.2).
    let refused = only(sync_all(&db, SyncOptions::default()).await);
    assert_eq!(refused.outcome, Outcome::Failed, "{refused:#?}");
    assert!(
        refused
            .error
            .as_deref()
            .unwrap()
            .contains("4 of the source's 10 row(s) with data were rejected"),
        "{refused:#?}"
    );
    assert_eq!(db.count("sales_records").await, 0, "nothing was written");
    let forced = only(sync_all(&db, forced()).await);
    assert_eq!(forced.outcome, Outcome::SuccessWithWarnings, "{forced:#?}");
    assert_eq!(db.count("sales_records").await, 6);

    // Within the ratio: applied, but not a plain success.
    write_source(dir.path(), "v.csv", rows(1).as_bytes());
    let partial = only(sync_all(&db, SyncOptions::default()).await);
    assert_eq!(partial.outcome, Outcome::SuccessWithWarnings, "{partial:#?}");
    assert!(partial.succeeded());
    assert!(sheetsync::report::render_text(std::slice::from_ref(&partial)).contains("OK with warnings"));
    let run = db
        .db
        .collection::<Document>("sync_runs")
        .find_one(doc! { "run_id": &partial.run_id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.get_str("outcome"), Ok("success_with_warnings"));
    write_source(dir.path(), "v.csv", rows(0).as_bytes());
    assert_eq!(
        only(sync_all(&db, SyncOptions::default()).await).outcome,
        Outcome::Success
    );
    db.drop().await;
}

/// Staging filled by several insert workers, in small batches, holds the
/// same records as one worker's; a row refused in a late batch is still
/// named, and the old data stands.
#[tokio::test]
async fn several_insert_workers_write_the_same_records_and_name_a_refused_row() {
    let mut csv = String::from("Client,Stage,Owner\n");
    for index in 0..300 {
        csv.push_str(&format!("Client {index},Lost,Owner {index}\n"));
    }
    let mut records = Vec::new();
    for workers in [1, 4] {
        let db = test_db(&format!("insert_workers_{workers}")).await;
        let dir = tempfile::tempdir().unwrap();
        let url = write_source(dir.path(), "v.csv", csv.as_bytes());
        db.add_view("view-organic", "Organic", &url).await;
        let mut config = db.config();
        config.sync.insert_batch_size = 7;
        config.insert_workers = workers;
        let engine = crate::harness::engine_for(config).await;
        let report = only(engine.sync(&[], Trigger::Cli, SyncOptions::default()).await.unwrap());
        assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
        let mut written = db.records("sales_records").await;
        for record in &mut written {
            record.remove("created_at");
            record.remove("updated_at");
        }
        assert_eq!(written.len(), 300);
        records.push(written);

        if workers == 4 {
            db.db
                .run_command(doc! {
                    "collMod": "sales_records",
                    "validator": { "$jsonSchema": {
                        "bsonType": "object",
                        "properties": { "owner": { "bsonType": ["string", "null"], "maxLength": 20 } },
                    } },
                })
                .await
                .unwrap();
            let before = db.records("sales_records").await;
            let refused_csv = csv.replace("Owner 250\n", "Somebody With A Very Long Name\n");
            write_source(dir.path(), "v.csv", refused_csv.as_bytes());
            let engine = crate::harness::engine_for({
                let mut config = db.config();
                config.sync.insert_batch_size = 7;
                config.insert_workers = 4;
                config
            })
            .await;
            let refused = only(engine.sync(&[], Trigger::Cli, SyncOptions::default()).await.unwrap());
            assert_eq!(refused.outcome, Outcome::Failed, "{refused:#?}");
            let error = refused.error.as_deref().unwrap();
            assert!(
                error.contains("row 252 was refused by the rules of `sales_records`"),
                "{error}"
            );
            assert_eq!(db.records("sales_records").await, before, "the old data stands");
        }
        db.drop().await;
    }
    assert_eq!(records[0], records[1]);
}
