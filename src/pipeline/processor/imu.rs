//! IMU windows → `[6, 2000]` (SPEC.md §1).

use ndarray::{Array2, ArrayD};

use super::{Processor, SampleTensor, SampleWindows};
use crate::config::SampleWindow;
use crate::preprocess::imu::{ImuError, ImuPreprocessor};
use crate::sources::SourceMessage;
use crate::window::{Window, Windower};

/// The processor of an IMU stream: windows cut as `cut` says.
#[must_use]
pub fn imu_windows(cut: SampleWindow) -> Box<dyn Processor> {
    Box::new(SampleWindows::new(cut, ImuPreprocessor::new()))
}

impl SampleTensor for ImuPreprocessor {
    type Sample = [f32; 6];
    type Error = ImuError;
    const DROPPED: &'static str = "samples";

    fn rate_hz(message: &SourceMessage) -> Option<f64> {
        match message {
            SourceMessage::Imu { sample_rate_hz, .. } => Some(*sample_rate_hz),
            _ => None,
        }
    }

    fn drops(message: &SourceMessage) -> u64 {
        match message {
            SourceMessage::Imu { samples, .. } => samples.len() as u64,
            _ => 1,
        }
    }

    fn push(message: SourceMessage, w: &mut Windower<[f32; 6]>, out: &mut Vec<Window<[f32; 6]>>) {
        if let SourceMessage::Imu { samples, .. } = message {
            for s in samples {
                w.push(s.seq, s.t, s.values, out);
            }
        }
    }

    fn tensor(&mut self, window: &Window<[f32; 6]>) -> Result<ArrayD<f32>, ImuError> {
        self.tensor_from_samples(&window.samples)
            .map(Array2::into_dyn)
    }
}
