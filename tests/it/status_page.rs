//! The status page (`GET /`) of a running daemon: what it shows with and
//! without a session, signing in, and its refresh forms.

use crate::harness::daemon_fixture::*;
use crate::harness::process::*;
use crate::harness::*;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};

const TOKEN: &str = crate::harness::ADMIN_TOKEN;

/// An `application/x-www-form-urlencoded` body, as a browser sends a form.
fn form(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    let pairs: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect();
    pairs.join("&")
}

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    sheetsync::tls::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Three views after a catch-up: Organic synced, Market failed on a file
/// that is no export, Signal synced with a rejected row.
async fn daemon_with_three_views() -> (DaemonFixture, DaemonProc) {
    let fixture = DaemonFixture::new("page", &[("view-organic", "Organic", 4, "v1")]).await;
    let secret = fixture.dir.path().join("secret.csv");
    std::fs::write(&secret, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let signal = fixture.dir.path().join("signal.csv");
    // One row in seven rejected: under the 20 % guard, so the view succeeds.
    let csv = "Client,Stage,Product\nAcme,B Legals,p\nGlobex,,p\nInitech,Lost,p\nHooli,Lost,p\nUmbrella,Lost,p\n\
               Stark,Lost,p\nWayne,Lost,p\n";
    std::fs::write(&signal, csv).unwrap();
    insert_views(
        &fixture.db,
        &[
            ("view-market", "Market", secret.as_path()),
            ("view-signal", "Signal", signal.as_path()),
        ],
    )
    .await;
    let config = fixture.config("catch_up = true");
    let mut daemon = DaemonProc::start(&config, &[("SHEETSYNC_ADMIN_TOKEN", TOKEN)]);
    daemon.wait_log("catch-up done");
    (fixture, daemon)
}

/// The page, once its snapshot shows every view's last run.
async fn page(client: &reqwest::Client, base: &str, cookie: Option<&str>) -> String {
    eventually("the page to show the three runs", || async {
        let mut request = client.get(format!("{base}/"));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let html = response.text().await.unwrap();
        (html.matches("class=\"last-run\"").count() == 3).then_some(html)
    })
    .await
}

async fn sign_in(client: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    client
        .post(format!("{base}/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("token", token)]))
        .send()
        .await
        .unwrap()
}

/// `sheetsync_session=…` from a sign-in's `Set-Cookie`.
fn session_cookie(response: &reqwest::Response) -> String {
    let set = response.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_content_only_to_a_signed_in_session() {
    let (fixture, daemon) = daemon_with_three_views().await;
    let client = browser();
    let open = page(&client, &daemon.base, None).await;
    for shown in [
        "Organic",
        "Market",
        "Signal",
        "failed",
        "success with warnings",
        "rejected 1",
        "id=\"login\"",
    ] {
        assert!(open.contains(shown), "{shown} missing from the open page");
    }
    for hidden in ["root:x", "secret.csv", "signal.csv", "no stage", "Refresh now", TOKEN] {
        assert!(!open.contains(hidden), "{hidden} shown without a session");
    }

    let wrong = sign_in(&client, &daemon.base, "wrong").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());

    let right = sign_in(&client, &daemon.base, TOKEN).await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let set = right.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} missing from {set}");
    }
    assert!(!set.contains(TOKEN) && !right.headers()[LOCATION].to_str().unwrap().contains(TOKEN));
    let cookie = session_cookie(&right);
    let signed_in = page(&client, &daemon.base, Some(&cookie)).await;
    for shown in ["secret.csv", "signal.csv", "Refresh now", "<td>3</td>", "no stage"] {
        assert!(signed_in.contains(shown), "{shown} missing when signed in");
    }
    assert!(!signed_in.contains(TOKEN), "the token is never in a page");
    daemon.stop();
    drop(fixture);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_forms_need_the_session_and_this_origin() {
    let (fixture, daemon) = daemon_with_three_views().await;
    let client = browser();
    let base = daemon.base.clone();
    let cookie = session_cookie(&sign_in(&client, &base, TOKEN).await);
    let html = page(&client, &base, Some(&cookie)).await;
    let csrf = csrf_of(&html);
    let refresh = |cookie: Option<&str>, origin: Option<&str>, csrf: &str| {
        let mut request = client
            .post(format!("{base}/refresh"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(&[("csrf", csrf), ("sync", "Organic")]));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie.to_owned());
        }
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin.to_owned());
        }
        request.send()
    };
    let admin_runs = || async {
        let runs = fixture.db.collection::<mongodb::bson::Document>("sync_runs");
        runs.count_documents(mongodb::bson::doc! { "trigger": "admin" })
            .await
            .unwrap()
    };
    assert_eq!(
        refresh(None, None, &csrf).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let other_site = refresh(Some(&cookie), Some("https://evil.example"), &csrf)
        .await
        .unwrap();
    assert_eq!(other_site.status(), StatusCode::FORBIDDEN);
    let forged = refresh(Some(&cookie), None, "forged").await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(admin_runs().await, 0, "a refused form starts nothing");

    let accepted = refresh(Some(&cookie), Some(&base), &csrf).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    assert_eq!(accepted.headers()[LOCATION], "/?note=refresh-started");
    eventually("the refresh to be recorded", || async {
        (admin_runs().await == 1).then_some(())
    })
    .await;
    let after = page(&client, &base, Some(&cookie)).await;
    assert!(after.contains("(admin)"), "the page shows the admin run");
    daemon.stop();
    drop(fixture);
}
