//! Provider wiring against the real ONNX Runtime (the CPU-only PyPI build in `.ort/lib`): the
//! session options of a plan reach ONNX Runtime (`session.disable_cpu_ep_fallback` is enforced by
//! it), the node placement is read from its own log, and the step ladder walks past providers
//! this library lacks. What needs a GPU (TensorRT building an engine, CUDA taking nodes) cannot
//! run here; its options are asserted in `src/inference/plan.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use edgebind::config::ExecutionProviderKind::{Cpu, Cuda, Tensorrt};
use edgebind::inference::plan::{SessionPlan, DISABLE_CPU_FALLBACK};
use edgebind::inference::session::{create_session, CreateError};
use edgebind::inference::{Encoder, OrtRuntime, SessionSettings};
use edgebind::Modality;

/// ONNX Runtime allows one environment per process; the tests share it.
fn ort_runtime() -> &'static OrtRuntime {
    static RUNTIME: std::sync::OnceLock<OrtRuntime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| OrtRuntime::load(None).unwrap())
}

fn cpu_plan(entries: Vec<(&'static str, String)>) -> SessionPlan {
    SessionPlan {
        step: "cpu",
        providers: Vec::new(),
        config_entries: entries,
    }
}

#[test]
fn onnx_runtime_itself_refuses_cpu_nodes_when_cpu_fallback_is_disabled() {
    let runtime = ort_runtime();
    let model = repo().join("models/tiny/imu.onnx");
    // Without the entry every node lands on the CPU provider, and ONNX Runtime's placement log
    // line is what the count comes from.
    let (_, placement) = create_session(runtime, &model, &cpu_plan(Vec::new()), 1).unwrap();
    assert_eq!(placement.0.len(), 1, "{placement:?}");
    assert!(placement.nodes_on("cpu") > 0, "{placement:?}");
    // With it, ONNX Runtime refuses the session: the option is not just written, it is applied.
    let strict = cpu_plan(vec![(DISABLE_CPU_FALLBACK, "1".into())]);
    match create_session(runtime, &model, &strict, 1) {
        Err(CreateError::Failed { reason }) => assert!(
            reason
                .to_lowercase()
                .contains("fallback to cpu ep has been explicitly disabled"),
            "{reason}"
        ),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("ONNX Runtime accepted CPU nodes with {DISABLE_CPU_FALLBACK}=1"),
    }
}

#[test]
fn the_ladder_skips_providers_this_library_lacks_and_strictness_spares_the_cpu_step() {
    let runtime = ort_runtime();
    let model = repo().join("models/tiny/imu.onnx");
    let settings = SessionSettings {
        disable_cpu_fallback: true,
        ..SessionSettings::defaults(1)
    };
    let encoder = Encoder::load_with(
        runtime,
        Modality::Imu,
        &model,
        &[Tensorrt, Cuda, Cpu],
        false,
        &settings,
    )
    .unwrap();
    assert_eq!(encoder.step, "cpu");
    assert_eq!(encoder.provider, Cpu);
    assert!(encoder.placement.nodes_on("cpu") > 0);
    // TensorRT could not be registered, which skips all three TensorRT steps at once; then
    // CUDA. One reason each, named by provider.
    let reasons = &encoder.fallback_reasons;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("tensorrt: "), "{reasons:?}");
    assert!(reasons[1].starts_with("cuda: "), "{reasons:?}");
}

#[test]
fn doctor_reports_the_stack_the_providers_and_where_each_model_runs() {
    let config = repo().join("config/demo.toml");
    let out = run(edgebind().arg("doctor").arg("--config").arg(&config));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let line = |start: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?}:\n{stdout}"))
            .to_string()
    };
    // The library path is normalised (no `..`), and its version is the real one.
    let ort = line("  ONNX Runtime  1.31.1 (");
    assert!(!ort.contains(".."), "{ort}");
    // This CPU-only library has neither GPU provider compiled in: said as such.
    assert_eq!(
        line("  tensorrt  "),
        "  tensorrt  not in this ONNX Runtime build (not in runtime.execution_providers)"
    );
    assert_eq!(line("  cpu       "), "  cpu       loads");
    // Each model the demo's sources need, with ONNX Runtime's own node count.
    for modality in ["imu", "depth", "thermal"] {
        let l = line(&format!("  {modality:<8}step cpu, nodes: cpu "));
        assert!(l.ends_with(", parity cosine 1.0000"), "{l}");
    }
}

#[test]
fn doctor_with_a_unit_compares_a_plain_and_a_sandboxed_warm_up() {
    let config = repo().join("config/demo.toml");
    let unit = repo().join("systemd/edgebind.service");
    let out = run(edgebind()
        .arg("doctor")
        .arg("--config")
        .arg(&config)
        .arg("--unit")
        .arg(&unit));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let section = stdout
        .split("\nSandbox of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no sandbox section:\n{stdout}"));
    // The plain probe always runs and reports; the unit's lifecycle settings are left out.
    assert!(
        !section.contains("plain run printed no report"),
        "{section}"
    );
    assert!(
        section.contains("settings; warm-up via systemd-run)"),
        "{section}"
    );
    let systemd_is_init =
        std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd");
    if systemd_is_init {
        // A real sandbox: either the same, or each difference named (exit 1).
        let same = section.contains("the warm-up runs the same inside the sandbox as plainly");
        assert_eq!(
            out.status.code(),
            Some(if same { 0 } else { 1 }),
            "{section}"
        );
    } else {
        // No systemd here (containers, CI): systemd-run's own reason, and exit 1.
        assert!(
            section.contains("the warm-up did not run under the sandbox: "),
            "{section}"
        );
        assert_eq!(out.status.code(), Some(1), "{section}");
    }
}

/// `edgebind check`'s exit code and stderr for the base configuration with `runtime` added to
/// its `[runtime]` section and `tensorrt` as `[runtime.tensorrt]`.
fn check_runtime(runtime: &str, tensorrt: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\n",
        base_config("providers", 1).replace(
            "execution_providers = [\"cpu\"]",
            &format!(
                "{runtime}\n[runtime.tensorrt]\ncache_dir = \"{}\"\n{tensorrt}",
                dir.path().join("trt").display()
            ),
        ),
        fixture("recordings/imu_still_200hz.csv").display()
    );
    let path = write_config(dir.path(), &text);
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_new_provider_options_refuse_nonsense_with_a_message_naming_the_key() {
    let gpu = "execution_providers = [\"tensorrt\", \"cuda\", \"cpu\"]";
    // Accepted: the defaults spelled out.
    let (code, err) = check_runtime(
        &format!("{gpu}\ndisable_cpu_fallback = true"),
        "max_workspace_bytes = \"2GiB\"\nfp16_excluded_op_types = [\"Softmax\", \"LayerNormalization\"]\ndetailed_build_log = false",
    );
    assert_eq!(code, Some(0), "{err}");
    // Strictness without a GPU provider means nothing.
    let (code, err) = check_runtime(
        "execution_providers = [\"cpu\"]\ndisable_cpu_fallback = true",
        "",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(
            "runtime.disable_cpu_fallback: is true but no GPU provider (tensorrt, cuda) is listed"
        ),
        "{err}"
    );
    // Not an op type (it would reach ONNX Runtime as a comma-separated list).
    let (code, err) = check_runtime(gpu, "fp16_excluded_op_types = [\"Softmax,Gelu\"]");
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("\"Softmax,Gelu\" is not an ONNX op type"),
        "{err}"
    );
    // A hostile list length.
    let many: Vec<String> = (0..65).map(|i| format!("\"Op{i}\"")).collect();
    let (code, err) = check_runtime(
        gpu,
        &format!("fp16_excluded_op_types = [{}]", many.join(", ")),
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("runtime.tensorrt.fp16_excluded_op_types: 65 op types is more than the 64 op types allowed"),
        "{err}"
    );
    // An absurd workspace.
    let (code, err) = check_runtime(gpu, "max_workspace_bytes = \"1PiB\"");
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("runtime.tensorrt.max_workspace_bytes: "),
        "{err}"
    );
}

#[test]
fn a_model_set_without_references_gets_a_cpu_reference_that_catches_a_wrong_model() {
    use edgebind::inference::cpu_reference::{fixed_input, make, CPU_REFERENCE_NAME};
    let runtime = ort_runtime();
    let model = repo().join("models/tiny/imu.onnx");
    let reference = make(runtime, Modality::Imu, &model, &[6, 2000], 1).unwrap();
    assert_eq!(reference.input, fixed_input(2, &[6, 2000]));
    assert_eq!(
        reference.output_path.display().to_string(),
        CPU_REFERENCE_NAME
    );
    // The reference is the CPU provider's output for that input, row by row.
    let mut cpu = Encoder::load(runtime, Modality::Imu, &model, &[Cpu], false, 1).unwrap();
    let out = cpu.run(&reference.input).unwrap();
    assert_eq!(out, reference.output);
    assert!(reference.compare(&out, 0.99).min_cosine > 0.999_999);
    // Another model's output (an IMU encoder with other weights, standing in for an engine that
    // computes garbage) is far from it: the check that refuses a bad FP16 engine refuses this.
    let other = repo().join("tests/fixtures/models/imu_slow.onnx");
    let mut wrong = Encoder::load(runtime, Modality::Imu, &other, &[Cpu], false, 1).unwrap();
    let garbage = wrong.run(&reference.input).unwrap();
    let report = reference.compare(&garbage, 0.99);
    assert!(report.min_cosine < 0.99, "cosine {}", report.min_cosine);
}
