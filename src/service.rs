//! The service manager's side of the daemon: systemd notifications (`READY=1` once sources are
//! open and models are warm, `STATUS=` during long steps, `STOPPING=1`) and the watchdog
//! heartbeat. All of them are no-ops when the daemon does not run under systemd
//! (`NOTIFY_SOCKET` unset).
//!
//! # When the pipeline is "moving"
//! The heartbeat (`WATCHDOG=1`, every half `WATCHDOG_USEC`) is sent only while the pipeline is
//! moving: since the previous check, either some embedding was produced, or no window was
//! waiting for inference (every window cut has been embedded or counted as dropped — sources
//! that deliver nothing, e.g. a replay that ended or a sensor between events, are idle by
//! design, not stalled). A window that waits while no embedding is produced for a whole check
//! period means an inference worker is stuck: the heartbeat stops and systemd restarts the
//! daemon after `WatchdogSec`.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{DropReason, Telemetry};

/// Sends `states` to the service manager; errors only matter under systemd, and are logged.
pub fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// `STATUS=` text shown by `systemctl status`.
pub fn status(text: &str) {
    notify(&[NotifyState::Status(text)]);
}

/// Progress counters of the whole pipeline at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Embeddings produced, all sensors.
    pub embeddings: u64,
    /// Windows cut and not yet embedded or dropped, all sensors.
    pub waiting: u64,
}

impl Progress {
    /// Reads the counters.
    #[must_use]
    pub fn of(telemetry: &Telemetry) -> Self {
        let mut p = Self::default();
        for name in telemetry.stream_names() {
            let s = telemetry.stream(name).snapshot();
            let settled = s.embeddings_total
                + [
                    DropReason::InferenceBacklog,
                    DropReason::InferenceError,
                    DropReason::PreprocessError,
                ]
                .iter()
                .map(|r| s.drops_total.get(r.as_str()).copied().unwrap_or(0))
                .sum::<u64>();
            p.embeddings += s.embeddings_total;
            p.waiting += s.windows_total.saturating_sub(settled);
        }
        p
    }

    /// Whether the pipeline moved between `before` and `self` (see the module documentation).
    #[must_use]
    pub fn moved_since(&self, before: &Progress) -> bool {
        self.embeddings > before.embeddings || self.waiting == 0
    }
}

/// Sends `WATCHDOG=1` every half `WATCHDOG_USEC` while the pipeline moves, until `cancel`.
/// Does nothing when the service manager asked for no watchdog.
pub fn spawn_watchdog(
    telemetry: Arc<Telemetry>,
    cancel: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()? / 2;
    let period = period.max(Duration::from_millis(10));
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut before = Progress::of(&telemetry);
        let mut stalled = false;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            let now = Progress::of(&telemetry);
            if now.moved_since(&before) {
                if stalled {
                    tracing::info!("pipeline moving again; watchdog heartbeat resumed");
                    stalled = false;
                }
                notify(&[NotifyState::Watchdog]);
            } else if !stalled {
                tracing::error!(
                    waiting = now.waiting,
                    "pipeline stalled: windows wait but no embedding was produced; withholding the watchdog heartbeat"
                );
                stalled = true;
                status("stalled: inference makes no progress");
            }
            before = now;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_pipeline_counts_as_moving() {
        let a = Progress {
            embeddings: 5,
            waiting: 0,
        };
        assert!(a.moved_since(&a));
    }

    #[test]
    fn waiting_windows_without_new_embeddings_are_a_stall() {
        let before = Progress {
            embeddings: 5,
            waiting: 2,
        };
        assert!(!before.moved_since(&before));
        let after = Progress {
            embeddings: 6,
            waiting: 2,
        };
        assert!(after.moved_since(&before));
    }

    #[test]
    fn progress_reads_windows_embeddings_and_drops() {
        let t = Telemetry::new(["a"]);
        let s = t.stream("a");
        for _ in 0..4 {
            s.add_window(0);
        }
        s.add_embedding();
        s.add_drops(DropReason::InferenceBacklog, 1);
        assert_eq!(
            Progress::of(&t),
            Progress {
                embeddings: 1,
                waiting: 2
            }
        );
    }
}
