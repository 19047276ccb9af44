//! The accepted range of every number in the configuration and of every numeric command-line
//! flag, each with what it means and why its bounds are where they are. `config::ranges` checks a
//! configuration against these, the CLI parses its flags with them, and the windower refuses a
//! geometry beyond them: nothing else decides whether a number is acceptable.
//!
//! Bounds are inclusive. A bound is either physical (a port is 16 bits, a cosine lies in [-1, 1]),
//! a protocol's (MQTT keep-alive is 16 bits, a packet at most 256 MiB), or a budget that keeps
//! memory, threads and waiting times finite on a Jetson-class device; the `why` of each says which.

use std::fmt;
use std::str::FromStr;

/// Samples a window may hold. The windower keeps every sample of a window (with its sequence
/// number and capture time, 48 bytes for an IMU sample, 32 for audio) until the window is cut, and
/// the cut window is copied once more: 2^21 samples are 100 MiB for an IMU, 64 MiB for audio, the
/// most a window may take on a device that also runs the models. At 400 Hz that is 87 min of IMU
/// data; at 48 kHz, 43 s of audio.
pub const MAX_WINDOW_SAMPLES: u64 = 1 << 21;

/// Samples between window starts. A hop holds no memory (samples between windows are skipped),
/// but sample positions are 64-bit counters: 2^40 keeps every position arithmetic far from overflow.
pub const MAX_HOP_SAMPLES: u64 = 1 << 40;

/// Bytes per character on a serial line with 8 data bits, a start and a stop bit.
pub const SERIAL_BITS_PER_BYTE: u64 = 10;

/// Bytes a WitMotion sensor sends per sample at least: one 11-byte acceleration frame and one
/// 11-byte angular-velocity frame.
pub const WITMOTION_BYTES_PER_SAMPLE: u64 = 22;

/// How a value is written back to the user, and what a key of this unit expects in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds (shown with minutes or hours when long).
    Ms,
    /// Seconds.
    S,
    /// Hertz.
    Hz,
    /// Frames per second.
    Fps,
    /// Bytes (shown with KiB, MiB, GiB when large).
    Bytes,
    /// Pixels.
    Px,
    /// Metres.
    M,
    /// Degrees Celsius.
    Celsius,
    /// Standard gravity.
    G,
    /// Degrees per second.
    Dps,
    /// Bits per second on a serial line.
    Baud,
    /// A count of things, named by the string (`threads`, `windows`, `frames`…).
    Count(&'static str),
    /// A plain number (a cosine, a level, an id).
    Plain,
}

impl Unit {
    fn suffix(self) -> &'static str {
        match self {
            Self::Ms => " ms",
            Self::S => " s",
            Self::Hz => " Hz",
            Self::Fps => " fps",
            Self::Bytes => " bytes",
            Self::Px => " px",
            Self::M => " m",
            Self::Celsius => " °C",
            Self::G => " g",
            Self::Dps => " °/s",
            Self::Baud => " baud",
            Self::Count(_) | Self::Plain => "",
        }
    }

    /// `v` with its unit, and a human reading when the raw number is hard to read
    /// (`600000 ms (10 min)`, `1073741824 bytes (1 GiB)`).
    #[must_use]
    pub fn show(self, v: f64) -> String {
        self.show_as(&number(v), v)
    }

    /// [`show`](Self::show) with the number already written (exact for 64-bit integers).
    fn show_as(self, number: &str, v: f64) -> String {
        let human = match self {
            Self::Ms if v >= 1000.0 => Some(duration_words(v / 1000.0)),
            Self::S if v >= 60.0 => Some(duration_words(v)),
            Self::Bytes if v >= 1024.0 => Some(bytes_words(v)),
            _ => None,
        };
        let count = match self {
            // Every count unit is a regular plural: `1 thread`, `2 threads`.
            Self::Count(things) if v == 1.0 => format!(" {}", things.trim_end_matches('s')),
            Self::Count(things) => format!(" {things}"),
            _ => String::new(),
        };
        match human {
            Some(h) => format!("{number}{}{count} ({h})", self.suffix()),
            None => format!("{number}{}{count}", self.suffix()),
        }
    }
}

/// A number as a person writes it: integers in full, fractions without noise, and extreme
/// magnitudes in scientific notation (never 300 zeros).
#[must_use]
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if v == v.trunc() && a < 1e16 {
        return format!("{v:.0}");
    }
    if (1e-4..1e16).contains(&a) {
        let s = format!("{v:.6}");
        return s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{v:e}")
}

fn duration_words(s: f64) -> String {
    let (v, unit) = if s < 60.0 {
        (s, "s")
    } else if s < 3600.0 {
        (s / 60.0, "min")
    } else if s < 86_400.0 {
        (s / 3600.0, "h")
    } else if s < 365.25 * 86_400.0 {
        (s / 86_400.0, "days")
    } else {
        (s / (365.25 * 86_400.0), "years")
    };
    format!("{} {unit}", round_words(v))
}

fn bytes_words(b: f64) -> String {
    let mut v = b;
    for unit in ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"] {
        if v < 1024.0 {
            return format!("{} {unit}", round_words(v));
        }
        v /= 1024.0;
    }
    format!("{} EiB", round_words(v))
}

/// One decimal when it matters: `10`, `2.9`, `1.5e6` for what no unit brings down.
fn round_words(v: f64) -> String {
    if v >= 1e6 {
        return format!("{v:.1e}");
    }
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// A number type a [`Limit`] can bound.
pub trait Number: Copy + PartialOrd + fmt::Display + FromStr {
    /// The value as f64, for showing it (exact for every bound used here).
    fn as_f64(self) -> f64;
    /// Whether the type holds whole numbers only.
    const WHOLE: bool;
}

macro_rules! number_impl {
    ($($t:ty => $whole:expr),*) => {$(
        impl Number for $t {
            #[allow(clippy::cast_precision_loss, clippy::cast_lossless)]
            fn as_f64(self) -> f64 {
                self as f64
            }
            const WHOLE: bool = $whole;
        }
    )*};
}
number_impl!(u8 => true, u16 => true, u32 => true, u64 => true, usize => true, f32 => false, f64 => false);

/// A value outside its [`Limit`], said in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutOfRange(pub String);

/// An inclusive range of accepted values, with the unit they are written in and the reason for
/// the bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limit<T> {
    /// Smallest accepted value.
    pub min: T,
    /// Largest accepted value.
    pub max: T,
    /// Unit of the value.
    pub unit: Unit,
    /// Why the bounds are where they are (said after a violation).
    pub why: &'static str,
}

impl<T: Number> Limit<T> {
    /// Whether `v` is accepted (NaN never is).
    pub fn contains(&self, v: T) -> bool {
        self.min <= v && v <= self.max
    }

    /// The range in words: `1 to 600000 ms (10 min)`.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{} to {}",
            number(self.min.as_f64()),
            self.unit.show(self.max.as_f64())
        )
    }

    /// `v` when accepted.
    ///
    /// # Errors
    /// [`OutOfRange`] saying which bound `v` passes, the range and why it is there.
    pub fn check(&self, v: T) -> Result<T, OutOfRange> {
        if self.contains(v) {
            return Ok(v);
        }
        let written = if T::WHOLE {
            v.to_string()
        } else {
            number(v.as_f64())
        };
        let shown = self.unit.show_as(&written, v.as_f64());
        let message = if v.as_f64().is_nan() {
            format!("{shown} is not a number; the range is {}", self.describe())
        } else if v < self.min {
            format!(
                "{shown} is less than the {} allowed: {}",
                self.unit.show(self.min.as_f64()),
                self.why
            )
        } else {
            format!(
                "{shown} is more than the {} allowed: {}",
                self.unit.show(self.max.as_f64()),
                self.why
            )
        };
        Err(OutOfRange(message))
    }

    /// Parses a command-line value and checks it.
    ///
    /// # Errors
    /// A one-line message: what was expected, or why the number is out of range.
    pub fn parse(&self, text: &str) -> Result<T, String> {
        let v: T = text.trim().parse().map_err(|_| {
            format!(
                "expected {} ({}), found {text:?}",
                self.unit_words(),
                self.describe()
            )
        })?;
        self.check(v).map_err(|e| e.0)
    }

    /// What a value of this limit is, in words: `a whole number of milliseconds`.
    #[must_use]
    pub fn unit_words(&self) -> String {
        let kind = if T::WHOLE {
            "a whole number"
        } else {
            "a number"
        };
        match unit_name(self.unit) {
            Some(name) => format!("{kind} of {name}"),
            None => kind.to_string(),
        }
    }
}

/// The plural name of a unit (`milliseconds`), or `None` for a plain number.
#[must_use]
pub fn unit_name(unit: Unit) -> Option<&'static str> {
    Some(match unit {
        Unit::Ms => "milliseconds",
        Unit::S => "seconds",
        Unit::Hz => "hertz",
        Unit::Fps => "frames per second",
        Unit::Bytes => "bytes",
        Unit::Px => "pixels",
        Unit::M => "metres",
        Unit::Celsius => "degrees Celsius",
        Unit::G => "g (9.81 m/s²)",
        Unit::Dps => "degrees per second",
        Unit::Baud => "bits per second",
        Unit::Count(things) => things,
        Unit::Plain => return None,
    })
}

const fn int(min: u64, max: u64, unit: Unit, why: &'static str) -> Limit<u64> {
    Limit {
        min,
        max,
        unit,
        why,
    }
}

const fn real(min: f64, max: f64, unit: Unit, why: &'static str) -> Limit<f64> {
    Limit {
        min,
        max,
        unit,
        why,
    }
}

// ---- ONNX Runtime -----------------------------------------------------------------------------

/// Intra-op threads per model: `runtime.intra_threads`, `embed --threads`, `bench
/// --intra-threads`. Depends on this machine: at most four per CPU core.
#[must_use]
pub fn intra_threads() -> Limit<u64> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u64;
    int(
        1,
        4 * cores,
        Unit::Count("threads"),
        "ONNX Runtime starts this many threads for every model; more than four per CPU core of \
         this machine only adds contention (and 10^8 never finishes starting)",
    )
}

/// `runtime.tensorrt.max_workspace_bytes`.
pub const TRT_WORKSPACE_BYTES: Limit<u64> = int(
    1 << 20,
    128 << 30,
    Unit::Bytes,
    "TensorRT needs some scratch memory to build an engine, and no Jetson or GPU has more than \
     128 GiB",
);

/// `runtime.tensorrt.device_id`, `runtime.cuda.device_id`.
pub const GPU_DEVICE_ID: Limit<u64> = int(
    0,
    63,
    Unit::Plain,
    "a CUDA device number counts the GPUs of this machine from 0",
);

/// `runtime.tensorrt.dla_core`.
pub const DLA_CORE: Limit<u64> = int(
    0,
    1,
    Unit::Plain,
    "Jetson Xavier and Orin modules have two DLA cores, 0 and 1",
);

/// `runtime.tensorrt.builder_optimization_level`.
pub const TRT_BUILDER_OPTIMIZATION_LEVEL: Limit<u64> = int(
    0,
    5,
    Unit::Plain,
    "TensorRT's builder levels run from 0 (fast build) to 5 (slowest build, best engine)",
);

/// `runtime.parity.min_cosine`, `concepts.min_score`.
pub const COSINE: Limit<f64> = real(
    -1.0,
    1.0,
    Unit::Plain,
    "a cosine similarity lies between -1 and 1",
);

// ---- Models, concepts -------------------------------------------------------------------------

/// `models.queue_capacity`: windows waiting for one model.
pub const INFERENCE_QUEUE: Limit<u64> = int(
    1,
    256,
    Unit::Count("windows"),
    "each waiting window holds its model input (up to 1.7 MB for 16 audio clips); a longer \
     backlog only adds latency",
);

/// `models.max_batch`, `bench --max-batch`.
pub const MAX_BATCH: Limit<u64> = int(
    1,
    64,
    Unit::Count("windows"),
    "a batch is made of windows already waiting, and larger batches stop paying off well before 64",
);

/// `models.max_batch_wait_ms`.
pub const MAX_BATCH_WAIT_MS: Limit<u64> = int(
    0,
    1000,
    Unit::Ms,
    "every window of a batch waits this long at most before it is embedded",
);

/// `concepts.top_k`.
pub const TOP_K: Limit<u64> = int(
    1,
    100,
    Unit::Count("concepts"),
    "each published window lists this many nearest concepts",
);

// ---- MQTT, outbox, metrics --------------------------------------------------------------------

/// `mqtt.keep_alive_s`.
pub const KEEP_ALIVE_S: Limit<u64> =
    int(1, 65_535, Unit::S, "MQTT carries the keep-alive in 16 bits");

/// `mqtt.max_packet_bytes`.
pub const MAX_PACKET_BYTES: Limit<u64> = int(
    32 << 10,
    268_435_455,
    Unit::Bytes,
    "an embedding message as JSON is ~20 KiB, and MQTT packets are at most 256 MiB",
);

/// `mqtt.queue_capacity`: messages waiting for the publisher.
pub const PUBLISH_QUEUE: Limit<u64> = int(
    1,
    4096,
    Unit::Count("messages"),
    "each waiting message is ~20 KiB; the outbox, not this queue, holds a backlog",
);

/// `mqtt.stats_interval_s` (0 = off).
pub const STATS_INTERVAL_S: Limit<u64> = int(
    0,
    86_400,
    Unit::S,
    "0 turns the periodic stats off; a period longer than a day would never be seen",
);

/// `mqtt.reconnect_max_backoff_ms` and every source's `reconnect_max_backoff_ms`.
pub const RECONNECT_MAX_BACKOFF_MS: Limit<u64> = int(
    100,
    3_600_000,
    Unit::Ms,
    "retries start at 100 ms and double up to this; past an hour a returning device or broker \
     would wait for nothing",
);

/// `outbox.max_bytes`.
pub const OUTBOX_MAX_BYTES: Limit<u64> = int(
    64 << 10,
    16 << 40,
    Unit::Bytes,
    "the outbox needs room for a few segments, and 16 TiB is more disk than an edge device has",
);

/// `outbox.fsync_interval_ms`.
pub const FSYNC_INTERVAL_MS: Limit<u64> = int(
    1,
    60_000,
    Unit::Ms,
    "a power loss loses at most this much of the outbox",
);

/// The port of `metrics.listen`.
pub const PORT: Limit<u64> = int(
    1,
    65_535,
    Unit::Plain,
    "a TCP port is 16 bits, and port 0 would pick a random one nobody can scrape",
);

// ---- Sources ----------------------------------------------------------------------------------

/// `sample_rate_hz` of `imu_replay` and `imu_serial`, `preprocess`/`embed --rate-hz`.
pub const IMU_SAMPLE_RATE_HZ: Limit<f64> = real(
    1.0,
    32_000.0,
    Unit::Hz,
    "the fastest MEMS IMUs stream at 32 kHz, and below 1 Hz a window holds almost nothing to embed",
);

/// Sample rate of an audio source: `alsa_audio.sample_rate_hz`, the rate a device negotiates,
/// the rate of a replayed WAV file.
pub const AUDIO_SAMPLE_RATE_HZ: Limit<u64> = int(
    8_000,
    384_000,
    Unit::Hz,
    "audio devices run from 8 kHz (telephony) to 384 kHz; ImageBind resamples to 16 kHz",
);

/// `alsa_audio.channels`.
pub const AUDIO_CHANNELS: Limit<u64> = int(
    1,
    32,
    Unit::Count("channels"),
    "channel 0 is embedded; 32 covers every capture interface",
);

/// `fps` of `thermal_replay` and `depth_replay`.
pub const REPLAY_FPS: Limit<f64> = real(
    0.1,
    1000.0,
    Unit::Fps,
    "frames are paced at this rate; slower than one frame every 10 s is a slide show, faster \
     than 1000 fps no camera delivers",
);

/// `realsense.fps`.
pub const REALSENSE_FPS: Limit<u64> = int(
    1,
    300,
    Unit::Fps,
    "RealSense depth modes run at 6 to 300 fps",
);

/// `width_px`/`height_px` of `realsense` and `v4l2_thermal`.
pub const FRAME_SIZE_PX: Limit<u64> = int(
    1,
    4096,
    Unit::Px,
    "no depth or thermal camera has frames wider or taller than 4096 pixels",
);

/// `v4l2_thermal.telemetry_rows`.
pub const TELEMETRY_ROWS: Limit<u64> = int(
    0,
    64,
    Unit::Count("rows"),
    "a Lepton sends 2 telemetry rows (3 for the Lepton 2); 64 leaves room for any other camera",
);

/// `window_ms` of IMU sources (at least one sample at the source's rate, and at most
/// [`MAX_WINDOW_SAMPLES`] samples).
pub const WINDOW_MS: Limit<u64> = int(
    1,
    600_000,
    Unit::Ms,
    "a window's samples are held in memory until it is cut, and its embedding is published only \
     then",
);

/// `window_ms` of audio sources (and at most [`MAX_WINDOW_SAMPLES`] samples at the rate).
pub const AUDIO_WINDOW_MS: Limit<u64> = int(
    25,
    600_000,
    Unit::Ms,
    "the audio front end needs one 25 ms frame, and a window's samples are held in memory until \
     it is cut",
);

/// `hop_ms` of IMU and audio sources (at least one sample at the rate). A hop longer than the
/// window is allowed: the samples between windows are skipped (a 5 s window every minute).
pub const HOP_MS: Limit<u64> = int(
    1,
    3_600_000,
    Unit::Ms,
    "a window starts every hop; more than an hour between windows is no longer a stream",
);

/// `interval_ms` of camera sources (0 = every frame).
pub const FRAME_INTERVAL_MS: Limit<u64> = int(
    0,
    3_600_000,
    Unit::Ms,
    "one frame is embedded per interval (0: every frame); more than an hour between frames is no \
     longer a stream",
);

/// `queue_capacity` of IMU and audio sources: sample blocks waiting for the windower.
pub const SAMPLE_QUEUE: Limit<u64> = int(
    1,
    4096,
    Unit::Count("blocks"),
    "a waiting block holds one capture period of a device (10-20 ms) or up to 1 s of a \
     replay, and the queue bounds what a stalled pipeline keeps in memory",
);

/// `queue_capacity` of camera sources: frames waiting for preprocessing.
pub const FRAME_QUEUE: Limit<u64> = int(
    1,
    64,
    Unit::Count("frames"),
    "a waiting frame holds its pixels (600 KiB at 640x480 16-bit); a camera's latest frame is the \
     one worth embedding",
);

/// `clips` of audio sources, `preprocess`/`embed --clips`.
pub const AUDIO_CLIPS: Limit<u64> = int(
    1,
    16,
    Unit::Count("clips"),
    "each clip is a 2 s spectrogram the audio model embeds; 16 clips are 16 times the work",
);

/// `imu_serial.baud_rate`.
pub const BAUD_RATE: Limit<u64> = int(
    50,
    4_000_000,
    Unit::Baud,
    "serial lines run from 50 baud to the 3-4 Mbit/s of USB-UART bridges",
);

/// `imu_serial.data_bits`.
pub const DATA_BITS: Limit<u64> = int(
    5,
    8,
    Unit::Count("bits"),
    "a serial character has 5 to 8 data bits",
);

/// `imu_serial.stop_bits`.
pub const STOP_BITS: Limit<u64> = int(
    1,
    2,
    Unit::Count("bits"),
    "a serial character ends with 1 or 2 stop bits",
);

/// `imu_serial.witmotion_acc_range_g`.
pub const WITMOTION_ACC_RANGE_G: Limit<f64> = real(
    1.0,
    64.0,
    Unit::G,
    "WitMotion accelerometers are set to ±2, 4, 8 or 16 g",
);

/// `imu_serial.witmotion_gyro_range_dps`.
pub const WITMOTION_GYRO_RANGE_DPS: Limit<f64> = real(
    100.0,
    4000.0,
    Unit::Dps,
    "WitMotion gyroscopes are set to ±250 to ±2000 °/s",
);

/// `alsa_audio.max_frames`.
pub const MAX_FRAMES: Limit<u64> = int(
    1,
    u64::MAX,
    Unit::Count("frames"),
    "leave it unset to capture forever",
);

// ---- Preprocessing ----------------------------------------------------------------------------

/// `preprocess.focal_px` of depth sources, `--focal-px`.
pub const FOCAL_PX: Limit<f64> = real(
    1.0,
    100_000.0,
    Unit::Px,
    "a depth camera's focal length is hundreds to a few thousand pixels",
);

/// `preprocess.baseline_m` of depth sources, `--baseline-m`.
pub const BASELINE_M: Limit<f64> = real(
    0.001,
    10.0,
    Unit::M,
    "stereo baselines run from millimetres to a few metres",
);

/// `preprocess.depth_units_m` of depth sources, `--depth-units-m`.
pub const DEPTH_UNITS_M: Limit<f64> = real(
    1e-6,
    1.0,
    Unit::M,
    "a raw depth unit is a micrometre to a metre (RealSense: 1 mm)",
);

/// `preprocess.min_depth_m`/`max_depth_m` of depth sources.
pub const DEPTH_M: Limit<f64> = real(
    0.001,
    1000.0,
    Unit::M,
    "depths are clipped to this range before they become disparities",
);

/// `preprocess.norm_min`/`norm_max` of depth sources (disparity, pixels).
pub const DISPARITY_NORM: Limit<f64> = real(
    1e-6,
    1e6,
    Unit::Plain,
    "disparities are clamped to this range and divided by its top",
);

/// `preprocess.normalize_mean` of depth and thermal sources.
pub const NORMALIZE_MEAN: Limit<f64> = real(
    -1e6,
    1e6,
    Unit::Plain,
    "the mean is subtracted from values of order 1",
);

/// `preprocess.normalize_std` of depth and thermal sources.
pub const NORMALIZE_STD: Limit<f64> = real(
    1e-9,
    1e6,
    Unit::Plain,
    "values are divided by the standard deviation, which must be positive",
);

/// `preprocess.agc_min_c`/`agc_max_c` of thermal sources, `--agc-min-c`/`--agc-max-c`.
pub const CELSIUS: Limit<f64> = real(
    -273.15,
    2000.0,
    Unit::Celsius,
    "nothing is colder than absolute zero, and thermal cameras stop well below 2000 °C",
);

// ---- Command line -----------------------------------------------------------------------------

/// `run --shutdown-timeout-s`.
pub const SHUTDOWN_TIMEOUT_S: Limit<u64> = int(
    1,
    3600,
    Unit::S,
    "a clean stop waits this long for the pipeline and the broker; systemd's own stop timeout \
     should be longer",
);

/// `bench --duration` and `--max-speed-duration`, in seconds.
pub const BENCH_DURATION_S: Limit<f64> = real(
    0.1,
    86_400.0,
    Unit::S,
    "a measurement needs some runs, and a day is longer than any useful bench",
);

/// Clap value parsers for the numeric flags, each the limit of the setting it mirrors.
pub mod flags {
    use super::*;

    /// `embed --threads`, `bench --intra-threads`.
    ///
    /// # Errors
    /// A one-line message.
    pub fn intra_threads(s: &str) -> Result<usize, String> {
        super::intra_threads().parse(s).map(|v| v as usize)
    }

    /// `preprocess`/`embed --rate-hz`.
    ///
    /// # Errors
    /// A one-line message.
    pub fn imu_rate_hz(s: &str) -> Result<f64, String> {
        IMU_SAMPLE_RATE_HZ.parse(s)
    }

    /// `preprocess`/`embed --clips`.
    ///
    /// # Errors
    /// A one-line message.
    pub fn clips(s: &str) -> Result<usize, String> {
        AUDIO_CLIPS.parse(s).map(|v| v as usize)
    }

    /// `--agc-min-c`, `--agc-max-c`.
    ///
    /// # Errors
    /// A one-line message.
    pub fn celsius(s: &str) -> Result<f64, String> {
        CELSIUS.parse(s)
    }

    /// `--focal-px`.
    ///
    /// # Errors
    /// A one-line message.
    pub fn focal_px(s: &str) -> Result<f64, String> {
        FOCAL_PX.parse(s)
    }

    /// `--baseline-m`.
    ///
    /// # Errors
    /// A one-line message.
    pub fn baseline_m(s: &str) -> Result<f64, String> {
        BASELINE_M.parse(s)
    }

    /// `--depth-units-m`.
    ///
    /// # Errors
    /// A one-line message.
    pub fn depth_units_m(s: &str) -> Result<f64, String> {
        DEPTH_UNITS_M.parse(s)
    }

    /// `run --shutdown-timeout-s`.
    ///
    /// # Errors
    /// A one-line message.
    pub fn shutdown_timeout_s(s: &str) -> Result<u64, String> {
        SHUTDOWN_TIMEOUT_S.parse(s)
    }

    /// `bench --max-batch`.
    ///
    /// # Errors
    /// A one-line message.
    pub fn max_batch(s: &str) -> Result<usize, String> {
        MAX_BATCH.parse(s).map(|v| v as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_people_write_them() {
        assert_eq!(number(600_000.0), "600000");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1e-300), "1e-300");
        assert_eq!(number(1e300), "1e300");
        assert_eq!(Unit::Ms.show(600_000.0), "600000 ms (10 min)");
        assert_eq!(
            Unit::Bytes.show(1_073_741_824.0),
            "1073741824 bytes (1 GiB)"
        );
        assert_eq!(Unit::Count("threads").show(8.0), "8 threads");
    }

    #[test]
    fn a_value_out_of_range_says_which_bound_the_range_and_why() {
        let e = WINDOW_MS.check(100_000_000_000).unwrap_err().0;
        assert!(
            e.starts_with("100000000000 ms (3.2 years) is more than the 600000 ms (10 min) allowed: a window's samples"),
            "{e}"
        );
        let e = IMU_SAMPLE_RATE_HZ.check(1e-300).unwrap_err().0;
        assert!(
            e.starts_with("1e-300 Hz is less than the 1 Hz allowed"),
            "{e}"
        );
        let e = COSINE.check(f64::NAN).unwrap_err().0;
        assert_eq!(e, "NaN is not a number; the range is -1 to 1");
        assert_eq!(WINDOW_MS.check(5000), Ok(5000));
    }

    #[test]
    fn flags_are_parsed_and_bounded_in_one_line() {
        assert_eq!(flags::imu_rate_hz("400"), Ok(400.0));
        let e = flags::imu_rate_hz("1e300").unwrap_err();
        assert!(
            e.starts_with("1e300 Hz is more than the 32000 Hz allowed"),
            "{e}"
        );
        let e = flags::intra_threads("100000").unwrap_err();
        assert!(e.starts_with("100000 threads is more than the "), "{e}");
        let e = flags::intra_threads("two").unwrap_err();
        assert!(
            e.starts_with("expected a whole number of threads (1 to "),
            "{e}"
        );
        assert!(!e.contains('\n') && !flags::clips("0").unwrap_err().contains('\n'));
    }
}
