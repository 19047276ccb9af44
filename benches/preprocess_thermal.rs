#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Thermal preprocessing hot paths: Lepton-size Y16 frame and Boson-size 8-bit frame to tensor.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
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

fn bench_thermal(c: &mut Criterion) {
    let mut pre = ThermalPreprocessor::new(ThermalParams::default()).unwrap();
    let mut out = Array3::<f32>::zeros((1, 224, 224));

    let y16 = frame(160, 120, |v| 29315u16 + v as u16);
    c.bench_function("thermal_y16_160x120_to_tensor", |b| {
        b.iter(|| {
            pre.tensor_u16_into(black_box(y16.view()), out.view_mut())
                .unwrap()
        })
    });
    c.bench_function("thermal_y16_160x120_to_tensor_alloc", |b| {
        b.iter(|| pre.tensor_u16(black_box(y16.view())).unwrap())
    });

    let u8img = frame(640, 512, |v| (v % 256) as u8);
    c.bench_function("thermal_u8_640x512_to_tensor", |b| {
        b.iter(|| {
            pre.tensor_u8_into(black_box(u8img.view()), out.view_mut())
                .unwrap()
        })
    });
    c.bench_function("thermal_u8_640x512_to_tensor_alloc", |b| {
        b.iter(|| pre.tensor_u8(black_box(u8img.view())).unwrap())
    });
}

criterion_group!(benches, bench_thermal);
criterion_main!(benches);
