//! The reporter: the telemetry side of the outputs. Every `mqtt.stats_interval_s` it emits the
//! daemon's statistics and every sensor's state as events; outputs show them as they like (the
//! MQTT output publishes `stats` and the retained `state` while connected).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Emitter, Event, SensorState};
use crate::telemetry::Telemetry;
use crate::Modality;

impl SensorState {
    /// The counters of `sensor` now.
    #[must_use]
    pub fn read(telemetry: &Telemetry, sensor: &Arc<str>, modality: Modality) -> Self {
        Self {
            sensor: Arc::clone(sensor),
            modality,
            snapshot: telemetry.stream(sensor).snapshot(),
        }
    }
}

/// Emits [`Event::Stats`], then [`Event::State`] of each sensor, every `interval` (the first
/// one interval after the start) until `cancel` or until every output has stopped. Nothing with
/// a zero interval.
pub async fn report(
    telemetry: Arc<Telemetry>,
    sensors: Vec<(Arc<str>, Modality)>,
    interval: Duration,
    emitter: Emitter,
    cancel: CancellationToken,
) {
    if interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let events = std::iter::once(Event::Stats(Arc::new(telemetry.stats_snapshot()))).chain(
            sensors
                .iter()
                .map(|(s, m)| Event::State(Arc::new(SensorState::read(&telemetry, s, *m)))),
        );
        for event in events {
            let sent = tokio::select! {
                () = cancel.cancelled() => return,
                sent = emitter.emit(&event) => sent,
            };
            if sent.is_err() {
                return;
            }
        }
    }
}
