//! The output seam. The pipeline produces typed [`Event`]s — a window embedded (inference
//! workers), a sensor's state and the daemon's statistics (the [`report`]er) — and knows
//! nothing of how they are shown. Each output subscribes to the same events through its own
//! bounded queue with a named policy when full ([`Outputs`], [`FullPolicy`]), and owns its
//! presentation: the MQTT output (`crate::publish`) owns topics, QoS, retain, encodings and the
//! outbox. Later outputs (a status page, trigger events, Home Assistant discovery) subscribe
//! the same way.

mod event;
mod fanout;
mod report;

pub use event::{
    unit_norm, ConceptsAnswer, ConceptsNotice, EmbeddedWindow, EncoderInfo, Event, SensorState,
    WindowLatency, WindowSpan,
};
pub use fanout::{Closed, Emitter, FullPolicy, OutputQueue, Outputs};
pub use report::report;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::publish::{Outbox, PublisherConfig, PublisherReport};
use crate::telemetry::Telemetry;

/// Starts every output — today the MQTT output (`publisher`, with its opened `outbox`, and the
/// `inbound` routes of the messages it subscribes to) — and
/// the reporter of statistics and sensor states. Returns the producers' [`Emitter`] (every
/// output's queue closes when all its clones are dropped and the reporter has stopped at
/// `cancel`) and the MQTT output's task. A new output is one more line here.
#[must_use]
pub fn start(
    config: &Config,
    publisher: PublisherConfig,
    outbox: Outbox,
    telemetry: &Arc<Telemetry>,
    cancel: &CancellationToken,
    inbound: crate::publish::mqtt::Inbound,
) -> (Emitter, JoinHandle<PublisherReport>) {
    let mut outputs = Outputs::new(Arc::clone(telemetry));
    let sensors = publisher.sensors.clone();
    let mqtt = crate::publish::start_output(
        publisher,
        outbox,
        config.mqtt.queue_capacity.get(),
        &mut outputs,
        Arc::clone(telemetry),
        cancel.child_token(),
        inbound,
    );
    let emitter = outputs.emitter();
    tokio::spawn(report(
        Arc::clone(telemetry),
        sensors,
        Duration::from_secs(config.mqtt.stats_interval_s),
        emitter.clone(),
        cancel.child_token(),
    ));
    (emitter, mqtt)
}
