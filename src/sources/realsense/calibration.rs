//! The depth calibration a RealSense reports: focal length, stereo baseline, depth units.

use realsense_rust::frame::{DepthFrame, FrameEx};
use realsense_rust::kind::{Rs2Option, Rs2StreamKind};

use crate::config::DepthPreprocessConfig;
use crate::preprocess::depth::{DepthCalibration, DepthParams};

/// Depth calibration as the camera reports it; `None` where it reports nothing usable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Calibration {
    /// Focal length of the depth stream's intrinsics, pixels.
    pub focal_px: Option<f64>,
    /// Stereo baseline, metres.
    pub baseline_m: Option<f64>,
    /// Where the baseline came from: `stereo_baseline` option or extrinsics.
    pub baseline_from: &'static str,
    /// Depth units option, metres.
    pub depth_units_m: Option<f64>,
}

fn usable(v: f64) -> Option<f64> {
    (v.is_finite() && v > 0.0).then_some(v)
}

impl Calibration {
    pub(super) fn read(frame: &DepthFrame) -> Self {
        let profile = frame.stream_profile();
        let focal_px = profile
            .intrinsics()
            .ok()
            .and_then(|k| usable(f64::from(k.fx())));
        let sensor = frame.sensor().ok();
        let depth_units_m = sensor
            .as_ref()
            .and_then(|s| s.get_option(Rs2Option::DepthUnits))
            .and_then(|u| usable(f64::from(u)));
        let option = sensor
            .as_ref()
            .and_then(|s| s.get_option(Rs2Option::StereoBaseline))
            .and_then(|mm| usable(f64::from(mm) / 1000.0));
        // Depth is in the first infrared camera's frame on a D400: the translation to the
        // other infrared camera is the baseline.
        let extrinsic = || {
            sensor
                .as_ref()?
                .stream_profiles()
                .iter()
                .filter(|p| p.kind() == Rs2StreamKind::Infrared)
                .filter_map(|ir| profile.extrinsics(ir).ok())
                .map(|e| {
                    let t = e.translation();
                    f64::from(t[0] * t[0] + t[1] * t[1] + t[2] * t[2]).sqrt()
                })
                .reduce(f64::max)
                .and_then(usable)
        };
        let (baseline_m, baseline_from) = match option {
            Some(b) => (Some(b), "stereo_baseline option"),
            None => match extrinsic() {
                Some(b) => (Some(b), "depth-to-infrared extrinsics"),
                None => (None, "not reported"),
            },
        };
        Self {
            focal_px,
            baseline_m,
            baseline_from,
            depth_units_m,
        }
    }

    /// What the camera reported, with the reference values where it reported nothing.
    #[must_use]
    pub fn complete(&self) -> DepthCalibration {
        let reference = DepthParams::default();
        DepthCalibration {
            focal_px: self.focal_px.unwrap_or(reference.focal_px),
            baseline_m: self.baseline_m.unwrap_or(reference.baseline_m),
            depth_units_m: self.depth_units_m.unwrap_or(reference.depth_units_m),
        }
    }

    pub(super) fn log(&self, preprocess: &DepthPreprocessConfig) {
        let used = preprocess.params(Some(self.complete()));
        tracing::info!(
            camera_focal_px = ?self.focal_px,
            camera_baseline_m = ?self.baseline_m,
            baseline_from = self.baseline_from,
            camera_depth_units_m = ?self.depth_units_m,
            focal_px = used.focal_px,
            baseline_m = used.baseline_m,
            depth_units_m = used.depth_units_m,
            "depth calibration (config values override the camera's)"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn missing_camera_values_fall_back_to_the_reference() {
        let reference = DepthParams::default();
        let c = Calibration {
            focal_px: Some(383.5),
            baseline_m: None,
            baseline_from: "not reported",
            depth_units_m: Some(0.0001),
        };
        assert_eq!(
            c.complete(),
            DepthCalibration {
                focal_px: 383.5,
                baseline_m: reference.baseline_m,
                depth_units_m: 0.0001,
            }
        );
        assert_eq!(usable(f64::NAN), None);
        assert_eq!(usable(-1.0), None);
    }
}
