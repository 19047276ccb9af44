//! Depth frames → disparity → `[1, 224, 224]` (SPEC.md §3), with the camera's calibration
//! taken up when it reports one (the configuration's values override it).

use ndarray::{Array3, ArrayD};

use super::{FrameTensor, Frames, Processor, ProcessorError, StreamCx};
use crate::config::{DepthPreprocessConfig, IntervalMs};
use crate::log_limited;
use crate::preprocess::depth::{DepthCalibration, DepthError, DepthPreprocessor};
use crate::sources::{Frame, FrameImage};
use crate::telemetry::DropReason;
use crate::Modality;

/// The processor of a depth camera's stream: one frame per `interval_ms` of a camera delivering
/// one every `period_ns`, preprocessed as `config` says.
///
/// # Errors
/// [`ProcessorError`] when the preprocessing refuses `config`.
pub fn depth_frames(
    sensor: &str,
    interval_ms: IntervalMs,
    config: &DepthPreprocessConfig,
    period_ns: f64,
) -> Result<Box<dyn Processor>, ProcessorError> {
    let pre =
        DepthFrames::new(config).map_err(|e| ProcessorError::new(sensor, Modality::Depth, e))?;
    Ok(Box::new(Frames::new(interval_ms, period_ns, pre)))
}

/// The depth preprocessing, rebuilt when the camera's calibration changes.
#[derive(Debug)]
pub struct DepthFrames {
    pre: DepthPreprocessor,
    /// The options it was built from.
    config: DepthPreprocessConfig,
    /// The camera calibration in effect, if a camera reported one.
    camera: Option<DepthCalibration>,
}

impl DepthFrames {
    /// The preprocessing of `config` (reference calibration where it sets none, until a camera
    /// reports its own).
    ///
    /// # Errors
    /// [`DepthError`] when the preprocessing refuses the options.
    pub fn new(config: &DepthPreprocessConfig) -> Result<Self, DepthError> {
        Ok(Self {
            pre: DepthPreprocessor::new(config.params(None))?,
            config: config.clone(),
            camera: None,
        })
    }

    /// The preprocessing in effect.
    #[must_use]
    pub fn preprocessor(&self) -> &DepthPreprocessor {
        &self.pre
    }
}

/// Why a depth frame is refused.
#[derive(Debug, thiserror::Error)]
pub enum DepthFrameError {
    /// The preprocessing refused it.
    #[error(transparent)]
    Preprocess(#[from] DepthError),
    /// It is not 16-bit depth units.
    #[error("depth frame is not 16-bit")]
    NotU16,
}

impl FrameTensor for DepthFrames {
    type Error = DepthFrameError;

    fn refuses(&self, frame: &Frame) -> Option<&'static str> {
        match frame.image {
            FrameImage::U16(_) => None,
            FrameImage::U8(_) | FrameImage::Rgb8(_) => Some("depth frame is not 16-bit"),
        }
    }

    fn take_up(&mut self, frame: &Frame, cx: &mut StreamCx<'_>) -> bool {
        let Some(camera) = frame.calibration.filter(|c| Some(*c) != self.camera) else {
            return true;
        };
        // Config values override the camera's (`DepthPreprocessConfig::params`).
        match DepthPreprocessor::new(self.config.params(Some(camera))) {
            Ok(p) => {
                self.pre = p;
                self.camera = Some(camera);
                true
            }
            Err(e) => {
                cx.stats.add_drops(DropReason::PreprocessError, 1);
                log_limited!(cx.logs.calibration, tracing::Level::WARN,
                    "camera calibration rejected; frame dropped (once per interval, counted as preprocess_error)",
                    focal_px = camera.focal_px, baseline_m = camera.baseline_m,
                    depth_units_m = camera.depth_units_m, error = %e);
                false
            }
        }
    }

    fn tensor(&mut self, frame: &Frame) -> Result<ArrayD<f32>, DepthFrameError> {
        match &frame.image {
            FrameImage::U16(raw) => Ok(self.pre.tensor(raw.view()).map(Array3::into_dyn)?),
            // Refused before sampling (`refuses`).
            FrameImage::U8(_) | FrameImage::Rgb8(_) => Err(DepthFrameError::NotU16),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pipeline::processor::{Processor, StreamLogs};
    use crate::preprocess::depth::DepthParams;
    use crate::sources::realsense::RealsenseConfig;
    use crate::sources::SourceMessage;
    use crate::telemetry::StreamStats;
    use crate::time::Clock;

    fn realsense(preprocess: &str) -> Frames<DepthFrames> {
        let c: RealsenseConfig = toml::from_str(&format!(
            "name = \"depth\"\ninterval_ms = 0\n[preprocess]\n{preprocess}"
        ))
        .unwrap();
        let pre = DepthFrames::new(&c.settings.preprocess).unwrap();
        Frames::new(c.cut.interval_ms, 33e6, pre)
    }

    fn frame(calibration: Option<DepthCalibration>, k: u64) -> SourceMessage {
        SourceMessage::Frame(Frame {
            seq: k,
            t: Clock::new().at_mono_ns(k * 33_000_000),
            image: FrameImage::U16(ndarray::Array2::from_elem((48, 64), 1000)),
            calibration,
        })
    }

    fn params(p: &Frames<DepthFrames>) -> DepthParams {
        *p.preprocessing().preprocessor().params()
    }

    #[test]
    fn the_camera_calibration_is_used_where_the_config_sets_none() {
        let mut p = realsense("focal_px = 600.0\n");
        let stats = StreamStats::default();
        let mut logs = StreamLogs::default();
        let mut out = Vec::new();
        let mut cx = StreamCx {
            stats: &stats,
            logs: &mut logs,
            out: &mut out,
        };
        let camera = DepthCalibration {
            focal_px: 383.5,
            baseline_m: 0.05,
            depth_units_m: 0.0001,
        };
        p.process(frame(Some(camera), 0), &mut cx);
        assert_eq!(cx.out.len(), 1);
        let got = params(&p);
        assert_eq!(
            (got.focal_px, got.baseline_m, got.depth_units_m),
            (600.0, 0.05, 0.0001)
        );
        // A changed calibration (another camera after a reconnect) is taken up.
        let other = DepthCalibration {
            baseline_m: 0.095,
            ..camera
        };
        p.process(frame(Some(other), 1), &mut cx);
        assert_eq!(params(&p).baseline_m, 0.095);
        // Frames without calibration keep what is in effect.
        p.process(frame(None, 2), &mut cx);
        assert_eq!(params(&p).baseline_m, 0.095);
        assert_eq!(cx.out.len(), 3);
    }
}
