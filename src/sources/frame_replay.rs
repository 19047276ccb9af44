//! Frame replay: a `.npy` stack of frames (uint8 or uint16, `[N, H, W]`, or one `[H, W]`
//! frame) played back as a camera at its frame rate, or as fast as the pipeline takes it.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3, Axis};

use super::{Frame, FrameGate, FrameImage, Source, SourceContext, SourceMessage};
use crate::config::ReplaySpeed;

/// Problems with a frame recording.
#[derive(Debug, thiserror::Error)]
pub enum FrameFileError {
    /// Not a uint8/uint16 `.npy` of 2 or 3 dimensions.
    #[error("{path}: not a uint8 or uint16 .npy of shape [N, H, W] or [H, W]")]
    Format {
        /// The file.
        path: PathBuf,
    },
    /// No frames or no pixels.
    #[error("{path}: no frames (shape {shape:?})")]
    Empty {
        /// The file.
        path: PathBuf,
        /// Its shape.
        shape: Vec<usize>,
    },
}

/// Frames of a recording.
#[derive(Debug, Clone)]
pub enum FrameStack {
    /// 8-bit frames.
    U8(Array3<u8>),
    /// 16-bit frames.
    U16(Array3<u16>),
}

impl FrameStack {
    /// Number of frames.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::U8(a) => a.len_of(Axis(0)),
            Self::U16(a) => a.len_of(Axis(0)),
        }
    }

    /// Whether there is no frame.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frame `i` (a copy).
    #[must_use]
    pub fn frame(&self, i: usize) -> Option<FrameImage> {
        if i >= self.len() {
            return None;
        }
        Some(match self {
            Self::U8(a) => FrameImage::U8(a.index_axis(Axis(0), i).to_owned()),
            Self::U16(a) => FrameImage::U16(a.index_axis(Axis(0), i).to_owned()),
        })
    }
}

/// Loads a `.npy` frame stack (or a single frame).
///
/// # Errors
/// [`FrameFileError`] naming the file.
pub fn load_stack(path: &Path) -> Result<FrameStack, FrameFileError> {
    let stack = if let Ok(a) = ndarray_npy::read_npy::<_, Array3<u16>>(path) {
        FrameStack::U16(a)
    } else if let Ok(a) = ndarray_npy::read_npy::<_, Array3<u8>>(path) {
        FrameStack::U8(a)
    } else if let Ok(a) = ndarray_npy::read_npy::<_, Array2<u16>>(path) {
        FrameStack::U16(a.insert_axis(Axis(0)))
    } else if let Ok(a) = ndarray_npy::read_npy::<_, Array2<u8>>(path) {
        FrameStack::U8(a.insert_axis(Axis(0)))
    } else {
        return Err(FrameFileError::Format {
            path: path.to_path_buf(),
        });
    };
    let shape = match &stack {
        FrameStack::U8(a) => a.shape().to_vec(),
        FrameStack::U16(a) => a.shape().to_vec(),
    };
    if shape.contains(&0) {
        return Err(FrameFileError::Empty {
            path: path.to_path_buf(),
            shape,
        });
    }
    Ok(stack)
}

/// How a frame recording is played.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FramePacing {
    /// Frame rate of the recording.
    pub fps: f64,
    /// The stream's `interval_ms`: frames its sampler would pass over are passed over here
    /// already (counted, not copied nor handed over).
    pub interval_ms: u64,
    /// Real time or as fast as the pipeline takes frames.
    pub speed: ReplaySpeed,
    /// Start over at the end.
    pub looping: bool,
}

/// The frame replay source.
#[derive(Debug)]
pub struct FrameReplay {
    path: PathBuf,
    frames: FrameStack,
    pacing: FramePacing,
}

impl FrameReplay {
    /// Loads the recording.
    ///
    /// # Errors
    /// [`FrameFileError`].
    pub fn open(path: &Path, pacing: FramePacing) -> Result<Self, FrameFileError> {
        Ok(Self {
            path: path.to_path_buf(),
            frames: load_stack(path)?,
            pacing,
        })
    }
}

impl Source for FrameReplay {
    fn sample_rate_hz(&self) -> f64 {
        self.pacing.fps
    }

    fn run(self: Box<Self>, ctx: SourceContext) {
        let _span = tracing::info_span!("source", sensor = %ctx.name).entered();
        let FramePacing {
            fps,
            interval_ms,
            speed,
            looping,
        } = self.pacing;
        ctx.stats.set_connected(true, fps);
        tracing::info!(file = %self.path.display(), frames = self.frames.len(), fps, interval_ms, "replaying frames");
        let period_ns = 1e9 / fps;
        let start = ctx.clock.now();
        let mut gate = FrameGate::new(interval_ms);
        let mut seq: u64 = 0;
        'outer: loop {
            for i in 0..self.frames.len() {
                if ctx.cancel.is_cancelled() {
                    break 'outer;
                }
                let t = start.plus_ns((seq as f64 * period_ns).round() as u64);
                if gate.skip(t) {
                    // Neither copied nor waited for: the source sleeps once per interval.
                    seq += 1;
                    continue;
                }
                if speed == ReplaySpeed::Realtime
                    && !ctx.sleep_until(ctx.clock.instant_of(t.mono_ns))
                {
                    break 'outer;
                }
                gate.flush(&ctx.stats);
                let Some(image) = self.frames.frame(i) else {
                    break 'outer;
                };
                gate.take(t);
                if !ctx.send(SourceMessage::Frame(Frame {
                    seq,
                    t,
                    image,
                    calibration: None,
                })) {
                    break 'outer;
                }
                ctx.stats.add_samples(1, t.utc_ns);
                seq += 1;
            }
            if !looping {
                tracing::info!("frame recording finished");
                break;
            }
        }
        // The frames passed over at the end of a finished recording; when stopping, ones the
        // clock may not have reached (at most one interval's).
        gate.flush(&ctx.stats);
        ctx.stats.set_connected(false, fps);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stacks_and_single_frames_of_both_depths_load() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.npy");
        ndarray_npy::write_npy(&a, &Array3::<u16>::zeros((3, 4, 5))).unwrap();
        assert_eq!(load_stack(&a).unwrap().len(), 3);
        let b = dir.path().join("b.npy");
        ndarray_npy::write_npy(&b, &Array2::<u8>::zeros((4, 5))).unwrap();
        let s = load_stack(&b).unwrap();
        assert!(matches!(s.frame(0), Some(FrameImage::U8(f)) if f.dim() == (4, 5)));
    }

    #[test]
    fn other_dtypes_and_empty_stacks_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f.npy");
        ndarray_npy::write_npy(&f, &Array2::<f32>::zeros((4, 5))).unwrap();
        assert!(matches!(load_stack(&f), Err(FrameFileError::Format { .. })));
        let e = dir.path().join("e.npy");
        ndarray_npy::write_npy(&e, &Array3::<u8>::zeros((0, 4, 5))).unwrap();
        assert!(matches!(load_stack(&e), Err(FrameFileError::Empty { .. })));
    }
}
