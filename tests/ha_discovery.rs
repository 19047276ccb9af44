//! Home Assistant discovery end to end: `edgebind run` on the IMU demo replays with
//! `[home_assistant] discovery = true`, against a real Home Assistant Core 2025.4.4
//! (tests/common/ha.rs, tools/setup_ha.sh) and the real mosquitto. One Home Assistant for the
//! whole story, to keep its start-up (~10 s) out of the CI budget more than once:
//! entities appear with their names, states, attributes and device; a stopped daemon makes them
//! unavailable; a restart with a sensor removed removes its entities; HA's birth message makes
//! the daemon send its config again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::ha::{HomeAssistant, BIRTH_TOPIC};
use common::{
    base_config, fixture, repo, sigterm, spawn_daemon, wait_with_timeout, write_config,
    LocalBroker, Subscriber,
};
use serde_json::{json, Value};

const DEVICE: &str = "hatest";
const CONFIG_TOPIC: &str = "homeassistant/device/edgebind_hatest/config";
const URL: &str = "http://edgebind-hatest.local:9464/metrics";
/// The first window needs 5 s of samples (realtime replay); HA on a loaded CI machine and the
/// daemon's start-up get ample headroom.
const T: Duration = Duration::from_secs(90);

const WRIST_LABEL: &str = "sensor.edgebind_hatest_imu_wrist_label";
const TABLE_LABEL: &str = "sensor.edgebind_hatest_imu_table_label";
const TABLE_GAPS: &str = "sensor.edgebind_hatest_imu_table_gaps";

fn config(dir: &Path, port: u16, table: bool) -> PathBuf {
    let mut text =
        base_config(DEVICE, port).replace("stats_interval_s = 0", "stats_interval_s = 1");
    text.push_str(&format!(
        "[outbox]\ndir = \"{dir}/outbox\"\n[home_assistant]\ndiscovery = true\n\
         state_dir = \"{dir}/state\"\nconfiguration_url = \"{URL}\"\n\
         [[sources]]\ntype = \"imu_replay\"\nname = \"imu-wrist\"\npath = \"{wrist}\"\n\
         speed = \"realtime\"\nloop = true\n",
        dir = dir.display(),
        wrist = fixture("recordings/imu_demo_200hz.csv").display(),
    ));
    if table {
        text.push_str(&format!(
            "[[sources]]\ntype = \"imu_replay\"\nname = \"imu-table\"\npath = \"{}\"\n\
             sample_rate_hz = 400.0\nspeed = \"realtime\"\nloop = true\n",
            fixture("recordings/imu_still_400hz.npy").display()
        ));
    }
    write_config(dir, &text)
}

fn concepts() -> Vec<String> {
    std::fs::read_to_string(repo().join("models/tiny/concepts.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A state that is a value (not `unknown`/`unavailable`, which HA shows before data or while
/// the device is offline).
fn has_value(s: Option<&Value>) -> bool {
    s.is_some_and(|s| s["state"] != "unknown" && s["state"] != "unavailable")
}

fn number(s: &Value) -> f64 {
    s["state"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {s}"))
}

#[test]
fn the_daemon_is_discovered_by_home_assistant_and_cleans_up_after_itself() {
    let broker = LocalBroker::start(&[]).unwrap();
    let Some(ha) = HomeAssistant::start_or_skip(broker.port(), "homeassistant") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let configs = Subscriber::start(broker.port(), CONFIG_TOPIC);
    let log = dir.path().join("run1.log");
    let mut daemon = spawn_daemon(&config(dir.path(), broker.port(), true), &log, &[]);

    entities_have_names_states_and_device(&ha);
    diagnostics_have_values(&ha);
    the_label_template_says_none_without_labels(&ha, &broker);
    triggers_are_binary_sensors(&ha, &broker);

    sigterm(&daemon);
    let status = wait_with_timeout(&mut daemon, T).expect("the daemon stops on SIGTERM");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    for id in [WRIST_LABEL, TABLE_LABEL, TABLE_GAPS] {
        ha.wait_for_state(id, |s| s.is_some_and(|s| s["state"] == "unavailable"), T);
    }

    // The second run no longer has the table sensor: its entities go, the wrist's come back.
    let log2 = dir.path().join("run2.log");
    let mut daemon = spawn_daemon(&config(dir.path(), broker.port(), false), &log2, &[]);
    ha.wait_for_state(TABLE_LABEL, |s| s.is_none(), T);
    ha.wait_for_state(TABLE_GAPS, |s| s.is_none(), T);
    ha.wait_for_state(WRIST_LABEL, has_value, T);
    assert!(ha
        .entities_with_prefix("sensor.edgebind_hatest_imu_table")
        .is_empty());

    birth_message_sends_the_config_again(&broker, &configs);
    the_retained_config_removes_the_table_sensor(&broker);

    sigterm(&daemon);
    let status = wait_with_timeout(&mut daemon, T).expect("the daemon stops on SIGTERM");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log2).unwrap()
    );
}

fn entities_have_names_states_and_device(ha: &HomeAssistant) {
    // State and attributes come from the same message: the state's label has a score.
    let scored = |s: Option<&Value>| {
        has_value(s)
            && s.is_some_and(|s| {
                s["attributes"]["scores"][s["state"].as_str().unwrap_or("")].is_number()
            })
    };
    let label = ha.wait_for_state(WRIST_LABEL, scored, T).unwrap();
    let top = label["state"].as_str().unwrap().to_string();
    assert!(concepts().contains(&top), "{top:?} is no concept: {label}");
    assert_eq!(
        label["attributes"]["friendly_name"],
        "edgebind hatest imu-wrist label"
    );
    // Every label's score is an attribute (the state's among them, as the best), with `seq`.
    let scores = label["attributes"]["scores"].as_object().expect("scores");
    let own = scores[&top].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&own), "{label}");
    assert!(scores.keys().all(|k| concepts().contains(k)), "{label}");
    assert!(label["attributes"]["seq"].is_u64(), "{label}");
    assert_eq!(ha.device_attr(WRIST_LABEL, "name"), "edgebind hatest");
    assert_eq!(ha.device_attr(WRIST_LABEL, "manufacturer"), "edgebind");
    assert_eq!(
        ha.device_attr(WRIST_LABEL, "sw_version"),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        ha.device_attr(WRIST_LABEL, "model"),
        "ImageBind sensor embedder"
    );
    assert_eq!(ha.device_attr(WRIST_LABEL, "configuration_url"), URL);
    // Both sensors' entities belong to the one device.
    ha.wait_for_state(TABLE_LABEL, has_value, T);
    assert_eq!(ha.device_attr(TABLE_LABEL, "name"), "edgebind hatest");
}

fn diagnostics_have_values(ha: &HomeAssistant) {
    let p = "sensor.edgebind_hatest_imu_wrist";
    let provider = ha
        .wait_for_state(&format!("{p}_provider"), has_value, T)
        .unwrap();
    assert_eq!(provider["state"], "cpu");
    let gaps = ha
        .wait_for_state(&format!("{p}_gaps"), has_value, T)
        .unwrap();
    assert_eq!(gaps["state"], "0", "a replay has no gaps");
    assert_eq!(gaps["attributes"]["state_class"], "total_increasing");
    let drops = ha
        .wait_for_state(&format!("{p}_drops"), has_value, T)
        .unwrap();
    assert!(number(&drops) >= 0.0);
    assert!(drops["attributes"]["inference_backlog"].is_u64(), "{drops}");
    let rate = ha
        .wait_for_state(
            &format!("{p}_windows_per_second"),
            |s| has_value(s) && number(s.unwrap()) > 0.0,
            T,
        )
        .unwrap();
    assert_eq!(rate["attributes"]["unit_of_measurement"], "windows/s");
    let p99 = ha
        .wait_for_state(&format!("{p}_inference_p99"), has_value, T)
        .unwrap();
    assert!(number(&p99) > 0.0, "{p99}");
    assert_eq!(p99["attributes"]["unit_of_measurement"], "ms");
    let outbox = ha
        .wait_for_state("sensor.edgebind_hatest_outbox_pending", has_value, T)
        .unwrap();
    assert!(number(&outbox) >= 0.0);
}

/// The label's templates, as the daemon sent them, rendered by Home Assistant on a window
/// without any label above `concepts.min_score` and on labels with spaces and quotes.
fn the_label_template_says_none_without_labels(ha: &HomeAssistant, broker: &LocalBroker) {
    let config = retained_config(broker);
    let label = &config["cmps"]["imu-wrist_label"];
    let render = |value_json: &str, key: &str| {
        ha.template(&format!(
            "{{% set value_json = {value_json} %}}{}",
            label[key].as_str().unwrap()
        ))
    };
    let empty = r#"{"v": 1, "seq": 7, "labels": []}"#;
    assert_eq!(render(empty, "val_tpl"), "none");
    let attrs: Value = serde_json::from_str(&render(empty, "json_attr_tpl")).unwrap();
    assert_eq!(attrs, json!({"scores": {}, "seq": 7}));
    let odd = r#"{"seq": 8, "labels": [{"label": "a \"quoted\" dog's bark", "score": 0.5}, {"label": "rain", "score": -0.25}]}"#;
    assert_eq!(render(odd, "val_tpl"), "a \"quoted\" dog's bark");
    let attrs: Value = serde_json::from_str(&render(odd, "json_attr_tpl")).unwrap();
    assert_eq!(
        attrs,
        json!({"scores": {"a \"quoted\" dog's bark": 0.5, "rain": -0.25}, "seq": 8})
    );
}

/// Triggers are not wired into the daemon yet: the library's plan for a device with a trigger,
/// published as the daemon would, and the trigger engine's retained state payload
/// (docs/triggers.md) turn a real binary sensor on and off.
fn triggers_are_binary_sensors(ha: &HomeAssistant, broker: &LocalBroker) {
    use edgebind::publish::discovery::{plan, Announce};
    let announce = Announce {
        device_id: "hatrig".into(),
        topic_prefix: "edgebind/hatrig".into(),
        sensors: vec!["wrist".into()],
        triggers: vec![("wrist".into(), "fall".into())],
        configuration_url: None,
    };
    let (plan, _) = plan(Some(&announce), "homeassistant", BIRTH_TOPIC, None);
    let (topic, config) = plan.config.unwrap();
    let state = |phase: &str| {
        json!({"v": 1, "sensor": "wrist", "trigger": "fall", "trigger_kind": "concept",
               "state": phase, "score": 0.82, "seq": 12, "event_id": "wrist-fall-3",
               "on_threshold": 0.6, "off_threshold": 0.5})
        .to_string()
    };
    publish(broker, "edgebind/hatrig/status", "online", true);
    publish(
        broker,
        "edgebind/hatrig/wrist/triggers/fall",
        &state("active"),
        true,
    );
    publish(broker, &topic, std::str::from_utf8(&config).unwrap(), true);
    let id = "binary_sensor.edgebind_hatrig_wrist_fall";
    let on = ha
        .wait_for_state(id, |s| s.is_some_and(|s| s["state"] == "on"), T)
        .unwrap();
    assert_eq!(on["attributes"]["phase"], "active");
    assert_eq!(on["attributes"]["event_id"], "wrist-fall-3");
    assert_eq!(
        on["attributes"]["friendly_name"],
        "edgebind hatrig wrist fall"
    );
    publish(
        broker,
        "edgebind/hatrig/wrist/triggers/fall",
        &state("cooldown"),
        true,
    );
    ha.wait_for_state(id, |s| s.is_some_and(|s| s["state"] == "off"), T);
    // Gone with its device (an empty retained config).
    publish(broker, &topic, "", true);
    ha.wait_for_state(id, |s| s.is_none(), T);
}

fn publish(broker: &LocalBroker, topic: &str, payload: &str, retain: bool) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &broker.port().to_string(),
        "-q",
        "1",
    ])
    .args(["-t", topic]);
    if payload.is_empty() {
        cmd.arg("-n");
    } else {
        cmd.args(["-m", payload]);
    }
    if retain {
        cmd.arg("-r");
    }
    assert!(cmd.status().unwrap().success(), "mosquitto_pub {topic}");
}

/// The broker's retained device config (what a Home Assistant that starts now reads).
fn retained_config(broker: &LocalBroker) -> Value {
    let late = Subscriber::start(broker.port(), CONFIG_TOPIC);
    assert!(late.wait_for(T, |seen| !seen.is_empty()));
    let retained = late.on(CONFIG_TOPIC)[0].clone();
    assert!(retained.retain);
    retained.json()
}

fn birth_message_sends_the_config_again(broker: &LocalBroker, configs: &Subscriber) {
    let n = configs.on(CONFIG_TOPIC).len();
    assert!(n >= 2, "a config at each of the two connections, saw {n}");
    publish(broker, BIRTH_TOPIC, "online", false);
    assert!(
        configs.wait_for(T, |seen| seen.len() > n),
        "no config after Home Assistant's birth message"
    );
}

/// The broker's retained copy (what a restarted Home Assistant reads) carries the removal.
fn the_retained_config_removes_the_table_sensor(broker: &LocalBroker) {
    let v = retained_config(broker);
    assert_eq!(v["cmps"]["imu-table_label"], json!({"p": "sensor"}));
    assert_eq!(v["avty_t"], "edgebind/hatest/status");
    assert_eq!(
        v["cmps"]["imu-wrist_label"]["stat_t"],
        "edgebind/hatest/imu-wrist/labels"
    );
}

/// `check` (and so `run`) refuses what Home Assistant or the record could not use, naming each
/// key at its place in the file; no Home Assistant needed.
#[test]
fn check_names_every_unusable_home_assistant_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let text = format!(
        "{}[home_assistant]\ndiscovery = true\ndiscovery_prefix = \"home/#\"\n\
         birth_topic = \"\"\nstate_dir = \"{}/state\"\nconfiguration_url = \"ftp://nas/\"\n",
        base_config(DEVICE, 1),
        file.display()
    );
    let path = write_config(dir.path(), &text);
    let out = common::run(common::edgebind().arg("check").arg("--config").arg(&path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(edgebind::config::EX_CONFIG),
        "{err}"
    );
    for (line, key) in [
        (3, "home_assistant.discovery_prefix"),
        (4, "home_assistant.birth_topic"),
        (5, "home_assistant.state_dir"),
        (6, "home_assistant.configuration_url"),
    ] {
        let at = format!(
            "{}:{}:",
            path.display(),
            text.lines()
                .position(|l| l.starts_with("[home_assistant]"))
                .unwrap()
                + line
        );
        assert!(
            err.lines().any(|l| l.contains(&at) && l.contains(key)),
            "{key} at {at}: {err}"
        );
    }
    assert!(err.contains("must be an http:// or https:// URL"), "{err}");
    assert!(err.contains("is not a directory"), "{err}");
}

/// A device config larger than `mqtt.max_packet_bytes` (rumqttc would drop the connection at
/// every attempt to send it) is a configuration problem.
#[test]
fn check_refuses_a_device_config_larger_than_a_packet() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = base_config(DEVICE, 1).replace("[mqtt]\n", "[mqtt]\nmax_packet_bytes = 32768\n");
    text.push_str(&format!(
        "[home_assistant]\ndiscovery = true\nstate_dir = \"{}/state\"\n",
        dir.path().display()
    ));
    for i in 0..16 {
        text.push_str(&format!(
            "[[sources]]\ntype = \"imu_replay\"\nname = \"imu-{i:02}\"\npath = \"{}\"\n",
            fixture("recordings/imu_demo_200hz.csv").display()
        ));
    }
    let path = write_config(dir.path(), &text);
    let out = common::run(common::edgebind().arg("check").arg("--config").arg(&path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(edgebind::config::EX_CONFIG),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.contains("mqtt.max_packet_bytes")
            && l.contains("the Home Assistant device config of 16 sensor(s) is")),
        "{err}"
    );
}

/// MQTT 5 (`mqtt.protocol = "5"`) subscribes and hears the birth message the same way; only
/// mosquitto is needed.
#[test]
fn over_mqtt_5_the_birth_message_also_sends_the_config_again() {
    let broker = LocalBroker::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(config(dir.path(), broker.port(), false))
        .unwrap()
        .replace("[mqtt]\n", "[mqtt]\nprotocol = \"5\"\n");
    let path = write_config(dir.path(), &text);
    let configs = Subscriber::start(broker.port(), CONFIG_TOPIC);
    let log = dir.path().join("run.log");
    let mut daemon = spawn_daemon(&path, &log, &[]);
    assert!(
        configs.wait_for(T, |seen| !seen.is_empty()),
        "no config at connection: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    let first = configs.on(CONFIG_TOPIC)[0].json();
    assert_eq!(first["cmps"]["imu-wrist_label"]["p"], "sensor");
    // The subscription is made right after the ConnAck; a birth message published before
    // mosquitto has it would be missed, so publish until a second config arrives.
    let mut resent = false;
    for _ in 0..30 {
        publish(&broker, BIRTH_TOPIC, "online", false);
        if configs.wait_for(Duration::from_secs(3), |seen| seen.len() > 1) {
            resent = true;
            break;
        }
    }
    assert!(resent, "no config after the birth message");
    sigterm(&daemon);
    assert!(wait_with_timeout(&mut daemon, T).is_some_and(|s| s.success()));
}
