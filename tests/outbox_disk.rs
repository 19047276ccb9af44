//! The outbox alone on a real small filesystem (a tmpfs mounted by each test; root or
//! CAP_SYS_ADMIN, otherwise the test says SKIPPED on stderr and passes): each `when_full`
//! policy applied to disk space, acknowledgements on a full disk, space taken and given back by
//! another file, and a clean reopen after each.
//!
//! The tests run one at a time (`SERIAL`): a test that forks (`mount`, `umount`) while another
//! has just deleted a segment hands the child a copy of that file's descriptor until it execs,
//! and tmpfs frees the space only when the last descriptor closes — the other test's very next
//! write would then meet a disk that is still full. The daemon forks nothing, so this is only
//! about running these tests side by side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use common::small_fs::SmallFs;
use edgebind::config::{Qos, WhenFull};
use edgebind::publish::outbox::{Appended, NewRecord};
use edgebind::publish::{Outbox, OutboxOptions};

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs the calling test alone among these (held until it ends, after its filesystem is gone).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const PAYLOAD: [u8; 4000] = [7; 4000];

fn open(dir: &Path, when_full: WhenFull) -> Outbox {
    let (o, r) = Outbox::open(OutboxOptions::new(dir.to_path_buf(), 1 << 30, when_full)).unwrap();
    assert_eq!(r.corrupt_tails, 0, "{r:?}");
    o
}

/// Appends one message; its id, `None` when refused, and the ids dropped for it. `None` when
/// the outbox asks the caller to wait (`block`).
fn put(o: &mut Outbox) -> Option<(Option<u64>, Vec<u64>)> {
    let message = NewRecord {
        topic: "edgebind/d/s/embedding",
        sensor: Some("s"),
        qos: Qos::AtLeastOnce,
        retain: false,
        payload: &PAYLOAD,
    };
    let ids =
        |dropped: Vec<edgebind::publish::outbox::Record>| dropped.iter().map(|r| r.id).collect();
    match o.append(message).unwrap() {
        Appended::Stored { id, dropped } => Some((Some(id), ids(dropped))),
        Appended::DroppedNewest { dropped } => Some((None, ids(dropped))),
        Appended::Full => None,
    }
}

fn pending_ids(o: &Outbox) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut from = 0;
    while let Some(id) = o.next_pending(from) {
        ids.push(id);
        from = id + 1;
    }
    ids
}

/// Reopens the outbox: no corrupt tail, the same pending ids, every record readable.
fn reopen_clean(dir: &Path, expected: &[u64]) {
    let (mut o, r) = Outbox::open(OutboxOptions::new(
        dir.to_path_buf(),
        1 << 30,
        WhenFull::DropOldest,
    ))
    .unwrap();
    assert_eq!(r.corrupt_tails, 0, "{r:?}");
    assert_eq!(pending_ids(&o), expected);
    for &id in expected {
        assert_eq!(o.get(id).unwrap().unwrap().payload, PAYLOAD);
    }
}

/// A file taking all but `leave` bytes of the filesystem at `dir`.
fn ballast(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("ballast");
    let free = edgebind::publish::outbox::available_bytes(dir).unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    let mut left = free.saturating_sub(leave);
    let chunk = [0u8; 4096];
    while left > 0 {
        let n = left.min(4096) as usize;
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
    path
}

#[test]
fn drop_oldest_on_a_full_filesystem_keeps_the_newest_and_counts_every_drop() {
    let _serial = serial();
    let Some(fs) = SmallFs::mount(
        256,
        "drop_oldest_on_a_full_filesystem_keeps_the_newest_and_counts_every_drop",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    let mut o = open(&dir, WhenFull::DropOldest);
    let mut dropped = Vec::new();
    // ~400 KB through a 256 KiB filesystem.
    for i in 0..100 {
        let (id, d) = put(&mut o).unwrap();
        assert_eq!(id, Some(i), "every new message is taken");
        dropped.extend(d);
    }
    let left = pending_ids(&o);
    assert!(!dropped.is_empty());
    assert!(o.counters().disk_full >= 1);
    assert_eq!(o.counters().dropped_full, dropped.len() as u64);
    // The oldest went: what is left is the newest, without a hole.
    assert_eq!(dropped, (0..dropped.len() as u64).collect::<Vec<_>>());
    assert_eq!(left, (dropped.len() as u64..100).collect::<Vec<_>>());
    o.sync().unwrap();
    drop(o);
    reopen_clean(&dir, &left);
}

#[test]
fn drop_newest_on_a_full_filesystem_keeps_the_oldest_and_refuses_the_new() {
    let _serial = serial();
    let Some(fs) = SmallFs::mount(
        256,
        "drop_newest_on_a_full_filesystem_keeps_the_oldest_and_refuses_the_new",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    let mut o = open(&dir, WhenFull::DropNewest);
    let mut refused = 0;
    for _ in 0..100 {
        let (id, dropped) = put(&mut o).unwrap();
        match id {
            Some(_) => assert!(dropped.is_empty()),
            None => refused += 1,
        }
    }
    let kept = pending_ids(&o);
    assert!(refused > 0);
    assert_eq!(kept.len() + refused, 100);
    assert_eq!(kept, (0..kept.len() as u64).collect::<Vec<_>>());
    assert_eq!(o.counters().dropped_full, refused as u64);
    o.sync().unwrap();
    drop(o);
    reopen_clean(&dir, &kept);
}

#[test]
fn block_on_a_full_filesystem_waits_and_acknowledgements_make_room() {
    let _serial = serial();
    let Some(fs) = SmallFs::mount(
        256,
        "block_on_a_full_filesystem_waits_and_acknowledgements_make_room",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    let mut o = open(&dir, WhenFull::Block);
    let mut taken = 0;
    while put(&mut o).is_some() {
        taken += 1;
        assert!(taken < 100, "the filesystem never filled");
    }
    // Full: the caller is asked to wait, again and again, and nothing is dropped.
    assert!(put(&mut o).is_none());
    assert_eq!(o.counters().dropped_full, 0);
    // The broker acknowledges everything: the space is reclaimed and messages go in again.
    for id in pending_ids(&o) {
        o.ack(id).unwrap();
    }
    for _ in 0..taken {
        assert!(put(&mut o).is_some());
    }
    assert_eq!(o.counters().dropped_full, 0);
    let left = pending_ids(&o);
    o.sync().unwrap();
    drop(o);
    reopen_clean(&dir, &left);
}

#[test]
fn acknowledged_messages_are_reclaimed_so_a_small_filesystem_never_fills() {
    let _serial = serial();
    let Some(fs) = SmallFs::mount(
        256,
        "acknowledged_messages_are_reclaimed_so_a_small_filesystem_never_fills",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    let mut o = open(&dir, WhenFull::DropNewest);
    // The broker keeps up: 2 MB through 256 KiB, each message acknowledged soon after.
    for i in 0..500u64 {
        assert_eq!(put(&mut o).unwrap().0, Some(i));
        if i >= 3 {
            o.ack(i - 3).unwrap();
        }
    }
    assert_eq!(o.counters().dropped_full, 0);
    assert_eq!(
        o.counters().disk_full,
        0,
        "sealed, acknowledged segments go at once"
    );
    assert_eq!(pending_ids(&o), vec![497, 498, 499]);
}

#[test]
fn a_disk_filled_by_another_file_refuses_then_takes_messages_again_once_space_returns() {
    let _serial = serial();
    let Some(fs) = SmallFs::mount(
        256,
        "a_disk_filled_by_another_file_refuses_then_takes_messages_again_once_space_returns",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    for when_full in [WhenFull::DropOldest, WhenFull::DropNewest] {
        let mut o = open(&dir, when_full);
        for id in pending_ids(&o) {
            o.ack(id).unwrap();
        }
        // Room for one message.
        let ballast = ballast(&fs.path, 6000);
        let mut taken = Vec::new();
        for _ in 0..10 {
            taken.extend(put(&mut o).unwrap().0);
        }
        let kept = pending_ids(&o);
        assert_eq!(kept.len(), 1, "{when_full:?}");
        assert_eq!(o.counters().dropped_full, 9, "{when_full:?}");
        match when_full {
            // Each new message pushed the one before it out.
            WhenFull::DropOldest => assert_eq!((taken.len(), kept[0]), (10, taken[9])),
            // The first stayed, the other nine were refused.
            _ => assert_eq!(taken, kept),
        }
        std::fs::remove_file(&ballast).unwrap();
        // Room again: the very next message goes in.
        for _ in 0..10 {
            assert!(put(&mut o).unwrap().0.is_some(), "{when_full:?}");
        }
        let left = pending_ids(&o);
        o.sync().unwrap();
        drop(o);
        reopen_clean(&dir, &left);
    }
}

#[test]
fn acknowledgements_on_a_full_disk_are_never_an_error_and_the_log_catches_up() {
    let _serial = serial();
    let Some(fs) = SmallFs::mount(
        256,
        "acknowledgements_on_a_full_disk_are_never_an_error_and_the_log_catches_up",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    let mut o = open(&dir, WhenFull::DropNewest);
    for _ in 0..10 {
        put(&mut o).unwrap();
    }
    o.sync().unwrap();
    let ballast = ballast(&fs.path, 0);
    // Acknowledged in the active segment: nothing can be deleted yet and the ack log cannot
    // grow. Neither is an error.
    for id in [0, 1, 2, 3] {
        o.ack(id).unwrap();
    }
    o.sync().unwrap();
    assert!(o.counters().disk_full >= 1, "the ack log met the full disk");
    assert_eq!(pending_ids(&o), (4..10).collect::<Vec<_>>());
    // A crash now would send 0..=3 again (duplicates, not loss); once there is room the log
    // is rewritten from memory.
    std::fs::remove_file(&ballast).unwrap();
    o.sync().unwrap();
    drop(o);
    reopen_clean(&dir, &(4..10).collect::<Vec<_>>());
}
