//! The HTTP server, bounded. The port may be reachable by anyone on the
//! network, so clients may not hold resources for long: headers must arrive
//! within a timeout (idle keep-alive connections included), every handler
//! answers within another, and the number of open connections is capped. At
//! the cap, new connections are closed at once (the caller retries) rather
//! than queued behind the ones holding the slots; those are freed by the
//! timeouts. (Writing a response to a client that never reads is not bounded
//! yet: see the hardening issue's notes.)

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How much a client may take from the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's headers must all arrive within this (slow-header clients).
    pub header_read_timeout: Duration,
    /// A request must be answered within this, or gets a 503.
    pub request_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Request bodies at most this many bytes (no endpoint takes one).
    pub max_body_bytes: usize,
}

impl Limits {
    /// The `[daemon]` settings' bounds; bodies are capped at 64 KiB.
    pub fn of(settings: &crate::config::DaemonSettings) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(settings.http_header_timeout_secs),
            request_timeout: Duration::from_secs(settings.http_request_timeout_secs),
            max_connections: settings.http_max_connections,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then
/// lets the requests in flight finish (they are bounded by the request
/// timeout).
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let app = app
        .layer(middleware::from_fn_with_state(limits.request_timeout, answer_within))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, mostly: wait a little rather
                    // than spin.
                    tracing::warn!(%error, "could not accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(
                limit = limits.max_connections,
                "connection limit reached; closing a new connection"
            );
            continue;
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Answers 503 when the handler takes longer than `limit`.
async fn answer_within(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no answer within {} s; try again\n", limit.as_secs()),
        )
            .into_response(),
    }
}
