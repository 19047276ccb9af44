//! IMU windowing + preprocessing per window, and concept matching (1024-d, 1,000 concepts).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgebind::concepts::ConceptBank;
use edgebind::preprocess::imu::ImuPreprocessor;
use edgebind::time::Timestamp;
use edgebind::window::{WindowSpec, Windower};
use ndarray::Array2;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

fn bench_imu(c: &mut Criterion) {
    let mut seed = 1;
    let samples: Vec<[f32; 6]> = (0..6000)
        .map(|_| std::array::from_fn(|_| lcg(&mut seed)))
        .collect();
    for rate in [200.0, 400.0] {
        let spec = WindowSpec::from_ms(5000, 1000, rate).unwrap();
        let window: Vec<[f32; 6]> = samples[..spec.window_len].to_vec();
        let mut pre = ImuPreprocessor::new();
        c.bench_function(&format!("imu_preprocess_window_{rate}hz"), |b| {
            b.iter(|| black_box(pre.tensor_from_samples(black_box(&window)).unwrap()))
        });
        // One hop's worth of samples pushed through the windower, plus the window it emits.
        c.bench_function(
            &format!("imu_window_and_preprocess_per_hop_{rate}hz"),
            |b| {
                let mut w = Windower::new(spec);
                let mut seq = 0u64;
                let mut windows = Vec::new();
                // Fill once so that every hop emits a window.
                for s in &samples[..spec.window_len] {
                    w.push(seq, at(seq), *s, &mut windows);
                    seq += 1;
                }
                b.iter(|| {
                    let mut out = None;
                    for k in 0..spec.hop_len {
                        let s = samples[(seq as usize + k) % samples.len()];
                        windows.clear();
                        w.push(seq, at(seq), s, &mut windows);
                        if let Some(win) = windows.first() {
                            out = Some(pre.tensor_from_samples(&win.samples).unwrap());
                        }
                        seq += 1;
                    }
                    black_box(out)
                })
            },
        );
    }
}

fn at(seq: u64) -> Timestamp {
    Timestamp {
        mono_ns: seq * 2_500_000,
        utc_ns: 0,
    }
}

fn bench_concepts(c: &mut Criterion) {
    let mut seed = 7;
    let k = 1000;
    let dim = 1024;
    let e = Array2::from_shape_fn((k, dim), |_| lcg(&mut seed));
    let labels = (0..k).map(|i| format!("concept {i}")).collect();
    let bank = ConceptBank::new(labels, e).unwrap();
    let q: Vec<f32> = (0..dim).map(|_| lcg(&mut seed)).collect();
    c.bench_function("concepts_top5_of_1000x1024", |b| {
        b.iter(|| black_box(bank.top_k(black_box(&q), 5, -1.0)))
    });
}

criterion_group!(benches, bench_imu, bench_concepts);
criterion_main!(benches);
