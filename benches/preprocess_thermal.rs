#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
//! Thermal preprocessing hot paths: Lepton-size Y16 frame and Boson-size 8-bit frame to tensor.
//!
//! `cargo bench --bench preprocess_thermal` runs criterion (wall clock). On a loaded machine
//! wall clock mostly measures the scheduler; `EDGEBIND_BENCH_CPU=1 cargo bench --bench
//! preprocess_thermal` instead prints a table of per-call **on-CPU** time of this thread
//! (`/proc/thread-self/schedstat`, Linux), median and minimum over batches, which load inflates
//! far less. `EDGEBIND_BENCH_BATCHES` / `EDGEBIND_BENCH_CALLS` set batches and calls per batch
//! (rounded up to a multiple of 16; e.g. 1 and 16 under `valgrind --tool=callgrind` for
//! instruction counts), `EDGEBIND_BENCH_ONLY` keeps the cases whose name contains it.

use std::hint::black_box;

use criterion::Criterion;
use edgebind::preprocess::thermal::{ThermalParams, ThermalPreprocessor};
use ndarray::{Array2, Array3};

/// Deterministic frame content with edges and noise, so no pass can short-cut.
fn frame<T>(width_px: usize, height_px: usize, f: impl Fn(u32) -> T) -> Array2<T> {
    let mut s = 0x2545_f491_u32;
    Array2::from_shape_fn((height_px, width_px), |(y, x)| {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        let blob = if (x as i64 - 80).pow(2) + (y as i64 - 60).pow(2) < 900 {
            2000
        } else {
            0
        };
        f(blob + (x as u32 * 7 + y as u32 * 3) + (s & 63))
    })
}

/// The benchmarked cases: name and one call each.
type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);

fn cases<'a>(
    pre: &'a std::cell::RefCell<ThermalPreprocessor>,
    out: &'a std::cell::RefCell<Array3<f32>>,
    y16: &'a Array2<u16>,
    u8img: &'a Array2<u8>,
) -> Vec<Case<'a>> {
    vec![
        (
            "thermal_y16_160x120_to_tensor",
            Box::new(move || {
                pre.borrow_mut()
                    .tensor_u16_into(black_box(y16.view()), out.borrow_mut().view_mut())
                    .unwrap()
            }),
        ),
        (
            "thermal_y16_160x120_to_tensor_alloc",
            Box::new(move || {
                black_box(pre.borrow_mut().tensor_u16(black_box(y16.view())).unwrap());
            }),
        ),
        (
            "thermal_u8_640x512_to_tensor",
            Box::new(move || {
                pre.borrow_mut()
                    .tensor_u8_into(black_box(u8img.view()), out.borrow_mut().view_mut())
                    .unwrap()
            }),
        ),
        (
            "thermal_u8_640x512_to_tensor_alloc",
            Box::new(move || {
                black_box(pre.borrow_mut().tensor_u8(black_box(u8img.view())).unwrap());
            }),
        ),
    ]
}

/// On-CPU time of the calling thread in ns (first field of `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Per-call on-CPU time, median and minimum over batches, one line per case.
///
/// The kernel updates a thread's run time at scheduler ticks and switches, so it is read only
/// around batches of at least 0.25 s of CPU time (error below 3 %), unless
/// `EDGEBIND_BENCH_CALLS` fixes the calls per batch (for instruction counts).
fn cpu_time_table(cases: &mut [Case<'_>]) {
    let batches = env_usize("EDGEBIND_BENCH_BATCHES", 15).max(1);
    let fixed_calls = env_usize("EDGEBIND_BENCH_CALLS", 0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("on-CPU time per call, {batches} batches of >= 0.25 s CPU, loadavg {load}");
    println!("{:<40} {:>12} {:>12}", "case", "median ms", "min ms");
    let only = std::env::var("EDGEBIND_BENCH_ONLY").unwrap_or_default();
    for (name, call) in cases.iter_mut().filter(|(name, _)| name.contains(&only)) {
        call(); // tables and buffers
        let mut per_call_ms: Vec<f64> = (0..batches)
            .filter_map(|_| {
                let t0 = thread_cpu_ns()?;
                let mut calls = 0u64;
                let mut t1 = t0;
                while (fixed_calls == 0 && t1 - t0 < 250_000_000) || calls < fixed_calls as u64 {
                    for _ in 0..16 {
                        call();
                    }
                    calls += 16;
                    t1 = thread_cpu_ns()?;
                }
                Some((t1 - t0) as f64 / calls as f64 / 1e6)
            })
            .collect();
        per_call_ms.sort_by(f64::total_cmp);
        let median = per_call_ms.get(per_call_ms.len() / 2).copied();
        let min = per_call_ms.first().copied();
        match (median, min) {
            (Some(median), Some(min)) => println!("{name:<40} {median:>12.4} {min:>12.4}"),
            _ => println!("{name:<40} (no /proc/thread-self/schedstat)"),
        }
    }
}

fn main() {
    let pre = std::cell::RefCell::new(ThermalPreprocessor::new(ThermalParams::default()).unwrap());
    let out = std::cell::RefCell::new(Array3::<f32>::zeros((1, 224, 224)));
    let y16 = frame(160, 120, |v| 29315u16 + v as u16);
    let u8img = frame(640, 512, |v| (v % 256) as u8);
    let mut cases = cases(&pre, &out, &y16, &u8img);
    if std::env::var_os("EDGEBIND_BENCH_CPU").is_some() {
        cpu_time_table(&mut cases);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    for (name, call) in cases.iter_mut() {
        c.bench_function(name, |b| b.iter(&mut *call));
    }
    c.final_summary();
}
