//! The HTTP server, bounded. The port may be reachable by anyone on the
//! network, so clients may not hold resources for long: headers must arrive
//! within a timeout (idle keep-alive connections included), every handler
//! answers within another, a response must be written out within a third
//! once the client stops taking it, and the number of open connections is
//! capped. At the cap, new connections are closed at once (the caller
//! retries) rather than queued behind the ones holding the slots; those are
//! freed by the timeouts.
//!
//! Each request carries its connection's peer address (`ConnectInfo`), for
//! the sign-in throttle.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower_service::Service as _;

/// How much a client may take from the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's headers must all arrive within this (slow-header clients).
    pub header_read_timeout: Duration,
    /// A request must be answered within this, or gets a 503.
    pub request_timeout: Duration,
    /// Once a write finds the client not reading, the response must be
    /// out within this, or the connection is dropped.
    pub write_timeout: Duration,
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
            write_timeout: Duration::from_secs(settings.http_write_timeout_secs),
            max_connections: settings.http_max_connections,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then
/// lets the requests in flight finish (they are bounded by the request
/// timeout).
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let mut app = app
        .layer(middleware::from_fn_with_state(limits.request_timeout, answer_within))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .into_make_service_with_connect_info::<SocketAddr>();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
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
        // Infallible: it only wraps the router with the peer's address.
        let Ok(service) = app.call(peer).await;
        let stream = WriteDeadline::new(stream, limits.write_timeout);
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
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

/// A connection whose responses must get out within a deadline once the
/// client stops reading: the clock starts at the first write the socket
/// cannot take, and stops only when everything written has been flushed.
/// A client that stalls, or drips, is dropped when it runs out; then the
/// connection, and its slot, are freed.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            limit,
            deadline: None,
        }
    }

    /// A write that could not go on: pending until the deadline, then an error.
    fn stalled<T>(&mut self, context: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(context) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took no response for {} s", limit.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(context, buf) {
            Poll::Pending => self.stalled(context),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(context, bufs) {
            Poll::Pending => self.stalled(context),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(context) {
            Poll::Ready(Ok(())) => {
                self.deadline = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => self.stalled(context),
            failed => failed,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BIG: usize = 32 << 20;

    async fn get_request(address: SocketAddr, path: &str, receive_buffer: Option<u32>) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(bytes) = receive_buffer {
            socket.set_recv_buffer_size(bytes).unwrap();
        }
        let mut stream = socket.connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stream
    }

    /// Everything the server sends until it closes (or resets) the connection.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> usize {
        let mut total = 0;
        let mut buffer = vec![0; 1 << 16];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return total,
                Ok(read) => total += read,
            }
        }
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_while_others_are_served() {
        let app = Router::new()
            .route("/big", get(|| async { vec![b'x'; BIG] }))
            .route("/small", get(|| async { "small" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = Limits {
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(1),
            max_connections: 2,
            max_body_bytes: 1024,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));

        let mut stalled = get_request(address, "/big", Some(4096)).await;
        // Served meanwhile: the stalled client holds one slot, not the server.
        let mut other = get_request(address, "/small", None).await;
        let mut answer = String::new();
        other.read_to_string(&mut answer).await.unwrap();
        assert!(answer.ends_with("small"), "{answer}");

        // Well past the write deadline, the stalled client finds the
        // connection closed before the body's end.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let received = read_to_close(&mut stalled).await;
        assert!(
            received < BIG,
            "the whole body arrived ({received} bytes): the write was not cut"
        );

        // Its slot is free again: two clients at once are both served.
        let mut first = get_request(address, "/small", None).await;
        let mut second = get_request(address, "/small", None).await;
        for client in [&mut first, &mut second] {
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.unwrap();
            assert!(answer.ends_with("small"), "{answer}");
        }
        let _ = stop.send(());
        server.await.unwrap();
    }
}
