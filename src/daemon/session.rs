//! Signed-in sessions of the status page: the admin token is typed once into
//! a login form, and the browser then holds an opaque session cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` behind TLS, expiring). The token
//! itself never travels in a URL or a page again.
//!
//! Each session carries its own CSRF token, which every form posts back; a
//! form from another origin has neither the cookie (SameSite) nor the token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;

/// The cookie's name.
pub const COOKIE: &str = "sheetsync_session";

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Sessions kept at most; the oldest is dropped beyond (each sign-in needs
/// the admin token, so this bounds memory, not access).
const MAX_SESSIONS: usize = 256;

#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    created: Instant,
}

/// The live sessions, in memory: a restart signs everyone out.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// 244 random bits from the OS generator (two v4 UUIDs), as hex.
fn secret() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl Sessions {
    /// A new session: its id (for the cookie) and its CSRF token.
    pub fn create(&self) -> (String, Session) {
        let id = secret();
        let session = Session {
            csrf: secret(),
            created: Instant::now(),
        };
        let mut sessions = self.lock();
        sessions.retain(|_, session| session.created.elapsed() < SESSION_TTL);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, session)| session.created)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The request's session, if its cookie names a live one.
    pub fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let sessions = self.lock();
        sessions
            .get(&id)
            .filter(|session| session.created.elapsed() < SESSION_TTL)
            .cloned()
    }

    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.lock().remove(&id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the map cannot leave it torn: every change
        // is a single insert or remove.
        self.by_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `Set-Cookie` value that signs a browser in (`secure` behind TLS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that signs a browser out.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Whether a form post comes from this page: its CSRF token matches the
/// session's, and its `Origin` (when the browser sends one) is this host.
pub fn same_origin(headers: &HeaderMap, session: &Session, csrf: &str) -> bool {
    use subtle::ConstantTimeEq;
    let token_ok = bool::from(session.csrf.as_bytes().ct_eq(csrf.as_bytes()));
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
    let origin_ok = match headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()) {
        None => true,
        Some(origin) => {
            let origin_host = origin.split_once("://").map(|(_, rest)| rest);
            origin_host.is_some() && origin_host == host
        }
    };
    token_ok && origin_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_session_is_found_by_its_cookie_and_checks_its_forms() {
        let sessions = Sessions::default();
        let (id, session) = sessions.create();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={id}")).unwrap(),
        );
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        let found = sessions.of(&headers).unwrap();
        assert!(same_origin(&headers, &found, &session.csrf));
        assert!(!same_origin(&headers, &found, "forged"));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&headers, &found, &session.csrf));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&headers, &found, &session.csrf));
        sessions.end(&headers);
        assert!(sessions.of(&headers).is_none());
        assert!(set_cookie(&id, true).contains("HttpOnly; SameSite=Strict; Max-Age=28800; Secure"));
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        for _ in 0..MAX_SESSIONS + 10 {
            sessions.create();
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
    }
}
