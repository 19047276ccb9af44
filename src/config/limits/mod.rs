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

mod values;

pub use values::*;

/// Clap value parsers for the numeric flags, each the limit of the setting it mirrors.
pub mod flags;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
