//! `torchaudio.compliance.kaldi.fbank` exactly as ImageBind calls it (SPEC.md §2.4):
//! 16 kHz, 25 ms / 10 ms frames (400 / 160 samples), `snip_edges`, per-frame DC removal,
//! pre-emphasis 0.97, symmetric Hann window, FFT size 512, power spectrum, 128 mel bins
//! 20..8000 Hz, `log(max(e, f32::EPSILON))`, channel 0 only.

use std::sync::Arc;

use ndarray::ArrayViewMut2;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::AudioError;

/// Frame length in samples (25 ms at 16 kHz).
pub const FRAME_LENGTH: usize = 400;
/// Frame shift in samples (10 ms at 16 kHz).
pub const FRAME_SHIFT: usize = 160;
/// FFT size: the frame length rounded up to a power of two.
pub const FFT_SIZE: usize = 512;
/// Minimum number of samples kaldi.fbank accepts (one frame; fewer is an assertion error).
pub const MIN_FBANK_SAMPLES: usize = FRAME_LENGTH;
/// Smallest mel bin count torchaudio accepts (`assert num_bins > 3`).
pub const MIN_MEL_BINS: usize = 4;
/// Largest mel bin count accepted here (bounds the table size).
pub const MAX_MEL_BINS: usize = 1024;

const SAMPLE_RATE_HZ: f64 = 16_000.0;
const LOW_FREQ_HZ: f64 = 20.0;
const PREEMPHASIS: f32 = 0.97;
const NUM_FFT_BINS: usize = FFT_SIZE / 2; // the Nyquist bin has weight 0 in every mel band
/// Frames per tile between the mel stage and the transposed write (8 × 128 × 4 B = 4 KiB).
const TILE_FRAMES: usize = 8;

/// Precomputed Kaldi filter-bank tables (window, sparse mel matrix, FFT plan) and scratch buffers.
pub struct KaldiFbank {
    num_mel_bins: usize,
    window: Vec<f32>,
    /// Sparse mel matrix: consecutive bands grouped by padded width (bands widen with
    /// frequency: ~1 FFT bin at 20 Hz, ~11 near 8 kHz).
    mel_groups: Vec<MelGroup>,
    /// Complex FFT of [`FFT_SIZE`] points: two real frames per transform, one as the real and
    /// one as the imaginary part (cheaper than a real FFT per frame, whose real-to-complex
    /// post-processing cost three times the complex FFT it wraps).
    fft: Arc<dyn Fft<f32>>,
    /// The two windowed frames of a pair, [`FRAME_LENGTH`] samples each.
    frame_a: Vec<f32>,
    frame_b: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    fft_scratch: Vec<Complex<f32>>,
    /// Power spectra of the two frames.
    power_a: Vec<f32>,
    power_b: Vec<f32>,
    /// Frame-major mel energies / log-mel of one tile of frames.
    energies: Vec<f32>,
}

impl std::fmt::Debug for KaldiFbank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KaldiFbank")
            .field("num_mel_bins", &self.num_mel_bins)
            .field("mel_groups", &self.mel_groups.len())
            .finish_non_exhaustive()
    }
}

impl KaldiFbank {
    /// Builds the window, the mel matrix (in f32 like torchaudio) and the FFT plan.
    ///
    /// # Errors
    /// [`AudioError::InvalidParams`] if `num_mel_bins` is outside
    /// [`MIN_MEL_BINS`]..=[`MAX_MEL_BINS`].
    pub fn new(num_mel_bins: usize) -> Result<Self, AudioError> {
        if !(MIN_MEL_BINS..=MAX_MEL_BINS).contains(&num_mel_bins) {
            return Err(AudioError::InvalidParams {
                field: "num_mel_bins",
                reason: format!(
                    "{num_mel_bins} is outside {MIN_MEL_BINS}..={MAX_MEL_BINS} (torchaudio requires > 3)"
                ),
            });
        }
        let window = hann_symmetric(FRAME_LENGTH);
        let mel_groups = sparse_mel_banks(num_mel_bins);
        let max_stride = mel_groups.iter().map(|g| g.stride).max().unwrap_or(0);
        let fft = FftPlanner::<f32>::new().plan_fft_forward(FFT_SIZE);
        let fft_scratch = vec![Complex::new(0.0, 0.0); fft.get_inplace_scratch_len()];
        Ok(Self {
            num_mel_bins,
            window,
            mel_groups,
            fft,
            frame_a: vec![0.0; FRAME_LENGTH],
            frame_b: vec![0.0; FRAME_LENGTH],
            spectrum: vec![Complex::new(0.0, 0.0); FFT_SIZE],
            fft_scratch,
            // Padded so that the last band's fixed-length window stays inside the buffer.
            power_a: vec![0.0; NUM_FFT_BINS + max_stride],
            power_b: vec![0.0; NUM_FFT_BINS + max_stride],
            energies: Vec::new(),
        })
    }

    /// Number of mel bins (rows of the output).
    pub fn num_mel_bins(&self) -> usize {
        self.num_mel_bins
    }

    /// Frames kaldi produces for `num_samples` (snip_edges): `1 + (L - 400) / 160`, 0 if `L < 400`.
    pub fn num_frames(num_samples: usize) -> usize {
        if num_samples < FRAME_LENGTH {
            0
        } else {
            1 + (num_samples - FRAME_LENGTH) / FRAME_SHIFT
        }
    }

    /// Writes the log-mel spectrogram of `samples` (16 kHz) transposed into `out`
    /// (`[num_mel_bins, target_frames]`): column `f` holds frame `f`, frames beyond the output
    /// width are cropped and missing columns are filled with 0.0 (ImageBind pads in the
    /// log-mel domain). Returns the number of frames kaldi produced.
    ///
    /// # Errors
    /// [`AudioError::TooShort`] if `samples.len() < 400`; [`AudioError::ShapeMismatch`] if `out`
    /// does not have `num_mel_bins` rows; [`AudioError::Fft`] if the FFT rejects its buffers.
    pub fn compute_into(
        &mut self,
        samples: &[f32],
        mut out: ArrayViewMut2<'_, f32>,
    ) -> Result<usize, AudioError> {
        if samples.len() < MIN_FBANK_SAMPLES {
            return Err(AudioError::TooShort {
                what: "fbank input at 16 kHz",
                samples: samples.len(),
                min: MIN_FBANK_SAMPLES,
            });
        }
        if out.nrows() != self.num_mel_bins {
            return Err(AudioError::ShapeMismatch {
                what: "fbank output rows (mel bins)",
                expected: self.num_mel_bins,
                actual: out.nrows(),
            });
        }
        let num_frames = Self::num_frames(samples.len());
        let mels = self.num_mel_bins;
        let width = out.ncols();
        let computed = num_frames.min(width);
        // Frames are processed in tiles: energies of TILE frames (frame-major, L1-resident), one
        // vectorised log pass, then a transposed write of TILE contiguous columns per mel row.
        let mut energies = std::mem::take(&mut self.energies);
        energies.clear();
        energies.resize(TILE_FRAMES * mels, 0.0);
        let mut result = Ok(());
        let mut tile_start = 0;
        'tiles: while tile_start < computed {
            let tile_len = TILE_FRAMES.min(computed - tile_start);
            let tile = energies.get_mut(..tile_len * mels).unwrap_or(&mut []);
            // TILE_FRAMES is even: only a tile cut short by the last frame can end in a lone frame.
            for (i, pair_energies) in tile.chunks_mut(2 * mels).enumerate() {
                let start = (tile_start + 2 * i) * FRAME_SHIFT;
                let frame_a = samples.get(start..start + FRAME_LENGTH).unwrap_or(&[]);
                let (energies_a, energies_b) =
                    pair_energies.split_at_mut(mels.min(pair_energies.len()));
                let start_b = start + FRAME_SHIFT;
                let frame_b = if energies_b.is_empty() {
                    &[]
                } else {
                    samples.get(start_b..start_b + FRAME_LENGTH).unwrap_or(&[])
                };
                if let Err(e) = self.pair_mel_energies(frame_a, frame_b, energies_a, energies_b) {
                    result = Err(e);
                    break 'tiles;
                }
            }
            log_with_floor(tile);
            write_transposed(tile, mels, &mut out, tile_start);
            tile_start += tile_len;
        }
        // ImageBind pads with 0.0 in the log-mel domain.
        out.slice_mut(ndarray::s![.., computed..]).fill(0.0);
        self.energies = energies;
        result.map(|()| num_frames)
    }

    /// Mel energies (before the log) of two 400-sample frames (`frame_b` may be empty: a lone
    /// last frame) into `energies_a` and `energies_b`.
    ///
    /// One complex FFT of `z = a + i·b` gives both spectra through conjugate symmetry:
    /// `A[k] = (Z[k] + conj Z[N-k]) / 2`, `B[k] = (Z[k] - conj Z[N-k]) / 2i`, and only their
    /// powers are needed.
    fn pair_mel_energies(
        &mut self,
        frame_a: &[f32],
        frame_b: &[f32],
        energies_a: &mut [f32],
        energies_b: &mut [f32],
    ) -> Result<(), AudioError> {
        if self.spectrum.len() != FFT_SIZE
            || self.fft_scratch.len() < self.fft.get_inplace_scratch_len()
        {
            // rustfft panics on wrong buffer sizes; they are fixed in `new`, so this cannot fire.
            return Err(AudioError::Fft(format!(
                "buffer of {} points / scratch of {} for a {FFT_SIZE}-point plan",
                self.spectrum.len(),
                self.fft_scratch.len()
            )));
        }
        windowed_frame(&self.window, frame_a, &mut self.frame_a);
        if frame_b.is_empty() {
            self.frame_b.fill(0.0);
        } else {
            windowed_frame(&self.window, frame_b, &mut self.frame_b);
        }
        let (head, tail) = self.spectrum.split_at_mut(FRAME_LENGTH);
        for (z, (&a, &b)) in head.iter_mut().zip(self.frame_a.iter().zip(&self.frame_b)) {
            *z = Complex::new(a, b);
        }
        // The FFT works in place: restore the zero padding every pair.
        tail.fill(Complex::new(0.0, 0.0));
        self.fft
            .process_with_scratch(&mut self.spectrum, &mut self.fft_scratch);
        // Bins past Nyquist (padding) stay 0; the Nyquist bin itself has weight 0 everywhere.
        if let (Some(z0), Some(pa), Some(pb)) = (
            self.spectrum.first(),
            self.power_a.first_mut(),
            self.power_b.first_mut(),
        ) {
            *pa = z0.re * z0.re;
            *pb = z0.im * z0.im;
        }
        if let (Some(low), Some(high), Some(pa), Some(pb)) = (
            self.spectrum.get(1..NUM_FFT_BINS),
            self.spectrum.get(FFT_SIZE - NUM_FFT_BINS + 1..),
            self.power_a.get_mut(1..NUM_FFT_BINS),
            self.power_b.get_mut(1..NUM_FFT_BINS),
        ) {
            // |A|² = ((Re Z[k] + Re Z[N-k])² + (Im Z[k] - Im Z[N-k])²) / 4, B likewise.
            let pairs = low.iter().zip(high.iter().rev());
            for ((zk, zm), (pa, pb)) in pairs.zip(pa.iter_mut().zip(pb.iter_mut())) {
                let (re_sum, re_diff) = (zk.re + zm.re, zk.re - zm.re);
                let (im_sum, im_diff) = (zk.im + zm.im, zk.im - zm.im);
                *pa = (re_sum * re_sum + im_diff * im_diff) * 0.25;
                *pb = (im_sum * im_sum + re_diff * re_diff) * 0.25;
            }
        }
        mel_energies(&self.mel_groups, &self.power_a, energies_a);
        if !frame_b.is_empty() {
            mel_energies(&self.mel_groups, &self.power_b, energies_b);
        }
        Ok(())
    }
}

/// Kaldi's per-frame DC removal, pre-emphasis and window of one 400-sample frame into `out`.
fn windowed_frame(window: &[f32], frame_in: &[f32], out: &mut [f32]) {
    // remove_dc_offset (torch.mean of an f32 row, then subtract).
    let mean = sum_lanes(frame_in) / FRAME_LENGTH as f32;
    // One fused pass with torch's per-element f32 operation order:
    // y = x - mean; z[j] = y[j] - 0.97·y[j-1] (y[-1] := y[0]); z·window.
    let (Some(&x0), Some(h0)) = (frame_in.first(), out.first_mut()) else {
        return;
    };
    let y0 = x0 - mean;
    *h0 = (y0 - PREEMPHASIS * y0) * window.first().copied().unwrap_or(0.0);
    let n = FRAME_LENGTH;
    if let (Some(h), Some(w), Some(x), Some(x_prev)) = (
        out.get_mut(1..n),
        window.get(1..n),
        frame_in.get(1..n),
        frame_in.get(..n - 1),
    ) {
        for (((h, &w), &x), &x_prev) in h.iter_mut().zip(w).zip(x).zip(x_prev) {
            *h = ((x - mean) - PREEMPHASIS * (x_prev - mean)) * w;
        }
    }
}

/// Mel energies of one power spectrum, band groups in order.
fn mel_energies(groups: &[MelGroup], power: &[f32], energies: &mut [f32]) {
    let mut rest = energies;
    for group in groups {
        let (head, tail) = rest.split_at_mut(group.first_bins.len().min(rest.len()));
        rest = tail;
        match group.stride / 4 {
            1 => group.energies::<1>(power, head),
            2 => group.energies::<2>(power, head),
            3 => group.energies::<3>(power, head),
            4 => group.energies::<4>(power, head),
            5 => group.energies::<5>(power, head),
            6 => group.energies::<6>(power, head),
            _ => group.energies_any(power, head),
        }
    }
}

/// Consecutive mel bands sharing one padded width.
#[derive(Debug, Clone)]
struct MelGroup {
    /// First FFT bin of each band.
    first_bins: Vec<usize>,
    /// Band `i` weights are `weights[i·stride..(i + 1)·stride]`: its positive triangle weights
    /// followed by zero padding, so every band is one fixed-length dot product.
    weights: Vec<f32>,
    /// Padded weights per band (a multiple of 4, the SIMD width).
    stride: usize,
}

impl MelGroup {
    /// Energies with `C` chunks of 4 weights per band known at compile time (fully unrolled).
    fn energies<const C: usize>(&self, power: &[f32], out: &mut [f32]) {
        let bands = self.weights.chunks_exact(C * 4).zip(&self.first_bins);
        for (e, (weights, &first)) in out.iter_mut().zip(bands) {
            if let Some(p) = power.get(first..first + C * 4) {
                *e = super::resample::dot_fixed::<C>(weights, p);
            }
        }
    }

    /// Energies for wide bands (few mel bins).
    fn energies_any(&self, power: &[f32], out: &mut [f32]) {
        let bands = self.weights.chunks_exact(self.stride).zip(&self.first_bins);
        for (e, (weights, &first)) in out.iter_mut().zip(bands) {
            if let Some(p) = power.get(first..first + self.stride) {
                *e = super::resample::dot_lanes(weights, p);
            }
        }
    }
}

/// Writes a frame-major tile (`tile[f·mels + m]`) into columns `first_frame..` of `out[m, f]`.
fn write_transposed(
    tile: &[f32],
    mels: usize,
    out: &mut ArrayViewMut2<'_, f32>,
    first_frame: usize,
) {
    let frames = tile.len() / mels.max(1);
    let width = out.ncols();
    if let Some(flat) = out.as_slice_mut() {
        // Standard layout (every caller in this crate): contiguous row segments.
        for (m, row) in flat.chunks_exact_mut(width.max(1)).enumerate() {
            let dst = row
                .get_mut(first_frame..first_frame + frames)
                .unwrap_or(&mut []);
            let src = tile.get(m..).unwrap_or(&[]).iter().step_by(mels.max(1));
            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v);
        }
    } else {
        let columns = out.columns_mut().into_iter().skip(first_frame);
        for (mut column, frame) in columns.zip(tile.chunks_exact(mels.max(1))) {
            column.iter_mut().zip(frame).for_each(|(d, &v)| *d = v);
        }
    }
}

/// `log(max(e, f32::EPSILON))` in place (kaldi.py L606), branch-free so it vectorises.
///
/// Cephes `logf` (maximum relative error ~1e-7, i.e. within a few ulp of libm's `logf` and of
/// torch's vectorised log): ln(x) = e·ln2 + ln(m) with m in [√½, √2), a degree-8 polynomial in
/// m - 1 and ln2 split in two parts for accuracy. Inputs are ≥ EPSILON after the floor, hence
/// normal; +inf stays +inf (NaN cannot occur: inputs are checked finite).
fn log_with_floor(values: &mut [f32]) {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 9] = [
        7.037_683_6e-2,
        -1.151_461e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_5e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ];
    // Written with bit masks instead of branches so LLVM vectorises the loop (with `if`s it
    // stays scalar, measured 3x slower).
    for v in values.iter_mut() {
        let x = v.max(f32::EPSILON);
        let bits = x.to_bits();
        // x = m · 2^e with m in [0.5, 1); then m in [√½, √2) by moving one factor 2.
        let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
        let small = m < SQRT_HALF;
        let e = ((bits >> 23) & 0xff) as i32 - 126 - i32::from(small);
        let m_if_small = f32::from_bits(m.to_bits() & u32::from(small).wrapping_neg());
        let m = (m + m_if_small) - 1.0;
        let z = m * m;
        let y = P.iter().skip(1).fold(P[0], |acc, &c| acc * m + c);
        let ef = e as f32;
        let mut r = y * m * z;
        r += ef * LN2_LO;
        r -= 0.5 * z;
        let ln = m + r + ef * LN2_HI;
        // +inf (exponent all ones) passes through unchanged.
        let finite = u32::from(bits & 0x7f80_0000 != 0x7f80_0000).wrapping_neg();
        *v = f32::from_bits((ln.to_bits() & finite) | (bits & !finite));
    }
}

/// `torch.hann_window(n, periodic=False)` in f32: `0.5 - 0.5·cos(2π·j/(n-1))`.
fn hann_symmetric(n: usize) -> Vec<f32> {
    // torch: arange(n).mul_(2π/(n-1)).cos_().mul_(-0.5).add_(0.5), f32 throughout.
    let step = (std::f64::consts::PI * 2.0 / (n.max(2) - 1) as f64) as f32;
    (0..n)
        .map(|j| {
            let c = ((j as f32 * step) as f64).cos() as f32;
            c * -0.5 + 0.5
        })
        .collect()
}

/// `1127·ln(1 + f/700)` in f32, as torchaudio's tensor `mel_scale`.
fn mel_f32(freq_hz: f32) -> f32 {
    let x = 1.0f32 + freq_hz / 700.0;
    1127.0f32 * ((x as f64).ln() as f32)
}

/// torchaudio `get_mel_banks` (vtln off) in f32, stored sparsely in width groups.
fn sparse_mel_banks(num_bins: usize) -> Vec<MelGroup> {
    // Scalars are Python floats (f64); tensors f32 (torch default dtype).
    let mel_scalar = |f: f64| 1127.0 * (1.0 + f / 700.0).ln();
    let high_hz = 0.5 * SAMPLE_RATE_HZ; // high_freq = 0 → Nyquist
    let mel_low = mel_scalar(LOW_FREQ_HZ);
    let mel_high = mel_scalar(high_hz);
    let delta = ((mel_high - mel_low) / (num_bins + 1) as f64) as f32;
    let mel_low = mel_low as f32;
    let bin_width_hz = (SAMPLE_RATE_HZ / FFT_SIZE as f64) as f32;
    let fft_mel: Vec<f32> = (0..NUM_FFT_BINS)
        .map(|k| mel_f32(bin_width_hz * k as f32))
        .collect();
    let bands: Vec<(usize, Vec<f32>)> = (0..num_bins)
        .map(|b| {
            let bf = b as f32;
            let left = mel_low + bf * delta;
            let center = mel_low + (bf + 1.0) * delta;
            let right = mel_low + (bf + 2.0) * delta;
            let band: Vec<f32> = fft_mel
                .iter()
                .map(|&mel| {
                    let up = (mel - left) / (center - left);
                    let down = (right - mel) / (right - center);
                    up.min(down).max(0.0)
                })
                .collect();
            // Triangles are convex: the positive weights form one contiguous run.
            let first = band.iter().position(|&w| w > 0.0).unwrap_or(0);
            let end = band.iter().rposition(|&w| w > 0.0).map_or(first, |l| l + 1);
            (first, band.get(first..end).unwrap_or(&[]).to_vec())
        })
        .collect();
    // Group consecutive bands; a new group starts when a band needs more chunks of 4.
    let mut groups: Vec<MelGroup> = Vec::new();
    for (first, w) in bands {
        let chunks = w.len().div_ceil(4).max(1);
        let fits = groups.last().is_some_and(|g| g.stride >= chunks * 4);
        if !fits {
            groups.push(MelGroup {
                first_bins: Vec::new(),
                weights: Vec::new(),
                stride: chunks * 4,
            });
        }
        if let Some(g) = groups.last_mut() {
            g.first_bins.push(first);
            let pad = g.stride - w.len();
            g.weights.extend_from_slice(&w);
            g.weights.extend(std::iter::repeat_n(0.0, pad));
        }
    }
    groups
}

/// Sum with independent accumulators (vectorisable).
fn sum_lanes(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + rest
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn two_seconds_give_198_frames() {
        assert_eq!(KaldiFbank::num_frames(32_000), 198);
        assert_eq!(KaldiFbank::num_frames(399), 0);
        assert_eq!(KaldiFbank::num_frames(400), 1);
    }

    #[test]
    fn mel_matrix_is_sparse_and_skips_nyquist() {
        let fb = KaldiFbank::new(128).unwrap();
        let groups = &fb.mel_groups;
        assert_eq!(
            groups.iter().map(|g| g.first_bins.len()).sum::<usize>(),
            128
        );
        // The widest triangle (near 8 kHz) spans ~11 FFT bins: at most 12 padded taps.
        assert_eq!(groups.iter().map(|g| g.stride).max(), Some(12));
        assert!(groups.len() <= 4, "{} groups", groups.len());
        let mut empty = 0;
        for g in groups {
            for (band, &first) in g.weights.chunks_exact(g.stride).zip(&g.first_bins) {
                // Some low bands are narrower than an FFT bin and have no weight at all (their
                // energy is 0 → log floor, as in torchaudio); the others start at a positive one.
                if band.iter().all(|&w| w == 0.0) {
                    empty += 1;
                    continue;
                }
                assert!(band[0] > 0.0);
                let len = band.iter().filter(|&&w| w > 0.0).count();
                assert!(first + len <= NUM_FFT_BINS, "Nyquist bin never used");
            }
        }
        assert!(empty < 10, "{empty} empty bands");
    }

    #[test]
    fn silence_hits_the_log_floor() {
        let mut fb = KaldiFbank::new(128).unwrap();
        let mut out = ndarray::Array2::<f32>::from_elem((128, 204), 7.0);
        let frames = fb.compute_into(&[0.0; 800], out.view_mut()).unwrap();
        assert_eq!(frames, 3);
        assert!((out[(5, 0)] - f32::EPSILON.ln()).abs() < 1e-6);
        assert_eq!(out[(5, 3)], 0.0);
    }

    #[test]
    fn vectorised_log_matches_libm_within_two_ulp() {
        let mut x = 1.0e-9f32;
        while x < 1.0e12 {
            let mut v = [x];
            log_with_floor(&mut v);
            let expected = x.max(f32::EPSILON).ln();
            let ulp = f32::from_bits(expected.abs().to_bits() + 1) - expected.abs();
            assert!(
                (v[0] - expected).abs() <= 2.0 * ulp,
                "x={x}: {} vs {expected}",
                v[0]
            );
            x *= 1.000_37;
        }
        let mut special = [f32::INFINITY, 0.0, -1.0];
        log_with_floor(&mut special);
        assert_eq!(special[0], f32::INFINITY);
        assert_eq!(special[1], f32::EPSILON.ln());
        assert_eq!(special[2], f32::EPSILON.ln());
    }

    #[test]
    fn non_contiguous_output_views_get_the_same_values() {
        let samples: Vec<f32> = (0..5_000)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let mut fb = KaldiFbank::new(128).unwrap();
        let mut contiguous = ndarray::Array2::<f32>::zeros((128, 40));
        fb.compute_into(&samples, contiguous.view_mut()).unwrap();
        let mut wide = ndarray::Array2::<f32>::from_elem((128, 50), 9.0);
        let frames = fb
            .compute_into(&samples, wide.slice_mut(ndarray::s![.., 5..45]))
            .unwrap();
        assert_eq!(frames, 29);
        assert_eq!(wide.slice(ndarray::s![.., 5..45]), contiguous);
        assert!(wide.slice(ndarray::s![.., ..5]).iter().all(|&v| v == 9.0));
        assert!(contiguous
            .slice(ndarray::s![.., 29..])
            .iter()
            .all(|&v| v == 0.0));
    }

    #[test]
    fn frames_sharing_an_fft_match_each_frame_computed_alone() {
        // 9 frames: four FFT pairs and a lone last frame, in two tiles.
        let samples: Vec<f32> = (0..1_680)
            .map(|i| (i as f32 * 0.37).sin() * 0.5 + ((i * 13 % 29) as f32 - 14.0) / 40.0)
            .collect();
        let mut fb = KaldiFbank::new(128).unwrap();
        let mut all = ndarray::Array2::<f32>::zeros((128, 9));
        assert_eq!(fb.compute_into(&samples, all.view_mut()).unwrap(), 9);
        let mut alone = ndarray::Array2::<f32>::zeros((128, 1));
        let (mut max, mut sum) = (0.0f32, 0.0f32);
        for f in 0..9 {
            let frame = &samples[f * FRAME_SHIFT..f * FRAME_SHIFT + FRAME_LENGTH];
            fb.compute_into(frame, alone.view_mut()).unwrap();
            for m in 0..128 {
                let d = (all[(m, f)] - alone[(m, 0)]).abs();
                (max, sum) = (max.max(d), sum + d);
            }
        }
        // The partner frame's rounding shows only in the weakest bands (power ~1e-6 of the
        // strongest): measured max 3.6e-3, mean 5.7e-5 in log-mel, i.e. 2e-4 after ImageBind's
        // normalisation (÷ 2·9.138), against the 1e-2 parity tolerance.
        let mean = sum / (9.0 * 128.0);
        assert!(max < 1e-2 && mean < 1e-4, "max {max} mean {mean}");
    }

    #[test]
    fn too_short_input_is_an_error() {
        let mut fb = KaldiFbank::new(128).unwrap();
        let mut out = ndarray::Array2::<f32>::zeros((128, 204));
        assert!(matches!(
            fb.compute_into(&[0.0; 399], out.view_mut()),
            Err(AudioError::TooShort { .. })
        ));
    }
}
