//! Inference at run time against the real ONNX Runtime (the CPU-only PyPI build in `.ort/lib`):
//! provider fallback and `require_gpu`, the TensorRT cache directory check, the version guard,
//! the parity check against manifest references, batching, and a model that cannot keep up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use edgebind::concepts::{ConceptBank, SharedConcepts};
use edgebind::inference::manifest::sha256_file;
use edgebind::inference::worker::{spawn_worker, Batching, Job, WorkerContext};
use edgebind::inference::{Encoder, OrtRuntime};
use edgebind::output::{Event, FullPolicy, OutputQueue, Outputs};
use edgebind::pipeline::WindowMeta;
use edgebind::publish::payload::unit_norm;
use edgebind::telemetry::{ModelStats, Stage, StreamStats};
use edgebind::time::Clock;
use edgebind::Modality;
use ndarray::{ArrayD, Dimension, IxDyn};

fn imu_source(path: &Path, extra: &str) -> String {
    format!(
        "[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\n{extra}",
        path.display()
    )
}

/// `base_config` with its `[runtime]` table replaced by `runtime`.
fn config_with_runtime(device: &str, port: u16, runtime: &str) -> String {
    base_config(device, port).replace(
        "[runtime]\nexecution_providers = [\"cpu\"]\n",
        &format!("[runtime]\n{runtime}\n"),
    )
}

fn schema_for(def: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("docs/mqtt.schema.json")).unwrap();
    let mut schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let obj = schema.as_object_mut().unwrap();
    obj.remove("oneOf");
    obj.insert("$ref".into(), format!("#/$defs/{def}").into());
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(def: &str, v: &serde_json::Value) {
    let validator = schema_for(def);
    let errors: Vec<String> = validator.iter_errors(v).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{def} does not match the schema: {errors:?}\n{v}"
    );
}

fn scrape_metrics(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn metric_value(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn tensorrt_and_cuda_fall_back_to_cpu_with_their_reasons_logged_and_the_provider_published() {
    let broker = LocalBroker::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = edgebind::publish::broker::free_port().unwrap();
    let cache = dir.path().join("trt-cache");
    let config = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{}",
        config_with_runtime(
            "fallback",
            broker.port(),
            &format!(
                "execution_providers = [\"tensorrt\", \"cuda\", \"cpu\"]\n[runtime.tensorrt]\ncache_dir = \"{}\"",
                cache.display()
            ),
        ),
        imu_source(&fixture("recordings/imu_demo_200hz.csv"), "loop = true\nhop_ms = 200\n")
    );
    let config = config.replace("stats_interval_s = 0", "stats_interval_s = 1");
    let path = write_config(dir.path(), &config);
    let sub = Subscriber::start(broker.port(), "edgebind/fallback/#");
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&path, &log, &[]);
    let embedded = sub.wait_for(Duration::from_secs(60), |seen| {
        seen.iter().any(|m| m.topic.ends_with("/imu/embedding"))
            && seen.iter().any(|m| m.topic.ends_with("/stats"))
    });
    // The retained state and the metrics say which provider is in use.
    let mut body = String::new();
    for _ in 0..100 {
        body = scrape_metrics(metrics_port).unwrap_or_default();
        if body.contains("edgebind_inference_provider_info") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&child);
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(embedded, "no embedding:\n{text}");
    assert!(status.is_some(), "daemon did not stop:\n{text}");

    // Each GPU provider's failure is logged with ONNX Runtime's own reason, in order.
    let trt = text
        .lines()
        .find(|l| l.contains("provider=\"tensorrt\"") && l.contains("trying the next"))
        .unwrap_or_else(|| panic!("no tensorrt fallback line:\n{text}"));
    let cuda = text
        .lines()
        .find(|l| l.contains("provider=\"cuda\"") && l.contains("trying the next"))
        .unwrap_or_else(|| panic!("no cuda fallback line:\n{text}"));
    for line in [trt, cuda] {
        assert!(line.contains("reason="), "{line}");
    }
    assert!(text.find(trt) < text.find(cuda), "{text}");
    assert!(
        text.contains("ONNX Runtime loaded") && text.contains("version=1.31.1"),
        "{text}"
    );
    assert!(
        text.contains("matching its reference") && text.contains("provider=\"cpu\""),
        "{text}"
    );

    let embedding = sub.on("/imu/embedding")[0].json();
    assert_valid("embedding", &embedding);
    assert_eq!(embedding["model"]["provider"], "cpu");
    assert_eq!(embedding["model"]["ort_version"], "1.31.1");
    let state = sub
        .on("/imu/state")
        .last()
        .map(Seen::json)
        .unwrap_or_else(|| panic!("no state message:\n{text}"));
    assert_valid("state", &state);
    assert_eq!(state["inference"]["provider"], "cpu", "{state}");
    assert_eq!(state["inference"]["step"], "cpu", "{state}");
    assert_eq!(state["inference"]["ort_version"], "1.31.1", "{state}");
    let stats = sub.on("/stats").last().map(Seen::json).unwrap();
    assert_valid("stats", &stats);
    assert_eq!(stats["inference"]["imu"]["provider"], "cpu", "{stats}");
    assert_eq!(stats["streams"]["imu"]["inference"]["provider"], "cpu");
    assert!(
        body.contains(
            "edgebind_inference_provider_info{model=\"imu\",provider=\"cpu\",step=\"cpu\",ort_version=\"1.31.1\"} 1"
        ),
        "{body}"
    );
    // The TensorRT cache directory was created (and checked writable) although TensorRT could
    // not be used: the check does not depend on the library at hand.
    assert!(cache.is_dir());
}

#[test]
fn require_gpu_on_a_cpu_only_library_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}",
        config_with_runtime(
            "gpu-only",
            1883,
            &format!(
                "execution_providers = [\"tensorrt\", \"cuda\", \"cpu\"]\nrequire_gpu = true\n[runtime.tensorrt]\ncache_dir = \"{}\"",
                dir.path().join("cache").display()
            ),
        ),
        imu_source(&fixture("recordings/imu_still_200hz.csv"), "")
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(error.contains("imu.onnx"), "{error}");
    assert!(
        error.contains("require_gpu is set but no GPU provider is usable"),
        "{error}"
    );
    assert!(
        error.contains("tensorrt: ") && error.contains("cuda: "),
        "{error}"
    );
}

#[test]
fn warm_loads_every_model_the_sources_need_and_reports_provider_and_parity() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // One source per modality; audio with 3 clips (its reference input has 1).
    let config = format!(
        "{}{}\n[[sources]]\ntype = \"thermal_replay\"\nname = \"thermal\"\npath = \"{}\"\n\
         [[sources]]\ntype = \"depth_replay\"\nname = \"depth\"\npath = \"{}\"\n\
         [[sources]]\ntype = \"audio_replay\"\nname = \"mic\"\npath = \"{}\"\nclips = 3\n",
        config_with_runtime(
            "warm",
            1883,
            &format!(
                "execution_providers = [\"tensorrt\", \"cpu\"]\n[runtime.tensorrt]\ncache_dir = \"{}\"",
                cache.display()
            ),
        ),
        imu_source(&fixture("recordings/imu_still_200hz.csv"), ""),
        fixture("recordings/thermal_demo_160x120_u16.npy").display(),
        fixture("recordings/depth_demo_256x192_u16.npy").display(),
        refdata_dir().join("audio/short_16k_mono_1s2.wav").display(),
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("warm").arg("--config").arg(&path));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for modality in ["imu", "audio", "depth", "thermal"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{modality}: ")))
            .unwrap_or_else(|| panic!("no {modality} line:\n{stdout}"));
        assert!(
            line.contains("on cpu (step cpu, ONNX Runtime 1.31.1; nodes: cpu "),
            "{line}"
        );
        assert!(line.ends_with("), parity cosine 1.000000"), "{line}");
        // The node count is ONNX Runtime's own placement line, a real number.
        let nodes: usize = line
            .split("nodes: cpu ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(nodes > 0, "{line}");
    }
    assert!(stdout.contains("4 model(s) warm in"), "{stdout}");
    // TensorRT is not in this (CPU) library: expected on such a machine, so no warning per
    // model; the "encoder loaded" line says where each model runs.
    assert!(
        !stderr.contains("after the earlier steps were left"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("encoder loaded").count(), 4, "{stderr}");
    // One cache key directory per model (and the shared timing cache), even though this
    // library has no TensorRT: the layout does not depend on the machine.
    let mut keys: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 5, "{keys:?}");
    // The key names the TensorRT version the loader would use (none here) and ends with a hash
    // of CUDA, cuDNN and the module, which differ between machines.
    assert!(
        keys.iter()
            .any(|k| k.starts_with("timing-ort1.31.1-trtnone-")),
        "{keys:?}"
    );
    let imu = keys
        .iter()
        .find(|k| k.starts_with("imu-7dd81bd922f0c08b-ort1.31.1-trtnone-fp16-b4-"))
        .unwrap_or_else(|| panic!("no imu key directory: {keys:?}"));
    // The key file spells out everything the engine depends on.
    let key_file = std::fs::read_to_string(cache.join(imu).join("edgebind-key.txt")).unwrap();
    for part in [
        "modality = imu\n",
        "onnx_runtime = 1.31.1\n",
        "tensorrt = none\n",
        "precision = fp16\n",
        "profile = min imu:1x6x2000, opt imu:1x6x2000, max imu:4x6x2000\n",
    ] {
        assert!(key_file.contains(part), "{part:?} missing:\n{key_file}");
    }
    assert!(
        key_file.contains("model_sha256 = 7dd81bd922f0c08b"),
        "{key_file}"
    );
    assert!(
        key_file.contains("\ncuda = ") && key_file.contains("\nmodule = "),
        "{key_file}"
    );
    // The audio profile spans the source's 3 clips and the reference's 1.
    assert!(
        keys.iter()
            .any(|k| k.starts_with("audio-") && k.contains("-b4-1x1x128x204-3x1x128x204-")),
        "{keys:?}"
    );
}

#[test]
fn an_unwritable_tensorrt_cache_directory_is_a_configuration_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let cache = blocker.join("tensorrt");
    let config = format!(
        "{}{}",
        config_with_runtime(
            "cache",
            1883,
            &format!(
                "execution_providers = [\"tensorrt\", \"cpu\"]\n[runtime.tensorrt]\ncache_dir = \"{}\"",
                cache.display()
            ),
        ),
        imu_source(&fixture("recordings/imu_still_200hz.csv"), "")
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("runtime.tensorrt.cache_dir: {}", cache.display())),
        "{stderr}"
    );
}

#[test]
fn a_library_older_than_the_api_level_is_refused_before_it_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    // Not a library at all: if it were opened, the error would be about its ELF header.
    let fake = dir.path().join("libonnxruntime.so.1.22.0");
    std::fs::write(&fake, b"not an ELF file").unwrap();
    let link = dir.path().join("libonnxruntime.so");
    std::os::unix::fs::symlink(&fake, &link).unwrap();
    let input = dir.path().join("in.npy");
    let model = repo().join("models/tiny/imu.onnx");
    let out = run(edgebind()
        .env("ORT_DYLIB_PATH", &link)
        .arg("embed")
        .arg("imu")
        .arg(fixture("recordings/imu_still_400hz.npy"))
        .arg("--rate-hz")
        .arg("400")
        .arg("--model")
        .arg(&model)
        .arg("-o")
        .arg(&input));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "ONNX Runtime 1.22.0 is older than this edgebind build supports",
        &format!("api-{}", edgebind::inference::runtime::REQUIRED_MINOR),
        &format!(
            "needs libonnxruntime >= 1.{}",
            edgebind::inference::runtime::REQUIRED_MINOR
        ),
        "docs/inference.md",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing:\n{stderr}");
    }
    assert!(!stderr.contains("ELF"), "{stderr}");
    assert!(!input.exists());
}

/// A model set in `dir` with the tiny concept bank (linked) and `imu` as its only model.
fn model_set_with_imu(dir: &Path, imu: serde_json::Value) -> PathBuf {
    let tiny = repo().join("models/tiny");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny.join("manifest.json")).unwrap())
            .unwrap();
    manifest["models"] = serde_json::json!({ "imu": imu });
    let set = dir.join("models");
    std::fs::create_dir_all(&set).unwrap();
    for name in ["concepts.txt", "concepts.npy"] {
        std::os::unix::fs::symlink(tiny.join(name), set.join(name)).unwrap();
    }
    std::fs::write(
        set.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    set
}

fn file_entry(path: &Path) -> (String, String) {
    (path.display().to_string(), sha256_file(path).unwrap())
}

/// The tiny IMU model with its reference output replaced by another model's output.
fn imu_with_wrong_reference(dir: &Path) -> PathBuf {
    let tiny = repo().join("models/tiny");
    let (model, model_sha) = file_entry(&tiny.join("imu.onnx"));
    let (input, input_sha) = file_entry(&tiny.join("imu_reference_input.npy"));
    let (output, output_sha) = file_entry(&tiny.join("thermal_reference_output.npy"));
    model_set_with_imu(
        dir,
        serde_json::json!({
            "file": model, "sha256": model_sha, "input": "imu", "output": "embedding",
            "reference": {"input": input, "input_sha256": input_sha,
                          "output": output, "output_sha256": output_sha}
        }),
    )
}

fn run_with_models(dir: &Path, models: &Path, runtime_extra: &str) -> (Option<i32>, String) {
    let config = format!(
        "{}{}",
        base_config("parity", 1883)
            .replace(
                &format!("dir = \"{}\"", repo().join("models/tiny").display()),
                &format!("dir = \"{}\"", models.display()),
            )
            .replace(
                "[runtime]\nexecution_providers = [\"cpu\"]\n",
                &format!("[runtime]\nexecution_providers = [\"cpu\"]\n{runtime_extra}"),
            ),
        imu_source(
            &fixture("recordings/imu_still_200hz.csv"),
            "speed = \"max\"\n"
        )
    );
    let path = write_config(dir, &config);
    let out = run(edgebind()
        .arg("run")
        .arg("--config")
        .arg(&path)
        .arg("--shutdown-timeout-s")
        .arg("1"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_model_whose_output_disagrees_with_its_manifest_reference_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let models = imu_with_wrong_reference(dir.path());
    let (code, stderr) = run_with_models(dir.path(), &models, "");
    assert_eq!(code, Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    for needle in [
        "imu.onnx: refused: no execution provider reproduces the manifest reference",
        "cpu: output disagrees with the reference",
        "thermal_reference_output.npy",
        "cosine",
    ] {
        assert!(error.contains(needle), "{needle:?} missing: {error}");
    }
    // The provider was refused in the log too, before the start-up error.
    assert!(stderr.contains("provider refused"), "{stderr}");

    // With on_failure = "fail" the message says so.
    let (code, stderr) = run_with_models(
        dir.path(),
        &models,
        "[runtime.parity]\non_failure = \"fail\"\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr
            .contains("refused: on provider cpu the output disagrees with the manifest reference")
            && stderr.contains("runtime.parity.on_failure = \"fail\""),
        "{stderr}"
    );

    // With the check off the same model set starts (and runs the short recording to its end).
    let (code, stderr) =
        run_with_models(dir.path(), &models, "[runtime.parity]\nenabled = false\n");
    // No broker listens on 1883 here: the run ends with undelivered messages (exit 1), but
    // after starting, without a parity check.
    assert!(
        !stderr.contains("provider refused") && !stderr.contains("error:"),
        "the check ran although disabled ({code:?}):\n{stderr}"
    );
    assert!(
        stderr.contains("no parity reference") && stderr.contains("edgebind running"),
        "{code:?}\n{stderr}"
    );
}

fn tiny_concepts() -> SharedConcepts {
    let tiny = repo().join("models/tiny");
    SharedConcepts::new(
        ConceptBank::load(&tiny.join("concepts.txt"), &tiny.join("concepts.npy"), 1024).unwrap(),
    )
}

fn imu_inputs(n: usize) -> Vec<ArrayD<f32>> {
    // Different windows: slices of the still and shaking recordings, shifted.
    let still: ndarray::Array2<f32> =
        ndarray_npy::read_npy(fixture("recordings/imu_still_400hz.npy")).unwrap();
    let shaking: ndarray::Array2<f32> =
        ndarray_npy::read_npy(fixture("recordings/imu_shaking_400hz.npy")).unwrap();
    (0..n)
        .map(|i| {
            let src = if i % 2 == 0 { &still } else { &shaking };
            let (rows, cols) = src.dim();
            let (ch, len) = if rows == 6 {
                (rows, cols)
            } else {
                (cols, rows)
            };
            let t = if rows == 6 {
                src.clone()
            } else {
                src.t().to_owned()
            };
            assert_eq!(ch, 6);
            let off = (i * 37) % (len - 2000);
            t.slice(ndarray::s![.., off..off + 2000])
                .to_owned()
                .into_dyn()
        })
        .collect()
}

/// ONNX Runtime allows one environment per process; the in-process tests share it.
fn ort_runtime() -> &'static OrtRuntime {
    static RUNTIME: std::sync::OnceLock<OrtRuntime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| OrtRuntime::load(None).unwrap())
}

#[test]
fn queued_windows_are_batched_into_fewer_runs_with_outputs_identical_to_single_runs() {
    let runtime = ort_runtime();
    let model = repo().join("models/tiny/imu.onnx");
    let providers = [edgebind::config::ExecutionProviderKind::Cpu];
    let encoder = Encoder::load(runtime, Modality::Imu, &model, &providers, false, 1).unwrap();
    let mut single = Encoder::load(runtime, Modality::Imu, &model, &providers, false, 1).unwrap();

    const N: usize = 10;
    let inputs = imu_inputs(N);
    let stats = Arc::new(StreamStats::default());
    let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(N);
    let clock = Clock::new();
    for (seq, input) in inputs.iter().enumerate() {
        let now = clock.now();
        jobs_tx
            .send(Job {
                sensor: Arc::from("imu"),
                stats: Arc::clone(&stats),
                meta: WindowMeta {
                    seq: seq as u64,
                    start: now,
                    end: now,
                    sample_count: 2000,
                    gaps: 0,
                    preprocess_ms: 0.0,
                },
                input: input.clone(),
                skip: None,
                queued_at: Instant::now(),
            })
            .unwrap();
    }
    drop(jobs_tx);
    let model_stats = Arc::new(ModelStats::new(Modality::Imu, "cpu", "1.31.1", "x"));
    let ctx = WorkerContext {
        model_name: "edgebind-tiny".into(),
        model_sha256: "x".into(),
        ort_version: runtime.version.clone(),
        concepts: edgebind::concepts::live::SensorConcepts::single(tiny_concepts()),
        top_k: 3,
        min_score: 0.1,
        clock,
        batching: Batching {
            max_batch: 4,
            max_wait: Duration::ZERO,
        },
        model_stats: Arc::clone(&model_stats),
        input_stats_for: Arc::default(),
    };
    let mut outputs = Outputs::new(Arc::new(edgebind::telemetry::Telemetry::new(["imu"])));
    let mut out_rx = outputs.subscribe(OutputQueue {
        name: "test",
        capacity: std::num::NonZeroUsize::new(4 * N).unwrap(),
        when_full: FullPolicy::Block,
    });
    let worker = spawn_worker(encoder, ctx, jobs_rx, outputs.emitter()).unwrap();
    worker.join().unwrap();

    let mut published = BTreeMap::new();
    while let Ok(event) = out_rx.try_recv() {
        if let Event::Embedded(w) = event {
            published.insert(w.window.seq, w);
        }
    }
    assert_eq!(published.len(), N);
    // All ten were waiting: batches of 4, 4 and 2.
    assert_eq!(model_stats.runs(), 3);
    assert_eq!(model_stats.windows(), N as u64);
    assert_eq!(stats.latency().get(Stage::Queue).count(), N as u64);
    assert_eq!(stats.latency().get(Stage::Inference).count(), N as u64);

    let mut worst = 0.0f32;
    for (seq, input) in inputs.iter().enumerate() {
        let raw = single.run_one(input).unwrap();
        let (unit, norm) = unit_norm(&raw);
        let w = &published[&(seq as u64)];
        assert_eq!(w.embedding.len(), unit.len());
        for (a, b) in w.embedding.iter().zip(&unit) {
            worst = worst.max((a - b).abs());
        }
        worst = worst.max((w.norm - norm).abs() / norm.max(1.0));
    }
    assert!(
        worst <= 1e-6,
        "batched and single outputs differ by {worst:e}"
    );
}

#[test]
fn a_batch_run_equals_the_same_windows_run_one_by_one() {
    // The session itself, for every tiny model: [B, …] rows equal B single runs.
    let runtime = ort_runtime();
    let providers = [edgebind::config::ExecutionProviderKind::Cpu];
    for modality in Modality::ALL {
        let model = repo().join(format!("models/tiny/{modality}.onnx"));
        let mut enc = Encoder::load(runtime, modality, &model, &providers, false, 1).unwrap();
        let item = edgebind::inference::example_input_shape(modality);
        let mut shape = vec![3];
        shape.extend_from_slice(&item);
        let batch = ArrayD::<f32>::from_shape_fn(IxDyn(&shape), |idx| {
            let s: usize = idx
                .slice()
                .iter()
                .enumerate()
                .map(|(i, v)| (i + 1) * v)
                .sum();
            ((s * 7919) % 1000) as f32 / 500.0 - 1.0
        });
        let together = enc.run(&batch).unwrap();
        for b in 0..3 {
            let one = enc
                .run_one(&batch.index_axis(ndarray::Axis(0), b).to_owned())
                .unwrap();
            let diff = together
                .row(b)
                .iter()
                .zip(&one)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(diff <= 1e-6, "{modality} row {b}: differs by {diff:e}");
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_model_that_cannot_keep_up_drops_windows_with_flat_memory_and_stays_responsive() {
    let dir = tempfile::tempdir().unwrap();
    let (model, model_sha) = file_entry(&fixture("models/imu_slow.onnx"));
    let models = model_set_with_imu(
        dir.path(),
        serde_json::json!({"file": model, "sha256": model_sha, "input": "imu", "output": "embedding"}),
    );
    let metrics_port = edgebind::publish::broker::free_port().unwrap();
    let config = format!(
        r#"[device]
id = "backlog"
[runtime]
execution_providers = ["cpu"]
[models]
dir = "{}"
queue_capacity = 4
when_full = "drop_oldest"
max_batch = 2
[mqtt]
url = "local"
stats_interval_s = 0
[outbox]
dir = "{}"
[metrics]
listen = "127.0.0.1:{metrics_port}"
{}"#,
        models.display(),
        dir.path().join("outbox").display(),
        imu_source(
            &fixture("recordings/imu_still_400hz.npy"),
            "sample_rate_hz = 400.0\nloop = true\nhop_ms = 20\nspeed = \"max\"\n"
        )
    );
    let path = write_config(dir.path(), &config);
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&path, &log, &[]);
    assert!(
        wait_for_log(&log, "edgebind running", Duration::from_secs(60)),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let backlog = "edgebind_drops_total{sensor=\"imu\",reason=\"inference_backlog\"} ";
    // The replay runs at full speed: windows are cut as fast as the CPU copies samples (a few
    // microseconds each), while each costs the model ~2.4 GFLOP. Whatever the machine, and
    // however loaded, the source outruns the model by orders of magnitude (the same CPU runs
    // both), so the queue fills at once and drops are counted; a fixed window rate would
    // assume a CPU speed (a fast CPU kept up with 50 windows/s and never dropped one).
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        let body = scrape_metrics(metrics_port).unwrap_or_default();
        if metric_value(&body, backlog).unwrap_or(0.0) > 0.0 {
            first = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let first = first.unwrap_or_else(|| {
        panic!(
            "no backlog drops counted:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    let rss_start = rss_kib(child.id());
    // Keep it backlogged for a while, scraping the metrics: each answer must be quick.
    let mut slowest = Duration::ZERO;
    let mut rss_max = rss_start;
    let mut last = first.clone();
    for _ in 0..16 {
        std::thread::sleep(Duration::from_millis(500));
        let t0 = Instant::now();
        last = scrape_metrics(metrics_port).expect("metrics endpoint answers");
        slowest = slowest.max(t0.elapsed());
        rss_max = rss_max.max(rss_kib(child.id()));
    }
    let t0 = Instant::now();
    sigterm(&child);
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    let stop = t0.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.is_some(), "SIGTERM did not stop the daemon:\n{text}");

    let windows = metric_value(&last, "edgebind_windows_total{sensor=\"imu\"} ").unwrap();
    let drops_first = metric_value(&first, backlog).unwrap();
    let drops_last = metric_value(&last, backlog).unwrap();
    let runs = metric_value(&last, "edgebind_inference_runs_total{model=\"imu\"} ").unwrap();
    let embedded = metric_value(&last, "edgebind_inference_windows_total{model=\"imu\"} ").unwrap();
    eprintln!(
        "windows {windows}, backlog drops {drops_last}, runs {runs} over {embedded} windows, \
         RSS {rss_start} -> max {rss_max} KiB, slowest scrape {slowest:?}, stop {stop:?}"
    );
    // Drops keep being counted while the model lags, and every window is accounted for.
    assert!(drops_last > drops_first, "{last}");
    assert!(windows > embedded, "{last}");
    // The queue is bounded: memory does not grow with the backlog.
    assert!(
        rss_max < rss_start + 32 * 1024,
        "RSS grew from {rss_start} KiB to {rss_max} KiB"
    );
    assert!(slowest < Duration::from_secs(2), "metrics took {slowest:?}");
    assert!(stop < Duration::from_secs(15), "stop took {stop:?}\n{text}");
}

#[test]
fn start_up_reports_each_model_as_systemd_status_and_sends_ready_only_when_all_are_warm() {
    use std::os::unix::net::UnixDatagram;
    let broker = LocalBroker::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let config = format!(
        "{}{}[[sources]]\ntype = \"thermal_replay\"\nname = \"thermal\"\npath = \"{}\"\nloop = true\n",
        base_config("notify-models", broker.port()),
        imu_source(&fixture("recordings/imu_demo_200hz.csv"), "loop = true\n"),
        fixture("recordings/thermal_demo_160x120_u16.npy").display(),
    );
    let path = write_config(dir.path(), &config);
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut child = edgebind()
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("WATCHDOG_USEC")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn_guarded();
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while !lines.iter().any(|l: &String| l == "READY=1") {
        let Ok(n) = sock.recv(&mut buf) else { break };
        lines.extend(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_string),
        );
    }
    sigterm(&child);
    let _ = wait_with_timeout(&mut child, Duration::from_secs(30));
    let position = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {lines:#?}"))
    };
    let ready = position("READY=1");
    for step in [
        "STATUS=starting: model 1/2 (imu): loading",
        "STATUS=starting: model 1/2 (imu): warming up on cpu",
        "STATUS=starting: model 2/2 (thermal): loading",
        "STATUS=starting: model 2/2 (thermal): warming up on cpu",
        "STATUS=starting: models warm",
    ] {
        assert!(position(step) < ready, "{step} after READY: {lines:#?}");
    }
}

#[test]
fn sigterm_while_a_model_warms_up_stops_the_daemon_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    // Its warm-up run lasts at least 600 s (tools/make_slow_model.py --load-seconds 600).
    let (model, model_sha) = file_entry(&fixture("models/imu_slow_load.onnx"));
    let models = model_set_with_imu(
        dir.path(),
        serde_json::json!({"file": model, "sha256": model_sha, "input": "imu", "output": "embedding"}),
    );
    let config = format!(
        "{}{}",
        base_config("slow-load", 1883).replace(
            &format!("dir = \"{}\"", repo().join("models/tiny").display()),
            &format!("dir = \"{}\"", models.display()),
        ),
        imu_source(&fixture("recordings/imu_still_200hz.csv"), "")
    );
    let path = write_config(dir.path(), &config);
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&path, &log, &[]);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_for_log(&log, "model 1/1 (imu): loading", Duration::from_secs(60)),
        "{}",
        read_log()
    );
    // Session creation of this ~1 KB model takes milliseconds: a second later the warm-up run
    // is under way, and it is still loading.
    std::thread::sleep(Duration::from_secs(1));
    assert!(child.try_wait().unwrap().is_none(), "{}", read_log());
    assert!(!read_log().contains("encoder loaded"), "{}", read_log());
    sigterm(&child);
    let asked = Instant::now();
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    let took = asked.elapsed();
    let status =
        status.unwrap_or_else(|| panic!("still running 30 s after SIGTERM:\n{}", read_log()));
    assert!(
        took < Duration::from_secs(1),
        "stopped {:.2} s after SIGTERM:\n{}",
        took.as_secs_f64(),
        read_log()
    );
    assert_eq!(status.code(), Some(0), "{}", read_log());
    assert!(
        read_log().contains("stopped during start-up"),
        "{}",
        read_log()
    );
}
