//! The inference worker: one thread owns one encoder session, takes preprocessed windows from a
//! bounded queue, runs the model, matches concepts and hands each embedded window to the
//! outputs as an [`Event::Embedded`] (it knows nothing of topics, QoS or encodings).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ndarray::{ArrayD, Axis};

use super::reuse::{Candidate, Embedded, LastEmbedded, Plan};
use super::session::Encoder;
use crate::concepts::live::SensorConcepts;
use crate::log_limited;
use crate::output::{
    unit_norm, EmbeddedWindow, Emitter, EncoderInfo, Event, WindowLatency, WindowSpan,
};
use crate::pipeline::WindowMeta;
use crate::telemetry::inference::thread_cpu_time;
use crate::telemetry::{DropReason, LogLimiter, ModelStats, Stage, StreamStats};
use crate::time::Clock;

/// A preprocessed window waiting for its model.
#[derive(Debug)]
pub struct Job {
    /// Sensor name.
    pub sensor: Arc<str>,
    /// The sensor's counters.
    pub stats: Arc<StreamStats>,
    /// The window's place in the sensor's stream and its preprocessing time.
    pub meta: WindowMeta,
    /// The model input without the batch dimension.
    pub input: ArrayD<f32>,
    /// The sensor's `skip_unchanged` (`None`: always run the encoder).
    pub skip: Option<crate::config::SkipUnchanged>,
    /// When it was queued.
    pub queued_at: Instant,
}

/// What the worker needs besides its session.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// Model-set name.
    pub model_name: String,
    /// sha256 of the encoder.
    pub model_sha256: String,
    /// ONNX Runtime version.
    pub ort_version: String,
    /// Concepts to match, per sensor (its concept set, or the model set's bank).
    pub concepts: SensorConcepts,
    /// How many concepts to publish.
    pub top_k: usize,
    /// Minimum cosine of a published concept.
    pub min_score: f32,
    /// The daemon's clock.
    pub clock: Clock,
    /// How windows are batched.
    pub batching: Batching,
    /// The model's run counters (and the provider in use).
    pub model_stats: Arc<ModelStats>,
    /// Sensors whose windows carry statistics of their model input (those with `stuck`
    /// triggers; computing them costs a pass over the tensor).
    pub input_stats_for: Arc<std::collections::BTreeSet<String>>,
}

/// How the worker batches windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Most windows per session run.
    pub max_batch: usize,
    /// How long to wait for more windows once one is there (zero: only those already waiting).
    pub max_wait: Duration,
}

/// Errors starting a worker.
#[derive(Debug, thiserror::Error)]
#[error("inference worker for {modality}: cannot start its thread: {source}")]
pub struct WorkerSpawnError {
    modality: crate::Modality,
    source: std::io::Error,
}

/// Which window `job` is.
fn window_span(job: &Job) -> WindowSpan {
    WindowSpan {
        seq: job.meta.seq,
        start: job.meta.start,
        end: job.meta.end,
        sample_count: job.meta.sample_count,
        gaps: job.meta.gaps,
    }
}

/// One embedded window from its encoder output `raw`: unit-normalised, matched against the
/// concept bank, timed.
#[must_use]
pub fn embedded_window(
    ctx: &WorkerContext,
    encoder: &Arc<EncoderInfo>,
    modality: crate::Modality,
    job: &Job,
    raw: &[f32],
    inference_ms: f64,
    queue_ms: f64,
) -> EmbeddedWindow {
    let (embedding, norm) = unit_norm(raw);
    let labels = ctx
        .concepts
        .of(&job.sensor)
        .top_k(&embedding, ctx.top_k, ctx.min_score);
    let window = window_span(job);
    let now = ctx.clock.now();
    EmbeddedWindow {
        sensor: Arc::clone(&job.sensor),
        modality,
        encoder: Arc::clone(encoder),
        embedding,
        norm,
        reused_from_seq: None,
        labels,
        latency: WindowLatency {
            preprocess_ms: job.meta.preprocess_ms,
            queue_ms,
            inference_ms,
        },
        window_end_age: Duration::from_nanos(now.mono_ns.saturating_sub(window.end.mono_ns)),
        window,
        emitted_at: Instant::now(),
        stats: Arc::clone(&job.stats),
        input: ctx
            .input_stats_for
            .contains(&*job.sensor)
            .then(|| crate::triggers::InputStats::from_tensor(&job.input)),
    }
}

/// Takes the next batch: blocks for the first job (or takes `held`), then adds jobs of the
/// same input shape that are waiting (or arrive within `batching.max_wait`), up to
/// `batching.max_batch`. A job of another shape (audio sources with different clip counts) is
/// held for the next batch. `None` when the queue is closed and empty.
fn next_batch(
    jobs: &crossbeam_channel::Receiver<Job>,
    held: &mut Option<Job>,
    batching: Batching,
) -> Option<Vec<Job>> {
    let first = match held.take() {
        Some(job) => job,
        None => jobs.recv().ok()?,
    };
    let deadline = Instant::now() + batching.max_wait;
    let mut batch = vec![first];
    while batch.len() < batching.max_batch.max(1) {
        let next = match jobs.try_recv() {
            Ok(job) => job,
            Err(_) if batching.max_wait.is_zero() => break,
            Err(_) => match jobs.recv_deadline(deadline) {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        if next.input.shape() == batch[0].input.shape() {
            batch.push(next);
        } else {
            *held = Some(next);
            break;
        }
    }
    Some(batch)
}

/// Stacks the inputs of the windows of `batch` that run into one `[B, …]` tensor.
fn stack_inputs(batch: &[Job], plans: &[Plan]) -> Result<ArrayD<f32>, ndarray::ShapeError> {
    let views: Vec<_> = batch
        .iter()
        .zip(plans)
        .filter(|(_, p)| **p == Plan::Run)
        .map(|(j, _)| j.input.view())
        .collect();
    ndarray::stack(Axis(0), &views)
}

/// One limiter per problem the worker may meet at every batch or window: logged once, then
/// summarised every few seconds (the drops are counted either way).
#[derive(Debug, Default)]
struct WorkerLogs {
    /// Batches the model failed on.
    failed: LogLimiter,
    /// Windows whose output is not finite.
    non_finite: LogLimiter,
}

/// Counts every window of `batch` as dropped by a failed run.
fn drop_batch(batch: &[&Job], error: &dyn std::fmt::Display, logs: &mut WorkerLogs) {
    for job in batch {
        job.stats.add_drops(DropReason::InferenceError, 1);
    }
    let (first, last) = (
        batch.first().map(|j| j.meta.seq),
        batch.last().map(|j| j.meta.seq),
    );
    log_limited!(logs.failed, tracing::Level::WARN,
        "windows dropped: the model failed (counted as inference_error)",
        windows = batch.len(), first_seq = first.unwrap_or(0), last_seq = last.unwrap_or(0),
        error = %error);
}

/// One session run over the windows of a batch that run.
struct BatchRun {
    /// Row `i` is the output of the `i`-th window that ran (`None`: it was not finite).
    rows: Vec<Option<Vec<f32>>>,
    /// How long the run took (every window of the batch waited for all of it).
    inference: Duration,
}

/// Each window's raw output and, when reused, the window it comes from: from `run` for the
/// windows that ran, from `last` or an earlier window of the batch for the others. `None`: no
/// output (the run failed, or the window it would reuse has none).
fn outputs(
    batch: &[Job],
    plans: &[Plan],
    run: Option<&BatchRun>,
    last: &LastEmbedded,
) -> Vec<Option<(Vec<f32>, Option<u64>)>> {
    let mut rows = run.map(|r| r.rows.iter());
    let mut out: Vec<Option<(Vec<f32>, Option<u64>)>> = Vec::with_capacity(batch.len());
    for (job, plan) in batch.iter().zip(plans) {
        let this = match *plan {
            Plan::Run => rows
                .as_mut()
                .and_then(Iterator::next)
                .and_then(Clone::clone)
                .map(|raw| (raw, None)),
            Plan::ReuseLast => last.get(&job.sensor).map(|e| (e.raw.clone(), Some(e.seq))),
            Plan::ReuseWindow(j) => match (out.get(j), batch.get(j)) {
                (Some(Some((raw, _))), Some(from)) => Some((raw.clone(), Some(from.meta.seq))),
                _ => None,
            },
        };
        out.push(this);
    }
    out
}

/// Where a worker's embedded windows go.
struct Sink<'a> {
    ctx: &'a WorkerContext,
    encoder: &'a Arc<EncoderInfo>,
    modality: crate::Modality,
    out: &'a Emitter,
}

/// Hands the embedding of each window of `batch` to the outputs. A window without an output is
/// counted as `inference_error`, unless it ran in a failed run (`drop_batch` counted those).
/// Returns `false` when every output has stopped.
fn emit_batch(
    sink: &Sink<'_>,
    batch: &[Job],
    plans: &[Plan],
    results: Vec<Option<(Vec<f32>, Option<u64>)>>,
    run: Option<&BatchRun>,
    queue_ms: &[f64],
    logs: &mut WorkerLogs,
) -> bool {
    let inference = run.map_or(Duration::ZERO, |r| r.inference);
    let inference_ms = inference.as_secs_f64() * 1e3;
    for (((job, plan), result), &queue_ms) in batch.iter().zip(plans).zip(results).zip(queue_ms) {
        let Some((raw, reused_from_seq)) = result else {
            if *plan == Plan::Run && run.is_none() {
                continue;
            }
            job.stats.add_drops(DropReason::InferenceError, 1);
            log_limited!(logs.non_finite, tracing::Level::WARN,
                "window dropped: no finite model output for it, or for the earlier window it would reuse (counted as inference_error)",
                sensor = %job.sensor, seq = job.meta.seq);
            continue;
        };
        // A reused window did not wait for the encoder.
        let window_inference_ms = if reused_from_seq.is_some() {
            0.0
        } else {
            job.stats.record_latency(Stage::Inference, inference);
            inference_ms
        };
        let ctx = sink.ctx;
        let mut window = embedded_window(
            ctx,
            sink.encoder,
            sink.modality,
            job,
            &raw,
            window_inference_ms,
            queue_ms,
        );
        window.reused_from_seq = reused_from_seq;
        if sink
            .out
            .emit_blocking(&Event::Embedded(Arc::new(window)))
            .is_err()
        {
            tracing::error!("every output has stopped; inference worker exits");
            return false;
        }
        job.stats.add_embedding();
        if reused_from_seq.is_some() {
            job.stats.add_reused();
        }
    }
    true
}

/// Runs the encoder over the windows of `batch` that run (`None` when none does, or the run
/// failed: then those windows are counted and logged as dropped).
fn run_batch(
    encoder: &mut Encoder,
    ctx: &WorkerContext,
    batch: &[Job],
    plans: &[Plan],
    logs: &mut WorkerLogs,
) -> Option<BatchRun> {
    let running: Vec<&Job> = batch
        .iter()
        .zip(plans)
        .filter(|(_, p)| **p == Plan::Run)
        .map(|(j, _)| j)
        .collect();
    if running.is_empty() {
        return None;
    }
    let failed = |e: &dyn std::fmt::Display, logs: &mut WorkerLogs| {
        let jobs: Vec<&Job> = running.clone();
        drop_batch(&jobs, e, logs);
    };
    let input = match stack_inputs(batch, plans) {
        Ok(input) => input,
        Err(e) => {
            failed(&e, logs);
            return None;
        }
    };
    let (t0, cpu0) = (Instant::now(), thread_cpu_time());
    let result = encoder.run_unchecked(&input);
    let inference = t0.elapsed();
    let cpu = thread_cpu_time()
        .zip(cpu0)
        .map(|(t1, t0)| t1.saturating_sub(t0));
    ctx.model_stats.add_run(running.len(), cpu);
    match result {
        Ok(rows) => Some(BatchRun {
            // A non-finite row is one broken window; the rest of the batch is fine.
            rows: rows
                .rows()
                .into_iter()
                .map(|r| r.iter().all(|v| v.is_finite()).then(|| r.to_vec()))
                .collect(),
            inference,
        }),
        Err(e) => {
            failed(&e, logs);
            None
        }
    }
}

/// One batch: plans which windows run and which reuse an embedding, runs the encoder, remembers
/// what was embedded for the sensors that skip unchanged inputs, and hands every window to
/// the outputs. Returns `false` when every output has stopped.
fn handle_batch(
    encoder: &mut Encoder,
    sink: &Sink<'_>,
    mut batch: Vec<Job>,
    last: &mut LastEmbedded,
    logs: &mut WorkerLogs,
) -> bool {
    let ctx = sink.ctx;
    let queue_ms: Vec<f64> = batch
        .iter()
        .map(|job| {
            let queued = job.queued_at.elapsed();
            job.stats.record_latency(Stage::Queue, queued);
            queued.as_secs_f64() * 1e3
        })
        .collect();
    let candidates: Vec<Candidate<'_>> = batch
        .iter()
        .map(|j| Candidate {
            sensor: &j.sensor,
            input: &j.input,
            skip: j.skip,
        })
        .collect();
    let plans = last.plan(&candidates);
    let run = run_batch(encoder, ctx, &batch, &plans, logs);
    let results = outputs(&batch, &plans, run.as_ref(), last);
    for ((job, plan), result) in batch.iter_mut().zip(&plans).zip(&results) {
        if let (Plan::Run, Some(_), Some((raw, None))) = (plan, job.skip, result) {
            // The input is not needed any more: keep it without a copy.
            let input = std::mem::replace(&mut job.input, ArrayD::zeros(ndarray::IxDyn(&[0])));
            let embedded = Embedded {
                seq: job.meta.seq,
                input,
                raw: raw.clone(),
            };
            last.remember(&job.sensor, embedded);
        }
    }
    emit_batch(sink, &batch, &plans, results, run.as_ref(), &queue_ms, logs)
}

/// Starts the worker thread. It takes windows in batches (see [`Batching`]), runs them through
/// the session in one call, and hands each to the outputs. It ends when every job sender is
/// dropped and the queue is empty, or when every output has stopped.
///
/// # Errors
/// [`WorkerSpawnError`] when the OS refuses a thread.
pub fn spawn_worker(
    mut encoder: Encoder,
    ctx: WorkerContext,
    jobs: crossbeam_channel::Receiver<Job>,
    out: Emitter,
) -> Result<JoinHandle<()>, WorkerSpawnError> {
    let modality = encoder.modality;
    let info = Arc::new(EncoderInfo {
        name: ctx.model_name.clone(),
        sha256: ctx.model_sha256.clone(),
        provider: encoder.provider.as_str().to_string(),
        ort_version: ctx.ort_version.clone(),
    });
    std::thread::Builder::new()
        .name(format!("infer-{modality}"))
        .spawn(move || {
            let _span = tracing::info_span!("inference", %modality).entered();
            let mut held = None;
            let mut logs = WorkerLogs::default();
            let mut last = LastEmbedded::default();
            let sink = Sink {
                ctx: &ctx,
                encoder: &info,
                modality,
                out: &out,
            };
            while let Some(batch) = next_batch(&jobs, &mut held, ctx.batching) {
                if !handle_batch(&mut encoder, &sink, batch, &mut last, &mut logs) {
                    return;
                }
            }
        })
        .map_err(|source| WorkerSpawnError { modality, source })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn job(seq: u64, shape: &[usize]) -> Job {
        let now = crate::time::Clock::new().now();
        Job {
            sensor: Arc::from("s"),
            stats: Arc::new(StreamStats::default()),
            meta: WindowMeta {
                seq,
                start: now,
                end: now,
                sample_count: 1,
                gaps: 0,
                preprocess_ms: 0.0,
            },
            input: ArrayD::zeros(ndarray::IxDyn(shape)),
            skip: None,
            queued_at: Instant::now(),
        }
    }

    fn seqs(batch: &[Job]) -> Vec<u64> {
        batch.iter().map(|j| j.meta.seq).collect()
    }

    #[test]
    fn waiting_windows_are_batched_up_to_max_batch() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        for seq in 0..7 {
            tx.send(job(seq, &[6, 2000])).unwrap();
        }
        drop(tx);
        let b = Batching {
            max_batch: 3,
            max_wait: Duration::ZERO,
        };
        let mut held = None;
        let mut batches = Vec::new();
        while let Some(batch) = next_batch(&rx, &mut held, b) {
            batches.push(seqs(&batch));
        }
        assert_eq!(batches, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    }

    #[test]
    fn a_window_of_another_shape_waits_for_the_next_batch() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        tx.send(job(0, &[1, 1, 128, 204])).unwrap();
        tx.send(job(1, &[3, 1, 128, 204])).unwrap();
        tx.send(job(2, &[3, 1, 128, 204])).unwrap();
        drop(tx);
        let b = Batching {
            max_batch: 4,
            max_wait: Duration::ZERO,
        };
        let mut held = None;
        assert_eq!(seqs(&next_batch(&rx, &mut held, b).unwrap()), vec![0]);
        assert_eq!(seqs(&next_batch(&rx, &mut held, b).unwrap()), vec![1, 2]);
        assert!(next_batch(&rx, &mut held, b).is_none());
    }

    #[test]
    fn the_worker_waits_for_more_windows_only_when_allowed() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        tx.send(job(0, &[6, 2000])).unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            tx.send(job(1, &[6, 2000])).unwrap();
            tx
        });
        let b = Batching {
            max_batch: 2,
            max_wait: Duration::from_secs(10),
        };
        let mut held = None;
        // Waits (at most 10 s) for the second window rather than running the first alone.
        assert_eq!(seqs(&next_batch(&rx, &mut held, b).unwrap()), vec![0, 1]);
        drop(sender.join().unwrap());
        assert!(next_batch(&rx, &mut held, b).is_none());
    }
}
