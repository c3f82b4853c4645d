//! The `sheetsync` binary as operators use it.

use std::process::Output;

use crate::harness::process::Sheetsync;
use crate::harness::{fixture_url, server_url, test_db};
use futures_util::TryStreamExt;
use mongodb::bson::Document;

fn sheetsync(db_name: &str, url: &str, args: &[&str]) -> Output {
    Sheetsync::new().database(url, db_name).args(args).output()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn index_names(db: &mongodb::Database, collection: &str) -> Vec<Document> {
    db.collection::<Document>(collection)
        .list_indexes()
        .await
        .expect("list indexes")
        .try_collect::<Vec<_>>()
        .await
        .expect("read indexes")
        .into_iter()
        .map(|model| {
            let mut described = model.keys.clone();
            let options = model.options.unwrap_or_default();
            if options.unique == Some(true) {
                described.insert("unique", true);
            }
            if let Some(ttl) = options.expire_after {
                described.insert("ttl", ttl.as_secs() as i64);
            }
            described
        })
        .collect()
}

#[tokio::test]
async fn ensure_indexes_creates_every_schema_index_idempotently() {
    let db = test_db("cli_indexes").await;
    db.add_view("v-signal", "Signal", &fixture_url("google-sheets-export.csv"))
        .await;
    for _ in 0..2 {
        let output = sheetsync(&db.name, &server_url(), &["ensure-indexes"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    let expectations: &[(&str, &[&str])] = &[
        (
            "users",
            &[
                "{ \"email\": 1, \"unique\": true }",
                "{ \"role\": 1 }",
                "{ \"view_access\": 1 }",
            ],
        ),
        (
            "user_sessions",
            &[
                "{ \"session_token\": 1, \"unique\": true }",
                "{ \"user_id\": 1 }",
                "{ \"expires_at\": 1, \"ttl\": 0 }",
            ],
        ),
        (
            "views",
            &[
                "{ \"id\": 1, \"unique\": true }",
                "{ \"name\": 1, \"unique\": true }",
                "{ \"is_master\": 1 }",
            ],
        ),
        (
            "data_metadata",
            &[
                "{ \"type\": 1, \"view_id\": 1, \"unique\": true }",
                "{ \"view_id\": 1 }",
            ],
        ),
        (
            "user_projections_preferences",
            &["{ \"user_id\": 1, \"view_id\": 1, \"unique\": true }"],
        ),
        (
            "user_pipeline_preferences",
            &["{ \"user_id\": 1, \"view_id\": 1, \"unique\": true }"],
        ),
        ("asher_pov", &["{ \"view_id\": 1, \"unique\": true }"]),
        ("sync_runs", &["{ \"started_at\": 1, \"ttl\": 7776000 }"]),
        (
            "sales_records_signal",
            &[
                "{ \"id\": 1, \"unique\": true }",
                "{ \"client\": 1 }",
                "{ \"stage\": 1 }",
                "{ \"discovery_date\": 1 }",
                "{ \"owner\": 1 }",
                "{ \"type_of_source\": 1 }",
                "{ \"show_noshow\": 1 }",
            ],
        ),
    ];
    for (collection, expected) in expectations {
        let present: Vec<String> = index_names(&db.db, collection)
            .await
            .iter()
            .map(|index| index.to_string())
            .collect();
        for index in *expected {
            assert!(
                present.iter().any(|p| p == index),
                "{collection} lacks {index}; has {present:?}"
            );
        }
    }
    db.drop().await;
}

#[tokio::test]
async fn sync_keeps_the_record_indexes_through_the_swap() {
    let db = test_db("cli_swap_indexes").await;
    db.add_view("v-signal", "Signal", &fixture_url("google-sheets-export.csv"))
        .await;
    let output = sheetsync(&db.name, &server_url(), &["sync"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let indexes = index_names(&db.db, "sales_records_signal").await;
    assert_eq!(indexes.len(), 8, "_id plus the schema's seven: {indexes:?}");
    db.drop().await;
}

#[tokio::test]
async fn json_report_and_exit_code() {
    let db = test_db("cli_json").await;
    db.add_view("v-signal", "Signal", &fixture_url("google-sheets-export.csv"))
        .await;
    let output = sheetsync(&db.name, &server_url(), &["sync", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    // Logs written to a pipe are plain text: no colour escape sequences.
    let logs = text(&output.stderr);
    assert!(logs.contains("sync finished") && !logs.contains('\u{1b}'), "{logs:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(report["ok"], true);
    let view = &report["views"][0];
    assert_eq!(view["view"], "Signal");
    assert_eq!(view["records_written"], 6);
    assert_eq!(view["duplicates_merged"], 1);
    assert_eq!(view["changes"]["inserted"], 6);
    assert_eq!(view["duplicates"][0]["row"], 2);
    assert_eq!(view["duplicates"][0]["superseded_by"], 7);

    // A failing view makes the exit code non-zero, the others still sync.
    db.add_view("v-market", "Market", "file:///nonexistent.csv").await;
    let output = sheetsync(&db.name, &server_url(), &["sync"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("Market -> sales_records_market: FAILED"), "{stdout}");
    assert!(stdout.contains("Signal -> sales_records_signal: OK"), "{stdout}");
    db.drop().await;
}

#[tokio::test]
async fn a_us_export_is_read_month_first_and_the_report_says_why() {
    let db = test_db("cli_us_dates").await;
    db.add_view("v-signal", "Signal", &fixture_url("excel-us-export.csv"))
        .await;
    let output = sheetsync(&db.name, &server_url(), &["sync", "--dry-run"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(
            "dates read month-first: 1 value(s) only read month-first (e.g. \"1/13/2025\" at row 2, column \"POA Date\")"
        ),
        "{stdout}"
    );

    let output = sheetsync(&db.name, &server_url(), &["sync", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    // Logs written to a pipe are plain text: no colour escape sequences.
    let logs = text(&output.stderr);
    assert!(logs.contains("sync finished") && !logs.contains('\u{1b}'), "{logs:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    let view = &report["views"][0];
    assert_eq!(view["date_order"]["order"], "month_first");
    assert_eq!(view["warnings"], serde_json::json!([]));
    let records: Vec<Document> = db
        .db
        .collection::<Document>("sales_records_signal")
        .find(mongodb::bson::doc! {})
        .sort(mongodb::bson::doc! {"client": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let date = |record: &Document, field: &str| record.get_datetime(field).unwrap().try_to_rfc3339_string().unwrap();
    let (acme, globex, initech) = (&records[0], &records[1], &records[2]);
    assert_eq!(date(acme, "discovery_date"), "2025-01-02T00:00:00Z");
    assert_eq!(date(acme, "billing_start"), "2025-02-01T00:00:00Z");
    assert_eq!(acme.get_f64("expected_mrr"), Ok(5000.0));
    assert_eq!(date(globex, "discovery_date"), "2025-02-03T00:00:00Z");
    assert_eq!(globex.get_f64("expected_mrr"), Ok(1200.0));
    assert_eq!(globex.get_f64("expected_arr"), Ok(14400.0));
    assert_eq!(date(initech, "discovery_date"), "2025-03-04T00:00:00Z");
    assert_eq!(initech.get_str("month"), Ok("2025-03"));
    db.drop().await;
}

#[tokio::test]
async fn check_lists_views_and_fails_on_problems() {
    let db = test_db("cli_check").await;
    db.add_view("v-signal", "Signal", &fixture_url("google-sheets-export.csv"))
        .await;
    db.add_master_view().await;
    let output = sheetsync(&db.name, &server_url(), &["check"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("view \"Signal\" (id v-signal): sales_records_signal <- file://"),
        "{stdout}"
    );
    assert!(
        stdout.contains("view \"Master\"") && stdout.contains("never written"),
        "{stdout}"
    );
    // Which column feeds which field, as the sync will read them.
    assert!(
        stdout.contains("  header (row 1): Month -> month, Discovery Date -> discovery_date, Client -> client,"),
        "{stdout}"
    );

    db.add_view("v-weird", "Partners", "file:///x.csv").await;
    let output = sheetsync(&db.name, &server_url(), &["check"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("no collection is known for view \"Partners\""),
        "{stdout}"
    );
    db.drop().await;
}

#[test]
fn unreachable_server_is_reported_without_the_password() {
    let url = "mongodb://admin:Sup3rSecret@127.0.0.1:1/?serverSelectionTimeoutMS=300&directConnection=true";
    for args in [&["check"][..], &["sync"][..]] {
        let output = sheetsync("sales_analytics", url, args);
        assert_eq!(output.status.code(), Some(2));
        let all = text(&output.stdout) + &text(&output.stderr);
        assert!(all.contains("connecting to mongodb://admin:***@127.0.0.1:1"), "{all}");
        assert!(!all.contains("Sup3rSecret"), "password leaked: {all}");
    }
}

#[test]
fn invalid_config_is_a_precise_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[sync]\nmin_ratio = 3\n").unwrap();
    let output = Sheetsync::new().config(&path).args(["check"]).output();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("sync.min_ratio is 3"),
        "{}",
        text(&output.stderr)
    );
}

/// Runs `command` with its stdout on a pseudo-terminal (raw, so that the
/// bytes are the program's own); what it wrote there, once it exited.
fn on_a_terminal(mut command: std::process::Command) -> (std::process::ExitStatus, Vec<u8>) {
    use std::io::Read as _;
    use std::os::fd::{FromRawFd as _, OwnedFd};

    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fresh descriptors into the integers it is
    // given; the termios and winsize pointers are valid for the call.
    let opened = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: termios is plain data, filled by tcgetattr before use.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        use std::os::fd::AsRawFd as _;
        assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut termios), 0);
        libc::cfmakeraw(&mut termios);
        assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &termios), 0);
    }
    let mut child = command
        .env("TERM", "xterm-256color")
        .stdout(std::process::Stdio::from(slave))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sheetsync");
    // The child holds the only other end once the command (which kept a
    // copy for spawning) is gone: reading stops (EIO) when the child exits.
    drop(command);
    let mut terminal = std::fs::File::from(master);
    let mut output = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(read) = terminal.read(&mut buffer) {
        if read == 0 {
            break;
        }
        output.extend_from_slice(&buffer[..read]);
    }
    (child.wait().expect("wait for sheetsync"), output)
}

/// A report with what differs between two runs (ids, times) masked.
fn masked(json: &[u8]) -> String {
    text(json)
        .lines()
        .map(|line| {
            let key = line.trim_start();
            if ["\"run_id\"", "\"started_at\"", "\"finished_at\"", "\"duration_ms\""]
                .iter()
                .any(|volatile| key.starts_with(volatile))
            {
                "(masked)"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `sheetsync sync` on a terminal shows a progress line (phase, counts) and
/// clears it before the report; piped, with `--quiet` or with `--json` it
/// shows none, and the JSON is the same on a terminal as in a pipe.
#[tokio::test]
async fn a_sync_on_a_terminal_shows_progress_and_a_pipe_gets_none() {
    let db = test_db("cli_progress").await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("organic.csv");
    crate::harness::daemon_fixture::write_csv(&csv, 200, "progress");
    db.add_view("view-organic", "Organic", &format!("file://{}", csv.display()))
        .await;
    // Held before its swap for a second, so the line is drawn however fast
    // the machine is.
    let sync = |args: &[&str]| {
        let mut command = Sheetsync::new()
            .database(&server_url(), &db.name)
            .env("SHEETSYNC_TEST_PAUSE_BEFORE_SWAP_MS", "1000")
            .args(args)
            .command();
        command.env("RUST_LOG", "warn");
        command
    };

    let (status, shown) = on_a_terminal(sync(&["sync"]));
    assert!(status.success(), "{}", text(&shown));
    let shown = text(&shown);
    let last_draw = shown
        .rfind("Organic: swapping")
        .unwrap_or_else(|| panic!("no progress line: {shown:?}"));
    let after = &shown[last_draw..];
    let report = after.find("Organic -> sales_records: OK").expect("the report follows");
    assert!(
        after[..report].contains("\u{1b}["),
        "the line is cleared before the report: {shown:?}"
    );
    assert!(
        shown.contains("Organic: mapping") || shown.contains("Organic: writing") || shown.contains("Organic: swapping")
    );

    // Piped, and with --quiet: the same kind of run (the source changed, so
    // it swaps), no line.
    crate::harness::daemon_fixture::write_csv(&csv, 200, "piped");
    let piped = sync(&["sync"]).output().expect("run sheetsync");
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    let piped = text(&piped.stdout);
    assert!(piped.contains("Organic -> sales_records: OK"), "{piped}");
    assert!(
        !piped.contains("swapping") && !piped.contains('\u{1b}') && !piped.contains('\r'),
        "{piped:?}"
    );
    crate::harness::daemon_fixture::write_csv(&csv, 200, "quiet");
    let (status, quiet) = on_a_terminal(sync(&["sync", "--quiet"]));
    assert!(status.success());
    let quiet = text(&quiet);
    assert!(
        quiet.contains("Organic -> sales_records: OK") && !quiet.contains("swapping"),
        "{quiet:?}"
    );

    let (status, json_on_terminal) = on_a_terminal(sync(&["sync", "--dry-run", "--json"]));
    assert!(status.success());
    let json_in_pipe = sync(&["sync", "--dry-run", "--json"]).output().expect("run sheetsync");
    assert_eq!(masked(&json_on_terminal), masked(&json_in_pipe.stdout));
    assert!(!json_on_terminal.contains(&0x1b), "no escape sequences in JSON");
    db.drop().await;
}

/// A sales export long enough for many batches of rows, with what a
/// survey adds up in order: duplicates, rejected rows, warnings, dates
/// either order reads, amounts of both notations and blank rows.
fn a_long_export(rows: usize) -> String {
    let mut csv = format!("{}\n", crate::harness::HEADER);
    for index in 0..rows {
        let client = match index % 7 {
            0 => String::new(),
            3 => format!("Client {}", index / 2),
            _ => format!("Client {index}"),
        };
        let day = 1 + index % 28;
        let amount = match index % 5 {
            0 => "5.000".to_owned(),
            1 => format!("\"{index},50\""),
            _ => format!("{index}"),
        };
        let stage = ["B Legals", "Lost", "A Closed", "Nowhere"][index % 4];
        csv.push_str(&format!(
            "2025-03,{day:02}/03/2025,{client},https://app.hubspot.com/deals/{index},{stage},High,Show,,{amount},,,\
             New Business,Léa,Inbound,SEO,Bob,,\n"
        ));
        if index % 97 == 0 {
            csv.push_str(",,,\n");
        }
    }
    csv
}

/// A sync on one core reads its rows inline, on more on threads: both
/// write the same records and report the same rows, for the fixtures and
/// for an export of many batches.
#[tokio::test]
async fn a_sync_on_one_core_writes_and_reports_what_a_sync_on_several_does() {
    const TEST: &str = "a_sync_on_one_core_writes_and_reports_what_a_sync_on_several_does";
    if std::thread::available_parallelism().map_or(1, |cores| cores.get()) < 2 {
        crate::harness::skip(TEST, "this machine has one core: both runs would read inline");
        return;
    }
    if let Some(reason) = Sheetsync::taskset_missing() {
        crate::harness::skip(TEST, &reason);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        fixture_url("google-sheets-export.csv"),
        fixture_url("excel-fr-export.csv"),
        fixture_url("excel-us-export.csv"),
        crate::harness::write_source(dir.path(), "long.csv", a_long_export(3_000).as_bytes()),
    ];
    for (index, source) in sources.iter().enumerate() {
        let mut outcomes = Vec::new();
        for one_core in [true, false] {
            let db = test_db(&format!("one_core_{index}")).await;
            db.add_view("v-organic", "Organic", source).await;
            let output = Sheetsync::new()
                .database(&server_url(), &db.name)
                .env("RUST_LOG", "warn,sheetsync::engine=debug")
                .args(["sync", "--json"])
                .on_one_core(one_core)
                .output();
            let logs = text(&output.stderr);
            assert!(output.status.success(), "{source}: {logs}");
            let threading = if one_core {
                "threading=Inline"
            } else {
                "threading=Parallel"
            };
            assert!(logs.contains(threading), "{source}: {threading} expected: {logs}");
            let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
            let view = &report["views"][0];
            let rows: Vec<_> = [
                "rows_read",
                "blank_rows",
                "records_written",
                "duplicates",
                "rejected",
                "warnings",
            ]
            .iter()
            .map(|field| view[field].clone())
            .collect();
            let mut records = db.records("sales_records").await;
            for record in &mut records {
                record.remove("created_at");
            }
            assert!(!records.is_empty(), "{source}");
            outcomes.push((rows, records));
            db.drop().await;
        }
        assert_eq!(outcomes[0], outcomes[1], "{source}: one core and several differ");
        if source.ends_with("long.csv") {
            let (rows, records) = &outcomes[0];
            assert_eq!(rows[0], 3_000, "every row read");
            for (name, list) in [("duplicates", &rows[3]), ("rejected", &rows[4]), ("warnings", &rows[5])] {
                let count = list.as_array().map_or(0, Vec::len);
                assert!(count > 100, "the long export has {name}: {count}");
            }
            assert!(records.len() > 1_500, "{}", records.len());
        }
    }
}
