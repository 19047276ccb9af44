//! Frame replay: a `.npy` stack of frames (uint8 or uint16, `[N, H, W]`, or one `[H, W]`
//! frame) played back as a camera at its frame rate, or as fast as the pipeline takes it.

pub mod config;

use std::path::{Path, PathBuf};

use ndarray::{Array3, Axis, Ix2};

use super::{Frame, FrameGate, FrameImage, Source, SourceContext, SourceMessage};
use crate::config::{ReplaySpeed, ThermalAgc};
use crate::files::npy::{self, Dtype};
use crate::files::{self, FileError};

/// Problems with a frame recording.
#[derive(Debug, thiserror::Error)]
pub enum FrameFileError {
    /// Missing, unreadable, not a `.npy`, sizes that do not add up, or the wrong dtype or shape
    /// for the source.
    #[error(transparent)]
    File(#[from] FileError),
    /// No frames or no pixels.
    #[error("{path}: no frames (shape {shape:?})")]
    Empty {
        /// The file.
        path: PathBuf,
        /// Its shape.
        shape: Vec<usize>,
    },
}

/// Largest frame side accepted from a recording (as for a RealSense stream): the resize plans
/// of the preprocessing grow with the input size.
pub const MAX_FRAME_SIDE_PX: usize = 4096;

/// What a frame recording must hold for its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Depth in depth units: uint16.
    Depth,
    /// Thermal intensity: uint8 or uint16; uint16 only when `radiometric` (fixed-°C AGC reads
    /// temperatures from 16-bit values).
    Thermal {
        /// Whether the frames must be radiometric (16-bit).
        radiometric: bool,
    },
}

impl FrameKind {
    /// What a thermal replay with `agc` needs.
    #[must_use]
    pub fn thermal(agc: ThermalAgc) -> Self {
        Self::Thermal {
            radiometric: agc == ThermalAgc::FixedCelsius,
        }
    }

    /// Why `dtype` does not fit (the rest of the message after the dtype and shape), if it
    /// does not.
    fn refuses(self, dtype: Dtype) -> Option<&'static str> {
        match (self, dtype) {
            (Self::Depth, Dtype::Uint(2)) => None,
            (Self::Depth, _) => Some("; a depth recording must be 16-bit (uint16, in depth units)"),
            (Self::Thermal { radiometric: true }, Dtype::Uint(1)) => {
                Some("; agc = \"fixed_celsius\" needs uint16 (radiometric) frames")
            }
            (Self::Thermal { .. }, Dtype::Uint(1 | 2)) => None,
            (Self::Thermal { .. }, _) => Some(", not a uint8 or uint16 thermal recording"),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Depth => "a depth recording",
            Self::Thermal { .. } => "a thermal recording",
        }
    }
}

/// Frames of a recording.
#[derive(Debug, Clone)]
pub enum FrameStack {
    /// 8-bit frames.
    U8(Array3<u8>),
    /// 16-bit frames.
    U16(Array3<u16>),
    /// Colour frames `[H, W, 3]`, each of its own size (a folder's pictures).
    Rgb8(Vec<Array3<u8>>),
}

impl FrameStack {
    /// Number of frames.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::U8(a) => a.len_of(Axis(0)),
            Self::U16(a) => a.len_of(Axis(0)),
            Self::Rgb8(v) => v.len(),
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
            Self::Rgb8(v) => FrameImage::Rgb8(v.get(i)?.clone()),
        })
    }
}

/// Loads a `.npy` frame stack (`[N, H, W]`, or one `[H, W]` frame) of the dtype `kind` needs.
/// The header is checked before any pixel is read.
///
/// # Errors
/// [`FrameFileError`] naming the file and what is wrong.
pub fn load_stack(path: &Path, kind: FrameKind) -> Result<FrameStack, FrameFileError> {
    let (mut file, len) = files::open(path)?;
    let header = npy::read_header(&mut file, len, path)?;
    let format = |message: String| FrameFileError::File(FileError::format(path, message));
    if let Some(why) = kind.refuses(header.dtype) {
        return Err(format(format!(
            "is {} {}{why}",
            header.dtype.name(),
            header.shape_text()
        )));
    }
    let (height_px, width_px) = match header.shape[..] {
        [_, h, w] | [h, w] => (h, w),
        _ => {
            return Err(format(format!(
                "has shape {}; {} must be [N, H, W] or [H, W]",
                header.shape_text(),
                kind.what()
            )))
        }
    };
    if height_px > MAX_FRAME_SIDE_PX || width_px > MAX_FRAME_SIDE_PX {
        return Err(format(format!(
            "frames of {width_px}x{height_px} px; at most {MAX_FRAME_SIDE_PX} px a side"
        )));
    }
    let limit = files::MAX_RECORDING_BYTES;
    let what = kind.what();
    let stack = match (header.dtype, header.shape.len()) {
        (Dtype::Uint(2), 3) => {
            FrameStack::U16(npy::read_data(&mut file, &header, path, limit, what)?)
        }
        (Dtype::Uint(2), _) => FrameStack::U16(
            npy::read_data::<u16, Ix2>(&mut file, &header, path, limit, what)?.insert_axis(Axis(0)),
        ),
        (_, 3) => FrameStack::U8(npy::read_data(&mut file, &header, path, limit, what)?),
        _ => FrameStack::U8(
            npy::read_data::<u8, Ix2>(&mut file, &header, path, limit, what)?.insert_axis(Axis(0)),
        ),
    };
    let shape = match &stack {
        FrameStack::U8(a) => a.shape().to_vec(),
        FrameStack::U16(a) => a.shape().to_vec(),
        FrameStack::Rgb8(v) => vec![v.len()],
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
    pub fn open(path: &Path, kind: FrameKind, pacing: FramePacing) -> Result<Self, FrameFileError> {
        Ok(Self {
            path: path.to_path_buf(),
            frames: load_stack(path, kind)?,
            pacing,
        })
    }

    /// Replays `frames`, loaded from `path` (which logs name).
    #[must_use]
    pub fn from_frames(path: &Path, frames: FrameStack, pacing: FramePacing) -> Self {
        Self {
            path: path.to_path_buf(),
            frames,
            pacing,
        }
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
                ctx.stats.set_finished();
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
    use ndarray::Array2;

    #[test]
    fn stacks_and_single_frames_of_both_depths_load() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.npy");
        ndarray_npy::write_npy(&a, &Array3::<u16>::zeros((3, 4, 5))).unwrap();
        assert_eq!(load_stack(&a, FrameKind::Depth).unwrap().len(), 3);
        let b = dir.path().join("b.npy");
        ndarray_npy::write_npy(&b, &Array2::<u8>::zeros((4, 5))).unwrap();
        let thermal = FrameKind::Thermal { radiometric: false };
        let s = load_stack(&b, thermal).unwrap();
        assert!(matches!(s.frame(0), Some(FrameImage::U8(f)) if f.dim() == (4, 5)));
    }

    #[test]
    fn other_dtypes_and_empty_stacks_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f.npy");
        ndarray_npy::write_npy(&f, &Array2::<f32>::zeros((4, 5))).unwrap();
        let thermal = FrameKind::Thermal { radiometric: false };
        let err = load_stack(&f, thermal).unwrap_err().to_string();
        assert!(
            err.ends_with("is float32 [4, 5], not a uint8 or uint16 thermal recording"),
            "{err}"
        );
        let e = dir.path().join("e.npy");
        ndarray_npy::write_npy(&e, &Array3::<u8>::zeros((0, 4, 5))).unwrap();
        assert!(matches!(
            load_stack(&e, thermal),
            Err(FrameFileError::Empty { .. })
        ));
        let wide = dir.path().join("wide.npy");
        ndarray_npy::write_npy(&wide, &Array2::<u16>::zeros((1, 5000))).unwrap();
        let err = load_stack(&wide, FrameKind::Depth).unwrap_err().to_string();
        assert!(
            err.ends_with("frames of 5000x1 px; at most 4096 px a side"),
            "{err}"
        );
    }
}
