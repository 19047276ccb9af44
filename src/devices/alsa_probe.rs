//! ALSA capture PCMs through cpal (feature `alsa`): the PCMs ALSA lists as hints.

use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{HostId, SampleFormat};

use super::alsa::{describe, AlsaPcm};
use crate::sources::alsa_audio::negotiate::{CaptureFormat, SampleKind, SupportedRange};

/// The source's mapping of cpal's formats (`sources::alsa_audio::device` keeps its own private).
fn kind(f: SampleFormat) -> SampleKind {
    match f {
        SampleFormat::I8 => SampleKind::I8,
        SampleFormat::I16 => SampleKind::I16,
        SampleFormat::I32 => SampleKind::I32,
        SampleFormat::U8 => SampleKind::U8,
        SampleFormat::U16 => SampleKind::U16,
        SampleFormat::F32 => SampleKind::F32,
        SampleFormat::F64 => SampleKind::F64,
        _ => SampleKind::Other,
    }
}

/// Every capture PCM ALSA lists.
///
/// # Errors
/// A one-line reason when ALSA cannot be asked.
pub fn probe() -> Result<Vec<AlsaPcm>, String> {
    let host = cpal::host_from_id(HostId::Alsa).map_err(|e| format!("ALSA unavailable: {e}"))?;
    let devices = host
        .input_devices()
        .map_err(|e| format!("cannot list ALSA capture devices: {e}"))?;
    let mut pcms = Vec::new();
    for d in devices {
        let Ok(id) = d.id() else { continue };
        let description = d.description().ok().map(|desc| desc.name().to_string());
        let (supported, error) = match d.supported_input_configs() {
            Ok(configs) => (
                configs
                    .map(|r| SupportedRange {
                        channels: r.channels(),
                        min_rate_hz: r.min_sample_rate(),
                        max_rate_hz: r.max_sample_rate(),
                        kind: kind(r.sample_format()),
                        format_name: r.sample_format().to_string(),
                    })
                    .collect(),
                None,
            ),
            Err(e) => (
                Vec::new(),
                Some(format!("cannot list its capture configurations: {e}")),
            ),
        };
        let default = d.default_input_config().ok().map(|c| CaptureFormat {
            channels: c.channels(),
            sample_rate_hz: c.sample_rate(),
            kind: kind(c.sample_format()),
        });
        pcms.push(describe(id.id(), description, &supported, default, error));
    }
    Ok(pcms)
}
