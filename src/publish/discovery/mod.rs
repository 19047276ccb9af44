//! Home Assistant MQTT discovery (`[home_assistant] discovery = true`): one device per daemon,
//! announced with one retained device config `<discovery_prefix>/device/edgebind_<id>/config`
//! whose entities read the topics the daemon publishes anyway ([`components`]); availability is
//! the daemon's `status` (its Last Will). The MQTT output sends the config at every connection
//! and again when Home Assistant announces it has started (its birth message,
//! `publish::mqtt::inbound`).
//!
//! Building the plan is pure ([`plan`]); [`prepare`] adds the one piece of I/O, the record of
//! what earlier runs announced ([`record`]), so that the entities of a sensor removed from the
//! configuration are removed in Home Assistant (sent as `{"p": …}`, which is how Home Assistant
//! removes a component), and a device whose topic changed (new device id or prefix) is removed
//! under its old topic with an empty retained config.

pub mod components;
pub mod record;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use components::{Announce, Component, Platform};
pub use record::{Record, RecordError, RECORD_FILE};

use crate::config::{Config, Qos};
use crate::publish::encode::OutMessage;
use crate::Modality;

/// What the MQTT output sends for Home Assistant.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// HA's birth topic, subscribed to at every connection (none when discovery is off).
    pub birth_topic: Option<String>,
    /// Empty retained configs on topics of earlier runs (their devices are removed).
    pub retire: Vec<String>,
    /// The device config's topic and JSON (none when discovery is off).
    pub config: Option<(String, Vec<u8>)>,
}

impl Plan {
    /// The messages to send at a connection or after HA's birth message: retirements first,
    /// then the config; all retained, QoS 1 (HA reads the retained config whenever it starts).
    #[must_use]
    pub fn messages(&self) -> Vec<OutMessage> {
        let message = |topic: &str, payload: Vec<u8>| OutMessage {
            topic: topic.to_string(),
            sensor: None,
            payload,
            retain: true,
            qos: Qos::AtLeastOnce,
            timing: None,
            stored: None,
            correlation_data: None,
        };
        self.retire
            .iter()
            .map(|t| message(t, Vec::new()))
            .chain(self.config.iter().map(|(t, p)| message(t, p.clone())))
            .collect()
    }
}

/// The device config's topic.
#[must_use]
pub fn device_topic(discovery_prefix: &str, device_id: &str) -> String {
    format!("{discovery_prefix}/device/edgebind_{device_id}/config")
}

/// The plan for `announce` under `discovery_prefix`, given what earlier runs announced, and the
/// record to keep: every component announced on this topic so far (a removed sensor's
/// `{"p": …}` stays in the config, so that a Home Assistant that was away when it was removed
/// still removes it), or only the old topic when discovery is off (`announce` none).
#[must_use]
pub fn plan(
    announce: Option<&Announce>,
    discovery_prefix: &str,
    birth_topic: &str,
    previous: Option<Record>,
) -> (Plan, Option<Record>) {
    let Some(announce) = announce else {
        // Off: remove the device announced before, and keep the record so that every start
        // does (idempotent; an empty retained message also clears the broker's copy).
        let retire = previous.iter().map(|r| r.device_topic.clone()).collect();
        let plan = Plan {
            birth_topic: None,
            retire,
            config: None,
        };
        return (plan, previous);
    };
    let topic = device_topic(discovery_prefix, &announce.device_id);
    let current = announce.components();
    let mut removed = BTreeMap::new();
    let mut retire = Vec::new();
    match previous {
        Some(r) if r.device_topic == topic => {
            removed = r.components;
            for c in &current {
                removed.remove(&c.key);
            }
        }
        Some(r) => retire.push(r.device_topic),
        None => {}
    }
    let mut announced = removed.clone();
    announced.extend(current.iter().map(|c| (c.key.clone(), c.platform)));
    let config = announce.device_config(&current, &removed).to_string();
    let plan = Plan {
        birth_topic: Some(birth_topic.to_string()),
        retire,
        config: Some((topic.clone(), config.into_bytes())),
    };
    (plan, Some(Record::new(topic, announced)))
}

/// Why discovery cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The record cannot be written.
    #[error("home_assistant.state_dir: cannot keep the record of what was announced")]
    Record(#[source] RecordError),
    /// The device config would not fit in one MQTT packet.
    #[error("mqtt.max_packet_bytes: {0}")]
    TooLarge(String),
}

/// Room kept in a packet beside the device config: topic, fixed header, MQTT 5 properties.
const PACKET_MARGIN_BYTES: usize = 1024;

/// Why a device config of `bytes` does not fit in `max_packet_bytes`, if it does not: rumqttc
/// refuses a packet over the limit by dropping the connection, and the config is sent again
/// at every connection, so it would never connect for long.
#[must_use]
pub fn too_large(bytes: usize, sensors: usize, max_packet_bytes: usize) -> Option<String> {
    (bytes + PACKET_MARGIN_BYTES > max_packet_bytes).then(|| {
        format!(
            "the Home Assistant device config of {sensors} sensor(s) is {} KiB, more than \
             {max_packet_bytes} bytes allow (about 2 KiB per sensor and 1 KiB of room); raise \
             mqtt.max_packet_bytes",
            bytes.div_ceil(1024)
        )
    })
}

/// `check`'s view: whether the config of `config`'s sensors (without triggers) fits.
#[must_use]
pub fn size_problem(config: &Config) -> Option<String> {
    if !config.home_assistant.discovery {
        return None;
    }
    let sensors: Vec<(Arc<str>, Modality)> = config
        .streams()
        .iter()
        .map(|(_, s)| (Arc::from(s.name.as_str()), s.modality))
        .collect();
    let a = announce(config, &sensors, &config.triggers.pairs());
    let (plan, _) = plan(Some(&a), "", "", None);
    let bytes = plan.config.map_or(0, |(t, p)| t.len() + p.len());
    too_large(bytes, sensors.len(), config.mqtt.max_packet_bytes)
}

fn announce(
    config: &Config,
    sensors: &[(Arc<str>, Modality)],
    triggers: &[(String, String)],
) -> Announce {
    Announce {
        device_id: config.device.id.clone(),
        topic_prefix: config.topic_prefix(),
        sensors: sensors.iter().map(|(s, _)| s.to_string()).collect(),
        triggers: triggers.to_vec(),
        configuration_url: configuration_url(config),
    }
}

/// The plan of `config` for `sensors` and `triggers` (sensor, trigger name): reads the record
/// of earlier runs and writes the new one before anything is sent. `None` when discovery is off
/// and nothing was ever announced. An unreadable record is logged and replaced (entities of
/// sensors removed meanwhile then stay in Home Assistant until deleted there).
///
/// # Errors
/// [`DiscoveryError`] when the record cannot be written or the config is too large for
/// `mqtt.max_packet_bytes`.
pub fn prepare(
    config: &Config,
    sensors: &[(Arc<str>, Modality)],
    triggers: &[(String, String)],
) -> Result<Option<Arc<Plan>>, DiscoveryError> {
    let ha = &config.home_assistant;
    let path = record_path(config);
    let previous = record::read(&path).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "Home Assistant discovery: the record of earlier announcements is unusable; it is replaced");
        None
    });
    if !ha.discovery && previous.is_none() {
        return Ok(None);
    }
    let announce = ha.discovery.then(|| announce(config, sensors, triggers));
    let (plan, record) = plan(
        announce.as_ref(),
        &ha.discovery_prefix,
        &ha.birth_topic,
        previous,
    );
    if let Some((topic, payload)) = &plan.config {
        let bytes = topic.len() + payload.len();
        if let Some(why) = too_large(bytes, sensors.len(), config.mqtt.max_packet_bytes) {
            return Err(DiscoveryError::TooLarge(why));
        }
    }
    if let Some(record) = &record {
        record::write(&path, record).map_err(DiscoveryError::Record)?;
    }
    if let Some((topic, _)) = &plan.config {
        tracing::info!(%topic, "Home Assistant discovery on");
    }
    Ok(Some(Arc::new(plan)))
}

/// `<home_assistant.state_dir>/home_assistant.json`.
#[must_use]
pub fn record_path(config: &Config) -> PathBuf {
    config
        .resolve(&config.home_assistant.state_dir)
        .join(RECORD_FILE)
}

/// The configured link, else the metrics endpoint when it listens on a specific address.
fn configuration_url(config: &Config) -> Option<String> {
    if let Some(url) = &config.home_assistant.configuration_url {
        return Some(url.clone());
    }
    let addr: std::net::SocketAddr = config.metrics.as_ref()?.listen.parse().ok()?;
    (!addr.ip().is_unspecified()).then(|| format!("http://{addr}/metrics"))
}

#[cfg(test)]
mod tests;
