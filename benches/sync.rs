//! End-to-end benchmarks, run by `scripts/bench` against a local
//! MongoDB-compatible server (`TEST_MONGO_URL`). Each part runs the real
//! `sheetsync` binary as a child process:
//!
//! 1. CSV sync at each size: first load and an unchanged second load, with the
//!    child's peak RSS (its `VmHWM`, sampled), against the baseline: the very documents
//!    the sync wrote, inserted with the driver's `insert_many` (unordered,
//!    batches of 1000) into an empty collection.
//! 2. The same data served by the test fake Google Sheets server.
//! 3. The daemon: RSS when idle after start and after 100 syncs of a 2k-row
//!    view (each sync rewrites the view, so a leak would show).
//! 4. Google calls per cycle of the daemon with 4 views over 2 spreadsheets.
//! 5. `BENCH_SECTIONS=unchanged`: an unchanged 500k-row view, compared in
//!    full and refreshed by the daemon, then one row changed.
//! 6. `BENCH_SECTIONS=watch`: the idle daemon watching 20 spreadsheets.
//! 7. `BENCH_SECTIONS=workers`: a first load with 1, 2 and 4 insert workers.
//! 8. `BENCH_SECTIONS=pipeline`: the row pipeline (`sync --dry-run` into an
//!    empty view) against Python's `csv.reader` splitting the same file.
//! 9. `BENCH_SECTIONS=workbook`: the dry run of a 500k-row `.xlsx` beside the
//!    same sheet as CSV, and Python's `openpyxl` (read-only) iterating the
//!    workbook's cells.
//!
//! The results go to stdout as Markdown and, with `--write PATH`, to a file.

// The integration tests' harness: the same launcher, fake Google and
// fixtures. The bench uses a part of it; the tests use all of it.
#[allow(dead_code)]
#[path = "../tests/it/harness/mod.rs"]
mod harness;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use futures_util::TryStreamExt;
use harness::fake_google::{FakeGoogle, FakeSpreadsheet, FakeTab};
use harness::process::{DaemonProc, Sheetsync};
use harness::{ADMIN_TOKEN, HEADER};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

/// The schema's stage values (`targets/sales_records.toml`).
const STAGES: [&str; 7] = [
    "F Inbox",
    "D POA Booked",
    "C Proposal sent",
    "B Legals",
    "A Closed",
    "Lost",
    "Not Relevant",
];

const DEFAULT_SIZES: [usize; 3] = [10_000, 100_000, 500_000];
const DEFAULT_SHEETS_SIZES: [usize; 2] = [10_000, 100_000];
const DAEMON_SYNCS: usize = 100;
const DAEMON_VIEW_ROWS: usize = 2_000;

struct Measure {
    seconds: f64,
    peak_rss_mb: f64,
    /// The process's own CPU time (user + system), from its last sample:
    /// what sheetsync itself spent, whatever else (the server, the fake
    /// Google) ran on the same cores.
    cpu_seconds: f64,
}

fn sizes(variable: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(variable) {
        Ok(text) if text.trim().is_empty() => Vec::new(),
        Ok(text) => text
            .split(',')
            .map(|size| size.trim().parse().expect("sizes are numbers"))
            .collect(),
        Err(_) => default.to_vec(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // target too, without it, and must not start a half-hour benchmark.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("benches/sync.rs measures; it runs with `scripts/bench` (cargo bench), not as a test");
        return;
    }
    let url = std::env::var("TEST_MONGO_URL").expect("run through scripts/bench, which sets TEST_MONGO_URL");
    let write_to = std::env::args().skip_while(|arg| arg != "--write").nth(1);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("scratch dir");
    let mut report = String::new();

    // BENCH_SECTIONS=healthz (comma-separated) runs only the named tables.
    let sections = std::env::var("BENCH_SECTIONS").unwrap_or_default();
    let wanted = |section: &str| sections.is_empty() || sections.split(',').any(|name| name.trim() == section);
    if wanted("csv") {
        report.push_str(&csv_table(
            &runtime,
            &url,
            dir.path(),
            &sizes("BENCH_SIZES", &DEFAULT_SIZES),
        ));
    }
    if wanted("sheets") {
        report.push_str(&sheets_table(
            &runtime,
            &url,
            &sizes("BENCH_SHEETS_SIZES", &DEFAULT_SHEETS_SIZES),
        ));
    }
    if wanted("gzip") {
        let rows = sizes("BENCH_GZIP_ROWS", &[500_000])[0];
        report.push_str(&gzip_table(&runtime, &url, rows));
    }
    if wanted("unchanged") {
        let rows = sizes("BENCH_UNCHANGED_ROWS", &[500_000])[0];
        report.push_str(&unchanged_refresh(&runtime, &url, dir.path(), rows));
    }
    if wanted("pipeline") {
        let rows = sizes("BENCH_PIPELINE_ROWS", &[500_000])[0];
        report.push_str(&pipeline_table(&runtime, &url, dir.path(), rows));
    }
    if wanted("workbook") {
        let rows = sizes("BENCH_WORKBOOK_ROWS", &[500_000])[0];
        report.push_str(&workbook_table(&runtime, &url, dir.path(), rows));
    }
    if wanted("workers") {
        let rows = sizes("BENCH_WORKERS_ROWS", &[200_000])[0];
        report.push_str(&insert_workers_table(&runtime, &url, dir.path(), rows));
    }
    if wanted("watch") {
        let spreadsheets = sizes("BENCH_WATCH_SPREADSHEETS", &[20])[0];
        let window = Duration::from_secs(sizes("BENCH_WATCH_SECS", &[300])[0] as u64);
        report.push_str(&idle_watch(&runtime, &url, dir.path(), spreadsheets, window));
    }
    if wanted("auth") {
        report.push_str(&guessing_table(&runtime, &url, dir.path()));
    }
    if wanted("daemon") {
        report.push_str(&daemon_memory(&runtime, &url, dir.path()));
    }
    if wanted("google") {
        report.push_str(&google_calls(&runtime, &url, dir.path()));
    }
    if wanted("merge") {
        let customers = sizes("BENCH_MERGE_ROWS", &[100_000])[0];
        report.push_str(&merge_table(&runtime, &url, dir.path(), customers));
    }
    if wanted("healthz") {
        let rows = sizes("BENCH_LOAD_ROWS", &[500_000])[0];
        report.push_str(&healthz_under_load(&runtime, &url, dir.path(), rows));
    }

    println!("{report}");
    if let Some(path) = write_to {
        std::fs::write(&path, report).expect("write the results");
    }
}

/// One generated deal: 18 columns like the schema's.
struct Deal {
    client: String,
    stage: &'static str,
    day: u32,
    month: u32,
    index: usize,
    mrr: u32,
    bdr: &'static str,
    source: &'static str,
    owner: &'static str,
}

/// `count` deals; 5% repeat an earlier client + stage (an update further
/// down the sheet), the rest are distinct.
fn generate(count: usize) -> Vec<Deal> {
    const SOURCES: [&str; 5] = ["Inbound", "Outbound", "Client referral", "Event", "Upsell/Cross-sell"];
    const WORDS: [&str; 12] = [
        "North", "Blue", "Apex", "Green", "Silver", "Delta", "Nova", "Prime", "Summit", "River", "Atlas", "Orbit",
    ];
    const KINDS: [&str; 6] = ["Industries", "Labs", "Group", "Systems", "Partners", "Holdings"];
    const PEOPLE: [&str; 6] = [
        "Jane Smith",
        "Paul Martin",
        "Ana Lopez",
        "John Doe",
        "Léa Dubois",
        "Hélène Roy",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let mut deals: Vec<Deal> = Vec::with_capacity(count);
    for index in 0..count {
        let (client, stage) = if index > 20 && next(100) < 5 {
            let earlier = &deals[next(deals.len())];
            (earlier.client.clone(), earlier.stage)
        } else {
            let client = format!("{} {} {index}", WORDS[next(WORDS.len())], KINDS[next(KINDS.len())]);
            (client, STAGES[next(STAGES.len())])
        };
        deals.push(Deal {
            client,
            stage,
            day: 1 + next(28) as u32,
            month: 1 + next(12) as u32,
            index,
            mrr: 500 + next(9_500) as u32,
            bdr: PEOPLE[next(PEOPLE.len())],
            source: SOURCES[next(SOURCES.len())],
            owner: PEOPLE[next(PEOPLE.len())],
        });
    }
    deals
}

fn to_csv(deals: &[Deal], mrr_offset: u32) -> String {
    let mut csv = String::with_capacity(deals.len() * 240);
    csv.push_str(HEADER);
    csv.push('\n');
    for deal in deals {
        let (day, month, mrr) = (deal.day, deal.month, deal.mrr + mrr_offset);
        let _ = writeln!(
            csv,
            "2025-{month:02},{day:02}/{month:02}/2025,{},https://app.hubspot.com/deals/{},{},High,Show,\
             {day:02}/{month:02}/2025,\"{mrr},50\",\"{},000\",\"{},000\",New Business,{},{},Enterprise Plan,{},\
             Support Team,01/{month:02}/2026",
            deal.client,
            deal.index,
            deal.stage,
            mrr * 12 / 1000,
            mrr * 12 / 1000,
            deal.bdr,
            deal.source,
            deal.owner,
        );
    }
    csv
}

/// The same deals as the Sheets API returns them with UNFORMATTED_VALUE and
/// SERIAL_NUMBER: amounts as numbers, dates as serials.
fn to_sheet_values(deals: &[Deal]) -> Vec<Vec<Value>> {
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 30).expect("valid date");
    let serial = |year: i32, month: u32, day: u32| {
        let date = NaiveDate::from_ymd_opt(year, month, day).expect("generated dates are valid");
        json!((date - epoch).num_days())
    };
    let mut rows = vec![HEADER.split(',').map(|label| json!(label)).collect::<Vec<_>>()];
    for deal in deals {
        let (day, month) = (deal.day, deal.month);
        let arr = f64::from(deal.mrr) * 12.0;
        rows.push(vec![
            json!(format!("2025-{month:02}")),
            serial(2025, month, day),
            json!(deal.client),
            json!(format!("https://app.hubspot.com/deals/{}", deal.index)),
            json!(deal.stage),
            json!("High"),
            json!("Show"),
            serial(2025, month, day),
            json!(f64::from(deal.mrr) + 0.5),
            json!(arr),
            json!(arr),
            json!("New Business"),
            json!(deal.bdr),
            json!(deal.source),
            json!("Enterprise Plan"),
            json!(deal.owner),
            json!("Support Team"),
            serial(2026, month, 1),
        ]);
    }
    rows
}

async fn fresh_db(url: &str, db_name: &str, views: &[(&str, &str, &str)]) {
    let db = harness::database(url, db_name).await;
    db.drop().await.expect("drop old bench db");
    for (id, name, source) in views {
        db.collection::<Document>("views")
            .insert_one(doc! { "id": *id, "name": *name, "sheet_url": *source, "sheet_name": name, "is_master": false })
            .await
            .expect("insert view");
    }
}

async fn drop_db(url: &str, db_name: &str) {
    harness::database(url, db_name)
        .await
        .drop()
        .await
        .expect("drop bench db");
}

/// `sheetsync` on the bench's database, quiet but for warnings.
fn sheetsync(url: &str, db_name: &str, config: Option<&Path>) -> Sheetsync {
    let sheetsync = Sheetsync::new().database(url, db_name).env("RUST_LOG", "warn");
    match config {
        Some(config) => sheetsync.config(config),
        None => sheetsync,
    }
}

/// Times one `sheetsync sync` and samples its peak RSS.
fn run_sync(url: &str, db_name: &str, config: Option<&Path>) -> Measure {
    run_sync_capturing(url, db_name, config).0
}

/// As [`run_sync`], with the JSON report the run printed.
fn run_sync_report(url: &str, db_name: &str, config: &Path) -> (Measure, Value) {
    let (measure, stdout) = run_sync_capturing(url, db_name, Some(config));
    let report: Value = serde_json::from_slice(&stdout).expect("the --json report");
    (measure, report)
}

fn run_sync_capturing(url: &str, db_name: &str, config: Option<&Path>) -> (Measure, Vec<u8>) {
    run_capturing(url, db_name, config, &["sync", "--json"])
}

/// Times one run of `sheetsync ARGS`, sampling its peak RSS.
fn run_capturing(url: &str, db_name: &str, config: Option<&Path>, args: &[&str]) -> (Measure, Vec<u8>) {
    run_command_capturing(sheetsync(url, db_name, config).args(args))
}

/// Times one run of `sheetsync`, its stdout captured, and samples its peak
/// RSS and CPU time.
fn run_command_capturing(sheetsync: Sheetsync) -> (Measure, Vec<u8>) {
    let started = Instant::now();
    let child = sheetsync
        .command()
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sheetsync");
    let (measure, output) = measured(child, started);
    assert!(
        output.status.success(),
        "sheetsync sync failed: {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    (measure, output.stdout)
}

/// Waits for `child` (its stdout piped), started at `started`, sampling
/// its peak RSS and CPU time on the way.
fn measured(child: std::process::Child, started: Instant) -> (Measure, std::process::Output) {
    let peak = sample_peak_rss(child.id());
    let output = child.wait_with_output().expect("wait for the child");
    let seconds = started.elapsed().as_secs_f64();
    let (peak_kib, cpu_seconds) = peak.join().expect("the sampler ends with its process");
    let measure = Measure {
        seconds,
        peak_rss_mb: peak_kib as f64 / 1024.0,
        cpu_seconds,
    };
    (measure, output)
}

/// `count` customers as a CS team's export, with one health score changed
/// when `changed` is set.
fn customers_csv(count: usize, changed: bool) -> String {
    let mut csv = String::from("Company,Website,Plan,ARR,Renewal date,Health score,Active users,CSM,Tags\n");
    for index in 0..count {
        let score = if changed && index == count / 2 {
            99
        } else {
            40 + index % 60
        };
        let _ = writeln!(
            csv,
            "Customer {index},customer{index}.example,{},\"{},{:03}\",{:02}/{:02}/2026,{score},{},csm{}@example.com,\"tag{}, tag{}\"",
            ["Starter", "Growth", "Enterprise"][index % 3],
            10 + index % 900,
            index % 1000,
            1 + index % 28,
            1 + index % 12,
            index % 400,
            index % 10,
            index % 7,
            index % 5,
        );
    }
    csv
}

/// The merge of a customer list into a shared `customers` collection: the
/// first load, an unchanged re-run and one changed row, with what each wrote.
fn merge_table(runtime: &tokio::runtime::Runtime, url: &str, dir: &Path, count: usize) -> String {
    let cs_db = "bench_merge_cs";
    let sales_db = "bench_merge_sales";
    runtime.block_on(async {
        drop_db(url, cs_db).await;
        let users = (0..10).map(|index| {
            doc! { "id": format!("u{index}"), "email": format!("csm{index}@example.com"), "name": format!("CSM {index}") }
        });
        harness::database(url, cs_db).await.collection::<Document>("users").insert_many(users).await.expect("users");
    });
    let source = dir.join("customers.csv");
    let config = dir.join("merge.toml");
    std::fs::write(
        &config,
        format!(
            "[[syncs]]\nname = \"Customers\"\nsource = \"{}\"\ntarget = \"customers\"\ndatabase = \"{cs_db}\"\n",
            source.display()
        ),
    )
    .expect("write the config");
    let mut out = String::from(
        "### Merge into a shared collection (customers)\n\n\
         | customers | run | time | documents written | fields written | write mode | peak RSS |\n\
         |---:|---|---:|---:|---:|---|---:|\n",
    );
    for (run, changed) in [
        ("first load", false),
        ("unchanged re-run", false),
        ("one changed row", true),
    ] {
        std::fs::write(&source, customers_csv(count, changed)).expect("write the export");
        let (measure, report) = run_sync_report(url, sales_db, &config);
        let merge = &report["views"][0]["merge"];
        eprintln!("merge {count} {run}: {:.2}s {merge}", measure.seconds);
        let _ = writeln!(
            out,
            "| {count} | {run} | {:.2} s | {} | {} | {} | {:.0} MB |",
            measure.seconds,
            merge["documents_written"],
            merge["fields_written"],
            merge["write_mode"]["mode"].as_str().unwrap_or("-"),
            measure.peak_rss_mb,
        );
    }
    runtime.block_on(async {
        drop_db(url, cs_db).await;
        drop_db(url, sales_db).await;
    });
    out.push('\n');
    out
}

/// The process's own peak RSS (KiB), sampled from `VmHWM` every 5 ms until
/// it exits, and its CPU time (seconds) at the last sample. (`wait4`'s
/// `ru_maxrss` would not do: it keeps the high-water mark the child inherited
/// from this large benchmark process before `exec`.)
fn sample_peak_rss(pid: u32) -> std::thread::JoinHandle<(u64, f64)> {
    std::thread::spawn(move || {
        let mut peak = 0;
        let mut cpu = 0.0;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let Some(kib) = status_value_kib(&status, "VmHWM:") else {
                break;
            };
            peak = peak.max(kib);
            cpu = cpu_seconds(pid).unwrap_or(cpu);
            std::thread::sleep(Duration::from_millis(5));
        }
        (peak, cpu)
    })
}

/// User + system time of a process so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is the
    // 3rd field of the line, utime the 14th and stime the 15th.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf reads a constant of the system; no memory is touched.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks / per_second as f64)
}

fn status_value_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The baseline, and what the server itself charges for an all-or-nothing
/// replacement of those documents.
struct Baseline {
    /// `insert_many` into an empty collection, as a hand-written loader would.
    insert: f64,
    /// Then the record indexes, built in bulk.
    indexes: f64,
    /// Then `renameCollection` with `dropTarget` over the synced collection.
    rename: f64,
}

/// Inserts the documents the sync produced into an empty collection, then
/// times the index build and the rename an atomic swap also needs.
async fn baseline(url: &str, db_name: &str) -> Baseline {
    let db = harness::database(url, db_name).await;
    let documents: Vec<Document> = db
        .collection::<Document>("sales_records")
        .find(doc! {})
        .projection(doc! { "_id": 0 })
        .await
        .expect("read synced records")
        .try_collect()
        .await
        .expect("read synced records");
    let target = db.collection::<Document>("baseline");
    let started = Instant::now();
    for batch in documents.chunks(1000) {
        target.insert_many(batch).ordered(false).await.expect("baseline insert");
    }
    let insert = started.elapsed().as_secs_f64();
    let started = Instant::now();
    sheetsync::store::indexes::create(&db, "baseline", &sheetsync::mapping::sales::SALES_RECORDS.indexes)
        .await
        .expect("baseline indexes");
    let indexes = started.elapsed().as_secs_f64();
    let started = Instant::now();
    db.client()
        .database("admin")
        .run_command(doc! {
            "renameCollection": format!("{db_name}.baseline"),
            "to": format!("{db_name}.sales_records"),
            "dropTarget": true,
        })
        .await
        .expect("baseline rename");
    let rename = started.elapsed().as_secs_f64();
    Baseline {
        insert,
        indexes,
        rename,
    }
}

fn csv_table(runtime: &tokio::runtime::Runtime, url: &str, dir: &Path, sizes: &[usize]) -> String {
    let mut out = String::from(
        "### CSV source\n\n\
         | rows | CSV size | first sync | rows/s | baseline insert_many | sync/baseline throughput | \
         server's swap floor (insert + indexes + rename) | sync/floor throughput | second sync (unchanged) | \
         peak RSS first | peak RSS second | sheetsync CPU first / second |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for &size in sizes {
        let path = dir.join(format!("sales-{size}.csv"));
        let csv = to_csv(&generate(size), 0);
        std::fs::write(&path, &csv).expect("write CSV");
        let db_name = format!("bench_csv_{size}");
        let source = format!("file://{}", path.display());
        runtime.block_on(fresh_db(url, &db_name, &[("view-bench", "Organic", &source)]));
        let first = run_sync(url, &db_name, None);
        let second = run_sync(url, &db_name, None);
        let baseline = runtime.block_on(baseline(url, &db_name));
        runtime.block_on(drop_db(url, &db_name));
        let floor = baseline.insert + baseline.indexes + baseline.rename;
        eprintln!(
            "csv {size}: first {:.2}s, second {:.2}s, insert {:.2}s + indexes {:.2}s + rename {:.2}s",
            first.seconds, second.seconds, baseline.insert, baseline.indexes, baseline.rename
        );
        let _ = writeln!(
            out,
            "| {size} | {:.1} MB | {:.2} s | {:.0} | {:.2} s | {:.2} | {floor:.2} s ({:.2} + {:.2} + {:.2}) | {:.2} | \
             {:.2} s | {:.0} MB | {:.0} MB | {:.1} s / {:.1} s |",
            csv.len() as f64 / 1e6,
            first.seconds,
            size as f64 / first.seconds,
            baseline.insert,
            baseline.insert / first.seconds,
            baseline.insert,
            baseline.indexes,
            baseline.rename,
            floor / first.seconds,
            second.seconds,
            first.peak_rss_mb,
            second.peak_rss_mb,
            first.cpu_seconds,
            second.cpu_seconds,
        );
    }
    out.push('\n');
    out
}

/// The bench's own fake Google, and a config file pointing sheetsync at it.
fn google_config(fake: &FakeGoogle, dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join(format!("google-{}.toml", uuid::Uuid::new_v4().simple()));
    let text = format!(
        "[google]\nkey_file = {:?}\napi_url = {:?}\n{extra}",
        fake.key_file.display().to_string(),
        fake.api_url
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn sheets_table(runtime: &tokio::runtime::Runtime, url: &str, sizes: &[usize]) -> String {
    if sizes.is_empty() {
        return String::new();
    }
    let fake = runtime.block_on(FakeGoogle::start());
    let dir = tempfile::tempdir().expect("scratch dir");
    // BENCH_PAGE_ROWS sets [google] page_rows (to compare page sizes).
    let page_rows = std::env::var("BENCH_PAGE_ROWS").ok();
    let extra = page_rows
        .as_ref()
        .map_or(String::new(), |rows| format!("page_rows = {rows}\n"));
    let config = google_config(&fake, dir.path(), &extra);
    let pages = page_rows.map_or("default page size".to_owned(), |rows| format!("page_rows = {rows}"));
    let mut out = format!(
        "### Google Sheets source (the test fake Google on loopback, {pages})\n\n\
         | rows | first sync | rows/s | second sync (unchanged) | peak RSS first | peak RSS second | sheetsync CPU first / second |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for &size in sizes {
        let id = add_deals_spreadsheet(&fake, size);
        let db_name = format!("bench_sheets_{size}");
        runtime.block_on(fresh_db(url, &db_name, &[("view-bench", "Organic", &id)]));
        let first = run_sync(url, &db_name, Some(&config));
        let second = run_sync(url, &db_name, Some(&config));
        runtime.block_on(drop_db(url, &db_name));
        eprintln!(
            "sheets {size}: first {:.2}s, second {:.2}s",
            first.seconds, second.seconds
        );
        let _ = writeln!(
            out,
            "| {size} | {:.2} s | {:.0} | {:.2} s | {:.0} MB | {:.0} MB | {:.1} s / {:.1} s |",
            first.seconds,
            size as f64 / first.seconds,
            second.seconds,
            first.peak_rss_mb,
            second.peak_rss_mb,
            first.cpu_seconds,
            second.cpu_seconds,
        );
    }
    out.push('\n');
    out
}

/// A spreadsheet of `rows` generated deals in one "Organic" tab; its id.
fn add_deals_spreadsheet(fake: &FakeGoogle, rows: usize) -> String {
    let id = format!("BenchSpreadsheet{rows:0>20}");
    let tab = FakeTab {
        sheet_id: 0,
        title: "Organic".to_owned(),
        values: to_sheet_values(&generate(rows)),
    };
    fake.add_spreadsheet(
        &id,
        FakeSpreadsheet {
            time_zone: "Europe/Paris".to_owned(),
            tabs: vec![tab],
        },
    );
    id
}

/// One tab read with and without gzip (`sync --dry-run`: fetch, map and
/// dedup, no write, so that the server's time does not hide the transfer).
fn gzip_table(runtime: &tokio::runtime::Runtime, url: &str, rows: usize) -> String {
    let dir = tempfile::tempdir().expect("scratch dir");
    let mut out = format!(
        "### Google Sheets with and without gzip ({rows} rows, `sync --dry-run`, fake Google on loopback)\n\n\
         | answers | bytes received | at 100 Mbit/s | dry run | peak RSS | sheetsync CPU |\n\
         |---|---:|---:|---:|---:|---:|\n"
    );
    for plain in [false, true] {
        let fake = runtime.block_on(FakeGoogle::start());
        if plain {
            fake.answer_plain();
        }
        let id = add_deals_spreadsheet(&fake, rows);
        let config = google_config(&fake, dir.path(), "");
        let db_name = format!("bench_gzip_{rows}");
        runtime.block_on(fresh_db(url, &db_name, &[("view-bench", "Organic", &id)]));
        let (measure, _) = run_capturing(url, &db_name, Some(&config), &["sync", "--dry-run", "--json"]);
        runtime.block_on(drop_db(url, &db_name));
        let bytes = fake.seen().answer_bytes;
        let label = if plain { "plain JSON" } else { "gzip" };
        eprintln!("gzip {label}: {bytes} bytes, {:.2}s", measure.seconds);
        let _ = writeln!(
            out,
            "| {label} | {:.1} MB | {:.1} s | {:.2} s | {:.0} MB | {:.1} s |",
            bytes as f64 / 1e6,
            bytes as f64 * 8.0 / 100e6,
            measure.seconds,
            measure.peak_rss_mb,
            measure.cpu_seconds,
        );
    }
    out.push('\n');
    out
}

/// How many wrong admin tokens a second get an answer (401: the guess was
/// checked) rather than a 429, from one address and from 50 addresses
/// together, each guessing as fast as it can for a few seconds.
fn guessing_table(runtime: &tokio::runtime::Runtime, url: &str, dir: &Path) -> String {
    const SECONDS: f64 = 3.0;
    let db_name = "bench_guessing";
    let mut out = String::from(
        "### Guessing the admin token (`POST /admin/refresh`, wrong tokens, 3 s per row)\n\n\
         | clients | requests/s | checked guesses/s (401) | refused/s (429) |\n|---|---:|---:|---:|\n",
    );
    for addresses in [1usize, 50] {
        runtime.block_on(fresh_db(url, db_name, &[]));
        let daemon = Daemon::start(url, db_name, dir, "");
        runtime.block_on(daemon.wait_ready());
        let target = format!("{}/admin/refresh", daemon.base);
        let (checked, refused, other) = runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs_f64(SECONDS);
            let mut tasks = Vec::new();
            for index in 0..addresses {
                // Each client its own loopback address (127.0.1.N).
                let source: std::net::IpAddr = format!("127.0.1.{}", index + 1).parse().expect("an address");
                let client = reqwest::Client::builder()
                    .local_address(source)
                    .build()
                    .expect("a client");
                let target = target.clone();
                tasks.push(tokio::spawn(async move {
                    let (mut checked, mut refused, mut other) = (0u64, 0u64, 0u64);
                    while Instant::now() < deadline {
                        match client.post(&target).bearer_auth("wrong-token").send().await {
                            Ok(answer) if answer.status() == 401 => checked += 1,
                            Ok(answer) if answer.status() == 429 => refused += 1,
                            _ => other += 1,
                        }
                    }
                    (checked, refused, other)
                }));
            }
            let mut totals = (0, 0, 0);
            for task in tasks {
                let (checked, refused, other) = task.await.expect("a client task");
                totals = (totals.0 + checked, totals.1 + refused, totals.2 + other);
            }
            totals
        });
        drop(daemon);
        eprintln!("guessing from {addresses}: {checked} checked, {refused} refused, {other} other");
        let _ = writeln!(
            out,
            "| {addresses} address(es) | {:.0} | {:.1} | {:.0} |",
            (checked + refused + other) as f64 / SECONDS,
            checked as f64 / SECONDS,
            refused as f64 / SECONDS,
        );
    }
    runtime.block_on(drop_db(url, db_name));
    out.push('\n');
    out
}

/// A running `sheetsync run` with the bench's admin token (the harness's
/// process, killed on drop).
struct Daemon {
    process: DaemonProc,
    base: String,
    http: reqwest::Client,
}

impl Daemon {
    fn start(url: &str, db_name: &str, dir: &Path, extra_config: &str) -> Daemon {
        Daemon::start_with(url, db_name, dir, extra_config, &[])
    }

    fn start_with(url: &str, db_name: &str, dir: &Path, extra_config: &str, env: &[(&str, &str)]) -> Daemon {
        let config = dir.join(format!("daemon-{}.toml", harness::unique_name("bench")));
        std::fs::write(
            &config,
            format!("[daemon]\nlisten = \"127.0.0.1:0\"\ncatch_up = false\n{extra_config}"),
        )
        .expect("write config");
        let mut sheetsync = sheetsync(url, db_name, Some(&config))
            .env("RUST_LOG", "info")
            .env("SHEETSYNC_ADMIN_TOKEN", ADMIN_TOKEN);
        for (name, value) in env {
            sheetsync = sheetsync.env(name, value);
        }
        let process = sheetsync.daemon();
        Daemon {
            base: process.base.clone(),
            process,
            http: reqwest::Client::new(),
        }
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self.http.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "the daemon did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Refreshes (all views, or one) and waits until every run finished.
    async fn refresh(&self, view: Option<&str>) {
        let query = view.map(|view| format!("?view={view}")).unwrap_or_default();
        let answer: Value = self
            .http
            .post(format!("{}/admin/refresh{query}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("refresh")
            .json()
            .await
            .expect("refresh answer");
        let runs = answer["runs"].as_array().expect("run ids").clone();
        for run in runs {
            let id = run["run_id"].as_str().expect("run id");
            loop {
                let state: Value = self
                    .http
                    .get(format!("{}/admin/runs/{id}", self.base))
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .expect("run state")
                    .json()
                    .await
                    .expect("run state answer");
                match state["state"].as_str() {
                    Some("finished") => {
                        let outcome = state["report"]["outcome"].as_str();
                        assert!(
                            matches!(outcome, Some("success" | "success_with_warnings" | "unchanged")),
                            "{state}"
                        );
                        break;
                    }
                    Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(20)).await,
                    other => panic!("run {id} ended as {other:?}: {state}"),
                }
            }
        }
    }

    fn rss_mb(&self) -> f64 {
        self.status_mb("VmRSS:")
    }

    /// The process's high-water mark so far.
    fn peak_mb(&self) -> f64 {
        self.status_mb("VmHWM:")
    }

    fn status_mb(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.pid())).expect("proc status");
        status_value_kib(&status, field).expect("a memory figure") as f64 / 1024.0
    }
}

/// An unchanged view refreshed: `sheetsync sync` (a full compare, as the
/// schedule does), then a daemon's admin refresh, which stops at the
/// source's digest, then one row changed and synced with `sheetsync sync`
/// (written in place when the server has transactions: run it on the
/// replica set, `SHEETSYNC_TEST_REPLICA_SET=1`). The daemon starts after the
/// load, so its high-water mark is its start plus the refresh.
fn unchanged_refresh(runtime: &tokio::runtime::Runtime, url: &str, dir: &Path, rows: usize) -> String {
    let path = dir.join("unchanged-view.csv");
    let mut deals = generate(rows);
    std::fs::write(&path, to_csv(&deals, 0)).expect("write CSV");
    let db_name = "bench_unchanged";
    let source = format!("file://{}", path.display());
    runtime.block_on(fresh_db(url, db_name, &[("view-bench", "Organic", &source)]));
    let (first, first_report) = run_sync_capturing(url, db_name, None);
    let (first_written, _) = writes_of(&first_report);
    let full = run_sync(url, db_name, None);
    let daemon = Daemon::start(url, db_name, dir, "");
    runtime.block_on(daemon.wait_ready());
    let idle = daemon.peak_mb();
    let pid = u32::try_from(daemon.process.pid()).expect("a process id");
    let cpu_before = cpu_seconds(pid).expect("cpu");
    let started = Instant::now();
    runtime.block_on(daemon.refresh(Some("Organic")));
    let refresh = started.elapsed().as_secs_f64();
    let refresh_cpu = cpu_seconds(pid).expect("cpu") - cpu_before;
    let peak = daemon.peak_mb();
    drop(daemon);
    // The refresh asks the server for the collection's document count
    // (part of the target's mark): what that alone costs on this server.
    let count_seconds = runtime.block_on(async {
        let db = harness::database(url, db_name).await;
        let started = Instant::now();
        db.collection::<Document>("sales_records")
            .estimated_document_count()
            .await
            .expect("count");
        started.elapsed().as_secs_f64()
    });
    // The last row always wins its key: its change is the view's.
    if let Some(last) = deals.last_mut() {
        last.mrr += 1;
    }
    std::fs::write(&path, to_csv(&deals, 0)).expect("write CSV");
    let (one, stdout) = run_sync_capturing(url, db_name, None);
    let (written, write_path) = writes_of(&stdout);
    runtime.block_on(drop_db(url, db_name));
    eprintln!(
        "unchanged {rows}: first {:.2}s, full compare {:.2}s, refresh {refresh:.2}s, one row {:.2}s ({write_path})",
        first.seconds, full.seconds, one.seconds
    );
    format!(
        "### An unchanged view refreshed ({rows} rows, CSV)\n\n\
         | run | time | sheetsync CPU | peak RSS | documents written |\n|---|---:|---:|---:|---:|\n\
         | first load (`sheetsync sync`) | {:.2} s | {:.2} s | {:.0} MB | {first_written} |\n\
         | full compare, unchanged (`sheetsync sync`, as the schedule) | {:.2} s | {:.2} s | {:.0} MB | 0 |\n\
         | daemon refresh, source identical (stops at the digest) | {refresh:.2} s | {refresh_cpu:.2} s | {peak:.0} MB (idle daemon: {idle:.0} MB) | 0 |\n\
         | one row changed (`sheetsync sync`, write path `{write_path}`) | {:.2} s | {:.2} s | {:.0} MB | {written} |\n\n\
         The server's `estimated_document_count` of the view alone: {count_seconds:.2} s.\n\n",
        first.seconds,
        first.cpu_seconds,
        first.peak_rss_mb,
        full.seconds,
        full.cpu_seconds,
        full.peak_rss_mb,
        one.seconds,
        one.cpu_seconds,
        one.peak_rss_mb,
    )
}

/// The documents a `sync --json` run of one view wrote (inserted, updated,
/// removed, moved) and its write path.
fn writes_of(stdout: &[u8]) -> (u64, String) {
    let report: Value = serde_json::from_slice(stdout).expect("the --json report");
    let view = &report["views"][0];
    let written = ["inserted", "updated", "removed", "moved"]
        .iter()
        .map(|kind| view["changes"][kind].as_u64().unwrap_or(0))
        .sum();
    (written, view["write_path"].as_str().unwrap_or("none").to_owned())
}

/// A first load with 1, 2 and 4 insert workers (`[mongo] insert_workers`),
/// against a plain Python loader (the `csv` module and pymongo's
/// `insert_many` in batches of 1000: no types, no indexes, no swap) and the
/// driver's `insert_many` of the very documents the sync wrote, each into a
/// fresh database.
fn insert_workers_table(runtime: &tokio::runtime::Runtime, url: &str, dir: &Path, rows: usize) -> String {
    let path = dir.join("workers-view.csv");
    std::fs::write(&path, to_csv(&generate(rows), 0)).expect("write CSV");
    let source = format!("file://{}", path.display());
    let db_name = "bench_workers";
    let mut table = String::new();
    let mut floor = None;
    for workers in [1, 2, 4] {
        runtime.block_on(fresh_db(url, db_name, &[("view-bench", "Organic", &source)]));
        let config = dir.join(format!("workers-{workers}.toml"));
        std::fs::write(&config, format!("[mongo]\ninsert_workers = {workers}\n")).expect("write config");
        let (first, _) = run_sync_capturing(url, db_name, Some(&config));
        if floor.is_none() {
            floor = Some(runtime.block_on(baseline(url, db_name)));
        }
        eprintln!("workers {workers}: {:.2}s", first.seconds);
        let _ = writeln!(
            table,
            "| sheetsync, `insert_workers = {workers}` | {:.2} s | {:.0} | {:.2} s | {:.0} MB |",
            first.seconds,
            rows as f64 / first.seconds,
            first.cpu_seconds,
            first.peak_rss_mb
        );
    }
    runtime.block_on(drop_db(url, db_name));
    let python = python_loader(url, &path);
    runtime.block_on(drop_db(url, "bench_python_loader"));
    let floor = floor.expect("a first load ran");
    let swap_floor = floor.insert + floor.indexes + floor.rename;
    format!(
        "### First load, {rows} rows: insert workers against plain loaders\n\n\
         | loader | time | rows/s | its own CPU | peak RSS |\n|---|---:|---:|---:|---:|\n{table}\
         | Python: `csv` + pymongo `insert_many` (batches of 1000, no types, no indexes, no swap) | {python:.2} s | {:.0} | | |\n\
         | the driver's `insert_many` of the documents sheetsync wrote (batches of 1000, unordered) | {:.2} s | {:.0} | | |\n\
         | the server's swap floor: that `insert_many`, the record indexes, `renameCollection` | {swap_floor:.2} s ({:.2} + {:.2} + {:.2}) | {:.0} | | |\n\n",
        rows as f64 / python,
        floor.insert,
        rows as f64 / floor.insert,
        floor.insert,
        floor.indexes,
        floor.rename,
        rows as f64 / swap_floor,
    )
}

/// Runs of each side of the pipeline table: the machine's noise is of the
/// order of the difference measured, so each side runs alternately, this
/// many times, and the medians are compared.
const PIPELINE_RUNS: usize = 5;

/// The row pipeline: `sheetsync sync --dry-run` of a `rows`-row export into
/// an empty view (read, map, dedup and count, no write) against Python's
/// `csv.reader` merely splitting the same file into fields, each a whole
/// process timed from start to end, run alternately: as the machine runs
/// them, and both pinned to one core (`taskset`), where sheetsync reads
/// inline and Python runs as it always does.
fn pipeline_table(runtime: &tokio::runtime::Runtime, url: &str, dir: &Path, rows: usize) -> String {
    let path = dir.join("pipeline.csv");
    let csv = to_csv(&generate(rows), 0);
    std::fs::write(&path, &csv).expect("write CSV");
    let db_name = "bench_pipeline";
    let source = format!("file://{}", path.display());
    runtime.block_on(fresh_db(url, db_name, &[("view-bench", "Organic", &source)]));
    let mut lines = String::new();
    for one_core in [false, true] {
        let mut dry_runs = Vec::new();
        let mut splits = Vec::new();
        for _ in 0..PIPELINE_RUNS {
            dry_runs.push(timed_dry_run(url, db_name, rows, one_core));
            splits.push(python_split(&path, rows, one_core));
        }
        lines.push_str(&pipeline_lines(rows, one_core, &dry_runs, &splits));
    }
    runtime.block_on(drop_db(url, db_name));
    format!(
        "### The row pipeline, {rows} rows ({:.1} MB): `sync --dry-run` against Python's `csv.reader`\n\n\
         | cores | process | median | runs | peak RSS | its CPU |\n|---|---|---:|---:|---:|---:|\n{lines}\n",
        csv.len() as f64 / 1e6,
    )
}

/// The pipeline table's lines for one setting of the cores, with the ratio
/// of the medians.
fn pipeline_lines(rows: usize, one_core: bool, dry_runs: &[Measure], splits: &[f64]) -> String {
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let dry_run = median(dry_runs.iter().map(|measure| measure.seconds).collect());
    let split = median(splits.to_vec());
    let list = |values: &mut dyn Iterator<Item = f64>| {
        values.map(|value| format!("{value:.2}")).collect::<Vec<_>>().join(", ")
    };
    let cores = if one_core { "one (`taskset -c 0`)" } else { "all" };
    eprintln!("pipeline {rows} on {cores}: dry run {dry_run:.2}s, csv.reader {split:.2}s");
    format!(
        "| {cores} | `sheetsync sync --dry-run` into an empty view | {dry_run:.2} s | {} s | {:.0} MB | {:.2} s |\n\
         | {cores} | Python `csv.reader` splitting the file (no types, no keys) | {split:.2} s | {} s | | |\n\
         | {cores} | ratio of the medians | {:.2}x | | | |\n",
        list(&mut dry_runs.iter().map(|measure| measure.seconds)),
        dry_runs.iter().map(|measure| measure.peak_rss_mb).fold(0.0, f64::max),
        median(dry_runs.iter().map(|measure| measure.cpu_seconds).collect()),
        list(&mut splits.iter().copied()),
        dry_run / split,
    )
}

/// Runs of each side of the workbook table, alternately.
const WORKBOOK_RUNS: usize = 3;

/// A `rows`-row sales sheet as an `.xlsx`, typed as a spreadsheet holds it
/// (numbers, dates with a date format, shared strings), beside the same
/// sheet as CSV: each `sync --dry-run` timed with its peak RSS, and Python's
/// `openpyxl` in read-only mode iterating every cell of the workbook.
fn workbook_table(runtime: &tokio::runtime::Runtime, url: &str, dir: &Path, rows: usize) -> String {
    let deals = generate(rows);
    let csv_path = dir.join("workbook.csv");
    std::fs::write(&csv_path, to_csv(&deals, 0)).expect("write CSV");
    let xlsx_path = dir.join("workbook.xlsx");
    write_xlsx(&to_sheet_values(&deals), &xlsx_path);
    let size_mb = |path: &Path| std::fs::metadata(path).expect("written").len() as f64 / 1e6;
    let (csv_db, xlsx_db) = ("bench_workbook_csv", "bench_workbook_xlsx");
    let source = |path: &Path| format!("file://{}", path.display());
    runtime.block_on(fresh_db(url, csv_db, &[("view-bench", "Organic", &source(&csv_path))]));
    runtime.block_on(fresh_db(
        url,
        xlsx_db,
        &[("view-bench", "Organic", &source(&xlsx_path))],
    ));
    let dry_run = |db_name: &str| timed_dry_run(url, db_name, rows, false);
    let (mut from_csv, mut from_xlsx, mut openpyxl) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..WORKBOOK_RUNS {
        from_csv.push(dry_run(csv_db));
        from_xlsx.push(dry_run(xlsx_db));
        openpyxl.push(python_openpyxl(&xlsx_path, rows));
    }
    runtime.block_on(drop_db(url, csv_db));
    runtime.block_on(drop_db(url, xlsx_db));
    let median = |measures: &[Measure], value: fn(&Measure) -> f64| {
        let mut values: Vec<f64> = measures.iter().map(value).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let line = |what: &str, measures: &[Measure]| {
        let runs: Vec<String> = measures
            .iter()
            .map(|measure| format!("{:.2}", measure.seconds))
            .collect();
        format!(
            "| {what} | {:.2} s | {} s | {:.0} MB | {:.2} s |\n",
            median(measures, |measure| measure.seconds),
            runs.join(", "),
            measures.iter().map(|measure| measure.peak_rss_mb).fold(0.0, f64::max),
            median(measures, |measure| measure.cpu_seconds),
        )
    };
    eprintln!(
        "workbook {rows}: csv {:.2}s, xlsx {:.2}s, openpyxl {:.2}s",
        median(&from_csv, |measure| measure.seconds),
        median(&from_xlsx, |measure| measure.seconds),
        median(&openpyxl, |measure| measure.seconds)
    );
    format!(
        "### A {rows}-row workbook: `.xlsx` ({:.1} MB) against the same sheet as CSV ({:.1} MB)\n\n\
         | process | median | runs | peak RSS | its CPU |\n|---|---:|---:|---:|---:|\n{}{}{}\n",
        size_mb(&xlsx_path),
        size_mb(&csv_path),
        line("`sheetsync sync --dry-run` of the CSV", &from_csv),
        line("`sheetsync sync --dry-run` of the `.xlsx`", &from_xlsx),
        line("Python `openpyxl` (read-only) iterating the `.xlsx`'s cells", &openpyxl),
    )
}

/// The Sheets API's typed rows as an `.xlsx`: strings shared, numbers as
/// numbers, the date columns' serials with a date format. Written row by
/// row (rust_xlsxwriter's low-memory mode), as an export tool would.
fn write_xlsx(rows: &[Vec<Value>], path: &Path) {
    const DATE_COLUMNS: [usize; 3] = [1, 7, 17];
    let mut book = rust_xlsxwriter::Workbook::new();
    let date = rust_xlsxwriter::Format::new().set_num_format("dd/mm/yyyy");
    let euros = rust_xlsxwriter::Format::new().set_num_format("#,##0.00 \"€\"");
    let sheet = book.add_worksheet_with_low_memory().expect("a low-memory worksheet");
    // The bench's views name their tab after the view.
    sheet.set_name("Organic").expect("a valid tab name");
    for (row, values) in rows.iter().enumerate() {
        for (column, value) in values.iter().enumerate() {
            let (at_row, at_column) = (row as u32, column as u16);
            match value {
                Value::String(text) => sheet.write_string(at_row, at_column, text.as_str()).map(|_| ()),
                Value::Number(number) => {
                    let number = number.as_f64().expect("a finite number");
                    let format = if DATE_COLUMNS.contains(&column) { &date } else { &euros };
                    sheet
                        .write_number_with_format(at_row, at_column, number, format)
                        .map(|_| ())
                }
                _ => Ok(()),
            }
            .expect("write a cell");
        }
    }
    book.save(path).expect("save the workbook");
}

/// Times one whole Python process iterating every cell of `xlsx` with
/// `openpyxl` in read-only mode (installed into the test server's
/// virtualenv when missing), with its peak RSS; checks it saw every row.
fn python_openpyxl(xlsx: &Path, rows: usize) -> Measure {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin");
    let has_openpyxl = std::process::Command::new(venv.join("python"))
        .args(["-c", "import openpyxl"])
        .status()
        .is_ok_and(|status| status.success());
    if !has_openpyxl {
        let installed = std::process::Command::new(venv.join("pip"))
            .args(["install", "--quiet", "openpyxl"])
            .status()
            .expect("run pip");
        assert!(installed.success(), "pip install openpyxl failed");
    }
    let script = "import sys, openpyxl\n\
        book = openpyxl.load_workbook(sys.argv[1], read_only=True)\n\
        cells = rows = 0\n\
        for row in book.worksheets[0].iter_rows(values_only=True):\n\
        \x20   rows += 1\n\
        \x20   cells += sum(1 for value in row if value is not None)\n\
        print(rows, cells)\n";
    let started = Instant::now();
    let child = std::process::Command::new(venv.join("python"))
        .args(["-c", script])
        .arg(xlsx)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run Python");
    let (measure, output) = measured(child, started);
    assert!(output.status.success(), "openpyxl failed");
    let counted = String::from_utf8_lossy(&output.stdout);
    let read_rows: usize = counted
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a row count");
    assert_eq!(read_rows, rows + 1, "the header and every row");
    measure
}

/// One `sheetsync sync --dry-run` of the database's one view, which has
/// `rows` rows, timed with its peak RSS.
fn timed_dry_run(url: &str, db_name: &str, rows: usize, one_core: bool) -> Measure {
    let sheetsync = sheetsync(url, db_name, None).on_one_core(one_core);
    let (measure, stdout) = run_command_capturing(sheetsync.args(["sync", "--dry-run", "--json"]));
    let report: Value = serde_json::from_slice(&stdout).expect("the --json report");
    assert_eq!(
        report["views"][0]["rows_read"].as_u64(),
        Some(rows as u64),
        "every row read"
    );
    measure
}

/// Times one whole Python process splitting `csv` with `csv.reader`, and
/// checks it saw every row.
fn python_split(csv: &Path, rows: usize, one_core: bool) -> f64 {
    let script = "import csv, sys\n\
        with open(sys.argv[1], newline='', encoding='utf-8') as source:\n\
        \x20   print(sum(1 for _ in csv.reader(source)))\n";
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let mut command = match one_core {
        true => {
            let mut taskset = std::process::Command::new("taskset");
            taskset.args(["--cpu-list", "0"]).arg(python);
            taskset
        }
        false => std::process::Command::new(python),
    };
    let started = Instant::now();
    let output = command
        .args(["-c", script])
        .arg(csv)
        .output()
        .expect("run Python (scripts/test-server installs .venv)");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "the Python split failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let counted: usize = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a row count");
    assert_eq!(counted, rows + 1, "the header and every row");
    seconds
}

/// Times the plain Python loader over `csv`, with the test server's
/// virtualenv (it has pymongo); into `bench_python_loader`.
fn python_loader(url: &str, csv: &Path) -> f64 {
    let script = "import csv, sys, pymongo\n\
        client = pymongo.MongoClient(sys.argv[1])\n\
        collection = client['bench_python_loader']['records']\n\
        collection.drop()\n\
        with open(sys.argv[2], newline='', encoding='utf-8') as source:\n\
        \x20   rows = csv.reader(source)\n\
        \x20   header = next(rows)\n\
        \x20   batch = []\n\
        \x20   for row in rows:\n\
        \x20       batch.append(dict(zip(header, row)))\n\
        \x20       if len(batch) == 1000:\n\
        \x20           collection.insert_many(batch, ordered=False)\n\
        \x20           batch = []\n\
        \x20   if batch:\n\
        \x20       collection.insert_many(batch, ordered=False)\n";
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let started = Instant::now();
    let status = std::process::Command::new(python)
        .args(["-c", script, url])
        .arg(csv)
        .status()
        .expect("run the Python loader (scripts/test-server installs .venv)");
    assert!(status.success(), "the Python loader failed");
    started.elapsed().as_secs_f64()
}

/// The idle daemon watching `count` spreadsheets at the default interval:
/// Drive calls and sheetsync's CPU over `window`, once the watcher's first
/// look is done, scaled to an hour. Nobody edits, so no sheet is read.
fn idle_watch(runtime: &tokio::runtime::Runtime, url: &str, dir: &Path, count: usize, window: Duration) -> String {
    let fake = runtime.block_on(FakeGoogle::start());
    let db_name = "bench_idle_watch";
    runtime.block_on(fresh_db(url, db_name, &[]));
    let mut syncs = String::new();
    for index in 0..count {
        let id = format!("BenchWatched{index:0>24}");
        fake.add_spreadsheet(
            &id,
            FakeSpreadsheet {
                time_zone: "Europe/Paris".to_owned(),
                tabs: vec![FakeTab {
                    sheet_id: 0,
                    title: "Organic".to_owned(),
                    values: to_sheet_values(&generate(50)),
                }],
            },
        );
        let _ = write!(
            syncs,
            "[[syncs]]\nname = \"Watched {index}\"\nsource = \"{id}\"\nsheet_name = \"Organic\"\n\
             target = \"sales_records\"\ndatabase = \"{db_name}\"\ncollection = \"watched_{index}\"\n"
        );
    }
    let config_text = std::fs::read_to_string(google_config(&fake, dir, &syncs)).expect("config");
    let daemon = Daemon::start_with(
        url,
        db_name,
        dir,
        &config_text,
        &[("SHEETSYNC_DRIVE_API_URL", &fake.api_url)],
    );
    runtime.block_on(daemon.wait_ready());
    let first_look = Instant::now() + Duration::from_secs(120);
    while fake.seen().drive_requests < count {
        assert!(
            Instant::now() < first_look,
            "the watcher did not look at every spreadsheet"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = u32::try_from(daemon.process.pid()).expect("a process id");
    let (before, cpu_before, started) = (fake.seen(), cpu_seconds(pid).expect("cpu"), Instant::now());
    std::thread::sleep(window);
    let (after, cpu_after) = (fake.seen(), cpu_seconds(pid).expect("cpu"));
    let seconds = started.elapsed().as_secs_f64();
    let rss = daemon.rss_mb();
    drop(daemon);
    runtime.block_on(drop_db(url, db_name));
    let drive_calls = after.drive_requests - before.drive_requests;
    // Nobody edits: only a scheduled run (12:00, 20:00 Paris) inside the
    // window would read a sheet.
    let reads = after.batch_requests.len() - before.batch_requests.len();
    let per_hour = 3600.0 / seconds;
    let cpu = cpu_after - cpu_before;
    eprintln!("idle watch {count}: {drive_calls} Drive calls, {cpu:.2}s CPU in {seconds:.0}s");
    format!(
        "### The idle daemon watching {count} spreadsheets (default `[watch]`, fake Google on loopback)\n\n\
         | measured over | Drive calls | Drive calls per hour | token requests | sheets read | sheetsync CPU | CPU per hour | RSS |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | {seconds:.0} s | {drive_calls} | {:.0} | {} | {reads} | {cpu:.2} s | {:.1} s | {rss:.0} MB |\n\n",
        drive_calls as f64 * per_hour,
        after.token_requests - before.token_requests,
        cpu * per_hour,
    )
}

/// `/healthz` and the systemd watchdog while the daemon syncs a large view:
/// the CPU-bound passes run off the executor, so neither may stall. The
/// watchdog is the daemon's real `sd_notify` ping, received on a socket of
/// our own (`NOTIFY_SOCKET`, `WATCHDOG_USEC` = 2 s, so a ping at least every
/// second).
fn healthz_under_load(runtime: &tokio::runtime::Runtime, url: &str, dir: &Path, rows: usize) -> String {
    let path = dir.join("load-view.csv");
    std::fs::write(&path, to_csv(&generate(rows), 0)).expect("write CSV");
    let db_name = "bench_load";
    let source = format!("file://{}", path.display());
    runtime.block_on(fresh_db(url, db_name, &[("view-load", "Organic", &source)]));
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("socket timeout");
    let daemon = Daemon::start_with(
        url,
        db_name,
        dir,
        "",
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8 path")),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pings = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let mut pings = Vec::new();
            let mut buffer = [0u8; 256];
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(length) = socket.recv(&mut buffer)
                    && String::from_utf8_lossy(&buffer[..length]).contains("WATCHDOG=1")
                {
                    pings.push(Instant::now());
                }
            }
            pings
        })
    };
    runtime.block_on(daemon.wait_ready());
    let started = Instant::now();
    let latencies = runtime.block_on(async {
        let refresh = daemon.refresh(Some("Organic"));
        tokio::pin!(refresh);
        let mut latencies = Vec::new();
        loop {
            tokio::select! {
                () = &mut refresh => break,
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    let asked = Instant::now();
                    let answer = daemon.http.get(format!("{}/healthz", daemon.base)).send().await;
                    assert!(answer.is_ok_and(|answer| answer.status().is_success()), "/healthz failed");
                    latencies.push(asked.elapsed());
                }
            }
        }
        latencies
    });
    let sync_secs = started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let pings: Vec<Instant> = pings.join().expect("watchdog listener");
    drop(daemon);
    runtime.block_on(drop_db(url, db_name));
    let mut sorted = latencies.clone();
    sorted.sort();
    let percentile = |p: f64| sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1];
    let during: Vec<&Instant> = pings.iter().filter(|ping| **ping >= started).collect();
    let longest_gap = during
        .windows(2)
        .map(|pair| pair[1].duration_since(*pair[0]))
        .max()
        .unwrap_or_default();
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    eprintln!(
        "healthz under load: {} probes, p99 {:.1} ms, {} watchdog pings",
        sorted.len(),
        ms(percentile(0.99)),
        during.len()
    );
    format!(
        "### `/healthz` and the watchdog during a {rows}-row sync\n\n\
         | sync | `/healthz` probes | p50 | p99 | max | watchdog pings | longest gap between pings |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n\
         | {sync_secs:.1} s | {} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {:.0} ms |\n\n",
        sorted.len(),
        ms(percentile(0.5)),
        ms(percentile(0.99)),
        ms(*sorted.last().unwrap_or(&Duration::ZERO)),
        during.len(),
        ms(longest_gap)
    )
}

fn daemon_memory(runtime: &tokio::runtime::Runtime, url: &str, dir: &Path) -> String {
    let deals = generate(DAEMON_VIEW_ROWS);
    let path = dir.join("daemon-view.csv");
    std::fs::write(&path, to_csv(&deals, 0)).expect("write CSV");
    let db_name = "bench_daemon";
    let source = format!("file://{}", path.display());
    runtime.block_on(fresh_db(url, db_name, &[("view-bench", "Organic", &source)]));
    let daemon = Daemon::start(url, db_name, dir, "");
    runtime.block_on(daemon.wait_ready());
    std::thread::sleep(Duration::from_secs(1));
    let idle = daemon.rss_mb();
    let started = Instant::now();
    let mut halfway = 0.0;
    for round in 0..DAEMON_SYNCS {
        // A different amount each time: every sync rewrites the whole view.
        std::fs::write(&path, to_csv(&deals, round as u32 + 1)).expect("write CSV");
        runtime.block_on(daemon.refresh(Some("Organic")));
        if round + 1 == DAEMON_SYNCS / 2 {
            halfway = daemon.rss_mb();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = daemon.rss_mb();
    std::thread::sleep(Duration::from_secs(2));
    let settled = daemon.rss_mb();
    drop(daemon);
    runtime.block_on(drop_db(url, db_name));
    eprintln!("daemon: idle {idle:.1} MB, after 50 {halfway:.1} MB, after {DAEMON_SYNCS} {after:.1} MB");
    format!(
        "### Daemon memory\n\n\
         | idle after start | after {} syncs | after {DAEMON_SYNCS} syncs of a {DAEMON_VIEW_ROWS}-row view | 2 s later | \
         time per sync |\n|---:|---:|---:|---:|---:|\n| {idle:.1} MB | {halfway:.1} MB | {after:.1} MB | {settled:.1} MB | \
         {:.0} ms |\n\n",
        DAEMON_SYNCS / 2,
        elapsed * 1000.0 / DAEMON_SYNCS as f64
    )
}

fn google_calls(runtime: &tokio::runtime::Runtime, url: &str, dir: &Path) -> String {
    let fake = runtime.block_on(FakeGoogle::start());
    let small = generate(50);
    for id in ["BenchSpreadsheetAAAAAAAAAAAAAAA", "BenchSpreadsheetBBBBBBBBBBBBBBB"] {
        let tabs = ["Organic", "Signal"]
            .iter()
            .enumerate()
            .map(|(index, title)| FakeTab {
                sheet_id: index as i64,
                title: title.to_string(),
                values: to_sheet_values(&small),
            })
            .collect();
        fake.add_spreadsheet(
            id,
            FakeSpreadsheet {
                time_zone: "Europe/Paris".to_owned(),
                tabs,
            },
        );
    }
    let db_name = "bench_google_calls";
    runtime.block_on(fresh_db(
        url,
        db_name,
        &[
            ("v-organic", "Organic", "BenchSpreadsheetAAAAAAAAAAAAAAA"),
            ("v-signal", "Signal", "BenchSpreadsheetAAAAAAAAAAAAAAA"),
            ("v-fullfunnel", "Full Funnel", "BenchSpreadsheetBBBBBBBBBBBBBBB"),
            ("v-market", "Market", "BenchSpreadsheetBBBBBBBBBBBBBBB"),
        ],
    ));
    // Two views per spreadsheet, by tab name.
    let views = "[views.\"Full Funnel\"]\nsheet_name = \"Organic\"\n[views.Market]\nsheet_name = \"Signal\"\n";
    let config_text = std::fs::read_to_string(google_config(&fake, dir, views)).expect("config");
    let daemon = Daemon::start(url, db_name, dir, &config_text);
    runtime.block_on(daemon.wait_ready());
    let cycles = 3;
    let mut rows = String::new();
    let mut before = fake.seen();
    for cycle in 1..=cycles {
        runtime.block_on(daemon.refresh(None));
        let seen = fake.seen();
        let _ = writeln!(
            rows,
            "| {cycle} | {} | {} | {} |",
            seen.metadata_requests.len() - before.metadata_requests.len(),
            seen.batch_requests.len() - before.batch_requests.len(),
            seen.token_requests - before.token_requests,
        );
        before = seen;
    }
    drop(daemon);
    runtime.block_on(drop_db(url, db_name));
    format!(
        "### Google API calls per cycle (daemon, 4 views over 2 spreadsheets)\n\n\
         | cycle | spreadsheets.get | values:batchGet | token requests |\n|---:|---:|---:|---:|\n{rows}\n"
    )
}
