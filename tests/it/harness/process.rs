//! The `sheetsync` binary as the tests run it: one builder for the CLI's
//! commands and the daemon, so that every run starts from the same clean
//! environment.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use super::{POLL, TIMEOUT};

/// One run of the binary. Nothing of the caller's environment that
/// configures sheetsync reaches it (`MONGO_URL`, `DB_NAME`,
/// `SHEETSYNC_CONFIG`, the listen address, the admin token, Google's key
/// and API URL, systemd's socket and credentials, a test pause); the
/// builder sets what the test means.
pub struct Sheetsync {
    config: Option<PathBuf>,
    json_logs: bool,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    one_core: bool,
}

impl Sheetsync {
    pub fn new() -> Sheetsync {
        Sheetsync {
            config: None,
            json_logs: false,
            one_core: false,
            args: Vec::new(),
            env: vec![("RUST_LOG".to_owned(), "info".to_owned())],
        }
    }

    /// The database through the environment, as operators set it; sources
    /// may be read anywhere (the tests' exports live in scratch directories
    /// and the fixtures).
    pub fn database(self, url: &str, name: &str) -> Sheetsync {
        self.env("MONGO_URL", url)
            .env("DB_NAME", name)
            .env("SHEETSYNC_FILE_ROOTS", "/")
    }

    /// `--config FILE`.
    pub fn config(mut self, path: &Path) -> Sheetsync {
        self.config = Some(path.to_owned());
        self
    }

    pub fn args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Sheetsync {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Sheetsync {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Run under `taskset` on the first core only, as in a one-CPU
    /// container (see [`Sheetsync::taskset_missing`]).
    pub fn on_one_core(mut self, one_core: bool) -> Sheetsync {
        self.one_core = one_core;
        self
    }

    /// Why a run [`Sheetsync::on_one_core`] cannot be made here, if it
    /// cannot.
    pub fn taskset_missing() -> Option<String> {
        match Command::new("taskset").args(["--cpu-list", "0", "true"]).output() {
            Ok(output) if output.status.success() => None,
            Ok(output) => Some(format!("taskset failed: {}", String::from_utf8_lossy(&output.stderr))),
            Err(error) => Some(format!("no taskset (util-linux): {error}")),
        }
    }

    /// The command, to run or spawn as the caller needs.
    pub fn command(self) -> Command {
        let binary = env!("CARGO_BIN_EXE_sheetsync");
        let mut command = match self.one_core {
            true => {
                let mut taskset = Command::new("taskset");
                taskset.args(["--cpu-list", "0", binary]);
                taskset
            }
            false => Command::new(binary),
        };
        for variable in [
            "MONGO_URL",
            "DB_NAME",
            "SHEETSYNC_CONFIG",
            "SHEETSYNC_LISTEN",
            "SHEETSYNC_ADMIN_TOKEN",
            "SHEETSYNC_TEST_PAUSE_BEFORE_SWAP_MS",
            "NOTIFY_SOCKET",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "SHEETSYNC_SHEETS_API_URL",
            "CREDENTIALS_DIRECTORY",
            "GOOGLE_CLOUD_QUOTA_PROJECT",
        ] {
            command.env_remove(variable);
        }
        // Never this machine's gcloud login or a real metadata server: a
        // test that wants either names it.
        command
            .env("CLOUDSDK_CONFIG", "/nonexistent/sheetsync-tests/gcloud")
            .env("GCE_METADATA_HOST", "127.0.0.1:9");
        if self.json_logs {
            command.args(["--log-format", "json"]);
        }
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        command.args(&self.args).envs(self.env);
        command
    }

    /// Runs it to the end.
    pub fn output(self) -> Output {
        self.command().output().expect("run sheetsync")
    }

    /// [`Sheetsync::output`], off the async runtime.
    pub async fn output_async(self) -> Output {
        let command = self.command();
        tokio::task::spawn_blocking(move || {
            let mut command = command;
            command.output().expect("run sheetsync")
        })
        .await
        .unwrap()
    }

    /// `sheetsync run`, its JSON logs collected; returns once it listens.
    pub fn daemon(mut self) -> DaemonProc {
        self.json_logs = true;
        self.args.push("run".into());
        DaemonProc::spawn(self.command())
    }
}

/// A running `sheetsync run`; killed on drop if still alive.
pub struct DaemonProc {
    child: Child,
    pub base: String,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl DaemonProc {
    /// `sheetsync run` with `config`, and `env` on top of the clean
    /// environment (see [`Sheetsync`]); returns once it listens.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> DaemonProc {
        let mut sheetsync = Sheetsync::new().config(config);
        for (name, value) in env {
            sheetsync = sheetsync.env(name, value);
        }
        sheetsync.daemon()
    }

    fn spawn(mut command: Command) -> DaemonProc {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
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
