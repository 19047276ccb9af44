//! The live status page and the metrics listener (`[metrics] listen`, loopback by default):
//! `GET /metrics` (Prometheus text), `GET /` (a self-contained HTML page that polls) and
//! `GET /api/status` (JSON), served by axum on hyper with explicit limits ([`server::Limits`]).
//!
//! The page is an output like MQTT: it subscribes to the pipeline's events through its own
//! bounded queue ([`QUEUE_CAPACITY`], `drop_newest`: a page must never slow the pipeline; drops
//! are counted in `edgebind_output_events_dropped_total{output="status"}`) and keeps a small
//! bounded view ([`board::StatusBoard`]) that the handlers render.
//!
//! # Layout
//! - [`board`]: the view, updated from events and trigger states (pure).
//! - [`doc`]: the `/api/status` document (pure).
//! - [`routes`]: the axum routes and the page (`page.html`, compiled in).
//! - [`server`]: the accept loop and hyper connections within the limits.

pub mod board;
pub mod doc;
pub mod routes;
pub mod server;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use board::StatusBoard;
pub use routes::{router, AppState, PAGE_HTML};
pub use server::{serve, Limits};

use crate::output::{Event, FullPolicy, OutputQueue, Outputs};
use crate::telemetry::Telemetry;
use crate::Modality;

/// Events waiting for the status view. Applying one takes microseconds; the queue only fills
/// if the runtime is starved, and then the page skips events rather than delay the pipeline.
pub const QUEUE_CAPACITY: usize = 256;

/// The view, shared by the output task (writer) and the handlers (readers). Locked briefly,
/// never across an `.await`.
pub type SharedBoard = Arc<Mutex<StatusBoard>>;

/// Locks the board; a panic elsewhere never makes the page unusable.
pub(crate) fn lock(board: &SharedBoard) -> MutexGuard<'_, StatusBoard> {
    board
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Subscribes the status output to `outputs` and starts its task, which ends when the queue
/// closes (every producer done). Returns the view for [`router`].
pub fn start_output(
    device: &str,
    sensors: &[(Arc<str>, Modality)],
    outputs: &mut Outputs,
) -> SharedBoard {
    let board = Arc::new(Mutex::new(StatusBoard::new(
        device,
        sensors,
        Instant::now(),
    )));
    let rx = outputs.subscribe(OutputQueue {
        name: "status",
        capacity: NonZeroUsize::new(QUEUE_CAPACITY).unwrap_or(NonZeroUsize::MIN),
        when_full: FullPolicy::DropNewest,
    });
    tokio::spawn(apply_events(rx, Arc::clone(&board)));
    board
}

async fn apply_events(mut rx: mpsc::Receiver<Event>, board: SharedBoard) {
    while let Some(event) = rx.recv().await {
        lock(&board).apply(&event, Instant::now());
    }
}

/// Serves `/metrics`, `/` and `/api/status` on `listener` with the default [`Limits`] until
/// `cancel`.
pub fn spawn_listener(
    listener: tokio::net::TcpListener,
    telemetry: &Arc<Telemetry>,
    board: SharedBoard,
    cancel: CancellationToken,
) {
    let limits = Limits::default();
    let state = AppState {
        telemetry: Arc::clone(telemetry),
        board,
    };
    let app = router(state, limits.max_body_bytes, limits.handler_timeout);
    tokio::spawn(serve(listener, app, limits, Arc::clone(telemetry), cancel));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
