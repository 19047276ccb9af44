//! Interleaved sources (RGB, BGR, RGBA, BGRA with a row stride) for [`PilResizePlan`].
//!
//! Pillow resizes an RGB image as independent channels with exactly the arithmetic of mode "L",
//! so each channel is one single-channel resize. Rather than splitting the frame into planes
//! first, the horizontal-first path transposes the source region once with every byte of every
//! pixel, and each channel's horizontal taps then step `pixel_bytes` transposed rows at a time:
//! the same kernel, no deinterleaving pass (a 640x480 RGB frame to the vision tensor: 1.05 ms
//! of CPU time when split into planes first, 0.58 ms this way; docs/performance.md).

use super::{Interleaved, PilResizeError, PilResizePlan, PilResizeScratch};

impl PilResizePlan {
    /// Resizes the channels at byte offsets `channels` of each pixel of the interleaved `src`
    /// (`input_height` rows of `layout.row_stride_bytes`; the last row needs no padding), each
    /// into its own crop-sized destination in `dsts`, with results identical to
    /// [`PilResizePlan::run`] on each channel's plane.
    ///
    /// # Errors
    /// [`PilResizeError::SourceLayout`] if `src`, `layout`, `channels` and `dsts` do not fit
    /// together, [`PilResizeError::DestinationSize`] for a destination of the wrong length.
    pub fn run_interleaved(
        &self,
        src: &[u8],
        layout: Interleaved,
        channels: &[usize],
        scratch: &mut PilResizeScratch,
        dsts: &mut [&mut [u8]],
    ) -> Result<(), PilResizeError> {
        self.check_interleaved(src, layout, channels, dsts)?;
        let fast = match (&self.horizontal, &self.vertical) {
            (Some(h), Some(_)) if !self.vertical_first => Some(h),
            (Some(h), None) => Some(h),
            _ => None,
        };
        if let Some(h) = fast {
            self.transpose_source(h, src, layout, scratch);
            for (&channel, dst) in channels.iter().zip(dsts.iter_mut()) {
                self.horizontal_first_channel(h, layout.pixel_bytes, channel, scratch, dst);
            }
            return Ok(());
        }
        // Vertical pass first or no horizontal pass: one plane at a time.
        let mut plane = std::mem::take(&mut scratch.plane);
        let (w, h) = (self.input_width_px, self.input_height_px);
        plane.resize(w * h, 0);
        let mut result = Ok(());
        for (&channel, dst) in channels.iter().zip(dsts.iter_mut()) {
            for (y, row) in plane.chunks_exact_mut(w).enumerate() {
                let start = y * layout.row_stride_bytes + channel;
                let pixels = src
                    .get(start..)
                    .unwrap_or(&[])
                    .iter()
                    .step_by(layout.pixel_bytes);
                for (d, &s) in row.iter_mut().zip(pixels) {
                    *d = s;
                }
            }
            result = result.and(self.run(&plane, scratch, dst));
        }
        scratch.plane = plane;
        result
    }

    fn check_interleaved(
        &self,
        src: &[u8],
        layout: Interleaved,
        channels: &[usize],
        dsts: &[&mut [u8]],
    ) -> Result<(), PilResizeError> {
        let (w, h) = (self.input_width_px, self.input_height_px);
        let row_bytes = w.saturating_mul(layout.pixel_bytes);
        let needed = layout
            .row_stride_bytes
            .saturating_mul(h - 1)
            .saturating_add(row_bytes);
        let channels_ok =
            channels.len() == dsts.len() && channels.iter().all(|&c| c < layout.pixel_bytes);
        if layout.pixel_bytes == 0
            || layout.row_stride_bytes < row_bytes
            || src.len() < needed
            || !channels_ok
        {
            return Err(PilResizeError::SourceLayout {
                width_px: w,
                height_px: h,
                pixel_bytes: layout.pixel_bytes,
                row_stride_bytes: layout.row_stride_bytes,
                channels: channels.len(),
                actual: src.len(),
            });
        }
        let crop = self.crop.width_px * self.crop.height_px;
        if let Some(d) = dsts.iter().find(|d| d.len() != crop) {
            return Err(PilResizeError::DestinationSize {
                expected: crop,
                actual: d.len(),
                width_px: self.crop.width_px,
                height_px: self.crop.height_px,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::CropRect;
    use super::*;

    /// Every pass order and skipped pass, with padding bytes and an ignored fourth channel:
    /// each channel equals the single-channel run on its own plane.
    #[test]
    fn interleaved_channels_equal_planar_runs() {
        let mut seed = 0x1234_5678_u32;
        for (w, h, ow, oh) in [
            (64, 48, 30, 22),
            (300, 700, 224, 522),
            (56, 40, 56, 90),
            (40, 56, 90, 56),
            (33, 21, 33, 21),
            (160, 120, 298, 224),
        ] {
            let (pixel_bytes, stride) = (4, w * 4 + 7);
            let src: Vec<u8> = (0..stride * h)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    if seed % 5 == 0 {
                        255
                    } else {
                        seed as u8
                    }
                })
                .collect();
            let crop = CropRect {
                left_px: ow / 7,
                top_px: oh / 5,
                width_px: ow - ow / 7 - 1,
                height_px: oh - oh / 5,
            };
            let plan = PilResizePlan::new(w, h, ow, oh, crop).unwrap();
            let n = crop.width_px * crop.height_px;
            let mut outs = [vec![0u8; n], vec![0u8; n], vec![0u8; n]];
            let mut dsts: Vec<&mut [u8]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
            let layout = Interleaved {
                row_stride_bytes: stride,
                pixel_bytes,
            };
            let mut scratch = PilResizeScratch::default();
            plan.run_interleaved(&src, layout, &[2, 0, 1], &mut scratch, &mut dsts)
                .unwrap();
            for (out, channel) in outs.iter().zip([2, 0, 1]) {
                let plane: Vec<u8> = (0..h)
                    .flat_map(|y| (0..w).map(move |x| (y, x)))
                    .map(|(y, x)| src[y * stride + x * pixel_bytes + channel])
                    .collect();
                let mut want = vec![0u8; n];
                plan.run(&plane, &mut scratch, &mut want).unwrap();
                assert_eq!(out, &want, "{w}x{h} -> {ow}x{oh}, channel {channel}");
            }
        }
    }

    #[test]
    fn bad_interleaved_layouts_are_errors() {
        let plan = PilResizePlan::full(4, 3, 2, 2).unwrap();
        let mut s = PilResizeScratch::default();
        let (mut a, mut b) = ([0u8; 4], [0u8; 4]);
        let layout = Interleaved {
            row_stride_bytes: 12,
            pixel_bytes: 3,
        };
        let mut dsts: Vec<&mut [u8]> = vec![&mut a, &mut b];
        assert!(plan
            .run_interleaved(&[0; 36], layout, &[0, 1], &mut s, &mut dsts)
            .is_ok());
        // One byte short, a channel outside the pixel, a stride shorter than a row.
        assert!(plan
            .run_interleaved(&[0; 35], layout, &[0, 1], &mut s, &mut dsts)
            .is_err());
        assert!(plan
            .run_interleaved(&[0; 36], layout, &[0, 3], &mut s, &mut dsts)
            .is_err());
        let short = Interleaved {
            row_stride_bytes: 11,
            ..layout
        };
        assert!(plan
            .run_interleaved(&[0; 36], short, &[0, 1], &mut s, &mut dsts)
            .is_err());
    }
}
