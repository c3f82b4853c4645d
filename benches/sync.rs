//! End-to-end sync benchmark, run by `scripts/bench` against a local
//! MongoDB-compatible server (`TEST_MONGO_URL`).
//!
//! For each size it generates a sales CSV, times `sheetsync sync` (first load
//! and an unchanged second load) as a child process, reads the child's peak
//! RSS from `wait4`, and times the baseline: the very documents the sync wrote,
//! inserted with the driver's `insert_many` (unordered, batches of 1000) into
//! an empty collection. Results go to stdout as a Markdown table and, with
//! `--write PATH`, into that file.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};

const DEFAULT_SIZES: [usize; 3] = [10_000, 100_000, 500_000];

struct Measure {
    seconds: f64,
    peak_rss_mb: f64,
}

struct Row {
    rows: usize,
    bytes: u64,
    first: Measure,
    second: Measure,
    baseline_seconds: f64,
}

fn main() {
    let url = std::env::var("TEST_MONGO_URL").expect("run through scripts/bench, which sets TEST_MONGO_URL");
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .map(|text| {
            text.split(',')
                .map(|size| size.trim().parse().expect("BENCH_SIZES: numbers"))
                .collect()
        })
        .unwrap_or_else(|_| DEFAULT_SIZES.to_vec());
    let write_to = std::env::args().skip_while(|arg| arg != "--write").nth(1);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("scratch dir");

    let mut rows = Vec::new();
    for &size in &sizes {
        let path = dir.path().join(format!("sales-{size}.csv"));
        let bytes = write_sales_csv(&path, size);
        let db_name = format!("bench_{size}");
        runtime.block_on(prepare_db(&url, &db_name, &path));
        let first = run_sync(&url, &db_name);
        let second = run_sync(&url, &db_name);
        let baseline_seconds = runtime.block_on(baseline(&url, &db_name));
        runtime.block_on(drop_db(&url, &db_name));
        eprintln!(
            "{size} rows: first {:.2}s, second {:.2}s, baseline {baseline_seconds:.2}s, peak RSS {:.0} MB",
            first.seconds, second.seconds, first.peak_rss_mb
        );
        rows.push(Row {
            rows: size,
            bytes,
            first,
            second,
            baseline_seconds,
        });
    }
    let table = render(&rows);
    println!("{table}");
    if let Some(path) = write_to {
        std::fs::write(&path, table).expect("write the results");
    }
}

/// Generates `count` rows like a real export: 18 columns, 5% of rows repeat
/// an earlier client + stage (an update further down the sheet).
fn write_sales_csv(path: &Path, count: usize) -> u64 {
    const STAGES: [&str; 7] = [
        "F Inbox",
        "D POA Booked",
        "C Proposal sent",
        "B Legals",
        "A Closed",
        "Lost",
        "Not Relevant",
    ];
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
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |bound: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % bound as u64) as usize
    };
    let mut csv = String::with_capacity(count * 240);
    csv.push_str(
        "Month,Discovery Date,Client,Hubspot Link,Stage,Relevance,Show / No Show,POA Date,Expected MRR,\
         Expected ARR,Pipeline,Type of Deal,BDR,Type of Source,Product,Owner,Supporters,Billing Start\n",
    );
    let mut originals = Vec::new();
    for index in 0..count {
        let (client, stage) = if index > 20 && next(100) < 5 {
            let (client, stage): &(String, &str) = &originals[next(originals.len())];
            (client.clone(), *stage)
        } else {
            let client = format!("{} {} {index}", WORDS[next(WORDS.len())], KINDS[next(KINDS.len())]);
            let stage = STAGES[next(STAGES.len())];
            originals.push((client.clone(), stage));
            (client, stage)
        };
        let (day, month) = (1 + next(28), 1 + next(12));
        let mrr = 500 + next(9_500);
        let _ = writeln!(
            csv,
            "2025-{month:02},{day:02}/{month:02}/2025,{client},https://app.hubspot.com/deals/{index},{stage},High,Show,\
             {day:02}/{month:02}/2025,\"{mrr},50\",\"{},000\",\"{},000\",New Business,{},{},Enterprise Plan,{},Support Team,\
             01/{month:02}/2026",
            mrr * 12 / 1000,
            mrr * 12 / 1000,
            PEOPLE[next(PEOPLE.len())],
            SOURCES[next(SOURCES.len())],
            PEOPLE[next(PEOPLE.len())],
        );
    }
    std::fs::write(path, &csv).expect("write CSV");
    csv.len() as u64
}

async fn client(url: &str) -> mongodb::Client {
    sheetsync::tls::install_crypto_provider();
    mongodb::Client::with_uri_str(url).await.expect("connect")
}

async fn prepare_db(url: &str, db_name: &str, csv: &Path) {
    let db = client(url).await.database(db_name);
    db.drop().await.expect("drop old bench db");
    db.collection::<Document>("views")
        .insert_one(doc! {
            "id": "view-bench", "name": "Organic", "sheet_url": format!("file://{}", csv.display()), "is_master": false,
        })
        .await
        .expect("insert view");
}

async fn drop_db(url: &str, db_name: &str) {
    client(url).await.database(db_name).drop().await.expect("drop bench db");
}

/// Times one `sheetsync sync` and reads its peak RSS.
// The child is reaped by `wait4`, which std's `Child::wait` cannot replace
// because it does not return the child's resource usage.
#[allow(clippy::zombie_processes)]
fn run_sync(url: &str, db_name: &str) -> Measure {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_sheetsync"))
        .args(["sync", "--json"])
        .env("MONGO_URL", url)
        .env("DB_NAME", db_name)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start sheetsync");
    let (status, peak_rss_kb) = wait_with_peak_rss(child.id());
    assert!(status == 0, "sheetsync sync failed with status {status}");
    Measure {
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_mb: peak_rss_kb as f64 / 1024.0,
    }
}

/// `wait4` gives the exit status and the child's own peak RSS (KiB on Linux).
fn wait_with_peak_rss(pid: u32) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for the kernel to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; both pointers are
    // valid for the duration of the call.
    let waited = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid as libc::pid_t, "wait4 failed");
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

/// Inserts the documents the sync produced into an empty collection, as a
/// hand-written loader would.
async fn baseline(url: &str, db_name: &str) -> f64 {
    let db = client(url).await.database(db_name);
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
    started.elapsed().as_secs_f64()
}

fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| rows | CSV size | first sync | rows/s | second sync (unchanged) | baseline insert_many | sync/baseline throughput | peak RSS first | peak RSS second |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let ratio = row.baseline_seconds / row.first.seconds;
        let _ = writeln!(
            out,
            "| {} | {:.1} MB | {:.2} s | {:.0} | {:.2} s | {:.2} s | {ratio:.2} | {:.0} MB | {:.0} MB |",
            row.rows,
            row.bytes as f64 / 1e6,
            row.first.seconds,
            row.rows as f64 / row.first.seconds,
            row.second.seconds,
            row.baseline_seconds,
            row.first.peak_rss_mb,
            row.second.peak_rss_mb,
        );
    }
    out
}
