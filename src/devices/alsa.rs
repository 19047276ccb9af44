//! ALSA capture PCMs: rates, channels and sample formats each supports, and an `alsa_audio`
//! block with the configuration the source's own negotiation would open.

use serde::Serialize;

use super::block::{BlockSpec, SourceBlock};
use crate::sources::alsa_audio::negotiate::{
    self, CaptureFormat, FormatRequest, SampleKind, SupportedRange,
};

/// One capture PCM.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlsaPcm {
    /// The PCM name to configure (`hw:CARD=Device,DEV=0`, `default`).
    pub pcm: String,
    /// ALSA's description of it.
    pub description: Option<String>,
    /// Rate ranges, `[min, max]` in Hz.
    pub rates_hz: Vec<[u32; 2]>,
    /// Channel counts.
    pub channels: Vec<u16>,
    /// Sample formats (cpal's names: `i16`, `i32`, `f32`, …).
    pub formats: Vec<String>,
    /// The device's default configuration (`2 ch 48000 Hz i16`).
    pub default: Option<String>,
    /// What `edgebind run` would open (`1 ch 16000 Hz i16`).
    pub opens: Option<String>,
    /// Why there is no block.
    pub note: Option<String>,
    /// The `[[sources]]` block.
    pub source: Option<SourceBlock>,
    #[serde(skip)]
    pub(crate) spec: Option<BlockSpec>,
}

/// Lists a PCM from what it reports (`supported` empty when its configurations cannot be read;
/// `error` says why).
#[must_use]
pub fn describe(
    pcm: &str,
    description: Option<String>,
    supported: &[SupportedRange],
    default: Option<CaptureFormat>,
    error: Option<String>,
) -> AlsaPcm {
    let mut rates_hz: Vec<[u32; 2]> = supported
        .iter()
        .map(|r| [r.min_rate_hz, r.max_rate_hz])
        .collect();
    rates_hz.sort_unstable();
    rates_hz.dedup();
    let mut channels: Vec<u16> = supported.iter().map(|r| r.channels).collect();
    channels.sort_unstable();
    channels.dedup();
    let mut formats: Vec<String> = Vec::new();
    for r in supported {
        if !formats.contains(&r.format_name) {
            formats.push(r.format_name.clone());
        }
    }
    let (opens, spec, note) = match (
        error,
        negotiate::negotiate(FormatRequest::default(), default, supported),
    ) {
        (Some(e), _) => (None, None, Some(e)),
        // ALSA lists its `null` device as a capture PCM: it captures silence.
        (None, Ok(f)) if pcm == "null" => (
            Some(f.to_string()),
            None,
            Some("ALSA's null device: silence, not a microphone".into()),
        ),
        (None, Ok(f)) => (
            Some(f.to_string()),
            Some(block(pcm, description.as_deref(), f)),
            None,
        ),
        (None, Err(e)) => (
            None,
            None,
            Some(format!(
                "no configuration edgebind can capture: it supports {}",
                list(&e.supported)
            )),
        ),
    };
    AlsaPcm {
        pcm: pcm.to_string(),
        description,
        rates_hz,
        channels,
        formats,
        default: default.map(|d| d.to_string()),
        opens,
        note,
        source: None,
        spec,
    }
}

fn list(supported: &[SupportedRange]) -> String {
    if supported.is_empty() {
        return "nothing".into();
    }
    supported
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn block(pcm: &str, description: Option<&str>, f: CaptureFormat) -> BlockSpec {
    let mut spec = BlockSpec::new("alsa_audio", &format!("mic-{pcm}"));
    if let Some(d) = description {
        spec = spec.note(d);
    }
    spec = spec
        .field("device", pcm)
        .field("sample_rate_hz", i64::from(f.sample_rate_hz))
        .field("channels", i64::from(f.channels));
    // The config names only the formats worth asking for; others are negotiated when left out.
    match f.kind {
        SampleKind::I16 => spec.field("sample_format", "i16"),
        SampleKind::I32 => spec.field("sample_format", "i32"),
        SampleKind::F32 => spec.field("sample_format", "f32"),
        _ => spec,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::SourceConfig;
    use crate::sources::alsa_audio::AudioSampleFormat;

    fn range(channels: u16, min: u32, max: u32, kind: SampleKind, name: &str) -> SupportedRange {
        SupportedRange {
            channels,
            min_rate_hz: min,
            max_rate_hz: max,
            kind,
            format_name: name.into(),
        }
    }

    #[test]
    fn a_usb_microphone_is_listed_with_the_configuration_run_would_open() {
        let supported = [
            range(1, 8000, 48000, SampleKind::I16, "i16"),
            range(2, 8000, 48000, SampleKind::I16, "i16"),
            range(1, 8000, 48000, SampleKind::I32, "i32"),
        ];
        let default = CaptureFormat {
            channels: 2,
            sample_rate_hz: 44_100,
            kind: SampleKind::I16,
        };
        let pcm = describe(
            "hw:CARD=Device,DEV=0",
            Some("USB PnP Sound Device".into()),
            &supported,
            Some(default),
            None,
        );
        assert_eq!(pcm.rates_hz, vec![[8000, 48000]]);
        assert_eq!(pcm.channels, vec![1, 2]);
        assert_eq!(pcm.formats, vec!["i16", "i32"]);
        assert_eq!(pcm.default.as_deref(), Some("2 ch 44100 Hz i16"));
        assert_eq!(pcm.opens.as_deref(), Some("2 ch 44100 Hz i16"));
        let text = pcm.spec.as_ref().unwrap().render("mic", &[]);
        let SourceConfig::AlsaAudio(c) = crate::devices::block::parse_first_source(&text) else {
            panic!("{text}")
        };
        let c = c.settings;
        assert_eq!(c.device, "hw:CARD=Device,DEV=0");
        assert_eq!((c.sample_rate_hz, c.channels), (Some(44_100), Some(2)));
        assert_eq!(c.sample_format, Some(AudioSampleFormat::I16));
    }

    #[test]
    fn a_pcm_without_a_usable_format_says_why_and_gets_no_block() {
        let pcm = describe(
            "hw:0,0",
            None,
            &[range(2, 48000, 48000, SampleKind::Other, "i24")],
            None,
            None,
        );
        assert!(pcm.spec.is_none());
        assert_eq!(
            pcm.note.as_deref(),
            Some("no configuration edgebind can capture: it supports 2 ch 48000 Hz i24")
        );
        let null = describe(
            "null",
            None,
            &[range(2, 1, 192_000, SampleKind::F32, "f32")],
            None,
            None,
        );
        assert!(null.spec.is_none());
        assert_eq!(
            null.note.as_deref(),
            Some("ALSA's null device: silence, not a microphone")
        );
        let busy = describe(
            "hw:1,0",
            None,
            &[],
            None,
            Some("cannot list its capture configurations: busy".into()),
        );
        assert!(busy.spec.is_none());
        assert_eq!(
            busy.note.as_deref(),
            Some("cannot list its capture configurations: busy")
        );
    }
}
