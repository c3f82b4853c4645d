//! After a crash: a lease left by a process of this machine that died is
//! taken over at once, with a notice; a live holder's, or another
//! machine's, is respected until it expires. The dead run's staging
//! collections go at the next run of its sync, and no other sync's.

use std::process::Command;
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime as BsonDateTime, Document, doc};
use serde_json::Value;
use sheetsync::apply::swap::sync_tag;
use sheetsync::store::lease::{Leases, SYNC_LOCKS_COLLECTION, process_fields};

use crate::harness::process::Sheetsync;
use crate::harness::{server_url, test_db, write_source};

const HOUR: Duration = Duration::from_secs(3600);

/// The PID of a process that ran here and has ended.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("run true");
    let pid = child.id();
    child.wait().expect("wait for true");
    pid
}

/// A lease of `view_id` held for an hour by `owner`, running as `process`.
async fn plant_lease(db: &mongodb::Database, view_id: &str, owner: &str, process: Document) {
    let now = BsonDateTime::now();
    let mut lease = doc! {
        "_id": view_id,
        "owner": owner,
        "acquired_at": now,
        "expires_at": BsonDateTime::from_millis(now.timestamp_millis() + 3_600_000),
    };
    lease.extend(process);
    db.collection::<Document>(SYNC_LOCKS_COLLECTION)
        .insert_one(lease)
        .await
        .unwrap();
}

async fn owner_of(db: &mongodb::Database, view_id: &str) -> String {
    let lease = db
        .collection::<Document>(SYNC_LOCKS_COLLECTION)
        .find_one(doc! { "_id": view_id })
        .await
        .unwrap()
        .expect("a lease");
    lease.get_str("owner").unwrap().to_owned()
}

#[tokio::test]
async fn a_lease_left_by_a_dead_local_process_is_taken_over_at_once() {
    let db = test_db("lease_dead").await;
    plant_lease(&db.db, "view-a", "cli@here:1:dead", process_fields(dead_pid())).await;
    let leases = Leases::new(db.db.clone(), "replica-1".to_owned(), HOUR);
    let started = Instant::now();
    assert!(
        leases.try_acquire("view-a").await.unwrap(),
        "the dead holder's lease is taken"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "without waiting for its expiry"
    );
    assert_eq!(owner_of(&db.db, "view-a").await, "replica-1");
    let notice = leases.take_over_notice("view-a").expect("a notice");
    assert!(
        notice.contains("cli@here:1:dead") && notice.contains("no longer runs"),
        "{notice}"
    );
    assert_eq!(leases.take_over_notice("view-a"), None, "told once");
    db.drop().await;
}

#[tokio::test]
async fn a_live_holder_and_another_machine_keep_their_leases() {
    let db = test_db("lease_live").await;
    let mut sleeper = Command::new("sleep").arg("60").spawn().expect("run sleep");
    plant_lease(&db.db, "view-live", "daemon@here:live", process_fields(sleeper.id())).await;
    let mut elsewhere = process_fields(dead_pid());
    elsewhere.insert("host", "another-machine");
    plant_lease(&db.db, "view-remote", "daemon@another-machine:1", elsewhere).await;
    let mut other_boot = process_fields(dead_pid());
    other_boot.insert("boot_id", "00000000-0000-0000-0000-000000000000");
    plant_lease(&db.db, "view-rebooted", "daemon@here:before-reboot", other_boot).await;
    // A holder recorded without where it runs (an older sheetsync).
    plant_lease(&db.db, "view-old", "daemon@here:old", doc! {}).await;

    let leases = Leases::new(db.db.clone(), "replica-1".to_owned(), HOUR);
    for view in ["view-live", "view-remote", "view-rebooted", "view-old"] {
        assert!(
            !leases.try_acquire(view).await.unwrap(),
            "{view}: held until it expires"
        );
        assert_eq!(leases.take_over_notice(view), None);
    }
    assert_eq!(owner_of(&db.db, "view-live").await, "daemon@here:live");

    // The same PID, started at another time: the holder died and its PID
    // was given to another process.
    let mut reused = process_fields(sleeper.id());
    let started = reused.get_i64("process_started").expect("a start time");
    reused.insert("process_started", started - 1);
    plant_lease(&db.db, "view-reused", "daemon@here:reused", reused).await;
    assert!(
        leases.try_acquire("view-reused").await.unwrap(),
        "a reused PID is not the holder"
    );

    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    db.drop().await;
}

/// `sheetsync sync` after a run of the same view was killed: it takes the
/// dead run's lease at once, says so, and drops the staging collection the
/// dead run left, but not another view's.
#[tokio::test]
async fn the_next_run_after_a_kill_takes_the_lease_and_drops_the_dead_runs_staging() {
    let db = test_db("after_kill").await;
    let dir = tempfile::tempdir().unwrap();
    let url = write_source(dir.path(), "v.csv", b"Client,Stage\nAcme,Lost\nGlobex,A Closed\n");
    db.add_view("view-organic", "Organic", &url).await;
    plant_lease(
        &db.db,
        "view-organic",
        "cli@here:4242:killed",
        process_fields(dead_pid()),
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let dead_staging = format!(
        "_sheetsync_staging.sales_records.{now}.{}.deadrun",
        sync_tag("view-organic")
    );
    let other_view = format!(
        "_sheetsync_staging.sales_records_signal.{now}.{}.liverun",
        sync_tag("view-signal")
    );
    for name in [&dead_staging, &other_view] {
        db.db
            .collection::<Document>(name)
            .insert_one(doc! { "x": 1 })
            .await
            .unwrap();
    }

    let started = Instant::now();
    let output = Sheetsync::new()
        .database(&server_url(), &db.name)
        .args(["sync", "--json", "--wait", "0"])
        .output();
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let view = &report["views"][0];
    assert_eq!(view["outcome"], "success", "{view}");
    let notices = view["notices"].to_string();
    assert!(
        notices.contains("took over the lease") && notices.contains("cli@here:4242:killed"),
        "{notices}"
    );
    assert!(notices.contains(&dead_staging), "{notices}");
    assert!(
        elapsed < Duration::from_secs(30),
        "no wait for the dead lease: {elapsed:?}"
    );

    let names = db.db.list_collection_names().await.unwrap();
    assert!(!names.contains(&dead_staging), "{names:?}");
    assert!(
        names.contains(&other_view),
        "another view's staging is not ours: {names:?}"
    );
    let leases = db
        .db
        .collection::<Document>(SYNC_LOCKS_COLLECTION)
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(leases, 0, "the lease is released after the run");
    db.drop().await;
}
