//! Errors the daemon meets and goes on from — a payload it cannot encode, an outbox record it
//! cannot read back, a failed fsync — each counted here by kind (`edgebind_errors_total{kind}`,
//! `errors_total` in `<prefix>/stats`) and logged, rate-limited, where it happens. None is
//! dropped silently.

use std::sync::atomic::{AtomicU64, Ordering};

/// What kind of error was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// A payload (embedding, labels, state, stats) could not be encoded; it is not published.
    Serialize,
    /// Writing a message to the outbox failed (not a full disk); the message is dropped and
    /// also counted as an `outbox_full` drop.
    OutboxWrite,
    /// A message could not be read back from the outbox; it is skipped.
    OutboxRead,
    /// Recording an acknowledgement in the outbox failed (a restart may send it again).
    OutboxAck,
    /// Making the outbox durable (fsync, moving a compacted ack log into place) failed.
    OutboxSync,
    /// rumqttc refused a request at shutdown (the `offline` status or the DISCONNECT).
    BrokerRequest,
    /// A metrics listener response could not be written (the client went away).
    MetricsResponse,
    /// The metrics listener refused or cut a connection: over its connection limit, a request
    /// head too large or too slow, or a connection past its time limit.
    HttpRefused,
    /// A trigger engine's state could not be saved or read back (docs/triggers.md, Restarts).
    TriggerState,
}

impl ErrorKind {
    /// Every kind, in metric order.
    pub const ALL: [ErrorKind; 9] = [
        Self::Serialize,
        Self::OutboxWrite,
        Self::OutboxRead,
        Self::OutboxAck,
        Self::OutboxSync,
        Self::BrokerRequest,
        Self::MetricsResponse,
        Self::HttpRefused,
        Self::TriggerState,
    ];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serialize => "serialize",
            Self::OutboxWrite => "outbox_write",
            Self::OutboxRead => "outbox_read",
            Self::OutboxAck => "outbox_ack",
            Self::OutboxSync => "outbox_sync",
            Self::BrokerRequest => "broker_request",
            Self::MetricsResponse => "metrics_response",
            Self::HttpRefused => "http_refused",
            Self::TriggerState => "trigger_state",
        }
    }
}

/// Handled errors by kind.
#[derive(Debug, Default)]
pub struct ErrorStats {
    counts: [AtomicU64; ErrorKind::ALL.len()],
}

impl ErrorStats {
    /// Counts one error of `kind`.
    pub fn add(&self, kind: ErrorKind) {
        if let Some(c) = self.counts.get(kind as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Errors of `kind` so far.
    #[must_use]
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.counts
            .get(kind as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}
