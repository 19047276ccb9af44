//! Loading one model along its ladder ([`steps`](super::steps)): each step's session created
//! from its plan, warmed up (TensorRT builds or loads its engine here) and checked against the
//! manifest reference; the first step that passes is kept, and the step is logged and reported.

use std::path::Path;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayD, Axis, IxDyn};

use super::cpu_reference;
use super::gpu_stack::GpuStack;
use super::ort_log::{self, BuildWatch};
use super::parity::Reference;
use super::plan::{self, TensorrtInputs};
use super::runtime::OrtRuntime;
use super::session::{create_session, log_unavailable, CreateError, Encoder, SessionError};
use super::steps::{self, Decision, Ladder, Outcome, Retry, Step};
use super::tensorrt::{classify_failure, CacheDirs, EngineSpec, Profile, TensorrtFailure};
use super::{LoadOptions, LoadedEncoder, ModelSetError};
use crate::Modality;

/// One model to load.
#[derive(Clone)]
pub(super) struct LoadTarget<'a> {
    pub modality: Modality,
    pub path: &'a Path,
    pub sha256: String,
    pub embedding_dim: usize,
    pub reference: Option<&'a Reference>,
    pub what: &'a str,
    pub gpu: &'a GpuStack,
}

/// How often a long step (engine build, warm-up) reports that it is still working.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Longest TensorRT build line put into `STATUS=` (the whole line is in the log).
const STATUS_LINE_CHARS: usize = 120;

/// Runs `work`, logging and sending systemd `STATUS=` every [`PROGRESS_EVERY`] until it is done
/// (a first TensorRT engine build takes minutes and must not look like a hang); during a watched
/// engine build the status carries TensorRT's latest build-log line.
fn with_progress<T>(what: &str, work: impl FnOnce() -> T) -> T {
    crate::service::status(&format!("starting: {what}"));
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::scope(|scope| {
        let started = Instant::now();
        let ticker = std::thread::Builder::new()
            .name("progress".into())
            .spawn_scoped(scope, move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    done_rx.recv_timeout(PROGRESS_EVERY)
                {
                    let elapsed_s = started.elapsed().as_secs();
                    let build = ort_log::latest_build_line().map(|b| {
                        let line: String = b.text.chars().take(STATUS_LINE_CHARS).collect();
                        format!("; TensorRT ({} log lines): {line}", b.count)
                    });
                    let build = build.unwrap_or_default();
                    tracing::info!(elapsed_s, "{what}: still working");
                    crate::service::status(&format!(
                        "starting: {what} ({elapsed_s} s so far{build})"
                    ));
                }
            });
        if let Err(e) = &ticker {
            tracing::debug!(error = %e, "no progress reports for this step");
        }
        let out = work();
        let _ = done_tx.send(());
        out
    })
}

/// The explicit profile of a model: the windows' shapes and the parity reference's, batch 1 to
/// `models.max_batch`.
fn profile_for(opts: &LoadOptions, target: &LoadTarget<'_>) -> Profile {
    let mut shapes = opts.shapes(target.modality);
    if let Some(r) = target.reference {
        let item = r.input.shape().get(1..).unwrap_or_default().to_vec();
        if !shapes.contains(&item) {
            shapes.push(item);
        }
    }
    Profile::covering(target.modality.as_str(), &shapes, opts.max_batch)
}

/// What one attempt produced.
enum Attempt {
    Loaded(Box<LoadedEncoder>),
    Left(Outcome),
    /// The parity check refused the output: cosine and difference.
    Disagrees(String),
}

/// Loads one model: the steps of its ladder in order until one loads, warms up and (with a
/// reference) reproduces it.
pub(super) fn load_one(
    runtime: &OrtRuntime,
    target: &LoadTarget<'_>,
    opts: &LoadOptions,
) -> Result<LoadedEncoder, ModelSetError> {
    let mut ladder = Ladder::new(steps::ladder(
        &opts.providers,
        &opts.tensorrt,
        opts.require_gpu,
    ));
    let profile = profile_for(opts, target);
    let mut own_reference = OwnReference::default();
    while let Some(step) = ladder.current().cloned() {
        let target = &LoadTarget {
            reference: own_reference.for_step(runtime, target, opts, &step),
            ..target.clone()
        };
        let cache = step_cache(opts, target, &runtime.version, &step, &profile)?;
        let mut numbers = String::new();
        let outcome = match attempt(runtime, target, opts, &step, &profile, cache.as_ref())? {
            Attempt::Loaded(loaded) => return Ok(keep(*loaded, &ladder, target, &step)),
            Attempt::Left(outcome) => outcome,
            Attempt::Disagrees(n) => {
                numbers = n;
                let reference = target
                    .reference
                    .map(|r| r.output_path.display().to_string());
                Outcome::ParityFailed {
                    detail: format!(
                        "output disagrees with the reference {} ({numbers})",
                        reference.unwrap_or_default()
                    ),
                }
            }
        };
        match ladder.decide(outcome, opts.parity.on_failure) {
            Decision::Accept
            | Decision::Next(_)
            | Decision::Retry(Retry::WithoutExplicitProfile) => {}
            Decision::Retry(Retry::AfterClearingCache) => {
                if let Some(mut cache) = cache {
                    cache.clear("TensorRT could not deserialize the cached engine")?;
                    tracing::warn!(
                        model = %target.path.display(),
                        step = step.name(),
                        dir = %cache.engine_dir.display(),
                        "cached TensorRT engine is stale (built by another TensorRT?); removed, rebuilding"
                    );
                }
            }
            Decision::Refuse => {
                return Err(ModelSetError::Parity {
                    path: target.path.to_path_buf(),
                    provider: step.provider().as_str(),
                    step: step.name(),
                    reference: target
                        .reference
                        .map(|r| r.output_path.clone())
                        .unwrap_or_default(),
                    detail: numbers,
                })
            }
            Decision::Exhausted => break,
        }
    }
    let path = target.path.to_path_buf();
    let reasons = ladder.reasons().to_vec();
    Err(if ladder.parity_refused() {
        ModelSetError::NoParity { path, reasons }
    } else if opts.require_gpu {
        ModelSetError::Session(SessionError::GpuRequired { path, reasons })
    } else {
        ModelSetError::Session(SessionError::NoProvider { path, reasons })
    })
}

/// The CPU reference of a model whose manifest has none, made once, when the first step that
/// wants it ([`cpu_reference::wanted`]) is tried.
#[derive(Default)]
struct OwnReference {
    tried: bool,
    made: Option<Reference>,
}

impl OwnReference {
    /// The reference `step` is checked against: the manifest's, else the CPU one.
    fn for_step<'a>(
        &'a mut self,
        runtime: &OrtRuntime,
        target: &LoadTarget<'a>,
        opts: &LoadOptions,
        step: &Step,
    ) -> Option<&'a Reference> {
        if target.reference.is_some() {
            return target.reference;
        }
        // A step whose provider this library lacks never runs: no reference is made for it
        // (on a CPU-only library, none at all).
        if !cpu_reference::wanted(step, opts.parity.enabled) || !compiled_in(step) {
            return None;
        }
        if !self.tried {
            self.tried = true;
            let item = opts
                .shapes(target.modality)
                .into_iter()
                .next()
                .unwrap_or_else(|| super::example_input_shape(target.modality));
            let made = with_progress(
                &format!(
                    "{}: making a CPU reference for the parity check",
                    target.what
                ),
                || {
                    cpu_reference::make(
                        runtime,
                        target.modality,
                        target.path,
                        &item,
                        opts.intra_threads,
                    )
                },
            );
            match made {
                Ok(r) => {
                    tracing::info!(
                        model = %target.path.display(),
                        "the manifest has no parity reference: GPU steps are checked against the CPU provider's output for a fixed input"
                    );
                    self.made = Some(r);
                }
                Err(e) => tracing::warn!(
                    model = %target.path.display(), error = %e,
                    "the manifest has no parity reference and the CPU reference could not be made: GPU steps are not checked"
                ),
            }
        }
        self.made.as_ref()
    }
}

/// The encoder of the accepted step, with why the steps before it were left (logged once).
fn keep(
    mut loaded: LoadedEncoder,
    ladder: &Ladder,
    target: &LoadTarget<'_>,
    step: &Step,
) -> LoadedEncoder {
    let reasons = ladder.reasons();
    let not_in_library = ladder.only_unavailable()
        && ladder
            .unavailable()
            .iter()
            .all(|p| !provider_compiled_in(*p));
    if !reasons.is_empty() && not_in_library {
        // Providers this library does not have (TensorRT/CUDA on a CPU-only build): expected,
        // and the "encoder loaded" line already says which provider the model got. A provider
        // the library has but cannot start (CUDA libraries missing) still warns.
        tracing::debug!(
            model = %target.path.display(),
            left = %reasons.join("; "),
            "providers not in this ONNX Runtime library were skipped"
        );
    } else if !reasons.is_empty() {
        tracing::warn!(
            model = %target.path.display(),
            step = step.name(),
            left = %reasons.join("; "),
            "{}: running at step {} after the earlier steps were left",
            target.what,
            step.name()
        );
    }
    loaded.encoder.fallback_reasons = reasons.to_vec();
    loaded
}

/// The engine cache of a TensorRT step (created, checked, emptied when stale).
fn step_cache(
    opts: &LoadOptions,
    target: &LoadTarget<'_>,
    ort_version: &str,
    step: &Step,
    profile: &Profile,
) -> Result<Option<CacheDirs>, ModelSetError> {
    let Step::Tensorrt {
        precision,
        excluded_op_types,
        explicit_profile,
        ..
    } = step
    else {
        return Ok(None);
    };
    let spec = EngineSpec {
        modality: target.modality,
        sha256: &target.sha256,
        ort_version,
        gpu: target.gpu,
        precision: *precision,
        excluded_op_types,
        dla_core: opts.tensorrt.dla_core,
        profile: explicit_profile.then_some(profile),
    };
    let cache = CacheDirs::prepare(&opts.tensorrt_cache_dir, &spec)?;
    if let Some(why) = &cache.cleared {
        tracing::warn!(
            model = %target.path.display(),
            step = step.name(),
            dir = %cache.engine_dir.display(),
            "TensorRT engine cache emptied ({why}); the engine is rebuilt"
        );
    }
    Ok(Some(cache))
}

/// What the start is doing at this step, for the log and `STATUS=`.
fn describe_step(target: &LoadTarget<'_>, step: &Step, cache: Option<&CacheDirs>) -> String {
    let what = target.what;
    let name = step.name();
    match cache {
        Some(c) if tensorrt_compiled_in() && c.has_engine() => {
            format!("{what}: loading the cached TensorRT engine (step {name})")
        }
        Some(c) if tensorrt_compiled_in() => format!(
            "{what}: building the TensorRT engine (step {name}; first start with this model, ONNX Runtime, TensorRT and precision; minutes on a Jetson) in {}",
            c.engine_dir.display()
        ),
        _ => format!("{what}: loading (step {name})"),
    }
}

/// One step: session, warm-up, parity check.
fn attempt(
    runtime: &OrtRuntime,
    target: &LoadTarget<'_>,
    opts: &LoadOptions,
    step: &Step,
    profile: &Profile,
    cache: Option<&CacheDirs>,
) -> Result<Attempt, ModelSetError> {
    let path = target.path;
    let inputs = TensorrtInputs {
        config: &opts.tensorrt,
        cache,
        profile: Some(profile),
    };
    let plan = plan::plan(step, inputs, &opts.cuda, opts.disable_cpu_fallback);
    let doing = describe_step(target, step, cache);
    let options = plan.render();
    let options = if options.is_empty() {
        "none".to_string()
    } else {
        options.join("; ")
    };
    tracing::info!(model = %path.display(), %options, "{doing}");
    // Everything ONNX Runtime logs while TensorRT builds (at creation, or at the first run
    // without an explicit profile) is followed.
    let _watch: Option<BuildWatch<'_>> = matches!(step, Step::Tensorrt { .. })
        .then(|| ort_log::watch_build(&runtime.env, opts.tensorrt.detailed_build_log));
    let started = Instant::now();
    let created = with_progress(&doing, || {
        create_session(runtime, path, &plan, opts.intra_threads)
    });
    let (session, placement) = match created {
        Ok(created) => created,
        Err(CreateError::Unavailable { provider, reason }) => {
            log_unavailable(path, step, provider, &reason);
            return Ok(Attempt::Left(Outcome::Unavailable { provider, reason }));
        }
        Err(CreateError::Failed { reason }) => {
            return Ok(Attempt::Left(failed(path, step, reason)))
        }
    };
    let mut encoder = Encoder::from_session(session, target.modality, path, step, placement)?;
    if encoder.embedding_dim() != target.embedding_dim {
        return Err(ModelSetError::Width {
            path: path.display().to_string(),
            expected: target.embedding_dim,
            actual: encoder.embedding_dim(),
        });
    }
    let provider = encoder.provider.as_str();
    // Without an explicit profile TensorRT sizes its engine by the shapes it sees: the largest
    // batch is run too, so that the engine covers 1 to max_batch before the first window.
    let implicit = matches!(
        step,
        Step::Tensorrt {
            explicit_profile: false,
            ..
        }
    );
    let warm = with_progress(
        &format!(
            "{}: warming up on {provider} (step {})",
            target.what,
            step.name()
        ),
        || {
            warm_up(
                &mut encoder,
                &opts.shapes(target.modality),
                implicit.then_some(opts.max_batch),
            )
        },
    );
    if let Err(e) = warm {
        return Ok(Attempt::Left(failed(path, step, e.to_string())));
    }
    let load_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    verify(encoder, target, opts, &runtime.version, step, load_ms)
}

/// The parity check of a loaded, warm encoder (kept without a reference).
fn verify(
    mut encoder: Encoder,
    target: &LoadTarget<'_>,
    opts: &LoadOptions,
    ort_version: &str,
    step: &Step,
    load_ms: u64,
) -> Result<Attempt, ModelSetError> {
    let path = target.path;
    let provider = encoder.provider.as_str();
    let nodes = encoder.placement.describe();
    let Some(reference) = target.reference else {
        tracing::info!(
            modality = %target.modality, model = %path.display(), provider, step = step.name(),
            nodes = %nodes, ort_version = %ort_version, load_ms,
            "encoder loaded and warm (no parity reference in the manifest)"
        );
        return Ok(loaded(encoder, target, None));
    };
    let actual = match run_in_batches(&mut encoder, &reference.input, opts.max_batch) {
        Ok(a) => a,
        Err(e) => return Ok(Attempt::Left(failed(path, step, e.to_string()))),
    };
    let report = reference.compare(&actual, opts.parity.min_cosine);
    if report.passed() {
        tracing::info!(
            modality = %target.modality, model = %path.display(), provider, step = step.name(),
            nodes = %nodes, ort_version = %ort_version, load_ms,
            parity_min_cosine = %format!("{:.6}", report.min_cosine),
            parity_threshold = %format!("{} ({})", report.threshold, report.threshold_source),
            parity_max_abs_diff = %format!("{:.2e}", report.max_abs_diff),
            "encoder loaded, warm and matching its reference"
        );
        return Ok(loaded(encoder, target, Some(report)));
    }
    let detail = format!(
        "cosine {:.4} < {} ({}) at row {}, max |difference| {:.3e}",
        report.min_cosine,
        report.threshold,
        report.threshold_source,
        report.worst_row,
        report.max_abs_diff
    );
    tracing::warn!(
        modality = %target.modality, model = %path.display(), provider, step = step.name(),
        reference = %reference.output_path.display(), %detail,
        "output disagrees with the manifest reference; provider refused at this step"
    );
    Ok(Attempt::Disagrees(detail))
}

fn loaded(
    encoder: Encoder,
    target: &LoadTarget<'_>,
    parity: Option<super::ParityReport>,
) -> Attempt {
    Attempt::Loaded(Box::new(LoadedEncoder {
        encoder,
        sha256: target.sha256.clone(),
        parity,
    }))
}

/// A step that failed, classified (the profile and stale-engine errors are recovered from),
/// and logged.
fn failed(path: &Path, step: &Step, reason: String) -> Outcome {
    log_unavailable(path, step, step.provider(), &reason);
    match classify_failure(&reason) {
        Some(TensorrtFailure::ProfileRejected) => Outcome::ProfileRejected { reason },
        Some(TensorrtFailure::StaleEngine) => Outcome::StaleEngine { reason },
        None => Outcome::Failed { reason },
    }
}

/// Whether the loaded library has the TensorRT provider at all (the CPU build does not; then
/// no engine will be built and saying so would mislead).
fn tensorrt_compiled_in() -> bool {
    use ort::ep::ExecutionProvider as _;
    ort::ep::TensorRT::is_available().unwrap_or(false)
}

/// Whether every provider `step` registers is compiled into the loaded library.
fn compiled_in(step: &Step) -> bool {
    step.registered().iter().all(|p| provider_compiled_in(*p))
}

/// Whether `provider` is compiled into the loaded library.
fn provider_compiled_in(provider: crate::config::ExecutionProviderKind) -> bool {
    use ort::ep::ExecutionProvider as _;
    match provider {
        crate::config::ExecutionProviderKind::Tensorrt => tensorrt_compiled_in(),
        crate::config::ExecutionProviderKind::Cuda => {
            ort::ep::CUDA::is_available().unwrap_or(false)
        }
        crate::config::ExecutionProviderKind::Cpu => true,
    }
}

/// One run per input shape, batch of one (and of `max_batch` when given), so that the first
/// window does not pay for initialisation (and TensorRT has built or loaded its engine).
fn warm_up(
    encoder: &mut Encoder,
    shapes: &[Vec<usize>],
    max_batch: Option<usize>,
) -> Result<(), SessionError> {
    let batches: Vec<usize> = std::iter::once(1)
        .chain(max_batch.filter(|&b| b > 1))
        .collect();
    for item in shapes {
        for &b in &batches {
            let mut shape = vec![b];
            shape.extend_from_slice(item);
            encoder.run(&ArrayD::<f32>::zeros(IxDyn(&shape)))?;
        }
    }
    Ok(())
}

/// Runs `input` (`[B, …]`) in batches of at most `max_batch` (what the TensorRT profile
/// covers) and returns all rows.
fn run_in_batches(
    encoder: &mut Encoder,
    input: &ArrayD<f32>,
    max_batch: usize,
) -> Result<Array2<f32>, SessionError> {
    let mut parts = Vec::new();
    for chunk in input.axis_chunks_iter(Axis(0), max_batch.max(1)) {
        parts.push(encoder.run_unchecked(&chunk.to_owned())?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).map_err(|e| SessionError::Run {
        path: encoder.path.clone(),
        message: e.to_string(),
    })
}
