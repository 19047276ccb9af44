//! ImageBind's clip sampler: pytorchvideo `ConstantClipsPerVideoSampler` at the commit ImageBind
//! pins, plus the sample slicing of `load_and_transform_audio_data` (SPEC.md §2.3).
//!
//! pytorchvideo computes `max_start = Fraction(max(duration - clip_duration, 0))` where
//! `duration - clip_duration` is a Python float, so the exact binary value of that f64 enters the
//! rational arithmetic; `int(start · 16000)` then truncates. We reproduce this exactly with the
//! f64's mantissa and exponent in u128 integer arithmetic.

use super::AudioError;

/// Sample rate the clips are cut at (ImageBind's `sample_rate`).
pub const CLIP_SAMPLE_RATE_HZ: u32 = 16_000;
/// Clip length in seconds (ImageBind's `clip_duration`).
pub const CLIP_DURATION_S: u32 = 2;
/// Clip length in samples at 16 kHz.
pub const CLIP_SAMPLES: usize = (CLIP_SAMPLE_RATE_HZ * CLIP_DURATION_S) as usize;
/// ImageBind's default `clips_per_video`.
pub const DEFAULT_CLIPS: usize = 3;
/// Upper bound on clips per input, to keep allocations and the exact arithmetic bounded.
pub const MAX_CLIPS: usize = 1024;

/// Sample ranges `[start, end)` of the `clips` clips ImageBind cuts from `n_samples_16k`
/// samples at 16 kHz. `end` may exceed `n_samples_16k`: Python slicing then truncates the clip,
/// which the caller must do too. Always `end = start + 32000`.
///
/// # Errors
/// [`AudioError::InvalidClips`] if `clips` is 0 or above [`MAX_CLIPS`].
pub fn clip_ranges(n_samples_16k: usize, clips: usize) -> Result<Vec<(usize, usize)>, AudioError> {
    if clips == 0 || clips > MAX_CLIPS {
        return Err(AudioError::InvalidClips {
            clips,
            max: MAX_CLIPS,
        });
    }
    // Python: duration = N / 16000 (correctly rounded true division, same as f64 here for any
    // N below 2^53), then the float `duration - 2`, then max(·, 0).
    let duration_s = n_samples_16k as f64 / f64::from(CLIP_SAMPLE_RATE_HZ);
    let max_start_s = (duration_s - f64::from(CLIP_DURATION_S)).max(0.0);
    let (mantissa, exp2) = decompose(max_start_s);
    let divisor = (clips.max(2) - 1) as u128;
    let rate = u128::from(CLIP_SAMPLE_RATE_HZ);
    let mut out = Vec::with_capacity(clips);
    for i in 0..clips {
        // start·16000 = mantissa · 2^exp2 · i · 16000 / divisor, truncated.
        // mantissa < 2^53, i < 2^10, 16000 < 2^14: the product fits in u128 with room to spare.
        let num = u128::from(mantissa) * i as u128 * rate;
        let start = if exp2 >= 0 {
            // Unreachable for usize lengths (max_start < 2^51 ⇒ exp2 ≤ -2), kept total.
            num.checked_shl(exp2.unsigned_abs())
                .filter(|v| v >> exp2.unsigned_abs() == num)
                .unwrap_or(u128::MAX)
                / divisor
        } else {
            // floor(floor(num / d) / 2^s) == floor(num / (d · 2^s)) for non-negative integers.
            let shift = exp2.unsigned_abs();
            (num / divisor).checked_shr(shift).unwrap_or(0)
        };
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        out.push((start, start.saturating_add(CLIP_SAMPLES)));
    }
    Ok(out)
}

/// Exact `value = mantissa · 2^exp2` of a finite non-negative f64 (0 → (0, 0)).
fn decompose(value: f64) -> (u64, i32) {
    if value <= 0.0 || !value.is_finite() {
        return (0, 0);
    }
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    if biased == 0 {
        // Subnormal: no implicit bit, exponent fixed at -1074.
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), biased - 1075)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn decompose_is_exact() {
        for v in [
            0.5f64,
            3.0,
            1.0 / 3.0,
            7.5e-5,
            f64::MIN_POSITIVE / 8.0,
            123456.789,
        ] {
            let (m, e) = decompose(v);
            // Two exact scalings: 2^-1074 itself underflows in powi.
            assert_eq!(m as f64 * 2f64.powi(e / 2) * 2f64.powi(e - e / 2), v);
        }
    }

    #[test]
    fn a_two_second_window_gives_identical_clips() {
        assert_eq!(clip_ranges(32_000, 3).unwrap(), vec![(0, 32_000); 3]);
    }

    #[test]
    fn zero_clips_is_an_error() {
        assert!(clip_ranges(32_000, 0).is_err());
        assert!(clip_ranges(32_000, MAX_CLIPS + 1).is_err());
    }

    #[test]
    fn one_clip_starts_at_zero() {
        assert_eq!(clip_ranges(100_000, 1).unwrap(), vec![(0, 32_000)]);
    }
}
