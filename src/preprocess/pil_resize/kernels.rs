//! The fixed-point inner loops: Pillow's `sum k * p`, clipped to a byte, 16 pixels at a time.

use wide::{i16x8, i32x4, i32x8, u8x16};

use super::coeffs::AxisCoeffs;
use super::{COLUMN_BLOCK, HALF, PRECISION_BITS, SPLIT_BITS};

/// `clip8(sum_t k[t] * row_t)` for the 16 columns of block `first + t * stride` of `blocks`
/// (rows past the end read as zeros; only an odd last tap's partner, coefficient 0, does).
#[inline(always)]
pub(super) fn block_taps(pairs: &[i16x8], blocks: &[u8x16], first: usize, stride: usize) -> u8x16 {
    let rows = (0..).map(|t| {
        let block = blocks.get(first + t * stride);
        block.copied().unwrap_or(u8x16::ZERO)
    });
    pack_clip8(column_block(pairs, rows))
}

/// Output pixels computed together: four 4-lane reductions packed into one 16-byte store.
const PIXEL_GROUP: usize = 16;

/// 16 bytes of `buf` from `offset`; bytes past the end read as 0. Every caller multiplies the
/// lanes past its window by a zero coefficient, so only the in-range bytes matter.
#[inline(always)]
pub(super) fn load16(buf: &[u8], offset: usize) -> u8x16 {
    match buf.get(offset..offset + 16).map(<[u8; 16]>::try_from) {
        Some(Ok(bytes)) => u8x16::new(bytes),
        _ => load16_tail(buf, offset),
    }
}

/// The first 16 bytes of `row` (zeros if it is shorter; callers checked the range).
#[inline(always)]
fn first16(row: &[u8]) -> u8x16 {
    row.first_chunk::<16>()
        .map_or(u8x16::ZERO, |bytes| u8x16::new(*bytes))
}

/// The rare end-of-buffer case of [`load16`], kept out of line so the hot loops stay small.
#[cold]
#[inline(never)]
fn load16_tail(buf: &[u8], offset: usize) -> u8x16 {
    let mut bytes = [0u8; 16];
    let tail = buf.get(offset..).unwrap_or(&[]);
    for (d, &s) in bytes.iter_mut().zip(tail) {
        *d = s;
    }
    u8x16::new(bytes)
}

/// Four `(sum_hi << SPLIT_BITS) + sum_lo` accumulators of 4 pixels each to 16 clipped bytes
/// (`clip8` lane-wise; the saturating packs clamp exactly like `clamp(0, 255)`).
#[inline(always)]
fn pack_clip8(acc: [i32x4; 4]) -> u8x16 {
    let [a, b, c, d] = acc.map(|v| (v + i32x4::splat(HALF)) >> PRECISION_BITS as i32);
    let ab = i16x8::from_i32x8_saturate(bytemuck::cast::<[i32x4; 2], i32x8>([a, b]));
    let cd = i16x8::from_i32x8_saturate(bytemuck::cast::<[i32x4; 2], i32x8>([c, d]));
    u8x16::narrow_i16x8(ab, cd)
}

/// Horizontal pass of the row of `src` starting at `row_start`: every covered output pixel is
/// a dot product of its window.
pub(super) fn horizontal_row(h: &AxisCoeffs, src: &[u8], row_start: usize, out_row: &mut [u8]) {
    let done = match h.lanes {
        1 => horizontal_row_simd::<1>(h, src, row_start, out_row),
        2 => horizontal_row_simd::<2>(h, src, row_start, out_row),
        _ => 0,
    };
    // Pixels after the last full group (and every pixel of windows longer than 16 taps).
    let src_row = src.get(row_start..).unwrap_or(&[]);
    for ((start, k), out) in h.taps().zip(out_row.iter_mut()).skip(done) {
        let win = src_row.get(start..start + k.len()).unwrap_or(&[]);
        let acc = win
            .iter()
            .zip(k)
            .fold(HALF, |acc, (&p, &c)| acc + i32::from(p) * c);
        *out = clip8(acc);
    }
}

/// Horizontal pass in groups of 16 output pixels with `pmaddwd`-shaped i16 x i16 -> i32
/// pair products (NEON `smull` + `addp`): each pixel loads 16 source bytes from its window
/// start (the lanes past the window have coefficient 0, so reading into the next row is
/// harmless), multiplies them with its `L` high and `L` low 8-tap vectors, and four pixels'
/// partial sums are reduced together by a transpose. Returns the number of pixels written.
fn horizontal_row_simd<const L: usize>(
    h: &AxisCoeffs,
    src: &[u8],
    row_start: usize,
    out_row: &mut [u8],
) -> usize {
    let mut done = 0;
    for ((starts, taps), out) in h
        .starts
        .chunks_exact(PIXEL_GROUP)
        .zip(h.taps8.chunks_exact(PIXEL_GROUP * 2 * L))
        .zip(out_row.chunks_exact_mut(PIXEL_GROUP))
    {
        let mut acc = [i32x4::ZERO; 4];
        for ((acc, starts), taps) in acc
            .iter_mut()
            .zip(starts.chunks_exact(4))
            .zip(taps.chunks_exact(4 * 2 * L))
        {
            let mut sums = [i32x4::ZERO; 4];
            for ((sum, &start), k) in sums.iter_mut().zip(starts).zip(taps.chunks_exact(2 * L)) {
                let w = load16(src, row_start + start);
                let p = [i16x8::from_u8x16_low(w), i16x8::from_u8x16_high(w)];
                let mut hi = i32x4::ZERO;
                let mut lo = i32x4::ZERO;
                for lane in 0..L {
                    hi += p[lane].dot(k[lane]);
                    lo += p[lane].dot(k[L + lane]);
                }
                *sum = (hi << SPLIT_BITS as i32) + lo;
            }
            let [a, b, c, d] = i32x4::transpose(sums);
            *acc = a + b + c + d;
        }
        out.copy_from_slice(pack_clip8(acc).as_array_ref());
        done += PIXEL_GROUP;
    }
    done
}

/// `(acc + 2^21) >> 22` clipped to 0..=255, Pillow's `clip8`.
#[inline(always)]
pub(super) fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `sum_t k[t] * row_t` for 16 columns (as `(sum_hi << SPLIT_BITS) + sum_lo`), the 16 bytes
/// of the rows `t = 0, 1, ...` given by `rows`.
#[inline(always)]
fn column_block(pairs: &[i16x8], mut rows: impl Iterator<Item = u8x16>) -> [i32x4; 4] {
    let mut hi = [i32x4::ZERO; 4];
    let mut lo = [i32x4::ZERO; 4];
    for k in pairs.chunks_exact(2) {
        let a = rows.next().unwrap_or(u8x16::ZERO);
        let b = rows.next().unwrap_or(u8x16::ZERO);
        let ab_lo = u8x16::unpack_low(a, b);
        let ab_hi = u8x16::unpack_high(a, b);
        let p = [
            i16x8::from_u8x16_low(ab_lo),
            i16x8::from_u8x16_high(ab_lo),
            i16x8::from_u8x16_low(ab_hi),
            i16x8::from_u8x16_high(ab_hi),
        ];
        for i in 0..4 {
            hi[i] += p[i].dot(k[0]);
            lo[i] += p[i].dot(k[1]);
        }
    }
    [0, 1, 2, 3].map(|i| (hi[i] << SPLIT_BITS as i32) + lo[i])
}

/// Vertical pass of one output row: `out[c] = clip8(sum_t k[t] * inter[first + t*stride + c])`,
/// 16 columns at a time: the bytes of rows `t` and `t + 1` are interleaved and widened to i16
/// so one pair multiply-add (`pmaddwd`, NEON `smull` + `addp`) applies two taps to 4 columns.
pub(super) fn vertical_row(
    kh: &[i16],
    kl: &[i16],
    pairs: &[i16x8],
    inter: &[u8],
    first: usize,
    stride: usize,
    out_row: &mut [u8],
) {
    let mut col = 0;
    let mut blocks = out_row.chunks_exact_mut(COLUMN_BLOCK);
    // Rows read by one block, including the partner row of an odd last tap (coefficient 0;
    // it may lie past the input, then the checked loads below read zeros).
    let span = (pairs.len().max(1) - 1) * stride + COLUMN_BLOCK;
    for out_block in &mut blocks {
        let base = first + col;
        let acc = match inter.get(base..base + span) {
            Some(rows) => column_block(pairs, rows.chunks(stride.max(1)).map(first16)),
            None => column_block(pairs, (0..).map(|t| load16(inter, base + t * stride))),
        };
        out_block.copy_from_slice(pack_clip8(acc).as_array_ref());
        col += COLUMN_BLOCK;
    }
    for (i, o) in blocks.into_remainder().iter_mut().enumerate() {
        let c = col + i;
        let acc = kh
            .iter()
            .zip(kl)
            .enumerate()
            .fold(0i32, |acc, (t, (&h, &l))| {
                let p = i32::from(inter.get(first + t * stride + c).copied().unwrap_or(0));
                acc + ((i32::from(h) * p) << SPLIT_BITS) + i32::from(l) * p
            });
        *o = clip8(acc + HALF);
    }
}
