//! Triggers in the running daemon (#17), end to end: the daemon binary replays IMU recordings
//! whose ground truth is known (tools/make_recordings.py: which seconds are shaking, so which
//! windows are ≥ 60 % shaking) through the tiny encoder on the real ONNX Runtime, and a
//! subscriber on a real mosquitto sees the `events` and retained `triggers/<name>` messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// One IMU replay named `imu0` of `recording` (at full speed unless `speed` says otherwise),
/// with `triggers` appended.
fn config(device: &str, port: u16, recording: &str, speed: &str, triggers: &str) -> String {
    format!(
        "{base}\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu0\"\npath = \"{path}\"\n\
         speed = \"{speed}\"\n\n{triggers}\n",
        base = base_config(device, port),
        path = fixture(&format!("recordings/{recording}")).display(),
    )
}

/// A concept trigger on "device shaking": the recordings' windows ≥ 60 % shaking score ≥ 0.9,
/// those ≤ 40 % at most 0.23 (printed by `tools/make_recordings.py --only triggers`).
const SHAKING: &str = r#"
[[triggers.sensors.imu0]]
name = "shaking"
kind = "concept"
labels = ["device shaking"]
on_threshold = 0.6
off_threshold = 0.5
min_windows = 2
end_after_windows = 2
"#;

fn events(sub: &Subscriber, device: &str) -> Vec<serde_json::Value> {
    sub.on(&format!("{device}/imu0/events"))
        .iter()
        .map(Seen::json)
        .collect()
}

fn of_type<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// Runs the daemon on `text` until its replay ends; asserts a clean exit.
fn run_to_end(dir: &Path, text: &str) {
    let path = write_config(dir, text);
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "daemon failed: {stderr}");
}

#[test]
fn still_shake_still_gives_one_event_from_the_first_to_the_last_shaking_window() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/trig1/#");
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        "trig1",
        broker.port(),
        "imu_still_shake_still_100hz.csv",
        "max",
        SHAKING,
    );
    run_to_end(dir.path(), &text);
    assert!(
        sub.wait_for(Duration::from_secs(20), |m| m
            .iter()
            .any(|s| s.topic.ends_with("/events") && s.json()["type"] == "end")),
        "no end event"
    );
    let all = events(&sub, "trig1");
    let (starts, ends) = (of_type(&all, "start"), of_type(&all, "end"));
    assert_eq!((starts.len(), ends.len()), (1, 1), "{all:#?}");
    let (start, end) = (starts[0], ends[0]);
    // Shaking 8-16 s, 5 s windows every 1 s: windows 6-13 are ≥ 60 % shaking. The event starts
    // at its second "on" window (min_windows 2) and ends at the second "off" one.
    assert_eq!(start["first_seq"], 6);
    assert_eq!(start["seq"], 7);
    assert_eq!(end["first_seq"], 6);
    assert_eq!(end["last_seq"], 13);
    assert_eq!(end["seq"], 15);
    assert_eq!(end["end_reason"], "below_threshold");
    assert_eq!(end["windows"], 8);
    assert_eq!(start["event_id"], end["event_id"]);
    assert!(all.iter().all(|e| e["event_id"] == start["event_id"]));
    assert!(end["peak_score"].as_f64().unwrap() > 0.9);
    assert!(end["end_utc_ns"].as_i64().unwrap() > end["start_utc_ns"].as_i64().unwrap());
    // The retained state went active with the start and back to idle with the end.
    let states: Vec<String> = sub
        .on("trig1/imu0/triggers/shaking")
        .iter()
        .map(|s| s.json()["state"].as_str().unwrap().to_string())
        .collect();
    assert!(states.contains(&"active".to_string()), "{states:?}");
    assert_eq!(
        states.last().map(String::as_str),
        Some("idle"),
        "{states:?}"
    );
    // Retained on the broker: a late subscriber gets the current state at once.
    let late = Subscriber::start(broker.port(), "edgebind/trig1/imu0/triggers/#");
    assert!(late.wait_for(Duration::from_secs(10), |m| m
        .iter()
        .any(|s| s.retain && s.json()["state"] == "idle")));
}
