//! The metrics listener's HTTP server: hyper's HTTP/1 connection handling under our own accept
//! loop, so that every limit is explicit — open connections (a 503 beyond), the request head's
//! size (431) and read time (the connection is closed), the request body (413), the handler's
//! time (408) and a connection's whole life. A client that breaks a limit is cut and counted
//! (`edgebind_errors_total{kind="http_refused"}`); other clients are served meanwhile.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{ErrorKind, Telemetry};

/// The limits of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more get a 503 and are closed.
    pub max_connections: usize,
    /// Largest request head (request line and headers); larger gets a 431. hyper's smallest
    /// read buffer is 8 KiB, so less is raised to that.
    pub max_head_bytes: usize,
    /// Largest request body; larger gets a 413 (no route takes a body).
    pub max_body_bytes: usize,
    /// Time to send the whole request head; a slower client is disconnected.
    pub head_timeout: Duration,
    /// Time a handler may take; longer answers 408.
    pub handler_timeout: Duration,
    /// Whole life of a connection (one request: keep-alive is off), slow readers included.
    pub connection_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // A few browsers, a scraper or two: 32 is plenty on a sensor box, and small.
            max_connections: 32,
            max_head_bytes: 8 * 1024,
            max_body_bytes: 1024,
            head_timeout: Duration::from_secs(5),
            handler_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(30),
        }
    }
}

/// hyper refuses a read buffer below this.
const HYPER_MIN_BUF_BYTES: usize = 8 * 1024;

/// The answer to a connection over [`Limits::max_connections`]; it ends at the close.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections to this listener\n";

/// Serves `router` on `listener` within `limits` until `cancel` (requests in progress are
/// finished, within their connection's timeout).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    telemetry: Arc<Telemetry>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: the next accept may work; no busy loop meanwhile.
                    tracing::debug!(error = %e, "metrics listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            telemetry.errors.add(ErrorKind::HttpRefused);
            refuse_busy(stream).await;
            continue;
        };
        let (router, telemetry, cancel) = (router.clone(), Arc::clone(&telemetry), cancel.clone());
        tokio::spawn(async move {
            connection(stream, router, limits, &telemetry, &cancel).await;
            drop(slot);
        });
    }
}

/// Writes [`BUSY`] if the socket takes it at once, then closes: never waits on that client.
async fn refuse_busy(stream: TcpStream) {
    let _ = stream.try_write(BUSY);
    // A FIN after the answer: a client that reads first gets the 503, then the end.
    let mut stream = stream;
    let _ = tokio::time::timeout(
        Duration::from_millis(10),
        tokio::io::AsyncWriteExt::shutdown(&mut stream),
    )
    .await;
}

/// Serves one connection within `limits`; counts how it ended badly.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    telemetry: &Telemetry,
    cancel: &CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(limits.max_head_bytes.max(HYPER_MIN_BUF_BYTES))
        // One request per connection: clients that read to the end (scrapers of the old
        // endpoint) get it, and no idle connection holds a slot.
        .keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(limits.connection_timeout);
    tokio::pin!(deadline);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout_at(deadline.deadline(), conn.as_mut()).await {
                Ok(ended) => ended,
                Err(_) => return refused(telemetry, "outlived the listener's stop"),
            }
        }
        () = &mut deadline => return refused(telemetry, "took longer than its connection timeout"),
    };
    if let Err(e) = ended {
        if e.is_timeout() || e.is_parse_too_large() || e.is_parse() {
            refused(telemetry, &e.to_string());
        } else {
            // The client went away before its answer was written.
            telemetry.errors.add(ErrorKind::MetricsResponse);
            tracing::debug!(error = %e, "metrics listener: connection ended early");
        }
    }
}

fn refused(telemetry: &Telemetry, why: &str) {
    telemetry.errors.add(ErrorKind::HttpRefused);
    // DEBUG: a scanner on the network must not fill the journal.
    tracing::debug!(why, "metrics listener cut a connection");
}
