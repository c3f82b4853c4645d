//! The Google Sheets source against a local fake Google (token endpoint +
//! Sheets API v4), and the full path into MongoDB (`scripts/test`).

use std::time::{Duration, Instant};

use crate::harness::fake_google::{CLIENT_EMAIL, Endpoint, FakeGoogle, FakeSpreadsheet, FakeTab, Fault};
use crate::harness::process::Sheetsync;
use chrono::{NaiveDate, TimeZone, Utc};
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Value, json};
use sheetsync::engine::{Engine, SyncOptions};
use sheetsync::mapping;
use sheetsync::mapping::conventions::ReadSettings;
use sheetsync::report::{Outcome, Trigger};
use sheetsync::source::SourceRows;
use sheetsync::source::policy::SourcesSettings;
use sheetsync::source::sheets::settings::GoogleSettings;
use sheetsync::source::table::{Cell, Table};
use sheetsync::source::{SheetRef, SourceError, SourceSpec, Sources};

pub const SHEET_A: &str = "1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
pub const SHEET_B: &str = "1BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

fn settings(fake: &FakeGoogle) -> GoogleSettings {
    GoogleSettings {
        key_file: Some(fake.key_file.clone()),
        api_url: fake.api_url.clone(),
        request_timeout_ms: 30_000,
        max_attempts: 6,
        retry_base_delay_ms: 1,
        retry_max_delay_ms: 20,
        retry_max_elapsed_ms: 120_000,
        ..GoogleSettings::default()
    }
}

fn sources(settings: GoogleSettings) -> Sources {
    Sources::new(&SourcesSettings::default(), settings, Duration::from_secs(60)).unwrap()
}

fn sheet(id: &str, gid: Option<i64>, name: Option<&str>) -> SourceSpec {
    SourceSpec::GoogleSheet(SheetRef {
        spreadsheet_id: id.to_owned(),
        gid,
        sheet_name: name.map(str::to_owned),
    })
}

fn tab(sheet_id: i64, title: &str, values: Vec<Vec<Value>>) -> FakeTab {
    FakeTab {
        sheet_id,
        title: title.to_owned(),
        values,
    }
}

/// A sales tab: header, three records, a short row and a blank row.
fn sales_rows(prefix: &str) -> Vec<Vec<Value>> {
    vec![
        vec![
            json!("Client"),
            json!("Stage"),
            json!("Discovery date"),
            json!("Pipeline"),
        ],
        vec![
            json!(format!("{prefix} Acme")),
            json!("B Legals"),
            json!(45667),
            json!(60000),
        ],
        vec![json!(format!("{prefix} Globex")), json!("lost")],
        vec![],
        vec![
            json!(format!("{prefix} Initech")),
            json!("A Closed"),
            json!(45672.5),
            json!(1200.5),
        ],
    ]
}

pub fn two_spreadsheets(fake: &FakeGoogle) {
    fake.add_spreadsheet(
        SHEET_A,
        FakeSpreadsheet {
            time_zone: "Europe/Paris".to_owned(),
            tabs: vec![
                tab(0, "Signal", sales_rows("Signal")),
                tab(17, "It's Q1", sales_rows("Q1")),
                tab(23, "Full Funnel", sales_rows("FF")),
            ],
        },
    );
    fake.add_spreadsheet(
        SHEET_B,
        FakeSpreadsheet {
            time_zone: "America/New_York".to_owned(),
            tabs: vec![
                tab(5, "Market", sales_rows("Market")),
                tab(9, "Other", sales_rows("Other")),
            ],
        },
    );
}

/// The rows a Sheets fetch spooled, read back into a table.
fn table_of(fetched: SourceRows) -> Table {
    assert!(
        matches!(fetched, SourceRows::Spooled(_)),
        "a Google Sheets source spools its rows"
    );
    let mut table = Table {
        serial_time_zone: fetched.serial_time_zone(),
        tab_gid: fetched.tab_gid(),
        ..Table::default()
    };
    let mut rows = fetched.rows().unwrap();
    while let Some(row) = rows.next_row() {
        table.rows.push(row.unwrap().clone());
    }
    table.blank_rows = rows.blank_rows();
    table
}

/// Both mapping passes, with text date-times read in `time_zone`.
fn map_in_zone(fetched: &SourceRows, time_zone: chrono_tz::Tz) -> (mapping::Survey, Vec<mapping::MappedRecord>) {
    let settings = ReadSettings {
        date_order: Default::default(),
        time_zone,
        zone_is_the_syncs: false,
    };
    crate::harness::map_all(fetched, &settings).unwrap()
}

fn texts(table: &Table) -> Vec<Vec<String>> {
    table
        .rows
        .iter()
        .map(|row| row.cells.iter().map(Cell::display).collect())
        .collect()
}

#[tokio::test]
async fn one_token_and_one_batch_get_per_spreadsheet_per_cycle() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    let sources = sources(settings(&fake));
    let specs = [
        sheet(SHEET_A, None, Some("Signal")),
        sheet(SHEET_A, Some(0), Some("It's Q1")),
        sheet(SHEET_B, Some(9), None),
        sheet(SHEET_B, None, None),
    ];
    let refs: Vec<&SourceSpec> = specs.iter().collect();
    for _cycle in 0..2 {
        let tables: Vec<Table> = sources
            .fetch_all(&refs)
            .await
            .into_iter()
            .map(|fetched| table_of(fetched.unwrap()))
            .collect();
        let first_clients: Vec<String> = tables.iter().map(|table| table.rows[1].cells[0].display()).collect();
        assert_eq!(
            first_clients,
            ["Signal Acme", "Q1 Acme", "Other Acme", "Market Acme"],
            "name, name with a quote, gid, first tab"
        );
        assert_eq!(tables[0].serial_time_zone, Some(chrono_tz::Europe::Paris));
        assert_eq!(tables[3].serial_time_zone, Some(chrono_tz::America::New_York));
        let q1 = &tables[1];
        assert_eq!(
            q1.rows.iter().map(|row| row.number).collect::<Vec<_>>(),
            vec![1, 2, 3, 5],
            "spreadsheet row numbers, the blank row 4 skipped"
        );
        assert_eq!(q1.blank_rows, 1);
        // Google drops trailing empty cells; the mapping reads missing cells as empty.
        assert_eq!(q1.rows[2].cells.len(), 2, "a short row stays as Google sent it");
        assert_eq!(texts(q1)[2], ["Q1 Globex", "lost"]);
        assert_eq!(q1.rows[1].cells[2], Cell::Number(45667.0), "numbers stay numbers");
        assert_eq!(q1.rows[3].cells[3], Cell::Number(1200.5));
    }

    let seen = fake.seen();
    assert_eq!(seen.token_requests, 1, "one token for every call of both cycles");
    assert_eq!(
        seen.metadata_requests,
        [SHEET_A, SHEET_B],
        "the tab lists and time zones of the first cycle serve the second"
    );
    let batches: Vec<(&str, Vec<&str>)> = seen
        .batch_requests
        .iter()
        .map(|batch| {
            (
                batch.spreadsheet_id.as_str(),
                batch.ranges.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let expected = vec![
        (SHEET_A, vec!["'Signal'", "'It''s Q1'"]),
        (SHEET_B, vec!["'Other'", "'Market'"]),
    ];
    assert_eq!(
        batches,
        [expected.clone(), expected].concat(),
        "one batchGet per spreadsheet per cycle"
    );
    let query = &seen.batch_requests[0].query;
    for (name, value) in [
        ("valueRenderOption", "UNFORMATTED_VALUE"),
        ("dateTimeRenderOption", "SERIAL_NUMBER"),
        ("majorDimension", "ROWS"),
    ] {
        assert!(
            query.iter().any(|(n, v)| n == name && v == value),
            "{name}={value} missing from {query:?}"
        );
    }
    let stats = sources.google_stats();
    assert_eq!(
        (
            stats.requests,
            stats.metadata_calls,
            stats.batch_get_calls,
            stats.retries,
            stats.failed_calls
        ),
        (6, 2, 4, 0, 0)
    );
}

/// First clients of each fetched table, or the error's text.
async fn first_clients(sources: &Sources, specs: &[SourceSpec]) -> Vec<String> {
    let refs: Vec<&SourceSpec> = specs.iter().collect();
    sources
        .fetch_all(&refs)
        .await
        .into_iter()
        .map(|fetched| match fetched {
            Ok(fetched) => table_of(fetched).rows[1].cells[0].display(),
            Err(error) => error.to_string(),
        })
        .collect()
}

#[tokio::test]
async fn cached_tab_lists_are_read_again_when_a_tab_moves_or_is_added() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    let sources = sources(settings(&fake));
    let specs = [
        sheet(SHEET_A, None, Some("Signal")),
        sheet(SHEET_A, Some(17), None),
        sheet(SHEET_B, None, None),
    ];
    let expected = ["Signal Acme", "Q1 Acme", "Market Acme"];
    assert_eq!(first_clients(&sources, &specs).await, expected);
    assert_eq!(fake.seen().metadata_requests, [SHEET_A, SHEET_B]);

    // The tab behind gid 17 is renamed: the cached title now names nothing,
    // Google refuses the range, and the same cycle reads A's tab list again.
    let mut renamed = fake.spreadsheet(SHEET_A);
    renamed.tabs[1].title = "Q1 (archive)".to_owned();
    fake.add_spreadsheet(SHEET_A, renamed);
    assert_eq!(first_clients(&sources, &specs).await, expected);
    let seen = fake.seen();
    assert_eq!(
        seen.metadata_requests,
        [SHEET_A, SHEET_B, SHEET_A],
        "only A is read again"
    );
    let last_ranges: Vec<&Vec<String>> = seen.batch_requests[2..].iter().map(|batch| &batch.ranges).collect();
    assert_eq!(
        last_ranges,
        [
            &vec!["'Signal'".to_owned(), "'It''s Q1'".to_owned()],
            &vec!["'Signal'".to_owned(), "'Q1 (archive)'".to_owned()],
            &vec!["'Market'".to_owned()],
        ]
    );

    // A view naming a tab added since the list was read finds it.
    let mut grown = fake.spreadsheet(SHEET_B);
    grown.tabs.push(tab(11, "Organic", sales_rows("Organic")));
    fake.add_spreadsheet(SHEET_B, grown);
    let with_new_tab = [sheet(SHEET_B, None, None), sheet(SHEET_B, None, Some("Organic"))];
    assert_eq!(
        first_clients(&sources, &with_new_tab).await,
        ["Market Acme", "Organic Acme"]
    );
    assert_eq!(fake.seen().metadata_requests.len(), 4);

    // A tab that really is missing is reported once the list is fresh.
    let missing = [sheet(SHEET_B, None, Some("Nope"))];
    let error = &first_clients(&sources, &missing).await[0];
    assert!(error.contains("no tab named \"Nope\""), "{error}");
    assert_eq!(fake.seen().metadata_requests.len(), 5);
    assert_eq!(sources.google_stats().failed_calls, 1, "only the refused range");
}

#[tokio::test]
async fn a_zero_metadata_age_reads_the_tab_list_every_cycle() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    let sources = sources(GoogleSettings {
        metadata_max_age_secs: 0,
        ..settings(&fake)
    });
    let specs = [sheet(SHEET_A, None, Some("Signal"))];
    for _cycle in 0..3 {
        assert_eq!(first_clients(&sources, &specs).await, ["Signal Acme"]);
    }
    let seen = fake.seen();
    assert_eq!(seen.metadata_requests, [SHEET_A, SHEET_A, SHEET_A]);
    assert_eq!(seen.batch_requests.len(), 3);
}

fn serial(date: NaiveDate, hours: f64) -> f64 {
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 30).unwrap();
    (date - epoch).num_days() as f64 + hours / 24.0
}

#[tokio::test]
async fn serial_dates_are_read_on_their_spreadsheets_clock_across_dst() {
    let fake = FakeGoogle::start().await;
    // Europe/Paris springs forward on 2027-03-28 at 02:00; New York on 2027-03-14.
    let paris_day = NaiveDate::from_ymd_opt(2027, 3, 28).unwrap();
    let us_day = NaiveDate::from_ymd_opt(2027, 3, 14).unwrap();
    let header = vec![json!("Client"), json!("Stage"), json!("Discovery date")];
    let row = |client: &str, value: f64| vec![json!(client), json!("Lost"), json!(value)];
    fake.add_spreadsheet(
        SHEET_A,
        FakeSpreadsheet {
            time_zone: "Europe/Paris".to_owned(),
            tabs: vec![tab(
                0,
                "Paris",
                vec![
                    header.clone(),
                    row("date only", serial(paris_day, 0.0)),
                    row("before the change", serial(paris_day, 1.5)),
                    row("after the change", serial(paris_day, 3.5)),
                ],
            )],
        },
    );
    fake.add_spreadsheet(
        SHEET_B,
        FakeSpreadsheet {
            time_zone: "America/New_York".to_owned(),
            tabs: vec![tab(
                0,
                "New York",
                vec![
                    header,
                    row("date only", serial(paris_day, 0.0)),
                    row("before the change", serial(us_day, 1.5)),
                    row("after the change", serial(us_day, 3.5)),
                    row("late March", serial(paris_day, 1.5)),
                ],
            )],
        },
    );
    let sources = sources(settings(&fake));
    let specs = [sheet(SHEET_A, None, None), sheet(SHEET_B, None, None)];
    let tables = sources.fetch_all(&specs.iter().collect::<Vec<_>>()).await;
    let utc = |y, mo, d, h, mi| {
        Bson::DateTime(mongodb::bson::DateTime::from_millis(
            Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap().timestamp_millis(),
        ))
    };
    let expected = [
        vec![
            ("date only", utc(2027, 3, 28, 0, 0)),
            ("before the change", utc(2027, 3, 28, 0, 30)),
            ("after the change", utc(2027, 3, 28, 1, 30)),
        ],
        vec![
            ("date only", utc(2027, 3, 28, 0, 0)),
            ("before the change", utc(2027, 3, 14, 6, 30)),
            ("after the change", utc(2027, 3, 14, 7, 30)),
            ("late March", utc(2027, 3, 28, 5, 30)),
        ],
    ];
    // Configured for Paris, each sheet's serials are read on its own clock;
    // the New York one is noticed.
    for ((table, expected), notices) in tables.into_iter().zip(expected).zip([0, 1]) {
        let (plan, records) = map_in_zone(&table.unwrap(), chrono_tz::Europe::Paris);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        assert_eq!(plan.notices.len(), notices, "{:?}", plan.notices);
        let dates: Vec<(String, Bson)> = records
            .iter()
            .map(|record| {
                (
                    record.fields.get_str("client").unwrap().to_owned(),
                    record.fields.get("discovery_date").unwrap().clone(),
                )
            })
            .collect();
        let expected: Vec<(String, Bson)> = expected.into_iter().map(|(c, d)| (c.to_owned(), d)).collect();
        assert_eq!(dates, expected);
    }
}

#[tokio::test]
async fn retries_rate_limits_server_errors_and_timeouts_then_succeeds() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    fake.script(SHEET_A, Endpoint::Metadata, [Fault::ServerError]);
    fake.script(
        SHEET_A,
        Endpoint::BatchGet,
        [
            Fault::TooManyRequests {
                retry_after: Some("1".to_owned()),
            },
            Fault::TooManyRequests { retry_after: None },
            Fault::ServerError,
            // Far past the request timeout: the client must give up on it and retry.
            Fault::Slow(Duration::from_secs(120)),
        ],
    );
    let sources = sources(GoogleSettings {
        request_timeout_ms: 3_000,
        ..settings(&fake)
    });
    let started = Instant::now();
    let table = table_of(sources.fetch(&sheet(SHEET_A, None, Some("Signal"))).await.unwrap());
    assert_eq!(table.rows.len(), 4);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the Retry-After of 1 s was honoured"
    );
    let seen = fake.seen();
    assert_eq!(seen.metadata_requests.len(), 2);
    assert_eq!(seen.batch_requests.len(), 5);
    let stats = sources.google_stats();
    assert_eq!(
        (stats.requests, stats.retries, stats.rate_limited, stats.failed_calls),
        (7, 5, 2, 0)
    );
}

#[tokio::test]
async fn gives_up_within_the_attempt_and_time_budget() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    fake.script(SHEET_A, Endpoint::BatchGet, vec![Fault::ServerError; 10]);
    fake.script(
        SHEET_B,
        Endpoint::Metadata,
        [Fault::TooManyRequests {
            retry_after: Some("3600".to_owned()),
        }],
    );
    let sources = sources(GoogleSettings {
        max_attempts: 3,
        ..settings(&fake)
    });
    let error = sources
        .fetch(&sheet(SHEET_A, None, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("3 attempt(s)") && error.contains("HTTP 500"), "{error}");
    assert_eq!(fake.seen().batch_requests.len(), 3);

    let error = sources
        .fetch(&sheet(SHEET_B, None, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("1 attempt(s)") && error.contains("asked to wait 3600 s"),
        "a Retry-After past the time budget ends the call at once: {error}"
    );
    let stats = sources.google_stats();
    assert_eq!((stats.failed_calls, stats.retries), (2, 2));
}

#[tokio::test]
async fn refusals_fail_at_once_with_a_message_saying_what_to_do() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    // Every case must reach spreadsheets.get, so nothing is cached.
    let sources = sources(GoogleSettings {
        metadata_max_age_secs: 0,
        ..settings(&fake)
    });
    let cases = [
        (
            Endpoint::Metadata,
            Fault::Forbidden,
            vec![CLIENT_EMAIL, "not shared", "share it (Viewer)"],
        ),
        (
            Endpoint::Metadata,
            Fault::ApiDisabled,
            vec!["enable the Google Sheets API"],
        ),
        (
            Endpoint::Metadata,
            Fault::NotFound,
            vec![SHEET_A, "does not exist", "ID"],
        ),
        (Endpoint::BatchGet, Fault::TruncatedJson, vec!["not the expected JSON"]),
        (Endpoint::Metadata, Fault::TruncatedJson, vec!["not the expected JSON"]),
    ];
    for (endpoint, fault, expected) in cases {
        let before = sources.google_stats().requests;
        fake.script(SHEET_A, endpoint, [fault.clone()]);
        let error = sources
            .fetch(&sheet(SHEET_A, None, Some("Signal")))
            .await
            .unwrap_err()
            .to_string();
        for part in expected {
            assert!(error.contains(part), "{fault:?}: {error:?} should mention {part:?}");
        }
        let requests = sources.google_stats().requests - before;
        let expected_requests = if endpoint == Endpoint::Metadata { 1 } else { 2 };
        assert_eq!(requests, expected_requests, "{fault:?} is not retried");
    }
    assert_eq!(sources.google_stats().retries, 0);
}

#[tokio::test]
async fn a_missing_range_or_tab_fails_only_its_view() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    let sources = sources(settings(&fake));
    let specs = [
        sheet(SHEET_A, None, Some("Signal")),
        sheet(SHEET_A, None, Some("Nope")),
        sheet(SHEET_A, None, Some("Full Funnel")),
    ];
    let refs: Vec<&SourceSpec> = specs.iter().collect();
    fake.script(SHEET_A, Endpoint::BatchGet, [Fault::OmitLastRange]);
    let results = sources.fetch_all(&refs).await;
    assert!(results[0].is_ok());
    let no_tab = results[1].as_ref().unwrap_err().to_string();
    assert!(
        no_tab.contains("no tab named \"Nope\"") && no_tab.contains("\"It's Q1\""),
        "{no_tab}"
    );
    let missing = results[2].as_ref().unwrap_err().to_string();
    assert!(missing.contains("no values for range 'Full Funnel'"), "{missing}");
    let ranges = &fake.seen().batch_requests[0].ranges;
    assert_eq!(
        ranges,
        &["'Signal'", "'Full Funnel'"],
        "the unknown tab is not requested"
    );
}

#[tokio::test]
async fn without_a_usable_key_google_views_say_how_to_configure_one() {
    let nothing_anywhere = GoogleSettings {
        metadata_host: "127.0.0.1:9".to_owned(),
        ..GoogleSettings::default()
    };
    let no_key = Sources::new(&SourcesSettings::default(), nothing_anywhere, Duration::from_secs(5)).unwrap();
    let error = no_key.fetch(&sheet(SHEET_A, None, None)).await.unwrap_err().to_string();
    assert!(error.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{error}");

    let missing = sources(GoogleSettings {
        key_file: Some("/nonexistent/key.json".into()),
        ..GoogleSettings::default()
    });
    let error = missing.fetch(&sheet(SHEET_A, None, None)).await.unwrap_err();
    assert!(matches!(error, SourceError::Sheets(_)));
    assert!(error.to_string().contains("/nonexistent/key.json"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("key.json");
    std::fs::write(&not_a_key, r#"{"type": "service_account", "client_email": "x", "private_key": "nope", "token_uri": "http://127.0.0.1:9/"}"#).unwrap();
    let error = sources(GoogleSettings {
        key_file: Some(not_a_key),
        ..GoogleSettings::default()
    })
    .fetch(&sheet(SHEET_A, None, None))
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("not a PEM private key"), "{error}");
}

pub async fn insert_views(db: &mongodb::Database) {
    db.collection::<Document>("views")
        .insert_many([
            doc! {
                "id": "view-signal-1", "name": "Signal", "is_master": false,
                "sheet_url": format!("https://docs.google.com/spreadsheets/d/{SHEET_A}/edit?usp=sharing"),
                "sheet_name": "It's Q1",
            },
            doc! {
                "id": "view-market-1", "name": "Market", "is_master": false,
                "sheet_url": format!("https://docs.google.com/spreadsheets/d/{SHEET_B}/edit#gid=5"),
                "sheet_name": "",
            },
            doc! { "id": "view-master-1", "name": "Master", "is_master": true, "sheet_url": Bson::Null },
        ])
        .await
        .unwrap();
}

/// The test database's configuration, with the fake Google's key and API.
fn google_config(test_db: &crate::harness::TestDb, fake: &FakeGoogle) -> sheetsync::config::Config {
    let key_file = fake.key_file.display().to_string();
    test_db.config_with(&[
        ("GOOGLE_APPLICATION_CREDENTIALS", &key_file),
        ("SHEETSYNC_SHEETS_API_URL", &fake.api_url),
    ])
}

/// Spreadsheet A becomes its Q1 tab alone, with one record more (Q1 Hooli).
pub fn add_q1_hooli(fake: &FakeGoogle) {
    let mut changed = sales_rows("Q1");
    changed.push(vec![json!("Q1 Hooli"), json!("F Inbox")]);
    fake.add_spreadsheet(
        SHEET_A,
        FakeSpreadsheet {
            time_zone: "Europe/Paris".to_owned(),
            tabs: vec![tab(17, "It's Q1", changed)],
        },
    );
}

pub async fn metadata(db: &mongodb::Database, view_id: &str) -> Option<Document> {
    db.collection::<Document>("data_metadata")
        .find_one(doc! { "type": "last_update", "view_id": view_id })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_failed_view_leaves_its_collection_and_metadata_untouched() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    let test_db = crate::harness::test_db("failed_view").await;
    insert_views(&test_db.db).await;
    let config = google_config(&test_db, &fake);
    let engine = crate::harness::engine_for(config).await;
    let first = engine.sync(&[], Trigger::Cli, SyncOptions::default()).await.unwrap();
    assert!(
        first.iter().all(|report| report.outcome == Outcome::Success),
        "{first:?}"
    );
    let market_before = test_db.records("sales_records_market").await;
    let market_meta_before = metadata(&test_db.db, "view-market-1").await.unwrap();
    assert_eq!(market_before.len(), 3);
    assert_eq!(market_meta_before.get_str("source_type").unwrap(), "google_sheets");

    // Market's spreadsheet is no longer shared (its tab list is cached, so
    // the refusal comes on the values); Signal's data changes.
    fake.script(SHEET_B, Endpoint::BatchGet, [Fault::Forbidden]);
    add_q1_hooli(&fake);
    let second = engine.sync(&[], Trigger::Cli, SyncOptions::default()).await.unwrap();
    let market = second.iter().find(|report| report.name == "Market").unwrap();
    assert_eq!(market.outcome, Outcome::Failed);
    assert!(market.error.as_deref().unwrap().contains(CLIENT_EMAIL), "{market:?}");
    let signal = second.iter().find(|report| report.name == "Signal").unwrap();
    assert_eq!(signal.outcome, Outcome::Success, "the other view goes on");
    assert_eq!(test_db.records("sales_records_signal").await.len(), 4);
    assert_eq!(test_db.records("sales_records_market").await, market_before);
    assert_eq!(
        metadata(&test_db.db, "view-market-1").await.unwrap(),
        market_meta_before
    );
    assert_eq!(fake.seen().token_requests, 1);
    test_db.drop().await;
}

/// Runs the binary on the test server's database `db_name`, off the async
/// runtime (the fake Google answers on it meanwhile).
async fn run_binary(args: &[&str], config_file: &std::path::Path, db_name: &str) -> std::process::Output {
    Sheetsync::new()
        .database(&crate::harness::server_url(), db_name)
        .config(config_file)
        .args(args)
        .output_async()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheetsync_sync_and_check_against_the_fake_google() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    let test_db = crate::harness::test_db("binary").await;
    insert_views(&test_db.db).await;
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("sheetsync.toml");
    std::fs::write(
        &config_file,
        format!(
            "[google]\nkey_file = {:?}\napi_url = {:?}\nretry_base_delay_ms = 10\n",
            fake.key_file.display().to_string(),
            fake.api_url
        ),
    )
    .unwrap();

    let sync = run_binary(&["sync"], &config_file, &test_db.name).await;
    let stdout = String::from_utf8_lossy(&sync.stdout);
    assert!(
        sync.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    assert!(stdout.contains("2 view(s) synced, 0 failed"), "{stdout}");

    let signal = test_db.records("sales_records_signal").await;
    let clients: Vec<&str> = signal.iter().map(|record| record.get_str("client").unwrap()).collect();
    assert_eq!(clients, ["Q1 Acme", "Q1 Globex", "Q1 Initech"]);
    let acme = &signal[0];
    assert_eq!(acme.get_str("stage").unwrap(), "B Legals");
    assert_eq!(acme.get_f64("pipeline").unwrap(), 60000.0);
    assert_eq!(
        acme.get_datetime("discovery_date").unwrap().timestamp_millis(),
        Utc.with_ymd_and_hms(2025, 1, 10, 0, 0, 0).unwrap().timestamp_millis(),
        "serial 45667 is 2025-01-10"
    );
    assert_eq!(acme.get_str("month").unwrap(), "2025-01");
    assert_eq!(signal[1].get_str("stage").unwrap(), "Lost");
    assert_eq!(signal[1].get("pipeline"), Some(&Bson::Null), "padded cell is null");
    assert_eq!(
        signal[2].get_datetime("discovery_date").unwrap().timestamp_millis(),
        Utc.with_ymd_and_hms(2025, 1, 15, 11, 0, 0).unwrap().timestamp_millis(),
        "noon in Paris in winter"
    );
    let market = test_db.records("sales_records_market").await;
    assert_eq!(
        market[0].get_str("client").unwrap(),
        "Market Acme",
        "gid=5 is the Market tab"
    );

    let meta = metadata(&test_db.db, "view-signal-1").await.unwrap();
    assert_eq!(meta.get_str("source_type").unwrap(), "google_sheets");
    assert_eq!(meta.get_i64("records_count").unwrap(), 3);
    assert!(meta.get_str("source_url").unwrap().contains(SHEET_A));

    // check: both views reachable, then Market's spreadsheet unshared.
    let check = run_binary(&["check"], &config_file, &test_db.name).await;
    let stdout = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        check.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "service-account key from [google] key_file ({}) acts as the service account {CLIENT_EMAIL}; spreadsheet \
             reachable, tab \"It's Q1\" found, time zone Europe/Paris",
            fake.key_file.display()
        )),
        "{stdout}"
    );
    // Configured for another zone: check says which zone reads what.
    let utc_config = config_file.with_file_name("utc.toml");
    let text = std::fs::read_to_string(&config_file).unwrap() + "\n[sync]\ntime_zone = \"UTC\"\n";
    std::fs::write(&utc_config, text).unwrap();
    let check = run_binary(&["check"], &utc_config, &test_db.name).await;
    let stdout = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        stdout.contains(
            "time zone Europe/Paris (its date-times are read in Europe/Paris; text date-times, as in its CSV \
             export, in UTC, the configured time_zone)"
        ),
        "{stdout}"
    );
    fake.script(SHEET_B, Endpoint::Metadata, [Fault::Forbidden]);
    let check = run_binary(&["check"], &config_file, &test_db.name).await;
    let stdout = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(!check.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "error: spreadsheet {SHEET_B} is not shared with the service account {CLIENT_EMAIL}; share it (Viewer) with that address"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("PRIVATE KEY") && !stdout.contains("fake-access-token"));
    assert!(!String::from_utf8_lossy(&check.stderr).contains("fake-access-token"));
    test_db.drop().await;
}

/// The daemon syncs views one at a time; with shared fetches a spreadsheet
/// still costs one `values:batchGet` per cycle for all the views reading it.
#[tokio::test]
async fn views_synced_one_by_one_share_one_batch_get_per_spreadsheet() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    let test_db = crate::harness::test_db("shared_fetch").await;
    insert_views(&test_db.db).await;
    test_db
        .db
        .collection::<Document>("views")
        .insert_one(doc! {
            "id": "view-ff-1", "name": "Full Funnel", "is_master": false,
            "sheet_url": format!("https://docs.google.com/spreadsheets/d/{SHEET_A}/edit"), "sheet_name": "Full Funnel",
        })
        .await
        .unwrap();
    let config = google_config(&test_db, &fake);
    let engine = |sources: Sources| Engine::new(test_db.db.clone(), config.clone(), sources);
    let batch_gets = |spreadsheet: &str| {
        fake.seen()
            .batch_requests
            .iter()
            .filter(|request| request.spreadsheet_id == spreadsheet)
            .count()
    };
    let one_by_one = |engine: Engine| async move {
        for view in ["Signal", "Full Funnel", "Market"] {
            let reports = engine
                .sync(&[view.to_owned()], Trigger::Schedule, SyncOptions::default())
                .await
                .unwrap();
            assert!(
                reports.iter().all(|report| report.outcome == Outcome::Success),
                "{reports:?}"
            );
        }
    };

    one_by_one(engine(config.sources().unwrap())).await;
    assert_eq!(
        (batch_gets(SHEET_A), batch_gets(SHEET_B)),
        (2, 1),
        "without sharing: one per view"
    );

    let shared = config
        .sources()
        .unwrap()
        .sharing_spreadsheet_fetches(Duration::from_secs(60));
    one_by_one(engine(shared.clone())).await;
    assert_eq!(
        (batch_gets(SHEET_A), batch_gets(SHEET_B)),
        (3, 2),
        "with sharing: one per spreadsheet"
    );
    let last = fake
        .seen()
        .batch_requests
        .iter()
        .rev()
        .find(|r| r.spreadsheet_id == SHEET_A)
        .unwrap()
        .ranges
        .len();
    assert_eq!(last, 2, "Signal's fetch covered Full Funnel's tab too");
    let full_funnel = test_db.records("sales_records_fullfunnel").await;
    assert_eq!(full_funnel.len(), 3);
    assert!(
        full_funnel
            .iter()
            .all(|record| record.get_str("client").unwrap().starts_with("FF "))
    );

    // A table is taken once: the next cycle reads the spreadsheet again.
    one_by_one(engine(shared)).await;
    assert_eq!((batch_gets(SHEET_A), batch_gets(SHEET_B)), (4, 3));
    test_db.drop().await;
}

/// One sheet read two ways: "File > Download > CSV" (formatted text) and the
/// Sheets API (unformatted values, dates as serials). A view that switches
/// from one to the other changes nothing.
#[tokio::test]
async fn the_same_sheet_as_csv_and_through_the_api_gives_the_same_documents() {
    let fake = FakeGoogle::start().await;
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let header = [
        "Month",
        "Discovery Date",
        "Client",
        "Stage",
        "POA Date",
        "Expected MRR",
        "Pipeline",
    ];
    let api_rows = vec![
        header.iter().map(|label| json!(label)).collect(),
        vec![
            json!(serial(day(2025, 1, 1), 0.0)),
            json!(serial(day(2025, 1, 10), 14.5)),
            json!("Acme Corp"),
            json!("B Legals"),
            json!(serial(day(2025, 1, 15), 0.0)),
            json!(5000.5),
            json!(0.12),
        ],
        vec![
            json!("2025-02"),
            json!(serial(day(2025, 2, 1), 6.0)),
            json!("Globex"),
            json!("Lost"),
            json!(""),
            json!(-1200),
            json!(60000),
        ],
    ];
    fake.add_spreadsheet(
        SHEET_A,
        FakeSpreadsheet {
            time_zone: "Europe/Paris".to_owned(),
            tabs: vec![tab(0, "Sheet1", api_rows)],
        },
    );
    // What the same cells look like in Google's CSV export (fr-FR locale).
    let csv = "Month,Discovery Date,Client,Stage,POA Date,Expected MRR,Pipeline\r\n\
               01/01/2025,10/01/2025 14:30:00,Acme Corp,B Legals,15/01/2025,\"5 000,50 €\",12%\r\n\
               2025-02,01/02/2025 06:00:00,Globex,Lost,,\"-1 200,00 €\",\"60 000\"\r\n";
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("export.csv");
    std::fs::write(&csv_path, csv).unwrap();

    let test_db = crate::harness::test_db("csv_then_api").await;
    test_db
        .add_view("view-signal-1", "Signal", &format!("file://{}", csv_path.display()))
        .await;
    let config = google_config(&test_db, &fake);
    let engine = crate::harness::engine_for(config).await;
    let from_csv = engine.sync(&[], Trigger::Cli, SyncOptions::default()).await.unwrap();
    assert_eq!(from_csv[0].outcome, Outcome::Success, "{from_csv:?}");
    assert_eq!(from_csv[0].warnings, [], "{from_csv:?}");
    let csv_documents = test_db.records("sales_records_signal").await;

    test_db
        .db
        .collection::<Document>("views")
        .update_one(
            doc! { "id": "view-signal-1" },
            doc! { "$set": { "sheet_url": format!("https://docs.google.com/spreadsheets/d/{SHEET_A}/edit#gid=0") } },
        )
        .await
        .unwrap();
    let from_api = engine.sync(&[], Trigger::Cli, SyncOptions::default()).await.unwrap();
    let report = &from_api[0];
    assert_eq!(report.outcome, Outcome::Success, "{report:?}");
    assert_eq!(report.source_type, Some(sheetsync::source::SourceType::GoogleSheets));
    assert_eq!(
        (
            report.changes.inserted,
            report.changes.updated,
            report.changes.removed,
            report.changes.unchanged
        ),
        (0, 0, 0, 2),
        "{report:?}"
    );
    assert!(!report.swapped, "nothing changed, nothing was rewritten");
    assert_eq!(test_db.records("sales_records_signal").await, csv_documents);
    let acme = &csv_documents[0];
    assert_eq!(
        acme.get_datetime("discovery_date").unwrap().timestamp_millis(),
        Utc.with_ymd_and_hms(2025, 1, 10, 13, 30, 0).unwrap().timestamp_millis(),
        "14:30 in Paris"
    );
    assert_eq!(acme.get_f64("pipeline").unwrap(), 0.12);
    assert_eq!(acme.get_str("month").unwrap(), "2025-01");
    test_db.drop().await;
}

/// A sales tab of a header and `count` records, with a blank row inside
/// and one ending the third page (of 3 rows).
fn long_rows(count: usize) -> Vec<Vec<Value>> {
    let mut rows = vec![vec![json!("Client"), json!("Stage"), json!("Pipeline")]];
    for index in 0..count {
        rows.push(vec![
            json!(format!("Client {index}")),
            json!("Lost"),
            json!(index * 100),
        ]);
    }
    rows.insert(4, vec![]);
    rows.insert(8, vec![]);
    rows
}

fn paged(fake: &FakeGoogle, page_rows: usize) -> GoogleSettings {
    GoogleSettings {
        page_rows,
        max_requests_per_minute: 0,
        ..settings(fake)
    }
}

fn long_spreadsheet(fake: &FakeGoogle) {
    fake.add_spreadsheet(
        SHEET_A,
        FakeSpreadsheet {
            time_zone: "Europe/Paris".to_owned(),
            tabs: vec![tab(0, "Signal", long_rows(9)), tab(17, "It's Q1", sales_rows("Q1"))],
        },
    );
}

async fn fetch_both(sources: &Sources) -> Vec<Result<Table, String>> {
    let specs = [
        sheet(SHEET_A, None, Some("Signal")),
        sheet(SHEET_A, None, Some("It's Q1")),
    ];
    let refs: Vec<&SourceSpec> = specs.iter().collect();
    sources
        .fetch_all(&refs)
        .await
        .into_iter()
        .map(|fetched| fetched.map(table_of).map_err(|error| error.to_string()))
        .collect()
}

#[tokio::test]
async fn a_tab_longer_than_a_page_reads_as_one_read_in_rounds_of_pages() {
    let fake = FakeGoogle::start().await;
    long_spreadsheet(&fake);
    let whole = fetch_both(&sources(settings(&fake))).await;
    assert_eq!(fake.seen().batch_requests.len(), 1, "each tab fits one page: one call");

    let fake = FakeGoogle::start().await;
    long_spreadsheet(&fake);
    let pages = fetch_both(&sources(paged(&fake, 3))).await;
    assert_eq!(pages, whole, "rows, row numbers, cells and blank rows as in one read");
    let signal = pages[0].as_ref().unwrap();
    assert_eq!(signal.rows.len(), 10);
    assert_eq!(signal.blank_rows, 2, "the blank row inside and the one ending a page");
    assert_eq!(signal.rows.last().unwrap().number, 12);
    let ranges: Vec<Vec<String>> = fake
        .seen()
        .batch_requests
        .into_iter()
        .map(|batch| batch.ranges)
        .collect();
    // Signal: 12 rows + 2 spare in the grid = 14; It's Q1: 5 + 2 = 7.
    // Both tabs' pages share each round's call; no range passes the grid
    // (the fake refuses those, as Google does).
    assert_eq!(
        ranges,
        [
            vec!["'Signal'!1:3", "'It''s Q1'!1:3"],
            vec!["'Signal'!4:6", "'It''s Q1'!4:6"],
            vec!["'Signal'!7:9", "'It''s Q1'!7:7"],
            vec!["'Signal'!10:12"],
            vec!["'Signal'!13:14"],
        ]
    );
}

#[tokio::test]
async fn a_failing_page_is_retried_alone_and_one_that_keeps_failing_fails_the_view() {
    let fake = FakeGoogle::start().await;
    long_spreadsheet(&fake);
    let expected = fetch_both(&sources(paged(&fake, 3))).await;
    let calls = fake.seen().batch_requests.len();

    // The second round fails once: it alone is asked again.
    let fake = FakeGoogle::start().await;
    long_spreadsheet(&fake);
    fake.script(
        SHEET_A,
        Endpoint::BatchGet,
        [Fault::Slow(Duration::ZERO), Fault::ServerError],
    );
    assert_eq!(fetch_both(&sources(paged(&fake, 3))).await, expected);
    let ranges: Vec<Vec<String>> = fake
        .seen()
        .batch_requests
        .into_iter()
        .map(|batch| batch.ranges)
        .collect();
    assert_eq!(ranges.len(), calls + 1);
    assert_eq!(ranges[1], ranges[2], "the failed round is repeated, nothing else");

    // The second answer breaks off half-way, its first rows already spooled:
    // the round is read again and those rows are not kept twice.
    let fake = FakeGoogle::start().await;
    long_spreadsheet(&fake);
    fake.script(
        SHEET_A,
        Endpoint::BatchGet,
        [Fault::Slow(Duration::ZERO), Fault::CutMidAnswer],
    );
    let cut_sources = sources(paged(&fake, 3));
    assert_eq!(fetch_both(&cut_sources).await, expected);
    assert_eq!(cut_sources.google_stats().retries, 1);
    assert_eq!(fake.seen().batch_requests.len(), calls + 1);

    // The third round keeps failing: both views fail, none gets part of a tab.
    let fake = FakeGoogle::start().await;
    long_spreadsheet(&fake);
    let zero = Fault::Slow(Duration::ZERO);
    fake.script(
        SHEET_A,
        Endpoint::BatchGet,
        [zero.clone(), zero, Fault::ServerError, Fault::ServerError],
    );
    let settings = GoogleSettings {
        max_attempts: 2,
        ..paged(&fake, 3)
    };
    for table in fetch_both(&sources(settings)).await {
        let error = table.unwrap_err();
        assert!(error.contains("HTTP 500"), "{error}");
    }
}

#[tokio::test]
async fn a_view_whose_page_keeps_failing_leaves_its_collection_untouched() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    let test_db = crate::harness::test_db("paged_failure").await;
    insert_views(&test_db.db).await;
    let mut config = google_config(&test_db, &fake);
    config.google.page_rows = 2;
    config.google.max_requests_per_minute = 0;
    config.google.max_attempts = 2;
    config.google.retry_base_delay_ms = 1;
    let engine = crate::harness::engine_for(config).await;
    let first = engine
        .sync(&["Signal".to_owned()], Trigger::Cli, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(first[0].outcome, Outcome::Success, "{first:?}");
    let before = test_db.records("sales_records_signal").await;
    assert_eq!(before.len(), 3);

    // A new record on the last page, whose round now keeps failing.
    add_q1_hooli(&fake);
    let zero = Fault::Slow(Duration::ZERO);
    fake.script(
        SHEET_A,
        Endpoint::BatchGet,
        [zero.clone(), zero, Fault::ServerError, Fault::ServerError],
    );
    let second = engine
        .sync(&["Signal".to_owned()], Trigger::Cli, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(second[0].outcome, Outcome::Failed, "{second:?}");
    assert_eq!(test_db.records("sales_records_signal").await, before);
    test_db.drop().await;
}

/// The cells of one tab of each spreadsheet.
async fn read_both(sources: Sources) -> Vec<Vec<Vec<String>>> {
    let specs = [sheet(SHEET_A, None, Some("It's Q1")), sheet(SHEET_B, None, None)];
    let tables = sources.fetch_all(&specs.iter().collect::<Vec<_>>()).await;
    tables
        .into_iter()
        .map(|table| texts(&table_of(table.unwrap())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_google_request_asks_for_gzip_and_gzip_gives_the_same_rows() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    let compressed = read_both(sources(settings(&fake))).await;
    let seen = fake.seen();
    assert!(!seen.api_headers.is_empty());
    let agent = concat!("sheetsync/", env!("CARGO_PKG_VERSION"), " (gzip)");
    for (encoding, user_agent) in &seen.api_headers {
        assert!(encoding.contains("gzip"), "Accept-Encoding {encoding:?}");
        assert_eq!(user_agent, agent);
    }
    assert_eq!(
        seen.gzipped_answers,
        seen.api_headers.len(),
        "every answer came gzipped"
    );

    fake.answer_plain();
    let plain = read_both(sources(settings(&fake))).await;
    assert_eq!(
        fake.seen().gzipped_answers,
        seen.gzipped_answers,
        "the second read was plain"
    );
    assert_eq!(compressed, plain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_refused_at_the_size_cap() {
    let fake = FakeGoogle::start().await;
    two_spreadsheets(&fake);
    fake.script(SHEET_B, Endpoint::BatchGet, [Fault::GzipBomb]);
    let limits = SourcesSettings {
        max_download_bytes: 8 << 20,
        ..SourcesSettings::default()
    };
    let sources = Sources::new(&limits, settings(&fake), Duration::from_secs(60)).unwrap();
    let error = sources
        .fetch(&sheet(SHEET_B, None, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("larger than [sources] max_download_bytes (8388608 bytes)"),
        "{error}"
    );
}
