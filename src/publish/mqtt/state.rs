//! The publisher as a state machine: one method per thing that can happen — messages in
//! ([`Publisher::on_input`]), an event of the connection ([`Publisher::on_net_event`], in
//! `link`), a finished fsync ([`Publisher::on_sync_done`]), the fsync timer, the stop — and
//! [`Publisher::prepare`], run before each wait, which hands messages to rumqttc, starts a due
//! fsync and says what to wait for. The `select!` loop in the parent module only dispatches.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Level;

use super::link::Link;
use super::store::Logs;
use super::PublisherConfig;
use crate::config::FsyncPolicy;
use crate::log_limited;
use crate::output::SensorState;
use crate::publish::client::Client;
use crate::publish::encode::{EncodeError, MessageTiming, OutMessage, Outgoing, Publish};
use crate::publish::outbox::{Outbox, PendingSync, SyncDone};
use crate::telemetry::{ErrorKind, Telemetry};

/// Timings kept for messages waiting for their acknowledgement. Bounded: a long broker outage
/// must not grow memory; the oldest timings are forgotten first (their latency goes unrecorded).
const MAX_TIMINGS: usize = 65_536;

/// Latency bookkeeping by outbox id.
#[derive(Debug, Default)]
pub(super) struct Timings(BTreeMap<u64, MessageTiming>);

impl Timings {
    pub(super) fn keep(&mut self, id: u64, timing: MessageTiming) {
        self.0.insert(id, timing);
        while self.0.len() > MAX_TIMINGS {
            self.0.pop_first();
        }
    }

    /// Records the latencies of `id`, acknowledged now.
    pub(super) fn delivered(&mut self, id: u64) {
        if let Some(t) = self.0.remove(&id) {
            t.record_delivered();
        }
    }

    pub(super) fn forget(&mut self, id: u64) {
        self.0.remove(&id);
    }
}

/// When what is appended becomes durable, and the fsync in progress.
#[derive(Debug)]
pub(super) struct Durability {
    /// `outbox.fsync = "every_message"`: nothing is sent before its fsync.
    every_message: bool,
    /// Outbox ids below this are durable and may be sent.
    pub(super) durable_below: u64,
    /// The fsync running on the outbox's thread.
    pub(super) pending: Option<PendingSync>,
    /// An fsync is wanted as soon as none is running.
    due: bool,
    /// (next id, pending) when the last fsync started: an interval with nothing appended or
    /// acknowledged since has nothing to flush (an idle daemon would fsync 10 times a second,
    /// a needless flush of eMMC/SD storage on a Jetson).
    synced_mark: (u64, usize),
    /// Armed only while something is unsynced or held by a full outbox: an idle daemon does
    /// not wake up every period.
    fsync_at: Option<Instant>,
    period: Duration,
}

/// Messages taken from the pipeline and not in the outbox yet.
#[derive(Debug, Default)]
pub(super) struct Intake {
    /// The pipeline's queue is open.
    pub(super) open: bool,
    /// Refused by a full outbox under `block`; retried at each fsync period and after acks.
    pub(super) held: Option<OutMessage>,
    /// Taken after `held`, waiting behind it in order.
    pub(super) waiting: std::collections::VecDeque<OutMessage>,
    /// Encoded from the last batch.
    encoded: Vec<Result<Outgoing, EncodeError>>,
}

/// What the loop waits for next.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wait {
    /// Take messages from the pipeline.
    pub(super) can_take: bool,
    /// The fsync timer.
    pub(super) fsync_at: Option<Instant>,
    /// The end of the drain after a stop or after the pipeline closed.
    pub(super) drain_deadline: Option<Instant>,
}

/// The publisher's state. See the module documentation.
#[derive(Debug)]
pub(super) struct Publisher {
    pub(super) cfg: PublisherConfig,
    pub(super) telemetry: Arc<Telemetry>,
    pub(super) outbox: Outbox,
    pub(super) client: Client,
    /// Tells the event loop task that nothing more is handed until the next ConnAck.
    pub(super) resume: Arc<Notify>,
    pub(super) logs: Logs,
    pub(super) link: Link,
    pub(super) timings: Timings,
    pub(super) durability: Durability,
    pub(super) intake: Intake,
    pub(super) drain_deadline: Option<Instant>,
}

impl Publisher {
    pub(super) fn new(
        cfg: PublisherConfig,
        outbox: Outbox,
        client: Client,
        resume: Arc<Notify>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let every_message = cfg.fsync == FsyncPolicy::EveryMessage;
        let mark = (outbox.next_id(), outbox.pending());
        let durability = Durability {
            every_message,
            // What a previous run left is on disk already.
            durable_below: if every_message {
                outbox.next_id()
            } else {
                u64::MAX
            },
            pending: None,
            due: false,
            synced_mark: mark,
            fsync_at: None,
            period: cfg.fsync_interval.max(Duration::from_millis(1)),
        };
        Self {
            cfg,
            telemetry,
            outbox,
            client,
            resume,
            logs: Logs::default(),
            link: Link::default(),
            timings: Timings::default(),
            durability,
            intake: Intake {
                open: true,
                ..Intake::default()
            },
            drain_deadline: None,
        }
    }

    /// Runs before each wait: hands what it can to rumqttc, starts a due fsync, updates the
    /// gauges. `None` when the publisher is done: the pipeline closed and everything is
    /// acknowledged, or the drain's time is up.
    pub(super) fn prepare(&mut self) -> Option<Wait> {
        self.hand_over();
        self.start_sync_if_due();
        self.publish_gauges();
        let idle = self.outbox.pending() == 0
            && self.link.control.is_empty()
            && self.link.in_rumqttc() == 0;
        if !self.intake.open && idle && self.intake.held.is_none() {
            return None;
        }
        if self.drain_deadline.is_some_and(|d| Instant::now() >= d) {
            if self.intake.open {
                tracing::warn!(
                    "the pipeline did not drain within the shutdown timeout; the final sensor state is not published"
                );
            }
            tracing::warn!(
                undelivered = self.outbox.pending(),
                "stopping with unacknowledged MQTT messages; they stay in the outbox for the next start"
            );
            return None;
        }
        let wants_timer = self.unsynced() || self.intake.held.is_some();
        let d = &mut self.durability;
        if !wants_timer {
            d.fsync_at = None;
        } else if d.fsync_at.is_none() {
            d.fsync_at = Some(Instant::now() + d.period);
        }
        Some(Wait {
            can_take: self.intake.open && self.intake.held.is_none(),
            fsync_at: self.durability.fsync_at,
            drain_deadline: self.drain_deadline,
        })
    }

    /// Appended or acknowledged since the last fsync started (interval policy).
    fn unsynced(&self) -> bool {
        let d = &self.durability;
        !d.every_message && (self.outbox.next_id(), self.outbox.pending()) != d.synced_mark
    }

    fn start_sync_if_due(&mut self) {
        if !self.durability.due || self.durability.pending.is_some() {
            return;
        }
        self.durability.due = false;
        self.durability.synced_mark = (self.outbox.next_id(), self.outbox.pending());
        match self.outbox.begin_sync() {
            Ok(pending) => self.durability.pending = Some(pending),
            Err(e) => self.sync_failed(&e),
        }
    }

    fn sync_failed(&mut self, e: &dyn std::fmt::Display) {
        self.telemetry.errors.add(ErrorKind::OutboxSync);
        log_limited!(self.logs.fsync_failed, Level::ERROR,
            "outbox fsync failed (counted as outbox_sync)", error = %e);
    }

    /// A batch from the pipeline (`None`: the pipeline has closed its queue).
    pub(super) fn on_input<I: Publish>(&mut self, batch: Option<Vec<I>>) {
        let Some(batch) = batch else {
            return self.on_input_closed();
        };
        let mut encoded = std::mem::take(&mut self.intake.encoded);
        for item in batch {
            item.encode(&self.cfg.codec, &mut encoded);
        }
        for outgoing in encoded.drain(..) {
            match outgoing {
                Ok(Outgoing::Durable(m)) => self.store(m),
                // Status, state and stats go only to a connected broker (at connect they are
                // rebuilt anyway).
                Ok(Outgoing::Control(m)) if self.link.connected => self.link.control.push_back(m),
                Ok(Outgoing::Control(_)) => {}
                Err(e) => self.encode_failed(&e),
            }
        }
        self.intake.encoded = encoded;
        if self.durability.every_message {
            self.durability.due = true;
        }
    }

    /// Into the outbox; with `block` and a full outbox the first refused message is held (and
    /// every later one behind it, in order) until acknowledgements make room.
    fn store(&mut self, m: OutMessage) {
        if self.intake.held.is_some() {
            self.intake.waiting.push_back(m);
        } else {
            self.intake.held = self.append(m);
        }
    }

    pub(super) fn encode_failed(&mut self, e: &EncodeError) {
        self.telemetry.errors.add(ErrorKind::Serialize);
        log_limited!(self.logs.encode_failed, Level::ERROR,
            "a message could not be encoded and is not published (counted as serialize)", error = %e);
    }

    /// The pipeline has drained: the counters are final, so the retained state says exactly
    /// how many windows each sensor produced.
    fn on_input_closed(&mut self) {
        self.intake.open = false;
        self.drain_deadline
            .get_or_insert(Instant::now() + self.cfg.drain_timeout);
        tracing::info!(
            outbox_pending = self.outbox.pending(),
            "pipeline drained; every message is in the outbox"
        );
        self.queue_states();
    }

    /// Every sensor's retained `state` now, as control messages.
    pub(super) fn queue_states(&mut self) {
        let states: Vec<_> = self
            .cfg
            .sensors
            .iter()
            .map(|(sensor, modality)| {
                let state = SensorState::read(&self.telemetry, sensor, *modality);
                self.cfg.codec.state(&state)
            })
            .collect();
        for state in states {
            match state {
                Ok(m) => self.link.control.push_back(m),
                Err(e) => self.encode_failed(&e),
            }
        }
    }

    /// The fsync on the outbox's thread has finished.
    pub(super) fn on_sync_done(
        &mut self,
        done: Result<SyncDone, tokio::sync::oneshot::error::RecvError>,
    ) {
        self.durability.pending = None;
        let result = match done {
            Ok(done) => self.outbox.finish_sync(done).map_err(|e| e.to_string()),
            Err(e) => Err(format!("the outbox sync thread is gone: {e}")),
        };
        match result {
            Ok(upto) if self.durability.every_message => {
                self.durability.durable_below = self.durability.durable_below.max(upto);
            }
            Ok(_) => {}
            Err(e) => self.sync_failed(&e),
        }
    }

    /// The fsync period has passed: sync what is unsynced, retry what a full outbox held.
    pub(super) fn on_fsync_timer(&mut self) {
        self.durability.fsync_at = None;
        self.durability.due |= self.unsynced();
        self.retry_held();
    }

    /// Retries the held messages in order, until one is refused again.
    pub(super) fn retry_held(&mut self) {
        while let Some(m) = self.intake.held.take() {
            if let Some(m) = self.append(m) {
                self.intake.held = Some(m);
                break;
            }
            self.intake.held = self.intake.waiting.pop_front();
        }
    }

    /// The daemon is stopping: keep delivering for at most the drain timeout.
    pub(super) fn on_stop(&mut self) {
        self.drain_deadline
            .get_or_insert(Instant::now() + self.cfg.drain_timeout);
    }

    pub(super) fn publish_gauges(&self) {
        let stats = &self.telemetry.publish;
        let pending = self.outbox.pending();
        stats.unacked.store(
            (pending + self.link.control.len()) as u64,
            Ordering::Relaxed,
        );
        stats
            .outbox_bytes
            .store(self.outbox.disk_bytes(), Ordering::Relaxed);
        stats
            .outbox_messages
            .store(pending as u64, Ordering::Relaxed);
        stats
            .outbox_disk_full
            .store(self.outbox.counters().disk_full, Ordering::Relaxed);
    }

    /// Forgets `id` in the outbox (acknowledged, or unreadable); a failure is counted and
    /// logged (at worst the message is sent again after a restart).
    pub(super) fn ack(&mut self, id: u64) {
        if let Err(e) = self.outbox.ack(id) {
            self.telemetry.errors.add(ErrorKind::OutboxAck);
            log_limited!(self.logs.ack_failed, Level::ERROR,
                "outbox ack failed (counted as outbox_ack)", error = %e);
        }
    }
}
