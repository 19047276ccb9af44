//! Concepts as words with the real binary, the real ONNX Runtime and the tiny model set given the
//! tiny text encoder: `edgebind concepts build` writes a bank equal, row by row, to `edgebind
//! embed text` and to onnxruntime's (Python) rows for ImageBind's own token ids; the daemon's
//! loader takes it; `edgebind concepts match` prints what the daemon would match. The library's
//! embedder releases or keeps the encoder as asked and its disk cache serves a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use edgebind::concepts::cache::{self, BankCache, CacheOutcome};
use edgebind::concepts::embed::{EmbedOptions, Residency, TextEmbedder, TextModel};
use edgebind::concepts::reload::load_bank;
use edgebind::concepts::set::TextSet;
use edgebind::concepts::ConceptBank;
use edgebind::inference::manifest::{sha256_file, Manifest};
use edgebind::inference::OrtRuntime;
use ndarray::Array2;

/// models/tiny plus the tiny text encoder and CLIP's vocabulary, with a manifest `text` entry.
fn model_set(dir: &Path) -> PathBuf {
    let m = dir.join("models");
    std::fs::create_dir_all(&m).unwrap();
    for e in std::fs::read_dir(repo().join("models/tiny")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), m.join(e.file_name())).unwrap();
    }
    std::fs::copy(fixture("models/text_tiny.onnx"), m.join("text.onnx")).unwrap();
    let bpe = repo().join(".bpe/bpe_simple_vocab_16e6.txt.gz");
    assert!(
        bpe.is_file(),
        "{} missing: run tools/fetch_clip_bpe.sh",
        bpe.display()
    );
    std::fs::copy(&bpe, m.join("bpe_simple_vocab_16e6.txt.gz")).unwrap();
    let path = m.join("manifest.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["text"] = serde_json::json!({
        "file": "text.onnx", "sha256": sha256_file(&m.join("text.onnx")).unwrap(),
        "input": "text", "output": "embedding",
        "tokenizer": "bpe_simple_vocab_16e6.txt.gz",
        "tokenizer_sha256": sha256_file(&m.join("bpe_simple_vocab_16e6.txt.gz")).unwrap(),
    });
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    m
}

fn ok(cmd: &mut std::process::Command) -> String {
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(cmd: &mut std::process::Command) -> String {
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn build(labels: &Path, models: &Path, out: &Path, extra: &[&str]) -> Array2<f32> {
    ok(edgebind()
        .args(["concepts", "build"])
        .arg(labels)
        .arg("--models")
        .arg(models)
        .arg("-o")
        .arg(out)
        .args(extra));
    npy_f32_2d(&out.join("concepts.npy"))
}

fn embed_text(input: &Path, models: &Path, out: &Path) -> Array2<f32> {
    ok(edgebind()
        .args(["embed", "text"])
        .arg(input)
        .arg("--model")
        .arg(models.join("text.onnx"))
        .arg("-o")
        .arg(out));
    npy_f32_2d(out)
}

fn max_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// refdata's prompts (row i of ImageBind's token ids) but the empty one, which is no label.
fn refdata_labels() -> Vec<(usize, String)> {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(refdata_dir().join("text/text_prompts.json")).unwrap(),
    )
    .unwrap();
    v["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.as_str().unwrap().to_string()))
        .filter(|(_, p)| !p.is_empty())
        .collect()
}

#[test]
fn a_built_bank_equals_embed_text_and_the_python_rows_of_imagebinds_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let models = model_set(dir.path());
    let labels = refdata_labels();
    let file = dir.path().join("labels.txt");
    let text: String = labels.iter().map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(&file, format!("# refdata prompts\n\n{text}")).unwrap();

    let bank = build(&file, &models, &dir.path().join("out"), &[]);
    assert_eq!(bank.shape(), [labels.len(), 1024]);
    // `embed text` reads every non-empty line (no comments).
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, &text).unwrap();
    let embedded = embed_text(&plain, &models, &dir.path().join("e.npy"));
    assert_eq!(
        bank, embedded,
        "bank rows differ from `edgebind embed text`"
    );
    let written = std::fs::read_to_string(dir.path().join("out/concepts.txt")).unwrap();
    assert_eq!(written, text);

    // onnxruntime (Python) on ImageBind's own token ids of the same prompts.
    let python = npy_f32_2d(&fixture("models/text_tiny_ref_output.npy"));
    for (row, (i, label)) in labels.iter().enumerate() {
        let d = bank
            .row(row)
            .iter()
            .zip(python.row(*i))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-5, "{label:?}: max |diff| {d} vs the Python row");
    }

    // One prompt per run gives the same rows.
    let one = build(
        &file,
        &models,
        &dir.path().join("b1"),
        &["--batch-size", "1"],
    );
    assert!(max_diff(&one, &bank) < 1e-6);
}

#[test]
fn a_template_embeds_the_prompts_and_the_bank_keeps_the_labels() {
    let dir = tempfile::tempdir().unwrap();
    let models = model_set(dir.path());
    let file = dir.path().join("labels.txt");
    std::fs::write(&file, "dog barking\nsmoke alarm\n").unwrap();
    let bank = build(
        &file,
        &models,
        &dir.path().join("out"),
        &["--template", "a sound of {}"],
    );
    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, "a sound of dog barking\na sound of smoke alarm\n").unwrap();
    assert_eq!(
        bank,
        embed_text(&prompts, &models, &dir.path().join("e.npy"))
    );
    let labels = std::fs::read_to_string(dir.path().join("out/concepts.txt")).unwrap();
    assert_eq!(labels, "dog barking\nsmoke alarm\n");
}

#[test]
fn building_into_the_model_set_updates_the_manifest_so_the_daemons_loader_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let models = model_set(dir.path());
    let file = dir.path().join("set.json");
    std::fs::write(
        &file,
        r#"{"labels": ["warm body in view", "an empty corridor"], "template": "a thermal photo of {}",
            "aliases": {"an empty corridor": ["an empty hallway"]}}"#,
    )
    .unwrap();
    let stdout = ok(edgebind()
        .args(["concepts", "build"])
        .arg(&file)
        .arg("--models")
        .arg(&models)
        .arg("-o")
        .arg(&models));
    assert!(stdout.contains("concepts entry updated"), "{stdout}");
    let bank = load_bank(&models, 1024).unwrap();
    assert_eq!(bank.labels(), ["warm body in view", "an empty corridor"]);
    let m = Manifest::load(&models).unwrap();
    // Every encoder entry is kept (as many as the tiny model set has).
    let tiny = Manifest::load(&repo().join("models/tiny")).unwrap();
    assert_eq!(m.models.len(), tiny.models.len());
    assert!(m.text.is_some());
    // A changed file is caught by the checksums the build wrote.
    std::fs::write(models.join("concepts.txt"), "x\ny\n").unwrap();
    let e = load_bank(&models, 1024).unwrap_err().to_string();
    assert!(e.contains("concepts.txt: sha256 is"), "{e}");
}

#[test]
fn mistakes_are_one_line_errors_naming_the_file_or_field() {
    let dir = tempfile::tempdir().unwrap();
    let models = model_set(dir.path());
    let file = dir.path().join("labels.txt");
    std::fs::write(&file, "dog\ncat\ndog\n").unwrap();
    let e = fails(
        edgebind()
            .args(["concepts", "build"])
            .arg(&file)
            .arg("--models")
            .arg(&models)
            .arg("-o")
            .arg(dir.path()),
    );
    assert!(
        e.contains("labels.txt") && e.contains("labels[2]: \"dog\" appears twice"),
        "{e}"
    );
    std::fs::write(&file, "dog\n").unwrap();
    let e = fails(
        edgebind()
            .args(["concepts", "build"])
            .arg(&file)
            .args(["--template", "a sound of"])
            .arg("--models")
            .arg(&models)
            .arg("-o")
            .arg(dir.path()),
    );
    assert!(
        e.contains("template: \"a sound of\" must hold exactly one {}"),
        "{e}"
    );
    let e = fails(
        edgebind()
            .args(["concepts", "build"])
            .arg(&file)
            .arg("--models")
            .arg(repo().join("models/tiny"))
            .arg("-o")
            .arg(dir.path()),
    );
    assert!(e.contains("has no text encoder"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

#[test]
fn match_prints_the_concepts_the_daemon_would_match() {
    let dir = tempfile::tempdir().unwrap();
    let models = model_set(dir.path());
    let input = repo().join("tests/fixtures/recordings/thermal_demo_160x120_u16.npy");
    let stdout = ok(edgebind()
        .args(["concepts", "match"])
        .arg(&input)
        .args(["--modality", "thermal", "--top-k", "3", "--models"])
        .arg(&models));
    // The same input through `embed` and the bank's own matching.
    let emb = dir.path().join("t.npy");
    ok(edgebind()
        .args(["embed", "thermal"])
        .arg(&input)
        .arg("--model")
        .arg(models.join("thermal.onnx"))
        .arg("-o")
        .arg(&emb));
    let emb = npy_f32_2d(&emb);
    let bank = ConceptBank::load(
        &models.join("concepts.txt"),
        &models.join("concepts.npy"),
        1024,
    )
    .unwrap();
    let want = bank.top_k(emb.row(0).as_slice().unwrap(), 3, -1.0);
    let rows: Vec<&str> = stdout.lines().skip(2).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    for (line, m) in rows.iter().zip(&want) {
        assert!(line.contains(&m.label), "{line} vs {}", m.label);
        assert!(line.ends_with(&format!("{:.3}", m.score)), "{line}");
    }
    // Words given on the command line, embedded with the text encoder.
    let stdout = ok(edgebind()
        .args(["concepts", "match"])
        .arg(&input)
        .args(["--modality", "thermal", "--models"])
        .arg(&models)
        .args(["--concepts", "a person standing, an empty room"]));
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(stdout.contains("a person standing") && stdout.contains("an empty room"));
    let e = fails(
        edgebind()
            .args(["concepts", "match"])
            .arg(&input)
            .args(["--modality", "thermal", "--models"])
            .arg(&models)
            .args(["--concepts", "missing/words.txt"]),
    );
    assert!(e.contains("missing/words.txt: does not exist"), "{e}");
}

fn runtime() -> &'static OrtRuntime {
    static RT: OnceLock<OrtRuntime> = OnceLock::new();
    RT.get_or_init(|| OrtRuntime::load(None).unwrap())
}

#[test]
fn the_embedder_releases_or_keeps_the_encoder_and_the_cache_serves_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let models = model_set(dir.path());
    let model = TextModel::from_manifest(&Manifest::load(&models).unwrap()).unwrap();
    let set = TextSet::new(
        vec!["dog barking".into(), "smoke alarm".into()],
        Some("a sound of {}".into()),
        Default::default(),
    )
    .unwrap();
    let embedder = |residency| {
        let options = EmbedOptions {
            residency,
            batch_size: 8,
            ..EmbedOptions::default()
        };
        TextEmbedder::new(runtime().clone(), model.clone(), options)
    };
    let mut calls = Vec::new();
    let mut transient = embedder(Residency::Transient);
    let rows = transient
        .embed(&set, &mut |d, t| calls.push((d, t)))
        .unwrap();
    assert!(!transient.is_loaded());
    assert_eq!(calls, [(2, 2)]);
    let mut resident = embedder(Residency::Resident);
    assert_eq!(
        resident.embed(&set, &mut |_, _| {}).unwrap().rows,
        rows.rows
    );
    assert!(resident.is_loaded());

    let cache = BankCache::new(dir.path().join("cache"));
    let mut fresh = embedder(Residency::Resident);
    let (first, outcome) =
        cache::cached_rows(&mut fresh, Some(&cache), &set, &mut |_, _| {}).unwrap();
    assert_eq!(outcome, CacheOutcome::Embedded);
    assert_eq!(first.rows, rows.rows);
    // A restart: a new embedder gets the rows from the cache without loading the encoder.
    let mut restarted = embedder(Residency::Resident);
    let (hit, outcome) =
        cache::cached_rows(&mut restarted, Some(&cache), &set, &mut |_, _| {}).unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);
    assert!(!restarted.is_loaded());
    assert_eq!(hit.rows, rows.rows);
    // A damaged entry is rebuilt, not fatal.
    let entry = cache.path(&cache::key(&model, &set));
    let mut bytes = std::fs::read(&entry).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 0x55;
    std::fs::write(&entry, &bytes).unwrap();
    let (again, outcome) =
        cache::cached_rows(&mut restarted, Some(&cache), &set, &mut |_, _| {}).unwrap();
    assert!(matches!(outcome, CacheOutcome::Rebuilt { ref reason } if reason.contains("checksum")));
    assert_eq!(again.rows, rows.rows);
    assert_eq!(
        cache.get(&cache::key(&model, &set)).unwrap().unwrap().rows,
        rows.rows
    );
    // An encoder file that differs from the manifest is refused by name.
    std::fs::write(models.join("text.onnx"), b"not a model").unwrap();
    let e = embedder(Residency::Transient)
        .embed(&set, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("text.onnx: sha256 is"), "{e}");
}
