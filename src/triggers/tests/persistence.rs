//! The on-disk state: round trip, restart semantics, hostile bytes.

use proptest::prelude::*;

use super::super::event::{EndReason, EventKind, Phase};
use super::super::persist::PersistError;
use super::{axis, engine, feed, noisy, DIM, SENSOR};

const ALL: &str = r#"
[[triggers]]
name = "shaking"
kind = "concept"
labels = ["label3"]
on_threshold = 0.6
cooldown_windows = 3
[[triggers]]
name = "new"
kind = "novelty"
on_threshold = 0.3
warmup_windows = 4
memory_windows = 32
[[triggers]]
name = "door"
kind = "example"
example_set = "door"
on_threshold = 0.9
"#;

fn busy_engine() -> super::TriggerEngine {
    let mut e = engine(ALL);
    for seq in 0..20 {
        feed(
            &mut e,
            seq,
            &noisy(if seq >= 17 { 3 } else { 0 }, seq, 0.2),
            None,
        );
    }
    e.remember("door", 4).unwrap();
    e
}

/// Seals a body with a valid header.
fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = b"EBTRIGS\n".to_vec();
    out.extend(1u32.to_le_bytes());
    out.extend((body.len() as u64).to_le_bytes());
    out.extend(crc32fast::hash(body).to_le_bytes());
    out.extend(body);
    out
}

#[test]
fn state_round_trips_and_an_open_event_is_closed_at_restart() {
    let mut before = busy_engine();
    let open = before.states()[0].event_id.clone().unwrap();
    let bytes = before.to_bytes();

    let mut after = engine(ALL);
    let report = after.restore(&bytes).unwrap();
    assert_eq!(report.ended.len(), 1);
    let end = &report.ended[0];
    assert_eq!(
        (end.kind, end.end_reason, end.seq),
        (EventKind::End, Some(EndReason::Restart), None)
    );
    assert_eq!(end.event.id, open);
    assert_eq!((end.event.first.seq, end.event.last.seq), (17, 19));
    assert_eq!(
        (
            report.novelty_windows,
            report.example_sets,
            report.dropped_for_width
        ),
        (20, 1, None)
    );
    assert_eq!(
        after.states()[0].phase,
        Phase::Cooldown,
        "the closed event's cooldown follows"
    );
    assert_eq!(after.example_sets(), before.example_sets());

    // The restored memory and example set score the next windows exactly as the originals do.
    for seq in 20..25 {
        let v = noisy(5, seq, 0.3);
        feed(&mut before, seq, &v, None);
        feed(&mut after, seq, &v, None);
        let (b, a) = (before.states(), after.states());
        assert_eq!((b[1].score, b[2].score), (a[1].score, a[2].score));
    }
}

#[test]
fn a_saved_event_of_a_removed_trigger_is_still_closed() {
    let bytes = busy_engine().to_bytes();
    let mut other = engine(&ALL.replace("name = \"shaking\"", "name = \"renamed\""));
    let report = other.restore(&bytes).unwrap();
    assert_eq!(report.ended[0].trigger, "shaking");
    assert_eq!(other.states()[0].phase, Phase::Idle);
}

#[test]
fn state_of_another_width_keeps_events_and_drops_vectors() {
    let bytes = busy_engine().to_bytes();
    let specs: Vec<_> = engine(ALL).specs().cloned().collect();
    let lookup = |l: &str| {
        super::concepts(l).map(|mut v| {
            v.resize(DIM * 2, 0.0);
            v
        })
    };
    let mut wide =
        super::TriggerEngine::new(SENSOR, DIM * 2, specs, &lookup, Default::default()).unwrap();
    let report = wide.restore(&bytes).unwrap();
    assert_eq!(
        (
            report.ended.len(),
            report.dropped_for_width,
            report.example_sets
        ),
        (1, Some(DIM), 0)
    );
}

#[test]
fn hostile_headers_are_clear_errors() {
    let good = busy_engine().to_bytes();
    let mut e = engine(ALL);
    assert_eq!(e.restore(b"").unwrap_err(), PersistError::Magic);
    assert_eq!(
        e.restore(b"{\"json\": true}xxxxxxxxxxxxxxxx").unwrap_err(),
        PersistError::Magic
    );
    let mut v = good.clone();
    v[8] = 9;
    assert_eq!(
        e.restore(&v).unwrap_err().to_string(),
        "trigger state format version 9 is not supported (this build reads 1)"
    );
    let mut v = good.clone();
    v[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        e.restore(&v).unwrap_err(),
        PersistError::Length { .. }
    ));
    let mut v = good.clone();
    let last = v.len() - 1;
    v[last] ^= 0x40;
    assert_eq!(e.restore(&v).unwrap_err(), PersistError::Checksum);
    let mut other = super::TriggerEngine::new(
        "imu1",
        DIM,
        e.specs().cloned().collect(),
        &super::concepts,
        Default::default(),
    )
    .unwrap();
    assert_eq!(
        other.restore(&good).unwrap_err().to_string(),
        "trigger state belongs to sensor \"imu0\", not \"imu1\""
    );
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    let mut body = Vec::new();
    body.extend(4u32.to_le_bytes());
    body.extend(SENSOR.as_bytes());
    body.extend((DIM as u32).to_le_bytes());
    let mut e = engine(ALL);
    let mut triggers = body.clone();
    triggers.extend(u32::MAX.to_le_bytes());
    assert_eq!(
        e.restore(&seal(&triggers)).unwrap_err().to_string(),
        "trigger state: triggers: 4294967295 is more than the limit of 1024"
    );
    let mut rows = body.clone();
    rows.extend(0u32.to_le_bytes()); // triggers
    rows.extend(1u32.to_le_bytes()); // one set
    rows.extend(1u32.to_le_bytes());
    rows.push(b'd');
    rows.extend(200u32.to_le_bytes()); // 200 rows, no bytes
    assert_eq!(
        e.restore(&seal(&rows)).unwrap_err().to_string(),
        "trigger state: example set rows: 200 need more than the 0 bytes left"
    );
    let mut string = body.clone();
    string.extend(1u32.to_le_bytes());
    string.extend(u32::MAX.to_le_bytes());
    string.extend([0u8; 16]);
    assert!(e
        .restore(&seal(&string))
        .unwrap_err()
        .to_string()
        .starts_with("trigger state: trigger name: "));
    let mut wide = body[..8].to_vec();
    wide.extend(u32::MAX.to_le_bytes());
    assert_eq!(
        e.restore(&seal(&wide)).unwrap_err().to_string(),
        "trigger state: dim: must be 1 to 4096, got 4294967295"
    );
    // Nothing was applied by the failed attempts.
    assert!(e.example_sets().is_empty());
}

#[test]
fn every_truncation_and_every_sealed_byte_flip_is_an_error_or_a_valid_state() {
    let good = busy_engine().to_bytes();
    let mut e = engine(ALL);
    for n in 0..good.len() {
        assert!(e.restore(&good[..n]).is_err(), "truncated to {n}");
    }
    let body = &good[24..];
    for i in (0..body.len()).step_by(7) {
        let mut b = body.to_vec();
        b[i] = b[i].wrapping_add(0x55);
        // A flip the checksum cannot see must still parse safely (or be refused).
        let _ = engine(ALL).restore(&seal(&b));
    }
}

proptest! {
    #[test]
    fn arbitrary_sealed_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut e = engine(ALL);
        let mut prefixed = 4u32.to_le_bytes().to_vec();
        prefixed.extend(SENSOR.as_bytes());
        prefixed.extend(body.iter().copied());
        let _ = e.restore(&seal(&body));
        let _ = e.restore(&seal(&prefixed));
    }
}

#[test]
fn a_restored_engine_saves_the_same_vectors() {
    let before = busy_engine();
    let mut after = engine(ALL);
    after.restore(&before.to_bytes()).unwrap();
    let mut again = engine(ALL);
    again.restore(&after.to_bytes()).unwrap();
    assert_eq!(again.example_sets(), before.example_sets());
    assert_eq!(
        feed(&mut again, 30, &axis(0), None),
        feed(&mut after, 30, &axis(0), None)
    );
}

#[test]
fn restoring_into_an_engine_that_moved_on_keeps_its_open_events() {
    let saved = busy_engine().to_bytes();
    let mut e = engine(ALL);
    for seq in 0..2 {
        feed(&mut e, seq, &axis(3), None);
    }
    let report = e.restore(&saved).unwrap();
    assert_eq!(report.ended.len(), 1, "the saved event still ends");
    assert_eq!(
        e.states()[0].phase,
        Phase::Active,
        "the live event is not dropped"
    );
}
