//! `sheetsync run` as a process: signals, admin API, readiness, shutdown and
//! several replicas, against a real MongoDB wire-protocol server.

use crate::harness::daemon_fixture::*;
use crate::harness::own_server::OwnServer;
use crate::harness::process::*;
use crate::harness::*;
use mongodb::bson::{Document, doc};
use serde_json::Value;

async fn runs_of(db: &mongodb::Database, filter: Document) -> Vec<Document> {
    use futures_util::TryStreamExt;
    db.collection::<Document>("sync_runs")
        .find(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[test]
fn next_runs_prints_paris_times_right_across_dst() {
    let output = Sheetsync::new()
        .args(["next-runs", "--count", "4", "--from", "2027-03-27T13:00:00+01:00"])
        .output();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "2027-03-27T20:00:00+01:00 2027-03-27T19:00:00Z\n\
         2027-03-28T12:00:00+02:00 2027-03-28T10:00:00Z\n\
         2027-03-28T20:00:00+02:00 2027-03-28T18:00:00Z\n\
         2027-03-29T12:00:00+02:00 2027-03-29T10:00:00Z\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[daemon]\nschedule = \"0 0 12,20 * * *\"\ntime_zone = \"Europe/Paris\"\n",
    )
    .unwrap();
    let output = Sheetsync::new()
        .config(&config)
        .args(["next-runs", "--count", "3", "--from", "2027-10-31T00:00:00+02:00"])
        .output();
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "2027-10-31T12:00:00+01:00 2027-10-31T11:00:00Z\n\
         2027-10-31T20:00:00+01:00 2027-10-31T19:00:00Z\n\
         2027-11-01T12:00:00+01:00 2027-11-01T11:00:00Z\n"
    );
    let bad = Sheetsync::new().args(["next-runs", "--from", "yesterday"]).output();
    assert!(!bad.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_syncs_every_view_and_admin_is_off_without_token() {
    let fixture = DaemonFixture::new(
        "sighup",
        &[("view-organic", "Organic", 5, "v1"), ("view-signal", "Signal", 3, "v1")],
    )
    .await;
    let db = &fixture.db;
    let config = fixture.config("catch_up = false");
    let mut daemon = DaemonProc::start(&config, &[]);
    daemon.wait_log("ready");
    let client = http();
    assert_eq!(
        client
            .get(format!("{}/healthz", daemon.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // No token configured: the admin endpoints do not exist.
    let refresh = client
        .post(format!("{}/admin/refresh", daemon.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 404);
    assert!(
        runs_of(db, doc! {}).await.is_empty(),
        "catch-up is off: nothing ran yet"
    );

    daemon.signal(libc::SIGHUP);
    let runs = eventually("two runs after SIGHUP", || async {
        let runs = runs_of(db, doc! { "trigger": "signal" }).await;
        (runs.len() == 2).then_some(runs)
    })
    .await;
    assert!(
        runs.iter().all(|run| run.get_str("outcome") == Ok("success")),
        "{runs:?}"
    );
    let records = db
        .collection::<Document>("sales_records")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(records, 5);
    let signal_records = db
        .collection::<Document>("sales_records_signal")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(signal_records, 3);
    eventually("the signal refresh to finish", || async {
        (daemon.count_logs("refresh done") == 1).then_some(())
    })
    .await;
    // The status and metrics show it (the status snapshot is read again in
    // the background after a run: wait for it).
    let status: Value = eventually("the status snapshot to show the runs", || async {
        let status = get_json(&format!("{}/status", daemon.base), None).await?;
        let views = status["views"].as_array()?;
        views
            .iter()
            .all(|view| view["last_run"]["outcome"] == "success")
            .then_some(status)
    })
    .await;
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let views = status["views"].as_array().unwrap();
    assert_eq!(views.len(), 2, "{status}");
    let organic_status = views.iter().find(|view| view["name"] == "Organic").unwrap();
    assert_eq!(organic_status["last_run"]["outcome"], "success", "{status}");
    assert_eq!(organic_status["records_count"], 5, "{status}");
    assert!(organic_status["last_success"].is_string(), "{status}");
    assert!(organic_status["next_run"].is_string(), "{status}");
    let metrics = client
        .get(format!("{}/metrics", daemon.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "sheetsync_sync_runs_total{view=\"Organic\",trigger=\"signal\",outcome=\"success\"} 1",
        "sheetsync_records_written_total{view=\"Signal\"} 3",
        "sheetsync_sync_duration_seconds_bucket{view=\"Organic\"",
        "sheetsync_last_success_timestamp_seconds{view=\"Organic\"}",
        "sheetsync_rows_rejected_total{view=\"Organic\"} 0",
        "sheetsync_google_api_calls_total 0",
        "sheetsync_google_api_retries_total 0",
        "# HELP sheetsync_google_api_calls_total",
    ] {
        assert!(metrics.contains(expected), "{expected:?} missing from:\n{metrics}");
    }
    // `sheetsync health` probes it.
    let health = Sheetsync::new()
        .args(["health", "--url", &format!("{}/healthz", daemon.base)])
        .output();
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stdout));
    daemon.stop();
    let health = Sheetsync::new()
        .args(["health", "--url", "http://127.0.0.1:9/healthz"])
        .output();
    assert!(!health.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_refresh_needs_the_right_token() {
    let fixture = DaemonFixture::new("admin", &[("view-organic", "Organic", 4, "v1")]).await;
    let db = &fixture.db;
    let config = fixture.config("catch_up = false");
    let mut daemon = DaemonProc::start(&config, &[("SHEETSYNC_ADMIN_TOKEN", ADMIN_TOKEN)]);
    daemon.wait_log("ready");
    let client = http();
    let refresh = format!("{}/admin/refresh?view=Organic", daemon.base);
    assert_eq!(client.post(&refresh).send().await.unwrap().status(), 401);
    let wrong = client.post(&refresh).bearer_auth("correct-horsf").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let unknown = client
        .post(format!("{}/admin/refresh?view=Nope", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(runs_of(db, doc! {}).await.is_empty(), "refused requests run nothing");

    let accepted = client.post(&refresh).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(accepted.status(), 202);
    let body: Value = accepted.json().await.unwrap();
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{body}");
    let id = runs[0]["run_id"].as_str().unwrap().to_owned();
    let run_url = format!("{}/admin/runs/{id}", daemon.base);
    assert_eq!(client.get(&run_url).send().await.unwrap().status(), 401);
    let result: Value = eventually("the run to finish", || async {
        let run: Value = client
            .get(&run_url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (run["state"] == "finished").then_some(run)
    })
    .await;
    assert_eq!(result["report"]["outcome"], "success", "{result}");
    assert_eq!(
        result["report"]["run_id"],
        id.as_str(),
        "the announced id is the recorded one"
    );
    assert_eq!(result["trigger"], "admin");
    let stored = runs_of(db, doc! { "run_id": &id }).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].get_str("trigger"), Ok("admin"));
    // Refresh all: 202 too.
    let all = client
        .post(format!("{}/admin/refresh", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), 202);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_follows_mongodb_down_and_back() {
    let server = OwnServer::start();
    let name = crate::harness::unique_name("readyz");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.url, &name, "catch_up = false");
    let mut daemon = DaemonProc::start(&config, &[]);
    daemon.wait_log("ready");
    let client = http();
    let readyz = format!("{}/readyz", daemon.base);
    let status_of = || async {
        let response = client.get(&readyz).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    eventually("ready", || async { (status_of().await.0 == 200).then_some(()) }).await;

    server.stop();
    let reason = eventually("503 while MongoDB is down", || async {
        let (code, body) = status_of().await;
        (code == 503).then_some(body)
    })
    .await;
    assert!(reason.contains("MongoDB"), "{reason}");
    // Still alive, and says so.
    assert_eq!(
        client
            .get(format!("{}/healthz", daemon.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    server.restart();
    eventually("ready again once MongoDB is back", || async {
        (status_of().await.0 == 200).then_some(())
    })
    .await;
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_sync_exits_zero_and_leaves_the_old_data() {
    const OLD: usize = 50;
    const NEW: usize = 200;
    let fixture = DaemonFixture::new("sigterm", &[("view-organic", "Organic", OLD, "old")]).await;
    let db = &fixture.db;
    // Catch-up syncs the old data at start; the grace period is zero, so a
    // sync still running at SIGTERM is abandoned. Every swap is held back a
    // few seconds, so SIGTERM always lands before the new data's swap.
    let config = fixture.config("catch_up = true\nshutdown_grace_secs = 0");
    let mut daemon = DaemonProc::start(&config, &[("SHEETSYNC_TEST_PAUSE_BEFORE_SWAP_MS", "3000")]);
    daemon.wait_log("catch-up done");
    let records = db.collection::<Document>("sales_records");
    assert_eq!(
        records.count_documents(doc! { "product": "old" }).await.unwrap(),
        OLD as u64
    );

    write_csv(&fixture.csv("Organic"), NEW, "new");
    daemon.signal(libc::SIGHUP);
    eventually("the refresh to reach its swap", || async {
        (daemon.count_logs("test pause before the swap") == 2).then_some(())
    })
    .await;
    daemon.stop();

    let total = records.count_documents(doc! {}).await.unwrap();
    let old = records.count_documents(doc! { "product": "old" }).await.unwrap();
    assert_eq!((total, old), (OLD as u64, OLD as u64), "the old data stands, whole");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_sync_each_view_once_per_trigger() {
    let fixture = DaemonFixture::new(
        "replicas",
        &[
            ("view-organic", "Organic", 200, "v1"),
            ("view-market", "Market", 100, "v1"),
        ],
    )
    .await;
    let db = &fixture.db;
    let config_a = fixture.config("catch_up = true");
    let dir_b = tempfile::tempdir().unwrap();
    let config_b = fixture.config_in(dir_b.path(), "catch_up = true");
    // Both start at once and both see two never-synced views to catch up.
    let mut first = DaemonProc::start(&config_a, &[]);
    let mut second = DaemonProc::start(&config_b, &[]);
    first.wait_log("catch-up done");
    second.wait_log("catch-up done");
    for view in ["Organic", "Market"] {
        let runs = runs_of(db, doc! { "view": view }).await;
        assert_eq!(
            runs.len(),
            1,
            "{view}: {runs:?}\nA:\n{}\nB:\n{}",
            first.log_text(),
            second.log_text()
        );
        assert_eq!(runs[0].get_str("outcome"), Ok("success"));
    }
    let locks = db
        .collection::<Document>("sync_locks")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(locks, 0, "leases are released after each run");
    first.stop();
    second.stop();
}

/// `sheetsync sync` against the same database, off the async runtime.
async fn cli_sync(config: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Sheetsync::new()
        .config(config)
        .args(["sync"])
        .args(extra)
        .output_async()
        .await
}

async fn products(db: &mongodb::Database) -> Vec<String> {
    use futures_util::TryStreamExt;
    let mut products: Vec<String> = db
        .collection::<Document>("sales_records")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|record| record.get_str("product").unwrap().to_owned())
        .collect();
    products.dedup();
    products
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cli_sync_waits_for_or_reports_the_daemon_holding_the_view() {
    let fixture = DaemonFixture::new("cli_vs_daemon", &[("view-organic", "Organic", 30, "daemon")]).await;
    let db = &fixture.db;
    let config = fixture.config("catch_up = false");
    let mut daemon = DaemonProc::start(&config, &[("SHEETSYNC_TEST_PAUSE_BEFORE_SWAP_MS", "4000")]);
    daemon.signal(libc::SIGHUP);
    // The daemon has read everything and holds the view, before its swap.
    daemon.wait_log("test pause before the swap");
    write_csv(&fixture.csv("Organic"), 30, "cli");

    let refused = cli_sync(&config, &[]).await;
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("view \"Organic\" is being synced by daemon@"),
        "the holder is named: {stdout}"
    );
    assert!(products(db).await.is_empty(), "the CLI wrote nothing");

    // Waiting: the daemon's swap lands first, then the CLI's, never a mix.
    let waited = cli_sync(&config, &["--wait", "60"]).await;
    assert!(
        waited.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&waited.stdout),
        String::from_utf8_lossy(&waited.stderr)
    );
    assert_eq!(products(db).await, ["cli"]);
    let daemon_runs = runs_of(db, doc! { "trigger": "signal" }).await;
    assert_eq!(daemon_runs.len(), 1);
    assert_eq!(daemon_runs[0].get_str("outcome"), Ok("success"), "{daemon_runs:?}");
    let cli_runs = runs_of(db, doc! { "trigger": "cli" }).await;
    let outcomes: Vec<&str> = cli_runs.iter().map(|run| run.get_str("outcome").unwrap()).collect();
    assert_eq!(outcomes, ["failed", "success"]);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_lost_its_lease_never_swaps() {
    let fixture = DaemonFixture::new("lost_lease", &[("view-organic", "Organic", 30, "first")]).await;
    let db = &fixture.db;
    let config = fixture.config("catch_up = false");
    let first = cli_sync(&config, &[]).await;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stdout));
    write_csv(&fixture.csv("Organic"), 30, "second");
    let mut daemon = DaemonProc::start(&config, &[("SHEETSYNC_TEST_PAUSE_BEFORE_SWAP_MS", "4000")]);
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("test pause before the swap");
    // Another process takes the view over while the daemon is paused.
    let far = mongodb::bson::DateTime::from_millis(mongodb::bson::DateTime::now().timestamp_millis() + 3_600_000);
    db.collection::<Document>("sync_locks")
        .update_one(
            doc! { "_id": "view-organic" },
            doc! { "$set": { "owner": "thief", "expires_at": far } },
        )
        .await
        .unwrap();
    eventually("the daemon's run to end", || async {
        let runs = runs_of(db, doc! { "trigger": "signal" }).await;
        runs.into_iter().next()
    })
    .await;
    let run = runs_of(db, doc! { "trigger": "signal" }).await.remove(0);
    assert_eq!(run.get_str("outcome"), Ok("failed"), "{run:?}");
    assert!(
        run.get_str("error").unwrap().contains("taken over by another process"),
        "{run:?}"
    );
    assert_eq!(products(db).await, ["first"], "the old data stands");
    daemon.stop();
}

/// `/status` is unauthenticated: it may name views and give states, times and
/// counts, never a source, an error text (which may quote a source's cells)
/// or a host name. The admin token shows everything.
#[tokio::test(flavor = "multi_thread")]
async fn status_shows_content_only_with_the_admin_token() {
    let fixture = DaemonFixture::new("status_content", &[("view-organic", "Organic", 4, "v1")]).await;
    // A second view whose source fails, quoting what it found.
    let secret = fixture.dir.path().join("secret.csv");
    std::fs::write(&secret, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    insert_views(&fixture.db, &[("view-market", "Market", secret.as_path())]).await;
    let config = fixture.config("catch_up = true");
    let mut daemon = DaemonProc::start(&config, &[("SHEETSYNC_ADMIN_TOKEN", ADMIN_TOKEN)]);
    daemon.wait_log("catch-up done");
    let client = http();
    let url = format!("{}/status", daemon.base);
    let open: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    let open_text = open.to_string();
    for hidden in [
        "root:x",
        "secret.csv",
        "organic.csv",
        "daemon@",
        "\"error\"",
        "\"source\"",
    ] {
        assert!(
            !open_text.contains(hidden),
            "{hidden} shown without the token: {open:#}"
        );
    }
    let market = open["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|view| view["name"] == "Market")
        .unwrap();
    assert_eq!(market["last_run"]["outcome"], "failed", "{open:#}");
    assert!(market["last_run"]["finished_at"].is_string(), "{open:#}");
    let organic = open["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|view| view["name"] == "Organic")
        .unwrap();
    assert_eq!(organic["records_count"], 4, "{open:#}");

    let full: Value = client
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let full_text = full.to_string();
    for shown in ["secret.csv", "daemon@", "\"error\""] {
        assert!(full_text.contains(shown), "{shown} missing with the token: {full:#}");
    }
    let wrong: Value = client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!wrong.to_string().contains("secret.csv"), "a wrong token is no token");
    daemon.stop();
}

/// A client that sends half a request and then nothing is disconnected
/// within the header timeout; the server goes on answering others.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_header_client_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fixture = DaemonFixture::new("slow_header", &[("view-organic", "Organic", 4, "v1")]).await;
    let config = fixture.config("catch_up = false\nhttp_header_timeout_secs = 1");
    let daemon = DaemonProc::start(&config, &[]);
    let address = daemon.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: sheetsync\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 256];
    // The server answers the incomplete request with nothing but a closed
    // connection (hyper may write a 408 first): read until EOF.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow client was still connected after 20 s");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "closed before the timeout"
    );
    let healthz = http().get(format!("{}/healthz", daemon.base)).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    daemon.stop();
}

/// With every connection slot taken, new connections are closed at once, the
/// daemon keeps running, and it serves again as soon as clients leave.
#[tokio::test(flavor = "multi_thread")]
async fn at_the_connection_cap_new_clients_are_refused_until_others_leave() {
    let fixture = DaemonFixture::new("connection_cap", &[("view-organic", "Organic", 4, "v1")]).await;
    let config = fixture.config("catch_up = false\nhttp_max_connections = 3\nhttp_header_timeout_secs = 60");
    let mut daemon = DaemonProc::start(&config, &[]);
    let address = daemon.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    // Give the server the time to accept the three.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let refused = http().get(format!("{}/healthz", daemon.base)).send().await;
    assert!(refused.is_err(), "a fourth connection was served: {refused:?}");
    // The daemon itself goes on: a signal is still handled.
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("SIGHUP: refreshing every view");
    drop(held);
    let served = eventually("the server to take connections again", || async {
        http()
            .get(format!("{}/healthz", daemon.base))
            .send()
            .await
            .ok()
            .filter(|response| response.status() == 200)
    })
    .await;
    assert_eq!(served.status(), 200);
    daemon.stop();
}

/// Views sync at most `max_concurrent_syncs` at a time: with one slot, each
/// view's swap comes after the previous view's run finished.
#[tokio::test(flavor = "multi_thread")]
async fn views_sync_within_the_concurrency_bound() {
    let views = [
        ("view-organic", "Organic", 5, "v1"),
        ("view-signal", "Signal", 5, "v1"),
        ("view-market", "Market", 5, "v1"),
    ];
    for (slots, overlapping) in [(1, false), (3, true)] {
        let fixture = DaemonFixture::new("concurrency", &views).await;
        let config = fixture.config(&format!("catch_up = false\nmax_concurrent_syncs = {slots}"));
        let daemon = DaemonProc::start(&config, &[("SHEETSYNC_TEST_PAUSE_BEFORE_SWAP_MS", "700")]);
        daemon.signal(libc::SIGHUP);
        eventually("three runs to finish", || async {
            (daemon.count_logs("sync finished") == 3).then_some(())
        })
        .await;
        let order: Vec<String> = daemon
            .messages()
            .into_iter()
            .filter(|message| message == "test pause before the swap" || message == "sync finished")
            .collect();
        let alternating = order
            .chunks(2)
            .all(|pair| pair == ["test pause before the swap", "sync finished"]);
        assert_eq!(!alternating, overlapping, "{slots} slot(s): {order:?}");
        daemon.stop();
    }
}

/// A server that stops answering mid-sync (SIGSTOP): the run fails within
/// the operation limit naming what it was doing, /readyz says MongoDB does
/// not answer, /status and an admin refresh still answer at once, and once
/// the server goes on (SIGCONT) the refresh runs and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_stops_answering_fails_the_run_in_time_and_the_refresh_runs_later() {
    let server = OwnServer::start();
    let name = crate::harness::unique_name("frozen");
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("organic.csv");
    write_csv(&csv, 50, "new");
    let db = database(&server.url, &name).await;
    insert_views(&db, &[("view-organic", "Organic", csv.as_path())]).await;
    let config = dir.path().join("sheetsync.toml");
    std::fs::write(
        &config,
        format!(
            "[mongo]\nurl = {:?}\ndb_name = {name:?}\nread_timeout_secs = 2\nwrite_timeout_secs = 2\n\n\
             [sources]\nfile_roots = [\"/\"]\n\n[daemon]\nlisten = \"127.0.0.1:0\"\nschedule = \"0 0 0 1 1 *\"\n\
             catch_up = false\nlease_secs = 30\nretry_min_secs = 1\nretry_max_secs = 2\n",
            server.url
        ),
    )
    .unwrap();
    let mut daemon = DaemonProc::start(
        &config,
        &[
            ("SHEETSYNC_TEST_PAUSE_BEFORE_SWAP_MS", "2000"),
            ("SHEETSYNC_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    );
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("test pause before the swap");
    server.freeze();
    let failed = daemon.wait_log("sync failed");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("no answer within 2 s"), "{failed}");

    let client = http();
    let started = std::time::Instant::now();
    let readyz = client.get(format!("{}/readyz", daemon.base)).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
    assert!(readyz.text().await.unwrap().contains("MongoDB does not answer"));
    let status = client.get(format!("{}/status", daemon.base)).send().await.unwrap();
    assert_eq!(status.status(), 200);
    // The refresh answers from the syncs last listed, without waiting for
    // the frozen server to list them again (the 2 s it waits when no list
    // is known yet), and queues the run.
    let asked = std::time::Instant::now();
    let refresh = client
        .post(format!("{}/admin/refresh?view=Organic", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let answered_in = asked.elapsed();
    assert_eq!(refresh.status(), 202);
    let queued: Value = refresh.json().await.unwrap();
    assert_eq!(queued["queued"], true, "{queued}");
    assert_eq!(queued["views"], serde_json::json!(["Organic"]), "{queued}");
    assert!(
        answered_in < std::time::Duration::from_secs(1),
        "the refresh waited for the frozen server: {answered_in:?}"
    );
    let unknown = client
        .post(format!("{}/admin/refresh?view=Nope", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404, "a name the last list lacks is refused at once");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the endpoints waited for the frozen server: {:?}",
        started.elapsed()
    );

    server.thaw();
    eventually("the refresh to succeed once the server answers", || async {
        use futures_util::TryStreamExt;
        let records: Vec<Document> = db
            .collection::<Document>("sales_records")
            .find(doc! {})
            .await
            .ok()?
            .try_collect()
            .await
            .ok()?;
        (records.len() == 50).then_some(())
    })
    .await;
    daemon.stop();
}

/// A `[[syncs]]` entry runs in the daemon as views do: caught up at start,
/// refreshed by name through the admin API, shown in `/status` and
/// `/metrics`, with its history in its own database.
#[tokio::test(flavor = "multi_thread")]
async fn a_configured_sync_runs_like_a_view() {
    let fixture = DaemonFixture::new("configured", &[("view-organic", "Organic", 4, "v1")]).await;
    let cs_name = format!("{}_cs", fixture.name);
    let cs = database(&fixture.url, &cs_name).await;
    let export = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/customers-export.csv");
    let extra = format!(
        "catch_up = true\n\n[[syncs]]\nname = \"Customers\"\nsource = \"{export}\"\ntarget = \"customers\"\n\
         database = \"{cs_name}\"\n"
    );
    let config = fixture.config(&extra);
    let mut daemon = DaemonProc::start(&config, &[("SHEETSYNC_ADMIN_TOKEN", ADMIN_TOKEN)]);
    daemon.wait_log("catch-up done");
    let customers = cs.collection::<Document>("customers");
    assert_eq!(customers.count_documents(doc! {}).await.unwrap(), 4);
    assert_eq!(runs_of(&cs, doc! { "view": "Customers" }).await.len(), 1);
    assert!(runs_of(&fixture.db, doc! { "view": "Customers" }).await.is_empty());

    let client = http();
    let accepted = client
        .post(format!("{}/admin/refresh?view=Customers", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let runs = eventually("the refresh to be recorded", || async {
        let runs = runs_of(&cs, doc! { "view": "Customers", "trigger": "admin" }).await;
        (!runs.is_empty()).then_some(runs)
    })
    .await;
    // The export did not change since the catch-up: the refresh stops at
    // its digest (see the watch tests).
    assert_eq!(runs[0].get_str("outcome"), Ok("unchanged"), "{runs:?}");
    assert_eq!(runs[0].get_i64("records_written"), Ok(4));

    let status: Value = eventually("the status to show the sync", || async {
        let status: Value = client
            .get(format!("{}/status", daemon.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sync = status["views"]
            .as_array()?
            .iter()
            .find(|view| view["name"] == "Customers")?
            .clone();
        (sync["last_run"]["trigger"] == "admin").then_some(sync)
    })
    .await;
    assert_eq!(status["collection"], format!("{cs_name}.customers"), "{status:#}");
    assert_eq!(status["records_count"], 4, "{status:#}");
    let metrics = client
        .get(format!("{}/metrics", daemon.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("view=\"Customers\""), "{metrics}");
    daemon.stop();
    cs.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_weak_admin_token_stops_the_daemon_and_sheetsync_token_makes_a_strong_one() {
    let fixture = DaemonFixture::new("token", &[]).await;
    let config = fixture.config("catch_up = false");
    for weak in ["abc", "correct-horse", &"a".repeat(40)] {
        let output = Sheetsync::new()
            .config(&config)
            .env("SHEETSYNC_ADMIN_TOKEN", weak)
            .args(["run"])
            .output_async()
            .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "a weak token {weak:?} was accepted");
        assert!(
            stderr.contains("must be at least 32, not one character repeated: make one with `sheetsync token"),
            "{stderr}"
        );
        assert!(
            !stderr.contains(weak) || weak.len() < 4,
            "the token is never echoed: {stderr}"
        );
    }
    let token = || {
        let output = Sheetsync::new().args(["token"]).output();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap().trim_end().to_owned()
    };
    let (first, second) = (token(), token());
    assert_eq!(first.len(), 64, "{first}");
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(first, second, "a fresh token each time");
    let daemon = DaemonProc::start(&config, &[("SHEETSYNC_ADMIN_TOKEN", &first)]);
    daemon.stop();
}

/// A client bound to `source`, so that a test speaks from several addresses.
fn http_from(source: &str) -> reqwest::Client {
    sheetsync::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// A token that shows up nowhere unless a log quotes it.
const GUESS: &str = "guessed-WRONG-token-0123456789abcdef0123";

#[tokio::test(flavor = "multi_thread")]
async fn guessing_the_token_gets_an_address_throttled_but_not_another() {
    let fixture = DaemonFixture::new("throttle", &[("view-organic", "Organic", 4, "v1")]).await;
    let config =
        fixture.config("catch_up = false\nauth_failures_allowed = 3\nauth_first_wait_secs = 2\nauth_max_wait_secs = 8");
    let mut daemon = DaemonProc::start(&config, &[("SHEETSYNC_ADMIN_TOKEN", ADMIN_TOKEN)]);
    daemon.wait_log("ready");
    let refresh = format!("{}/admin/refresh?view=Organic", daemon.base);
    let login = format!("{}/login", daemon.base);
    let attacker = http_from("127.0.0.1");

    // Three failures, on two routes, make one count.
    for _ in 0..2 {
        let wrong = attacker.post(&refresh).bearer_auth(GUESS).send().await.unwrap();
        assert_eq!(wrong.status(), 401);
    }
    let wrong_login = attacker.post(&login).form(&[("token", GUESS)]).send().await.unwrap();
    assert_eq!(wrong_login.status(), 401);

    for throttled in [
        attacker.post(&refresh).bearer_auth(GUESS).send().await.unwrap(),
        attacker.post(&refresh).bearer_auth(ADMIN_TOKEN).send().await.unwrap(),
        attacker
            .post(&login)
            .form(&[("token", ADMIN_TOKEN)])
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(throttled.status(), 429, "even the right token waits");
        let retry_after: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry_after), "{retry_after}");
    }

    // Another address is not slowed.
    let admin = http_from("127.0.0.2");
    let accepted = admin.post(&refresh).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(accepted.status(), 202);

    let metrics = http()
        .get(format!("{}/metrics", daemon.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sheetsync_auth_failures_total{route=\"/admin/refresh\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sheetsync_auth_failures_total{route=\"/login\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("sheetsync_auth_throttled_total"), "{metrics}");

    // After the wait, the first address may try again.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let again = attacker.post(&refresh).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(again.status(), 202);

    daemon.wait_log("repeated authentication failures; this address is refused for a while");
    let logs = daemon.log_text();
    assert!(logs.contains("127.0.0.1"), "the address is named");
    assert!(!logs.contains(GUESS), "a tried token was logged");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_the_forwarded_client_is_counted() {
    let fixture = DaemonFixture::new("throttle_proxy", &[("view-organic", "Organic", 4, "v1")]).await;
    let config = fixture.config(
        "catch_up = false\nauth_failures_allowed = 2\nauth_first_wait_secs = 60\ntrusted_proxies = [\"127.0.0.1\"]",
    );
    let mut daemon = DaemonProc::start(&config, &[("SHEETSYNC_ADMIN_TOKEN", ADMIN_TOKEN)]);
    daemon.wait_log("ready");
    let refresh = format!("{}/admin/refresh?view=Organic", daemon.base);
    let proxy = http_from("127.0.0.1");
    let from = |client: &'static str, token: &'static str| {
        proxy
            .post(&refresh)
            .header("x-forwarded-for", client)
            .bearer_auth(token)
            .send()
    };
    assert_eq!(from("203.0.113.7", GUESS).await.unwrap().status(), 401);
    assert_eq!(from("203.0.113.7", GUESS).await.unwrap().status(), 401);
    assert_eq!(from("203.0.113.7", ADMIN_TOKEN).await.unwrap().status(), 429);
    // The proxy's other clients go on.
    assert_eq!(from("203.0.113.8", ADMIN_TOKEN).await.unwrap().status(), 202);

    // Not from a trusted proxy: the header is ignored, the peer is counted.
    let direct = http_from("127.0.0.3");
    for _ in 0..2 {
        let wrong = direct
            .post(&refresh)
            .header("x-forwarded-for", "198.51.100.1")
            .bearer_auth(GUESS)
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
    }
    let blocked = direct
        .post(&refresh)
        .header("x-forwarded-for", "198.51.100.2")
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 429, "a forged header does not dodge the count");
    daemon.stop();
}

/// A long sync's progress: its phase in `/status` and on the page while it
/// runs, a `sync progress` log line every 10 s, and none once it is done.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_sync_shows_its_phase_in_status_the_page_and_the_log() {
    let fixture = DaemonFixture::new("progress", &[("view-organic", "Organic", 50, "v1")]).await;
    let config = fixture.config("catch_up = false");
    // Held before its swap past the 10 s of the progress log.
    let mut daemon = DaemonProc::start(&config, &[("SHEETSYNC_TEST_PAUSE_BEFORE_SWAP_MS", "11000")]);
    daemon.wait_log("ready");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("test pause before the swap");
    let organic = |status: &Value| {
        status["views"]
            .as_array()
            .and_then(|views| views.iter().find(|view| view["name"] == "Organic").cloned())
            .unwrap_or_default()
    };
    let status_url = format!("{}/status", daemon.base);
    let status = get_json(&status_url, None).await.expect("/status answers");
    let progress = &organic(&status)["progress"];
    assert_eq!(progress["phase"], "swapping", "{status}");
    let page = http().get(&daemon.base).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<span class=\"progress\">swapping"), "{page}");
    let logged = daemon.wait_log("sync progress");
    assert_eq!(logged["phase"], "swapping", "{logged}");
    assert_eq!(logged["view"], "Organic", "{logged}");

    daemon.wait_log("sync finished");
    eventually("the finished sync to leave /status's progress", || async {
        let status = get_json(&status_url, None).await?;
        organic(&status)["progress"].is_null().then_some(())
    })
    .await;
    daemon.stop();
}
