//! Google credentials without a key file, through the binary and the fake
//! Google: each kind Application Default Credentials know syncs the views
//! and `check` names it, and each way they fail says what to do, leaves
//! the stored data as it was and shows no secret.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::google_sheets::{insert_views, metadata, two_spreadsheets};
use crate::harness::fake_credentials::{AUDIENCE, CLOUD_PLATFORM, READER, RUNNER, SUBJECT_TOKEN, SubjectSource};
use crate::harness::fake_google::{DRIVE_METADATA_SCOPE, FakeGoogle, SCOPE};
use crate::harness::process::Sheetsync;
use crate::harness::{TestDb, server_url, test_db};

const LOGIN_IDENTITY: &str = "the Google account signed in with `gcloud auth application-default login`";
const LOGIN_KIND: &str = "gcloud user login (authorized_user)";

/// How one run finds its credentials.
enum Found {
    /// `[google] key_file`.
    KeyFile(PathBuf),
    /// Environment variables only (`CLOUDSDK_CONFIG`, `GCE_METADATA_HOST`...).
    Environment(Vec<(&'static str, String)>),
}

struct Run {
    stdout: String,
    stderr: String,
    success: bool,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// No secret of any credential file, and no access token, anywhere.
    fn assert_no_secret(&self) {
        let all = self.all();
        assert!(!all.contains("SECRET"), "a secret was printed:\n{all}");
        assert!(!all.contains("fake-access-token"), "a token was printed:\n{all}");
    }
}

async fn run(fake: &FakeGoogle, db: &TestDb, found: &Found, command: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sheetsync.toml");
    let key_line = match found {
        Found::KeyFile(path) => format!("key_file = {:?}\n", path.display().to_string()),
        Found::Environment(_) => String::new(),
    };
    std::fs::write(
        &config,
        format!(
            "[google]\n{key_line}api_url = {:?}\nretry_base_delay_ms = 10\nmax_attempts = 2\n",
            fake.api_url
        ),
    )
    .unwrap();
    let mut sheetsync = Sheetsync::new()
        .database(&server_url(), &db.name)
        .config(&config)
        .args([command]);
    if let Found::Environment(variables) = found {
        for (name, value) in variables {
            sheetsync = sheetsync.env(name, value);
        }
    }
    let output: Output = sheetsync.output_async().await;
    Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        success: output.status.success(),
    }
}

async fn google_db(label: &str, fake: &FakeGoogle) -> TestDb {
    two_spreadsheets(fake);
    let db = test_db(label).await;
    insert_views(&db.db).await;
    db
}

/// `check` then `sync` succeed, name the kind, where it was found and who
/// it acts as, and the views hold the sheets' rows.
async fn syncs_with(fake: &FakeGoogle, label: &str, found: Found, kind: &str, origin: &str, identity: &str) {
    let db = google_db(label, fake).await;
    let check = run(fake, &db, &found, "check").await;
    assert!(check.success, "{}", check.all());
    let expected = format!("{kind} from {origin} acts as {identity}; spreadsheet reachable, tab \"It's Q1\" found");
    assert!(
        check.stdout.contains(&expected),
        "wanted {expected:?} in:\n{}",
        check.all()
    );
    check.assert_no_secret();

    let sync = run(fake, &db, &found, "sync").await;
    assert!(sync.success, "{}", sync.all());
    assert!(sync.stdout.contains("2 view(s) synced, 0 failed"), "{}", sync.all());
    sync.assert_no_secret();
    let clients: Vec<String> = db
        .records("sales_records_signal")
        .await
        .iter()
        .map(|record| record.get_str("client").unwrap().to_owned())
        .collect();
    assert_eq!(clients, ["Q1 Acme", "Q1 Globex", "Q1 Initech"], "{label}");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcloud_login_syncs_and_bills_its_quota_project() {
    let fake = FakeGoogle::start().await;
    let file = fake.authorized_user_file(Some("sheetsync-billing"));
    let origin = format!("[google] key_file ({})", file.display());
    syncs_with(
        &fake,
        "login",
        Found::KeyFile(file),
        LOGIN_KIND,
        &origin,
        LOGIN_IDENTITY,
    )
    .await;
    let seen = fake.seen();
    assert!(
        seen.grants.iter().all(|grant| *grant == "refresh_token"),
        "{:?}",
        seen.grants
    );
    assert!(!seen.quota_projects.is_empty());
    assert!(
        seen.quota_projects.iter().all(|project| project == "sheetsync-billing"),
        "every Sheets call names the quota project: {:?}",
        seen.quota_projects
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gclouds_well_known_file_is_found_without_any_setting() {
    let fake = FakeGoogle::start().await;
    let config_dir = fake.gcloud_config_dir(Some("sheetsync-billing"));
    let origin = format!(
        "gcloud's application default credentials ({})",
        config_dir.join("application_default_credentials.json").display()
    );
    let found = Found::Environment(vec![("CLOUDSDK_CONFIG", config_dir.display().to_string())]);
    syncs_with(&fake, "gcloud_file", found, LOGIN_KIND, &origin, LOGIN_IDENTITY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_federation_with_impersonation_acts_as_the_service_account() {
    let fake = FakeGoogle::start().await;
    let file = fake.external_account_file(SubjectSource::Url, true);
    let origin = format!("GOOGLE_APPLICATION_CREDENTIALS ({})", file.display());
    let found = Found::Environment(vec![("GOOGLE_APPLICATION_CREDENTIALS", file.display().to_string())]);
    syncs_with(
        &fake,
        "federation_url",
        found,
        "workload identity federation (external_account)",
        &origin,
        &format!("the service account {READER}"),
    )
    .await;
    // One exchange then one impersonation per process (check, then sync).
    assert_eq!(
        fake.seen().grants,
        [
            "token-exchange",
            "generateAccessToken",
            "token-exchange",
            "generateAccessToken"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_federation_from_a_token_file_acts_as_the_pool() {
    let fake = FakeGoogle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let subject = dir.path().join("oidc-token.json");
    std::fs::write(&subject, format!(r#"{{"id_token": "{SUBJECT_TOKEN}"}}"#)).unwrap();
    let file = fake.external_account_file(SubjectSource::File(subject), false);
    let origin = format!("[google] key_file ({})", file.display());
    syncs_with(
        &fake,
        "federation_file",
        Found::KeyFile(file),
        "workload identity federation (external_account)",
        &origin,
        &format!("the federated identity of {AUDIENCE}"),
    )
    .await;
    assert_eq!(fake.seen().grants, ["token-exchange", "token-exchange"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impersonating_login_acts_as_the_impersonated_account() {
    let fake = FakeGoogle::start().await;
    let file = fake.impersonated_file();
    let origin = format!("[google] key_file ({})", file.display());
    syncs_with(
        &fake,
        "impersonated",
        Found::KeyFile(file),
        "service-account impersonation (impersonated_service_account)",
        &origin,
        &format!("the service account {READER}"),
    )
    .await;
    let seen = fake.seen();
    assert_eq!(
        seen.grants,
        [
            "refresh_token",
            "generateAccessToken",
            "refresh_token",
            "generateAccessToken"
        ]
    );
    assert!(seen.quota_projects.iter().all(|project| project == "sheetsync-billing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_google_cloud_the_metadata_server_gives_the_attached_account() {
    let fake = FakeGoogle::start().await;
    let found = Found::Environment(vec![("GCE_METADATA_HOST", fake.metadata_host())]);
    let origin = format!("the metadata server at {}", fake.metadata_host());
    syncs_with(
        &fake,
        "metadata",
        found,
        "the attached service account (metadata server)",
        &origin,
        &format!("the service account {RUNNER}"),
    )
    .await;
    assert_eq!(fake.seen().grants, ["metadata", "metadata"]);
}

/// A sync that fails for `reason`: nothing stored changes, the message has
/// every `wanted` piece, and no secret shows.
async fn fails_clearly(fake: &FakeGoogle, db: &TestDb, found: &Found, wanted: &[&str]) {
    let before = db.records("sales_records_signal").await;
    let before_meta = metadata(&db.db, "view-signal-1").await;
    let sync = run(fake, db, found, "sync").await;
    assert!(!sync.success, "{}", sync.all());
    for piece in wanted {
        assert!(sync.all().contains(piece), "wanted {piece:?} in:\n{}", sync.all());
    }
    sync.assert_no_secret();
    assert_eq!(db.records("sales_records_signal").await, before);
    assert_eq!(metadata(&db.db, "view-signal-1").await, before_meta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_narrow_or_unbilled_login_fails_with_the_gcloud_command_that_fixes_it() {
    let fake = FakeGoogle::start().await;
    let db = google_db("login_failures", &fake).await;
    let billed = Found::KeyFile(fake.authorized_user_file(Some("sheetsync-billing")));
    let first = run(&fake, &db, &billed, "sync").await;
    assert!(first.success, "{}", first.all());
    assert_eq!(db.records("sales_records_signal").await.len(), 3);

    // The default login grants cloud-platform only.
    fake.login_scopes(&[CLOUD_PLATFORM]);
    let sign_in_again =
        format!("gcloud auth application-default login --scopes={SCOPE},{DRIVE_METADATA_SCOPE},{CLOUD_PLATFORM}");
    fails_clearly(
        &fake,
        &db,
        &billed,
        &["ACCESS_TOKEN_SCOPE_INSUFFICIENT", LOGIN_IDENTITY, &sign_in_again],
    )
    .await;

    // Without a quota project Google bills gcloud's own project.
    fake.login_scopes(&[SCOPE, CLOUD_PLATFORM]);
    let unbilled = Found::KeyFile(fake.authorized_user_file(None));
    fails_clearly(
        &fake,
        &db,
        &unbilled,
        &["gcloud auth application-default set-quota-project PROJECT_ID"],
    )
    .await;

    fake.revoke_login();
    fails_clearly(
        &fake,
        &db,
        &billed,
        &["Token has been expired or revoked", &sign_in_again, "/token"],
    )
    .await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_subject_token_file_is_named_by_its_path() {
    let fake = FakeGoogle::start().await;
    let db = google_db("subject_missing", &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let subject = dir.path().join("oidc-token.json");
    std::fs::write(&subject, format!(r#"{{"id_token": "{SUBJECT_TOKEN}"}}"#)).unwrap();
    let found = Found::KeyFile(fake.external_account_file(SubjectSource::File(subject.clone()), true));
    assert!(run(&fake, &db, &found, "sync").await.success);

    std::fs::remove_file(&subject).unwrap();
    let path = subject.display().to_string();
    fails_clearly(
        &fake,
        &db,
        &found,
        &[&format!("cannot read the subject token file {path}"), READER],
    )
    .await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_credentials_anywhere_one_message_lists_every_way_within_seconds() {
    let fake = FakeGoogle::start().await;
    let db = google_db("no_credentials", &fake).await;
    // A "metadata server" that takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap().to_string();
    let found = Found::Environment(vec![("GCE_METADATA_HOST", host.clone())]);
    let started = Instant::now();
    fails_clearly(
        &fake,
        &db,
        &found,
        &[
            "no Google credentials found",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "[google] key_file",
            "google-service-account.json",
            "application_default_credentials.json",
            &format!("the metadata server at {host} did not answer"),
        ],
    )
    .await;
    // The probe is bounded (2 s); the rest of the run is not Google's.
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(fake.seen().grants.is_empty());
    drop(silent);
    db.drop().await;
}

/// The fake's own key, through each origin, is still found first: the
/// environment wins over the file's setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_wins_over_the_configured_file() {
    let fake = FakeGoogle::start().await;
    let db = google_db("precedence", &fake).await;
    let login = fake.authorized_user_file(Some("sheetsync-billing"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sheetsync.toml");
    std::fs::write(
        &config,
        format!(
            "[google]\nkey_file = {:?}\napi_url = {:?}\n",
            Path::new("/nonexistent/key.json").display().to_string(),
            fake.api_url
        ),
    )
    .unwrap();
    let output = Sheetsync::new()
        .database(&server_url(), &db.name)
        .config(&config)
        .args(["check"])
        .env("GOOGLE_APPLICATION_CREDENTIALS", &login.display().to_string())
        .output_async()
        .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("from GOOGLE_APPLICATION_CREDENTIALS ({})", login.display())),
        "{stdout}"
    );
    db.drop().await;
}
