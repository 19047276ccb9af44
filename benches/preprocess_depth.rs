//! Depth preprocessing hot path: one 640x480 u16 frame -> `[1,224,224]`, single thread.

use criterion::{criterion_group, criterion_main, Criterion};
use edgebind::preprocess::depth::{DepthParams, DepthPreprocessor, HoleFill};
use ndarray::Array2;

/// A deterministic frame resembling a real one: smooth ramps, texture, a near box, a far strip
/// and holes (0 mm), so the table look-ups are as cache-friendly as on real data, not better.
fn synthetic_frame() -> Array2<u16> {
    Array2::from_shape_fn((480, 640), |(y, x)| {
        let base = 800.0 + 6.0 * x as f64 + 4.0 * y as f64 + 40.0 * ((x as f64) * 0.05).sin();
        let near_box = (200..320).contains(&x) && (150..300).contains(&y);
        let hole =
            (400..480).contains(&x) && (300..360).contains(&y) || (x % 37 == 0 && y % 23 == 0);
        if hole {
            0
        } else if near_box {
            450
        } else {
            base as u16
        }
    })
}

fn bench_depth(c: &mut Criterion) {
    let frame = synthetic_frame();
    let mut pre = DepthPreprocessor::new(DepthParams::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut out = vec![0.0f32; 224 * 224];
    c.bench_function("depth_640x480_to_1x224x224", |b| {
        b.iter(|| {
            pre.tensor_into(std::hint::black_box(frame.view()), &mut out)
                .unwrap_or_else(|e| panic!("{e}"));
            std::hint::black_box(&out);
        })
    });
    c.bench_function("depth_640x480_to_1x224x224_alloc", |b| {
        b.iter(|| {
            pre.tensor(std::hint::black_box(frame.view()))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    let mut filled = DepthPreprocessor::new(DepthParams {
        holes: HoleFill::NearestInRow,
        ..DepthParams::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("depth_640x480_to_1x224x224_nearest_in_row", |b| {
        b.iter(|| {
            filled
                .tensor_into(std::hint::black_box(frame.view()), &mut out)
                .unwrap_or_else(|e| panic!("{e}"));
        })
    });
}

criterion_group!(benches, bench_depth);
criterion_main!(benches);
