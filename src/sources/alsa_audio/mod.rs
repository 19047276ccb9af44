//! Microphones through ALSA, captured with cpal.
//!
//! - [`negotiate`]: pure choice of rate, channels and sample format from what the device
//!   supports; conversion of every format to f32 in [-1, 1].
//! - [`capture`]: the capture loop generic over the device: a never-blocking hand-off from the
//!   device's callback thread, frame numbering and capture times ([`capture::Timeline`]),
//!   overruns counted, reopen with backoff.
//! - `device` (feature `alsa`): the real device, cpal on ALSA.
//!
//! The device is opened and its configuration negotiated when the source is built, so a
//! misspelt device or an impossible format stops the daemon's start with the list of what
//! exists. Once running, a device that disappears is reopened with backoff. The config variant
//! exists and validates without the feature; building the source then fails with a clear
//! message.

pub mod capture;
pub mod config;
#[cfg(feature = "alsa")]
pub mod device;
pub mod negotiate;

use std::time::Duration;

use self::capture::CaptureSettings;
pub use self::config::{AlsaAudioConfig, AlsaAudioSettings, AudioSampleFormat};
use self::negotiate::{CaptureFormat, FormatRequest, NegotiationError, SampleKind};
use super::{Source, SourceContext};

/// A stream silent this long is closed and reopened.
const STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Problems building an `alsa_audio` source.
#[derive(Debug, thiserror::Error)]
pub enum AlsaAudioError {
    /// The binary has no ALSA support.
    #[error(
        "source {name}: edgebind was built without the alsa feature (cargo build --features alsa)"
    )]
    Unsupported {
        /// The source.
        name: String,
    },
    /// No PCM of that name.
    #[error("source {name}: ALSA device {device:?} not found; capture devices: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NotFound {
        /// The source.
        name: String,
        /// The configured device.
        device: String,
        /// What exists.
        available: Vec<String>,
    },
    /// The device cannot deliver the configured format.
    #[error("source {name}: ALSA device {device:?} {source}")]
    Negotiation {
        /// The source.
        name: String,
        /// The device.
        device: String,
        /// What it supports.
        source: NegotiationError,
    },
    /// The device exists but cannot be used.
    #[error("source {name}: ALSA device {device:?}: {message}")]
    Device {
        /// The source.
        name: String,
        /// The device.
        device: String,
        /// Why.
        message: String,
    },
}

/// The config's request.
#[must_use]
pub fn format_request(c: &AlsaAudioSettings) -> FormatRequest {
    FormatRequest {
        sample_rate_hz: c.sample_rate_hz,
        channels: c.channels,
        kind: c.sample_format.map(SampleKind::from_config),
    }
}

/// An ALSA microphone, its format negotiated, ready to run.
#[derive(Debug)]
pub struct AlsaAudio {
    device: String,
    format: CaptureFormat,
    settings: CaptureSettings,
}

impl AlsaAudio {
    /// Finds the device and negotiates its configuration.
    ///
    /// # Errors
    /// [`AlsaAudioError::Unsupported`] without the `alsa` feature; otherwise a device that does
    /// not exist (with the list of capture devices), a format it cannot deliver (with what it
    /// supports), or a device that cannot be queried.
    pub fn new(c: &AlsaAudioConfig) -> Result<Self, AlsaAudioError> {
        let format = probe(c.name(), &c.settings)?;
        Ok(Self {
            device: c.settings.device.clone(),
            format,
            settings: CaptureSettings {
                nominal_rate_hz: format.sample_rate_hz,
                block_queue: c.common.queue.capacity.get(),
                max_backoff: c.settings.reconnect_max_backoff_ms.duration(),
                stall_timeout: STALL_TIMEOUT,
                max_frames: c.settings.max_frames,
            },
        })
    }

    /// The negotiated format.
    #[must_use]
    pub fn format(&self) -> CaptureFormat {
        self.format
    }
}

#[cfg(feature = "alsa")]
fn probe(name: &str, c: &AlsaAudioSettings) -> Result<CaptureFormat, AlsaAudioError> {
    device::probe(name, &c.device, format_request(c))
}

#[cfg(not(feature = "alsa"))]
fn probe(name: &str, _c: &AlsaAudioSettings) -> Result<CaptureFormat, AlsaAudioError> {
    Err(AlsaAudioError::Unsupported {
        name: name.to_string(),
    })
}

impl Source for AlsaAudio {
    fn sample_rate_hz(&self) -> f64 {
        f64::from(self.format.sample_rate_hz)
    }

    fn run(self: Box<Self>, ctx: SourceContext) {
        let _span = tracing::info_span!("source", sensor = %ctx.name).entered();
        run(&self, &ctx);
    }
}

#[cfg(feature = "alsa")]
fn run(source: &AlsaAudio, ctx: &SourceContext) {
    capture::run_capture(
        |blocks, faults| device::CpalStream::open(&source.device, source.format, blocks, faults),
        &source.settings,
        ctx,
    );
}

/// Without the feature nothing can be captured ([`AlsaAudio::new`] refuses first).
#[cfg(not(feature = "alsa"))]
fn run(source: &AlsaAudio, ctx: &SourceContext) {
    capture::run_capture(
        |_, _| {
            Err::<NoDevice, _>(capture::DeviceError {
                device: source.device.clone(),
                message: "edgebind was built without the alsa feature".into(),
            })
        },
        &source.settings,
        ctx,
    );
}

/// The device of a build without ALSA: none can exist.
#[cfg(not(feature = "alsa"))]
#[derive(Debug)]
enum NoDevice {}

#[cfg(not(feature = "alsa"))]
impl capture::AudioDevice for NoDevice {
    fn format(&self) -> CaptureFormat {
        match *self {}
    }

    fn describe(&self) -> String {
        match *self {}
    }
}
