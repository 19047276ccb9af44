//! The routes of the metrics listener: `GET /metrics` (Prometheus text, unchanged from the
//! hand-written server it replaces), `GET /` (the status page) and `GET /api/status` (its JSON).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::doc::StatusDoc;
use super::SharedBoard;
use crate::telemetry::{metrics, ErrorKind, Telemetry};

/// The page, compiled into the binary.
pub const PAGE_HTML: &str = include_str!("page.html");

/// What the page may load: nothing from elsewhere (no external assets), its own inline style
/// and script, and `/api/status` from the same listener.
const PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
    script-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The daemon's counters (`/metrics`).
    pub telemetry: Arc<Telemetry>,
    /// The status output's view (`/`, `/api/status`).
    pub board: SharedBoard,
}

/// The router, with a request body limit of `max_body_bytes` (413 beyond) and a handler time
/// limit of `handler_timeout` (408 beyond).
pub fn router(state: AppState, max_body_bytes: usize, handler_timeout: Duration) -> Router {
    Router::new()
        .route("/metrics", get(prometheus))
        .route("/", get(page))
        .route("/api/status", get(status))
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            handler_timeout,
        ))
        .with_state(state)
}

async fn prometheus(State(state): State<AppState>) -> Response {
    let body = state.telemetry.render_prometheus();
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE_HTML,
    )
        .into_response()
}

async fn status(State(state): State<AppState>) -> Response {
    let encoded = {
        let board = super::lock(&state.board);
        serde_json::to_vec(&StatusDoc::new(&board, Instant::now()))
    };
    match encoded {
        Ok(body) => {
            let mut response = body.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            // Counted and answered; the page shows the status code and retries.
            state.telemetry.errors.add(ErrorKind::Serialize);
            tracing::debug!(error = %e, "cannot encode /api/status");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the status\n",
            )
                .into_response()
        }
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "not found\n",
    )
        .into_response()
}
