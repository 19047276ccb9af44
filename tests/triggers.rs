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

/// The schema of one kind of message (`docs/mqtt.schema.json`, `$defs/<def>`).
fn schema_for(def: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("docs/mqtt.schema.json")).unwrap();
    let mut schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let obj = schema.as_object_mut().unwrap();
    obj.remove("oneOf");
    obj.insert("$ref".into(), format!("#/$defs/{def}").into());
    jsonschema::validator_for(&schema).unwrap()
}

/// Asserts every message on topics ending in `suffix` matches `def`.
fn all_valid(sub: &Subscriber, suffix: &str, def: &str) -> usize {
    let validator = schema_for(def);
    let seen = sub.on(suffix);
    for m in &seen {
        let v = m.json();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{} does not match {def}: {errors:?}\n{v}",
            m.topic
        );
    }
    seen.len()
}

fn events(sub: &Subscriber, device: &str) -> Vec<serde_json::Value> {
    sub.on(&format!("{device}/imu0/events"))
        .iter()
        .map(Seen::json)
        .collect()
}

fn of_type<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// Waits for `device`'s `offline` status: the daemon publishes it last, after every other
/// message was acknowledged, so everything it published has reached the subscriber by then.
fn wait_offline(sub: &Subscriber, device: &str) {
    let topic = format!("edgebind/{device}/status");
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| m
            .iter()
            .any(|s| s.topic == topic && s.payload == b"offline")),
        "{device} never went offline"
    );
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
    wait_offline(&sub, "trig1");
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
    assert_eq!(all_valid(&sub, "/events", "trigger_event"), all.len());
    assert!(all_valid(&sub, "/triggers/shaking", "trigger_state") >= 2);
    // Retained on the broker: a late subscriber gets the current state at once.
    let late = Subscriber::start(broker.port(), "edgebind/trig1/imu0/triggers/#");
    assert!(late.wait_for(Duration::from_secs(10), |m| m
        .iter()
        .any(|s| s.retain && s.json()["state"] == "idle")));
}

/// Distinct messages: the outbox delivers at least once, so a message may come again after a
/// restart, byte for byte; the story is told by the distinct ones.
fn distinct(events: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = Vec::new();
    for e in events {
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

#[test]
fn a_daemon_killed_mid_event_ends_that_event_at_the_next_start() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/kill/#");
    let dir = tempfile::tempdir().unwrap();
    // Real time: the event starts 12 s in (window 7 ends then); the replay lasts 24 s.
    let text = config(
        "kill",
        broker.port(),
        "imu_still_shake_still_100hz.csv",
        "realtime",
        SHAKING,
    );
    let path = write_config(dir.path(), &text);
    let mut daemon = spawn_daemon(&path, &dir.path().join("first.log"), &[]);
    assert!(
        sub.wait_for(Duration::from_secs(90), |m| m
            .iter()
            .any(|s| s.topic.ends_with("/events") && s.json()["type"] == "start")),
        "no start within 90 s"
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(
        of_type(&events(&sub, "kill"), "end").is_empty(),
        "the event ended before the kill; the test proves nothing"
    );
    assert!(dir.path().join("triggers/imu0.state").is_file());
    // The next start replays a still recording: nothing shakes, the open event is closed.
    let still = config(
        "kill",
        broker.port(),
        "imu_still_shake_still_100hz.csv",
        "max",
        SHAKING,
    )
    .replace("imu_still_shake_still_100hz.csv", "imu_still_200hz.csv");
    run_to_end(dir.path(), &still);
    // Two `offline`s: the Last Will of the killed daemon and the clean stop of the second.
    assert!(sub.wait_for(Duration::from_secs(30), |m| m
        .iter()
        .filter(|s| s.topic == "edgebind/kill/status" && s.payload == b"offline")
        .count()
        >= 2));
    let all = distinct(events(&sub, "kill"));
    let (starts, ends) = (of_type(&all, "start"), of_type(&all, "end"));
    assert_eq!((starts.len(), ends.len()), (1, 1), "{all:#?}");
    let (start, end) = (starts[0], ends[0]);
    assert_eq!(end["event_id"], start["event_id"]);
    assert_eq!(end["end_reason"], "restart");
    assert_eq!(end["seq"], serde_json::Value::Null);
    assert_eq!(end["first_seq"], 6);
    assert_eq!(start["first_seq"], 6);
    all_valid(&sub, "/events", "trigger_event");
    let states = sub.on("kill/imu0/triggers/shaking");
    let last = states.last().unwrap().json();
    assert_ne!(last["state"], "active", "{last}");
}

#[test]
fn novelty_fires_on_the_first_unusual_segment_and_not_on_its_repeat() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/nov/#");
    let dir = tempfile::tempdir().unwrap();
    let novelty = r#"
[[triggers.sensors.imu0]]
name = "new_motion"
kind = "novelty"
on_threshold = 0.3
off_threshold = 0.2
min_windows = 2
warmup_windows = 4
"#;
    run_to_end(
        dir.path(),
        &config(
            "nov",
            broker.port(),
            "imu_novelty_100hz.csv",
            "max",
            novelty,
        ),
    );
    // Shaking 12-20 s and again 32-40 s: windows 8-19 touch the first segment, 28-39 its repeat.
    wait_offline(&sub, "nov");
    let all = events(&sub, "nov");
    let starts = of_type(&all, "start");
    assert!(!starts.is_empty(), "no novelty event: {all:#?}");
    for s in &starts {
        let first = s["first_seq"].as_u64().unwrap();
        assert!(
            (8..=19).contains(&first),
            "an event outside the first segment: {s}"
        );
    }
    assert_eq!(of_type(&all, "end").len(), starts.len(), "{all:#?}");
}

#[test]
fn a_constant_replay_trips_stuck_and_a_live_one_does_not() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/#");
    // A frozen IMU repeats one sample: each of the 6 channels is constant, so a third of the
    // model input sits at its minimum or maximum (a live window: 2 values of 12,000).
    let stuck = r#"
[[triggers.sensors.imu0]]
name = "stuck"
kind = "stuck"
stuck_windows = 3
max_saturated_fraction = 0.3
"#;
    for (device, recording) in [
        ("stuck", "imu_constant_100hz.csv"),
        ("live", "imu_still_shake_still_100hz.csv"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        run_to_end(
            dir.path(),
            &config(device, broker.port(), recording, "max", stuck),
        );
        wait_offline(&sub, device);
    }
    let stuck_events = events(&sub, "edgebind/stuck");
    let starts = of_type(&stuck_events, "start");
    assert_eq!(starts.len(), 1, "{stuck_events:#?}");
    assert_eq!(starts[0]["trigger_kind"], "stuck");
    assert_eq!(starts[0]["stuck_reason"], "saturated_input");
    // 12 s of one repeated sample: windows 0-7, every one stuck, so one event from window 0.
    assert_eq!(starts[0]["first_seq"], 0);
    all_valid(&sub, "/events", "trigger_event");
    all_valid(&sub, "/triggers/stuck", "trigger_state");
    // The tiny stand-in encoder gives every still window the same embedding to 1e-7 (a real
    // encoder does not on sensor noise), so `repeated_embedding` fires on the live recording
    // too; the input checks, fed by the inference worker's statistics, do not.
    let live = events(&sub, "edgebind/live");
    for e in &live {
        assert_eq!(e["stuck_reason"], "repeated_embedding", "{e}");
    }
}

/// The unit embeddings the daemon published for `seqs` of `sensor`.
fn embeddings_of(
    sub: &Subscriber,
    device: &str,
    seqs: std::ops::RangeInclusive<u64>,
) -> Vec<Vec<f32>> {
    let mut rows = Vec::new();
    for seq in seqs {
        let m = sub
            .on(&format!("{device}/imu0/embedding"))
            .into_iter()
            .map(|s| s.json())
            .find(|j| j["seq"] == seq)
            .unwrap_or_else(|| panic!("no embedding of window {seq}"));
        rows.push(
            m["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect(),
        );
    }
    rows
}

#[test]
fn an_example_set_learned_from_one_segment_fires_on_later_repeats() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/#");
    let dir = tempfile::tempdir().unwrap();
    // Learn: the windows fully inside the shaking of one recording (8-16 s: windows 8-11).
    run_to_end(
        dir.path(),
        &config(
            "learn",
            broker.port(),
            "imu_still_shake_still_100hz.csv",
            "max",
            "",
        ),
    );
    wait_offline(&sub, "learn");
    // `edgebind triggers remember` reads the embedding messages as mosquitto_sub prints them.
    let captured: String = sub
        .on("learn/imu0/embedding")
        .iter()
        .map(|m| format!("{}\n", String::from_utf8_lossy(&m.payload)))
        .collect();
    let input = dir.path().join("captured.jsonl");
    std::fs::write(&input, captured).unwrap();
    let examples = dir.path().join("examples");
    let out = run(edgebind()
        .args(["triggers", "remember", "--set", "shake", "--sensor", "imu0"])
        .args(["--from-seq", "8", "--to-seq", "11", "--examples-dir"])
        .arg(&examples)
        .arg(&input));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set = npy_f32_2d(&examples.join("imu0/shake.npy"));
    let want = embeddings_of(&sub, "learn", 8..=11);
    assert_eq!(set.nrows(), 4);
    assert_eq!(set.row(3).to_vec(), want[3]);
    // Recognise: another recording with two shaking segments (12-20 s and 32-40 s).
    let trigger = format!(
        r#"
[triggers]
examples_dir = "{}"

[[triggers.sensors.imu0]]
name = "shake_again"
kind = "example"
example_set = "shake"
on_threshold = 0.8
off_threshold = 0.7
min_windows = 2
end_after_windows = 2
"#,
        examples.display()
    );
    let run_dir = tempfile::tempdir().unwrap();
    run_to_end(
        run_dir.path(),
        &config(
            "recognise",
            broker.port(),
            "imu_novelty_100hz.csv",
            "max",
            &trigger,
        ),
    );
    wait_offline(&sub, "recognise");
    let all = events(&sub, "edgebind/recognise");
    let spans: Vec<(u64, u64)> = of_type(&all, "end")
        .iter()
        .map(|e| {
            (
                e["first_seq"].as_u64().unwrap(),
                e["last_seq"].as_u64().unwrap(),
            )
        })
        .collect();
    // Windows ≥ 60 % shaking: 10-17 and 30-37.
    assert_eq!(spans, vec![(10, 17), (30, 37)], "{all:#?}");
    assert_eq!(of_type(&all, "start").len(), 2);
}

#[test]
fn check_names_every_trigger_problem_and_run_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let examples = dir.path().join("examples");
    std::fs::create_dir_all(examples.join("imu0")).unwrap();
    // An example set of the wrong width (the tiny models' embeddings have 1024 values).
    ndarray_npy::write_npy(
        examples.join("imu0/narrow.npy"),
        &ndarray::Array2::<f32>::ones((2, 3)),
    )
    .unwrap();
    std::fs::write(examples.join("imu0/garbage.npy"), b"\x93NUMPY not really").unwrap();
    let triggers = format!(
        r#"
[triggers]
examples_dir = "{}"

[[triggers.sensors.imu0]]
name = "shaking"
kind = "concept"
labels = ["device shaking", "a word the bank has not got"]
on_threshold = 0.3
off_threshold = 0.5

[[triggers.sensors.imu0]]
name = "shaking"
kind = "stuck"

[[triggers.sensors.imu9]]
name = "x"
kind = "novelty"
on_threshold = 0.4
"#,
        examples.display()
    );
    let path = write_config(
        dir.path(),
        &config("bad", 1, "imu_still_200hz.csv", "max", &triggers),
    );
    for cmd in ["check", "run"] {
        let out = run(edgebind().arg(cmd).arg("--config").arg(&path));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{cmd}: {err}");
        for want in [
            "triggers.sensors.imu0[0].labels[1]: \"a word the bank has not got\" is not in the concept bank",
            "triggers.sensors.imu0[0].off_threshold: must be at most on_threshold (0.3), got 0.5",
            "triggers.sensors.imu0[1].name",
            "triggers.sensors.imu9: \"imu9\" is not a configured sensor or scene (sensors: imu0)",
            "imu0/garbage.npy",
        ] {
            assert!(err.contains(want), "{cmd}: missing {want:?} in:\n{err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_scene_fuses_two_sensors_per_slot_and_its_triggers_fire() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/scene1/#");
    let dir = tempfile::tempdir().unwrap();
    let recording = fixture("recordings/imu_still_shake_still_100hz.csv");
    let text = format!(
        r#"{base}
[[sources]]
type = "imu_replay"
name = "left"
path = "{path}"
speed = "max"

[[sources]]
type = "imu_replay"
name = "right"
path = "{path}"
speed = "max"

[scene]
name = "scene"
members = ["left", "right"]
slot_ms = 1000

[[triggers.sensors.scene]]
name = "both_shaking"
kind = "concept"
labels = ["device shaking"]
on_threshold = 0.6
off_threshold = 0.5
"#,
        base = base_config("scene1", broker.port()),
        path = recording.display(),
    );
    run_to_end(dir.path(), &text);
    wait_offline(&sub, "scene1");
    let scenes: Vec<serde_json::Value> = sub
        .on("scene1/scene/embedding")
        .iter()
        .map(Seen::json)
        .collect();
    assert!(all_valid(&sub, "scene1/scene/embedding", "scene") > 0);
    // 20 windows per sensor, each ending in one 1 s slot: both sensors' window k end within a
    // few ms of each other, so most slots hold both.
    let fused: Vec<&serde_json::Value> = scenes
        .iter()
        .filter(|s| s["members"].as_array().unwrap().len() == 2)
        .collect();
    assert!(
        fused.len() >= 10,
        "{} of {} slots fused",
        fused.len(),
        scenes.len()
    );
    for s in &fused {
        let members = s["members"].as_array().unwrap();
        assert_eq!(members[0]["sensor"], "left");
        assert_eq!(members[1]["sensor"], "right");
        for m in members {
            let skew = m["skew_ms"].as_f64().unwrap();
            assert!((0.0..1000.0).contains(&skew), "{s}");
        }
        let e: Vec<f64> = s["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let norm = e.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
    }
    let shaking = scenes
        .iter()
        .filter(|s| s["labels"][0]["label"] == "device shaking")
        .count();
    assert!(shaking >= 6, "{shaking} shaking scenes");
    let events: Vec<serde_json::Value> = sub
        .on("scene1/scene/events")
        .iter()
        .map(Seen::json)
        .collect();
    assert_eq!(of_type(&events, "start").len(), 1, "{events:#?}");
    assert_eq!(of_type(&events, "end").len(), 1, "{events:#?}");
    assert_eq!(events[0]["sensor"], "scene");
    all_valid(&sub, "scene1/scene/events", "trigger_event");
}

#[test]
fn a_corrupt_state_file_is_named_in_the_log_and_the_triggers_start_afresh() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/corrupt/#");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("triggers")).unwrap();
    let state = dir.path().join("triggers/imu0.state");
    // A header that promises far more body than there is, then garbage.
    let mut bytes = b"EBTRIGS\n".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0xAB; 64]);
    std::fs::write(&state, &bytes).unwrap();
    let text = config(
        "corrupt",
        broker.port(),
        "imu_still_shake_still_100hz.csv",
        "max",
        SHAKING,
    );
    let path = write_config(dir.path(), &text);
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "daemon failed: {stderr}");
    assert!(
        stderr.contains("trigger state cannot be used") && stderr.contains("imu0.state"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    wait_offline(&sub, "corrupt");
    let all = events(&sub, "corrupt");
    assert_eq!(of_type(&all, "start").len(), 1, "{all:#?}");
    assert_eq!(of_type(&all, "end").len(), 1, "{all:#?}");
    // Replaced by a state the next start can read.
    let saved = std::fs::read(&state).unwrap();
    assert_ne!(saved, bytes);
    assert!(saved.starts_with(b"EBTRIGS\n"));
}
