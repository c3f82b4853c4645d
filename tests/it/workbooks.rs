//! Workbooks (.xlsx, .ods) as sources, end to end: the same sheet as a
//! workbook and as a CSV export gives the same documents, and a workbook
//! that cannot be read fails its view with its own message, leaving the
//! view's data as it was.

use std::io::{Cursor, Write as _};
use std::path::Path;

use mongodb::bson::{Document, doc};
use rust_xlsxwriter::{Format, Workbook};
use sheetsync::config::Config;
use sheetsync::engine::SyncOptions;
use sheetsync::report::{Outcome, SyncReport, Trigger};

/// rewrite_part, encrypted_workbook, ods_archive, xlsb_workbook: shared
/// with `source::workbook`'s unit tests.
#[allow(dead_code)] // the record-level helpers are used through xlsb_workbook
mod fixtures {
    include!("../support/workbooks.rs");
}
use fixtures::{encrypted_workbook, ods_archive, rewrite_part, xlsb_workbook};

use crate::harness::fake_google::{FakeGoogle, FakeSpreadsheet, FakeTab};
use crate::harness::{HEADER, TestDb, engine_for, server_url, test_db, write_source};
use sheetsync::source::GoogleCheck;
use sheetsync::source::table::Cell;

/// One cell of the test sheet, typed as a spreadsheet holds it.
#[derive(Clone, Copy)]
enum Value {
    Text(&'static str),
    Number(f64),
    Date(i32, u32, u32),
    Empty,
}

use Value::{Date, Empty, Number, Text};

/// A title line, a blank line, the header, four deals (one a duplicate of
/// client + stage, which the later row wins).
fn deals() -> Vec<Vec<Value>> {
    let deal = |client, stage, discovered: Value, mrr: Value, poa: Value| {
        vec![
            Text("2025-01"),
            discovered,
            Text(client),
            Text("https://app.hubspot.com/deals/12345"),
            Text(stage),
            Text("High"),
            Text("Show"),
            poa,
            mrr,
            Number(15006.0),
            Empty,
            Text("New Business"),
            Text("John Doe"),
            Text("Inbound"),
            Text("SEO Audit"),
            Text("Jane Smith"),
            Text("Support Team, Sales"),
            Date(2025, 2, 1),
        ]
    };
    let mut rows = vec![vec![Text("Pipeline export")], vec![]];
    rows.push(HEADER.split(',').map(Text).collect());
    rows.push(deal(
        "Acme Corp",
        "B Legals",
        Date(2025, 1, 10),
        Number(5000.0),
        Date(2025, 1, 15),
    ));
    rows.push(deal("Globex", "D POA Booked", Date(2025, 1, 12), Number(1250.5), Empty));
    rows.push(deal("Initech", "F Inbox", Date(2025, 1, 13), Empty, Empty));
    rows.push(deal("Globex", "D POA Booked", Date(2025, 1, 14), Number(1300.0), Empty));
    rows
}

fn csv_of(rows: &[Vec<Value>]) -> String {
    let cell = |value: &Value| match value {
        Text(text) if text.contains(',') => format!("\"{text}\""),
        Text(text) => (*text).to_owned(),
        Number(number) => number.to_string(),
        Date(year, month, day) => format!("{year}-{month:02}-{day:02}"),
        Empty => String::new(),
    };
    rows.iter()
        .map(|row| row.iter().map(cell).collect::<Vec<_>>().join(",") + "\n")
        .collect()
}

fn serial(year: i32, month: u32, day: u32) -> f64 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1899, 12, 30).unwrap();
    (chrono::NaiveDate::from_ymd_opt(year, month, day).unwrap() - epoch).num_days() as f64
}

fn xlsx_of(rows: &[Vec<Value>]) -> Vec<u8> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let date = Format::new().set_num_format("dd/mm/yyyy");
    let euros = Format::new().set_num_format("#,##0.00 \"€\"");
    for (row, values) in rows.iter().enumerate() {
        for (column, value) in values.iter().enumerate() {
            let (row, column) = (row as u32, column as u16);
            match value {
                // A link shows other text than its target, as HubSpot
                // exports do; the target is what the link field keeps.
                Text(url) if url.starts_with("https://") => sheet
                    .write_url_with_text(row, column, *url, "Open in HubSpot")
                    .map(|_| ()),
                Text(text) => sheet.write_string(row, column, *text).map(|_| ()),
                Number(number) => sheet.write_number_with_format(row, column, *number, &euros).map(|_| ()),
                Date(year, month, day) => sheet
                    .write_number_with_format(row, column, serial(*year, *month, *day), &date)
                    .map(|_| ()),
                Empty => Ok(()),
            }
            .unwrap();
        }
    }
    book.save_to_buffer().unwrap()
}

fn ods_of(rows: &[Vec<Value>]) -> Vec<u8> {
    let cell = |value: &Value| match value {
        Text(text) => {
            format!("<table:table-cell office:value-type=\"string\"><text:p>{text}</text:p></table:table-cell>")
        }
        Number(number) => format!(
            "<table:table-cell office:value-type=\"currency\" office:currency=\"EUR\" office:value=\"{number}\">\
             <text:p>{number} €</text:p></table:table-cell>"
        ),
        Date(year, month, day) => format!(
            "<table:table-cell office:value-type=\"date\" office:date-value=\"{year}-{month:02}-{day:02}\">\
             <text:p>{day:02}/{month:02}/{year}</text:p></table:table-cell>"
        ),
        Empty => "<table:table-cell/>".to_owned(),
    };
    let table: String = rows
        .iter()
        .map(|row| {
            format!(
                "<table:table-row>{}</table:table-row>",
                row.iter().map(cell).collect::<String>()
            )
        })
        .collect();
    ods_archive(&table)
}

async fn sync(config: Config) -> Vec<SyncReport> {
    sync_with(config, SyncOptions::default()).await
}

async fn sync_with(config: Config, options: SyncOptions) -> Vec<SyncReport> {
    engine_for(config)
        .await
        .sync(&[], Trigger::Cli, options)
        .await
        .expect("the sync cycle runs")
}

/// Records without what differs between runs (ids, creation times).
async fn contents(db: &TestDb, collection: &str) -> Vec<Document> {
    let mut records = db.records(collection).await;
    for record in &mut records {
        record.remove("id");
        record.remove("created_at");
    }
    records
}

#[tokio::test]
async fn an_xlsx_an_ods_and_a_csv_of_one_sheet_give_the_same_documents() {
    let db = test_db("workbook_same").await;
    let dir = tempfile::tempdir().unwrap();
    let rows = deals();
    let csv = write_source(dir.path(), "deals.csv", csv_of(&rows).as_bytes());
    let xlsx = write_source(dir.path(), "deals.xlsx", &xlsx_of(&rows));
    let ods = write_source(dir.path(), "deals.ods", &ods_of(&rows));
    db.add_view("view-signal", "Signal", &csv).await;
    db.add_view("view-market", "Market", &xlsx).await;
    db.add_view("view-organic", "Organic", &ods).await;

    let reports = sync(db.config()).await;
    for report in &reports {
        assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
        assert_eq!((report.header_row, report.records_written), (Some(3), 3), "{report:#?}");
        assert_eq!(report.duplicates_merged, 1, "{report:#?}");
        assert!(report.warnings.is_empty(), "{report:#?}");
        assert_eq!(report.source_type.map(|kind| kind.as_str()), Some("csv"));
    }
    let from_csv = contents(&db, "sales_records_signal").await;
    assert_eq!(from_csv.len(), 3);
    let globex = from_csv
        .iter()
        .find(|record| record.get_str("client") == Ok("Globex"))
        .unwrap();
    assert_eq!(globex.get_f64("expected_mrr"), Ok(1300.0), "the later duplicate wins");
    assert_eq!(
        globex.get_str("hubspot_link"),
        Ok("https://app.hubspot.com/deals/12345"),
        "the xlsx shows \"Open in HubSpot\"; its target is kept"
    );
    assert_eq!(contents(&db, "sales_records_market").await, from_csv, "xlsx and CSV");
    assert_eq!(contents(&db, "sales_records").await, from_csv, "ods and CSV");
    db.drop().await;
}

/// The test database's configuration with a `[sources]` section.
fn config_with_sources(db: &TestDb, sources: &str) -> Config {
    let text = format!("[sources]\n{sources}\n");
    let url = server_url();
    let name = db.name.clone();
    Config::resolve(Some((&text, Path::new("test.toml"))), move |variable| match variable {
        "MONGO_URL" => Some(url.clone()),
        "DB_NAME" => Some(name.clone()),
        "SHEETSYNC_FILE_ROOTS" => Some("/".to_owned()),
        _ => None,
    })
    .unwrap()
}

async fn point_view_at(db: &TestDb, id: &str, source: &str) {
    db.db
        .collection::<Document>("views")
        .update_one(doc! { "id": id }, doc! { "$set": { "sheet_url": source } })
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreadable_workbook_fails_its_view_with_its_own_message_and_keeps_the_data() {
    let db = test_db("workbook_refused").await;
    let dir = tempfile::tempdir().unwrap();
    let good = write_source(dir.path(), "good.xlsx", &xlsx_of(&deals()));
    db.add_view("view-market", "Market", &good).await;
    let first = sync(db.config()).await;
    assert_eq!(first[0].outcome, Outcome::Success, "{first:#?}");
    let stored = db.records("sales_records_market").await;
    assert_eq!(stored.len(), 3);

    // A part of 8 MiB of spaces: a few kilobytes on disk.
    let mut bomb = zip::ZipWriter::new(Cursor::new(Vec::new()));
    bomb.start_file("xl/workbook.xml", zip::write::SimpleFileOptions::default())
        .unwrap();
    bomb.write_all(&vec![b' '; 8 * 1024 * 1024]).unwrap();
    let bomb = bomb.finish().unwrap().into_inner();
    assert!(bomb.len() < 64 * 1024);
    let xlsx = xlsx_of(&deals());
    // 1,000,000 rows of 100 cells, in a few hundred bytes of XML.
    let spread = ods_archive(
        "<table:table-row table:number-rows-repeated=\"1000000\"><table:table-cell office:value-type=\"float\" \
         office:value=\"1\" table:number-columns-repeated=\"100\"/></table:table-row>",
    );
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "bomb.xlsx",
            bomb,
            "has a part that inflates past [sources] max_workbook_part_bytes (1048576)",
        ),
        (
            "truncated.xlsx",
            xlsx[..xlsx.len() / 2].to_vec(),
            "may be truncated or damaged",
        ),
        (
            "lying.xlsx",
            b"Client,Stage\nAcme,Lost\n".to_vec(),
            "is named as a .xlsx workbook but holds text",
        ),
        ("locked.xlsx", encrypted_workbook(), "is a password-protected workbook"),
        (
            "spread.ods",
            spread,
            "holds more cells than [sources] max_workbook_cells (20000000)",
        ),
    ];
    let config = || config_with_sources(&db, "max_workbook_part_bytes = 1048576");
    for (name, bytes, expected) in cases {
        point_view_at(&db, "view-market", &write_source(dir.path(), name, &bytes)).await;
        let report = sync(config()).await.remove(0);
        assert_eq!(report.outcome, Outcome::Failed, "{name}: {report:#?}");
        let error = report.error.as_deref().unwrap_or_default();
        assert!(error.contains(expected), "{name}: {expected:?} not in {error:?}");
        assert!(!error.contains("Acme"), "nothing from inside is quoted: {error}");
        assert_eq!(
            db.records("sales_records_market").await,
            stored,
            "{name} left the data as it was"
        );
    }
    db.drop().await;
}

#[tokio::test]
async fn a_formula_without_its_result_is_reported_with_its_cell() {
    let db = test_db("workbook_formula").await;
    let dir = tempfile::tempdir().unwrap();
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (column, label) in ["Client", "Stage", "Expected MRR"].into_iter().enumerate() {
        sheet.write_string(0, column as u16, label).unwrap();
    }
    for (row, client) in ["Acme", "Globex"].into_iter().enumerate() {
        sheet.write_string(row as u32 + 1, 0, client).unwrap();
        sheet.write_string(row as u32 + 1, 1, "Lost").unwrap();
    }
    sheet.write_number(1, 2, 100.0).unwrap();
    sheet.write_formula(2, 2, "=SUM(C2,1)").unwrap();
    let bytes = book.save_to_buffer().unwrap();
    // A writer that does not calculate leaves the result out.
    let bytes = rewrite_part(&bytes, "xl/worksheets/sheet1.xml", |xml| {
        xml.replace("<f>SUM(C2,1)</f><v>0</v>", "<f>SUM(C2,1)</f>")
    });
    db.add_view(
        "view-organic",
        "Organic",
        &write_source(dir.path(), "deals.xlsx", &bytes),
    )
    .await;
    let options = SyncOptions {
        force: true,
        ..SyncOptions::default()
    };
    let report = sync_with(db.config(), options).await.remove(0);
    // As any unreadable value of a field that is not a key: the row is
    // kept, the value stored as null, and the report says where and why.
    assert_eq!(report.records_written, 2, "{report:#?}");
    assert_eq!(report.warnings.len(), 1, "{report:#?}");
    let warning = &report.warnings[0];
    assert_eq!(warning.row, 3, "{warning:?}");
    assert_eq!(warning.column.as_deref(), Some("Expected MRR"), "{warning:?}");
    assert!(warning.reason.contains("a formula with no saved result"), "{warning:?}");
    let globex = db.records("sales_records").await.remove(1);
    assert_eq!(
        globex.get("expected_mrr"),
        Some(&mongodb::bson::Bson::Null),
        "{globex:?}"
    );
    db.drop().await;
}

#[tokio::test]
async fn a_workbook_downloads_within_the_network_policy() {
    use axum::routing::get;
    let db = test_db("workbook_http").await;
    let xlsx = xlsx_of(&deals());
    let app = axum::Router::new().route("/deals.xlsx", get(move || async move { xlsx.clone() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    db.add_view("view-market", "Market", &format!("http://localhost:{port}/deals.xlsx"))
        .await;
    let trusted = "http_hosts = [\"localhost\"]\nallowed_networks = [\"127.0.0.0/8\", \"::1/128\"]";
    let report = sync(config_with_sources(&db, trusted)).await.remove(0);
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    assert_eq!(db.count("sales_records_market").await, 3);
    let capped = format!("{trusted}\nmax_download_bytes = 1000");
    let report = sync(config_with_sources(&db, &capped)).await.remove(0);
    assert_eq!(report.outcome, Outcome::Failed, "{report:#?}");
    assert!(report.error.unwrap().contains("max_download_bytes"));
    db.drop().await;
}

#[tokio::test]
async fn check_reports_a_workbook_s_tabs_and_header() {
    let db = test_db("workbook_check").await;
    let dir = tempfile::tempdir().unwrap();
    let mut book = Workbook::new();
    book.add_worksheet().set_name("Lookups").unwrap().set_hidden(true);
    let sheet = book.add_worksheet().set_name("Sheet1").unwrap().set_active(true);
    for (row, values) in deals().iter().enumerate() {
        for (column, value) in values.iter().enumerate() {
            if let Text(text) = value {
                sheet.write_string(row as u32, column as u16, *text).unwrap();
            }
        }
    }
    let source = write_source(dir.path(), "deals.xlsx", &book.save_to_buffer().unwrap());
    db.add_view("view-market", "Market", &source).await;
    let output = crate::harness::process::Sheetsync::new()
        .database(&server_url(), &db.name)
        .args(["check"])
        .output();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("xlsx workbook with tabs \"Lookups\" (hidden), \"Sheet1\"; tab \"Sheet1\" found"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  header (row 3): Month -> month, Discovery Date -> discovery_date, Client -> client,"),
        "{stdout}"
    );
    db.drop().await;
}

const OFFICE_FILE: &str = "1OOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOO";
const SPREADSHEET: &str = "1SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS";

/// The rows as the Sheets API gives them (`UNFORMATTED_VALUE`,
/// `SERIAL_NUMBER`): numbers, date serials, trailing empty cells dropped.
fn api_values(rows: &[Vec<Value>]) -> Vec<Vec<serde_json::Value>> {
    rows.iter()
        .map(|row| {
            let mut values: Vec<serde_json::Value> = row
                .iter()
                .map(|value| match value {
                    Text(text) => serde_json::json!(text),
                    Number(number) => serde_json::json!(number),
                    Date(year, month, day) => serde_json::json!(serial(*year, *month, *day)),
                    Empty => serde_json::json!(""),
                })
                .collect();
            while values.last() == Some(&serde_json::json!("")) {
                values.pop();
            }
            values
        })
        .collect()
}

/// The test database's configuration with the fake Google, and
/// `office_files` as given.
fn google_config(db: &TestDb, fake: &FakeGoogle, office_files: bool) -> Config {
    let text = format!("[google]\noffice_files = {office_files}\n");
    let (url, name) = (server_url(), db.name.clone());
    let (key_file, api_url) = (fake.key_file.display().to_string(), fake.api_url.clone());
    Config::resolve(Some((&text, Path::new("test.toml"))), move |variable| match variable {
        "MONGO_URL" => Some(url.clone()),
        "DB_NAME" => Some(name.clone()),
        "SHEETSYNC_FILE_ROOTS" => Some("/".to_owned()),
        "GOOGLE_APPLICATION_CREDENTIALS" => Some(key_file.clone()),
        "SHEETSYNC_SHEETS_API_URL" | "SHEETSYNC_DRIVE_API_URL" => Some(api_url.clone()),
        _ => None,
    })
    .unwrap()
}

#[tokio::test]
async fn an_office_file_on_drive_is_read_as_a_workbook_only_with_office_files() {
    let db = test_db("workbook_drive").await;
    let fake = FakeGoogle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rows = deals();
    fake.add_office_file(OFFICE_FILE, xlsx_of(&rows));
    db.add_view(
        "view-signal",
        "Signal",
        &write_source(dir.path(), "deals.csv", csv_of(&rows).as_bytes()),
    )
    .await;
    // Shared from Drive, as an uploaded file is.
    let link = format!("https://drive.google.com/file/d/{OFFICE_FILE}/view?usp=sharing");
    db.add_view("view-market", "Market", &link).await;
    fake.add_spreadsheet(
        SPREADSHEET,
        FakeSpreadsheet {
            time_zone: "Europe/Paris".to_owned(),
            tabs: vec![FakeTab {
                sheet_id: 0,
                title: "Sheet1".to_owned(),
                values: api_values(&rows),
            }],
        },
    );
    db.add_view("view-organic", "Organic", SPREADSHEET).await;

    let refused = sync(google_config(&db, &fake, false)).await;
    let organic = refused.iter().find(|report| report.name == "Organic").unwrap();
    assert_eq!(organic.outcome, Outcome::Success, "{organic:#?}");
    let market = refused.iter().find(|report| report.name == "Market").unwrap();
    assert_eq!(market.outcome, Outcome::Failed, "{market:#?}");
    let error = market.error.as_deref().unwrap();
    assert!(error.contains("is an Office file uploaded to Google Drive"), "{error}");
    assert!(error.contains("set [google] office_files = true"), "{error}");
    assert!(error.contains("File > Save as Google Sheets"), "{error}");
    assert_eq!(fake.seen().drive_downloads, 0);
    assert_eq!(db.count("sales_records_market").await, 0);

    let config = google_config(&db, &fake, true);
    let read = sync(config.clone()).await;
    for report in &read {
        assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    }
    assert_eq!(fake.seen().drive_downloads, 1, "one download for the view");
    assert_eq!(
        contents(&db, "sales_records_market").await,
        contents(&db, "sales_records_signal").await,
        "the Office file on Drive and the CSV of the same sheet"
    );
    assert_eq!(
        contents(&db, "sales_records").await,
        contents(&db, "sales_records_signal").await,
        "the Sheets API and the CSV of the same sheet"
    );

    let sources = config.sources().unwrap();
    let sheet = sheetsync::source::SheetRef {
        spreadsheet_id: OFFICE_FILE.to_owned(),
        gid: Some(1),
        sheet_name: Some("sheet1".to_owned()),
    };
    // Watching asks Drive for the file's version, as for a spreadsheet.
    let spec = sheetsync::source::SourceSpec::GoogleSheet(sheet.clone());
    let mark = sources.change_mark(&spec).await.unwrap().expect("a Drive version");
    assert!(mark.mark.starts_with("version "), "{mark:?}");
    match sources.check_google(&sheet).await.unwrap() {
        GoogleCheck::OfficeFile {
            workbook: Some(tabs), ..
        } => assert_eq!(tabs.chosen, "Sheet1"),
        other => panic!("not read as an Office file: {other:?}"),
    }
    db.drop().await;
}

#[tokio::test]
async fn an_xlsb_workbook_syncs_with_its_types() {
    let db = test_db("workbook_xlsb").await;
    let dir = tempfile::tempdir().unwrap();
    let source = write_source(dir.path(), "deals.xlsb", &xlsb_workbook());
    db.db
        .collection::<Document>("views")
        .insert_one(doc! { "id": "view-organic", "name": "Organic", "sheet_url": source, "is_master": false })
        .await
        .unwrap();
    let report = sync(db.config()).await.remove(0);
    assert_eq!(report.outcome, Outcome::Success, "{report:#?}");
    let records = db.records("sales_records").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].get_str("client"), Ok("Acme"));
    assert_eq!(records[0].get_f64("expected_mrr"), Ok(1234.5));
    let discovered = records[0].get_datetime("discovery_date").unwrap();
    assert_eq!(discovered.try_to_rfc3339_string().unwrap(), "2025-01-10T00:00:00Z");
    db.drop().await;
}

#[tokio::test]
async fn the_views_of_one_office_file_share_one_download() {
    let db = test_db("workbook_drive_shared").await;
    let fake = FakeGoogle::start().await;
    let mut book = Workbook::new();
    for tab in ["Q1", "Q2"] {
        let sheet = book.add_worksheet().set_name(tab).unwrap();
        sheet.write_string(0, 0, "Client").unwrap();
        sheet.write_string(1, 0, tab).unwrap();
    }
    fake.add_office_file(OFFICE_FILE, book.save_to_buffer().unwrap());
    let tab = |name: &str| {
        sheetsync::source::SourceSpec::GoogleSheet(sheetsync::source::SheetRef {
            spreadsheet_id: OFFICE_FILE.to_owned(),
            gid: None,
            sheet_name: Some(name.to_owned()),
        })
    };
    let (q1, q2) = (tab("Q1"), tab("Q2"));
    let sources = google_config(&db, &fake, true)
        .sources()
        .unwrap()
        .sharing_spreadsheet_fetches(std::time::Duration::from_secs(60));
    let first_cell = |rows: &sheetsync::source::SourceRows| {
        let mut pass = rows.rows().unwrap();
        pass.next_row();
        pass.next_row().unwrap().unwrap().cells[0].clone()
    };
    // The daemon's first run asks for Q1, with Q2 as a companion.
    let read = sources.fetch_all_with(&[&q1], &[&q1, &q2]).await;
    assert_eq!(first_cell(read[0].as_ref().unwrap()), Cell::text("Q1"));
    assert_eq!(fake.seen().drive_downloads, 1);
    // Q2's own run finds its rows waiting.
    let read = sources.fetch_all_with(&[&q2], &[&q1, &q2]).await;
    assert_eq!(first_cell(read[0].as_ref().unwrap()), Cell::text("Q2"));
    assert_eq!(fake.seen().drive_downloads, 1, "one download for both views");
    db.drop().await;
}
