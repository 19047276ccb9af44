//! Scene fusion.

use super::super::scene::{Offer, SceneConfig, SceneFuser};
use super::super::vector::dot;
use super::{at, axis, engine, DIM};
use crate::time::Timestamp;

fn config(min_members: usize) -> SceneConfig {
    SceneConfig {
        name: "scene".into(),
        members: vec!["imu0".into(), "depth0".into(), "mic0".into()],
        slot_ms: 1000,
        grace_ms: 500,
        min_members,
    }
}

fn ms(t: u64) -> Timestamp {
    Timestamp {
        mono_ns: t * 1_000_000,
        utc_ns: 1_765_000_000_000_000_000 + (t * 1_000_000) as i64,
    }
}

#[test]
fn a_slot_fuses_the_latest_window_of_each_member() {
    let mut f = SceneFuser::new(config(2), DIM);
    assert_eq!(f.offer("imu0", 7, ms(1100), &axis(0)), Offer::Taken);
    assert_eq!(f.offer("imu0", 8, ms(1900), &axis(1)), Offer::Taken);
    assert_eq!(
        f.offer(
            "depth0",
            3,
            ms(1400),
            &[0.0, 0.0, 5.0]
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0.0, DIM - 3))
                .collect::<Vec<_>>()
        ),
        Offer::Taken
    );
    assert_eq!(f.offer("radar", 1, ms(1400), &axis(0)), Offer::NotMember);
    assert!(
        f.close_ready(ms(2400)).is_empty(),
        "within the grace period"
    );
    let frames = f.close_ready(ms(2500));
    assert_eq!(frames.len(), 1);
    let frame = &frames[0];
    assert_eq!((frame.seq, frame.start, frame.end), (1, ms(1000), ms(2000)));
    let expect = [1.0f32, 1.0].map(|v| v / 2f32.sqrt());
    assert!(
        (frame.embedding[1] - expect[0]).abs() < 1e-6
            && (frame.embedding[2] - expect[1]).abs() < 1e-6
    );
    assert!((dot(&frame.embedding, &frame.embedding) - 1.0).abs() < 1e-6);
    let members: Vec<_> = frame
        .members
        .iter()
        .map(|m| (m.sensor.as_str(), m.seq, m.skew_ms))
        .collect();
    assert_eq!(members, [("imu0", 8, 0.0), ("depth0", 3, 500.0)]);
    assert_eq!(f.offer("mic0", 1, ms(1999), &axis(2)), Offer::Late);
    assert_eq!(f.counters().late_windows, 1);
}

#[test]
fn sparse_slots_are_counted_and_open_slots_stay_bounded() {
    let mut f = SceneFuser::new(config(2), DIM);
    for k in 0..1000u64 {
        f.offer("imu0", k, ms(k * 1000 + 10), &axis(0));
    }
    assert_eq!(f.open_slots(), super::super::scene::MAX_OPEN_SLOTS);
    assert_eq!(f.counters().evicted_slots, 1000 - 64);
    assert!(f.close_ready(ms(10_000_000)).is_empty());
    assert_eq!(f.counters().sparse_slots, 64);
    let mut nan = axis(0);
    nan[0] = f32::NAN;
    assert_eq!(f.offer("imu0", 1, ms(5), &nan), Offer::BadEmbedding);
}

#[test]
fn the_scene_feeds_a_trigger_engine_like_a_sensor() {
    let mut f = SceneFuser::new(config(1), DIM);
    let toml = "[[triggers]]\nname = \"both\"\nkind = \"concept\"\nlabels = [\"label0\"]\non_threshold = 0.6\n";
    let mut e = super::super::TriggerEngine::new(
        "scene",
        DIM,
        engine(toml).specs().cloned().collect(),
        &super::concepts,
        Default::default(),
    )
    .unwrap();
    f.offer("imu0", 0, at(1), &axis(0));
    f.offer("mic0", 0, at(1), &axis(0));
    let frames = f.close_ready(at(10));
    let events = e.observe(&frames[0].observation());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].sensor, "scene");
}

#[test]
fn scene_config_problems_name_their_keys() {
    let mut c = config(4);
    c.members.push("imu0".into());
    c.slot_ms = 1;
    let p: Vec<String> = c
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        p,
        [
            "members[3]: \"imu0\" is listed twice",
            "slot_ms: must be in [10, 3600000], got 1",
        ]
    );
    assert!(config(3).validate().is_ok());
    assert_eq!(config(0).validate().unwrap_err()[0].path, "min_members");
    let e =
        toml::from_str::<SceneConfig>("members = [\"a\"]\nslot_ms = 100\nslots = 1\n").unwrap_err();
    assert!(e.message().contains("unknown field `slots`"));
}
