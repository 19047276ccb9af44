//! The Prometheus endpoint: `GET /metrics` on `[metrics] listen`, served by one small tokio task
//! from [`Telemetry::render_prometheus`] (the metrics table, encoded by prometheus-client).

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{metrics, ErrorKind, LogLimiter, Telemetry};
use crate::log_limited;

/// Largest request head read.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Serves `/metrics` on `listener` until `cancel`.
pub async fn serve(listener: TcpListener, telemetry: Arc<Telemetry>, cancel: CancellationToken) {
    // Scrapers that go away before their answer is written: counted, logged now and then.
    let write_failed = Arc::new(std::sync::Mutex::new(LogLimiter::default()));
    loop {
        let (mut stream, _) = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let telemetry = Arc::clone(&telemetry);
        let limiter = Arc::clone(&write_failed);
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST_BYTES {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf);
            let mut parts = head.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, body, kind) = if method == "GET" && (path == "/metrics" || path == "/") {
                (
                    "200 OK",
                    telemetry.render_prometheus(),
                    metrics::CONTENT_TYPE,
                )
            } else {
                ("404 Not Found", "not found\n".to_string(), "text/plain")
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let written = match stream.write_all(response.as_bytes()).await {
                Ok(()) => stream.shutdown().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                telemetry.errors.add(ErrorKind::MetricsResponse);
                let mut limiter = limiter
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                log_limited!(limiter, tracing::Level::DEBUG,
                    "cannot write a metrics response (counted as metrics_response)", error = %e);
            }
        });
    }
}
