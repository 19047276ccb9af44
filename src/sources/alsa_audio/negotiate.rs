//! Pure choice of the capture configuration (rate, channels, sample format) from what a device
//! supports, and the conversion of captured samples to f32 in [-1, 1]. No ALSA here: the device
//! layer translates cpal's types into these.

use std::fmt;

use super::config::AudioSampleFormat;

/// A sample format a device may offer, as far as the daemon can convert it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleKind {
    /// Signed 8-bit.
    I8,
    /// Signed 16-bit.
    I16,
    /// Signed 32-bit.
    I32,
    /// Unsigned 8-bit (offset binary).
    U8,
    /// Unsigned 16-bit (offset binary).
    U16,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// Anything else (24-bit packed, 64-bit integers, …): listed, never chosen.
    Other,
}

impl SampleKind {
    /// The kind the config names.
    #[must_use]
    pub fn from_config(f: AudioSampleFormat) -> Self {
        match f {
            AudioSampleFormat::I16 => Self::I16,
            AudioSampleFormat::I32 => Self::I32,
            AudioSampleFormat::F32 => Self::F32,
        }
    }

    /// Whether captured samples of this kind can be converted.
    #[must_use]
    pub fn convertible(self) -> bool {
        self != Self::Other
    }

    /// Preference when the config leaves the format open and the device's default cannot be
    /// used: lower is better (f32 and i16 are what microphones deliver natively).
    fn rank(self) -> u8 {
        match self {
            Self::F32 => 0,
            Self::I16 => 1,
            Self::I32 => 2,
            Self::F64 => 3,
            Self::U16 => 4,
            Self::I8 => 5,
            Self::U8 => 6,
            Self::Other => u8::MAX,
        }
    }
}

impl fmt::Display for SampleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::I8 => "i8",
            Self::I16 => "i16",
            Self::I32 => "i32",
            Self::U8 => "u8",
            Self::U16 => "u16",
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::Other => "other",
        })
    }
}

/// One range of configurations a device supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportedRange {
    /// Channels.
    pub channels: u16,
    /// Lowest rate.
    pub min_rate_hz: u32,
    /// Highest rate.
    pub max_rate_hz: u32,
    /// Sample format (as cpal names it when it is [`SampleKind::Other`]).
    pub kind: SampleKind,
    /// cpal's name of the format, for messages.
    pub format_name: String,
}

impl SupportedRange {
    fn contains(&self, rate_hz: u32) -> bool {
        (self.min_rate_hz..=self.max_rate_hz).contains(&rate_hz)
    }
}

impl fmt::Display for SupportedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min_rate_hz == self.max_rate_hz {
            write!(
                f,
                "{} ch {} Hz {}",
                self.channels, self.min_rate_hz, self.format_name
            )
        } else {
            write!(
                f,
                "{} ch {}-{} Hz {}",
                self.channels, self.min_rate_hz, self.max_rate_hz, self.format_name
            )
        }
    }
}

/// A concrete capture configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureFormat {
    /// Channels per frame.
    pub channels: u16,
    /// Frames per second.
    pub sample_rate_hz: u32,
    /// Sample format.
    pub kind: SampleKind,
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ch {} Hz {}",
            self.channels, self.sample_rate_hz, self.kind
        )
    }
}

/// What the config asks for (unset = the device decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatRequest {
    /// Rate.
    pub sample_rate_hz: Option<u32>,
    /// Channels.
    pub channels: Option<u16>,
    /// Format.
    pub kind: Option<SampleKind>,
}

impl fmt::Display for FormatRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(c) = self.channels {
            parts.push(format!("{c} ch"));
        }
        if let Some(r) = self.sample_rate_hz {
            parts.push(format!("{r} Hz"));
        }
        if let Some(k) = self.kind {
            parts.push(k.to_string());
        }
        if parts.is_empty() {
            f.write_str("any convertible format")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

/// No supported configuration satisfies the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("does not support {request}; it supports: {}", list(.supported))]
pub struct NegotiationError {
    /// What was asked.
    pub request: FormatRequest,
    /// What the device offers.
    pub supported: Vec<SupportedRange>,
}

fn list(supported: &[SupportedRange]) -> String {
    if supported.is_empty() {
        return "nothing (no input configuration)".into();
    }
    supported
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the configuration to open: the device's default where the request leaves a choice
/// open and the default fits, otherwise the closest supported one.
///
/// # Errors
/// [`NegotiationError`] listing every supported range when nothing fits.
pub fn negotiate(
    request: FormatRequest,
    default: Option<CaptureFormat>,
    supported: &[SupportedRange],
) -> Result<CaptureFormat, NegotiationError> {
    let fail = || NegotiationError {
        request,
        supported: supported.to_vec(),
    };
    // The default, when it satisfies every requested field and is listed.
    if let Some(d) = default {
        let fits = request.channels.is_none_or(|c| c == d.channels)
            && request.sample_rate_hz.is_none_or(|r| r == d.sample_rate_hz)
            && request.kind.is_none_or(|k| k == d.kind)
            && d.kind.convertible()
            && supported.iter().any(|r| {
                r.channels == d.channels && r.kind == d.kind && r.contains(d.sample_rate_hz)
            });
        if fits {
            return Ok(d);
        }
    }
    let candidates = supported.iter().filter(|r| {
        r.kind.convertible()
            && request.channels.is_none_or(|c| c == r.channels)
            && request.kind.is_none_or(|k| k == r.kind)
            && request.sample_rate_hz.is_none_or(|hz| r.contains(hz))
    });
    // Closest to the default: its channels, its format, its rate; then the better format, then
    // fewer channels (channel 0 is all that is embedded).
    let best = candidates.min_by_key(|r| {
        (
            default.is_none_or(|d| d.channels != r.channels),
            default.is_none_or(|d| d.kind != r.kind),
            default.is_none_or(|d| !r.contains(d.sample_rate_hz)),
            r.kind.rank(),
            r.channels,
        )
    });
    let r = best.ok_or_else(fail)?;
    let rate = request.sample_rate_hz.unwrap_or_else(|| {
        // ImageBind resamples to 16 kHz: a device's default, else 16 kHz, else the nearest end.
        default
            .map(|d| d.sample_rate_hz)
            .filter(|hz| r.contains(*hz))
            .unwrap_or_else(|| 16_000u32.clamp(r.min_rate_hz, r.max_rate_hz))
    });
    Ok(CaptureFormat {
        channels: r.channels,
        sample_rate_hz: rate,
        kind: r.kind,
    })
}

/// Converts signed 16-bit samples as torchaudio does (`/ 32768`).
pub fn extend_i16(out: &mut Vec<f32>, samples: &[i16]) {
    out.extend(samples.iter().map(|&s| f32::from(s) / 32_768.0));
}

/// Converts signed 32-bit samples (`/ 2^31`).
pub fn extend_i32(out: &mut Vec<f32>, samples: &[i32]) {
    out.extend(
        samples
            .iter()
            .map(|&s| (f64::from(s) / 2_147_483_648.0) as f32),
    );
}

/// Converts signed 8-bit samples (`/ 128`).
pub fn extend_i8(out: &mut Vec<f32>, samples: &[i8]) {
    out.extend(samples.iter().map(|&s| f32::from(s) / 128.0));
}

/// Converts unsigned 8-bit (offset binary) samples.
pub fn extend_u8(out: &mut Vec<f32>, samples: &[u8]) {
    out.extend(samples.iter().map(|&s| (f32::from(s) - 128.0) / 128.0));
}

/// Converts unsigned 16-bit (offset binary) samples.
pub fn extend_u16(out: &mut Vec<f32>, samples: &[u16]) {
    out.extend(
        samples
            .iter()
            .map(|&s| (f32::from(s) - 32_768.0) / 32_768.0),
    );
}

/// Copies float samples, clamped to [-1, 1] (NaN becomes 0).
pub fn extend_f32(out: &mut Vec<f32>, samples: &[f32]) {
    out.extend(samples.iter().map(|&s| clamp_unit(s)));
}

/// Converts 64-bit float samples, clamped to [-1, 1].
pub fn extend_f64(out: &mut Vec<f32>, samples: &[f64]) {
    out.extend(samples.iter().map(|&s| clamp_unit(s as f32)));
}

fn clamp_unit(s: f32) -> f32 {
    if s.is_nan() {
        0.0
    } else {
        s.clamp(-1.0, 1.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn range(channels: u16, min: u32, max: u32, kind: SampleKind) -> SupportedRange {
        SupportedRange {
            channels,
            min_rate_hz: min,
            max_rate_hz: max,
            kind,
            format_name: kind.to_string(),
        }
    }

    fn usb_mic() -> Vec<SupportedRange> {
        vec![
            range(1, 8_000, 48_000, SampleKind::I16),
            range(2, 8_000, 48_000, SampleKind::I16),
            range(2, 8_000, 48_000, SampleKind::Other),
        ]
    }

    const DEFAULT: CaptureFormat = CaptureFormat {
        channels: 2,
        sample_rate_hz: 48_000,
        kind: SampleKind::I16,
    };

    #[test]
    fn an_open_request_takes_the_devices_default() {
        let got = negotiate(FormatRequest::default(), Some(DEFAULT), &usb_mic()).unwrap();
        assert_eq!(got, DEFAULT);
    }

    #[test]
    fn requested_fields_are_honoured_and_the_rest_follow_the_default() {
        let got = negotiate(
            FormatRequest {
                sample_rate_hz: Some(16_000),
                channels: Some(1),
                kind: None,
            },
            Some(DEFAULT),
            &usb_mic(),
        )
        .unwrap();
        assert_eq!(
            got,
            CaptureFormat {
                channels: 1,
                sample_rate_hz: 16_000,
                kind: SampleKind::I16
            }
        );
    }

    #[test]
    fn without_a_default_16_khz_and_the_better_format_are_preferred() {
        let supported = vec![
            range(1, 44_100, 96_000, SampleKind::I32),
            range(1, 8_000, 48_000, SampleKind::F32),
        ];
        let got = negotiate(FormatRequest::default(), None, &supported).unwrap();
        assert_eq!(got.kind, SampleKind::F32);
        assert_eq!(got.sample_rate_hz, 16_000);
        let i32_only = negotiate(FormatRequest::default(), None, &supported[..1]).unwrap();
        assert_eq!(i32_only.sample_rate_hz, 44_100);
    }

    #[test]
    fn an_unsupported_request_lists_every_supported_range() {
        let err = negotiate(
            FormatRequest {
                sample_rate_hz: Some(96_000),
                channels: None,
                kind: Some(SampleKind::F32),
            },
            Some(DEFAULT),
            &usb_mic(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "does not support 96000 Hz f32; it supports: 1 ch 8000-48000 Hz i16, \
             2 ch 8000-48000 Hz i16, 2 ch 8000-48000 Hz other"
        );
    }

    #[test]
    fn formats_that_cannot_be_converted_are_never_chosen() {
        let supported = vec![range(2, 48_000, 48_000, SampleKind::Other)];
        let default = CaptureFormat {
            kind: SampleKind::Other,
            ..DEFAULT
        };
        assert!(negotiate(FormatRequest::default(), Some(default), &supported).is_err());
    }

    #[test]
    fn samples_are_scaled_to_the_unit_range_like_torchaudio() {
        let mut out = Vec::new();
        extend_i16(&mut out, &[i16::MIN, 0, 16_384, i16::MAX]);
        assert_eq!(out, vec![-1.0, 0.0, 0.5, 32_767.0 / 32_768.0]);
        out.clear();
        extend_i32(&mut out, &[i32::MIN, 1 << 30]);
        assert_eq!(out, vec![-1.0, 0.5]);
        out.clear();
        extend_u8(&mut out, &[0, 128, 192]);
        assert_eq!(out, vec![-1.0, 0.0, 0.5]);
        out.clear();
        extend_u16(&mut out, &[0, 32_768]);
        assert_eq!(out, vec![-1.0, 0.0]);
        out.clear();
        extend_i8(&mut out, &[-128, 64]);
        assert_eq!(out, vec![-1.0, 0.5]);
        out.clear();
        extend_f32(&mut out, &[2.0, -0.25, f32::NAN]);
        assert_eq!(out, vec![1.0, -0.25, 0.0]);
        out.clear();
        extend_f64(&mut out, &[-3.0, 0.125]);
        assert_eq!(out, vec![-1.0, 0.125]);
    }
}
