//! ImageBind vision preprocessing: `load_and_transform_vision_data` (ImageBind `data.py`
//! L82-106, SPEC.md §6) on an RGB frame, bit for bit.
//!
//! `Resize(224, BICUBIC)` on a Pillow RGB image (Pillow resizes R, G and B independently with the
//! 8-bit fixed-point path of mode "L", emulated exactly by [`crate::preprocess::pil_resize`]) ->
//! `CenterCrop(224)` (offsets rounded half to even) -> `ToTensor()` (`k / 255` in f32) ->
//! `Normalize(CLIP mean, CLIP std)` (f32, operation by operation) -> `[3, 224, 224]` f32.
//!
//! Packed RGB-like frames (RGB8, BGR8, RGBA8, BGRA8, with a row stride) are resized where they
//! lie by the thermal path's resize kernel, one channel at a time from a single transpose of the
//! interleaved source ([`PilResizePlan::run_interleaved`]); YUYV/UYVY frames are converted to RGB
//! first. Only the 224 x 224 pixels that survive the crop are computed. [`frame`] converts camera buffers, [`decode`] PNG and
//! JPEG files.

pub mod decode;
pub mod frame;

use ndarray::{Array3, ArrayView3, ArrayViewMut3};
use thiserror::Error;

use crate::preprocess::pil_resize::{
    CropRect, Interleaved, PilResizeError, PilResizePlan, PilResizeScratch,
};
use crate::preprocess::resize::{center_crop_offsets, short_side_size, ResizeError};
use frame::{frame_to_rgb, FrameError, FrameLayout, PixelFormat};

/// Side of the model input (resize target of the short side and centre crop size).
pub const SIZE_PX: usize = 224;
/// CLIP mean per channel (R, G, B), as ImageBind passes it to `Normalize` (data.py L95).
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// CLIP standard deviation per channel (data.py L96).
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Errors of vision preprocessing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VisionError {
    /// The frame buffer does not match its declared layout.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An RGB array is not `[height, width, 3]`.
    #[error("RGB image has shape {actual}, expected [height, width, 3]")]
    InputShape {
        /// The given shape, e.g. `[480, 640, 4]`.
        actual: String,
    },
    /// The output view is not `[3, 224, 224]`.
    #[error("output tensor has shape {actual}, expected [3, 224, 224]")]
    OutputShape {
        /// The given shape.
        actual: String,
    },
    /// The resize or crop geometry of the frame size cannot be computed.
    #[error("{width_px}x{height_px} px image: {source}")]
    Geometry {
        /// Frame width.
        width_px: usize,
        /// Frame height.
        height_px: usize,
        /// Underlying error.
        source: ResizeError,
    },
    /// The resize could not be planned or run.
    #[error("resizing a {width_px}x{height_px} px image: {source}")]
    Resize {
        /// Frame width.
        width_px: usize,
        /// Frame height.
        height_px: usize,
        /// Underlying error.
        source: PilResizeError,
    },
}

fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// ImageBind vision preprocessor. Keeps the resize plan of the last frame size and all buffers,
/// so steady-state frames of one size allocate nothing beyond a returned tensor.
#[derive(Debug, Clone, Default)]
pub struct VisionPreprocessor {
    plan: Option<PilResizePlan>,
    scratch: PilResizeScratch,
    /// A YUV frame converted to interleaved RGB.
    rgb: Vec<u8>,
    /// The cropped resize output, three 224 x 224 planes.
    cropped: Vec<u8>,
    /// Contiguous copy of a non-contiguous RGB view.
    contiguous: Vec<u8>,
}

impl VisionPreprocessor {
    /// A preprocessor with empty buffers (sized by the first frame).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Preprocesses an RGB image `[height, width, 3]` (HWC, as `Image.fromarray(arr, "RGB")`).
    ///
    /// # Errors
    /// [`VisionError::InputShape`], or as [`VisionPreprocessor::tensor_frame`].
    pub fn tensor_rgb(&mut self, img: ArrayView3<u8>) -> Result<Array3<f32>, VisionError> {
        let mut out = Array3::zeros((3, SIZE_PX, SIZE_PX));
        self.tensor_rgb_into(img, out.view_mut())?;
        Ok(out)
    }

    /// Like [`VisionPreprocessor::tensor_rgb`], into a caller-owned `[3, 224, 224]` view.
    ///
    /// # Errors
    /// As [`VisionPreprocessor::tensor_rgb`], plus [`VisionError::OutputShape`].
    pub fn tensor_rgb_into(
        &mut self,
        img: ArrayView3<u8>,
        out: ArrayViewMut3<f32>,
    ) -> Result<(), VisionError> {
        let (height_px, width_px, channels) = img.dim();
        if channels != 3 {
            return Err(VisionError::InputShape {
                actual: shape_text(img.shape()),
            });
        }
        let layout = FrameLayout::packed(PixelFormat::Rgb8, width_px, height_px);
        if let Some(buf) = img.as_slice() {
            return self.tensor_frame_into(buf, &layout, out);
        }
        let mut copy = std::mem::take(&mut self.contiguous);
        copy.clear();
        copy.extend(img.iter().copied());
        let result = self.tensor_frame_into(&copy, &layout, out);
        self.contiguous = copy;
        result
    }

    /// Preprocesses one uncompressed frame (any [`PixelFormat`], with stride) into a
    /// `[3, 224, 224]` tensor.
    ///
    /// # Errors
    /// [`VisionError::Frame`] if the buffer does not match `layout`, [`VisionError::Geometry`]
    /// or [`VisionError::Resize`] for a size that cannot be resized.
    pub fn tensor_frame(
        &mut self,
        buf: &[u8],
        layout: &FrameLayout,
    ) -> Result<Array3<f32>, VisionError> {
        let mut out = Array3::zeros((3, SIZE_PX, SIZE_PX));
        self.tensor_frame_into(buf, layout, out.view_mut())?;
        Ok(out)
    }

    /// Like [`VisionPreprocessor::tensor_frame`], into a caller-owned `[3, 224, 224]` view.
    ///
    /// # Errors
    /// As [`VisionPreprocessor::tensor_frame`], plus [`VisionError::OutputShape`].
    pub fn tensor_frame_into(
        &mut self,
        buf: &[u8],
        layout: &FrameLayout,
        mut out: ArrayViewMut3<f32>,
    ) -> Result<(), VisionError> {
        if out.shape() != [3, SIZE_PX, SIZE_PX] {
            return Err(VisionError::OutputShape {
                actual: shape_text(out.shape()),
            });
        }
        self.resize_crop(buf, layout)?;
        normalize_into(&self.cropped, &mut out);
        Ok(())
    }

    /// The 224 x 224 RGB crop of the last frame, `[224, 224, 3]` (what Pillow's Resize +
    /// CenterCrop give before `ToTensor`); zeros before the first frame.
    #[must_use]
    pub fn cropped_rgb(&self) -> Array3<u8> {
        let plane = SIZE_PX * SIZE_PX;
        Array3::from_shape_fn((SIZE_PX, SIZE_PX, 3), |(y, x, c)| {
            self.cropped
                .get(c * plane + y * SIZE_PX + x)
                .copied()
                .unwrap_or(0)
        })
    }

    /// Frame -> resized and cropped planes R, G, B in `self.cropped`. Packed RGB layouts are
    /// resized where they lie; YUV frames are converted to RGB first.
    fn resize_crop(&mut self, buf: &[u8], layout: &FrameLayout) -> Result<(), VisionError> {
        layout.check(buf.len())?;
        let (width_px, height_px) = (layout.width_px, layout.height_px);
        if layout.format.is_pairwise() {
            frame_to_rgb(buf, layout, &mut self.rgb)?;
        }
        let plan = self.plan_for(width_px, height_px)?;
        let (src, source) = if layout.format.is_pairwise() {
            let packed = FrameLayout::packed(PixelFormat::Rgb8, width_px, height_px);
            (self.rgb.as_slice(), packed)
        } else {
            (buf, *layout)
        };
        let order = match layout.format {
            PixelFormat::Bgr8 | PixelFormat::Bgra8 => [2, 1, 0],
            PixelFormat::Rgb8 | PixelFormat::Rgba8 | PixelFormat::Yuyv | PixelFormat::Uyvy => {
                [0, 1, 2]
            }
        };
        let crop = SIZE_PX * SIZE_PX;
        self.cropped.resize(3 * crop, 0);
        let mut planes: Vec<&mut [u8]> = self.cropped.chunks_exact_mut(crop).collect();
        let interleaved = Interleaved {
            row_stride_bytes: source.stride_bytes,
            pixel_bytes: source.format.bytes_per_pixel(),
        };
        let result = plan
            .run_interleaved(src, interleaved, &order, &mut self.scratch, &mut planes)
            .map_err(|source| VisionError::Resize {
                width_px,
                height_px,
                source,
            });
        self.plan = Some(plan);
        result
    }

    /// The cached plan if it fits the frame size, otherwise a new one (torchvision geometry).
    fn plan_for(
        &mut self,
        width_px: usize,
        height_px: usize,
    ) -> Result<PilResizePlan, VisionError> {
        if let Some(plan) = self.plan.take() {
            if plan.input_size_px() == (width_px, height_px) {
                return Ok(plan);
            }
        }
        let geometry = |source| VisionError::Geometry {
            width_px,
            height_px,
            source,
        };
        let (out_w, out_h) = short_side_size(height_px, width_px, SIZE_PX).map_err(geometry)?;
        let (top_px, left_px) = center_crop_offsets(out_h, out_w, SIZE_PX).map_err(geometry)?;
        let crop = CropRect {
            left_px,
            top_px,
            width_px: SIZE_PX,
            height_px: SIZE_PX,
        };
        PilResizePlan::new(width_px, height_px, out_w, out_h, crop).map_err(|source| {
            VisionError::Resize {
                width_px,
                height_px,
                source,
            }
        })
    }
}

/// `(f32(k) / 255 - mean) / std` per channel, each operation rounded to f32 as torch does
/// (`ToTensor`'s `div(255)`, then `Normalize`'s `sub_(mean).div_(std)` with f32 constants).
fn normalize_into(cropped: &[u8], out: &mut ArrayViewMut3<f32>) {
    let crop = SIZE_PX * SIZE_PX;
    for (c, src) in cropped.chunks_exact(crop).enumerate().take(3) {
        let mean = CLIP_MEAN[c] as f32;
        let std = CLIP_STD[c] as f32;
        let mut dst = out.index_axis_mut(ndarray::Axis(0), c);
        match dst.as_slice_mut() {
            Some(dst) => {
                for (d, &k) in dst.iter_mut().zip(src) {
                    *d = (f32::from(k) / 255.0 - mean) / std;
                }
            }
            None => {
                for (d, &k) in dst.iter_mut().zip(src) {
                    *d = (f32::from(k) / 255.0 - mean) / std;
                }
            }
        }
    }
}
