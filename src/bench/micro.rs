//! Per-modality measurements: preprocessing one window, inference at batch 1 and at the best
//! batch size, and the throughput of preprocessing and inference running side by side as in the
//! daemon (one thread preprocessing, one owning the session, a bounded queue between them).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, Axis};
use serde::Serialize;

use super::inputs::ModalityInput;
use super::stats::{intervals_from_completions, summarize_ms, summarize_rates, Rate, Summary};
use super::BenchError;
use crate::config::ExecutionProviderKind;
use crate::inference::{Encoder, Manifest, OrtRuntime};
use crate::Modality;

/// Warm-up runs discarded before measuring (at least one; more while within 10 % of the budget).
const WARMUP_RUNS: usize = 3;
/// Measured runs taken even when one run is longer than the budget.
const MIN_RUNS: usize = 3;
/// Upper bound on measured runs of one kind (keeps memory bounded on very fast paths).
const MAX_RUNS: usize = 200_000;
/// Throughput is counted over intervals of at least this long.
const RATE_INTERVAL_S: f64 = 0.1;
/// A larger batch must beat the best per-window time by this factor to count as better.
const BATCH_GAIN: f64 = 0.97;

/// Shares of a modality's time budget.
const SHARE_PREPROCESS: f64 = 0.15;
const SHARE_BATCH1: f64 = 0.2;
const SHARE_SWEEP: f64 = 0.35;
const SHARE_THROUGHPUT: f64 = 0.3;

/// What to measure.
#[derive(Debug, Clone)]
pub struct MicroOptions {
    /// Model-set directory (with `manifest.json`).
    pub models_dir: PathBuf,
    /// Execution providers to try, in order.
    pub providers: Vec<ExecutionProviderKind>,
    /// Total measuring time, split evenly between the modalities.
    pub duration: Duration,
    /// ONNX Runtime intra-op threads per session.
    pub intra_threads: usize,
    /// Modalities to measure; empty = every one the manifest has.
    pub modalities: Vec<Modality>,
    /// Largest batch size tried.
    pub max_batch: usize,
    /// The bundled recordings (`None`: synthetic inputs).
    pub recordings: Option<PathBuf>,
}

/// Inference at one batch size.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchPoint {
    /// Windows per run.
    pub batch: usize,
    /// Time of one run (the whole batch).
    pub run: Summary,
    /// Median time per window (`run.median_ms / batch`).
    pub per_window_median_ms: f64,
}

/// Everything measured for one modality.
#[derive(Debug, Clone, Serialize)]
pub struct ModalityResult {
    /// The modality.
    pub modality: Modality,
    /// The encoder file.
    pub model: String,
    /// The execution provider actually used.
    pub provider: &'static str,
    /// Why each provider tried before it failed.
    pub provider_fallbacks: Vec<String>,
    /// What one window is.
    pub input: String,
    /// Model input of one window (without the batch dimension).
    pub input_shape: Vec<usize>,
    /// Preprocessing one window.
    pub preprocess: Summary,
    /// One run at batch 1.
    pub inference_batch1: Summary,
    /// Every batch size tried (1, 2, 4, …).
    pub batch_sizes: Vec<BatchPoint>,
    /// The batch size with the lowest median time per window.
    pub best_batch: usize,
    /// One run at the best batch size.
    pub inference_best_batch: Summary,
    /// Why no larger batch was tried.
    pub batch_limit: String,
    /// Windows per second through preprocessing and inference (at up to the best batch)
    /// running concurrently.
    pub throughput: Rate,
}

/// Runs `f` (warm-up, then measured) until `budget` is spent; returns the measured times in ms.
fn measure(
    budget: Duration,
    mut f: impl FnMut() -> Result<(), BenchError>,
) -> Result<Vec<f64>, BenchError> {
    let start = Instant::now();
    for i in 0..WARMUP_RUNS {
        if i > 0 && start.elapsed() > budget / 10 {
            break;
        }
        f()?;
    }
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < MAX_RUNS && (times.len() < MIN_RUNS || start.elapsed() < budget) {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(times)
}

fn summary(modality: Modality, what: &str, times: &[f64]) -> Result<Summary, BenchError> {
    summarize_ms(times).ok_or_else(|| BenchError::Measure {
        modality,
        message: format!("no {what} time measured"),
    })
}

/// Stacks the first `b` inputs (cycling) into `[b, …]`.
fn stack(inputs: &[ArrayD<f32>], b: usize, modality: Modality) -> Result<ArrayD<f32>, BenchError> {
    let views: Vec<_> = (0..b)
        .filter_map(|i| inputs.get(i % inputs.len().max(1)))
        .map(|a| a.view())
        .collect();
    ndarray::stack(Axis(0), &views).map_err(|e| BenchError::Measure {
        modality,
        message: format!("stacking a batch of {b}: {e}"),
    })
}

/// The first line of an error, for a one-line reason.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// Measures one modality within `budget`; `progress` is told the phase.
///
/// # Errors
/// [`BenchError`] when the model cannot be loaded or a measurement fails at batch 1.
pub fn measure_modality(
    runtime: &OrtRuntime,
    options: &MicroOptions,
    manifest: &Manifest,
    mut input: ModalityInput,
    budget: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<ModalityResult, BenchError> {
    let modality = input.modality;
    let (path, _) = manifest.model(modality).ok_or_else(|| BenchError::Models {
        dir: options.models_dir.clone(),
        message: format!("manifest.json has no {modality} model"),
    })?;
    let mut encoder = load_encoder(runtime, options, modality, &path, progress)?;

    progress(&format!("{modality}: preprocessing"));
    let pre_times = measure(budget.mul_f64(SHARE_PREPROCESS), || {
        input.prepare().map(drop)
    })?;
    let preprocess = summary(modality, "preprocessing", &pre_times)?;

    // Distinct real windows for the batches (cycled when the batch is larger).
    let windows = (0..options.max_batch.clamp(1, 16))
        .map(|_| input.prepare())
        .collect::<Result<Vec<_>, _>>()?;
    let input_shape = windows
        .first()
        .map(|w| w.shape().to_vec())
        .unwrap_or_default();

    progress(&format!("{modality}: inference, batch 1"));
    let one = stack(&windows, 1, modality)?;
    let b1_times = measure(budget.mul_f64(SHARE_BATCH1), || {
        encoder.run(&one).map(drop).map_err(BenchError::from)
    })?;
    let inference_batch1 = summary(modality, "inference", &b1_times)?;

    let sweep = sweep_batches(
        &mut encoder,
        &windows,
        modality,
        options.max_batch,
        budget.mul_f64(SHARE_SWEEP),
        inference_batch1,
        progress,
    )?;
    let best_point = sweep.best.clone();

    progress(&format!(
        "{modality}: throughput (batch ≤ {})",
        best_point.batch
    ));
    let throughput = measure_throughput(
        &mut encoder,
        &mut input,
        best_point.batch,
        budget.mul_f64(SHARE_THROUGHPUT),
    )?;

    Ok(ModalityResult {
        modality,
        model: path.display().to_string(),
        provider: encoder.provider.as_str(),
        provider_fallbacks: encoder.fallback_reasons.clone(),
        input: input.description.clone(),
        input_shape,
        preprocess,
        inference_batch1,
        best_batch: best_point.batch,
        inference_best_batch: best_point.run,
        batch_sizes: sweep.points,
        batch_limit: sweep.limit,
        throughput,
    })
}

/// The encoder of `modality`, loaded on the first provider of the options that works.
fn load_encoder(
    runtime: &OrtRuntime,
    options: &MicroOptions,
    modality: crate::Modality,
    path: &std::path::Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Encoder, BenchError> {
    progress(&format!("{modality}: loading {}", path.display()));
    Ok(Encoder::load(
        runtime,
        modality,
        path,
        &options.providers,
        false,
        options.intra_threads,
    )?)
}

/// The batch sizes tried, the best one and why the sweep stopped.
struct Sweep {
    points: Vec<BatchPoint>,
    best: BatchPoint,
    limit: String,
}

/// Doubles the batch from 2 up to `max_batch` while it pays: stops at the first batch the
/// model refuses, or after two sizes no faster per window than the best so far.
fn sweep_batches(
    encoder: &mut Encoder,
    windows: &[ArrayD<f32>],
    modality: Modality,
    max_batch: usize,
    budget: Duration,
    inference_batch1: Summary,
    progress: &mut dyn FnMut(&str),
) -> Result<Sweep, BenchError> {
    let one = BatchPoint {
        batch: 1,
        run: inference_batch1,
        per_window_median_ms: inference_batch1.median_ms,
    };
    let mut sweep = Sweep {
        points: vec![one.clone()],
        best: one,
        limit: format!("--max-batch {max_batch}"),
    };
    let sizes: Vec<usize> = std::iter::successors(Some(2usize), |b| b.checked_mul(2))
        .take_while(|b| *b <= max_batch)
        .collect();
    let per_size = budget.div_f64(sizes.len().max(1) as f64);
    let mut misses = 0;
    for &b in &sizes {
        progress(&format!("{modality}: inference, batch {b}"));
        let batch = stack(windows, b, modality)?;
        if let Err(e) = encoder.run(&batch) {
            sweep.limit = format!(
                "the model refused batch {b}: {}",
                first_line(&e.to_string())
            );
            break;
        }
        let times = measure(per_size, || {
            encoder.run(&batch).map(drop).map_err(BenchError::from)
        })?;
        let run = summary(modality, "inference", &times)?;
        let per_window = run.median_ms / b as f64;
        let point = BatchPoint {
            batch: b,
            run,
            per_window_median_ms: per_window,
        };
        sweep.points.push(point.clone());
        if per_window < sweep.best.per_window_median_ms * BATCH_GAIN {
            sweep.best = point;
            misses = 0;
        } else {
            misses += 1;
            if misses >= 2 {
                sweep.limit = format!(
                    "batches {} and {b} were no faster per window than {}",
                    b / 2,
                    sweep.best.batch
                );
                break;
            }
        }
    }
    Ok(sweep)
}

/// One thread preprocesses windows into a bounded queue (blocking when full, as a replay's
/// `block` policy does); this thread takes what is waiting, up to `max_batch`, and runs it.
fn measure_throughput(
    encoder: &mut Encoder,
    input: &mut ModalityInput,
    max_batch: usize,
    budget: Duration,
) -> Result<Rate, BenchError> {
    let modality = input.modality;
    let max_batch = max_batch.max(1);
    let (tx, rx) = crossbeam_channel::bounded::<ArrayD<f32>>(2 * max_batch);
    let stop = AtomicBool::new(false);
    let warmup = budget.mul_f64(0.1).as_secs_f64();
    let mut completions: Vec<(f64, usize)> = Vec::new();
    let consumer = std::thread::scope(|scope| {
        let (stop_ref, input_ref) = (&stop, &mut *input);
        // The sender moves into the thread, so the queue closes when the thread ends.
        let producer = scope.spawn(move || -> Result<(), BenchError> {
            while !stop_ref.load(Ordering::Relaxed) {
                let window = input_ref.prepare()?;
                if tx.send(window).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let result = consume(encoder, &rx, modality, max_batch, budget, &mut completions);
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        let produced = producer.join().unwrap_or_else(|_| {
            Err(BenchError::Measure {
                modality,
                message: "the preprocessing thread panicked".into(),
            })
        });
        result.and(produced)
    });
    consumer?;
    rate_after_warmup(&completions, warmup, modality)
}

/// Runs the encoder on batches of whatever windows are ready (up to `max_batch`) until the
/// budget is spent and enough runs were made, recording when each finished and its size.
fn consume(
    encoder: &mut Encoder,
    rx: &crossbeam_channel::Receiver<ArrayD<f32>>,
    modality: crate::Modality,
    max_batch: usize,
    budget: Duration,
    completions: &mut Vec<(f64, usize)>,
) -> Result<(), BenchError> {
    let start = Instant::now();
    while start.elapsed() < budget || completions.len() < MIN_RUNS {
        let Ok(first) = rx.recv_timeout(Duration::from_secs(60)) else {
            return Err(BenchError::Measure {
                modality,
                message: "the preprocessing thread stopped delivering windows".into(),
            });
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let n = batch.len();
        stack(&batch, n, modality)
            .and_then(|b| encoder.run(&b).map(drop).map_err(BenchError::from))?;
        completions.push((start.elapsed().as_secs_f64(), n));
    }
    Ok(())
}

/// Windows per second over the completions after the warm-up.
fn rate_after_warmup(
    completions: &[(f64, usize)],
    warmup: f64,
    modality: crate::Modality,
) -> Result<Rate, BenchError> {
    let measured: Vec<(f64, usize)> = completions
        .iter()
        .copied()
        .filter(|(t, _)| *t > warmup)
        .collect();
    let first = completions
        .iter()
        .rev()
        .find(|(t, _)| *t <= warmup)
        .map_or(0.0, |(t, _)| *t);
    let mut intervals = intervals_from_completions(&measured, first, RATE_INTERVAL_S);
    if intervals.is_empty() {
        // Runs longer than the budget: one interval over everything measured.
        let n: usize = completions.iter().map(|(_, n)| n).sum();
        let t = completions.last().map_or(0.0, |(t, _)| *t);
        intervals.push((n, t));
    }
    summarize_rates(&intervals).ok_or_else(|| BenchError::Measure {
        modality,
        message: "no throughput interval measured".into(),
    })
}
