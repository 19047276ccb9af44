//! Trigger engine cost per window: 50 triggers of mixed kinds on 1024-d embeddings (20 concept
//! with 3 labels, 10 example with 32-member sets, 10 novelty sharing one 256+1-row f16 memory,
//! 10 stuck), plus the input statistics of one IMU window and the state's save/restore.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgebind::time::Timestamp;
use edgebind::triggers::config::{validate_all, TriggerConfig, TriggerKind};
use edgebind::triggers::{EngineOptions, InputStats, TriggerEngine, WindowObservation};

const DIM: usize = 1024;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

fn unit(seed: &mut u64) -> Vec<f32> {
    let v: Vec<f32> = (0..DIM).map(|_| lcg(seed)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn trigger(i: usize) -> TriggerConfig {
    let kind = match i {
        0..20 => TriggerKind::Concept,
        20..30 => TriggerKind::Example,
        30..40 => TriggerKind::Novelty,
        _ => TriggerKind::Stuck,
    };
    let mut t: TriggerConfig =
        toml::from_str(&format!("name = \"t{i}\"\nkind = \"{}\"\n", kind.as_str())).unwrap();
    match kind {
        TriggerKind::Concept => {
            t.labels = Some((0..3).map(|k| format!("c{}", (i * 3 + k) % 40)).collect());
            t.on_threshold = Some(0.3);
        }
        TriggerKind::Example => {
            t.example_set = Some(format!("set{}", i % 5));
            t.on_threshold = Some(0.8);
        }
        TriggerKind::Novelty => {
            t.memory_windows = Some(256);
            t.on_threshold = Some(0.5);
        }
        TriggerKind::Stuck => {}
    }
    t
}

fn engine(seed: &mut u64) -> TriggerEngine {
    let configs: Vec<TriggerConfig> = (0..50).map(trigger).collect();
    let specs = validate_all(&configs).unwrap();
    let labels: Vec<Vec<f32>> = (0..40).map(|_| unit(seed)).collect();
    let lookup = |l: &str| labels.get(l[1..].parse::<usize>().ok()?).cloned();
    let options = EngineOptions { recent_windows: 64 };
    let mut e = TriggerEngine::new("imu0", DIM, specs, &lookup, options).unwrap();
    for s in 0..5 {
        let rows: Vec<Vec<f32>> = (0..32).map(|_| unit(seed)).collect();
        e.set_example_set(&format!("set{s}"), &rows).unwrap();
    }
    e
}

fn at(seq: u64) -> Timestamp {
    Timestamp {
        mono_ns: seq * 1_000_000_000,
        utc_ns: 1_765_000_000_000_000_000 + seq as i64 * 1_000_000_000,
    }
}

fn bench_observe(c: &mut Criterion) {
    let mut seed = 3;
    let mut e = engine(&mut seed);
    let windows: Vec<Vec<f32>> = (0..512).map(|_| unit(&mut seed)).collect();
    let stats: Vec<InputStats> = (0..512)
        .map(|_| {
            let v: Vec<f32> = (0..1000).map(|_| lcg(&mut seed)).collect();
            InputStats::from_values(&v)
        })
        .collect();
    let mut seq = 0u64;
    let mut observe = |e: &mut TriggerEngine| {
        let i = (seq % 512) as usize;
        let events = e.observe(&WindowObservation {
            sensor: "imu0",
            seq,
            start: at(seq),
            end: at(seq + 5),
            embedding: &windows[i],
            input: Some(&stats[i]),
        });
        seq += 1;
        events
    };
    // Fill the novelty memory so every window is compared with all of it.
    for _ in 0..300 {
        observe(&mut e);
    }
    c.bench_function("triggers_observe_50_mixed_1024d", |b| {
        b.iter(|| black_box(observe(&mut e)))
    });
    let bytes = e.to_bytes();
    c.bench_function("triggers_save_state", |b| {
        b.iter(|| black_box(e.to_bytes()))
    });
    c.bench_function("triggers_restore_state", |b| {
        b.iter(|| {
            let mut fresh = engine(&mut 3);
            black_box(fresh.restore(black_box(&bytes)).unwrap())
        })
    });
}

fn bench_input_stats(c: &mut Criterion) {
    let mut seed = 5;
    let imu = ndarray::ArrayD::from_shape_fn(vec![6, 2000], |_| lcg(&mut seed));
    c.bench_function("triggers_input_stats_imu_6x2000", |b| {
        b.iter(|| black_box(InputStats::from_tensor(black_box(&imu))))
    });
}

criterion_group!(benches, bench_observe, bench_input_stats);
criterion_main!(benches);
