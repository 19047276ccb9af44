//! The status view and its document, fed with real events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::board::{StatusBoard, HISTORY_POINTS, LABELS_PER_POINT, MAX_TRIGGERS};
use super::doc::StatusDoc;
use crate::concepts::Match;
use crate::output::{EmbeddedWindow, EncoderInfo, Event, SensorState, WindowLatency, WindowSpan};
use crate::telemetry::{DropReason, Telemetry};
use crate::time::Timestamp;
use crate::triggers::{Phase, TriggerKind, TriggerState};
use crate::Modality;

const T0_UTC_NS: i64 = 1_800_000_000_000_000_000;

fn sensors() -> Vec<(Arc<str>, Modality)> {
    vec![
        (Arc::from("imu-wrist"), Modality::Imu),
        (Arc::from("door"), Modality::Thermal),
    ]
}

fn window(t: &Telemetry, sensor: &str, seq: u64, labels: &[(&str, f32)]) -> Event {
    let at = |ms: u64| Timestamp {
        mono_ns: ms * 1_000_000,
        utc_ns: T0_UTC_NS + (ms * 1_000_000) as i64,
    };
    Event::Embedded(Arc::new(EmbeddedWindow {
        sensor: Arc::from(sensor),
        modality: Modality::Imu,
        window: WindowSpan {
            seq,
            start: at(seq * 1000),
            end: at(seq * 1000 + 5000),
            sample_count: 2000,
            gaps: seq % 2,
        },
        encoder: Arc::new(EncoderInfo {
            name: "tiny".into(),
            sha256: "00".into(),
            provider: "cpu".into(),
            ort_version: "1.31.1".into(),
        }),
        embedding: vec![0.5; 4],
        norm: 2.0,
        reused_from_seq: None,
        input: None,
        labels: labels
            .iter()
            .map(|(l, s)| Match {
                label: (*l).to_string(),
                score: *s,
            })
            .collect(),
        latency: WindowLatency {
            preprocess_ms: 1.0,
            queue_ms: 0.0,
            inference_ms: 1.0,
        },
        window_end_age: Duration::from_millis(2),
        emitted_at: Instant::now(),
        stats: t.stream(sensor),
    }))
}

fn state(t: &Telemetry, sensor: &str) -> Event {
    Event::State(Arc::new(SensorState::read(
        t,
        &Arc::from(sensor),
        Modality::Imu,
    )))
}

fn doc(board: &StatusBoard, now: Instant) -> Value {
    serde_json::to_value(StatusDoc::new(board, now)).unwrap_or_default()
}

fn sensor<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["sensors"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn a_new_board_lists_every_configured_sensor_as_starting() {
    let t0 = Instant::now();
    let board = StatusBoard::new("dev", &sensors(), t0);
    let d = doc(&board, t0 + Duration::from_secs(3));
    assert_eq!(d["device"], "dev");
    assert_eq!(d["uptime_s"], 3);
    let names: Vec<&Value> = d["sensors"]
        .as_array()
        .map(|a| a.iter().map(|s| &s["name"]).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["imu-wrist", "door"]);
    let imu = sensor(&d, "imu-wrist");
    assert_eq!(imu["state"], "starting");
    assert_eq!(imu["modality"], "imu");
    assert_eq!(imu["last"], Value::Null);
    assert_eq!(imu["windows_per_s"], Value::Null);
    assert_eq!(d["triggers"], json!([]));
    assert_eq!(d["stats_age_s"], Value::Null);
}

#[test]
fn a_window_shows_its_labels_and_joins_the_chart_history() {
    let t = Telemetry::new(["imu-wrist", "door"]);
    let t0 = Instant::now();
    let mut board = StatusBoard::new("dev", &sensors(), t0);
    let labels = [
        ("walking", 0.5),
        ("running", 0.4),
        ("at rest", 0.3),
        ("x", 0.2),
    ];
    board.apply(&window(&t, "imu-wrist", 7, &labels), t0);
    let d = doc(&board, t0 + Duration::from_millis(2500));
    let last = &sensor(&d, "imu-wrist")["last"];
    assert_eq!(last["seq"], 7);
    assert_eq!(last["window_end_utc_ms"], T0_UTC_NS / 1_000_000 + 12_000);
    assert_eq!(last["age_s"], 2.5);
    assert_eq!(last["gaps"], 1);
    assert_eq!(last["provider"], "cpu");
    assert_eq!(last["labels"][0], json!({"label": "walking", "score": 0.5}));
    assert_eq!(last["labels"].as_array().map(Vec::len), Some(4));
    // The chart keeps the best few labels of each window.
    let history = &sensor(&d, "imu-wrist")["history"];
    assert_eq!(history.as_array().map(Vec::len), Some(1));
    assert_eq!(
        history[0]["labels"].as_array().map(Vec::len),
        Some(LABELS_PER_POINT)
    );
    assert_eq!(sensor(&d, "door")["last"], Value::Null);
}

#[test]
fn the_chart_history_is_a_bounded_ring_that_keeps_the_newest_windows() {
    let t = Telemetry::new(["imu-wrist"]);
    let t0 = Instant::now();
    let mut board = StatusBoard::new("dev", &sensors(), t0);
    let extra = 25;
    for seq in 0..(HISTORY_POINTS as u64 + extra) {
        board.apply(&window(&t, "imu-wrist", seq, &[("a", 0.3)]), t0);
    }
    let history = &board.sensors[0].history;
    assert_eq!(history.len(), HISTORY_POINTS);
    let first_end_ms = T0_UTC_NS / 1_000_000 + (extra as i64) * 1000 + 5000;
    assert_eq!(history.front().map(|p| p.t_utc_ms), Some(first_end_ms));
}

#[test]
fn events_of_sensors_not_configured_are_ignored() {
    let t = Telemetry::new(["ghost"]);
    let t0 = Instant::now();
    let mut board = StatusBoard::new("dev", &sensors(), t0);
    board.apply(&window(&t, "ghost", 1, &[("a", 0.3)]), t0);
    board.apply(&state(&t, "ghost"), t0);
    let d = doc(&board, t0);
    assert_eq!(d["sensors"].as_array().map(Vec::len), Some(2));
    assert!(!d.to_string().contains("ghost"));
}

#[test]
fn state_reports_give_the_state_counters_and_the_windows_rate_between_them() {
    let t = Telemetry::new(["imu-wrist", "door"]);
    let stats = t.stream("imu-wrist");
    stats.set_connected(true, 400.0);
    for _ in 0..4 {
        stats.add_window(3);
    }
    stats.add_drops(DropReason::InferenceBacklog, 2);
    let t0 = Instant::now();
    let mut board = StatusBoard::new("dev", &sensors(), t0);
    board.apply(&state(&t, "imu-wrist"), t0);
    let first = doc(&board, t0);
    assert_eq!(sensor(&first, "imu-wrist")["state"], "connected");
    assert_eq!(sensor(&first, "imu-wrist")["windows_per_s"], Value::Null);
    for _ in 0..10 {
        stats.add_window(0);
    }
    stats.set_connected(false, 400.0);
    board.apply(&state(&t, "imu-wrist"), t0 + Duration::from_secs(4));
    let d = doc(&board, t0 + Duration::from_secs(5));
    let imu = sensor(&d, "imu-wrist");
    assert_eq!(imu["state"], "disconnected");
    assert_eq!(imu["windows_per_s"], 2.5);
    assert_eq!(imu["windows_total"], 14);
    assert_eq!(imu["gap_samples_total"], 12);
    assert_eq!(imu["sample_rate_hz"], 400.0);
    assert_eq!(imu["drops_total"], 2);
    assert_eq!(imu["drops"], json!({"inference_backlog": 2}));
    assert_eq!(imu["report_age_s"], 1.0);
}

#[test]
fn statistics_give_the_broker_the_outbox_and_the_providers() {
    let t = Telemetry::new(["imu-wrist"]);
    t.publish
        .connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    t.publish
        .outbox_messages
        .store(12, std::sync::atomic::Ordering::Relaxed);
    t.publish
        .outbox_bytes
        .store(4096, std::sync::atomic::Ordering::Relaxed);
    t.add_model(Arc::new(crate::telemetry::ModelStats::new(
        Modality::Imu,
        "cpu",
        "1.31.1",
        "ab",
    )));
    let t0 = Instant::now();
    let mut board = StatusBoard::new("dev", &sensors(), t0);
    board.apply(&Event::Stats(Arc::new(t.stats_snapshot())), t0);
    let d = doc(&board, t0 + Duration::from_millis(1200));
    assert_eq!(d["broker"]["broker_connected"], true);
    assert_eq!(d["outbox"]["outbox_messages"], 12);
    assert_eq!(d["outbox"]["outbox_bytes"], 4096);
    assert_eq!(d["providers"]["imu"]["provider"], "cpu");
    assert_eq!(d["providers"]["imu"]["ort_version"], "1.31.1");
    assert_eq!(d["stats_age_s"], 1.2);
}

fn trigger(name: &str, phase: Phase, score: Option<f32>) -> TriggerState {
    TriggerState {
        trigger: name.to_string(),
        trigger_kind: TriggerKind::Concept,
        phase,
        score,
        unscored: None,
        seq: Some(4),
        event_id: (phase == Phase::Active).then(|| format!("imu-wrist:{name}:1")),
        stuck_reason: None,
        on_threshold: 0.5,
        off_threshold: 0.4,
    }
}

#[test]
fn trigger_states_read_like_their_retained_message_and_the_newest_replaces_the_old() {
    let mut board = StatusBoard::new("dev", &sensors(), Instant::now());
    board.record_triggers(
        "imu-wrist",
        &[
            trigger("shaking", Phase::Idle, Some(0.1)),
            trigger("fall", Phase::Idle, None),
        ],
    );
    board.record_triggers(
        "imu-wrist",
        &[trigger("shaking", Phase::Active, Some(0.75))],
    );
    let d = doc(&board, Instant::now());
    let triggers = d["triggers"].as_array().cloned().unwrap_or_default();
    assert_eq!(triggers.len(), 2);
    // By sensor, then trigger name.
    assert_eq!(triggers[0]["trigger"], "fall");
    assert_eq!(triggers[0]["score"], Value::Null);
    assert_eq!(triggers[1]["trigger"], "shaking");
    assert_eq!(triggers[1]["state"], "active");
    assert_eq!(triggers[1]["score"], 0.75);
    assert_eq!(triggers[1]["sensor"], "imu-wrist");
    assert_eq!(triggers[1]["event_id"], "imu-wrist:shaking:1");
    // Removed over MQTT: the stage's notice takes it off the page.
    let cleared = crate::output::TriggerControlNotice {
        what: crate::output::TriggerAnswer::Cleared("imu-wrist".into(), "fall".into()),
        reply: None,
    };
    board.apply(&Event::TriggerControl(Arc::new(cleared)), Instant::now());
    assert_eq!(
        doc(&board, Instant::now())["triggers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn trigger_states_beyond_the_bound_are_counted_not_kept() {
    let mut board = StatusBoard::new("dev", &sensors(), Instant::now());
    let states: Vec<TriggerState> = (0..MAX_TRIGGERS + 3)
        .map(|i| trigger(&format!("t{i}"), Phase::Idle, None))
        .collect();
    board.record_triggers("door", &states);
    assert_eq!(board.triggers.len(), MAX_TRIGGERS);
    assert_eq!(board.triggers_dropped, 3);
    // A known trigger is still updated at the bound.
    board.record_triggers("door", &[trigger("t0", Phase::Active, Some(0.9))]);
    assert_eq!(board.triggers_dropped, 3);
    let d = doc(&board, Instant::now());
    assert_eq!(d["triggers_dropped"], 3);
}

#[test]
fn the_page_has_no_external_assets() {
    let page = super::PAGE_HTML;
    for needle in ["http://", "https://", "src=", "href=", "@import", "url("] {
        // The only absolute URL is the SVG namespace, an identifier that is never fetched.
        let hits = page.matches(needle).count();
        let allowed = usize::from(needle == "http://");
        assert_eq!(hits, allowed, "{needle} in page.html");
    }
    assert!(page.contains("http://www.w3.org/2000/svg"));
    assert!(page.contains("fetch(\"api/status\""));
}
