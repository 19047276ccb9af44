//! End to end against real components: the daemon binary replays IMU recordings through the
//! stand-in encoders on the real ONNX Runtime and publishes to a real mosquitto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

fn schema_for(def: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("docs/mqtt.schema.json")).unwrap();
    let mut schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let obj = schema.as_object_mut().unwrap();
    obj.remove("oneOf");
    obj.insert("$ref".into(), format!("#/$defs/{def}").into());
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, v: &serde_json::Value, what: &str) {
    let errors: Vec<String> = validator.iter_errors(v).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the schema: {errors:?}\n{v}"
    );
}

#[test]
fn daemon_publishes_every_window_of_a_replay_in_order() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/e2e/#");
    let dir = tempfile::tempdir().unwrap();
    // Still: 7 s at 200 Hz → (1400-1000)/200+1 = 3 windows. Shaking: 7 s at 400 Hz → 3 windows.
    let config = format!(
        r#"{base}
[[sources]]
type = "imu_replay"
name = "still"
path = "{still}"
speed = "max"

[[sources]]
type = "imu_replay"
name = "shaking"
path = "{shaking}"
sample_rate_hz = 400.0
speed = "max"
"#,
        base = base_config("e2e", broker.port()),
        still = fixture("recordings/imu_still_200hz.csv").display(),
        shaking = fixture("recordings/imu_shaking_400hz.npy").display(),
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "daemon failed: {stderr}");
    assert!(
        sub.wait_for(Duration::from_secs(5), |m| m
            .iter()
            .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")),
        "no offline status"
    );

    let embedding_schema = schema_for("embedding");
    let labels_schema = schema_for("labels");
    let state_schema = schema_for("state");
    let mut by_sensor: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for m in sub.on("/embedding") {
        let v = m.json();
        assert_valid(&embedding_schema, &v, &m.topic);
        assert!(!m.retain);
        by_sensor
            .entry(v["sensor"].as_str().unwrap().to_string())
            .or_default()
            .push(v);
    }
    assert_eq!(by_sensor.len(), 2, "{:?}", by_sensor.keys());
    for (sensor, msgs) in &by_sensor {
        let seqs: Vec<u64> = msgs.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![0, 1, 2], "{sensor}: seq");
        for v in msgs {
            let e: Vec<f64> = v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(e.len(), 1024);
            let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{sensor}: norm {norm}");
            assert_eq!(v["model"]["provider"], "cpu");
            assert_eq!(v["modality"], "imu");
            let want = if sensor == "still" {
                "device at rest"
            } else {
                "device shaking"
            };
            assert_eq!(top_label(v), want, "{sensor} seq {}", v["seq"]);
        }
        // Windows are 5 s long and 1 s apart in capture time.
        let starts: Vec<i64> = msgs
            .iter()
            .map(|v| v["window"]["start_utc_ns"].as_i64().unwrap())
            .collect();
        for w in starts.windows(2) {
            assert_eq!(w[1] - w[0], 1_000_000_000, "{sensor}: hop");
        }
        let w = &msgs[0]["window"];
        assert_eq!(
            w["end_utc_ns"].as_i64().unwrap() - w["start_utc_ns"].as_i64().unwrap(),
            5_000_000_000
        );
    }
    let labels = sub.on("/labels");
    assert_eq!(labels.len(), 6);
    for m in &labels {
        assert_valid(&labels_schema, &m.json(), &m.topic);
    }
    // The final retained state counts exactly the windows published.
    for sensor in ["still", "shaking"] {
        let states = sub.on(&format!("/{sensor}/state"));
        let last = states.last().expect("state message").json();
        assert_valid(&state_schema, &last, "state");
        assert_eq!(last["windows_total"], 3, "{sensor}: {last}");
        assert_eq!(last["connected"], false);
        // A replay that played to its end says so: not a device that went away.
        assert_eq!(last["finished"], true, "{sensor}: {last}");
    }
    let status: Vec<Vec<u8>> = sub.on("/status").into_iter().map(|m| m.payload).collect();
    assert_eq!(status.first().map(Vec::as_slice), Some(&b"online"[..]));
}

#[test]
fn malformed_csv_rows_are_reported_by_line_and_the_rest_is_published() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/badrow/#");
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(fixture("recordings/imu_still_200hz.csv")).unwrap();
    let mut lines: Vec<String> = original.lines().map(String::from).collect();
    lines[10] = "0.045,oops,0,9.8,0,0".to_string(); // line 11 of the file
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, lines.join("\n")).unwrap();
    let config = format!(
        "{}\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nsample_rate_hz = 200.0\nspeed = \"max\"\n",
        base_config("badrow", broker.port()),
        csv.display()
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("line=11") && stderr.contains("acc_x"),
        "the bad row is not named: {stderr}"
    );
    // The bad row is a missing sample, not a shift in time: 1400 rows at 200 Hz still make 3
    // windows of 1000 samples 1 s apart, and the first ones count the gap.
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .filter(|s| s.topic.ends_with("/embedding"))
        .count()
        == 3));
    let msgs: Vec<serde_json::Value> = sub.on("/embedding").iter().map(Seen::json).collect();
    assert_eq!(msgs[0]["window"]["gaps"], 1, "{}", msgs[0]["window"]);
    assert_eq!(msgs[2]["window"]["gaps"], 0);
    assert_eq!(
        msgs[1]["window"]["start_utc_ns"].as_i64().unwrap()
            - msgs[0]["window"]["start_utc_ns"].as_i64().unwrap(),
        1_000_000_000
    );
}

#[test]
fn sigterm_while_replaying_stops_cleanly_and_publishes_every_window() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/term/#");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nspeed = \"realtime\"\nloop = true\nhop_ms = 250\n",
        base_config("term", broker.port()),
        fixture("recordings/imu_demo_200hz.csv").display()
    );
    let path = write_config(dir.path(), &config);
    let mut child = edgebind()
        .arg("run")
        .arg("--config")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn_guarded();
    assert!(
        sub.wait_for(Duration::from_secs(20), |m| m
            .iter()
            .filter(|s| s.topic.ends_with("/embedding"))
            .count()
            >= 3),
        "no embeddings before the signal"
    );
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let t0 = std::time::Instant::now();
    // Exit 0 means it stopped within its shutdown timeout (10 s) with everything delivered
    // (past the timeout the exit code is 1); how much sooner depends on the machine's load.
    let exit = wait_with_timeout(&mut child, Duration::from_secs(30));
    let waited = t0.elapsed();
    let exit = exit.expect("daemon did not stop within 30 s of SIGTERM");
    assert!(exit.success(), "exit status {exit:?} after {waited:?}");
    assert!(sub.wait_for(Duration::from_secs(3), |m| m
        .iter()
        .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")));
    let seqs: Vec<u64> = sub
        .on("/embedding")
        .iter()
        .map(|m| m.json()["seq"].as_u64().unwrap())
        .collect();
    let n = seqs.len() as u64;
    assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "gap or reorder in seq");
    let last_state = sub.on("/imu/state").last().unwrap().json();
    assert_eq!(
        last_state["windows_total"].as_u64().unwrap(),
        n,
        "every window cut before the stop must be published: {last_state}"
    );
}
