//! One ONNX encoder session: created from a [`SessionPlan`] (each provider registered so that a
//! failure is an error we log, not a silent CPU fallback; the node placement read from ONNX
//! Runtime's log), checked against its modality's ImageBind contract, then run on batches.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ndarray::{Array2, ArrayD, IxDyn};
use ort::logging::LogLevel;
use ort::session::{RunOptions, Session};
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::ort_log::{placement_logger, Placement};
use super::plan::{self, SessionPlan, TensorrtInputs};
use super::runtime::OrtRuntime;
use super::steps::{self, Decision, Ladder, Outcome, Step};
use crate::config::{CudaConfig, ExecutionProviderKind, ParityFailure, TensorrtConfig};
use crate::Modality;

/// Errors creating or running an encoder.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The model file is missing.
    #[error("{path}: model file does not exist")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// No configured provider could create the session.
    #[error("{path}: no execution provider could load the model: {}", reasons.join("; "))]
    NoProvider {
        /// The file.
        path: PathBuf,
        /// Why each provider failed.
        reasons: Vec<String>,
    },
    /// `require_gpu` is set but only the CPU provider worked.
    #[error("{path}: require_gpu is set but no GPU provider is usable: {}", reasons.join("; "))]
    GpuRequired {
        /// The file.
        path: PathBuf,
        /// Why each GPU provider failed.
        reasons: Vec<String>,
    },
    /// The model does not have the modality's input/output contract.
    #[error("{path}: not a valid {modality} encoder: {message}")]
    Contract {
        /// The file.
        path: PathBuf,
        /// The modality it should encode.
        modality: Modality,
        /// Expected vs actual.
        message: String,
    },
    /// A run failed.
    #[error("{path}: inference failed: {message}")]
    Run {
        /// The file.
        path: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
}

/// The input contract of each modality (from the modality table): `None` is a free (batch or
/// clip) dimension.
#[must_use]
pub fn input_contract(modality: Modality) -> Vec<Option<i64>> {
    modality.contract()
}

fn describe(dims: &[Option<i64>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| match (i, d) {
            (0, None) => "B".to_string(),
            (_, None) => "S".to_string(),
            (_, Some(v)) => v.to_string(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// A model input's or output's type as people write it (`int64 [?, 77]`), not ort's debug form.
pub(crate) fn value_text(value: &ValueType) -> String {
    match value {
        ValueType::Tensor { ty, shape, .. } => {
            format!("{} {}", format!("{ty:?}").to_lowercase(), shape_text(shape))
        }
        _ => "not a tensor".to_string(),
    }
}

fn shape_text(shape: &[i64]) -> String {
    let parts: Vec<String> = shape
        .iter()
        .map(|d| {
            if *d < 0 {
                "?".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// A loaded, contract-checked encoder.
#[derive(Debug)]
pub struct Encoder {
    session: Session,
    /// The modality it encodes.
    pub modality: Modality,
    /// The model file.
    pub path: PathBuf,
    /// The provider that loaded it (the step's first).
    pub provider: ExecutionProviderKind,
    /// The load step that loaded it (`tensorrt-fp16`, `tensorrt-fp32`, `cuda`, `cpu`, …).
    pub step: &'static str,
    /// How many nodes each provider got.
    pub placement: Placement,
    /// Why the steps before it were left.
    pub fallback_reasons: Vec<String>,
    input_name: String,
    output_name: String,
    embedding_dim: usize,
    run_options: QuietRuns,
}

/// Run options that keep runs at WARNING (ort's `RunOptions` has no `Debug`).
struct QuietRuns(Option<RunOptions>);

impl std::fmt::Debug for QuietRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuietRuns")
    }
}

/// How a session is created, besides the provider order.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Threads inside one operator.
    pub intra_threads: usize,
    /// TensorRT options (used by TensorRT steps).
    pub tensorrt: TensorrtConfig,
    /// CUDA options.
    pub cuda: CudaConfig,
    /// `session.disable_cpu_ep_fallback` on GPU steps.
    pub disable_cpu_fallback: bool,
}

impl SessionSettings {
    /// edgebind's defaults with `intra_threads` threads.
    #[must_use]
    pub fn defaults(intra_threads: usize) -> Self {
        Self {
            intra_threads,
            tensorrt: TensorrtConfig::default(),
            cuda: CudaConfig::default(),
            disable_cpu_fallback: false,
        }
    }
}

/// Why a session could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    /// A provider could not be registered.
    Unavailable {
        /// The provider.
        provider: ExecutionProviderKind,
        /// ONNX Runtime's reason.
        reason: String,
    },
    /// Registered, but the session could not be created.
    Failed {
        /// ONNX Runtime's reason.
        reason: String,
    },
}

/// One session as `plan` says, with the providers registered one by one (so that a failure
/// names its provider) and the node placement read from the session's verbose log.
///
/// # Errors
/// [`CreateError`] with ONNX Runtime's reason.
pub fn create_session(
    runtime: &OrtRuntime,
    path: &Path,
    plan: &SessionPlan,
    intra_threads: usize,
) -> Result<(Session, Placement), CreateError> {
    let failed = |e: String| CreateError::Failed { reason: e };
    let placement = Arc::new(Mutex::new(Placement::default()));
    let mut builder = Session::builder(&runtime.env)
        .map_err(|e| failed(e.to_string()))?
        .with_intra_threads(intra_threads.max(1))
        .map_err(|e| failed(e.to_string()))?
        .with_logger(placement_logger(Arc::clone(&placement)))
        .map_err(|e| failed(e.to_string()))?
        .with_log_level(LogLevel::Verbose)
        .map_err(|e| failed(e.to_string()))?
        .with_no_environment_execution_providers()
        .map_err(|e| failed(e.to_string()))?;
    for (key, value) in plan
        .config_entries
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(thread_entries(intra_threads))
    {
        builder = builder
            .with_config_entry(key, value)
            .map_err(|e| failed(e.to_string()))?;
    }
    for provider in &plan.providers {
        if let Some(ep) = provider.dispatch() {
            builder =
                builder
                    .with_execution_providers([ep])
                    .map_err(|e| CreateError::Unavailable {
                        provider: provider.kind,
                        reason: e.to_string(),
                    })?;
        }
    }
    let session = builder
        .commit_from_file(path)
        .map_err(|e| failed(e.to_string()))?;
    let placement = std::mem::take(&mut *placement.lock().unwrap_or_else(PoisonError::into_inner));
    Ok((session, placement))
}

/// Session entries for `intra_threads` threads per session. With more than one, ONNX
/// Runtime's worker threads would spin while they wait for work: alone that saves 0–3 % of a
/// run's time, but every encoder has its own session on the same cores, and the spinning threads
/// take the cores the other encoders need (four real-size encoders on 2 cores with 2 threads
/// each: 13.1 windows/s spinning, 20.6 not; docs/inference.md "CPU session settings").
#[must_use]
pub fn thread_entries(intra_threads: usize) -> Vec<(&'static str, &'static str)> {
    if intra_threads > 1 {
        vec![("session.intra_op.allow_spinning", "0")]
    } else {
        Vec::new()
    }
}

/// Walks the load steps of `providers` (see [`steps::ladder`]) and returns the first session
/// that could be created, with its provider, and why each earlier step failed (each failure is
/// logged). `skip_cpu` leaves the CPU provider out (`require_gpu`). No cache, no explicit
/// profile, no parity check: what `edgebind embed`, `bench` and the text encoder use.
pub(super) fn create_in_order(
    runtime: &OrtRuntime,
    path: &Path,
    providers: &[ExecutionProviderKind],
    settings: &SessionSettings,
    skip_cpu: bool,
) -> (Option<(Session, ExecutionProviderKind)>, Vec<String>) {
    match create_first(runtime, path, providers, settings, skip_cpu) {
        (Some((session, step, _)), reasons) => (Some((session, step.provider())), reasons),
        (None, reasons) => (None, reasons),
    }
}

fn create_first(
    runtime: &OrtRuntime,
    path: &Path,
    providers: &[ExecutionProviderKind],
    settings: &SessionSettings,
    skip_cpu: bool,
) -> (Option<(Session, Step, Placement)>, Vec<String>) {
    let mut ladder = Ladder::new(steps::ladder(providers, &settings.tensorrt, skip_cpu));
    let inputs = TensorrtInputs {
        config: &settings.tensorrt,
        cache: None,
        profile: None,
    };
    while let Some(step) = ladder.current().cloned() {
        let plan = plan::plan(&step, inputs, &settings.cuda, settings.disable_cpu_fallback);
        let outcome = match create_session(runtime, path, &plan, settings.intra_threads) {
            Ok((session, placement)) => {
                return (Some((session, step, placement)), ladder.reasons().to_vec())
            }
            Err(CreateError::Unavailable { provider, reason }) => {
                log_unavailable(path, &step, provider, &reason);
                Outcome::Unavailable { provider, reason }
            }
            Err(CreateError::Failed { reason }) => {
                log_unavailable(path, &step, step.provider(), &reason);
                Outcome::Failed { reason }
            }
        };
        if matches!(
            ladder.decide(outcome, ParityFailure::NextProvider),
            Decision::Exhausted | Decision::Refuse
        ) {
            break;
        }
    }
    (None, ladder.reasons().to_vec())
}

/// The warning of a step that could not be created.
pub(super) fn log_unavailable(
    path: &Path,
    step: &Step,
    provider: ExecutionProviderKind,
    reason: &str,
) {
    tracing::warn!(
        model = %path.display(),
        step = step.name(),
        provider = provider.as_str(),
        %reason,
        "execution provider unavailable; trying the next step"
    );
}

impl Encoder {
    /// Loads `path` as the `modality` encoder, trying `providers` in order.
    ///
    /// # Errors
    /// [`SessionError`] naming the file: missing, no provider, GPU required, or a contract
    /// mismatch (expected and actual shapes).
    pub fn load(
        runtime: &OrtRuntime,
        modality: Modality,
        path: &Path,
        providers: &[ExecutionProviderKind],
        require_gpu: bool,
        intra_threads: usize,
    ) -> Result<Self, SessionError> {
        Self::load_with(
            runtime,
            modality,
            path,
            providers,
            require_gpu,
            &SessionSettings::defaults(intra_threads),
        )
    }

    /// Like [`load`](Self::load), with the providers' options.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_with(
        runtime: &OrtRuntime,
        modality: Modality,
        path: &Path,
        providers: &[ExecutionProviderKind],
        require_gpu: bool,
        settings: &SessionSettings,
    ) -> Result<Self, SessionError> {
        if !path.is_file() {
            return Err(SessionError::Missing {
                path: path.to_path_buf(),
            });
        }
        let (created, reasons) = create_first(runtime, path, providers, settings, require_gpu);
        let Some((session, step, placement)) = created else {
            return Err(if require_gpu {
                SessionError::GpuRequired {
                    path: path.to_path_buf(),
                    reasons,
                }
            } else {
                SessionError::NoProvider {
                    path: path.to_path_buf(),
                    reasons,
                }
            });
        };
        let mut encoder = Self::from_session(session, modality, path, &step, placement)?;
        encoder.fallback_reasons = reasons;
        Ok(encoder)
    }

    /// The encoder of a created `session` (of `step`), after checking its contract.
    ///
    /// # Errors
    /// [`SessionError::Contract`] with expected and actual shapes.
    pub fn from_session(
        session: Session,
        modality: Modality,
        path: &Path,
        step: &Step,
        placement: Placement,
    ) -> Result<Self, SessionError> {
        let (input_name, output_name, embedding_dim) = check_contract(&session, modality, path)?;
        // Runs log at WARNING whatever the session's creation logged at (VERBOSE, for the
        // placement): a run must not pay for formatting debug lines.
        let run_options = QuietRuns(RunOptions::new().ok().and_then(|mut o| {
            o.set_log_level(LogLevel::Warning).ok()?;
            Some(o)
        }));
        Ok(Self {
            session,
            modality,
            path: path.to_path_buf(),
            provider: step.provider(),
            step: step.name(),
            placement,
            fallback_reasons: Vec::new(),
            input_name,
            output_name,
            embedding_dim,
            run_options,
        })
    }

    /// Width of the embedding.
    #[must_use]
    pub fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }

    /// Runs a batch (`[B, …]` in the modality's input shape) and returns `[B, dim]`.
    ///
    /// # Errors
    /// [`SessionError::Run`] with ONNX Runtime's message, or when the output is malformed or
    /// not finite.
    pub fn run(&mut self, batch: &ArrayD<f32>) -> Result<Array2<f32>, SessionError> {
        let out = self.run_unchecked(batch)?;
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(SessionError::Run {
                path: self.path.clone(),
                message: format!("output element {i} is not finite"),
            });
        }
        Ok(out)
    }

    /// Like [`run`](Self::run), but leaves non-finite values for the caller to judge per row
    /// (one broken window must not take the rest of its batch with it).
    ///
    /// # Errors
    /// [`SessionError::Run`] with ONNX Runtime's message, or when the output shape is wrong.
    pub fn run_unchecked(&mut self, batch: &ArrayD<f32>) -> Result<Array2<f32>, SessionError> {
        let run_err = |message: String| SessionError::Run {
            path: self.path.clone(),
            message,
        };
        let input = TensorRef::from_array_view(batch.view()).map_err(|e| run_err(e.to_string()))?;
        let inputs = ort::inputs![self.input_name.as_str() => input];
        let outputs = match &self.run_options.0 {
            Some(options) => self.session.run_with_options(inputs, options),
            None => self.session.run(inputs),
        }
        .map_err(|e| run_err(e.to_string()))?;
        let out = outputs
            .get(self.output_name.as_str())
            .ok_or_else(|| run_err(format!("no output named {:?}", self.output_name)))?;
        let view = out
            .try_extract_array::<f32>()
            .map_err(|e| run_err(e.to_string()))?;
        let b = batch.shape().first().copied().unwrap_or(0);
        if view.shape() != [b, self.embedding_dim] {
            return Err(run_err(format!(
                "output has shape {:?}, expected [{b}, {}]",
                view.shape(),
                self.embedding_dim
            )));
        }
        view.into_dimensionality::<ndarray::Ix2>()
            .map(|v| v.to_owned())
            .map_err(|e| run_err(e.to_string()))
    }

    /// Runs one input (without the batch dimension) and returns its embedding.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_one(&mut self, input: &ArrayD<f32>) -> Result<Vec<f32>, SessionError> {
        let mut shape = vec![1];
        shape.extend_from_slice(input.shape());
        let batch = input
            .view()
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|e| SessionError::Run {
                path: self.path.clone(),
                message: e.to_string(),
            })?
            .to_owned();
        let out = self.run(&batch)?;
        Ok(out.row(0).to_vec())
    }
}

fn check_contract(
    session: &Session,
    modality: Modality,
    path: &Path,
) -> Result<(String, String, usize), SessionError> {
    let err = |message: String| SessionError::Contract {
        path: path.to_path_buf(),
        modality,
        message,
    };
    let expected = input_contract(modality);
    let expected = expected.as_slice();
    let inputs = session.inputs();
    let [input] = inputs else {
        return Err(err(format!(
            "expected one input `{modality}` {}, found {} inputs",
            describe(expected),
            inputs.len()
        )));
    };
    if input.name() != modality.as_str() {
        return Err(err(format!(
            "input is named `{}`, expected `{modality}`",
            input.name()
        )));
    }
    let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
        return Err(err(format!("input `{}` is not a tensor", input.name())));
    };
    let fits = shape.len() == expected.len()
        && shape
            .iter()
            .zip(expected)
            .all(|(actual, want)| want.is_none_or(|w| *actual == w || *actual < 0));
    if *ty != TensorElementType::Float32 || !fits {
        return Err(err(format!(
            "input `{}` is {}, expected float32 {}",
            input.name(),
            value_text(input.dtype()),
            describe(expected)
        )));
    }
    let outputs = session.outputs();
    let [output] = outputs else {
        return Err(err(format!(
            "expected one output [B, 1024], found {} outputs",
            outputs.len()
        )));
    };
    let ValueType::Tensor { ty, shape, .. } = output.dtype() else {
        return Err(err(format!("output `{}` is not a tensor", output.name())));
    };
    let dim = match shape.as_ref() {
        [_, d] if *d > 0 => usize::try_from(*d).unwrap_or(0),
        _ => 0,
    };
    if *ty != TensorElementType::Float32 || dim == 0 {
        return Err(err(format!(
            "output `{}` is {}, expected float32 [B, 1024]",
            output.name(),
            value_text(output.dtype())
        )));
    }
    Ok((input.name().to_string(), output.name().to_string(), dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_with_several_threads_do_not_spin_and_single_threaded_ones_keep_the_default() {
        assert!(thread_entries(1).is_empty());
        assert_eq!(
            thread_entries(2),
            [("session.intra_op.allow_spinning", "0")]
        );
    }
}
