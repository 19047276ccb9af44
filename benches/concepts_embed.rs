//! Concept labels embedded per second by the text encoder through `concepts::embed`
//! (tokenizer + ONNX Runtime, 1 intra-op thread), batch sizes 1, 8, 32 and 128, and the
//! process's resident memory before the encoder is loaded, at its peak while embedding, and
//! after it is released (`Residency::Transient`).
//!
//! `cargo bench --bench concepts_embed` (release profile). Models: the tiny text stand-in
//! (tests/fixtures/models/text_tiny.onnx) always; a real-size one when
//! `EDGEBIND_BENCH_TEXT_MODELS` names a model set with a `text` entry (e.g. the output of
//! `tools/export_imagebind.py --random-init --modalities text`). `EDGEBIND_BENCH_LABELS` sets
//! the labels per run (default 512 tiny, 32 real size; at least the batch size), and
//! `EDGEBIND_BENCH_BATCHES` the batch sizes (default `1,8,32,128`). Under `cargo test` it runs
//! the tiny model once at batch 8 as a smoke test. Prints a table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use edgebind::concepts::embed::{EmbedOptions, Residency, TextEmbedder, TextModel};
use edgebind::concepts::set::TextSet;
use edgebind::inference::manifest::{sha256_file, Manifest};
use edgebind::inference::OrtRuntime;

const WORDS: [&str; 16] = [
    "dog",
    "smoke alarm",
    "person",
    "glass",
    "engine",
    "door",
    "rain",
    "music",
    "baby",
    "bird",
    "water",
    "keyboard",
    "car",
    "wind",
    "footsteps",
    "speech",
];

/// Resident set size of this process, MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn labels(n: usize) -> TextSet {
    let labels = (0..n)
        .map(|i| {
            let (a, b) = (WORDS[i % 16], WORDS[(i / 16) % 16]);
            format!("{a} and {b} number {i}")
        })
        .collect();
    TextSet::new(labels, Some("a sound of {}".into()), Default::default()).unwrap()
}

fn tiny_model() -> TextModel {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let onnx = repo.join("tests/fixtures/models/text_tiny.onnx");
    let vocab = repo.join(".bpe/bpe_simple_vocab_16e6.txt.gz");
    TextModel {
        onnx_sha256: sha256_file(&onnx).unwrap(),
        vocab_sha256: sha256_file(&vocab).unwrap(),
        onnx,
        vocab,
    }
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name).ok().map_or_else(
        || default.to_vec(),
        |v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
    )
}

fn bench_model(
    runtime: &OrtRuntime,
    name: &str,
    model: &TextModel,
    labels_per_run: usize,
    batches: &[usize],
) {
    for &batch in batches {
        let n = labels_per_run.max(batch);
        let set = labels(n);
        let options = EmbedOptions {
            batch_size: batch,
            residency: Residency::Transient,
            ..EmbedOptions::default()
        };
        let mut embedder = TextEmbedder::new(runtime.clone(), model.clone(), options);
        let before = rss_mib();
        let mut peak = before;
        let mut first_batch_at = None;
        let t0 = Instant::now();
        let rows = embedder
            .embed(&set, &mut |_, _| {
                peak = peak.max(rss_mib());
                first_batch_at.get_or_insert_with(Instant::now);
            })
            .unwrap();
        let total_s = t0.elapsed().as_secs_f64();
        let after = rss_mib();
        assert_eq!(rows.rows.nrows(), n);
        // Labels per second counted from the first batch's end: the load is reported apart.
        let first = first_batch_at.unwrap();
        let load_and_first_s = first.duration_since(t0).as_secs_f64();
        let rest_s = total_s - load_and_first_s;
        let rate = if n > batch {
            (n - batch) as f64 / rest_s
        } else {
            n as f64 / total_s
        };
        println!(
            "| {name} | {batch} | {n} | {rate:.1} | {load_and_first_s:.2} | {total_s:.2} | {before:.0} | {peak:.0} | {after:.0} |"
        );
    }
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let runtime = OrtRuntime::load(None).unwrap();
    println!("| model | batch | labels | labels/s (after the first batch) | load + first batch s | total s | RSS before MiB | RSS peak MiB | RSS after release MiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    if smoke {
        bench_model(&runtime, "tiny", &tiny_model(), 16, &[8]);
        return;
    }
    let batches = env_list("EDGEBIND_BENCH_BATCHES", &[1, 8, 32, 128]);
    let n = |default: usize| env_list("EDGEBIND_BENCH_LABELS", &[default])[0];
    bench_model(&runtime, "tiny", &tiny_model(), n(512), &batches);
    if let Ok(dir) = std::env::var("EDGEBIND_BENCH_TEXT_MODELS") {
        let manifest = Manifest::load(Path::new(&dir)).unwrap();
        let model = TextModel::from_manifest(&manifest).expect("the model set has no text entry");
        bench_model(&runtime, "real size", &model, n(32), &batches);
    }
}
