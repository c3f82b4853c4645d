//! When the sheet changes shape, nothing is lost: a renamed, deleted or
//! emptied column stops the refresh (the old data stands) unless the run is
//! forced or told to keep or clear the field, for swap views and merge
//! syncs alike.

use std::path::Path;

use mongodb::bson::{Bson, Document, doc};
use sheetsync::config::Config;
use sheetsync::engine::{Engine, SyncOptions};
use sheetsync::report::{ColumnProblemKind, Outcome, SyncReport, Trigger};

use crate::harness::{HEADER, TestDb, engine_for, generated_csv, server_url, test_db, write_source};

async fn sync(engine: &Engine, options: SyncOptions) -> SyncReport {
    let mut reports = engine.sync(&[], Trigger::Cli, options).await.expect("the cycle runs");
    assert_eq!(reports.len(), 1, "{reports:#?}");
    reports.remove(0)
}

fn forced() -> SyncOptions {
    SyncOptions {
        force: true,
        ..SyncOptions::default()
    }
}

/// Each record's `expected_mrr`, in client order.
async fn mrr_values(db: &TestDb) -> Vec<Bson> {
    db.records("sales_records")
        .await
        .iter()
        .map(|record| record.get("expected_mrr").cloned().unwrap_or(Bson::Null))
        .collect()
}

/// Ten deals with an MRR of 250, the header's `Expected MRR` spelled `label`.
fn sales_csv(label: &str) -> String {
    generated_csv(10, "B Legals", 250).replacen("Expected MRR", label, 1)
}

/// A view reading `v.csv` in `dir`, synced once with every MRR filled.
async fn synced_view(label: &str) -> (TestDb, tempfile::TempDir, String) {
    let db = test_db(label).await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(dir.path(), "v.csv", sales_csv("Expected MRR").as_bytes());
    db.add_view("view-organic", "Organic", &url).await;
    let first = sync(&db.engine().await, SyncOptions::default()).await;
    assert_eq!(first.outcome, Outcome::Success, "{first:#?}");
    assert!(
        first
            .header
            .iter()
            .any(|column| column.label == "Expected MRR" && column.field.as_deref() == Some("expected_mrr")),
        "the run records its header: {:?}",
        first.header
    );
    (db, dir, url)
}

#[tokio::test]
async fn a_renamed_column_stops_the_refresh_until_it_is_mapped_again() {
    let (db, dir, _) = synced_view("renamed_column").await;
    let before = db.records("sales_records").await;
    let engine = db.engine().await;

    write_source(dir.path(), "v.csv", sales_csv("Monthly value").as_bytes());
    let report = sync(&engine, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let error = report.error.clone().unwrap();
    for expected in [
        "refusing to apply to `sales_records`",
        "column `Expected MRR` (expected_mrr) is missing from the header: 10 stored record(s) hold a value, 0 would",
        "`Monthly value` may be `expected_mrr`: add it to that field's aliases",
        "The header's unmapped labels: `Monthly value`",
        "--force",
        "on_lost_column",
        "the previous data stands",
    ] {
        assert!(error.contains(expected), "{expected:?} missing from: {error}");
    }
    let problem = &report.column_problems[0];
    assert_eq!(
        (problem.kind, problem.label.as_deref(), problem.maybe.as_deref()),
        (ColumnProblemKind::Lost, Some("Expected MRR"), Some("Monthly value"))
    );
    assert_eq!(db.records("sales_records").await, before, "the old data stands");

    // A dry run says the same and writes nothing either.
    let dry = sync(
        &engine,
        SyncOptions {
            dry_run: true,
            ..SyncOptions::default()
        },
    )
    .await;
    assert_eq!(dry.outcome, Outcome::Failed, "{dry:#?}");

    // Renamed back: the refresh passes, nothing changed.
    write_source(dir.path(), "v.csv", sales_csv("Expected MRR").as_bytes());
    let back = sync(&engine, SyncOptions::default()).await;
    assert_eq!(back.outcome, Outcome::Success, "{back:#?}");
    assert!(back.column_problems.is_empty());
    assert_eq!(db.records("sales_records").await, before);

    // --force applies the rename as the sheet says: the field is cleared
    // (and `Monthly value` is news: a new column no field takes).
    write_source(dir.path(), "v.csv", sales_csv("Monthly value").as_bytes());
    let forced = sync(&engine, forced()).await;
    assert_eq!(forced.outcome, Outcome::SuccessWithWarnings, "{forced:#?}");
    assert!(mrr_values(&db).await.iter().all(|value| *value == Bson::Null));
    db.drop().await;
}

#[tokio::test]
async fn a_deleted_or_emptied_column_is_refused_too() {
    let (db, dir, _) = synced_view("deleted_column").await;
    let engine = db.engine().await;

    // The column is gone: named as it was, with no new label to suggest.
    let columns: Vec<&str> = HEADER.split(',').collect();
    let without: Vec<String> = generated_csv(10, "B Legals", 250)
        .lines()
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            cells
                .iter()
                .enumerate()
                .filter(|(index, _)| columns[*index] != "Expected MRR")
                .map(|(_, cell)| *cell)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    write_source(dir.path(), "v.csv", (without.join("\n") + "\n").as_bytes());
    let report = sync(&engine, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let error = report.error.unwrap();
    assert!(
        error.contains("column `Expected MRR` (expected_mrr) is missing") && !error.contains("may be"),
        "{error}"
    );

    // The header still maps it, but the cells were cleared.
    let emptied = generated_csv(10, "B Legals", 250).replace(",250,", ",,");
    write_source(dir.path(), "v.csv", emptied.as_bytes());
    let report = sync(&engine, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let error = report.error.unwrap();
    assert!(
        error.contains("column `Expected MRR` (expected_mrr) was emptied: 10 stored record(s) hold a value, 0 would"),
        "{error}"
    );
    assert!(
        mrr_values(&db).await.iter().all(|value| *value == Bson::Double(250.0)),
        "the old data stands"
    );
    db.drop().await;
}

/// `db`'s configuration with `toml` as its file.
fn config_file(db: &TestDb, dir: &Path, toml: &str) -> Config {
    let path = dir.join("sheetsync.toml");
    std::fs::write(&path, toml).unwrap();
    let url = server_url();
    Config::resolve(Some((toml, &path)), |name| match name {
        "MONGO_URL" => Some(url.clone()),
        "DB_NAME" => Some(db.name.clone()),
        "SHEETSYNC_FILE_ROOTS" => Some("/".to_owned()),
        _ => None,
    })
    .expect("the test config is valid")
}

#[tokio::test]
async fn keep_carries_the_stored_values_and_clear_applies_the_sheet() {
    let (db, dir, _) = synced_view("keep_clear").await;
    write_source(dir.path(), "v.csv", sales_csv("Monthly value").as_bytes());

    let keep = engine_for(config_file(&db, dir.path(), "[sync]\non_lost_column = \"keep\"\n")).await;
    let report = sync(&keep, SyncOptions::default()).await;
    assert_eq!(
        report.outcome,
        Outcome::SuccessWithWarnings,
        "`Monthly value` is news: {report:#?}"
    );
    assert_eq!(report.column_problems.len(), 1, "still reported: {report:#?}");
    assert!(
        mrr_values(&db).await.iter().all(|value| *value == Bson::Double(250.0)),
        "kept: {:?}",
        mrr_values(&db).await
    );

    // A view's own setting wins over [sync]'s.
    let toml = "[sync]\non_lost_column = \"keep\"\n\n[views.Organic]\non_lost_column = \"clear\"\n";
    let clear = engine_for(config_file(&db, dir.path(), toml)).await;
    let report = sync(&clear, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    assert!(mrr_values(&db).await.iter().all(|value| *value == Bson::Null));
    db.drop().await;
}

/// Eight customers, their ARR under the header `arr_label`, blank when
/// `arr` is `None`.
fn customers_csv(arr_label: &str, arr: Option<u32>) -> String {
    let mut csv = format!("Company,Plan,{arr_label},Health score\n");
    for index in 0..8 {
        let arr = arr.map(|arr| (arr + index).to_string()).unwrap_or_default();
        csv.push_str(&format!("Customer {index},Growth,{arr},{}\n", 50 + index));
    }
    csv
}

async fn customers(cs: &mongodb::Database) -> Vec<Document> {
    use futures_util::TryStreamExt;
    cs.collection::<Document>("customers")
        .find(doc! {})
        .projection(doc! { "_id": 0, "company_name": 1, "arr": 1, "health_score": 1 })
        .sort(doc! { "company_name": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_merge_sync_is_guarded_alike() {
    let sales = test_db("merge_columns").await;
    let cs_name = format!("{}_cs", sales.name);
    let cs = sales.db.client().database(&cs_name);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("customers.csv");
    std::fs::write(&source, customers_csv("ARR", Some(1000))).unwrap();
    let toml = |extra: &str| {
        format!(
            "[[syncs]]\nname = \"Customers\"\nsource = \"{}\"\ntarget = \"customers\"\ndatabase = \"{cs_name}\"\n{extra}",
            source.display()
        )
    };
    let engine = engine_for(config_file(&sales, dir.path(), &toml(""))).await;
    let first = sync(&engine, SyncOptions::default()).await;
    assert_eq!(first.outcome, Outcome::Success, "{first:#?}");
    let before = customers(&cs).await;

    // Renamed: refused, every document as it was.
    std::fs::write(&source, customers_csv("Annual value", Some(1000))).unwrap();
    let report = sync(&engine, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:#?}");
    let error = report.error.unwrap();
    assert!(
        error.contains("column `ARR` (arr) is missing from the header: 8 stored record(s) hold a value, 0 would"),
        "{error}"
    );
    assert_eq!(customers(&cs).await, before);

    // Emptied: a merge would $unset them; refused as well.
    std::fs::write(&source, customers_csv("ARR", None)).unwrap();
    let report = sync(&engine, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:#?}");
    assert!(report.error.unwrap().contains("column `ARR` (arr) was emptied"));
    assert_eq!(customers(&cs).await, before);

    // The sync's own `keep`: blank cells no longer clear the stored values.
    let keep = engine_for(config_file(&sales, dir.path(), &toml("on_lost_column = \"keep\"\n"))).await;
    let report = sync(&keep, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    assert_eq!(customers(&cs).await, before, "the ARRs are kept");

    // Cleared by the sheet, with --force.
    let report = sync(&engine, forced()).await;
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    assert!(
        customers(&cs)
            .await
            .iter()
            .all(|customer| customer.get("arr").is_none())
    );
    let _ = cs.drop().await;
    sales.drop().await;
}

#[tokio::test]
async fn a_new_unmapped_column_is_news_once() {
    let (db, dir, _) = synced_view("new_column").await;
    let engine = db.engine().await;
    let with = |extra: &str| {
        generated_csv(10, "B Legals", 250)
            .lines()
            .enumerate()
            .map(|(index, line)| format!("{line},{}", if index == 0 { extra } else { "x" }))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    write_source(dir.path(), "v.csv", with("Churn risk (%)").as_bytes());
    let report = sync(&engine, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::SuccessWithWarnings, "{report:#?}");
    let news: Vec<_> = report
        .warnings
        .iter()
        .filter(|warning| warning.column.as_deref() == Some("Churn risk (%)"))
        .collect();
    assert_eq!(news.len(), 1, "{:#?}", report.warnings);
    assert_eq!(news[0].row, 1, "on the header row");
    assert!(
        news[0].reason.contains("new column maps to no field"),
        "{}",
        news[0].reason
    );

    // Already there last time: listed as ignored, without a warning.
    let again = sync(&engine, SyncOptions::default()).await;
    assert_eq!(again.outcome, Outcome::Success, "{again:#?}");
    assert!(again.unknown_columns.contains(&"Churn risk (%)".to_owned()));

    // Another new one, silenced by the view's ignore_columns.
    write_source(dir.path(), "v.csv", with("Internal notes").as_bytes());
    let toml = "[views.Organic]\nignore_columns = [\"internal notes\"]\n";
    let ignoring = engine_for(config_file(&db, dir.path(), toml)).await;
    let report = sync(&ignoring, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    db.drop().await;
}

#[tokio::test]
async fn an_alias_for_the_new_label_lets_the_refresh_pass() {
    let (db, dir, _) = synced_view("alias_added").await;
    write_source(dir.path(), "v.csv", sales_csv("Monthly value").as_bytes());
    let refused = sync(&db.engine().await, SyncOptions::default()).await;
    assert_eq!(refused.outcome, Outcome::Failed, "{refused:#?}");

    // The built-in profile, replaced by itself with one more alias, as an
    // operator would declare it in the config file.
    let profile = include_str!("../../targets/sales_records.toml")
        .replace("aliases = [\"mrr\", ", "aliases = [\"monthly value\", \"mrr\", ")
        .replace("[[fields]]", "[[targets.fields]]")
        .replace("[[indexes]]", "[[targets.indexes]]");
    assert!(profile.contains("\"monthly value\""), "the alias is declared");
    let engine = engine_for(config_file(&db, dir.path(), &format!("[[targets]]\n{profile}"))).await;
    let report = sync(&engine, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    assert!(report.column_problems.is_empty());
    assert!(mrr_values(&db).await.iter().all(|value| *value == Bson::Double(250.0)));
    db.drop().await;
}

#[tokio::test]
async fn deleted_rows_are_not_an_emptied_column_but_blanked_continued_records_are() {
    let (db, dir, _) = synced_view("rows_deleted").await;
    // Six of the ten deals archived: the shrink guard allows it (0.3), and
    // the four records that stay still hold their MRR.
    let engine = engine_for(config_file(&db, dir.path(), "[sync]\nmin_ratio = 0.3\n")).await;
    write_source(dir.path(), "v.csv", generated_csv(4, "B Legals", 250).as_bytes());
    let report = sync(&engine, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    assert!(report.column_problems.is_empty());
    db.drop().await;

    // A merge: the continued documents' ARRs blanked while new rows bring
    // ARRs of their own is still an emptied column.
    let sales = test_db("merge_blanked").await;
    let cs_name = format!("{}_cs", sales.name);
    let cs = sales.db.client().database(&cs_name);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("customers.csv");
    std::fs::write(&source, customers_csv("ARR", Some(1000))).unwrap();
    let toml = format!(
        "[[syncs]]\nname = \"Customers\"\nsource = \"{}\"\ntarget = \"customers\"\ndatabase = \"{cs_name}\"\n",
        source.display()
    );
    let engine = engine_for(config_file(&sales, dir.path(), &toml)).await;
    assert_eq!(sync(&engine, SyncOptions::default()).await.outcome, Outcome::Success);
    let mut csv = customers_csv("ARR", None);
    for index in 0..8 {
        csv.push_str(&format!("New customer {index},Growth,500,60\n"));
    }
    std::fs::write(&source, csv).unwrap();
    let report = sync(&engine, SyncOptions::default()).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:#?}");
    assert!(
        report
            .error
            .unwrap()
            .contains("column `ARR` (arr) was emptied: 8 stored record(s) hold a value, 0 would")
    );
    let _ = cs.drop().await;
    sales.drop().await;
}
