//! Thermal frames → `[1, 224, 224]` (SPEC.md §4).

use ndarray::{Array3, ArrayD};

use super::{FrameTensor, Frames, Processor, ProcessorError};
use crate::config::{IntervalMs, ThermalPreprocessConfig};
use crate::preprocess::thermal::{ThermalError, ThermalPreprocessor};
use crate::sources::{Frame, FrameImage};
use crate::Modality;

/// The processor of a thermal camera's stream: one frame per `interval_ms` of a camera
/// delivering one every `period_ns`, preprocessed as `config` says.
///
/// # Errors
/// [`ProcessorError`] when the preprocessing refuses `config`.
pub fn thermal_frames(
    sensor: &str,
    interval_ms: IntervalMs,
    config: &ThermalPreprocessConfig,
    period_ns: f64,
) -> Result<Box<dyn Processor>, ProcessorError> {
    let pre = ThermalPreprocessor::new(config.params())
        .map_err(|e| ProcessorError::new(sensor, Modality::Thermal, e))?;
    Ok(Box::new(Frames::new(interval_ms, period_ns, pre)))
}

/// Why a thermal frame is refused.
#[derive(Debug, thiserror::Error)]
pub enum ThermalFrameError {
    /// The preprocessing refused it.
    #[error(transparent)]
    Preprocess(#[from] ThermalError),
    /// It is a colour picture.
    #[error("thermal frame is a colour picture")]
    Colour,
}

impl FrameTensor for ThermalPreprocessor {
    type Error = ThermalFrameError;

    fn refuses(&self, frame: &Frame) -> Option<&'static str> {
        match frame.image {
            FrameImage::U8(_) | FrameImage::U16(_) => None,
            FrameImage::Rgb8(_) => Some("thermal frame is a colour picture"),
        }
    }

    fn tensor(&mut self, frame: &Frame) -> Result<ArrayD<f32>, ThermalFrameError> {
        let tensor = match &frame.image {
            FrameImage::U8(a) => self.tensor_u8(a.view()),
            FrameImage::U16(a) => self.tensor_u16(a.view()),
            // Refused before sampling (`refuses`).
            FrameImage::Rgb8(_) => return Err(ThermalFrameError::Colour),
        };
        Ok(tensor.map(Array3::into_dyn)?)
    }
}
