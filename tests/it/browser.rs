//! The status page in a real browser: headless Chromium, driven over the
//! W3C WebDriver protocol (Debian's `chromium-driver`), against the real
//! daemon. `.ci/run` installs both; without them this test says so and
//! passes only when `SHEETSYNC_REQUIRE_BROWSER` is unset.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::daemon_fixture::*;
use crate::harness::process::*;
use crate::harness::*;
use serde_json::{Value, json};

const TOKEN: &str = crate::harness::ADMIN_TOKEN;
/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(variable: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(variable) {
        return Some(PathBuf::from(path));
    }
    candidates.iter().map(PathBuf::from).find(|path| path.is_file())
}

/// A chromedriver of our own, in a process group of its own, so that on
/// drop the group is stopped: the driver and the Chromium it started, even
/// when the test failed before closing its WebDriver session.
struct Driver {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is the driver's PID (`process_group(0)`).
        if let Ok(group) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group
            // and touches no memory.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// `None`, with the reason, when no browser is installed.
    async fn start() -> Result<(Driver, PathBuf), String> {
        let chromium = find_program(
            "SHEETSYNC_CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        )
        .ok_or("no Chromium (Debian package `chromium`)")?;
        let driver = find_program("SHEETSYNC_CHROMEDRIVER", &["/usr/bin/chromedriver"])
            .ok_or("no ChromeDriver (Debian package `chromium-driver`)")?;
        let port = free_port();
        let child = Command::new(&driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", driver.display()))?;
        sheetsync::tls::install_crypto_provider();
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = driver.client.get(format!("{}/status", driver.base)).send().await;
            if let Ok(answer) = ready {
                let status: Value = answer.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    return Ok((driver, chromium));
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(answer["value"]["error"].is_null(), "WebDriver {path}: {answer}");
        answer["value"].clone()
    }
}

/// One browser session.
struct Browser<'a> {
    driver: &'a Driver,
    id: String,
}

impl Browser<'_> {
    async fn open<'a>(driver: &'a Driver, chromium: &Path) -> Browser<'a> {
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1100"],
            },
        }}});
        let session = driver.call(reqwest::Method::POST, "/session", Some(capabilities)).await;
        Browser {
            driver,
            id: session["sessionId"].as_str().unwrap().to_owned(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.id);
        self.driver.call(reqwest::Method::POST, &path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        let path = format!("/session/{}{path}", self.id);
        self.driver.call(reqwest::Method::GET, &path, None).await
    }

    async fn go(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// Waits for the page to show `text` (a form's answer page loads after
    /// the click returns).
    async fn wait_for_text(&self, text: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let body = self.script("return document.body ? document.body.innerText : ''").await;
            if body.as_str().is_some_and(|body| body.contains(text)) {
                return;
            }
            assert!(Instant::now() < deadline, "the page never showed {text:?}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn close(self) {
        let path = format!("/session/{}", self.id);
        self.driver.call(reqwest::Method::DELETE, &path, None).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_signs_in_and_refreshes_a_view_from_the_page() {
    let (driver, chromium) = match Driver::start().await {
        Ok(found) => found,
        Err(reason) if std::env::var_os("SHEETSYNC_REQUIRE_BROWSER").is_none() => {
            skip(
                "browser::a_person_signs_in_and_refreshes_a_view_from_the_page",
                &format!("{reason}; install chromium and chromium-driver (.ci/run does)"),
            );
            return;
        }
        Err(reason) => panic!("SHEETSYNC_REQUIRE_BROWSER is set but {reason}"),
    };
    let fixture = DaemonFixture::new("browser", &[("view-organic", "Organic", 12, "v1")]).await;
    let signal = fixture.dir.path().join("signal.csv");
    let csv = "Client,Stage,Product\nAcme,B Legals,p\nGlobex,,p\nInitech,Lost,p\nHooli,Negotiation,p\nUmbrella,Lost,p\n\
               Stark,A Closed,p\nWayne,Lost,p\nTyrell,F Inbox,p\n";
    std::fs::write(&signal, csv).unwrap();
    insert_views(&fixture.db, &[("view-signal", "Signal", signal.as_path())]).await;
    let config = fixture.config("catch_up = true");
    let mut daemon = DaemonProc::start(&config, &[("SHEETSYNC_ADMIN_TOKEN", TOKEN)]);
    daemon.wait_log("catch-up done");

    let browser = Browser::open(&driver, &chromium).await;
    let base = daemon.base.clone();
    browser.go(&format!("{base}/")).await;
    let field = browser.find("#login input[name=token]").await;
    browser
        .post(&format!("/element/{field}/value"), json!({ "text": TOKEN }))
        .await;
    let button = browser.find("#login button").await;
    browser.post(&format!("/element/{button}/click"), json!({})).await;
    browser.wait_for_text("Signed in.").await;

    let last_run = "return document.querySelector('#sync-organic .last-run time').getAttribute('datetime')";
    let before = browser.script(last_run).await;
    let refresh = browser.find("#sync-organic button.refresh").await;
    browser.post(&format!("/element/{refresh}/click"), json!({})).await;
    browser.wait_for_text("Refresh started").await;
    // The page follows the run: reloaded until Organic is idle again with a
    // newer last run.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        browser.go(&format!("{base}/")).await;
        let state = browser
            .script("return document.querySelector('#sync-organic').dataset.state")
            .await;
        let after = browser.script(last_run).await;
        if state == "idle" && after != before && after.is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refresh never showed as finished ({state}, {after})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let text = browser.script("return document.body.innerText").await;
    let text = text.as_str().unwrap();
    assert!(text.contains("(admin)") && text.contains("no stage"), "{text}");

    let screenshot = browser.get("/screenshot").await;
    let png = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, screenshot.as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    // A blank 1280x1100 page compresses to a few kilobytes.
    assert!(png.len() > 20_000, "the screenshot looks blank ({} bytes)", png.len());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&out, &png).unwrap();
    if let Ok(copy) = std::env::var("SHEETSYNC_SCREENSHOT_TO") {
        std::fs::write(copy, &png).unwrap();
    }
    eprintln!("screenshot: {}", out.display());
    browser.close().await;
    daemon.stop();
}
