#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Parity of `preprocess::audio` with ImageBind's official audio loader (refdata/audio).

use edgebind::preprocess::audio::{
    clip_ranges, AudioError, AudioParams, AudioPreprocessor, SincResampler, DEFAULT_CLIPS,
};
use ndarray::{Array2, Array3, ArrayD, Axis};
use num_rational::BigRational;
use num_traits::ToPrimitive;
use proptest::prelude::*;

fn refdata_dir() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("EDGEBIND_REFDATA") {
        return p.into();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/refdata")
}

fn audio_dir() -> std::path::PathBuf {
    refdata_dir().join("audio")
}

fn meta() -> serde_json::Value {
    let text = std::fs::read_to_string(audio_dir().join("audio_meta.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn names() -> Vec<String> {
    let m = meta();
    let mut v: Vec<String> = m.as_object().unwrap().keys().cloned().collect();
    v.sort();
    assert_eq!(v.len(), 4, "expected the four reference recordings");
    v
}

/// Planar f32 channels (int16 / 32768, like torchaudio.load) and the sample rate.
fn read_wav(name: &str) -> (Vec<Vec<f32>>, u32) {
    let mut reader = hound::WavReader::open(audio_dir().join(format!("{name}.wav"))).unwrap();
    let spec = reader.spec();
    assert_eq!(spec.bits_per_sample, 16);
    let channels = spec.channels as usize;
    let mut planar = vec![Vec::new(); channels];
    for (i, s) in reader.samples::<i16>().enumerate() {
        planar[i % channels].push(f32::from(s.unwrap()) / 32768.0);
    }
    (planar, spec.sample_rate)
}

fn npy(name: &str, kind: &str) -> ArrayD<f32> {
    ndarray_npy::read_npy(audio_dir().join(format!("{name}.{kind}.npy"))).unwrap()
}

/// (max |a-b|, mean |a-b|) in f64.
fn diff<'a>(
    a: impl IntoIterator<Item = &'a f32>,
    b: impl IntoIterator<Item = &'a f32>,
) -> (f64, f64) {
    let (mut max, mut sum, mut n) = (0.0f64, 0.0f64, 0usize);
    for (x, y) in a.into_iter().zip(b) {
        let d = (f64::from(*x) - f64::from(*y)).abs();
        max = max.max(d);
        sum += d;
        n += 1;
    }
    assert!(n > 0);
    (max, sum / n as f64)
}

fn preprocessor() -> AudioPreprocessor {
    AudioPreprocessor::new(AudioParams::default()).unwrap()
}

fn meta_ranges(name: &str) -> Vec<(usize, usize)> {
    meta()[name]["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["start_sample"].as_u64().unwrap() as usize,
                c["end_sample_exclusive"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

#[test]
fn file_tensor_matches_imagebind_on_every_reference_wav() {
    let mut pre = preprocessor();
    for name in names() {
        let (planar, rate) = read_wav(&name);
        let out = pre.file_tensor(&planar, rate, DEFAULT_CLIPS).unwrap();
        assert_eq!(out.shape(), &[3, 1, 128, 204]);
        let reference = npy(&name, "out");
        assert_eq!(reference.shape(), &[1, 3, 1, 128, 204]);
        let (max, mean) = diff(out.iter(), reference.iter());
        eprintln!("{name}: out max|d| {max:.3e} mean|d| {mean:.3e}");
        assert!(
            max <= 1e-2 && mean <= 1e-4,
            "{name}: out max {max} mean {mean}"
        );
    }
}

#[test]
fn fbank_matches_waveform2melspec_on_every_reference_clip() {
    let mut pre = preprocessor();
    for name in names() {
        let reference: Array3<f32> = npy(&name, "fbank").into_dimensionality().unwrap();
        let inputs: Array2<f32> = npy(&name, "fbank_input_ch0").into_dimensionality().unwrap();
        for (clip, input) in inputs.axis_iter(Axis(0)).enumerate() {
            let fb = pre.fbank(input.as_slice().unwrap()).unwrap();
            let (max, mean) = diff(fb.iter(), reference.index_axis(Axis(0), clip).iter());
            eprintln!("{name} clip {clip}: fbank max|d| {max:.3e} mean|d| {mean:.3e}");
            assert!(
                max <= 5e-2 && mean <= 1e-3,
                "{name} clip {clip}: max {max} mean {mean}"
            );
        }
    }
}

#[test]
fn fbank_of_own_clip_inputs_matches_reference() {
    let mut pre = preprocessor();
    for name in names() {
        let (planar, rate) = read_wav(&name);
        let inputs = pre.file_clip_inputs(&planar, rate, DEFAULT_CLIPS).unwrap();
        let reference: Array3<f32> = npy(&name, "fbank").into_dimensionality().unwrap();
        for (clip, input) in inputs.iter().enumerate() {
            let fb = pre.fbank(input).unwrap();
            let (max, mean) = diff(fb.iter(), reference.index_axis(Axis(0), clip).iter());
            assert!(
                max <= 5e-2 && mean <= 1e-3,
                "{name} clip {clip}: max {max} mean {mean}"
            );
        }
    }
}

#[test]
fn resampled_channels_match_torchaudio() {
    let mut pre = preprocessor();
    let mut checked = 0;
    for name in names() {
        let path = audio_dir().join(format!("{name}.resampled16k.npy"));
        if !path.exists() {
            continue;
        }
        let reference: Array2<f32> = npy(&name, "resampled16k").into_dimensionality().unwrap();
        let (planar, rate) = read_wav(&name);
        assert_eq!(reference.nrows(), planar.len());
        for (c, channel) in planar.iter().enumerate() {
            let ours = pre.resample(channel, rate).unwrap();
            assert_eq!(ours.len(), reference.ncols(), "{name} ch{c} length");
            let (max, mean) = diff(ours.iter(), reference.row(c).iter());
            eprintln!("{name} ch{c}: resampled max|d| {max:.3e} mean|d| {mean:.3e}");
            assert!(max <= 1e-5, "{name} ch{c}: max {max}");
        }
        checked += 1;
    }
    assert_eq!(
        checked, 2,
        "both 44.1 kHz recordings have a resampled reference"
    );
}

#[test]
fn clip_inputs_match_the_samples_kaldi_saw() {
    let mut pre = preprocessor();
    for name in names() {
        let (planar, rate) = read_wav(&name);
        let inputs = pre.file_clip_inputs(&planar, rate, DEFAULT_CLIPS).unwrap();
        let reference: Array2<f32> = npy(&name, "fbank_input_ch0").into_dimensionality().unwrap();
        assert_eq!(inputs.len(), reference.nrows());
        for (clip, input) in inputs.iter().enumerate() {
            assert_eq!(input.len(), reference.ncols(), "{name} clip {clip} length");
            let (max, _) = diff(input.iter(), reference.row(clip).iter());
            eprintln!("{name} clip {clip}: fbank_input_ch0 max|d| {max:.3e}");
            // Resampled inputs carry f32 round-off of the resampler (measured 1.8e-7); 16 kHz inputs are exact
            // up to one ulp of the subtracted mean.
            let tol = if rate == 16_000 { 1e-7 } else { 1e-6 };
            assert!(max <= tol, "{name} clip {clip}: max {max}");
        }
    }
}

#[test]
fn in_place_mean_subtraction_is_what_makes_overlapping_clips_match() {
    // Control experiment: subtracting only each clip's own mean from the pristine signal
    // (no in-place carry-over) must NOT reproduce the reference for the overlapping file.
    let name = "speech_44k1_stereo_5s";
    let mut pre = preprocessor();
    let (planar, rate) = read_wav(name);
    let resampled: Vec<Vec<f32>> = planar
        .iter()
        .map(|c| pre.resample(c, rate).unwrap())
        .collect();
    let (a, b) = meta_ranges(name)[1];
    let total: f64 = resampled
        .iter()
        .flat_map(|c| &c[a..b])
        .map(|&v| f64::from(v))
        .sum();
    let own_mean = (total / (2 * (b - a)) as f64) as f32;
    let naive: Vec<f32> = resampled[0][a..b].iter().map(|v| v - own_mean).collect();
    let reference: Array2<f32> = npy(name, "fbank_input_ch0").into_dimensionality().unwrap();
    let (max_naive, _) = diff(naive.iter(), reference.row(1).iter());
    assert!(
        max_naive > 1e-3,
        "naive per-clip mean unexpectedly matches: {max_naive}"
    );
    let ours = pre.file_clip_inputs(&planar, rate, 3).unwrap();
    let (max_ours, _) = diff(ours[1].iter(), reference.row(1).iter());
    assert!(max_ours < 1e-5);
}

#[test]
fn clip_ranges_equal_the_reference_sampler() {
    let m = meta();
    for name in names() {
        let n16 = m[&name]["n_samples_16k"].as_u64().unwrap() as usize;
        assert_eq!(clip_ranges(n16, 3).unwrap(), meta_ranges(&name), "{name}");
    }
}

/// Straightforward exact model of pytorchvideo + data.py with big rationals.
fn clip_ranges_bigrational(n: usize, clips: usize) -> Vec<(usize, usize)> {
    let duration = n as f64 / 16000.0;
    let max_start = BigRational::from_float((duration - 2.0).max(0.0)).unwrap();
    let step = max_start / BigRational::from_integer(((clips.max(2) - 1) as i64).into());
    (0..clips)
        .map(|i| {
            let start = step.clone() * BigRational::from_integer((i as i64).into());
            let end = start.clone() + BigRational::from_integer(2.into());
            let sr = BigRational::from_integer(16000.into());
            let a = (start * sr.clone())
                .trunc()
                .to_integer()
                .to_usize()
                .unwrap();
            let b = (end * sr).trunc().to_integer().to_usize().unwrap();
            (a, b)
        })
        .collect()
}

#[test]
fn clip_ranges_equal_big_rational_arithmetic_over_many_lengths() {
    let mut naive_mismatches = 0;
    let lengths = (0..40_000usize)
        .chain((32_001..32_001 + 60_000).step_by(7))
        .chain((0..2_000).map(|i| 1_000_003 + i * 9_973))
        .chain([usize::MAX / 4, (1usize << 53) + 12_345]);
    for n in lengths {
        for clips in [1usize, 2, 3, 5] {
            let ours = clip_ranges(n, clips).unwrap();
            assert_eq!(
                ours,
                clip_ranges_bigrational(n, clips),
                "n={n} clips={clips}"
            );
            if clips == 3 && n > 32_000 {
                let naive = (n - 32_000) / 2; // floor((N-32000)·1/2) for clip 1
                if ours[1].0 != naive {
                    naive_mismatches += 1;
                }
            }
        }
    }
    // The float `duration - 2` really matters (SPEC: half of all lengths differ from naive).
    assert!(
        naive_mismatches > 1_000,
        "only {naive_mismatches} naive mismatches"
    );
}

#[test]
fn window_fast_path_matches_imagebind_on_the_stereo_window() {
    let name = "window_2s_44k1_stereo";
    let (planar, rate) = read_wav(name);
    assert_eq!(planar.len(), 2, "the window reference is stereo");
    let reference = npy(name, "out");
    let mut pre = preprocessor();
    let out = pre.window_tensor(&planar[0], rate, 3).unwrap();
    let (max, mean) = diff(out.iter(), reference.iter());
    eprintln!("{name}: window_tensor max|d| {max:.3e} mean|d| {mean:.3e}");
    assert!(max <= 1e-2 && mean <= 1e-4, "max {max} mean {mean}");
    // It must also agree with the full multi-channel file path.
    let full = pre.file_tensor(&planar, rate, 3).unwrap();
    let (max_full, _) = diff(out.iter(), full.iter());
    eprintln!("{name}: window_tensor vs file_tensor max|d| {max_full:.3e}");
    assert!(max_full <= 1e-3, "window vs file path: {max_full}");
    // Clips of a 2 s window are identical.
    assert_eq!(out.index_axis(Axis(0), 0), out.index_axis(Axis(0), 2));
}

#[test]
fn window_fast_path_handles_disjoint_and_mono_overlapping_clips() {
    // Mono input: channel 0's mean is the all-channel mean, so window == file path even with
    // partially overlapping clips (5 s) and with disjoint ones (9.5 s).
    for name in ["chirp_noise_16k_mono_9s5", "short_16k_mono_1s2"] {
        let (planar, rate) = read_wav(name);
        let mut pre = preprocessor();
        let window = pre.window_tensor(&planar[0], rate, 3).unwrap();
        let reference = npy(name, "out");
        let (max, mean) = diff(window.iter(), reference.iter());
        assert!(max <= 1e-2 && mean <= 1e-4, "{name}: max {max} mean {mean}");
    }
    let (planar, rate) = read_wav("speech_44k1_stereo_5s");
    let mono = vec![planar[0].clone()];
    let mut pre = preprocessor();
    let file = pre.file_tensor(&mono, rate, 3).unwrap();
    let window = pre.window_tensor(&mono[0], rate, 3).unwrap();
    let (max, _) = diff(window.iter(), file.iter());
    assert!(max <= 1e-3, "mono overlapping clips: {max}");
}

#[test]
fn window_tensor_into_rejects_a_wrong_output_shape() {
    let mut pre = preprocessor();
    let mut out = ndarray::Array4::<f32>::zeros((3, 1, 128, 200));
    let err = pre.window_tensor_into(&[0.0; 32_000], 16_000, out.view_mut());
    assert!(
        matches!(err, Err(AudioError::ShapeMismatch { .. })),
        "{err:?}"
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let mut pre = preprocessor();
    let empty: Vec<Vec<f32>> = vec![];
    assert!(matches!(
        pre.file_tensor(&empty, 16_000, 3),
        Err(AudioError::Empty { .. })
    ));
    assert!(matches!(
        pre.file_tensor(&[Vec::<f32>::new()], 16_000, 3),
        Err(AudioError::Empty { .. })
    ));
    assert!(matches!(
        pre.window_tensor(&[], 16_000, 3),
        Err(AudioError::Empty { .. })
    ));
    // 399 samples at 16 kHz and 1000 at 44.1 kHz (363 at 16 kHz) are shorter than one frame.
    assert!(matches!(
        pre.file_tensor(&[vec![0.1f32; 399]], 16_000, 3),
        Err(AudioError::TooShort { .. })
    ));
    assert!(matches!(
        pre.window_tensor(&[0.1f32; 1_000], 44_100, 3),
        Err(AudioError::TooShort { .. })
    ));
    assert!(matches!(
        pre.fbank(&[0.0; 10]),
        Err(AudioError::TooShort { .. })
    ));
    // 400 samples is exactly one frame: valid.
    assert!(pre.file_tensor(&[vec![0.1f32; 400]], 16_000, 3).is_ok());
    assert!(matches!(
        pre.file_tensor(&[vec![0.0f32; 1_000]], 0, 3),
        Err(AudioError::InvalidSampleRate { .. })
    ));
    assert!(matches!(
        pre.window_tensor(&[0.0; 1_000], 0, 3),
        Err(AudioError::InvalidSampleRate { .. })
    ));
    assert!(matches!(
        pre.file_tensor(&[vec![0.0f32; 1_000], vec![0.0; 999]], 16_000, 3),
        Err(AudioError::ChannelLengthMismatch {
            channel: 1,
            expected: 1_000,
            actual: 999
        })
    ));
    let mut nan = vec![0.0f32; 1_000];
    nan[777] = f32::NAN;
    assert!(matches!(
        pre.file_tensor(&[vec![0.0; 1_000], nan.clone()], 16_000, 3),
        Err(AudioError::NonFinite {
            channel: 1,
            index: 777,
            ..
        })
    ));
    assert!(matches!(
        pre.window_tensor(&nan, 44_100, 3),
        Err(AudioError::NonFinite { index: 777, .. })
    ));
    nan[777] = f32::INFINITY;
    assert!(matches!(
        pre.resample(&nan, 44_100),
        Err(AudioError::NonFinite { .. })
    ));
    assert!(matches!(
        pre.file_tensor(&[vec![0.0f32; 1_000]], 16_000, 0),
        Err(AudioError::InvalidClips { .. })
    ));
    assert!(matches!(
        pre.window_tensor(&[0.0; 1_000], 16_000, 0),
        Err(AudioError::InvalidClips { .. })
    ));
    let bad = AudioParams {
        std: 0.0,
        ..AudioParams::default()
    };
    assert!(matches!(
        AudioPreprocessor::new(bad),
        Err(AudioError::InvalidParams { field: "std", .. })
    ));
    let bad = AudioParams {
        num_mel_bins: 3,
        ..AudioParams::default()
    };
    assert!(AudioPreprocessor::new(bad).is_err());
    let bad = AudioParams {
        target_length: 0,
        ..AudioParams::default()
    };
    assert!(AudioPreprocessor::new(bad).is_err());
}

#[test]
fn short_audio_is_padded_with_the_normalised_zero() {
    let name = "short_16k_mono_1s2";
    let (planar, rate) = read_wav(name);
    let mut pre = preprocessor();
    let out = pre.file_tensor(&planar, rate, 3).unwrap();
    let frames = meta()[name]["n_fbank_frames_per_clip"][0].as_u64().unwrap() as usize;
    assert_eq!(frames, 118);
    let pad = (0.0f32 + 4.268) / 9.138;
    assert!(out
        .slice(ndarray::s![.., .., .., frames..])
        .iter()
        .all(|&v| v == pad));
    assert!(out
        .slice(ndarray::s![.., .., .., frames - 1])
        .iter()
        .any(|&v| v != pad));
}

#[test]
fn resampler_output_length_is_ceil_n_times_len_over_o() {
    for (rate, len, expected) in [
        (44_100u32, 88_200usize, 32_000usize),
        (44_100, 1, 1),
        (22_050, 100, 73),
        (8_000, 401, 802),
        (48_000, 400, 134),
    ] {
        let r = SincResampler::new(rate, 16_000).unwrap();
        assert_eq!(r.output_len(len), expected, "{rate} Hz, {len} samples");
        assert_eq!(r.process(&vec![0.25; len]).len(), expected);
    }
}

const RATES_HZ: [u32; 5] = [8_000, 16_000, 22_050, 44_100, 48_000];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_long_enough_input_gives_a_finite_tensor(
        rate_idx in 0usize..RATES_HZ.len(),
        len in 0usize..60_000,
        seed in any::<u32>(),
        stereo in any::<bool>(),
    ) {
        let rate = RATES_HZ[rate_idx];
        // Deterministic pseudo-random samples in [-1, 1).
        let mut state = seed | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 2.0 - 1.0
        };
        let ch0: Vec<f32> = (0..len).map(|_| next()).collect();
        let mut planar = vec![ch0.clone()];
        if stereo {
            planar.push((0..len).map(|_| next()).collect());
        }
        let mut pre = preprocessor();
        let len_16k = SincResampler::new(rate, 16_000).unwrap().output_len(len);
        let result = pre.file_tensor(&planar, rate, 3);
        let window = pre.window_tensor(&ch0, rate, 3);
        if len_16k >= 400 {
            let out = result.unwrap();
            prop_assert_eq!(out.shape(), &[3, 1, 128, 204]);
            prop_assert!(out.iter().all(|v| v.is_finite()));
            let w = window.unwrap();
            prop_assert!(w.iter().all(|v| v.is_finite()));
        } else {
            let is_too_short = matches!(result, Err(AudioError::TooShort { .. }) | Err(AudioError::Empty { .. }));
            prop_assert!(is_too_short, "{:?}", result.err());
            prop_assert!(window.is_err());
        }
    }

    #[test]
    fn clip_ranges_match_big_rationals(n in 0usize..10_000_000_000, clips in 1usize..8) {
        prop_assert_eq!(clip_ranges(n, clips).unwrap(), clip_ranges_bigrational(n, clips));
    }
}
