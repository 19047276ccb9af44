//! A parity reference made on the spot when the manifest has none: a fixed input run through the
//! model on ONNX Runtime's CPU provider (FP32). Without it a GPU step — a TensorRT FP16 engine
//! above all — would be accepted unchecked whenever a model set carries no references (the
//! ImageBind export writes none). Real windows are the better test (manifest references); this
//! one catches engines that are wrong for any input.

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};

use super::parity::Reference;
use super::plan::SessionPlan;
use super::runtime::OrtRuntime;
use super::session::{create_session, CreateError, Encoder, SessionError};
use super::steps::Step;
use crate::Modality;

/// What messages call this reference where they name a manifest reference's file.
pub const CPU_REFERENCE_NAME: &str =
    "(none: compared with the CPU provider's FP32 output for a fixed input)";

/// Windows in the reference input (two: the batch path is checked too).
const ROWS: usize = 2;

/// Whether `step` is checked against a CPU reference when the manifest has none: every GPU step
/// while the parity check is on (the CPU step would be compared with itself).
#[must_use]
pub fn wanted(step: &Step, parity_enabled: bool) -> bool {
    parity_enabled && step.is_gpu()
}

/// `[rows, item…]` filled with a fixed low-discrepancy sequence in [-1, 1): the same on every
/// machine and every start, far from constant, and within the range of normalised model inputs.
#[must_use]
pub fn fixed_input(rows: usize, item: &[usize]) -> ArrayD<f32> {
    let mut shape = vec![rows];
    shape.extend_from_slice(item);
    // The golden ratio's fractional part as the step spreads values evenly over [0, 1).
    const STEP: f64 = 0.618_033_988_749_895;
    let mut x = 0.5_f64;
    ArrayD::from_shape_fn(IxDyn(&shape), |_| {
        x = (x + STEP).fract();
        #[allow(clippy::cast_possible_truncation, reason = "values in [-1, 1)")]
        let v = (x * 2.0 - 1.0) as f32;
        v
    })
}

/// The reference of the model at `path`: [`fixed_input`] in the shape `item` and what the CPU
/// provider makes of it.
///
/// # Errors
/// [`SessionError`] when the CPU session cannot be created or run.
pub fn make(
    runtime: &OrtRuntime,
    modality: Modality,
    path: &Path,
    item: &[usize],
    intra_threads: usize,
) -> Result<Reference, SessionError> {
    let plan = SessionPlan {
        step: Step::Cpu.name(),
        providers: Vec::new(),
        config_entries: Vec::new(),
    };
    let (session, placement) =
        create_session(runtime, path, &plan, intra_threads).map_err(|e| {
            let (CreateError::Unavailable { reason, .. } | CreateError::Failed { reason }) = e;
            SessionError::Run {
                path: path.to_path_buf(),
                message: format!("the CPU reference session: {reason}"),
            }
        })?;
    let mut encoder = Encoder::from_session(session, modality, path, &Step::Cpu, placement)?;
    let input = fixed_input(ROWS, item);
    let output = encoder.run(&input)?;
    Ok(Reference {
        input,
        output,
        output_path: PathBuf::from(CPU_REFERENCE_NAME),
        // The same model on the CPU: the configured threshold applies, whatever its precision.
        min_cosine: None,
        precision: super::manifest::Precision::Fp32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        ExecutionProviderKind::{Cpu, Cuda, Tensorrt},
        TensorrtConfig,
    };
    use crate::inference::steps::ladder;

    #[test]
    fn the_fixed_input_is_deterministic_spread_and_bounded() {
        let a = fixed_input(2, &[6, 2000]);
        assert_eq!(a.shape(), [2, 6, 2000]);
        assert_eq!(a, fixed_input(2, &[6, 2000]));
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        #[allow(clippy::cast_precision_loss, reason = "test statistics")]
        let mean = a.iter().map(|v| f64::from(*v)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        // The two rows differ (a batch of identical rows would hide row mix-ups).
        assert_ne!(
            a.index_axis(ndarray::Axis(0), 0),
            a.index_axis(ndarray::Axis(0), 1)
        );
    }

    #[test]
    fn every_gpu_step_is_checked_and_the_cpu_step_never() {
        let steps = ladder(&[Tensorrt, Cuda, Cpu], &TensorrtConfig::default(), false);
        let wanted_by: Vec<bool> = steps.iter().map(|s| wanted(s, true)).collect();
        assert_eq!(wanted_by, [true, true, true, true, false]);
        assert!(steps.iter().all(|s| !wanted(s, false)));
    }
}
