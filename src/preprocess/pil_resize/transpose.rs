//! Byte transposes through 16 x 16 tiles, so both passes run the same column kernel.

use wide::u8x16;

use super::kernels::load16;

/// Side of the square blocks the byte transpose moves through vector registers.
pub(super) const TILE: usize = 16;

/// Transposes the `rows x cols` bytes at `src` (row stride `src_stride`) into `dst`, whose
/// row `c` (source column `c`) is `dst_blocks` 16-byte blocks of source rows. Whole 16 x 16
/// tiles go through registers: four rounds of interleaving the bytes of row `i` with row
/// `i + 8` (`punpck{l,h}bw`, NEON `zip1`/`zip2`) transpose a tile. Tiles at the right and
/// bottom edges read past the region (or zeros past `src`) into padding nobody reads.
#[inline(never)]
pub(super) fn transpose_to_blocks(
    src: &[u8],
    src_stride: usize,
    rows: usize,
    cols: usize,
    dst: &mut [u8x16],
    dst_blocks: usize,
) {
    // Four row blocks (64 bytes of every destination row) per sweep: each destination cache
    // line is written whole and the source rows of a sweep stay in L1.
    let row_blocks = rows.div_ceil(TILE);
    for group in (0..row_blocks).step_by(4) {
        for c in (0..cols).step_by(TILE) {
            for rb in group..(group + 4).min(row_blocks) {
                transpose_tile_to_blocks(src, src_stride, rb, c, dst, dst_blocks);
            }
        }
    }
}

/// One tile of [`transpose_to_blocks`]: source rows `16 rb..`, columns `c..c + 16`.
#[inline(always)]
fn transpose_tile_to_blocks(
    src: &[u8],
    src_stride: usize,
    rb: usize,
    c: usize,
    dst: &mut [u8x16],
    dst_blocks: usize,
) {
    {
        {
            let base = rb * TILE * src_stride + c;
            let mut t = [u8x16::ZERO; TILE];
            for (i, v) in t.iter_mut().enumerate() {
                *v = load16(src, base + i * src_stride);
            }
            let t = interleave_round(interleave_round(interleave_round(interleave_round(t))));
            for (i, &v) in t.iter().enumerate() {
                if let Some(d) = dst.get_mut((c + i) * dst_blocks + rb) {
                    *d = v;
                }
            }
        }
    }
}

/// The inverse layout change: `src` has `src_rows` rows of `src_blocks` 16-byte blocks; writes
/// its transpose into `dst`, rows of `dst_blocks` blocks (`16 src_blocks` rows; the lanes past
/// `src_rows` in the last block of a row are padding).
#[inline(never)]
pub(super) fn transpose_from_blocks(
    src: &[u8x16],
    src_blocks: usize,
    src_rows: usize,
    dst: &mut [u8x16],
    dst_blocks: usize,
) {
    // Row block outer: the 16 destination rows of a block are written left to right while the
    // source blocks read stay in L1 for the next row block.
    for rb in 0..src_blocks {
        for (jb, j) in (0..src_rows).step_by(TILE).enumerate() {
            let mut t = [u8x16::ZERO; TILE];
            for (i, v) in t.iter_mut().enumerate() {
                *v = src
                    .get((j + i) * src_blocks + rb)
                    .copied()
                    .unwrap_or(u8x16::ZERO);
            }
            let t = interleave_round(interleave_round(interleave_round(interleave_round(t))));
            for (i, &v) in t.iter().enumerate() {
                if let Some(d) = dst.get_mut((rb * TILE + i) * dst_blocks + jb) {
                    *d = v;
                }
            }
        }
    }
}

/// One round of the tile transpose: rows `i` and `i + 8` interleaved into rows `2i`, `2i + 1`.
#[inline(always)]
fn interleave_round(t: [u8x16; TILE]) -> [u8x16; TILE] {
    let mut out = [u8x16::ZERO; TILE];
    for i in 0..TILE / 2 {
        out[2 * i] = u8x16::unpack_low(t[i], t[i + TILE / 2]);
        out[2 * i + 1] = u8x16::unpack_high(t[i], t[i + TILE / 2]);
    }
    out
}
