//! The load ladder of one model: which sessions are tried, in which order, and what follows each
//! attempt. TensorRT FP16 first, then FP16 with the attention-sensitive op types left to CUDA,
//! then TensorRT FP32, then CUDA, then the CPU (as far as `execution_providers` lists them), each
//! verified by the parity check. Pure: the whole decision table is tested with injected outcomes.

use crate::config::{ExecutionProviderKind, ParityFailure, TensorrtConfig};

/// The precision of a TensorRT step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// FP32 kernels only.
    Fp32,
    /// FP16 kernels where TensorRT chooses them.
    Fp16,
    /// INT8 (calibrated).
    Int8,
    /// INT8 and FP16.
    Int8Fp16,
}

impl Precision {
    /// The configured precision.
    #[must_use]
    pub fn of(cfg: &TensorrtConfig) -> Self {
        match (cfg.int8, cfg.fp16) {
            (true, true) => Self::Int8Fp16,
            (true, false) => Self::Int8,
            (false, true) => Self::Fp16,
            (false, false) => Self::Fp32,
        }
    }

    /// `fp32`, `fp16`, `int8`, `int8-fp16` (as in cache keys and step names).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Fp16 => "fp16",
            Self::Int8 => "int8",
            Self::Int8Fp16 => "int8-fp16",
        }
    }

    /// Whether FP16 kernels are allowed.
    #[must_use]
    pub fn fp16(self) -> bool {
        matches!(self, Self::Fp16 | Self::Int8Fp16)
    }

    /// Whether INT8 kernels are allowed.
    #[must_use]
    pub fn int8(self) -> bool {
        matches!(self, Self::Int8 | Self::Int8Fp16)
    }
}

/// One way of creating a model's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// TensorRT, with CUDA registered after it when `with_cuda` (nodes TensorRT rejects then
    /// stay on the GPU instead of going to the CPU with copies in between).
    Tensorrt {
        /// Kernel precision.
        precision: Precision,
        /// ONNX op types left to the next provider (`trt_op_types_to_exclude`).
        excluded_op_types: Vec<String>,
        /// Whether the optimisation profile is given explicitly. Explicit profiles name the
        /// model input only, which ONNX Runtime refuses once the graph is split between
        /// TensorRT and another provider ("has no associated shape profiles").
        explicit_profile: bool,
        /// CUDA registered as the second provider.
        with_cuda: bool,
    },
    /// The CUDA provider alone (FP32).
    Cuda,
    /// The CPU provider.
    Cpu,
}

impl Step {
    /// The step's name in logs, `state` and metrics.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Tensorrt {
                precision,
                excluded_op_types,
                ..
            } => match (precision, excluded_op_types.is_empty()) {
                (Precision::Fp32, true) => "tensorrt-fp32",
                (Precision::Fp16, true) => "tensorrt-fp16",
                (Precision::Int8, true) => "tensorrt-int8",
                (Precision::Int8Fp16, true) => "tensorrt-int8-fp16",
                (Precision::Fp32, false) => "tensorrt-fp32-exclude-ops",
                (Precision::Fp16, false) => "tensorrt-fp16-exclude-ops",
                (Precision::Int8, false) => "tensorrt-int8-exclude-ops",
                (Precision::Int8Fp16, false) => "tensorrt-int8-fp16-exclude-ops",
            },
            Self::Cuda => "cuda",
            Self::Cpu => "cpu",
        }
    }

    /// The provider the step is named after (the one in payloads).
    #[must_use]
    pub fn provider(&self) -> ExecutionProviderKind {
        match self {
            Self::Tensorrt { .. } => ExecutionProviderKind::Tensorrt,
            Self::Cuda => ExecutionProviderKind::Cuda,
            Self::Cpu => ExecutionProviderKind::Cpu,
        }
    }

    /// The providers registered for this step, in order (the CPU provider is ONNX Runtime's
    /// implicit last resort and is never registered).
    #[must_use]
    pub fn registered(&self) -> Vec<ExecutionProviderKind> {
        match self {
            Self::Tensorrt { with_cuda, .. } => {
                let mut p = vec![ExecutionProviderKind::Tensorrt];
                if *with_cuda {
                    p.push(ExecutionProviderKind::Cuda);
                }
                p
            }
            Self::Cuda => vec![ExecutionProviderKind::Cuda],
            Self::Cpu => Vec::new(),
        }
    }

    /// Whether this is a GPU step.
    #[must_use]
    pub fn is_gpu(&self) -> bool {
        !matches!(self, Self::Cpu)
    }
}

/// The steps for `providers` (in their order): each `tensorrt` entry becomes the configured
/// precision, then (with FP16 and a non-empty `fp16_excluded_op_types`) the same with those op
/// types excluded, then FP32; `cpu` is left out with `require_gpu`.
#[must_use]
pub fn ladder(
    providers: &[ExecutionProviderKind],
    trt: &TensorrtConfig,
    require_gpu: bool,
) -> Vec<Step> {
    let with_cuda = providers.contains(&ExecutionProviderKind::Cuda);
    let configured = Precision::of(trt);
    let tensorrt = |precision, excluded_op_types: Vec<String>| Step::Tensorrt {
        precision,
        explicit_profile: excluded_op_types.is_empty(),
        excluded_op_types,
        with_cuda,
    };
    let mut steps = Vec::new();
    for &provider in providers {
        match provider {
            ExecutionProviderKind::Tensorrt => {
                steps.push(tensorrt(configured, Vec::new()));
                let excluded: Vec<String> = trt
                    .fp16_excluded_op_types
                    .iter()
                    .map(|o| o.0.clone())
                    .collect();
                if configured.fp16() && !excluded.is_empty() {
                    steps.push(tensorrt(configured, excluded));
                }
                if configured != Precision::Fp32 {
                    steps.push(tensorrt(Precision::Fp32, Vec::new()));
                }
            }
            ExecutionProviderKind::Cuda => steps.push(Step::Cuda),
            ExecutionProviderKind::Cpu if !require_gpu => steps.push(Step::Cpu),
            ExecutionProviderKind::Cpu => {}
        }
    }
    steps
}

/// What one attempt at a step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A provider could not be registered (not in this ONNX Runtime build, or its libraries are
    /// missing): every later step that registers it is skipped.
    Unavailable {
        /// The provider.
        provider: ExecutionProviderKind,
        /// ONNX Runtime's reason.
        reason: String,
    },
    /// The session could not be created or warmed up.
    Failed {
        /// ONNX Runtime's reason.
        reason: String,
    },
    /// TensorRT refused the explicit optimisation profile because the graph was split.
    ProfileRejected {
        /// ONNX Runtime's reason.
        reason: String,
    },
    /// A cached engine could not be deserialized (built by another TensorRT, or damaged).
    StaleEngine {
        /// ONNX Runtime's reason.
        reason: String,
    },
    /// The output disagrees with the manifest reference.
    ParityFailed {
        /// Which reference, cosine and difference.
        detail: String,
    },
    /// Loaded, warm and, when there is a reference, matching it.
    Accepted,
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep this session.
    Accept,
    /// Try the same step again, changed.
    Retry(Retry),
    /// Try the step at this index of the ladder.
    Next(usize),
    /// Stop: the parity check refused a step and `on_failure = "fail"`.
    Refuse,
    /// Stop: no step is left.
    Exhausted,
}

/// How a step is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Without explicit optimisation profiles (ONNX Runtime derives them from the shapes run).
    WithoutExplicitProfile,
    /// After the step's engine cache was emptied (the engines are rebuilt).
    AfterClearingCache,
}

/// Where a model's load is on its ladder, and why earlier steps were left.
#[derive(Debug, Clone)]
pub struct Ladder {
    steps: Vec<Step>,
    current: usize,
    unavailable: Vec<ExecutionProviderKind>,
    retried: Vec<Retry>,
    reasons: Vec<String>,
    unavailable_reasons: usize,
    parity_refusals: usize,
}

impl Ladder {
    /// At the first usable step of `steps`.
    #[must_use]
    pub fn new(steps: Vec<Step>) -> Self {
        Self {
            steps,
            current: 0,
            unavailable: Vec::new(),
            retried: Vec::new(),
            reasons: Vec::new(),
            unavailable_reasons: 0,
            parity_refusals: 0,
        }
    }

    /// The step to try now (`None`: the ladder is empty).
    #[must_use]
    pub fn current(&self) -> Option<&Step> {
        self.steps.get(self.current)
    }

    /// Every step, in order.
    #[must_use]
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Why each step left so far was left (`<provider or step>: <reason>`).
    #[must_use]
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// Whether every step left so far was left only because its provider could not be
    /// registered (not in the library, or its libraries missing): see [`Self::unavailable`].
    #[must_use]
    pub fn only_unavailable(&self) -> bool {
        self.unavailable_reasons == self.reasons.len()
    }

    /// The providers that could not be registered.
    #[must_use]
    pub fn unavailable(&self) -> &[ExecutionProviderKind] {
        &self.unavailable
    }

    /// Whether any step was refused by the parity check.
    #[must_use]
    pub fn parity_refused(&self) -> bool {
        self.parity_refusals > 0
    }

    /// Whether a step after the current one could still be tried.
    #[must_use]
    pub fn has_next(&self) -> bool {
        self.next_usable().is_some()
    }

    /// Records `outcome` of the current step and says what to do next (and moves there).
    pub fn decide(&mut self, outcome: Outcome, on_failure: ParityFailure) -> Decision {
        let Some(step) = self.steps.get(self.current).cloned() else {
            return Decision::Exhausted;
        };
        match outcome {
            Outcome::Accepted => Decision::Accept,
            Outcome::Unavailable { provider, reason } => {
                self.reasons
                    .push(format!("{}: {reason}", provider.as_str()));
                self.unavailable_reasons += 1;
                if !self.unavailable.contains(&provider) {
                    self.unavailable.push(provider);
                }
                self.advance()
            }
            Outcome::Failed { reason } => {
                self.reasons.push(format!("{}: {reason}", step.name()));
                self.advance()
            }
            Outcome::ProfileRejected { reason } => {
                let explicit = matches!(
                    step,
                    Step::Tensorrt {
                        explicit_profile: true,
                        ..
                    }
                );
                if explicit && self.retry_once(Retry::WithoutExplicitProfile) {
                    if let Some(Step::Tensorrt {
                        explicit_profile, ..
                    }) = self.steps.get_mut(self.current)
                    {
                        *explicit_profile = false;
                    }
                    return Decision::Retry(Retry::WithoutExplicitProfile);
                }
                self.reasons.push(format!("{}: {reason}", step.name()));
                self.advance()
            }
            Outcome::StaleEngine { reason } => {
                if self.retry_once(Retry::AfterClearingCache) {
                    return Decision::Retry(Retry::AfterClearingCache);
                }
                self.reasons.push(format!("{}: {reason}", step.name()));
                self.advance()
            }
            Outcome::ParityFailed { detail } => {
                self.parity_refusals += 1;
                self.reasons.push(format!("{}: {detail}", step.name()));
                if on_failure == ParityFailure::Fail {
                    return Decision::Refuse;
                }
                self.advance()
            }
        }
    }

    /// Whether `retry` may still be tried on the current step (and counts it).
    fn retry_once(&mut self, retry: Retry) -> bool {
        if self.retried.contains(&retry) {
            return false;
        }
        self.retried.push(retry);
        true
    }

    fn next_usable(&self) -> Option<usize> {
        (self.current + 1..self.steps.len()).find(|&i| {
            self.steps[i]
                .registered()
                .iter()
                .all(|p| !self.unavailable.contains(p))
        })
    }

    fn advance(&mut self) -> Decision {
        match self.next_usable() {
            Some(i) => {
                self.current = i;
                self.retried.clear();
                Decision::Next(i)
            }
            None => {
                self.current = self.steps.len();
                Decision::Exhausted
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::OpType;
    use ExecutionProviderKind::{Cpu, Cuda, Tensorrt};

    const NEXT: ParityFailure = ParityFailure::NextProvider;

    fn names(steps: &[Step]) -> Vec<&'static str> {
        steps.iter().map(Step::name).collect()
    }

    fn default_ladder() -> Ladder {
        Ladder::new(ladder(
            &[Tensorrt, Cuda, Cpu],
            &TensorrtConfig::default(),
            false,
        ))
    }

    fn parity_failed() -> Outcome {
        Outcome::ParityFailed {
            detail: "output disagrees with the reference r.npy (cosine 0.2)".into(),
        }
    }

    #[test]
    fn the_default_ladder_goes_fp16_then_excluded_ops_then_fp32_then_cuda_then_cpu() {
        let l = default_ladder();
        assert_eq!(
            names(l.steps()),
            [
                "tensorrt-fp16",
                "tensorrt-fp16-exclude-ops",
                "tensorrt-fp32",
                "cuda",
                "cpu"
            ]
        );
        // TensorRT is registered with CUDA after it in every TensorRT step; the step that
        // excludes ops (and so splits the graph) has no explicit profile.
        let trt: Vec<_> = l.steps()[..3].iter().map(Step::registered).collect();
        assert!(trt.iter().all(|r| r == &[Tensorrt, Cuda]), "{trt:?}");
        match &l.steps()[1] {
            Step::Tensorrt {
                excluded_op_types,
                explicit_profile,
                precision,
                ..
            } => {
                assert_eq!(excluded_op_types, &["Softmax".to_string()]);
                assert!(!explicit_profile);
                assert_eq!(*precision, Precision::Fp16);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            l.steps()[0],
            Step::Tensorrt {
                explicit_profile: true,
                ..
            }
        ));
    }

    #[test]
    fn the_ladder_follows_the_configuration() {
        // FP32 configured: one TensorRT step; no CUDA listed: TensorRT alone.
        let fp32 = TensorrtConfig {
            fp16: false,
            ..TensorrtConfig::default()
        };
        let steps = ladder(&[Tensorrt, Cpu], &fp32, false);
        assert_eq!(names(&steps), ["tensorrt-fp32", "cpu"]);
        assert_eq!(steps[0].registered(), [Tensorrt]);
        // No op types to exclude: no such step.
        let no_excl = TensorrtConfig {
            fp16_excluded_op_types: Vec::new(),
            ..TensorrtConfig::default()
        };
        assert_eq!(
            names(&ladder(&[Tensorrt, Cuda, Cpu], &no_excl, true)),
            ["tensorrt-fp16", "tensorrt-fp32", "cuda"]
        );
        // The configured order is kept; require_gpu leaves the CPU out.
        assert_eq!(
            names(&ladder(&[Cuda, Tensorrt], &fp32, true)),
            ["cuda", "tensorrt-fp32"]
        );
        let several = TensorrtConfig {
            fp16_excluded_op_types: vec![
                OpType("Softmax".into()),
                OpType("LayerNormalization".into()),
            ],
            ..TensorrtConfig::default()
        };
        match &ladder(&[Tensorrt], &several, false)[1] {
            Step::Tensorrt {
                excluded_op_types, ..
            } => assert_eq!(excluded_op_types, &["Softmax", "LayerNormalization"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_fp16_engine_refused_by_parity_hands_over_to_the_excluded_ops_step_then_fp32() {
        let mut l = default_ladder();
        assert_eq!(l.decide(parity_failed(), NEXT), Decision::Next(1));
        assert_eq!(l.current().unwrap().name(), "tensorrt-fp16-exclude-ops");
        assert_eq!(l.decide(parity_failed(), NEXT), Decision::Next(2));
        assert_eq!(l.current().unwrap().name(), "tensorrt-fp32");
        assert_eq!(l.decide(Outcome::Accepted, NEXT), Decision::Accept);
        assert!(l.parity_refused());
        assert_eq!(l.reasons().len(), 2);
        assert!(l.reasons()[0].starts_with("tensorrt-fp16: output disagrees"));
        assert!(l.reasons()[1].starts_with("tensorrt-fp16-exclude-ops: output disagrees"));
    }

    #[test]
    fn every_gpu_step_refused_ends_on_cuda_then_cpu_then_exhausted() {
        let mut l = default_ladder();
        for want in [1, 2, 3, 4] {
            assert_eq!(l.decide(parity_failed(), NEXT), Decision::Next(want));
        }
        assert_eq!(l.current().unwrap().name(), "cpu");
        assert_eq!(l.decide(parity_failed(), NEXT), Decision::Exhausted);
        assert_eq!(l.current(), None);
        assert_eq!(l.reasons().len(), 5);
    }

    #[test]
    fn on_failure_fail_stops_at_the_first_refusal() {
        let mut l = default_ladder();
        assert_eq!(
            l.decide(parity_failed(), ParityFailure::Fail),
            Decision::Refuse
        );
    }

    #[test]
    fn an_unavailable_provider_skips_every_step_that_registers_it() {
        let mut l = default_ladder();
        let missing = Outcome::Unavailable {
            provider: Tensorrt,
            reason: "TensorRT execution provider is not enabled in this build.".into(),
        };
        assert_eq!(l.decide(missing, NEXT), Decision::Next(3));
        assert_eq!(l.current().unwrap().name(), "cuda");
        let cuda = Outcome::Unavailable {
            provider: Cuda,
            reason: "libcublas.so.12: cannot open shared object file".into(),
        };
        assert_eq!(l.decide(cuda, NEXT), Decision::Next(4));
        assert_eq!(
            l.reasons(),
            [
                "tensorrt: TensorRT execution provider is not enabled in this build.",
                "cuda: libcublas.so.12: cannot open shared object file"
            ]
        );
        assert!(!l.parity_refused());
        assert!(l.only_unavailable());
        assert_eq!(l.unavailable(), [Tensorrt, Cuda]);
        // CUDA missing while TensorRT registers: the TensorRT steps need it too.
        let mut l = default_ladder();
        let cuda = Outcome::Unavailable {
            provider: Cuda,
            reason: "x".into(),
        };
        assert_eq!(l.decide(cuda, NEXT), Decision::Next(4));
    }

    #[test]
    fn a_split_graph_refusing_the_explicit_profile_is_retried_once_without_it() {
        let mut l = default_ladder();
        let rejected = || {
            Outcome::ProfileRejected {
            reason: "Following input(s) has no associated shape profiles provided: /blocks.3/Add_output_0".into(),
        }
        };
        assert_eq!(
            l.decide(rejected(), NEXT),
            Decision::Retry(Retry::WithoutExplicitProfile)
        );
        assert!(matches!(
            l.current().unwrap(),
            Step::Tensorrt {
                explicit_profile: false,
                precision: Precision::Fp16,
                ..
            }
        ));
        // A second refusal on the same step moves on.
        assert_eq!(l.decide(rejected(), NEXT), Decision::Next(1));
        // The excluded-ops step never had an explicit profile: no retry, next step.
        assert_eq!(l.decide(rejected(), NEXT), Decision::Next(2));
    }

    #[test]
    fn a_stale_cached_engine_is_rebuilt_once_then_the_step_is_left() {
        let mut l = default_ladder();
        let stale = || Outcome::StaleEngine {
            reason: "TensorRT EP could not deserialize engine from cache: x.engine".into(),
        };
        assert_eq!(
            l.decide(stale(), NEXT),
            Decision::Retry(Retry::AfterClearingCache)
        );
        assert_eq!(l.current().unwrap().name(), "tensorrt-fp16");
        assert_eq!(l.decide(stale(), NEXT), Decision::Next(1));
        // The retry budget is per step.
        assert_eq!(
            l.decide(stale(), NEXT),
            Decision::Retry(Retry::AfterClearingCache)
        );
    }

    #[test]
    fn a_failed_session_moves_to_the_next_step_with_its_reason() {
        let mut l = Ladder::new(ladder(&[Cuda, Cpu], &TensorrtConfig::default(), false));
        let failed = Outcome::Failed {
            reason: "out of memory".into(),
        };
        assert_eq!(l.decide(failed, NEXT), Decision::Next(1));
        assert_eq!(l.reasons(), ["cuda: out of memory"]);
        assert!(!l.has_next());
        assert_eq!(
            Ladder::new(Vec::new()).decide(Outcome::Accepted, NEXT),
            Decision::Exhausted
        );
    }
}
