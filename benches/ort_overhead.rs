//! Inference call overhead: edgebind's encoder call (`Encoder::run` / `TextEncoder::run`: input
//! view → ONNX Runtime → shape/finite checks → owned output) on one model, timed per call.
//! `tools/ort_overhead.py` runs the same model through ONNX Runtime's Python API with the same
//! thread count and alternates with this binary; docs/performance.md has the table.
//!
//! ```sh
//! cargo bench --bench ort_overhead -- --modality imu --model models/tiny/imu.onnx \
//!     --threads 1 --iters 200 [--batch 1] [--json]
//! ```
//! Without `--model`: every tiny model, 1 thread. Prints a table (or one JSON line per model
//! with `--json`, for the Python driver). Run directly, pass `--bench` too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use edgebind::config::ExecutionProviderKind;
use edgebind::inference::{example_input_shape, Encoder, OrtRuntime, TextEncoder};
use edgebind::Modality;
use ndarray::{Array2, ArrayD, IxDyn};

struct Args {
    runs: Vec<(String, PathBuf)>,
    threads: usize,
    iters: usize,
    warmup: usize,
    batch: usize,
    json: bool,
}

fn parse() -> Args {
    let mut a = Args {
        runs: Vec::new(),
        threads: 1,
        iters: 200,
        warmup: 10,
        batch: 1,
        json: false,
    };
    // `cargo test --all-targets` runs bench binaries without `--bench`: one call each, a smoke
    // test of the path, no timing.
    if !std::env::args().any(|a| a == "--bench") {
        a.iters = 1;
        a.warmup = 0;
    }
    let mut modality = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect("missing value");
        match arg.as_str() {
            "--modality" => modality = Some(value()),
            "--model" => a.runs.push((
                modality.clone().expect("--modality before --model"),
                PathBuf::from(value()),
            )),
            "--threads" => a.threads = value().parse().expect("--threads N"),
            "--iters" => a.iters = value().parse().expect("--iters N"),
            "--warmup" => a.warmup = value().parse().expect("--warmup N"),
            "--batch" => a.batch = value().parse().expect("--batch N"),
            "--json" => a.json = true,
            _ => {} // `cargo bench` passes --bench
        }
    }
    if a.runs.is_empty() {
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny");
        for m in ["imu", "audio", "depth", "thermal"] {
            a.runs.push((m.to_string(), tiny.join(format!("{m}.onnx"))));
        }
    }
    a
}

/// Deterministic input with the same values `tools/ort_overhead.py` uses.
fn input(shape: &[usize]) -> ArrayD<f32> {
    let mut k = 0u32;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        k += 1;
        (f64::from(k) * 0.001).sin() as f32
    })
}

fn text_ids(batch: usize) -> Array2<i64> {
    // SOT, 5 ids, EOT, zero padding: like a short label.
    Array2::from_shape_fn((batch, 77), |(_, j)| match j {
        0 => 49406,
        1..=5 => 320 + j as i64,
        6 => 49407,
        _ => 0,
    })
}

fn stats(mut ms: Vec<f64>) -> (f64, f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    (pick(0.5), mean, pick(0.1), pick(0.9))
}

fn main() {
    let a = parse();
    let rt = OrtRuntime::load(None).expect("ONNX Runtime (tools/fetch_onnxruntime.sh)");
    if !a.json {
        println!(
            "ORT {} | threads {} | batch {} | {} timed calls after {} warm-up",
            rt.version, a.threads, a.batch, a.iters, a.warmup
        );
        println!("| model | median ms | mean ms | p10 ms | p90 ms |");
        println!("|---|---:|---:|---:|---:|");
    }
    for (modality, path) in &a.runs {
        let cpu = [ExecutionProviderKind::Cpu];
        let mut call: Box<dyn FnMut()> = if modality == "text" {
            let mut enc = TextEncoder::load(&rt, path, &cpu, a.threads).expect("text model");
            let ids = text_ids(a.batch);
            Box::new(move || {
                enc.run(&ids).expect("run");
            })
        } else {
            let m = match modality.as_str() {
                "imu" => Modality::Imu,
                "audio" => Modality::Audio,
                "depth" => Modality::Depth,
                "thermal" => Modality::Thermal,
                other => panic!("unknown modality {other}"),
            };
            let mut enc = Encoder::load(&rt, m, path, &cpu, false, a.threads).expect("model");
            let mut shape = vec![a.batch];
            shape.extend(example_input_shape(m));
            let x = input(&shape);
            Box::new(move || {
                enc.run(&x).expect("run");
            })
        };
        for _ in 0..a.warmup {
            call();
        }
        let ms: Vec<f64> = (0..a.iters)
            .map(|_| {
                let t = Instant::now();
                call();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let (median, mean, p10, p90) = stats(ms);
        if a.json {
            println!(
                "{{\"model\": \"{}\", \"median_ms\": {median}, \"mean_ms\": {mean}, \"p10_ms\": {p10}, \"p90_ms\": {p90}}}",
                path.display()
            );
        } else {
            println!(
                "| {} | {median:.3} | {mean:.3} | {p10:.3} | {p90:.3} |",
                path.display()
            );
        }
    }
}
