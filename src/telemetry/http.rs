//! The Prometheus endpoint: `GET /metrics` on `[metrics] listen`, served by one small tokio task
//! from [`Telemetry::render_prometheus`] (no metrics framework: the counters already exist).

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Telemetry;

/// Largest request head read.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Serves `/metrics` on `listener` until `cancel`.
pub async fn serve(listener: TcpListener, telemetry: Arc<Telemetry>, cancel: CancellationToken) {
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
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            } else {
                ("404 Not Found", "not found\n".to_string(), "text/plain")
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
