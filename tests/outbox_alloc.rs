//! Opening an outbox whose files hold anything — damaged bytes, lengths claiming gigabytes,
//! sparse files of 64 GiB — never panics and never allocates more than the files hold. Own
//! test binary: it installs a global allocator that records the largest allocation.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Implementing `GlobalAlloc` requires `unsafe`; the impl only forwards to `System` and records.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use edgebind::config::WhenFull;
use edgebind::publish::{Outbox, OutboxOptions};
use proptest::prelude::*;

struct RecordingAlloc;

thread_local! {
    /// Record only on the test's own thread (tests run in parallel, the harness has its own).
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    if RECORDING.try_with(Cell::get).unwrap_or(false) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

unsafe impl GlobalAlloc for RecordingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: RecordingAlloc = RecordingAlloc;

/// Opens the outbox in `dir`; the largest single allocation it made on this thread.
fn largest_allocation_opening(dir: &Path) -> usize {
    let options = OutboxOptions::new(dir.to_path_buf(), 1 << 30, WhenFull::DropOldest);
    LARGEST.with(|l| l.set(0));
    RECORDING.with(|c| c.set(true));
    let opened = Outbox::open(options);
    RECORDING.with(|c| c.set(false));
    let (outbox, _) = opened.unwrap();
    drop(outbox);
    LARGEST.with(Cell::get)
}

/// Paths and directory listings: what opening costs whatever the files hold.
const FIXED_BYTES: usize = 4096;

fn header(len: u32, crc: u32) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

#[test]
fn sparse_files_claiming_64_gib_cost_nothing_to_open() {
    let dir = tempfile::tempdir().unwrap();
    // A damaged filesystem or a hostile hand: a segment and an ack log of 64 GiB (sparse, all
    // zeros but the first record header, which claims the largest record there may be).
    let seg = dir.path().join("00000000000000000007.seg");
    let f = std::fs::File::create(&seg).unwrap();
    std::io::Write::write_all(
        &mut &f,
        &header(edgebind::publish::outbox::MAX_RECORD_BYTES, 0),
    )
    .unwrap();
    f.set_len(64 << 30).unwrap();
    let acks = std::fs::File::create(dir.path().join("acks.log")).unwrap();
    acks.set_len(64 << 30).unwrap();
    let largest = largest_allocation_opening(dir.path());
    assert!(largest <= 64 << 10, "{largest} bytes allocated at once");
    // Both were cut at their first bad record.
    for name in ["00000000000000000007.seg", "acks.log"] {
        let len = std::fs::metadata(dir.path().join(name)).map_or(0, |m| m.len());
        assert!(len < 1024, "{name}: {len} bytes left");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Arbitrary bytes as a segment (optionally behind a header claiming any length) and as
    /// the ack log: opening never fails, never panics, and allocates at once at most as much
    /// as the files hold.
    #[test]
    fn arbitrary_outbox_files_never_allocate_more_than_they_hold(
        segment in proptest::collection::vec(any::<u8>(), 0..4096),
        ack_log in proptest::collection::vec(any::<u8>(), 0..1024),
        claim in proptest::option::of((any::<u32>(), any::<u32>())),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = claim.map(|(len, crc)| header(len, crc)).unwrap_or_default();
        seg.extend_from_slice(&segment);
        std::fs::write(dir.path().join("00000000000000000003.seg"), &seg).unwrap();
        std::fs::write(dir.path().join("acks.log"), &ack_log).unwrap();
        let largest = largest_allocation_opening(dir.path());
        let held = seg.len().max(ack_log.len());
        prop_assert!(
            largest <= held.max(FIXED_BYTES),
            "{} bytes allocated at once for files of {} and {} bytes",
            largest, seg.len(), ack_log.len()
        );
    }
}
