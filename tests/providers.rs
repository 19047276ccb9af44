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
            reason.to_lowercase().contains("fallback to cpu ep has been explicitly disabled"),
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
