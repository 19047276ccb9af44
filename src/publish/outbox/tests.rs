//! Unit tests of the outbox on an ordinary filesystem (on a full one: `tests/outbox_disk.rs`, with
//! the daemon: `tests/disk.rs`).
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn opts(dir: &Path, max: u64) -> OutboxOptions {
    OutboxOptions::new(dir.to_path_buf(), max, WhenFull::DropOldest)
}

fn put(o: &mut Outbox, i: u64) -> u64 {
    o.append(&format!("t/{i}"), Qos::AtLeastOnce, false, &i.to_le_bytes())
        .unwrap()
        .unwrap()
        .0
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
            .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "seg")
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
        let (id, d) = o
            .append(&format!("t/{i}"), Qos::AtLeastOnce, false, &payload)
            .unwrap()
            .unwrap();
        assert_eq!(id, i);
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
        let (id, _) = o
            .append("t", Qos::AtLeastOnce, false, &[1u8; 500])
            .unwrap()
            .unwrap();
        if id == u64::MAX {
            refused += 1;
        } else {
            assert_eq!(id, i - refused);
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
            o.append(&format!("s/{i}"), Qos::AtLeastOnce, i % 2 == 0, &payload).unwrap();
            total += HEADER_BYTES + (BODY_FIXED_BYTES + format!("s/{i}").len() + size) as u64;
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
