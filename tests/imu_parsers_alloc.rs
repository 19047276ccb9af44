//! Steady-state parsing allocates nothing. Own test binary: it installs a counting global allocator.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Implementing `GlobalAlloc` requires `unsafe`; the impl only forwards to `System` and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use edgebind::sources::imu_serial::csv_line::{CsvConfig, CsvLineParser};
use edgebind::sources::imu_serial::protocol::{ImuParser, ImuReading};
use edgebind::sources::imu_serial::witmotion::{WitmotionConfig, WitmotionParser};

struct CountingAlloc;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Count only on the test's own thread, not the harness's.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations made by `f` on this thread.
fn allocations_during(f: impl FnOnce()) -> usize {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed)
}

fn frame(kind: u8, data: [i16; 4]) -> [u8; 11] {
    let mut f = [0u8; 11];
    f[0] = 0x55;
    f[1] = kind;
    for (chunk, x) in f[2..10].chunks_exact_mut(2).zip(data) {
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    f[10] = f[..10].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    f
}

/// Push `stream` in odd-sized reads (so partial frames/lines are buffered across calls),
/// clearing `out` after each read like the driver loop does. Returns the samples seen.
fn drive<P: ImuParser>(parser: &mut P, stream: &[u8], out: &mut Vec<ImuReading>) -> usize {
    let mut samples = 0;
    for chunk in stream.chunks(37) {
        parser.push(chunk, out);
        samples += out.len();
        out.clear();
    }
    samples
}

#[test]
fn steady_state_parsing_allocates_nothing_per_sample() {
    // WitMotion: time, acc, gyro, angle per step, with some noise.
    let mut wit_stream = Vec::new();
    for i in 0..2000i16 {
        wit_stream.extend(frame(0x50, [0x0518, 0x0C11, 0x3822, i % 1000]));
        wit_stream.extend(frame(0x51, [i, -i, 2048, 2600]));
        wit_stream.extend(frame(0x52, [i / 3, 7, -i, 0]));
        wit_stream.extend(frame(0x53, [1, 2, 3, 4]));
        if i % 50 == 0 {
            wit_stream.extend([0x55, 0x51, 0x00]);
        }
    }
    let mut wit = WitmotionParser::new(WitmotionConfig::default()).unwrap();
    let mut out = Vec::with_capacity(64);
    drive(&mut wit, &wit_stream, &mut out); // warm-up
    let mut samples = 0;
    let n = allocations_during(|| samples = drive(&mut wit, &wit_stream, &mut out));
    assert_eq!(samples, 2000);
    assert_eq!(n, 0, "witmotion allocated {n} times for {samples} samples");

    // CSV with comments, a bad line and an over-long line mixed in.
    let mut csv_stream = String::new();
    for i in 0..2000 {
        csv_stream.push_str(&format!(
            "{:.4},{:.4},0.9981,{:.3},-1.25,0.5\r\n",
            i as f32 * 1e-3,
            -0.02,
            i as f32 * 0.1
        ));
        if i % 100 == 0 {
            csv_stream.push_str("# status ok\nERR\n");
            csv_stream.push_str(&"x".repeat(300));
            csv_stream.push('\n');
        }
    }
    let mut csv = CsvLineParser::new(CsvConfig::default()).unwrap();
    drive(&mut csv, csv_stream.as_bytes(), &mut out); // warm-up
    let n = allocations_during(|| samples = drive(&mut csv, csv_stream.as_bytes(), &mut out));
    assert_eq!(samples, 2000);
    assert_eq!(n, 0, "csv allocated {n} times for {samples} samples");
}

#[test]
fn counting_allocator_sees_allocations() {
    // Guards the test above against a counter that never counts.
    let n = allocations_during(|| {
        let v: Vec<u64> = std::hint::black_box(Vec::with_capacity(16));
        drop(v);
    });
    assert_eq!(n, 1);
}
