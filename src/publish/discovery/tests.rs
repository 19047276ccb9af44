#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;

fn announce(sensors: &[&str], triggers: &[(&str, &str)]) -> Announce {
    Announce {
        device_id: "dev1".into(),
        topic_prefix: "edgebind/dev1".into(),
        sensors: sensors.iter().map(ToString::to_string).collect(),
        triggers: triggers
            .iter()
            .map(|(s, t)| (s.to_string(), t.to_string()))
            .collect(),
        configuration_url: Some("http://10.0.0.7:9464/metrics".into()),
    }
}

fn config_of(plan: &Plan) -> Value {
    let (_, payload) = plan.config.as_ref().expect("a config");
    serde_json::from_slice(payload).unwrap()
}

#[test]
fn each_sensor_gets_a_label_sensor_and_diagnostics_from_its_topics() {
    let a = announce(&["wrist", "cam"], &[]);
    let cmps = a.components();
    let keys: Vec<&str> = cmps.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "wrist_label",
            "wrist_windows_per_s",
            "wrist_gaps",
            "wrist_drops",
            "wrist_provider",
            "wrist_inference_p99",
            "cam_label",
            "cam_windows_per_s",
            "cam_gaps",
            "cam_drops",
            "cam_provider",
            "cam_inference_p99",
            "outbox_pending"
        ]
    );
    let label = &cmps[0].body;
    assert_eq!(label["p"], "sensor");
    assert_eq!(label["uniq_id"], "edgebind_dev1_wrist_label");
    assert_eq!(label["stat_t"], "edgebind/dev1/wrist/labels");
    assert_eq!(label["json_attr_t"], "edgebind/dev1/wrist/labels");
    assert!(label.get("ent_cat").is_none(), "the label is no diagnostic");
    let gaps = &cmps[2].body;
    assert_eq!(gaps["stat_t"], "edgebind/dev1/wrist/state");
    assert_eq!(gaps["ent_cat"], "diagnostic");
    assert_eq!(gaps["stat_cla"], "total_increasing");
    let p99 = &cmps[5].body;
    assert_eq!(p99["stat_t"], "edgebind/dev1/stats");
    assert_eq!(p99["unit_of_meas"], "ms");
    assert!(p99["val_tpl"]
        .as_str()
        .unwrap()
        .contains("latency['wrist'].inference.p99_ms"));
    let outbox = &cmps[12].body;
    assert_eq!(outbox["val_tpl"], "{{ value_json.outbox_messages }}");
    for c in &cmps {
        assert_eq!(c.platform, Platform::Sensor, "{}", c.key);
    }
}

#[test]
fn each_trigger_is_a_binary_sensor_on_its_retained_state_topic() {
    let a = announce(&["wrist"], &[("wrist", "fall"), ("cam", "person-at-door")]);
    let cmps = a.components();
    let triggers: Vec<&Component> = cmps
        .iter()
        .filter(|c| c.platform == Platform::BinarySensor)
        .collect();
    assert_eq!(triggers.len(), 2);
    assert_eq!(triggers[0].key, "wrist_trigger_fall");
    assert_eq!(triggers[0].body["p"], "binary_sensor");
    assert_eq!(
        triggers[0].body["stat_t"],
        "edgebind/dev1/wrist/triggers/fall"
    );
    assert_eq!(triggers[0].body["name"], "wrist fall");
    assert_eq!(
        triggers[1].body["stat_t"],
        "edgebind/dev1/cam/triggers/person-at-door"
    );
    assert_eq!(
        triggers[1].body["uniq_id"],
        "edgebind_dev1_cam_trigger_person-at-door"
    );
    assert!(triggers[1].body["val_tpl"]
        .as_str()
        .unwrap()
        .contains("'active'"));
}

#[test]
fn the_device_config_names_the_device_availability_and_removed_components() {
    let a = announce(&["wrist"], &[]);
    let removed = BTreeMap::from([("old_label".to_string(), Platform::Sensor)]);
    let v = a.device_config(&a.components(), &removed);
    assert_eq!(v["dev"]["ids"], json!(["edgebind_dev1"]));
    assert_eq!(v["dev"]["name"], "edgebind dev1");
    assert_eq!(v["dev"]["sw"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["dev"]["cu"], "http://10.0.0.7:9464/metrics");
    assert_eq!(v["o"]["name"], "edgebind");
    assert_eq!(v["avty_t"], "edgebind/dev1/status");
    assert_eq!(v["cmps"]["old_label"], json!({"p": "sensor"}));
    assert_eq!(v["cmps"]["wrist_label"]["p"], "sensor");
    let no_url = Announce {
        configuration_url: None,
        ..a
    };
    assert!(no_url.device_config(&[], &BTreeMap::new())["dev"]
        .get("cu")
        .is_none());
}

#[test]
fn a_first_plan_announces_everything_and_records_it() {
    let a = announce(&["wrist"], &[("wrist", "fall")]);
    let (plan, record) = plan(Some(&a), "homeassistant", "homeassistant/status", None);
    let (topic, _) = plan.config.as_ref().unwrap();
    assert_eq!(topic, "homeassistant/device/edgebind_dev1/config");
    assert!(plan.retire.is_empty());
    assert_eq!(plan.birth_topic.as_deref(), Some("homeassistant/status"));
    let record = record.unwrap();
    assert_eq!(record.device_topic, *topic);
    assert_eq!(record.components.len(), 8);
    assert_eq!(
        record.components["wrist_trigger_fall"],
        Platform::BinarySensor
    );
    let msgs = plan.messages();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].retain);
    assert_eq!(msgs[0].qos, Qos::AtLeastOnce);
}

#[test]
fn a_sensor_removed_since_the_last_run_is_sent_for_removal_and_kept_in_the_record() {
    let before = announce(&["wrist", "table"], &[("table", "tap")]);
    let (_, record) = plan(Some(&before), "ha", "ha/status", None);
    let after = announce(&["wrist"], &[]);
    let (plan2, record2) = plan(Some(&after), "ha", "ha/status", record);
    let cmps = &config_of(&plan2)["cmps"];
    assert_eq!(cmps["table_label"], json!({"p": "sensor"}));
    assert_eq!(cmps["table_gaps"], json!({"p": "sensor"}));
    assert_eq!(cmps["table_trigger_tap"], json!({"p": "binary_sensor"}));
    assert_eq!(cmps["wrist_label"]["stat_t"], "edgebind/dev1/wrist/labels");
    // Kept: a Home Assistant that missed this config still removes them from a later one.
    let record2 = record2.unwrap();
    assert!(record2.components.contains_key("table_label"));
    let (plan3, _) = plan(Some(&after), "ha", "ha/status", Some(record2.clone()));
    assert_eq!(
        config_of(&plan3)["cmps"]["table_label"],
        json!({"p": "sensor"})
    );
    // Configured again: announced in full.
    let (plan4, _) = plan(Some(&before), "ha", "ha/status", Some(record2));
    assert_eq!(
        config_of(&plan4)["cmps"]["table_label"]["stat_t"],
        "edgebind/dev1/table/labels"
    );
}

#[test]
fn a_new_device_topic_retires_the_old_one_and_off_retires_the_last() {
    let a = announce(&["wrist"], &[]);
    let (_, record) = plan(Some(&a), "homeassistant", "homeassistant/status", None);
    let (moved, record2) = plan(Some(&a), "ha2", "homeassistant/status", record);
    assert_eq!(moved.retire, ["homeassistant/device/edgebind_dev1/config"]);
    let msgs = moved.messages();
    assert_eq!(msgs.len(), 2);
    assert!(msgs[0].payload.is_empty() && msgs[0].retain);
    assert_eq!(msgs[1].topic, "ha2/device/edgebind_dev1/config");
    let record2 = record2.unwrap();
    assert_eq!(record2.device_topic, "ha2/device/edgebind_dev1/config");
    // Nothing from the old topic is carried over as a removal under the new one.
    assert!(config_of(&moved)["cmps"]
        .as_object()
        .unwrap()
        .values()
        .all(|c| c.get("stat_t").is_some()));
    let (off, kept) = plan(None, "ha2", "homeassistant/status", Some(record2.clone()));
    assert_eq!(off.retire, ["ha2/device/edgebind_dev1/config"]);
    assert!(off.config.is_none() && off.birth_topic.is_none());
    assert_eq!(kept, Some(record2));
}

#[test]
fn the_record_round_trips_and_hostile_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join(RECORD_FILE);
    assert!(record::read(&path).unwrap().is_none());
    let r = Record::new(
        "ha/device/edgebind_x/config".into(),
        BTreeMap::from([("a_label".to_string(), Platform::Sensor)]),
    );
    record::write(&path, &r).unwrap();
    assert_eq!(record::read(&path).unwrap(), Some(r));
    for (bad, why) in [
        ("not json", "expected"),
        (
            r#"{"v":2,"device_topic":"t","components":{}}"#,
            "format version 2",
        ),
        (
            r#"{"v":1,"device_topic":"t","components":{"a":"light"}}"#,
            "unknown variant",
        ),
    ] {
        std::fs::write(&path, bad).unwrap();
        let e = record::read(&path).unwrap_err().to_string();
        assert!(e.contains(RECORD_FILE) && e.contains(why), "{e}");
    }
    std::fs::write(&path, vec![b' '; (1 << 20) + 10]).unwrap();
    let e = record::read(&path).unwrap_err().to_string();
    assert!(e.contains("larger than"), "{e}");
}

fn parsed(dir: &std::path::Path, extra: &str) -> Config {
    let text = format!(
        "[device]\nid = \"dev1\"\n[models]\ndir = \"m\"\n[mqtt]\nurl = \"mqtt://h\"\n{extra}"
    );
    Config::parse(&text, &dir.join("edgebind.toml")).unwrap()
}

fn sensors(names: &[&str]) -> Vec<(Arc<str>, Modality)> {
    names
        .iter()
        .map(|n| (Arc::from(*n), Modality::Imu))
        .collect()
}

#[test]
fn prepare_records_removes_and_retires_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let on = "[home_assistant]\ndiscovery = true\nstate_dir = \"st\"\n";
    let config = parsed(dir.path(), on);
    let first = prepare(&config, &sensors(&["a", "b"]), &[])
        .unwrap()
        .unwrap();
    assert!(config_of(&first)["cmps"]["b_label"]["stat_t"].is_string());
    let path = dir.path().join("st").join(RECORD_FILE);
    assert!(record::read(&path)
        .unwrap()
        .unwrap()
        .components
        .contains_key("b_gaps"));
    let second = prepare(&config, &sensors(&["a"]), &[]).unwrap().unwrap();
    assert_eq!(config_of(&second)["cmps"]["b_gaps"], json!({"p": "sensor"}));
    // Off: the device is removed at each start while the record exists.
    let off = parsed(dir.path(), "[home_assistant]\nstate_dir = \"st\"\n");
    let plan = prepare(&off, &sensors(&["a"]), &[]).unwrap().unwrap();
    assert_eq!(plan.retire, ["homeassistant/device/edgebind_dev1/config"]);
    assert!(plan.config.is_none());
    assert!(path.is_file());
    // Off and never on: nothing at all.
    let never = parsed(dir.path(), "[home_assistant]\nstate_dir = \"other\"\n");
    assert!(prepare(&never, &sensors(&["a"]), &[]).unwrap().is_none());
}

#[test]
fn prepare_replaces_an_unreadable_record_and_names_an_unwritable_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = parsed(
        dir.path(),
        "[home_assistant]\ndiscovery = true\nstate_dir = \"st\"\n",
    );
    std::fs::create_dir_all(dir.path().join("st")).unwrap();
    let path = dir.path().join("st").join(RECORD_FILE);
    std::fs::write(&path, "{\"v\": 1, \"device_topic\": ").unwrap();
    let plan = prepare(&config, &sensors(&["a"]), &[]).unwrap().unwrap();
    assert!(plan.retire.is_empty());
    assert!(record::read(&path).unwrap().is_some(), "replaced");
    // A state_dir that is a file: the error names the key and the path.
    let blocked = parsed(
        dir.path(),
        &format!(
            "[home_assistant]\ndiscovery = true\nstate_dir = \"{}\"\n",
            path.display()
        ),
    );
    let chain = format!(
        "{:#}",
        anyhow::Error::from(prepare(&blocked, &sensors(&["a"]), &[]).unwrap_err())
    );
    assert!(
        chain.starts_with("home_assistant.state_dir: ") && chain.contains(RECORD_FILE),
        "{chain}"
    );
}

#[test]
fn the_configuration_url_defaults_to_a_specific_metrics_address() {
    let dir = tempfile::tempdir().unwrap();
    let url = |extra: &str| configuration_url(&parsed(dir.path(), extra));
    assert_eq!(url(""), None);
    assert_eq!(
        url("[metrics]\nlisten = \"192.168.1.20:9464\"\n"),
        Some("http://192.168.1.20:9464/metrics".into())
    );
    assert_eq!(url("[metrics]\nlisten = \"0.0.0.0:9464\"\n"), None);
    assert_eq!(
        url("[metrics]\nlisten = \"0.0.0.0:9464\"\n[home_assistant]\nconfiguration_url = \"https://x.example/\"\n"),
        Some("https://x.example/".into())
    );
}

#[test]
fn a_config_larger_than_a_packet_is_refused_before_anything_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let config = parsed(
        dir.path(),
        "[home_assistant]\ndiscovery = true\nstate_dir = \"st\"\n",
    )
    .with_max_packet_bytes(32_768);
    let names: Vec<String> = (0..20).map(|i| format!("sensor-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let e = prepare(&config, &sensors(&refs), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "mqtt.max_packet_bytes: the Home Assistant device config of 20 sensor(s) is "
        ) && e.contains("more than 32768 bytes allow"),
        "{e}"
    );
    assert!(!dir.path().join("st").join(RECORD_FILE).exists());
    // Fourteen fit in the smallest packet limit `check` accepts; the default limit takes hundreds.
    assert!(prepare(&config, &sensors(&refs[..14]), &[]).is_ok());
    assert_eq!(too_large(1 << 19, 250, 1 << 20), None);
}

trait WithPacket {
    fn with_max_packet_bytes(self, n: usize) -> Self;
}

impl WithPacket for Config {
    fn with_max_packet_bytes(mut self, n: usize) -> Self {
        self.mqtt.max_packet_bytes = n;
        self
    }
}
