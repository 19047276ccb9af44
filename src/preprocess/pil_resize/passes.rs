//! The two passes of a [`PilResizePlan`] in either order, over the planned crop.

use wide::u8x16;

use super::coeffs::AxisCoeffs;
use super::kernels::{block_taps, horizontal_row, vertical_row};
use super::transpose::{transpose_from_blocks, transpose_to_blocks, TILE};
use super::{Interleaved, PilResizePlan, PilResizeScratch};

impl PilResizePlan {
    /// Horizontal pass, then the vertical one (or the row crop when the height is unchanged).
    ///
    /// Both passes run with the same kernel, 16 independent outputs of one tap set at a time
    /// (per-pixel dot products over short windows vectorise poorly): the source rows the
    /// horizontal pass needs are transposed into 16-byte blocks so its taps run down columns,
    /// and its output is transposed back, also into 16-byte blocks, for the vertical pass.
    pub(super) fn run_horizontal_first(
        &self,
        h: &AxisCoeffs,
        src: &[u8],
        scratch: &mut PilResizeScratch,
        dst: &mut [u8],
    ) {
        let source = Interleaved {
            row_stride_bytes: self.input_width_px,
            pixel_bytes: 1,
        };
        self.transpose_source(h, src, source, scratch);
        self.horizontal_first_channel(h, source.pixel_bytes, 0, scratch, dst);
    }

    /// Transposes the source region the horizontal pass reads (the plan's rows, the columns of
    /// `h`'s input span, every byte of each pixel) into `scratch.source_t`.
    pub(super) fn transpose_source(
        &self,
        h: &AxisCoeffs,
        src: &[u8],
        source: Interleaved,
        scratch: &mut PilResizeScratch,
    ) {
        let n_rows = self.rows.len();
        let row_blocks = n_rows.div_ceil(TILE);
        let cols = h.input_span();
        let col_bytes = cols.len() * source.pixel_bytes;
        scratch
            .source_t
            .resize(col_bytes.next_multiple_of(TILE) * row_blocks, u8x16::ZERO);
        let first = self.rows.start * source.row_stride_bytes + cols.start * source.pixel_bytes;
        transpose_to_blocks(
            src.get(first..).unwrap_or(&[]),
            source.row_stride_bytes,
            n_rows,
            col_bytes,
            &mut scratch.source_t,
            row_blocks,
        );
    }

    /// The horizontal pass of byte `channel` of every pixel in the transposed source, then the
    /// vertical pass (or the row crop) into `dst`.
    pub(super) fn horizontal_first_channel(
        &self,
        h: &AxisCoeffs,
        pixel_bytes: usize,
        channel: usize,
        scratch: &mut PilResizeScratch,
        dst: &mut [u8],
    ) {
        let crop_w = self.crop.width_px;
        let n_rows = self.rows.len();
        let row_blocks = n_rows.div_ceil(TILE);
        let cols = h.input_span();
        scratch
            .intermediate_t
            .resize(crop_w * row_blocks, u8x16::ZERO);
        // Consecutive pixels of one channel are `pixel_bytes` transposed rows apart.
        let tap_stride = pixel_bytes * row_blocks;
        for ((start, _, _, kp), out) in h
            .split_taps()
            .zip(scratch.intermediate_t.chunks_exact_mut(row_blocks))
        {
            let first = ((start - cols.start) * pixel_bytes + channel) * row_blocks;
            for (b, o) in out.iter_mut().enumerate() {
                *o = block_taps(kp, &scratch.source_t, first + b, tap_stride);
            }
        }
        let crop_blocks = crop_w.div_ceil(TILE);
        scratch
            .intermediate_b
            .resize(n_rows.next_multiple_of(TILE) * crop_blocks, u8x16::ZERO);
        transpose_from_blocks(
            &scratch.intermediate_t,
            row_blocks,
            crop_w,
            &mut scratch.intermediate_b,
            crop_blocks,
        );
        let inter = &scratch.intermediate_b;
        match &self.vertical {
            Some(v) => {
                for ((start, _, _, kp), out_row) in v.split_taps().zip(dst.chunks_exact_mut(crop_w))
                {
                    let first = (start - self.rows.start) * crop_blocks;
                    for (b, out) in out_row.chunks_mut(TILE).enumerate() {
                        let bytes = block_taps(kp, inter, first + b, crop_blocks);
                        out.copy_from_slice(&bytes.as_array_ref()[..out.len()]);
                    }
                }
            }
            None => {
                for (i, out_row) in dst.chunks_exact_mut(crop_w).enumerate() {
                    let first = (self.crop.top_px + i - self.rows.start) * crop_blocks;
                    for (b, out) in out_row.chunks_mut(TILE).enumerate() {
                        if let Some(v) = inter.get(first + b) {
                            out.copy_from_slice(&v.as_array_ref()[..out.len()]);
                        }
                    }
                }
            }
        }
    }

    /// Vertical pass (cropped rows, only the source columns the cropped horizontal outputs
    /// read) into the u8 intermediate, then the horizontal pass.
    pub(super) fn run_vertical_first(
        &self,
        h: &AxisCoeffs,
        v: &AxisCoeffs,
        src: &[u8],
        scratch: &mut PilResizeScratch,
        dst: &mut [u8],
    ) {
        let crop_w = self.crop.width_px;
        let cols = h.input_span();
        // Intermediate rows keep source column indices (0..cols.end) so the horizontal taps
        // apply unchanged; columns before `cols.start` are never read.
        let inter_w = cols.end;
        scratch
            .intermediate
            .resize(self.crop.height_px * inter_w, 0);
        for ((start, kh, kl, kp), inter_row) in v
            .split_taps()
            .zip(scratch.intermediate.chunks_exact_mut(inter_w))
        {
            let first = start * self.input_width_px + cols.start;
            if let Some(out) = inter_row.get_mut(cols.clone()) {
                vertical_row(kh, kl, kp, src, first, self.input_width_px, out);
            }
        }
        for (i, out_row) in dst.chunks_exact_mut(crop_w).enumerate() {
            horizontal_row(h, &scratch.intermediate, i * inter_w, out_row);
        }
    }

    /// Width unchanged (Pillow skips the horizontal pass): the vertical pass, or the plain row
    /// crop when the height is unchanged too, reads the source itself.
    pub(super) fn run_vertical_only(&self, src: &[u8], dst: &mut [u8]) {
        let crop_w = self.crop.width_px;
        let stride = self.input_width_px;
        let col0 = self.crop.left_px;
        match &self.vertical {
            Some(v) => {
                for ((start, kh, kl, kp), out_row) in
                    v.split_taps().zip(dst.chunks_exact_mut(crop_w))
                {
                    vertical_row(kh, kl, kp, src, start * stride + col0, stride, out_row);
                }
            }
            None => {
                for (i, out_row) in dst.chunks_exact_mut(crop_w).enumerate() {
                    let first = (self.crop.top_px + i) * stride + col0;
                    if let Some(row) = src.get(first..first + crop_w) {
                        out_row.copy_from_slice(row);
                    }
                }
            }
        }
    }
}
