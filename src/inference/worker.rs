//! The inference worker: one thread owns one encoder session, takes preprocessed windows from a
//! bounded queue, runs the model, matches concepts and hands the messages to the publisher.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ndarray::ArrayD;
use tokio::sync::mpsc;

use super::session::Encoder;
use crate::concepts::SharedConcepts;
use crate::config::{EmbeddingEncoding, Qos};
use crate::publish::payload::{
    unit_norm, EmbeddingEnvelope, EmbeddingField, LabelsMessage, Latency, ModelInfo, Topics,
    WindowInfo, ENVELOPE_VERSION,
};
use crate::publish::{MessageTiming, OutMessage};
use crate::telemetry::{DropReason, Stage, StreamStats};
use crate::time::{Clock, Timestamp};

/// A preprocessed window waiting for its model.
#[derive(Debug)]
pub struct Job {
    /// Sensor name.
    pub sensor: Arc<str>,
    /// The sensor's counters.
    pub stats: Arc<StreamStats>,
    /// Window number in the sensor's stream.
    pub seq: u64,
    /// First sample's capture time.
    pub start: Timestamp,
    /// Capture time just after the last sample.
    pub end: Timestamp,
    /// Samples in the window.
    pub sample_count: u64,
    /// Samples missing inside it.
    pub gaps: u64,
    /// The model input without the batch dimension.
    pub input: ArrayD<f32>,
    /// Time spent preprocessing.
    pub preprocess_ms: f64,
    /// When it was queued.
    pub queued_at: Instant,
}

/// What the worker needs besides its session.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// Device id.
    pub device: String,
    /// Model-set name.
    pub model_name: String,
    /// sha256 of the encoder.
    pub model_sha256: String,
    /// ONNX Runtime version.
    pub ort_version: String,
    /// Concepts to match.
    pub concepts: SharedConcepts,
    /// How many concepts to publish.
    pub top_k: usize,
    /// Minimum cosine of a published concept.
    pub min_score: f32,
    /// Topic names.
    pub topics: Topics,
    /// QoS of embedding and labels messages.
    pub qos: Qos,
    /// Encoding of the vector.
    pub encoding: EmbeddingEncoding,
    /// The daemon's clock.
    pub clock: Clock,
}

/// Errors starting a worker.
#[derive(Debug, thiserror::Error)]
#[error("inference worker for {modality}: cannot start its thread: {source}")]
pub struct WorkerSpawnError {
    modality: crate::Modality,
    source: std::io::Error,
}

/// Builds the embedding and labels messages of one embedded window (pure).
#[must_use]
pub fn messages_for(
    ctx: &WorkerContext,
    encoder_provider: &str,
    modality: crate::Modality,
    job: &Job,
    raw: &[f32],
    inference_ms: f64,
    queue_ms: f64,
) -> Vec<OutMessage> {
    let (unit, norm) = unit_norm(raw);
    let labels = ctx.concepts.top_k(&unit, ctx.top_k, ctx.min_score);
    let now = ctx.clock.now();
    let envelope = EmbeddingEnvelope {
        v: ENVELOPE_VERSION,
        device: ctx.device.clone(),
        sensor: job.sensor.to_string(),
        modality,
        seq: job.seq,
        window: WindowInfo {
            start_utc_ns: job.start.utc_ns,
            end_utc_ns: job.end.utc_ns,
            sample_count: job.sample_count,
            gaps: job.gaps,
        },
        model: ModelInfo {
            name: ctx.model_name.clone(),
            sha256: ctx.model_sha256.clone(),
            provider: encoder_provider.to_string(),
            ort_version: ctx.ort_version.clone(),
        },
        embedding: EmbeddingField::encode(&unit, ctx.encoding),
        embedding_norm: norm,
        labels,
        latency: Latency {
            preprocess_ms: job.preprocess_ms,
            queue_ms,
            inference_ms,
            window_end_to_publish_ms: now.mono_ns.saturating_sub(job.end.mono_ns) as f64 / 1e6,
        },
    };
    let mut out = Vec::with_capacity(2);
    if let Ok(payload) = serde_json::to_vec(&envelope) {
        out.push(OutMessage {
            topic: ctx.topics.embedding(&job.sensor),
            payload,
            retain: false,
            qos: ctx.qos,
            timing: Some(MessageTiming {
                stats: Arc::clone(&job.stats),
                handed_at: Instant::now(),
                window_end_age: Duration::from_nanos(now.mono_ns.saturating_sub(job.end.mono_ns)),
            }),
        });
    }
    let labels = LabelsMessage {
        v: ENVELOPE_VERSION,
        sensor: &job.sensor,
        seq: job.seq,
        window_end_utc_ns: job.end.utc_ns,
        labels: &envelope.labels,
    };
    if let Ok(payload) = serde_json::to_vec(&labels) {
        out.push(OutMessage {
            topic: ctx.topics.labels(&job.sensor),
            payload,
            retain: false,
            qos: ctx.qos,
            timing: None,
        });
    }
    out
}

/// Starts the worker thread. It ends when every job sender is dropped and the queue is empty,
/// or when the publisher is gone.
///
/// # Errors
/// [`WorkerSpawnError`] when the OS refuses a thread.
pub fn spawn_worker(
    mut encoder: Encoder,
    ctx: WorkerContext,
    jobs: crossbeam_channel::Receiver<Job>,
    out: mpsc::Sender<OutMessage>,
) -> Result<JoinHandle<()>, WorkerSpawnError> {
    let modality = encoder.modality;
    std::thread::Builder::new()
        .name(format!("infer-{modality}"))
        .spawn(move || {
            let _span = tracing::info_span!("inference", %modality).entered();
            let provider = encoder.provider.as_str();
            // Fault injection for the watchdog test: the worker hangs after N windows.
            let stall_after: Option<u64> = std::env::var("EDGEBIND_FAULT_STALL_INFERENCE_AFTER")
                .ok()
                .and_then(|v| v.parse().ok());
            for (done, job) in jobs.iter().enumerate() {
                if stall_after.is_some_and(|n| done as u64 >= n) {
                    tracing::warn!("EDGEBIND_FAULT_STALL_INFERENCE_AFTER: inference worker hangs");
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(3600));
                    }
                }
                let queued = job.queued_at.elapsed();
                job.stats.record_latency(Stage::Queue, queued);
                let queue_ms = queued.as_secs_f64() * 1e3;
                let t0 = Instant::now();
                let raw = match encoder.run_one(&job.input) {
                    Ok(r) => r,
                    Err(e) => {
                        job.stats.add_drops(DropReason::InferenceError, 1);
                        tracing::warn!(sensor = %job.sensor, seq = job.seq, error = %e, "window dropped");
                        continue;
                    }
                };
                let inference = t0.elapsed();
                job.stats.record_latency(Stage::Inference, inference);
                let inference_ms = inference.as_secs_f64() * 1e3;
                for m in messages_for(&ctx, provider, modality, &job, &raw, inference_ms, queue_ms)
                {
                    if out.blocking_send(m).is_err() {
                        tracing::error!("publisher stopped; inference worker exits");
                        return;
                    }
                }
                job.stats.add_embedding();
            }
        })
        .map_err(|source| WorkerSpawnError { modality, source })
}
