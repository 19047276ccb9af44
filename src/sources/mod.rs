//! Sensor sources. Each source is built (files opened, devices checked) before anything runs,
//! then runs on its own named thread, stamping capture times and pushing sample blocks into a
//! bounded queue. A source that ends (a non-looping replay) closes its queue.

pub mod alsa_audio;
pub mod audio_replay;
pub mod frame_replay;
pub mod imu_replay;
pub mod imu_serial;
#[cfg(feature = "realsense")]
pub mod realsense;
pub mod reconnect;
pub mod thermal_decode;
pub mod v4l2_thermal;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceConfig};
use crate::pipeline::QueueSender;
use crate::telemetry::StreamStats;
use crate::time::{Clock, Timestamp};

/// One IMU sample in SI units: acc xyz (m/s², gravity included), gyro xyz (rad/s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImuSample {
    /// Position in the stream (0, 1, 2, …), counting samples the device should have sent.
    pub seq: u64,
    /// Capture time.
    pub t: Timestamp,
    /// `[acc_x, acc_y, acc_z, gyro_x, gyro_y, gyro_z]`.
    pub values: [f32; 6],
}

/// The pixels of one camera frame.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameImage {
    /// 8-bit intensity.
    U8(ndarray::Array2<u8>),
    /// 16-bit values (thermal: raw or radiometric; depth: depth units).
    U16(ndarray::Array2<u16>),
}

impl FrameImage {
    /// `(height, width)` in pixels.
    #[must_use]
    pub fn size_px(&self) -> (usize, usize) {
        match self {
            Self::U8(a) => a.dim(),
            Self::U16(a) => a.dim(),
        }
    }
}

/// One camera frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Frame number from the device (a jump means frames were lost before us).
    pub seq: u64,
    /// Capture time.
    pub t: Timestamp,
    /// The pixels.
    pub image: FrameImage,
    /// Depth calibration the camera reports (depth cameras only); the stream rebuilds its
    /// preprocessing when it changes.
    pub calibration: Option<crate::pipeline::stream::DepthCalibration>,
}

/// What a source sends to its stream's windower.
#[derive(Debug, Clone)]
pub enum SourceMessage {
    /// Consecutive IMU samples.
    Imu {
        /// Nominal rate of the device.
        sample_rate_hz: f64,
        /// The samples, in capture order.
        samples: Vec<ImuSample>,
    },
    /// A camera frame.
    Frame(Frame),
    /// Consecutive audio frames (one sample per channel each).
    Audio {
        /// Sample rate of the device.
        sample_rate_hz: u32,
        /// Channels per frame.
        channels: u16,
        /// Stream position of the first frame (a jump means frames were lost).
        first_seq: u64,
        /// Capture time of the first frame.
        first_t: Timestamp,
        /// Interleaved samples in [-1, 1].
        interleaved: Vec<f32>,
    },
}

/// Errors building a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The IMU recording could not be used.
    #[error(transparent)]
    ImuReplay(#[from] imu_replay::ImuFileError),
    /// The WAV recording could not be used.
    #[error(transparent)]
    AudioReplay(#[from] audio_replay::WavError),
    /// The frame recording could not be used.
    #[error(transparent)]
    FrameReplay(#[from] frame_replay::FrameFileError),
    /// The serial IMU settings could not be used.
    #[error(transparent)]
    ImuSerial(#[from] imu_serial::ImuSerialError),
    /// The V4L2 camera settings could not be used (or V4L2 support is not built in).
    #[error(transparent)]
    V4l2Thermal(#[from] v4l2_thermal::V4l2ThermalError),
    /// The RealSense camera or recording could not be used.
    #[cfg(feature = "realsense")]
    #[error(transparent)]
    Realsense(#[from] realsense::RealsenseError),
    /// The source needs a Cargo feature this build does not have.
    #[error("source {name}: edgebind was built without the {feature} feature")]
    NotBuilt {
        /// The source.
        name: String,
        /// The missing feature.
        feature: &'static str,
    },
    /// The ALSA microphone could not be used (or ALSA support is not built in).
    #[error(transparent)]
    AlsaAudio(#[from] alsa_audio::AlsaAudioError),
    /// The thread could not be started.
    #[error("source {name}: cannot start its thread: {source}")]
    Spawn {
        /// The source.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What a running source needs.
#[derive(Debug)]
pub struct SourceContext {
    /// The sensor name.
    pub name: String,
    /// Maps capture instants to timestamps.
    pub clock: Clock,
    /// Cancelled when the daemon stops.
    pub cancel: CancellationToken,
    /// The stream's counters.
    pub stats: Arc<StreamStats>,
    /// Where sample blocks go.
    pub out: QueueSender<SourceMessage>,
}

/// How long one wait of a source on its queue or its clock lasts before it looks at cancellation.
const CANCEL_SLICE: Duration = Duration::from_millis(50);

impl SourceContext {
    /// Hands `m` to the windower, under the queue's policy. Under `block` it waits in slices, so
    /// a stalled pipeline never hides cancellation. `false` when the daemon is stopping or the
    /// windower is gone: the source should return.
    #[must_use]
    pub fn send(&self, m: SourceMessage) -> bool {
        let mut pending = Some(m);
        while let Some(m) = pending.take() {
            if self.cancel.is_cancelled() {
                return false;
            }
            match self.out.send_timeout_keep(m, CANCEL_SLICE) {
                Ok(back) => pending = back,
                Err(_) => return false,
            }
        }
        true
    }

    /// Sleeps until `deadline` unless cancelled first; `false` when cancelled.
    #[must_use]
    pub fn sleep_until(&self, deadline: std::time::Instant) -> bool {
        loop {
            if self.cancel.is_cancelled() {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::sleep((deadline - now).min(CANCEL_SLICE));
        }
    }
}

/// A source ready to run.
pub trait Source: Send + std::fmt::Debug + 'static {
    /// Nominal sample rate of the device.
    fn sample_rate_hz(&self) -> f64;
    /// Runs until cancelled or (for finite recordings) until the end.
    fn run(self: Box<Self>, ctx: SourceContext);
}

/// Builds the source a config entry describes (opens and checks its file or device).
///
/// # Errors
/// A [`SourceError`] naming the source and what is wrong.
pub fn build(config: &Config, source: &SourceConfig) -> Result<Box<dyn Source>, SourceError> {
    match source {
        SourceConfig::ImuReplay(c) => Ok(Box::new(imu_replay::ImuReplay::open(config, c)?)),
        SourceConfig::ThermalReplay(c) => Ok(Box::new(frame_replay::FrameReplay::open(
            &config.resolve(&c.path),
            c.fps,
            c.speed,
            c.looping,
        )?)),
        SourceConfig::AudioReplay(c) => Ok(Box::new(audio_replay::AudioReplay::open(
            &config.resolve(&c.path),
            c.speed,
            c.looping,
        )?)),
        SourceConfig::DepthReplay(c) => Ok(Box::new(frame_replay::FrameReplay::open(
            &config.resolve(&c.path),
            c.fps,
            c.speed,
            c.looping,
        )?)),
        SourceConfig::ImuSerial(c) => Ok(Box::new(imu_serial::ImuSerial::new(config, c)?)),
        SourceConfig::V4l2Thermal(c) => Ok(Box::new(v4l2_thermal::V4l2Thermal::new(c)?)),
        #[cfg(feature = "realsense")]
        SourceConfig::Realsense(c) => Ok(Box::new(realsense::Realsense::new(config, c)?)),
        #[cfg(not(feature = "realsense"))]
        SourceConfig::Realsense(c) => Err(SourceError::NotBuilt {
            name: c.name.clone(),
            feature: "realsense",
        }),
        SourceConfig::AlsaAudio(c) => Ok(Box::new(alsa_audio::AlsaAudio::new(c)?)),
    }
}

/// Starts a built source on a thread named after it.
///
/// # Errors
/// [`SourceError::Spawn`] when the OS refuses a thread.
pub fn spawn(source: Box<dyn Source>, ctx: SourceContext) -> Result<JoinHandle<()>, SourceError> {
    let name = ctx.name.clone();
    std::thread::Builder::new()
        .name(format!("src-{name}"))
        .spawn(move || source.run(ctx))
        .map_err(|source| SourceError::Spawn { name, source })
}
