//! A test server of the test's own, for tests that stop, freeze or restart
//! it (the shared one must stay up for the others).

use std::path::{Path, PathBuf};
use std::process::Command;

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
