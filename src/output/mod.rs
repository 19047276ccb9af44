//! The output seam. The pipeline produces typed [`Event`]s — a window embedded (inference
//! workers), a sensor's state and the daemon's statistics (the [`report`]er) — and knows
//! nothing of how they are shown. Each output subscribes to the same events through its own
//! bounded queue with a named policy when full ([`Outputs`], [`FullPolicy`]), and owns its
//! presentation: the MQTT output (`crate::publish`) owns topics, QoS, retain, encodings and the
//! outbox; the status page (`crate::status`) keeps a bounded view for the metrics listener.
//! Later outputs (trigger events, Home Assistant discovery) subscribe the same way.

mod event;
mod fanout;
mod report;
pub mod triggers;

pub use event::{
    stored_notice, unit_norm, ConceptsAnswer, ConceptsNotice, EmbeddedWindow, EncoderInfo, Event,
    SceneOut, SensorState, Stored, StoredNotice, TriggerAnswer, TriggerControlNotice,
    TriggerEventOut, TriggerStateOut, WindowLatency, WindowSpan,
};
pub use fanout::{Closed, Emitter, FullPolicy, OutputQueue, Outputs};
pub use report::report;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::publish::{Outbox, PublisherConfig, PublisherReport};
use crate::status::SharedBoard;
use crate::telemetry::Telemetry;

/// What [`start`] started.
#[derive(Debug)]
pub struct Started {
    /// The producers' handle (every output's queue closes when all its clones are dropped and
    /// the reporter has stopped at `cancel`).
    pub emitter: Emitter,
    /// The MQTT output's task.
    pub mqtt: JoinHandle<PublisherReport>,
    /// The status page's view, when `[metrics]` is configured (served on its listener).
    pub status: Option<SharedBoard>,
    /// The trigger stage's thread, when it runs (it ends after the inference workers).
    pub triggers: Option<std::thread::JoinHandle<()>>,
}

/// Starts every output — the status page's view when there is a `[metrics]` listener, the MQTT
/// output (`publisher`, with its opened `outbox` and the `inbound` routes of the messages
/// it subscribes to), then the trigger stage when there is one (it
/// emits into the outputs subscribed before it, so the status page and MQTT see its events) —
/// and the reporter of statistics and sensor states. A new output is one more line here.
///
/// # Errors
/// The trigger stage's thread cannot be started.
pub fn start(
    config: &Config,
    publisher: PublisherConfig,
    outbox: Outbox,
    triggers: Option<triggers::TriggerStage>,
    telemetry: &Arc<Telemetry>,
    cancel: &CancellationToken,
    inbound: crate::publish::mqtt::Inbound,
) -> std::io::Result<Started> {
    let mut outputs = Outputs::new(Arc::clone(telemetry));
    let sensors = publisher.sensors.clone();
    let status = config
        .metrics
        .as_ref()
        .map(|_| crate::status::start_output(&config.device.id, &sensors, &mut outputs));
    let mqtt = crate::publish::start_output(
        publisher,
        outbox,
        config.mqtt.queue_capacity.get(),
        &mut outputs,
        Arc::clone(telemetry),
        cancel.child_token(),
        inbound,
    );
    let triggers = match triggers {
        Some(stage) => {
            let downstream = outputs.emitter_so_far();
            let rx = outputs.subscribe(OutputQueue {
                name: "triggers",
                capacity: std::num::NonZeroUsize::MIN.saturating_add(triggers::QUEUE_CAPACITY - 1),
                when_full: FullPolicy::Block,
            });
            Some(stage.spawn(rx, downstream)?)
        }
        None => None,
    };
    let emitter = outputs.emitter();
    tokio::spawn(report(
        Arc::clone(telemetry),
        sensors,
        Duration::from_secs(config.mqtt.stats_interval_s),
        emitter.clone(),
        cancel.child_token(),
    ));
    Ok(Started {
        emitter,
        mqtt,
        status,
        triggers,
    })
}
