//! The entities of one device (pure): per sensor a label sensor and its diagnostics, per
//! trigger a binary sensor, and the daemon's own diagnostics, each reading a topic the daemon
//! already publishes (docs/mqtt.md). Keys are abbreviated as Home Assistant documents them
//! (`p`, `uniq_id`, `stat_t`, …); tests/ha_discovery.rs checks them against a real Home
//! Assistant.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Home Assistant platform of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// `sensor`.
    Sensor,
    /// `binary_sensor`.
    BinarySensor,
}

/// What the device's entities are made from.
#[derive(Debug, Clone)]
pub struct Announce {
    /// `device.id`.
    pub device_id: String,
    /// The daemon's topic prefix (`edgebind/<device id>` by default).
    pub topic_prefix: String,
    /// Sensor names, in configuration order.
    pub sensors: Vec<String>,
    /// (sensor, trigger name) of every trigger; its state is the retained
    /// `<prefix>/<sensor>/triggers/<name>`.
    pub triggers: Vec<(String, String)>,
    /// The device page's link, if any.
    pub configuration_url: Option<String>,
}

/// One entity: its key in `cmps`, platform and discovery body.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Key in the device config's `cmps` (stable: it is how a removal names the entity).
    pub key: String,
    /// Platform.
    pub platform: Platform,
    /// The component's discovery config.
    pub body: Value,
}

/// The label sensor's state: the best label, `none` when no concept reached
/// `concepts.min_score`.
const LABEL_STATE: &str = "{{ value_json.labels[0].label if value_json.labels else 'none' }}";
/// Its attributes: every label's score and the window's `seq`. A namespace, because the
/// sandbox of Home Assistant's templates forbids changing a dict in place.
const LABEL_ATTRIBUTES: &str = "{% set ns = namespace(scores={}) %}\
{% for l in value_json.labels %}{% set ns.scores = dict(ns.scores, **{l.label: l.score}) %}{% endfor %}\
{{ {'scores': ns.scores, 'seq': value_json.seq} | tojson }}";
/// A trigger is on while its event is open.
const TRIGGER_STATE: &str = "{{ 'ON' if value_json.state == 'active' else 'OFF' }}";
const TRIGGER_ATTRIBUTES: &str = "{{ {'phase': value_json.state, 'score': value_json.score, \
'event_id': value_json.event_id, 'trigger_kind': value_json.trigger_kind} | tojson }}";

impl Announce {
    fn unique_id(&self, key: &str) -> String {
        format!("edgebind_{}_{key}", self.device_id)
    }

    fn topic(&self, rest: &str) -> String {
        format!("{}/{rest}", self.topic_prefix)
    }

    fn component(&self, key: String, platform: Platform, mut body: Value) -> Component {
        body["p"] = json!(platform);
        body["uniq_id"] = json!(self.unique_id(&key));
        Component {
            key,
            platform,
            body,
        }
    }

    /// Every entity, in a stable order: per sensor its label sensor and diagnostics, then the
    /// triggers, then the daemon's diagnostics.
    #[must_use]
    pub fn components(&self) -> Vec<Component> {
        let mut out = Vec::new();
        for s in &self.sensors {
            out.extend(self.sensor_components(s));
        }
        for (s, t) in &self.triggers {
            out.push(self.trigger_component(s, t));
        }
        out.push(self.component(
            "outbox_pending".into(),
            Platform::Sensor,
            diagnostic(
                "Outbox pending",
                &self.topic("stats"),
                "{{ value_json.outbox_messages }}",
                Some("messages"),
                "measurement",
            ),
        ));
        out
    }

    fn sensor_components(&self, s: &str) -> Vec<Component> {
        let labels = self.topic(&format!("{s}/labels"));
        let state = self.topic(&format!("{s}/state"));
        let stats = self.topic("stats");
        let mut drops = diagnostic(
            &format!("{s} drops"),
            &state,
            "{{ value_json.drops_total.values() | sum }}",
            // Samples, frames or windows, by reason (the attributes).
            None,
            "total_increasing",
        );
        drops["json_attr_t"] = json!(state);
        drops["json_attr_tpl"] = json!("{{ value_json.drops_total | tojson }}");
        let mut provider = diagnostic(
            &format!("{s} provider"),
            &state,
            "{{ value_json.inference.provider if value_json.inference is defined else 'none' }}",
            None,
            "",
        );
        provider["ic"] = json!("mdi:chip");
        vec![
            self.component(
                format!("{s}_label"),
                Platform::Sensor,
                json!({"name": format!("{s} label"), "stat_t": labels, "val_tpl": LABEL_STATE,
                       "json_attr_t": labels, "json_attr_tpl": LABEL_ATTRIBUTES,
                       "ic": "mdi:label-outline"}),
            ),
            self.component(
                format!("{s}_windows_per_s"),
                Platform::Sensor,
                // The stats carry counters: the rate is the mean since the daemon started.
                diagnostic(
                    &format!("{s} windows per second"),
                    &stats,
                    &format!(
                        "{{{{ (value_json.streams['{s}'].windows_total / value_json.uptime_s) \
                         | round(3) if value_json.uptime_s > 0 else 0 }}}}"
                    ),
                    Some("windows/s"),
                    "measurement",
                ),
            ),
            self.component(
                format!("{s}_gaps"),
                Platform::Sensor,
                diagnostic(
                    &format!("{s} gaps"),
                    &state,
                    "{{ value_json.gap_samples_total }}",
                    Some("samples"),
                    "total_increasing",
                ),
            ),
            self.component(format!("{s}_drops"), Platform::Sensor, drops),
            self.component(format!("{s}_provider"), Platform::Sensor, provider),
            self.component(
                format!("{s}_inference_p99"),
                Platform::Sensor,
                diagnostic(
                    &format!("{s} inference p99"),
                    &stats,
                    &format!("{{{{ value_json.latency['{s}'].inference.p99_ms }}}}"),
                    Some("ms"),
                    "measurement",
                ),
            ),
        ]
    }

    fn trigger_component(&self, s: &str, t: &str) -> Component {
        let topic = self.topic(&format!("{s}/triggers/{t}"));
        self.component(
            format!("{s}_trigger_{t}"),
            Platform::BinarySensor,
            json!({"name": format!("{s} {t}"), "stat_t": topic, "val_tpl": TRIGGER_STATE,
                   "json_attr_t": topic, "json_attr_tpl": TRIGGER_ATTRIBUTES}),
        )
    }

    /// The device config: device, origin, availability from the daemon's `status` (its Last
    /// Will) and `cmps` — `components`, plus `{"p": …}` for each of `removed` (how Home
    /// Assistant is told to remove an entity: omitting it is not enough).
    #[must_use]
    pub fn device_config(
        &self,
        components: &[Component],
        removed: &BTreeMap<String, Platform>,
    ) -> Value {
        let mut cmps = serde_json::Map::new();
        for (key, platform) in removed {
            cmps.insert(key.clone(), json!({ "p": platform }));
        }
        for c in components {
            cmps.insert(c.key.clone(), c.body.clone());
        }
        let version = env!("CARGO_PKG_VERSION");
        let mut dev = json!({"ids": [format!("edgebind_{}", self.device_id)],
            "name": format!("edgebind {}", self.device_id), "mf": "edgebind",
            "mdl": "ImageBind sensor embedder", "sw": version});
        if let Some(url) = &self.configuration_url {
            dev["cu"] = json!(url);
        }
        json!({"dev": dev, "o": {"name": "edgebind", "sw": version},
               "avty_t": self.topic("status"), "qos": 1, "cmps": cmps})
    }
}

/// A diagnostic sensor (`state_class` left out when empty).
fn diagnostic(
    name: &str,
    topic: &str,
    template: &str,
    unit: Option<&str>,
    state_class: &str,
) -> Value {
    let mut v = json!({"name": name, "stat_t": topic, "val_tpl": template,
                       "ent_cat": "diagnostic"});
    if let Some(unit) = unit {
        v["unit_of_meas"] = json!(unit);
    }
    if !state_class.is_empty() {
        v["stat_cla"] = json!(state_class);
    }
    v
}
