//! The per-stream thread: source messages in, model inputs out of the stream's
//! [`Processor`](super::processor::Processor) (windows cut, or frames sampled, and
//! preprocessed), jobs queued for the modality's inference worker. It ends when its source
//! closes the sample queue.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::processor::{Processor, StreamCx, StreamLogs};
use super::QueueSender;
use crate::config::SkipUnchanged;
use crate::inference::worker::Job;
use crate::sources::SourceMessage;
use crate::telemetry::{Stage, StreamStats};

/// Starts the stream thread for sensor `name`.
///
/// # Errors
/// The OS error when no thread can be started.
pub fn spawn_stream(
    name: Arc<str>,
    mut processor: Box<dyn Processor>,
    messages: Receiver<SourceMessage>,
    jobs: QueueSender<Job>,
    stats: Arc<StreamStats>,
    skip: Option<SkipUnchanged>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("win-{name}"))
        .spawn(move || {
            let _span = tracing::info_span!("stream", sensor = %name).entered();
            let mut prepared = Vec::new();
            let mut logs = StreamLogs::default();
            for message in messages.iter() {
                let mut cx = StreamCx {
                    stats: &stats,
                    logs: &mut logs,
                    out: &mut prepared,
                };
                processor.process(message, &mut cx);
                for p in prepared.drain(..) {
                    stats.record_latency(
                        Stage::Preprocess,
                        Duration::from_secs_f64(p.meta.preprocess_ms.max(0.0) / 1e3),
                    );
                    let job = Job {
                        sensor: Arc::clone(&name),
                        stats: Arc::clone(&stats),
                        meta: p.meta,
                        input: p.input,
                        skip,
                        queued_at: Instant::now(),
                    };
                    if jobs.send(job).is_err() {
                        tracing::error!("inference worker stopped; stream exits");
                        return;
                    }
                }
            }
            tracing::debug!("source closed; stream done");
        })
}
