//! Colour frames → `[3, 224, 224]` (SPEC.md §6, ImageBind's `load_and_transform_vision_data`).
//! ImageBind's vision transform has no options, so neither has this processor.

use ndarray::{Array3, ArrayD};

use super::{FrameTensor, Frames, Processor};
use crate::config::IntervalMs;
use crate::preprocess::vision::{VisionError, VisionPreprocessor};
use crate::sources::{Frame, FrameImage};

/// The processor of a colour camera's stream: one frame per `interval_ms` of a camera
/// delivering one every `period_ns`.
#[must_use]
pub fn vision_frames(interval_ms: IntervalMs, period_ns: f64) -> Box<dyn Processor> {
    Box::new(Frames::new(
        interval_ms,
        period_ns,
        VisionPreprocessor::new(),
    ))
}

/// Why a colour frame is refused.
#[derive(Debug, thiserror::Error)]
pub enum VisionFrameError {
    /// The preprocessing refused it.
    #[error(transparent)]
    Preprocess(#[from] VisionError),
    /// It is not an RGB picture.
    #[error("vision frame is not RGB")]
    NotRgb,
}

impl FrameTensor for VisionPreprocessor {
    type Error = VisionFrameError;

    fn refuses(&self, frame: &Frame) -> Option<&'static str> {
        match frame.image {
            FrameImage::Rgb8(_) => None,
            FrameImage::U8(_) | FrameImage::U16(_) => Some("vision frame is not RGB"),
        }
    }

    fn tensor(&mut self, frame: &Frame) -> Result<ArrayD<f32>, VisionFrameError> {
        match &frame.image {
            FrameImage::Rgb8(rgb) => Ok(self.tensor_rgb(rgb.view()).map(Array3::into_dyn)?),
            // Refused before sampling (`refuses`).
            FrameImage::U8(_) | FrameImage::U16(_) => Err(VisionFrameError::NotRgb),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pipeline::processor::{StreamCx, StreamLogs};
    use crate::sources::SourceMessage;
    use crate::telemetry::{DropReason, StreamStats};
    use crate::time::Clock;

    fn frame(image: FrameImage, k: u64) -> SourceMessage {
        SourceMessage::Frame(Frame {
            seq: k,
            t: Clock::new().at_mono_ns(k * 100_000_000),
            image,
            calibration: None,
        })
    }

    #[test]
    fn colour_frames_become_clip_normalised_tensors_and_grey_ones_are_refused() {
        let mut p = vision_frames(IntervalMs::trusted(0), 1e8);
        let stats = StreamStats::default();
        let mut logs = StreamLogs::default();
        let mut out = Vec::new();
        let mut cx = StreamCx {
            stats: &stats,
            logs: &mut logs,
            out: &mut out,
        };
        let white = Array3::from_elem((48, 64, 3), 255u8);
        p.process(frame(FrameImage::Rgb8(white), 0), &mut cx);
        let grey = ndarray::Array2::from_elem((48, 64), 7u8);
        p.process(frame(FrameImage::U8(grey), 1), &mut cx);
        assert_eq!(stats.drops(DropReason::BadInput), 1);
        assert_eq!(out.len(), 1);
        let x = &out[0].input;
        assert_eq!(x.shape(), [3, 224, 224]);
        // (1 - mean) / std of the red channel, as ImageBind's Normalize gives it.
        let red = (1.0 - 0.481_454_66_f32) / 0.268_629_54_f32;
        assert!(
            (x[[0, 100, 100]] - red).abs() < 1e-6,
            "{}",
            x[[0, 100, 100]]
        );
    }
}
