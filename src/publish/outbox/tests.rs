//! Unit tests of the outbox on an ordinary filesystem (on a full one: `tests/outbox_disk.rs`, with
//! the daemon: `tests/disk.rs`).
#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::Qos;
use proptest::prelude::*;

fn opts(dir: &Path, max: u64) -> OutboxOptions {
    OutboxOptions::new(dir.to_path_buf(), max, WhenFull::DropOldest)
}

fn message<'a>(topic: &'a str, retain: bool, payload: &'a [u8]) -> NewRecord<'a> {
    NewRecord {
        topic,
        sensor: Some("s"),
        qos: Qos::AtLeastOnce,
        retain,
        payload,
    }
}

/// The id of a stored message and the ids dropped for it (`None`: the new one was dropped).
fn outcome(a: Appended) -> (Option<u64>, Vec<Record>) {
    match a {
        Appended::Stored { id, dropped } => (Some(id), dropped),
        Appended::DroppedNewest { dropped } => (None, dropped),
        Appended::Full => panic!("full under a dropping policy"),
    }
}

fn put(o: &mut Outbox, i: u64) -> u64 {
    let topic = format!("t/{i}");
    let (id, _) = outcome(o.append(message(&topic, false, &i.to_le_bytes())).unwrap());
    id.unwrap()
}

fn pending_ids(o: &Outbox) -> Vec<u64> {
    o.pending.keys().copied().collect()
}

#[test]
fn unacknowledged_messages_survive_a_reopen_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, r) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(r, Recovery::default());
    for i in 0..10 {
        assert_eq!(put(&mut o, i), i);
    }
    for id in [0, 2, 3, 9] {
        o.ack(id).unwrap();
    }
    o.sync().unwrap();
    drop(o);
    let (mut o, r) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(r.pending, 6);
    assert_eq!(pending_ids(&o), vec![1, 4, 5, 6, 7, 8]);
    let rec = o.get(4).unwrap().unwrap();
    assert_eq!(rec.topic, "t/4");
    assert_eq!(rec.payload, 4u64.to_le_bytes());
    // Ids keep increasing across restarts.
    assert_eq!(put(&mut o, 99), 10);
}

#[test]
fn fully_acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = opts(dir.path(), 1 << 20);
    options.segment_bytes = 200;
    let (mut o, _) = Outbox::open(options).unwrap();
    for i in 0..50 {
        put(&mut o, i);
    }
    let segs = || {
        fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let path = e.as_ref().unwrap().path();
                path.extension().is_some_and(|x| x == "seg")
            })
            .count()
    };
    assert!(segs() > 5);
    for i in 0..50 {
        o.ack(i).unwrap();
    }
    assert_eq!(segs(), 1, "only the active segment is left");
    assert_eq!(o.pending(), 0);
}

#[test]
fn a_full_outbox_drops_the_oldest_and_stays_under_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let max = 64 * 1024;
    let (mut o, _) = Outbox::open(opts(dir.path(), max)).unwrap();
    let payload = vec![7u8; 1000];
    let mut dropped = Vec::new();
    for i in 0..500u64 {
        let topic = format!("t/{i}");
        let (id, d) = outcome(o.append(message(&topic, false, &payload)).unwrap());
        assert_eq!(id, Some(i));
        dropped.extend(d.into_iter().map(|r| r.id));
        assert!(o.disk_bytes() <= max, "{} > {max}", o.disk_bytes());
    }
    o.sync().unwrap();
    let on_disk: u64 = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= max, "{on_disk} bytes on disk > {max}");
    assert!(!dropped.is_empty());
    assert_eq!(o.counters().dropped_full, dropped.len() as u64);
    // The oldest went first; what is left is the newest, contiguous.
    let left = pending_ids(&o);
    assert_eq!(*left.last().unwrap(), 499);
    assert_eq!(dropped.len() + left.len(), 500);
    assert!(dropped.iter().all(|d| *d < left[0]));
}

#[test]
fn drop_newest_refuses_new_messages_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = opts(dir.path(), 16 * 1024);
    options.when_full = WhenFull::DropNewest;
    let (mut o, _) = Outbox::open(options).unwrap();
    let mut refused = 0;
    for i in 0..100u64 {
        match outcome(o.append(message("t", false, &[1u8; 500])).unwrap()) {
            (None, dropped) => {
                assert!(dropped.is_empty(), "only the new message goes");
                refused += 1;
            }
            (Some(id), _) => assert_eq!(id, i - refused),
        }
    }
    assert!(refused > 0);
    assert_eq!(o.first_pending(), Some(0));
}

#[test]
fn a_corrupt_tail_is_truncated_counted_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, _) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    for i in 0..5 {
        put(&mut o, i);
    }
    o.sync().unwrap();
    drop(o);
    let seg = segment_path(dir.path(), 0);
    let mut data = fs::read(&seg).unwrap();
    // Half a record appended (a power loss mid-write), and a flipped byte in it.
    let tail = data[..20].to_vec();
    data.extend_from_slice(&tail);
    fs::write(&seg, &data).unwrap();
    let (o, r) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(r.corrupt_tails, 1);
    assert_eq!(r.truncated_bytes, 20);
    assert_eq!(pending_ids(&o), vec![0, 1, 2, 3, 4]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever byte is damaged or wherever the file is cut, every record written entirely
    /// before the damage is recovered, and nothing after it is invented.
    #[test]
    fn damage_never_loses_a_record_written_before_it(
        n in 1usize..40,
        sizes in proptest::collection::vec(0usize..300, 40),
        cut_frac in 0.0f64..1.0,
        flip in proptest::bool::ANY,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(opts(dir.path(), 1 << 24)).unwrap();
        let mut ends = Vec::new();
        let mut total = 0u64;
        for (i, size) in sizes.iter().take(n).enumerate() {
            let payload = vec![i as u8; *size];
            let topic = format!("s/{i}");
            let m = message(&topic, i % 2 == 0, &payload);
            o.append(m).unwrap();
            total += m.encoded_len();
            ends.push(total);
        }
        o.sync().unwrap();
        drop(o);
        let seg = segment_path(dir.path(), 0);
        let mut data = fs::read(&seg).unwrap();
        let at = ((data.len() as f64) * cut_frac) as usize;
        if flip {
            data[at] ^= 0x5a;
        } else {
            data.truncate(at);
        }
        fs::write(&seg, &data).unwrap();
        let (mut o, r) = Outbox::open(opts(dir.path(), 1 << 24)).unwrap();
        let intact = ends.iter().filter(|e| **e as usize <= at).count();
        let ids = pending_ids(&o);
        // Everything before the damaged record is there, in order.
        prop_assert!(ids.len() >= intact);
        prop_assert_eq!(&ids[..intact], &(0..intact as u64).collect::<Vec<_>>()[..]);
        // A damaged record is never returned (a flip inside it fails the checksum).
        prop_assert_eq!(ids.len(), intact);
        let boundary = !flip && (at == 0 || ends.contains(&(at as u64)));
        prop_assert_eq!(r.corrupt_tails, u64::from(!boundary));
        for id in ids {
            let rec = o.get(id).unwrap().unwrap();
            prop_assert_eq!(rec.payload, vec![id as u8; sizes[id as usize]]);
            prop_assert_eq!(rec.retain, id % 2 == 0);
        }
    }
}

#[test]
fn a_length_claiming_more_than_the_file_holds_is_a_corrupt_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, _) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    for i in 0..3 {
        put(&mut o, i);
    }
    o.sync().unwrap();
    drop(o);
    let seg = segment_path(dir.path(), 0);
    let mut data = fs::read(&seg).unwrap();
    let good = data.len() as u64;
    // Headers claiming 4 GiB, 64 MiB + 1 (over the record limit) and 1 MiB (within it, but past
    // the end of the file), each followed by a few bytes.
    for claim in [u32::MAX, MAX_RECORD_BYTES + 1, 1 << 20] {
        let mut bad = data.clone();
        bad.extend_from_slice(&claim.to_le_bytes());
        bad.extend_from_slice(&[0xAB; 40]);
        fs::write(&seg, &bad).unwrap();
        let (o, r) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
        assert_eq!(r.corrupt_tails, 1, "claim {claim}");
        assert_eq!(r.truncated_bytes, 44, "claim {claim}");
        assert_eq!(pending_ids(&o), vec![0, 1, 2]);
        assert_eq!(fs::metadata(&seg).unwrap().len(), good);
        drop(o);
        data = fs::read(&seg).unwrap();
    }
}

#[test]
fn an_ack_log_longer_than_its_limit_is_cut_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acks.log");
    // Valid records past the limit: only the limit is read, the rest is cut.
    let n = acks::MAX_ACK_LOG_BYTES / ACK_RECORD_BYTES + 10;
    // Disjoint ranges, so that nothing merges while reading.
    let data: Vec<u8> = (0..n).flat_map(|i| acks::record(2 * i, 2 * i)).collect();
    fs::write(&path, &data).unwrap();
    let (ranges, cut) = acks::recover(&path).unwrap();
    assert_eq!(cut, 10 * ACK_RECORD_BYTES);
    assert_eq!(ranges.len() as u64, n - 10);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        (n - 10) * ACK_RECORD_BYTES,
        "whole records up to the limit"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Whatever bytes a segment and the ack log hold, opening never fails or panics, keeps
    /// only whole valid records, and leaves files a second open finds clean.
    #[test]
    fn arbitrary_bytes_as_a_segment_and_an_ack_log_open_cleanly(
        segment in proptest::collection::vec(any::<u8>(), 0..2048),
        ack_log in proptest::collection::vec(any::<u8>(), 0..512),
        // A plausible header in front: a length field (any value) and a checksum.
        header in proptest::option::of((any::<u32>(), any::<u32>())),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Vec::new();
        if let Some((len, crc)) = header {
            seg.extend_from_slice(&len.to_le_bytes());
            seg.extend_from_slice(&crc.to_le_bytes());
        }
        seg.extend_from_slice(&segment);
        fs::write(segment_path(dir.path(), 5), &seg).unwrap();
        fs::write(dir.path().join("acks.log"), &ack_log).unwrap();
        let (o, r) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
        prop_assert!(r.truncated_bytes <= (seg.len() + ack_log.len()) as u64);
        prop_assert!(o.disk_bytes() <= (seg.len() + ack_log.len()) as u64);
        drop(o);
        let (_, again) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
        prop_assert_eq!(again.corrupt_tails, 0);
    }
}

/// A copy of `tests/fixtures/outbox_format0`: six messages a build before the sensor travelled
/// with the record left undelivered (3 windows of sensor `wrist` of device `legacy`, embedding
/// and labels each).
fn format0_outbox() -> tempfile::TempDir {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/outbox_format0");
    let dir = tempfile::tempdir().unwrap();
    for name in ["00000000000000000000.seg", "acks.log"] {
        fs::copy(fixture.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

#[test]
fn records_of_the_previous_format_are_read_and_new_ones_follow_them() {
    let dir = format0_outbox();
    let (mut o, r) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!((r.pending, r.corrupt_tails), (6, 0));
    assert_eq!(pending_ids(&o), (0..6).collect::<Vec<_>>());
    for id in 0..6 {
        let rec = o.get(id).unwrap().unwrap();
        let kind = if id % 2 == 0 { "embedding" } else { "labels" };
        assert_eq!(rec.topic, format!("edgebind/legacy/wrist/{kind}"));
        assert_eq!(rec.sensor, None, "format 0 has no sensor");
        assert_eq!((rec.qos, rec.retain), (Qos::AtLeastOnce, false));
        let v: serde_json::Value = serde_json::from_slice(&rec.payload).unwrap();
        assert_eq!(v["sensor"], "wrist");
        assert_eq!(v["seq"], id / 2);
    }
    // New records (format 1) go after them; both read back after a reopen.
    assert_eq!(put(&mut o, 6), 6);
    o.ack(0).unwrap();
    o.sync().unwrap();
    drop(o);
    let (mut o, r) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(r.corrupt_tails, 0);
    assert_eq!(pending_ids(&o), (1..7).collect::<Vec<_>>());
    assert_eq!(o.get(1).unwrap().unwrap().sensor, None);
    let new = o.get(6).unwrap().unwrap();
    assert_eq!(
        (new.sensor.as_deref(), new.topic.as_str()),
        (Some("s"), "t/6")
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_and_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    let Err(e) = Outbox::open(opts(dir.path(), 1 << 20)) else {
        panic!("a second open of a locked outbox succeeded");
    };
    let pid = std::process::id();
    assert!(
        matches!(e, OutboxError::Locked { holder: Some(p), .. } if p == pid),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains(&format!("(pid {pid})")), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("outbox.dir"), "{text}");
    drop(first);
    // Closed: the next open takes the lock.
    assert!(Outbox::open(opts(dir.path(), 1 << 20)).is_ok());
}

#[test]
fn a_compacted_ack_log_waits_beside_the_old_one_until_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, _) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    for i in 0..10 {
        put(&mut o, i);
    }
    for id in 0..6 {
        o.ack(id).unwrap();
    }
    o.sync().unwrap();
    let log = dir.path().join("acks.log");
    let tmp = dir.path().join("acks.log.tmp");
    let before = fs::read(&log).unwrap();
    o.compact_acks().unwrap();
    assert!(o.acks.is_replacing());
    assert_eq!(
        fs::read(&log).unwrap(),
        before,
        "the old log stays until the sync"
    );
    assert!(tmp.exists());
    // Acks after the compaction go to the new log; a crash now loses none of them.
    o.ack(6).unwrap();
    o.flush_acks().unwrap();
    drop(o);
    let (o, _) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(pending_ids(&o), vec![7, 8, 9]);
    drop(o);
    // The sync moves it into place.
    let (mut o, _) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    o.ack(7).unwrap();
    o.compact_acks().unwrap();
    assert!(tmp.exists());
    o.sync().unwrap();
    assert!(!o.acks.is_replacing());
    assert!(!tmp.exists(), "renamed over acks.log");
    drop(o);
    let (o, _) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(pending_ids(&o), vec![8, 9]);
}
