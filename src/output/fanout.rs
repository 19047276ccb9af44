//! The fan-out point: every event goes to every output through that output's own bounded
//! channel, with a named policy for a full one. Producers (inference worker threads, the
//! reporter task) hold an [`Emitter`]; each output task holds the receiving end of its queue.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};

use super::Event;
use crate::telemetry::{QueueKind, Telemetry};

/// What an output's full queue does with a new event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// The producer waits for room: nothing is lost (the MQTT output, whose outbox holds any
    /// backlog; a waiting inference worker is back-pressure that `models.when_full` acts on).
    Block,
    /// The new event is dropped and counted (`edgebind_output_events_dropped_total{output}`):
    /// for outputs that show the latest state and must never slow the pipeline down.
    DropNewest,
}

/// An output's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputQueue {
    /// The output's name (metric label `output`, queue gauge `name`).
    pub name: &'static str,
    /// Most events waiting.
    pub capacity: NonZeroUsize,
    /// What a full queue does.
    pub when_full: FullPolicy,
}

#[derive(Debug, Clone)]
struct Subscriber {
    tx: mpsc::Sender<Event>,
    when_full: FullPolicy,
    dropped: Arc<AtomicU64>,
}

/// Builds the fan-out: each output subscribes, then the producers get [`Emitter`]s.
#[derive(Debug)]
pub struct Outputs {
    telemetry: Arc<Telemetry>,
    subscribers: Vec<Subscriber>,
}

impl Outputs {
    /// No outputs yet.
    #[must_use]
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            telemetry,
            subscribers: Vec::new(),
        }
    }

    /// Adds an output: its events arrive on the returned receiver. Its queue depth becomes a
    /// gauge (`queue="publisher"`, `name=<output>`), its drops a counter.
    pub fn subscribe(&mut self, queue: OutputQueue) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(queue.capacity.get());
        // A weak handle: the probe must not keep the queue open after the producers are done.
        let weak = tx.downgrade();
        self.telemetry.register_queue(
            QueueKind::Publisher,
            queue.name,
            tx.max_capacity(),
            Box::new(move || {
                weak.upgrade()
                    .map_or(0, |tx| tx.max_capacity() - tx.capacity())
            }),
        );
        self.subscribers.push(Subscriber {
            tx,
            when_full: queue.when_full,
            dropped: self.telemetry.output_drops_counter(queue.name),
        });
        rx
    }

    /// A handle to the outputs subscribed so far, for a stage that is itself an output and
    /// emits into those before it (the trigger stage): it must not feed its own queue.
    #[must_use]
    pub fn emitter_so_far(&self) -> Emitter {
        Emitter {
            subscribers: self.subscribers.clone().into(),
        }
    }

    /// The producers' handle. Every output's queue closes once all emitters are dropped.
    #[must_use]
    pub fn emitter(self) -> Emitter {
        Emitter {
            subscribers: self.subscribers.into(),
        }
    }
}

/// Every output has stopped: nothing takes events any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every output has stopped")]
pub struct Closed;

/// Hands events to every output.
#[derive(Debug, Clone)]
pub struct Emitter {
    subscribers: Arc<[Subscriber]>,
}

impl Emitter {
    /// Hands `event` to every output, from a plain thread (an inference worker): waits where a
    /// `Block` queue is full.
    ///
    /// # Errors
    /// [`Closed`] when every output has stopped.
    pub fn emit_blocking(&self, event: &Event) -> Result<(), Closed> {
        let mut open = false;
        for s in self.subscribers.iter() {
            open |= match s.when_full {
                FullPolicy::Block => s.tx.blocking_send(event.clone()).is_ok(),
                FullPolicy::DropNewest => s.try_send(event),
            };
        }
        if open {
            Ok(())
        } else {
            Err(Closed)
        }
    }

    /// Hands `event` to every output, from a task: waits where a `Block` queue is full.
    ///
    /// # Errors
    /// [`Closed`] when every output has stopped.
    pub async fn emit(&self, event: &Event) -> Result<(), Closed> {
        let mut open = false;
        for s in self.subscribers.iter() {
            open |= match s.when_full {
                FullPolicy::Block => s.tx.send(event.clone()).await.is_ok(),
                FullPolicy::DropNewest => s.try_send(event),
            };
        }
        if open {
            Ok(())
        } else {
            Err(Closed)
        }
    }
}

impl Subscriber {
    /// `DropNewest`: hands `event` over if there is room, counts it dropped otherwise. False
    /// when the output has stopped.
    fn try_send(&self, event: &Event) -> bool {
        match self.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::output::SensorState;

    fn state(n: u64) -> Event {
        let t = Telemetry::new(["s"]);
        t.stream("s").add_samples(n, 0);
        Event::State(Arc::new(SensorState::read(
            &t,
            &Arc::from("s"),
            crate::Modality::Imu,
        )))
    }

    fn samples(e: &Event) -> u64 {
        match e {
            Event::State(s) => s.snapshot.samples_total,
            _ => panic!("not a state"),
        }
    }

    fn queue(name: &'static str, capacity: usize, when_full: FullPolicy) -> OutputQueue {
        OutputQueue {
            name,
            capacity: NonZeroUsize::new(capacity).unwrap(),
            when_full,
        }
    }

    #[test]
    fn every_output_gets_every_event_and_a_full_drop_newest_queue_counts_its_drops() {
        let telemetry = Arc::new(Telemetry::new(["s"]));
        let mut outputs = Outputs::new(Arc::clone(&telemetry));
        let mut all = outputs.subscribe(queue("all", 8, FullPolicy::Block));
        let mut latest = outputs.subscribe(queue("page", 2, FullPolicy::DropNewest));
        let emitter = outputs.emitter();
        for n in 0..5 {
            emitter.emit_blocking(&state(n)).unwrap();
        }
        let got: Vec<u64> = std::iter::from_fn(|| all.try_recv().ok())
            .map(|e| samples(&e))
            .collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        // The small queue kept the first two and counted the three it had no room for.
        let kept: Vec<u64> = std::iter::from_fn(|| latest.try_recv().ok())
            .map(|e| samples(&e))
            .collect();
        assert_eq!(kept, vec![0, 1]);
        assert_eq!(
            telemetry.output_drops(),
            vec![("all".into(), 0), ("page".into(), 3)]
        );
        let depths = telemetry.queue_depths();
        assert!(depths.iter().any(|q| q.name == "page" && q.capacity == 2));
        assert!(telemetry
            .render_prometheus()
            .contains("edgebind_output_events_dropped_total{output=\"page\"} 3\n"));
    }

    #[test]
    fn a_stopped_output_is_skipped_and_emitting_fails_only_when_all_have_stopped() {
        let telemetry = Arc::new(Telemetry::new(["s"]));
        let mut outputs = Outputs::new(telemetry);
        let a = outputs.subscribe(queue("a", 4, FullPolicy::Block));
        let mut b = outputs.subscribe(queue("b", 4, FullPolicy::DropNewest));
        let emitter = outputs.emitter();
        drop(a);
        emitter.emit_blocking(&state(1)).unwrap();
        assert_eq!(samples(&b.try_recv().unwrap()), 1);
        drop(b);
        assert_eq!(emitter.emit_blocking(&state(2)), Err(Closed));
    }

    #[test]
    fn a_full_blocking_queue_makes_the_producer_wait_until_there_is_room() {
        let telemetry = Arc::new(Telemetry::new(["s"]));
        let mut outputs = Outputs::new(telemetry);
        let mut rx = outputs.subscribe(queue("mqtt", 1, FullPolicy::Block));
        let emitter = outputs.emitter();
        emitter.emit_blocking(&state(0)).unwrap();
        // The second waits for the first to be taken; nothing is lost, order is kept.
        let producer = std::thread::spawn(move || emitter.emit_blocking(&state(1)));
        assert_eq!(samples(&rx.blocking_recv().unwrap()), 0);
        assert_eq!(samples(&rx.blocking_recv().unwrap()), 1);
        producer.join().unwrap().unwrap();
        assert!(
            rx.blocking_recv().is_none(),
            "closed once the emitter is gone"
        );
    }
}
