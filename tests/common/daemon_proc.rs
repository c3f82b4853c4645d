//! Helpers for tests that run the built `sheetsync` binary as a daemon
//! against the test MongoDB server (`scripts/test` exports `TEST_MONGO_URL`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};
use serde_json::Value;

/// Generous: the test server may be a slow Python build on a busy machine.
pub const TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

pub fn mongo_url() -> String {
    std::env::var("TEST_MONGO_URL").expect("TEST_MONGO_URL is not set: run the tests through scripts/test")
}

/// A fresh database name per test.
pub fn unique_db(test: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "daemon_{test}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub async fn database(url: &str, name: &str) -> mongodb::Database {
    sheetsync::tls::install_crypto_provider();
    mongodb::Client::with_uri_str(url).await.unwrap().database(name)
}

/// A CSV of `rows` deals, every product cell set to `tag`.
pub fn write_csv(path: &Path, rows: usize, tag: &str) {
    let mut text = String::from("Client,Stage,Product\n");
    for row in 0..rows {
        text.push_str(&format!("Client {row},B Legals,{tag}\n"));
    }
    // Write then rename, so a reader never sees half a file.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

/// Inserts views `(id, name, csv path)` into the `views` collection.
pub async fn insert_views(db: &mongodb::Database, views: &[(&str, &str, &Path)]) {
    let documents: Vec<Document> = views
        .iter()
        .map(|(id, name, csv)| {
            doc! { "id": *id, "name": *name, "sheet_url": format!("file://{}", csv.display()), "is_master": false }
        })
        .collect();
    db.collection::<Document>("views").insert_many(documents).await.unwrap();
}

/// Writes a config file: the test database, a port picked by the OS, a
/// schedule that will not fire during a test, and `daemon_extra` lines.
pub fn write_config(dir: &Path, url: &str, db_name: &str, daemon_extra: &str) -> PathBuf {
    let path = dir.join("sheetsync.toml");
    let text = format!(
        "[mongo]\nurl = {url:?}\ndb_name = {db_name:?}\n\n[sources]\nfile_roots = [\"/\"]\n\n[daemon]\nlisten = \"127.0.0.1:0\"\n\
         schedule = \"0 0 0 1 1 *\"\nlease_secs = 6\nretry_min_secs = 1\nretry_max_secs = 2\n{daemon_extra}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `sheetsync run`; killed on drop if still alive.
pub struct DaemonProc {
    child: Child,
    pub base: String,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl DaemonProc {
    pub fn start(config: &Path, env: &[(&str, &str)]) -> DaemonProc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sheetsync"));
        command
            .args(["--log-format", "json", "--config"])
            .arg(config)
            .arg("run")
            .env("RUST_LOG", "info")
            .env_remove("SHEETSYNC_ADMIN_TOKEN")
            .env_remove("SHEETSYNC_LISTEN")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("MONGO_URL")
            .env_remove("DB_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push(value);
            }
        });
        let mut daemon = DaemonProc {
            child,
            base: String::new(),
            logs,
        };
        let listening = daemon.wait_log("HTTP server listening");
        daemon.base = format!("http://{}", listening["addr"].as_str().unwrap());
        daemon
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Waits for a log line whose message is `message`.
    pub fn wait_log(&mut self, message: &str) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(found) = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .find(|line| line["message"].as_str() == Some(message))
            {
                return found.clone();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "sheetsync exited ({status}) before logging {message:?}; log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {message:?} log line; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(POLL);
        }
    }

    pub fn count_logs(&self, message: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line["message"].as_str() == Some(message))
            .count()
    }

    /// The messages logged so far, in order.
    pub fn messages(&self) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| line["message"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn log_text(&self) -> String {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|line| line.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped.
        let result = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(result, 0, "kill({}, {signal}) failed", self.pid());
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sheetsync did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM, then asserts a clean exit.
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit();
        assert!(status.success(), "exit status {status}; log:\n{}", self.log_text());
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` until it returns `Some`, up to [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

pub fn http() -> reqwest::Client {
    sheetsync::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A test server of our own (for tests that stop and restart it).
pub struct OwnServer {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub port: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-server")
}

impl OwnServer {
    pub fn start() -> OwnServer {
        OwnServer::start_with(&[])
    }

    /// A server that reports itself as a one-member replica set, with
    /// transactions.
    pub fn start_replica_set() -> OwnServer {
        OwnServer::start_with(&[("SHEETSYNC_TEST_REPLICA_SET", "1")])
    }

    fn start_with(env: &[(&str, &str)]) -> OwnServer {
        let dir = tempfile::tempdir().unwrap();
        let url = run_script_with(&["start", dir.path().to_str().unwrap()], env);
        let port = std::fs::read_to_string(dir.path().join("port"))
            .unwrap()
            .trim()
            .to_owned();
        OwnServer { dir, url, port }
    }

    pub fn stop(&self) {
        run_script(&["stop", self.dir.path().to_str().unwrap()]);
    }

    /// Freezes the server process (SIGSTOP): connections stay open, nothing
    /// answers, as with a server that hangs.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        let pid: i32 = std::fs::read_to_string(self.dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill only sends a signal to the server process this
        // fixture started, by the pid its script recorded.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "signal {signal} to the test server"
        );
    }

    /// Starts it again on the same port, with the same data.
    pub fn restart(&self) {
        let url = run_script(&["start", self.dir.path().to_str().unwrap(), &self.port]);
        assert_eq!(url, self.url);
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_script(args: &[&str]) -> String {
    run_script_with(args, &[])
}

fn run_script_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(script())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/test-server {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A fresh database whose views read generated CSVs in a scratch directory:
/// the setup every daemon test starts from.
pub struct DaemonFixture {
    pub url: String,
    pub name: String,
    pub db: mongodb::Database,
    pub dir: tempfile::TempDir,
}

impl DaemonFixture {
    /// `views`: (view id, view name, rows, product tag). View `Name` reads
    /// `name.csv` (lower case, spaces removed).
    pub async fn new(label: &str, views: &[(&str, &str, usize, &str)]) -> DaemonFixture {
        let url = mongo_url();
        let name = unique_db(label);
        let db = database(&url, &name).await;
        let dir = tempfile::tempdir().unwrap();
        let fixture = DaemonFixture { url, name, db, dir };
        let mut rows = Vec::new();
        for (id, view, count, tag) in views {
            let csv = fixture.csv(view);
            write_csv(&csv, *count, tag);
            rows.push((*id, *view, csv));
        }
        let refs: Vec<(&str, &str, &Path)> = rows.iter().map(|(id, view, csv)| (*id, *view, csv.as_path())).collect();
        insert_views(&fixture.db, &refs).await;
        fixture
    }

    /// The CSV file a view reads.
    pub fn csv(&self, view: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.csv", view.to_lowercase().replace(' ', "")))
    }

    /// A configuration for this database, with `daemon_extra` under `[daemon]`.
    pub fn config(&self, daemon_extra: &str) -> PathBuf {
        write_config(self.dir.path(), &self.url, &self.name, daemon_extra)
    }

    /// A second configuration in its own directory, for a second replica.
    pub fn config_in(&self, dir: &Path, daemon_extra: &str) -> PathBuf {
        write_config(dir, &self.url, &self.name, daemon_extra)
    }
}
