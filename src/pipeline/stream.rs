//! The per-stream thread: source messages in, windows cut (or frames sampled), model inputs made
//! by the modality's processor, jobs queued for the modality's inference worker. It ends when
//! its source closes the sample queue.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use ndarray::ArrayD;

use super::QueueSender;
use crate::config::{
    Clips, DepthCalibration, DepthPreprocessConfig, IntervalMs, SampleWindow,
    ThermalPreprocessConfig,
};
use crate::inference::worker::Job;
use crate::log_limited;
use crate::preprocess::audio::{AudioError, AudioParams, AudioPreprocessor};
use crate::preprocess::depth::{DepthError, DepthPreprocessor};
use crate::preprocess::imu::ImuPreprocessor;
use crate::preprocess::thermal::{ThermalError, ThermalPreprocessor};
use crate::sources::{Frame, FrameImage, SourceMessage};
use crate::telemetry::{DropReason, LogLimiter, Stage, StreamStats};
use crate::time::Timestamp;
use crate::window::{FrameSampler, Window, WindowError, WindowSpec, Windower};

/// A window turned into a model input.
#[derive(Debug)]
pub struct Prepared {
    /// Window number in the stream.
    pub seq: u64,
    /// First capture time covered.
    pub start: Timestamp,
    /// Capture time just after the window.
    pub end: Timestamp,
    /// Samples (or frames) present.
    pub sample_count: u64,
    /// Samples missing.
    pub gaps: u64,
    /// The model input without the batch dimension.
    pub input: ArrayD<f32>,
    /// Time spent preprocessing.
    pub preprocess_ms: f64,
}

/// One limiter per problem a stream may meet at every block, frame or window: logged once, then
/// summarised every few seconds (the drops are counted either way).
#[derive(Debug, Default)]
pub struct StreamLogs {
    /// Blocks the windower cannot take (a window shorter than one sample at the block's rate).
    window: LogLimiter,
    /// Frames of the wrong kind.
    frame: LogLimiter,
    /// Camera calibrations the depth preprocessing rejects.
    calibration: LogLimiter,
    /// Windows the preprocessing rejects.
    preprocess: LogLimiter,
}

/// Errors building a processor from its config.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// Audio parameters were rejected.
    #[error("sensor {sensor}: audio preprocessing: {source}")]
    Audio {
        /// The sensor.
        sensor: String,
        /// Why.
        source: AudioError,
    },
    /// Depth parameters were rejected.
    #[error("sensor {sensor}: depth preprocessing: {source}")]
    Depth {
        /// The sensor.
        sensor: String,
        /// Why.
        source: DepthError,
    },
    /// Thermal parameters were rejected.
    #[error("sensor {sensor}: thermal preprocessing: {source}")]
    Thermal {
        /// The sensor.
        sensor: String,
        /// Why.
        source: ThermalError,
    },
}

impl ProcessorError {
    /// What was refused, without the sensor's name (for a problem placed at its key).
    #[must_use]
    pub fn reason(&self) -> String {
        match self {
            Self::Audio { source, .. } => format!("audio preprocessing: {source}"),
            Self::Depth { source, .. } => format!("depth preprocessing: {source}"),
            Self::Thermal { source, .. } => format!("thermal preprocessing: {source}"),
        }
    }
}

/// Turns one stream's source messages into model inputs (pure apart from the clock reading
/// for the preprocessing time).
#[derive(Debug)]
pub enum Processor {
    /// IMU: slot-aligned windows → `[6, 2000]`.
    Imu {
        /// Window geometry in ms.
        window_ms: u64,
        /// Hop in ms.
        hop_ms: u64,
        /// Created at the first block, when the rate is known.
        windower: Option<Windower<[f32; 6]>>,
        /// The preprocessor.
        pre: ImuPreprocessor,
    },
    /// Audio: slot-aligned windows of channel 0 → `[clips, 1, 128, 204]`.
    Audio {
        /// Window length in ms.
        window_ms: u64,
        /// Hop in ms.
        hop_ms: u64,
        /// ImageBind clips per window.
        clips: usize,
        /// Created at the first block, when the rate is known.
        windower: Option<Windower<f32>>,
        /// The preprocessor (resampling kernels cached per input rate).
        pre: Box<AudioPreprocessor>,
    },
    /// Depth: one frame per interval → disparity → `[1, 224, 224]`.
    Depth {
        /// Frame picking.
        sampler: FrameSampler,
        /// The preprocessor.
        pre: Box<DepthPreprocessor>,
        /// The options it was built from (rebuilt when the camera's calibration changes).
        config: Box<DepthPreprocessConfig>,
        /// The camera calibration in effect, if a camera reported one.
        camera: Option<DepthCalibration>,
        /// Frame period, for the window's end time.
        period_ns: u64,
    },
    /// Thermal: one frame per interval → `[1, 224, 224]`.
    Thermal {
        /// Frame picking.
        sampler: FrameSampler,
        /// The preprocessor.
        pre: Box<ThermalPreprocessor>,
        /// Frame period, for the window's end time.
        period_ns: u64,
    },
}

impl Processor {
    /// IMU windows cut as `cut` says.
    #[must_use]
    pub fn imu(cut: SampleWindow) -> Self {
        Self::Imu {
            window_ms: cut.window_ms.get(),
            hop_ms: cut.hop_ms.get(),
            windower: None,
            pre: ImuPreprocessor::new(),
        }
    }

    /// Depth frames of sensor `sensor`, one per `interval_ms`, each standing for `period_ns`.
    ///
    /// # Errors
    /// [`ProcessorError::Depth`] when the preprocessing refuses `config`.
    pub fn depth(
        sensor: &str,
        interval_ms: IntervalMs,
        config: &DepthPreprocessConfig,
        period_ns: f64,
    ) -> Result<Self, ProcessorError> {
        Ok(Self::Depth {
            sampler: FrameSampler::new(interval_ms.get()),
            pre: Box::new(
                DepthPreprocessor::new(config.params(None)).map_err(|source| {
                    ProcessorError::Depth {
                        sensor: sensor.to_string(),
                        source,
                    }
                })?,
            ),
            config: Box::new(config.clone()),
            camera: None,
            period_ns: period_ns.round() as u64,
        })
    }

    /// Thermal frames of sensor `sensor`, one per `interval_ms`, each standing for `period_ns`.
    ///
    /// # Errors
    /// [`ProcessorError::Thermal`] when the preprocessing refuses `config`.
    pub fn thermal(
        sensor: &str,
        interval_ms: IntervalMs,
        config: &ThermalPreprocessConfig,
        period_ns: f64,
    ) -> Result<Self, ProcessorError> {
        Ok(Self::Thermal {
            sampler: FrameSampler::new(interval_ms.get()),
            pre: Box::new(ThermalPreprocessor::new(config.params()).map_err(|source| {
                ProcessorError::Thermal {
                    sensor: sensor.to_string(),
                    source,
                }
            })?),
            period_ns: period_ns.round() as u64,
        })
    }

    /// Audio windows of sensor `sensor` cut as `cut` says, `clips` ImageBind clips each.
    ///
    /// # Errors
    /// [`ProcessorError::Audio`] when the preprocessing refuses its parameters.
    pub fn audio(sensor: &str, cut: SampleWindow, clips: Clips) -> Result<Self, ProcessorError> {
        Ok(Self::Audio {
            window_ms: cut.window_ms.get(),
            hop_ms: cut.hop_ms.get(),
            clips: clips.n(),
            windower: None,
            pre: Box::new(
                AudioPreprocessor::new(AudioParams::default()).map_err(|source| {
                    ProcessorError::Audio {
                        sensor: sensor.to_string(),
                        source,
                    }
                })?,
            ),
        })
    }

    /// Processes one message; appends the model inputs it completes to `out`, counts drops and
    /// logs them through `logs`.
    pub fn process(
        &mut self,
        message: SourceMessage,
        stats: &StreamStats,
        logs: &mut StreamLogs,
        out: &mut Vec<Prepared>,
    ) {
        match (self, message) {
            (
                Self::Imu {
                    window_ms,
                    hop_ms,
                    windower,
                    pre,
                },
                SourceMessage::Imu {
                    sample_rate_hz,
                    samples,
                },
            ) => {
                let w = match windower_at(windower, *window_ms, *hop_ms, sample_rate_hz) {
                    Ok(w) => w,
                    Err(e) => {
                        stats.add_drops(DropReason::BadInput, samples.len() as u64);
                        log_limited!(logs.window, tracing::Level::WARN,
                            "samples dropped (counted as bad_input)", error = %e);
                        return;
                    }
                };
                let mut windows = Vec::new();
                for s in samples {
                    w.push(s.seq, s.t, s.values, &mut windows);
                }
                for window in windows {
                    stats.add_window(window.gaps);
                    prepare(
                        stats,
                        &mut logs.preprocess,
                        out,
                        Placement::of(&window),
                        || pre.tensor_from_samples(&window.samples),
                    );
                }
            }
            (
                Self::Thermal {
                    sampler,
                    pre,
                    period_ns,
                },
                SourceMessage::Frame(Frame { t, image, .. }),
            ) => {
                let Some(seq) = sampler.offer(t.mono_ns) else {
                    stats.add_drops(DropReason::FrameSkipped, 1);
                    return;
                };
                stats.add_window(0);
                prepare(
                    stats,
                    &mut logs.preprocess,
                    out,
                    Placement::frame(seq, t, *period_ns),
                    || match &image {
                        FrameImage::U8(a) => pre.tensor_u8(a.view()),
                        FrameImage::U16(a) => pre.tensor_u16(a.view()),
                    },
                );
            }
            (
                Self::Audio {
                    window_ms,
                    hop_ms,
                    clips,
                    windower,
                    pre,
                },
                SourceMessage::Audio {
                    sample_rate_hz,
                    channels,
                    first_seq,
                    first_t,
                    interleaved,
                },
            ) => {
                let rate = f64::from(sample_rate_hz);
                let w = match windower_at(windower, *window_ms, *hop_ms, rate) {
                    Ok(w) => w,
                    Err(e) => {
                        stats.add_drops(DropReason::BadInput, 1);
                        log_limited!(logs.window, tracing::Level::WARN,
                            "audio block dropped (counted as bad_input)", error = %e);
                        return;
                    }
                };
                let channels = usize::from(channels.max(1));
                let rate_hz = u64::from(sample_rate_hz.max(1));
                let mut windows = Vec::new();
                // ImageBind uses channel 0 only (kaldi fbank, channel=-1 → 0). Sample times in
                // integer nanoseconds, rounded half up: exact, and per sample cheaper than
                // f64::round, a libm call on baseline x86-64.
                let channel_0 = interleaved
                    .chunks_exact(channels)
                    .zip(0u64..)
                    .map(|(frame, k)| {
                        let t = first_t.plus_ns((k * 1_000_000_000 + rate_hz / 2) / rate_hz);
                        (t, frame[0])
                    });
                w.push_block(first_seq, channel_0, &mut windows);
                for window in windows {
                    stats.add_window(window.gaps);
                    prepare(
                        stats,
                        &mut logs.preprocess,
                        out,
                        Placement::of(&window),
                        || pre.window_tensor(&window.samples, sample_rate_hz, *clips),
                    );
                }
            }
            (
                Self::Depth {
                    sampler,
                    pre,
                    config,
                    camera,
                    period_ns,
                },
                SourceMessage::Frame(Frame {
                    t,
                    image,
                    calibration,
                    ..
                }),
            ) => {
                let FrameImage::U16(raw) = &image else {
                    stats.add_drops(DropReason::BadInput, 1);
                    log_limited!(
                        logs.frame,
                        tracing::Level::WARN,
                        "depth frame is not 16-bit; dropped (counted as bad_input)"
                    );
                    return;
                };
                let Some(seq) = sampler.offer(t.mono_ns) else {
                    stats.add_drops(DropReason::FrameSkipped, 1);
                    return;
                };
                if calibration.is_some() && calibration != *camera {
                    // Config values override the camera's (`DepthPreprocessConfig::params`).
                    match DepthPreprocessor::new(config.params(calibration)) {
                        Ok(p) => {
                            **pre = p;
                            *camera = calibration;
                        }
                        Err(e) => {
                            stats.add_drops(DropReason::PreprocessError, 1);
                            if let Some(c) = calibration {
                                log_limited!(logs.calibration, tracing::Level::WARN,
                                    "camera calibration rejected; frame dropped (once per interval, counted as preprocess_error)",
                                    focal_px = c.focal_px, baseline_m = c.baseline_m,
                                    depth_units_m = c.depth_units_m, error = %e);
                            }
                            return;
                        }
                    }
                }
                stats.add_window(0);
                prepare(
                    stats,
                    &mut logs.preprocess,
                    out,
                    Placement::frame(seq, t, *period_ns),
                    || pre.tensor(raw.view()),
                );
            }
            (_, _) => {
                stats.add_drops(DropReason::BadInput, 1);
                log_limited!(
                    logs.frame,
                    tracing::Level::WARN,
                    "message of another modality dropped (counted as bad_input)"
                );
            }
        }
    }
}

/// The window a tensor belongs to.
struct Placement {
    seq: u64,
    start: Timestamp,
    end: Timestamp,
    sample_count: u64,
    gaps: u64,
}

impl Placement {
    fn of<T>(w: &Window<T>) -> Self {
        Self {
            seq: w.seq,
            start: w.start,
            end: w.end,
            sample_count: w.samples.len() as u64 - w.gaps,
            gaps: w.gaps,
        }
    }

    /// A camera frame stands for one frame period.
    fn frame(seq: u64, t: Timestamp, period_ns: u64) -> Self {
        Self {
            seq,
            start: t,
            end: t.plus_ns(period_ns),
            sample_count: 1,
            gaps: 0,
        }
    }
}

/// Runs one window's preprocessing, timed: the tensor goes to `out`; a rejection is counted as
/// `preprocess_error` and logged through `log` (the stream goes on).
fn prepare<D: ndarray::Dimension, E: std::fmt::Display>(
    stats: &StreamStats,
    log: &mut LogLimiter,
    out: &mut Vec<Prepared>,
    at: Placement,
    run: impl FnOnce() -> Result<ndarray::Array<f32, D>, E>,
) {
    let t0 = Instant::now();
    match run() {
        Ok(tensor) => out.push(Prepared {
            seq: at.seq,
            start: at.start,
            end: at.end,
            sample_count: at.sample_count,
            gaps: at.gaps,
            input: tensor.into_dyn(),
            preprocess_ms: t0.elapsed().as_secs_f64() * 1e3,
        }),
        Err(e) => {
            stats.add_drops(DropReason::PreprocessError, 1);
            log_limited!(log, tracing::Level::WARN,
                "window dropped by preprocessing (counted as preprocess_error)",
                seq = at.seq, error = %e);
        }
    }
}

/// The windower for `rate_hz`, made anew when the rate changes (a device reopened at another
/// rate).
fn windower_at<T: Copy>(
    windower: &mut Option<Windower<T>>,
    window_ms: u64,
    hop_ms: u64,
    rate_hz: f64,
) -> Result<&mut Windower<T>, WindowError> {
    let spec = WindowSpec::from_ms(window_ms, hop_ms, rate_hz)?;
    if windower.as_ref().is_some_and(|w| w.spec() != spec) {
        *windower = None;
    }
    Ok(windower.get_or_insert_with(|| Windower::new(spec)))
}

/// Starts the stream thread for sensor `name`.
///
/// # Errors
/// The OS error when no thread can be started.
pub fn spawn_stream(
    name: Arc<str>,
    mut processor: Processor,
    messages: Receiver<SourceMessage>,
    jobs: QueueSender<Job>,
    stats: Arc<StreamStats>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("win-{name}"))
        .spawn(move || {
            let _span = tracing::info_span!("stream", sensor = %name).entered();
            let mut prepared = Vec::new();
            let mut logs = StreamLogs::default();
            for message in messages.iter() {
                processor.process(message, &stats, &mut logs, &mut prepared);
                for p in prepared.drain(..) {
                    stats.record_latency(
                        Stage::Preprocess,
                        Duration::from_secs_f64(p.preprocess_ms.max(0.0) / 1e3),
                    );
                    let job = Job {
                        sensor: Arc::clone(&name),
                        stats: Arc::clone(&stats),
                        seq: p.seq,
                        start: p.start,
                        end: p.end,
                        sample_count: p.sample_count,
                        gaps: p.gaps,
                        input: p.input,
                        preprocess_ms: p.preprocess_ms,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::preprocess::depth::DepthParams;
    use crate::sources::realsense::RealsenseConfig;
    use crate::sources::Frame;
    use crate::time::Clock;

    fn realsense(preprocess: &str) -> Processor {
        let c: RealsenseConfig = toml::from_str(&format!(
            "name = \"depth\"\ninterval_ms = 0\n[preprocess]\n{preprocess}"
        ))
        .unwrap();
        Processor::depth("depth", c.cut.interval_ms, &c.settings.preprocess, 33e6).unwrap()
    }

    fn frame(calibration: Option<DepthCalibration>, k: u64) -> SourceMessage {
        SourceMessage::Frame(Frame {
            seq: k,
            t: Clock::new().at_mono_ns(k * 33_000_000),
            image: FrameImage::U16(ndarray::Array2::from_elem((48, 64), 1000)),
            calibration,
        })
    }

    fn params(p: &Processor) -> DepthParams {
        match p {
            Processor::Depth { pre, .. } => *pre.params(),
            other => panic!("not depth: {other:?}"),
        }
    }

    #[test]
    fn a_block_the_windower_cannot_take_is_counted_every_time_and_logged_once() {
        let c: crate::sources::imu_replay::ImuReplayConfig =
            toml::from_str("name = \"imu\"\npath = \"x.csv\"").unwrap();
        let mut p = Processor::imu(c.cut);
        let stats = StreamStats::default();
        let mut logs = StreamLogs::default();
        let mut out = Vec::new();
        let clock = Clock::new();
        // 0.1 Hz: the 1 s hop is shorter than one sample.
        for k in 0..100u64 {
            let samples = (0..10)
                .map(|i| crate::sources::ImuSample {
                    seq: k * 10 + i,
                    t: clock.at_mono_ns((k * 10 + i) * 10_000_000_000),
                    values: [0.0; 6],
                })
                .collect();
            let message = SourceMessage::Imu {
                sample_rate_hz: 0.1,
                samples,
            };
            p.process(message, &stats, &mut logs, &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(stats.drops(DropReason::BadInput), 1000);
        // The first block was logged; the other 99 wait for the next line's count.
        assert_eq!(logs.window.suppressed(), 99);
    }

    #[test]
    fn the_camera_calibration_is_used_where_the_config_sets_none() {
        let mut p = realsense("focal_px = 600.0\n");
        let stats = StreamStats::default();
        let mut logs = StreamLogs::default();
        let mut out = Vec::new();
        let camera = DepthCalibration {
            focal_px: 383.5,
            baseline_m: 0.05,
            depth_units_m: 0.0001,
        };
        p.process(frame(Some(camera), 0), &stats, &mut logs, &mut out);
        assert_eq!(out.len(), 1);
        let got = params(&p);
        assert_eq!(
            (got.focal_px, got.baseline_m, got.depth_units_m),
            (600.0, 0.05, 0.0001)
        );
        // A changed calibration (another camera after a reconnect) is taken up.
        let other = DepthCalibration {
            baseline_m: 0.095,
            ..camera
        };
        p.process(frame(Some(other), 1), &stats, &mut logs, &mut out);
        assert_eq!(params(&p).baseline_m, 0.095);
        // Frames without calibration keep what is in effect.
        p.process(frame(None, 2), &stats, &mut logs, &mut out);
        assert_eq!(params(&p).baseline_m, 0.095);
        assert_eq!(out.len(), 3);
    }
}
