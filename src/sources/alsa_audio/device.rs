//! The real device: cpal on ALSA. Devices are looked up by their ALSA PCM name as a cpal
//! device id (`alsa:<pcm>`); the stream's callback converts each period to f32 and hands it to
//! the [`BlockSink`] without blocking.

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{BufferSize, Data, DeviceId, HostId, InputCallbackInfo, SampleFormat, StreamConfig};

use super::capture::{AudioDevice, BlockSink, DeviceError, Fault, FaultSink};
use super::negotiate::{self, CaptureFormat, FormatRequest, SampleKind, SupportedRange};
use super::AlsaAudioError;

/// Our kind of a cpal format.
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

/// cpal's format of our kind.
fn cpal_format(k: SampleKind) -> Option<SampleFormat> {
    Some(match k {
        SampleKind::I8 => SampleFormat::I8,
        SampleKind::I16 => SampleFormat::I16,
        SampleKind::I32 => SampleFormat::I32,
        SampleKind::U8 => SampleFormat::U8,
        SampleKind::U16 => SampleFormat::U16,
        SampleKind::F32 => SampleFormat::F32,
        SampleKind::F64 => SampleFormat::F64,
        SampleKind::Other => return None,
    })
}

fn host() -> Result<cpal::Host, String> {
    cpal::host_from_id(HostId::Alsa).map_err(|e| format!("ALSA host unavailable: {e}"))
}

/// The device named `pcm`, or the names of the capture devices that exist.
fn find(host: &cpal::Host, pcm: &str) -> Result<cpal::Device, Vec<String>> {
    if let Some(d) = host.device_by_id(&DeviceId::new(HostId::Alsa, pcm)) {
        return Ok(d);
    }
    let available = host
        .input_devices()
        .map(|devices| {
            devices
                .filter_map(|d| d.id().ok().map(|id| id.id().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Err(available)
}

/// Finds `pcm` and negotiates the format to capture.
///
/// # Errors
/// [`AlsaAudioError`] naming the source and the device.
pub fn probe(
    name: &str,
    pcm: &str,
    request: FormatRequest,
) -> Result<CaptureFormat, AlsaAudioError> {
    let device_err = |message: String| AlsaAudioError::Device {
        name: name.to_string(),
        device: pcm.to_string(),
        message,
    };
    let host = host().map_err(device_err)?;
    let device = find(&host, pcm).map_err(|available| AlsaAudioError::NotFound {
        name: name.to_string(),
        device: pcm.to_string(),
        available,
    })?;
    let supported: Vec<SupportedRange> = device
        .supported_input_configs()
        .map_err(|e| device_err(format!("cannot list its capture configurations: {e}")))?
        .map(|r| SupportedRange {
            channels: r.channels(),
            min_rate_hz: r.min_sample_rate(),
            max_rate_hz: r.max_sample_rate(),
            kind: kind(r.sample_format()),
            format_name: r.sample_format().to_string(),
        })
        .collect();
    let default = device.default_input_config().ok().map(|c| CaptureFormat {
        channels: c.channels(),
        sample_rate_hz: c.sample_rate(),
        kind: kind(c.sample_format()),
    });
    negotiate::negotiate(request, default, &supported).map_err(|source| {
        AlsaAudioError::Negotiation {
            name: name.to_string(),
            device: pcm.to_string(),
            source,
        }
    })
}

/// A running cpal input stream (stopped and closed when dropped).
pub struct CpalStream {
    _stream: cpal::Stream,
    pcm: String,
    format: CaptureFormat,
}

impl std::fmt::Debug for CpalStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpalStream")
            .field("pcm", &self.pcm)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl AudioDevice for CpalStream {
    fn format(&self) -> CaptureFormat {
        self.format
    }

    fn describe(&self) -> String {
        format!("alsa:{}", self.pcm)
    }
}

/// Appends `data` converted to f32; false for a format that cannot be converted.
fn convert(data: &Data, out: &mut Vec<f32>) -> bool {
    match data.sample_format() {
        SampleFormat::I16 => data
            .as_slice::<i16>()
            .map(|s| negotiate::extend_i16(out, s)),
        SampleFormat::I32 => data
            .as_slice::<i32>()
            .map(|s| negotiate::extend_i32(out, s)),
        SampleFormat::F32 => data
            .as_slice::<f32>()
            .map(|s| negotiate::extend_f32(out, s)),
        SampleFormat::I8 => data.as_slice::<i8>().map(|s| negotiate::extend_i8(out, s)),
        SampleFormat::U8 => data.as_slice::<u8>().map(|s| negotiate::extend_u8(out, s)),
        SampleFormat::U16 => data
            .as_slice::<u16>()
            .map(|s| negotiate::extend_u16(out, s)),
        SampleFormat::F64 => data
            .as_slice::<f64>()
            .map(|s| negotiate::extend_f64(out, s)),
        _ => None,
    }
    .is_some()
}

impl CpalStream {
    /// Opens `pcm` at `format` and starts capturing into `blocks`.
    ///
    /// # Errors
    /// [`DeviceError`] when the device is missing or refuses the stream.
    pub fn open(
        pcm: &str,
        format: CaptureFormat,
        blocks: BlockSink,
        faults: FaultSink,
    ) -> Result<Self, DeviceError> {
        let err = |message: String| DeviceError {
            device: pcm.to_string(),
            message,
        };
        let host = host().map_err(err)?;
        let device = find(&host, pcm).map_err(|_| err("not found".into()))?;
        let sample_format = cpal_format(format.kind)
            .ok_or_else(|| err(format!("{} samples cannot be converted", format.kind)))?;
        let config = StreamConfig {
            channels: format.channels,
            sample_rate: format.sample_rate_hz,
            buffer_size: BufferSize::Default,
        };
        let mut blocks = blocks.with_channels(format.channels);
        let data_faults = faults.clone();
        let mut warned = false;
        let on_data = move |data: &Data, info: &InputCallbackInfo| {
            let mut samples = Vec::with_capacity(data.len());
            if !convert(data, &mut samples) {
                if !warned {
                    warned = true;
                    data_faults.report(Fault::Other(format!(
                        "unexpected sample format {}",
                        data.sample_format()
                    )));
                }
                return;
            }
            let t = info.timestamp();
            blocks.push(samples, t.callback.as_nanos(), t.capture.as_nanos());
        };
        let on_error = move |e: cpal::Error| {
            let fault = match e.kind() {
                cpal::ErrorKind::Xrun => Fault::Xrun,
                cpal::ErrorKind::DeviceNotAvailable
                | cpal::ErrorKind::StreamInvalidated
                | cpal::ErrorKind::DeviceChanged => Fault::Lost(e.to_string()),
                _ => Fault::Other(e.to_string()),
            };
            faults.report(fault);
        };
        let stream = device
            .build_input_stream_raw(config, sample_format, on_data, on_error, None)
            .map_err(|e| err(format!("cannot open a {format} capture stream: {e}")))?;
        stream
            .play()
            .map_err(|e| err(format!("cannot start capture: {e}")))?;
        Ok(Self {
            _stream: stream,
            pcm: pcm.to_string(),
            format,
        })
    }
}
