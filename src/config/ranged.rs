//! Validated values: numbers within their range of [`limits`](super::limits) and sensor names.
//! Each type's `Deserialize` enforces its rule (an error there is a problem at the value's
//! line and column, like a type error), so a value that reaches the rest of edgebind is usable as
//! it is: nothing downstream checks or clamps it again.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::limits::{self, Limit, OutOfRange};

/// A whole number within a fixed range of [`limits`](super::limits).
macro_rules! ranged {
    ($(#[$doc:meta])* $name:ident: $limit:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// The accepted range.
            pub const LIMIT: &'static Limit<u64> = &$limit;

            /// `v` when within the range.
            ///
            /// # Errors
            /// [`OutOfRange`] saying which bound `v` passes and why it is there.
            pub fn new(v: u64) -> Result<Self, OutOfRange> {
                Self::LIMIT.check(v).map(Self)
            }

            /// A value known to be in range: a default of this crate (held to the range by a
            /// unit test).
            pub(crate) const fn trusted(v: u64) -> Self {
                Self(v)
            }

            /// The value.
            #[must_use]
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::new(u64::deserialize(d)?).map_err(D::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

ranged! {
    /// `hop_ms` of a windowed source: at least 1 ms.
    HopMs: limits::HOP_MS
}

ranged! {
    /// `interval_ms` of a camera source (0: every frame).
    IntervalMs: limits::FRAME_INTERVAL_MS
}

ranged! {
    /// `reconnect_max_backoff_ms`: at least the first retry's 100 ms.
    BackoffMs: limits::RECONNECT_MAX_BACKOFF_MS
}

impl BackoffMs {
    /// The default of every device source: reopen at least every 5 s.
    pub const DEVICE_DEFAULT: Self = Self::trusted(5_000);

    /// The default of a device source.
    #[must_use]
    pub fn device_default() -> Self {
        Self::DEVICE_DEFAULT
    }

    /// The longest wait between reopen attempts.
    #[must_use]
    pub fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

ranged! {
    /// `data_bits` of a serial line: 5 to 8.
    DataBits: limits::DATA_BITS
}

ranged! {
    /// `stop_bits` of a serial line: 1 or 2.
    StopBits: limits::STOP_BITS
}

ranged! {
    /// `fps` of a RealSense stream: at least 1.
    RealsenseFps: limits::REALSENSE_FPS
}

ranged! {
    /// `width_px`/`height_px` of a camera stream: 1 to 4096 pixels.
    FrameSidePx: limits::FRAME_SIZE_PX
}

impl FrameSidePx {
    /// The side in pixels (at most 4096, so it fits any integer type).
    #[must_use]
    pub const fn px(self) -> u32 {
        self.0 as u32
    }
}

impl RealsenseFps {
    /// The rate (at most 300).
    #[must_use]
    pub const fn fps(self) -> u32 {
        self.0 as u32
    }
}

/// `sample_rate_hz` of an IMU source: a positive rate a MEMS IMU can run at.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct ImuRateHz(f64);

impl ImuRateHz {
    /// The accepted range.
    pub const LIMIT: &'static Limit<f64> = &limits::IMU_SAMPLE_RATE_HZ;

    /// `v` when within the range (never NaN).
    ///
    /// # Errors
    /// [`OutOfRange`] saying which bound `v` passes and why it is there.
    pub fn new(v: f64) -> Result<Self, OutOfRange> {
        Self::LIMIT.check(v).map(Self)
    }

    /// The rate.
    #[must_use]
    pub const fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for ImuRateHz {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(f64::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// `window_ms` of a windowed source, within its modality's range (at least 1 ms, 25 ms for
/// audio; the modality table says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowMs(u64);

impl WindowMs {
    /// `v` when within `limit`.
    ///
    /// # Errors
    /// [`OutOfRange`] saying which bound `v` passes and why it is there.
    pub fn new(v: u64, limit: &Limit<u64>) -> Result<Self, OutOfRange> {
        limit.check(v).map(Self)
    }

    /// A default of the modality table (held to its range by a unit test).
    pub(crate) const fn trusted(v: u64) -> Self {
        Self(v)
    }

    /// The value.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// `v` within `limit` (whose minimum is at least 1) as a count.
fn count_within(v: u64, limit: &Limit<u64>) -> Result<NonZeroUsize, OutOfRange> {
    let v = limit.check(v)?;
    usize::try_from(v)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| OutOfRange(format!("{v} cannot be counted on this machine")))
}

/// `queue_capacity` of a source: items waiting for its stream, within the range of its kind of
/// item (sample blocks or frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueCapacity(NonZeroUsize);

impl QueueCapacity {
    /// `v` when within `limit`.
    ///
    /// # Errors
    /// [`OutOfRange`] saying which bound `v` passes and why it is there.
    pub fn new(v: u64, limit: &Limit<u64>) -> Result<Self, OutOfRange> {
        count_within(v, limit).map(Self)
    }

    /// A default of a source kind (held to its range by a unit test).
    pub(crate) const fn trusted(v: NonZeroUsize) -> Self {
        Self(v)
    }

    /// The capacity.
    #[must_use]
    pub const fn get(self) -> NonZeroUsize {
        self.0
    }
}

/// A count of at least one within a fixed range of [`limits`](super::limits).
macro_rules! counted {
    ($(#[$doc:meta])* $name:ident: $limit:expr, default $default:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(NonZeroUsize);

        impl $name {
            /// The accepted range.
            #[must_use]
            pub fn limit() -> Limit<u64> {
                $limit
            }

            /// `v` when within the range.
            ///
            /// # Errors
            /// [`OutOfRange`] saying which bound `v` passes and why it is there.
            pub fn new(v: u64) -> Result<Self, OutOfRange> {
                count_within(v, &Self::limit()).map(Self)
            }

            /// The count.
            #[must_use]
            pub const fn get(self) -> NonZeroUsize {
                self.0
            }

            /// The count as a plain number.
            #[must_use]
            pub const fn n(self) -> usize {
                self.0.get()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self($default)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::new(u64::deserialize(d)?).map_err(D::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

const fn nonzero(v: usize) -> NonZeroUsize {
    match NonZeroUsize::new(v) {
        Some(n) => n,
        None => NonZeroUsize::MIN,
    }
}

counted! {
    /// `clips` of an audio source: ImageBind clips per window.
    Clips: limits::AUDIO_CLIPS, default nonzero(1)
}

counted! {
    /// `models.max_batch`: most windows one session run embeds.
    MaxBatch: limits::MAX_BATCH, default nonzero(4)
}

counted! {
    /// `models.queue_capacity`: windows waiting for one model.
    InferenceQueue: limits::INFERENCE_QUEUE, default nonzero(8)
}

counted! {
    /// `mqtt.queue_capacity`: messages waiting for the publisher.
    PublishQueue: limits::PUBLISH_QUEUE, default nonzero(256)
}

counted! {
    /// `runtime.intra_threads`: threads ONNX Runtime may use inside one operator (at most four
    /// per CPU core of this machine).
    IntraThreads: limits::intra_threads(), default nonzero(1)
}

/// A sensor's name (topic segment, metrics label): 1 to 64 letters, digits, `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SensorName(String);

impl SensorName {
    /// `name` when it is a usable sensor name.
    ///
    /// # Errors
    /// What is wrong with it, in words.
    pub fn new(name: &str) -> Result<Self, String> {
        if is_name(name) {
            Ok(Self(name.to_string()))
        } else {
            Err(format!(
                "{name:?} must be 1-64 characters of letters, digits, '-' or '_'"
            ))
        }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` is 1-64 characters of letters, digits, `-` or `_` (sensor names, the device id).
#[must_use]
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl<'de> Deserialize<'de> for SensorName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::new(&name).map_err(D::Error::custom)
    }
}

impl fmt::Display for SensorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SensorName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Keys {
        backoff: BackoffMs,
        batch: MaxBatch,
        name: SensorName,
    }

    #[test]
    fn values_out_of_range_are_refused_when_read_with_the_limits_words() {
        let ok: Keys = toml::from_str("backoff = 100\nbatch = 64\nname = \"imu-1_a\"").unwrap();
        assert_eq!(ok.backoff.duration(), Duration::from_millis(100));
        assert_eq!(ok.batch.n(), 64);
        assert_eq!(ok.name.as_str(), "imu-1_a");
        let e = toml::from_str::<Keys>("backoff = 10\nbatch = 1\nname = \"a\"").unwrap_err();
        assert!(
            e.message()
                .starts_with("10 ms is less than the 100 ms allowed"),
            "{e}"
        );
        let e = toml::from_str::<Keys>("backoff = 100\nbatch = 0\nname = \"a\"").unwrap_err();
        assert!(
            e.message()
                .starts_with("0 windows is less than the 1 window allowed"),
            "{e}"
        );
        let e = toml::from_str::<Keys>("backoff = 100\nbatch = 1\nname = \"my imu\"").unwrap_err();
        assert_eq!(
            e.message(),
            "\"my imu\" must be 1-64 characters of letters, digits, '-' or '_'"
        );
    }

    #[test]
    fn defaults_are_within_their_ranges() {
        for (what, v, limit) in [
            ("clips", Clips::default().n(), Clips::limit()),
            ("max_batch", MaxBatch::default().n(), MaxBatch::limit()),
            (
                "models.queue_capacity",
                InferenceQueue::default().n(),
                InferenceQueue::limit(),
            ),
            (
                "mqtt.queue_capacity",
                PublishQueue::default().n(),
                PublishQueue::limit(),
            ),
            (
                "intra_threads",
                IntraThreads::default().n(),
                IntraThreads::limit(),
            ),
        ] {
            assert!(limit.contains(v as u64), "{what}");
        }
    }
}
