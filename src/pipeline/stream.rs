//! The per-stream thread: sample blocks in, windows cut, model inputs made, jobs queued for the
//! modality's inference worker. It ends when its source closes the sample queue.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::QueueSender;
use crate::inference::worker::Job;
use crate::preprocess::imu::ImuPreprocessor;
use crate::sources::SourceMessage;
use crate::telemetry::{DropReason, StreamStats};
use crate::window::{WindowSpec, Windower};

/// How a stream cuts windows.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    /// Window length.
    pub window_ms: u64,
    /// Hop.
    pub hop_ms: u64,
}

/// Starts the stream thread for the IMU sensor `name`.
///
/// # Errors
/// The OS error when no thread can be started.
pub fn spawn_imu_stream(
    name: Arc<str>,
    spec: StreamSpec,
    samples: Receiver<SourceMessage>,
    jobs: QueueSender<Job>,
    stats: Arc<StreamStats>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("win-{name}"))
        .spawn(move || {
            let _span = tracing::info_span!("stream", sensor = %name).entered();
            let mut windower: Option<Windower<[f32; 6]>> = None;
            let mut pre = ImuPreprocessor::new();
            for message in samples.iter() {
                let SourceMessage::Imu {
                    sample_rate_hz,
                    samples,
                } = message;
                let w = match &mut windower {
                    Some(w) if w.spec().sample_rate_hz == sample_rate_hz => w,
                    _ => match WindowSpec::from_ms(spec.window_ms, spec.hop_ms, sample_rate_hz) {
                        Ok(s) => windower.insert(Windower::new(s)),
                        Err(e) => {
                            stats.add_drops(DropReason::BadInput, samples.len() as u64);
                            tracing::warn!(error = %e, "samples dropped");
                            continue;
                        }
                    },
                };
                let mut windows = Vec::new();
                for s in samples {
                    w.push(s.seq, s.t, s.values, &mut windows);
                }
                for window in windows {
                    stats.add_window(window.gaps);
                    let t0 = Instant::now();
                    let input = match pre.tensor_from_samples(&window.samples) {
                        Ok(t) => t.into_dyn(),
                        Err(e) => {
                            stats.add_drops(DropReason::PreprocessError, 1);
                            tracing::warn!(seq = window.seq, error = %e, "window dropped");
                            continue;
                        }
                    };
                    let job = Job {
                        sensor: Arc::clone(&name),
                        stats: Arc::clone(&stats),
                        seq: window.seq,
                        start: window.start,
                        end: window.end,
                        sample_count: window.samples.len() as u64 - window.gaps,
                        gaps: window.gaps,
                        input,
                        preprocess_ms: t0.elapsed().as_secs_f64() * 1e3,
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
