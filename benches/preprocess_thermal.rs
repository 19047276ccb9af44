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

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::{cpu_time_table, Case};

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
