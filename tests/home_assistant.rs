//! The Home Assistant harness (tests/common/ha.rs) against a real Home Assistant Core 2025.4.4
//! (tools/setup_ha.sh): device-based MQTT discovery as HA documents it, availability, a restart
//! with retained and re-sent configs, and the two ways of removing entities.
//!
//! What HA 2025.4.4 does with a device config `<prefix>/device/<object_id>/config`
//! (homeassistant/components/mqtt/discovery.py and entity.py of that release):
//! - `dev` (with `ids`), `o` (with `name`) and `cmps` are required; each component needs `p` and,
//!   for entities, `uniq_id`. Availability, `stat_t`, `cmd_t`, `qos` and `encoding` at the root
//!   are shared by every component that does not set its own.
//! - A component reduced to `{"p": "<platform>"}` is removed (entity and registry entry).
//!   Omitting a component from `cmps` does NOT remove it: nothing in discovery.py compares a new
//!   device config with the previous one; HA's docs say to send the `{"p": …}` form first and
//!   then omit it.
//! - An empty payload on the device topic removes every component discovered under that
//!   device, including ones the last config omitted; retained, it also clears the broker's copy.
//! - After a restart HA replays retained configs before its birth message (sent once discovery
//!   has been quiet for 5 s); entities whose config is not retained come back `unavailable`
//!   (restored from the registry) until their config is sent again on the birth message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::ha::HomeAssistant;
use common::LocalBroker;
use rumqttc::{Client, MqttOptions, QoS};
use serde_json::{json, Value};

const PREFIX: &str = "homeassistant";
const STATUS: &str = "hatest/status";
/// Discovery is processed within ~1 s; HA on a loaded CI machine gets headroom.
const T: Duration = Duration::from_secs(30);

/// A test MQTT client standing in for the discovery publisher.
struct Publisher {
    client: Client,
}

impl Publisher {
    fn connect(port: u16) -> Self {
        let mut opts = MqttOptions::new(
            format!("ha-test-pub-{}", std::process::id()),
            "127.0.0.1",
            port,
        );
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = Client::new(opts, 64);
        std::thread::spawn(move || {
            for ev in connection.iter() {
                if ev.is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        Self { client }
    }

    fn send(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .unwrap();
    }

    fn json(&self, topic: &str, payload: &Value, retain: bool) {
        self.send(topic, payload.to_string(), retain);
    }
}

fn device(id: &str, name: &str) -> Value {
    json!({"ids": [id], "name": name, "mf": "edgebind", "mdl": "harness self-test",
           "sw": "0.1.0", "cu": "http://127.0.0.1:8080/"})
}

/// Device A: a label sensor with JSON attributes and a binary sensor, from one state topic.
fn config_a(cmps: Value) -> Value {
    json!({"dev": device("hatest_a", "Harness A"), "o": {"name": "edgebind-test", "sw": "0.1.0"},
           "avty_t": STATUS, "cmps": cmps})
}

fn label_cmp() -> Value {
    json!({"p": "sensor", "name": "Label", "uniq_id": "hatest_a_label", "stat_t": "hatest/a/state",
           "val_tpl": "{{ value_json.label }}", "json_attr_t": "hatest/a/scores"})
}

fn motion_cmp() -> Value {
    json!({"p": "binary_sensor", "name": "Motion", "uniq_id": "hatest_a_motion",
           "stat_t": "hatest/a/state", "val_tpl": "{{ value_json.motion }}", "dev_cla": "motion"})
}

/// Device B: a diagnostic measurement whose entity id comes from `obj_id`.
fn config_b() -> Value {
    json!({"dev": device("hatest_b", "Harness B"), "o": {"name": "edgebind-test"},
           "avty_t": STATUS, "cmps": {"windows": {
               "p": "sensor", "name": "Windows per second", "uniq_id": "hatest_b_windows",
               "obj_id": "hatest_windows_per_s", "stat_t": "hatest/b/stats",
               "val_tpl": "{{ value_json.windows_per_s }}", "unit_of_meas": "windows/s",
               "stat_cla": "measurement", "ent_cat": "diagnostic"}}})
}

fn state_is(want: &'static str) -> impl Fn(Option<&Value>) -> bool {
    move |s| s.is_some_and(|s| s["state"] == want)
}

fn gone(s: Option<&Value>) -> bool {
    s.is_none()
}

const LABEL: &str = "sensor.harness_a_label";
const MOTION: &str = "binary_sensor.harness_a_motion";
const WINDOWS: &str = "sensor.hatest_windows_per_s";

#[test]
fn harness_runs_device_discovery_against_real_home_assistant() {
    let started = Instant::now();
    let broker = LocalBroker::start(&[]).unwrap();
    let Some(mut ha) = HomeAssistant::start_or_skip(broker.port(), PREFIX) else {
        return;
    };
    let startup_s = started.elapsed().as_secs_f64();
    let publisher = Publisher::connect(broker.port());
    // Retained states: they reach the entities whenever these subscribe.
    publisher.send(STATUS, "online", true);
    publisher.json(
        "hatest/a/state",
        &json!({"label": "person", "motion": "ON"}),
        true,
    );
    publisher.json(
        "hatest/a/scores",
        &json!({"scores": {"person": 0.83, "dog": 0.07}}),
        true,
    );
    publisher.json("hatest/b/stats", &json!({"windows_per_s": 12.5}), true);
    // A's config retained, B's not (sent as a publisher does after HA's birth message).
    let cmps_a = json!({"label": label_cmp(), "motion": motion_cmp()});
    publisher.json(
        &format!("{PREFIX}/device/hatest_a/config"),
        &config_a(cmps_a.clone()),
        true,
    );
    publisher.json(
        &format!("{PREFIX}/device/hatest_b/config"),
        &config_b(),
        false,
    );

    entities_have_names_states_and_device(&ha);
    availability_follows_the_status_topic(&ha, &publisher);

    // A restart: A's retained config is replayed before the birth message; B's entity is only
    // restored (unavailable) until its config is sent again, as on HA's birth message.
    ha.restart();
    ha.wait_for_state(LABEL, state_is("person"), T);
    let restored = ha
        .wait_for_state(WINDOWS, state_is("unavailable"), T)
        .unwrap();
    assert_eq!(restored["attributes"]["restored"], true);
    publisher.json(
        &format!("{PREFIX}/device/hatest_b/config"),
        &config_b(),
        false,
    );
    ha.wait_for_state(WINDOWS, state_is("12.5"), T);

    removal_of_one_component_and_of_the_device(&ha, &publisher);

    ha.stop();
    let registry = ha.entity_registry();
    let entry = |uid: &str| registry.iter().find(|e| e["unique_id"] == uid).cloned();
    let windows = entry("hatest_b_windows").expect("B's sensor in the entity registry");
    assert_eq!(windows["entity_id"], WINDOWS);
    assert_eq!(windows["entity_category"], "diagnostic");
    assert_eq!(windows["platform"], "mqtt");
    for uid in ["hatest_a_label", "hatest_a_motion"] {
        assert!(
            entry(uid).is_none(),
            "{uid} still in the registry after removal"
        );
    }
    eprintln!(
        "Home Assistant harness: start to birth {startup_s:.1} s, whole test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Names: "<device name> <entity name>" → entity id from it, unless `obj_id` names it.
fn entities_have_names_states_and_device(ha: &HomeAssistant) {
    let label = ha.wait_for_state(LABEL, state_is("person"), T).unwrap();
    assert_eq!(label["attributes"]["friendly_name"], "Harness A Label");
    // json_attributes_topic: the JSON object's keys become attributes.
    assert_eq!(label["attributes"]["scores"]["person"], 0.83);
    let motion = ha.wait_for_state(MOTION, state_is("on"), T).unwrap();
    assert_eq!(motion["attributes"]["device_class"], "motion");
    assert_eq!(motion["attributes"]["friendly_name"], "Harness A Motion");
    let windows = ha.wait_for_state(WINDOWS, state_is("12.5"), T).unwrap();
    assert_eq!(
        windows["attributes"]["friendly_name"],
        "Harness B Windows per second"
    );
    assert_eq!(windows["attributes"]["unit_of_measurement"], "windows/s");
    assert_eq!(windows["attributes"]["state_class"], "measurement");
    let a: Vec<String> = ha
        .entities_with_prefix("sensor.harness_a")
        .into_keys()
        .collect();
    assert_eq!(a, [LABEL]);
    assert_eq!(ha.device_attr(LABEL, "model"), "harness self-test");
    assert_eq!(ha.device_attr(LABEL, "sw_version"), "0.1.0");
    assert_eq!(ha.device_attr(LABEL, "manufacturer"), "edgebind");
    assert_eq!(
        ha.device_attr(LABEL, "configuration_url"),
        "http://127.0.0.1:8080/"
    );
    assert_eq!(ha.device_attr(MOTION, "name"), "Harness A");
    assert_eq!(ha.device_attr(WINDOWS, "name"), "Harness B");
}

fn availability_follows_the_status_topic(ha: &HomeAssistant, publisher: &Publisher) {
    publisher.send(STATUS, "offline", true);
    for id in [LABEL, MOTION, WINDOWS] {
        ha.wait_for_state(id, state_is("unavailable"), T);
    }
    publisher.send(STATUS, "online", true);
    ha.wait_for_state(LABEL, state_is("person"), T);
    ha.wait_for_state(MOTION, state_is("on"), T);
    ha.wait_for_state(WINDOWS, state_is("12.5"), T);
}

fn removal_of_one_component_and_of_the_device(ha: &HomeAssistant, publisher: &Publisher) {
    let topic = format!("{PREFIX}/device/hatest_a/config");
    // One component: `{"p": …}` alone removes it; the others stay.
    let cmps = json!({"label": label_cmp(), "motion": {"p": "binary_sensor"}});
    publisher.json(&topic, &config_a(cmps), true);
    ha.wait_for_state(MOTION, gone, T);
    assert_eq!(ha.state(LABEL).unwrap()["state"], "person");
    // Omitting a component does not remove it: the label sensor, left out of the next config,
    // still follows its state topic.
    publisher.json(&topic, &config_a(json!({})), true);
    publisher.json(
        "hatest/a/state",
        &json!({"label": "dog", "motion": "OFF"}),
        true,
    );
    ha.wait_for_state(LABEL, state_is("dog"), T);
    // A second round trip: a removal set off by the config would have finished by now.
    publisher.json(
        "hatest/a/state",
        &json!({"label": "cat", "motion": "OFF"}),
        true,
    );
    ha.wait_for_state(LABEL, state_is("cat"), T);
    // The device: an empty (retained) payload removes everything discovered under it.
    publisher.send(&topic, "", true);
    ha.wait_for_state(LABEL, gone, T);
    assert!(ha.entities_with_prefix("sensor.harness_a").is_empty());
    assert_eq!(ha.state(WINDOWS).unwrap()["state"], "12.5");
}
