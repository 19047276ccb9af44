#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]
//! Depth preprocessing against the reference data (SPEC.md section 3) and its properties.

use edgebind::preprocess::depth::{
    DepthError, DepthNormalize, DepthParams, DepthPreprocessor, HoleFill,
};
use edgebind::preprocess::resize::{center_crop_offsets, short_side_size};
use ndarray::{Array2, Array3, ArrayView2, ShapeBuilder};
use ndarray_npy::read_npy;
use proptest::prelude::*;

fn refdata_dir() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("EDGEBIND_REFDATA") {
        return p.into();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/refdata")
}

fn raw_frame() -> Array2<u16> {
    read_npy(refdata_dir().join("depth/depth_640x480_u16_mm.npy")).unwrap()
}

/// (max |a-b|, mean |a-b|) over all elements.
fn diff_stats<'a>(
    a: impl IntoIterator<Item = &'a f32>,
    b: impl IntoIterator<Item = &'a f32>,
) -> (f64, f64) {
    let (mut max, mut sum, mut n) = (0.0f64, 0.0f64, 0usize);
    for (&x, &y) in a.into_iter().zip(b) {
        let d = (f64::from(x) - f64::from(y)).abs();
        max = max.max(d);
        sum += d;
        n += 1;
    }
    (max, sum / n.max(1) as f64)
}

#[test]
fn disparity_matches_reference_bit_for_bit() {
    let raw = raw_frame();
    let expected: Array2<f32> =
        read_npy(refdata_dir().join("depth/depth_640x480_disparity_f32.npy")).unwrap();
    let mut pre = DepthPreprocessor::new(DepthParams::default()).unwrap();
    let got = pre.disparity(raw.view()).unwrap();
    assert_eq!(got.dim(), expected.dim());
    let mismatches = got
        .iter()
        .zip(expected.iter())
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    let (max, mean) = diff_stats(got.iter(), expected.iter());
    println!("disparity: {mismatches} mismatching elements, max |d| {max:e}, mean {mean:e}");
    assert_eq!(mismatches, 0, "max |d| {max:e}");
}

#[test]
fn prenorm_tensor_matches_torchvision() {
    let expected: Array3<f32> =
        read_npy(refdata_dir().join("depth/depth_prenorm_1x224x224_f32.npy")).unwrap();
    let mut pre = DepthPreprocessor::new(DepthParams {
        normalize: DepthNormalize::None,
        ..DepthParams::default()
    })
    .unwrap();
    let got = pre.tensor(raw_frame().view()).unwrap();
    assert_eq!(got.dim(), (1, 224, 224));
    let (max, mean) = diff_stats(got.iter(), expected.iter());
    println!("prenorm: max |d| {max:e}, mean |d| {mean:e}");
    assert!(max <= 2e-3, "max |d| {max:e}");
    // Regression guard: with torch's f32 weight arithmetic we measured max 6.6e-7 (values in
    // [0, 1]); f64-computed weights would give 6.4e-6, a geometry slip far more.
    assert!(max <= 2e-6, "max |d| {max:e}");
    assert!(mean <= 1e-6, "mean |d| {mean:e}");
}

#[test]
fn model_input_matches_reference() {
    let expected: Array3<f32> =
        read_npy(refdata_dir().join("depth/depth_out_1x224x224_f32.npy")).unwrap();
    let mut pre = DepthPreprocessor::new(DepthParams::default()).unwrap();
    let got = pre.tensor(raw_frame().view()).unwrap();
    assert_eq!(got.dim(), (1, 224, 224));
    let (max, mean) = diff_stats(got.iter(), expected.iter());
    println!("out: max |d| {max:e}, mean |d| {mean:e}");
    assert!(max <= 2e-3, "max |d| {max:e}");
    // Regression guard: measured max 1.9e-5 (values up to 35); f64 weights would give 2.2e-4.
    assert!(max <= 6e-5, "max |d| {max:e}");
    assert!(mean <= 1e-5, "mean |d| {mean:e}");
}

#[test]
fn tensor_into_equals_tensor_and_rejects_wrong_buffer() {
    let raw = raw_frame();
    let mut pre = DepthPreprocessor::new(DepthParams::default()).unwrap();
    let a = pre.tensor(raw.view()).unwrap();
    let mut b = vec![0.0f32; 224 * 224];
    pre.tensor_into(raw.view(), &mut b).unwrap();
    assert_eq!(a.as_slice().unwrap(), &b[..]);
    let mut short = vec![0.0f32; 224 * 223];
    assert!(matches!(
        pre.tensor_into(raw.view(), &mut short),
        Err(DepthError::OutputSize {
            expected: 50176,
            actual: 49952
        })
    ));
}

#[test]
fn non_contiguous_frames_give_the_same_tensor() {
    let raw = raw_frame();
    let mut pre = DepthPreprocessor::new(DepthParams::default()).unwrap();
    let contiguous = pre.tensor(raw.view()).unwrap();
    // A Fortran-order copy has the same logical content but strided rows.
    let mut fortran = Array2::<u16>::zeros(raw.dim().f());
    fortran.assign(&raw);
    assert_eq!(pre.tensor(fortran.view()).unwrap(), contiguous);
    // A column-reversed view of a reversed frame is the original frame.
    let mut reversed = raw.clone();
    reversed.invert_axis(ndarray::Axis(1));
    let mut back = reversed.view();
    back.invert_axis(ndarray::Axis(1));
    assert_eq!(pre.tensor(back).unwrap(), contiguous);
}

#[test]
fn cached_plan_is_replaced_when_the_frame_size_changes() {
    let big = raw_frame();
    let small = big.slice(ndarray::s![..300, ..451]).to_owned();
    let mut shared = DepthPreprocessor::new(DepthParams::default()).unwrap();
    let a1 = shared.tensor(big.view()).unwrap();
    let b1 = shared.tensor(small.view()).unwrap();
    let a2 = shared.tensor(big.view()).unwrap();
    let b_fresh = DepthPreprocessor::new(DepthParams::default())
        .unwrap()
        .tensor(small.view())
        .unwrap();
    assert_eq!(a1, a2);
    assert_eq!(b1, b_fresh);
    assert_ne!(a1, b1);
}

#[test]
fn all_zero_frame_gives_the_finite_maximal_disparity_everywhere() {
    let zeros = Array2::<u16>::zeros((480, 640));
    for holes in [HoleFill::Spec, HoleFill::NearestInRow] {
        let mut pre = DepthPreprocessor::new(DepthParams {
            holes,
            ..DepthParams::default()
        })
        .unwrap();
        let out = pre.tensor(zeros.view()).unwrap();
        // 0 mm -> 0.01 m -> disparity 3891 -> DepthNorm clamps to 75 -> 1.0 -> standardised.
        let expected = (1.0f32 - 0.0418f32) / 0.0295f32;
        for &v in out.iter() {
            assert!(v.is_finite());
            assert!((v - expected).abs() < 1e-4, "{v} vs {expected}");
        }
    }
}

#[test]
fn nearest_in_row_fills_holes_from_the_closest_valid_pixel() {
    // Row 0: holes between 1000 and 2000 mm (tie in the middle goes left); row 1: all holes;
    // row 2: leading and trailing holes.
    let raw = ndarray::arr2(&[
        [1000u16, 0, 0, 0, 0, 2000],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 3000, 4000, 0, 0],
    ]);
    let mut filled = DepthPreprocessor::new(DepthParams {
        holes: HoleFill::NearestInRow,
        ..DepthParams::default()
    })
    .unwrap();
    let mut spec = DepthPreprocessor::new(DepthParams::default()).unwrap();
    let expected_raw = ndarray::arr2(&[
        [1000u16, 1000, 1000, 2000, 2000, 2000],
        [0, 0, 0, 0, 0, 0],
        [3000, 3000, 3000, 4000, 4000, 4000],
    ]);
    let got = filled.disparity(raw.view()).unwrap();
    assert_eq!(got, spec.disparity(expected_raw.view()).unwrap());
    // The all-zero row keeps the Spec behaviour: maximal disparity 38.914 / 0.01.
    let max_disp = (0.075f64 * 518.857901) as f32 / 0.01f32;
    assert!(got.row(1).iter().all(|&v| v == max_disp));
    // And the tensor equals the tensor of the manually filled frame under the Spec policy.
    assert_eq!(
        filled.tensor(raw.view()).unwrap(),
        spec.tensor(expected_raw.view()).unwrap()
    );
    // The reference frame has holes: filling must change the result there.
    let reference = raw_frame();
    assert_ne!(
        filled.tensor(reference.view()).unwrap(),
        spec.tensor(reference.view()).unwrap()
    );
}

#[test]
fn hole_filling_only_changes_zero_pixels() {
    let raw = raw_frame();
    let mut filled = DepthPreprocessor::new(DepthParams {
        holes: HoleFill::NearestInRow,
        ..DepthParams::default()
    })
    .unwrap();
    let mut spec = DepthPreprocessor::new(DepthParams::default()).unwrap();
    let a = filled.disparity(raw.view()).unwrap();
    let b = spec.disparity(raw.view()).unwrap();
    let max_disp = (0.075f64 * 518.857901) as f32 / 0.01f32;
    let mut changed = 0;
    for ((&r, &x), &y) in raw.iter().zip(a.iter()).zip(b.iter()) {
        if r == 0 {
            changed += 1;
            assert_eq!(y, max_disp);
            assert!(x < max_disp || x == y);
        } else {
            assert_eq!(x, y);
        }
    }
    assert!(
        changed > 4800,
        "the reference frame has an 80x60 hole, saw {changed}"
    );
}

#[test]
fn other_depth_units_scale_like_millimetres() {
    // 100 um units (RealSense D4xx high-accuracy): raw*10 must land (almost) on the mm result.
    let mm = raw_frame();
    let tenth = mm.mapv(|v| v.saturating_mul(10).min(65_000));
    let mm_clipped = tenth.mapv(|v| v / 10);
    let mut a = DepthPreprocessor::new(DepthParams::default()).unwrap();
    let mut b = DepthPreprocessor::new(DepthParams {
        depth_units_m: 0.0001,
        ..DepthParams::default()
    })
    .unwrap();
    let (max, _) = diff_stats(
        a.tensor(mm_clipped.view()).unwrap().iter(),
        b.tensor(tenth.view()).unwrap().iter(),
    );
    assert!(max < 1e-3, "{max}");
}

#[test]
fn bad_parameters_are_rejected_naming_the_field() {
    type Setter = fn(&mut DepthParams, f64);
    let cases: [(&str, Setter); 7] = [
        ("focal_px", |p, v| p.focal_px = v),
        ("baseline_m", |p, v| p.baseline_m = v),
        ("depth_units_m", |p, v| p.depth_units_m = v),
        ("min_depth_m", |p, v| p.min_depth_m = v),
        ("max_depth_m", |p, v| p.max_depth_m = v),
        ("norm_max", |p, v| p.norm_max = v),
        ("norm_min", |p, v| p.norm_min = v),
    ];
    for (name, set) in cases {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut p = DepthParams::default();
            set(&mut p, bad);
            match DepthPreprocessor::new(p) {
                Err(DepthError::InvalidParam { field, .. }) => {
                    assert_eq!(field, name, "value {bad}")
                }
                other => panic!("{name} = {bad}: expected InvalidParam, got {other:?}"),
            }
        }
    }
    for (normalize, field) in [
        (
            DepthNormalize::Standardize {
                mean: 0.0,
                std: 0.0,
            },
            "normalize.std",
        ),
        (
            DepthNormalize::Standardize {
                mean: f64::NAN,
                std: 1.0,
            },
            "normalize.mean",
        ),
    ] {
        let err = DepthPreprocessor::new(DepthParams {
            normalize,
            ..DepthParams::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, DepthError::InvalidParam { field: f, .. } if f == field),
            "{err}"
        );
    }
    let err = DepthPreprocessor::new(DepthParams {
        min_depth_m: 60.0,
        ..DepthParams::default()
    })
    .unwrap_err();
    assert!(matches!(
        err,
        DepthError::InvalidParam {
            field: "max_depth_m",
            ..
        }
    ));
    // A value that is fine as f64 but overflows f32.
    let err = DepthPreprocessor::new(DepthParams {
        focal_px: 1e39,
        ..DepthParams::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("focal_px"), "{err}");
}

#[test]
fn empty_frames_are_rejected() {
    let mut pre = DepthPreprocessor::new(DepthParams::default()).unwrap();
    for shape in [(0, 0), (0, 640), (480, 0)] {
        let empty = Array2::<u16>::zeros(shape);
        assert!(matches!(
            pre.tensor(empty.view()),
            Err(DepthError::EmptyFrame { .. })
        ));
        assert!(matches!(
            pre.disparity(empty.view()),
            Err(DepthError::EmptyFrame { .. })
        ));
    }
}

// ----------------------------------------------------------------------------------- properties

/// Deterministic pseudo-random depth frame with holes, near/far clipping values and smooth parts.
fn frame(h: usize, w: usize, seed: u64) -> Array2<u16> {
    Array2::from_shape_fn((h, w), |(y, x)| {
        let mut z = seed ^ ((y as u64) << 32) ^ (x as u64);
        z = z.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z ^= z >> 29;
        z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^= z >> 32;
        match z % 16 {
            0 => 0,
            1 => 5,
            2 => 60_000,
            _ => (300 + 7 * x + 5 * y + (z % 200) as usize).min(65_535) as u16,
        }
    })
}

/// Straightforward f64 version of the whole pipeline (SPEC.md section 3), written independently
/// of the crate: weights per output pixel from the Pillow/torch formula, no tap padding, no
/// row/column restriction beyond evaluating only the kept outputs.
fn reference_pipeline(raw: ArrayView2<'_, u16>) -> Array2<f64> {
    fn cubic(x: f64) -> f64 {
        let a = -0.5;
        let x = x.abs();
        if x < 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * a
        } else {
            0.0
        }
    }
    fn weights(in_n: usize, out_n: usize, i: usize) -> (usize, Vec<f64>) {
        let scale = in_n as f64 / out_n as f64;
        let fs = scale.max(1.0);
        let support = 2.0 * fs;
        let center = (i as f64 + 0.5) * scale;
        let lo = ((center - support + 0.5) as i64).max(0) as usize;
        let hi = ((center + support + 0.5) as i64).min(in_n as i64) as usize;
        let w: Vec<f64> = (lo..hi)
            .map(|x| cubic((x as f64 - center + 0.5) / fs))
            .collect();
        let s: f64 = w.iter().sum();
        (lo, w.into_iter().map(|v| v / s).collect())
    }
    let (h, w) = raw.dim();
    let (new_h, new_w) = if w <= h {
        (224 * h / w, 224)
    } else {
        (224, 224 * w / h)
    };
    let top = ((new_h - 224) as f64 / 2.0).round_ties_even() as usize;
    let left = ((new_w - 224) as f64 / 2.0).round_ties_even() as usize;
    let bf = f64::from((0.075f64 * 518.857901) as f32);
    let norm = raw.mapv(|v| {
        let d = (f64::from(v) / 1000.0).clamp(0.01, 50.0);
        (bf / d).clamp(0.01, 75.0) / 75.0
    });
    let mut out = Array2::<f64>::zeros((224, 224));
    let cols: Vec<_> = (0..224).map(|j| weights(w, new_w, left + j)).collect();
    for i in 0..224 {
        let (r0, wr) = weights(h, new_h, top + i);
        for (j, (c0, wc)) in cols.iter().enumerate() {
            let mut acc = 0.0;
            for (dr, a) in wr.iter().enumerate() {
                for (dc, b) in wc.iter().enumerate() {
                    acc += a * b * norm[[r0 + dr, c0 + dc]];
                }
            }
            out[[i, j]] = (acc - 0.0418) / 0.0295;
        }
    }
    out
}

fn size_strategy() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        Just((480, 848)),
        Just((720, 1280)),
        Just((480, 640)),
        Just((640, 480)),
        Just((1500, 3)),
        Just((1, 1)),
        Just((224, 224)),
        Just((225, 227)),
        (1usize..1500, 1usize..1500),
        (1usize..40, 1usize..1500),
        (1usize..1500, 1usize..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_frame_size_gives_a_finite_224_square_with_torchvision_geometry(
        (h, w) in size_strategy(),
        seed in any::<u64>(),
        nearest in any::<bool>(),
    ) {
        let raw = frame(h, w, seed);
        let holes = if nearest { HoleFill::NearestInRow } else { HoleFill::Spec };
        let mut pre = DepthPreprocessor::new(DepthParams { holes, ..DepthParams::default() }).unwrap();
        let out = pre.tensor(raw.view()).unwrap();
        prop_assert_eq!(out.dim(), (1, 224, 224));
        prop_assert!(out.iter().all(|v| v.is_finite()));

        // Independent geometry: integer arithmetic for the long side (equal to Python's
        // int(224*long/short) for these sizes), f64 round_ties_even for the crop.
        let (exp_h, exp_w) = if w <= h { (224 * h / w, 224) } else { (224, 224 * w / h) };
        let exp_top = ((exp_h - 224) as f64 / 2.0).round_ties_even() as usize;
        let exp_left = ((exp_w - 224) as f64 / 2.0).round_ties_even() as usize;
        prop_assert_eq!(short_side_size(h, w, 224).unwrap(), (exp_w, exp_h));
        prop_assert_eq!(center_crop_offsets(exp_h, exp_w, 224).unwrap(), (exp_top, exp_left));
        let plan = pre.resize_plan().unwrap();
        prop_assert_eq!(plan.source_shape(), (h, w));
        prop_assert_eq!(plan.resized_shape(), (exp_h, exp_w));
        let crop = plan.crop();
        prop_assert_eq!((crop.top_px, crop.left_px, crop.height_px, crop.width_px), (exp_top, exp_left, 224, 224));
    }

    #[test]
    fn crop_aware_resize_equals_a_straightforward_f64_pipeline(
        h in 1usize..260,
        w in 1usize..260,
        seed in any::<u64>(),
    ) {
        let raw = frame(h, w, seed);
        let mut pre = DepthPreprocessor::new(DepthParams::default()).unwrap();
        let got = pre.tensor(raw.view()).unwrap();
        let expected = reference_pipeline(raw.view());
        let max = got
            .iter()
            .zip(expected.iter())
            .map(|(&a, &b)| (f64::from(a) - b).abs())
            .fold(0.0, f64::max);
        // Values reach ~34 after standardisation; f32 round-off stays far below this.
        prop_assert!(max <= 1e-3, "{}x{}: max |d| {}", h, w, max);
    }
}

/// Brute force: each 0 takes the closest non-zero value in its row, the left one on ties.
fn brute_force_fill(raw: &Array2<u16>) -> Array2<u16> {
    let mut out = raw.clone();
    for (src, mut dst) in raw.rows().into_iter().zip(out.rows_mut()) {
        let valid: Vec<(usize, u16)> = src
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(i, &v)| (i, v))
            .collect();
        for (p, d) in dst.iter_mut().enumerate() {
            if *d != 0 {
                continue;
            }
            // min_by_key keeps the first minimum: the left neighbour on ties.
            if let Some(&(_, v)) = valid.iter().min_by_key(|(i, _)| i.abs_diff(p)) {
                *d = v;
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn nearest_in_row_equals_a_brute_force_nearest_search(
        h in 1usize..6,
        w in 1usize..60,
        seed in any::<u64>(),
        hole_percent in 0u64..100,
    ) {
        let raw = frame(h, w, seed).mapv(|v| v.max(1));
        let holes = frame(h, w, seed.rotate_left(17));
        let raw = Array2::from_shape_fn((h, w), |(y, x)| {
            if u64::from(holes[[y, x]]) % 100 < hole_percent { 0 } else { raw[[y, x]] }
        });
        let mut filled = DepthPreprocessor::new(DepthParams {
            holes: HoleFill::NearestInRow,
            ..DepthParams::default()
        })
        .unwrap();
        let mut spec = DepthPreprocessor::new(DepthParams::default()).unwrap();
        let expected = spec.disparity(brute_force_fill(&raw).view()).unwrap();
        prop_assert_eq!(filled.disparity(raw.view()).unwrap(), expected);
    }
}
