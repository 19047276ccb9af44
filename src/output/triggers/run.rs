//! The trigger stage's thread: windows in, events out, state saved in the order that keeps
//! every `start` matched by an `end` across a crash (module docs).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{store, SensorEngine, TriggerStage};
use crate::output::{
    stored_notice, EmbeddedWindow, Emitter, Event, SceneOut, TriggerEventOut, TriggerStateOut,
};
use crate::telemetry::ErrorKind;
use crate::time::Timestamp;
use crate::triggers::{EventKind, SceneFrame, TriggerEvent, WindowObservation};

/// How long an `end` may take to reach the outbox before the state is saved anyway later: a
/// full outbox that blocks, or a publisher past its shutdown timeout.
const STORED_WAIT: Duration = Duration::from_secs(10);

/// Far enough in the future to close every scene slot at the end.
const END_OF_TIME: Timestamp = Timestamp {
    mono_ns: u64::MAX,
    utc_ns: i64::MAX,
};

impl TriggerStage {
    /// Starts the stage's thread on the fan-out queue `rx`, emitting into `out` (the outputs
    /// subscribed before it).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn spawn(
        self,
        rx: mpsc::Receiver<Event>,
        out: Emitter,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("triggers".into())
            .spawn(move || self.run(rx, &out))
    }

    fn run(mut self, mut rx: mpsc::Receiver<Event>, out: &Emitter) {
        for (sensor, event) in std::mem::take(&mut self.restored_ends) {
            if let Some(slot) = self.engines.get_mut(&sensor) {
                deliver(slot, vec![event], out, &self.telemetry);
            }
        }
        // The restored engines' states (cooldown, idle) replace what the broker retained.
        for slot in self.engines.values_mut() {
            deliver(slot, Vec::new(), out, &self.telemetry);
        }
        self.announce_lists(out);
        while let Some(event) = self.next_event(&mut rx, out) {
            if let Event::Embedded(w) = event {
                self.on_window(&w, out);
            }
            self.close_scenes(self.clock.now(), out);
        }
        self.close_scenes(END_OF_TIME, out);
        if let Some(scene) = &self.scene {
            // Windows and slots the scene could not use, once, at the end (not per window).
            let c = scene.counters();
            tracing::info!(
                late_windows = c.late_windows,
                bad_embeddings = c.bad_embeddings,
                sparse_slots = c.sparse_slots,
                evicted_slots = c.evicted_slots,
                "scene finished"
            );
        }
        // The novelty memory and example sets, for the next start.
        for slot in self.engines.values() {
            save(slot, &self.telemetry);
        }
        tracing::debug!("trigger stage finished");
    }

    fn on_window(&mut self, w: &EmbeddedWindow, out: &Emitter) {
        if let Some(scene) = &mut self.scene {
            scene.offer(&w.sensor, w.window.seq, w.window.end, &w.embedding);
        }
        let Some(slot) = self.engines.get_mut(&*w.sensor) else {
            return;
        };
        let events = slot.engine.observe(&WindowObservation {
            sensor: &w.sensor,
            seq: w.window.seq,
            start: w.window.start,
            end: w.window.end,
            embedding: &w.embedding,
            input: w.input.as_ref(),
        });
        deliver(slot, events, out, &self.telemetry);
    }

    /// Publishes the scene slots closed by `now` and feeds them to the scene's engine.
    fn close_scenes(&mut self, now: Timestamp, out: &Emitter) {
        let Some(scene) = &mut self.scene else { return };
        let frames = scene.close_ready(now);
        let c = scene.counters();
        self.telemetry
            .triggers
            .set_scene_dropped(c.sparse_slots, c.evicted_slots);
        for frame in frames {
            self.on_scene(frame, out);
        }
    }

    fn on_scene(&mut self, frame: SceneFrame, out: &Emitter) {
        if let Some(slot) = self.engines.get_mut(&frame.name) {
            let events = slot.engine.observe(&frame.observation());
            deliver(slot, events, out, &self.telemetry);
        }
        let stats = &self.telemetry.triggers;
        stats
            .scene_published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        let labels = self
            .concepts
            .top_k(&frame.embedding, self.top_k, self.min_score);
        let _ = out.emit_blocking(&Event::Scene(Arc::new(SceneOut { frame, labels })));
    }
}

/// Hands one window's events of `slot` to the outputs and saves its state: `end`s first, and
/// the state only once they are in the outbox (a crash before leaves the event open in the
/// saved state, so the next start ends it); then the state, before any `start` leaves (a
/// crash after leaves an `end` at the next start); then `start`s, `update`s and the changed
/// trigger states.
pub(super) fn deliver(
    slot: &mut SensorEngine,
    events: Vec<TriggerEvent>,
    out: &Emitter,
    telemetry: &crate::telemetry::Telemetry,
) {
    for e in &events {
        telemetry
            .triggers
            .event(&e.sensor, &e.trigger, kind_name(e.kind));
    }
    let (ends, rest): (Vec<_>, Vec<_>) = events.into_iter().partition(|e| e.kind == EventKind::End);
    let starts = rest.iter().any(|e| e.kind == EventKind::Start);
    let had_ends = !ends.is_empty();
    let ends_stored = emit_ends(ends, out);
    if (starts || had_ends) && ends_stored {
        save(slot, telemetry);
    }
    for event in rest {
        let _ = out.emit_blocking(&Event::Trigger(Arc::new(TriggerEventOut {
            event,
            stored: None,
        })));
    }
    let sensor: Arc<str> = Arc::from(slot.engine.sensor());
    for state in slot.engine.changed_states() {
        let _ = out.emit_blocking(&Event::TriggerState(Arc::new(TriggerStateOut {
            sensor: Arc::clone(&sensor),
            state,
        })));
    }
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Start => "start",
        EventKind::Update => "update",
        EventKind::End => "end",
    }
}

/// Emits `ends` and waits until each is in the outbox; false when one is not within
/// [`STORED_WAIT`] or the outputs have stopped.
fn emit_ends(ends: Vec<TriggerEvent>, out: &Emitter) -> bool {
    if ends.is_empty() {
        return true;
    }
    let n = ends.len();
    let (tx, stored) = std::sync::mpsc::sync_channel(n);
    for event in ends {
        let event = Event::Trigger(Arc::new(TriggerEventOut {
            event,
            stored: Some(stored_notice(&tx)),
        }));
        if out.emit_blocking(&event).is_err() {
            return false;
        }
    }
    drop(tx);
    for _ in 0..n {
        if stored.recv_timeout(STORED_WAIT).is_err() {
            tracing::warn!(
                "a trigger end is not in the outbox after {} s; its state is saved later",
                STORED_WAIT.as_secs()
            );
            return false;
        }
    }
    true
}

pub(super) fn save(slot: &SensorEngine, telemetry: &crate::telemetry::Telemetry) {
    if let Err(e) = store::save(&slot.file, &slot.engine.to_bytes()) {
        telemetry.errors.add(ErrorKind::TriggerState);
        tracing::error!(error = %e, "trigger state not saved (a restart may repeat or miss an end)");
    }
}
