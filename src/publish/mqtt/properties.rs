//! MQTT 5 properties of a message, derived when it is sent (so nothing about them is stored in
//! the outbox, and messages recovered after a restart carry them too).

use super::PublisherConfig;
use crate::publish::client::MessageProperties;
use crate::publish::payload::ENVELOPE_VERSION;

/// Content type of the plain-text `status` payload (`online` / `offline`).
pub(super) const TEXT: &str = "text/plain; charset=utf-8";
/// Content type of every other payload.
const JSON: &str = "application/json";

/// The MQTT 5 properties of a message on `topic` of `sensor` (pure): `status` is plain text,
/// everything else JSON; user properties name the device, and for a configured sensor the
/// sensor and its modality, and for JSON payloads the schema version (`v`).
#[must_use]
pub fn message_properties(
    cfg: &PublisherConfig,
    topic: &str,
    sensor: Option<&str>,
) -> MessageProperties {
    let mut user = vec![("device".to_string(), cfg.codec.device.clone())];
    if topic == cfg.codec.topics.status() {
        return MessageProperties {
            content_type: TEXT,
            user,
            correlation_data: None,
        };
    }
    if let Some((name, modality)) =
        sensor.and_then(|s| cfg.sensors.iter().find(|(n, _)| n.as_ref() == s))
    {
        user.push(("sensor".to_string(), name.to_string()));
        user.push(("modality".to_string(), modality.as_str().to_string()));
    }
    user.push(("schema_version".to_string(), ENVELOPE_VERSION.to_string()));
    MessageProperties {
        content_type: JSON,
        user,
        correlation_data: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{EmbeddingEncoding, FsyncPolicy, MqttProtocol, Qos};
    use crate::publish::encode::Codec;
    use crate::publish::payload::Topics;
    use crate::Modality;

    fn cfg() -> PublisherConfig {
        PublisherConfig {
            protocol: MqttProtocol::V5,
            host: "127.0.0.1".into(),
            port: 1883,
            tls: None,
            credentials: None,
            client_id: "c".into(),
            keep_alive: Duration::from_secs(30),
            max_packet_bytes: 1 << 20,
            codec: Codec {
                device: "dev1".into(),
                topics: Topics::new("edgebind/dev1"),
                qos: Qos::AtLeastOnce,
                encoding: EmbeddingEncoding::Json,
            },
            sensors: vec![
                ("wrist".into(), Modality::Imu),
                ("cam".into(), Modality::Depth),
            ],
            max_backoff: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::from_millis(100),
            discovery: None,
        }
    }

    fn pairs(p: &MessageProperties) -> Vec<(&str, &str)> {
        p.user
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn sensor_messages_name_device_sensor_modality_and_schema_version() {
        let c = cfg();
        let t = &c.codec.topics;
        for topic in [t.embedding("cam"), t.labels("cam"), t.state("cam")] {
            let p = message_properties(&c, &topic, Some("cam"));
            assert_eq!(p.content_type, "application/json");
            assert_eq!(
                pairs(&p),
                vec![
                    ("device", "dev1"),
                    ("sensor", "cam"),
                    ("modality", "depth"),
                    ("schema_version", "1")
                ]
            );
        }
    }

    #[test]
    fn status_is_plain_text_and_stats_names_no_sensor() {
        let c = cfg();
        let t = &c.codec.topics;
        let status = message_properties(&c, &t.status(), None);
        assert_eq!(status.content_type, "text/plain; charset=utf-8");
        assert_eq!(pairs(&status), vec![("device", "dev1")]);
        let stats = message_properties(&c, &t.stats(), None);
        assert_eq!(stats.content_type, "application/json");
        assert_eq!(
            pairs(&stats),
            vec![("device", "dev1"), ("schema_version", "1")]
        );
        // A sensor no longer configured (a message replayed from the outbox) is named by none.
        let gone = message_properties(&c, "edgebind/dev1/old/embedding", Some("old"));
        assert_eq!(
            pairs(&gone),
            vec![("device", "dev1"), ("schema_version", "1")]
        );
    }
}
