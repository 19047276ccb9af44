#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Thermal preprocessing against the reference data (SPEC.md §4, refdata/README.md tolerances).

use edgebind::preprocess::pil_resize::{PilResizePlan, PilResizeScratch};
use edgebind::preprocess::thermal::{
    Agc, RadiometricEncoding, ThermalError, ThermalParams, ThermalPreprocessor,
};
use ndarray::{Array2, Array3};
use ndarray_npy::read_npy;
use proptest::prelude::*;

fn refdata_dir() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("EDGEBIND_REFDATA") {
        return p.into();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/refdata")
}

/// refdata/README.md: Pillow emulated => max_abs <= 1/255 + 1e-6.
const TOLERANCE: f32 = 1.0 / 255.0 + 1e-6;

fn thermal_ref<T: ndarray_npy::ReadableElement, D: ndarray::Dimension>(
    name: &str,
) -> ndarray::Array<T, D> {
    read_npy(refdata_dir().join("thermal").join(name)).unwrap()
}

fn default_preprocessor() -> ThermalPreprocessor {
    ThermalPreprocessor::new(ThermalParams::default()).unwrap()
}

/// (max abs diff, mean abs diff, count of non-identical elements)
fn diff_stats(a: &Array3<f32>, b: &Array3<f32>) -> (f32, f64, usize) {
    assert_eq!(a.shape(), b.shape());
    let mut max = 0f32;
    let mut sum = 0f64;
    let mut differing = 0;
    for (x, y) in a.iter().zip(b.iter()) {
        let d = (x - y).abs();
        max = max.max(d);
        sum += f64::from(d);
        if x.to_bits() != y.to_bits() {
            differing += 1;
        }
    }
    (max, sum / a.len() as f64, differing)
}

#[test]
fn min_max_agc_matches_reference_exactly() {
    let y16: Array2<u16> = thermal_ref("thermal_y16_160x120_u16.npy");
    let expected: Array2<u8> = thermal_ref("thermal_y16_agc_160x120_u8.npy");
    let agc = default_preprocessor().agc(y16.view()).unwrap();
    assert_eq!(agc, expected);
}

#[test]
fn y16_frame_tensor_matches_reference() {
    let y16: Array2<u16> = thermal_ref("thermal_y16_160x120_u16.npy");
    let expected: Array3<f32> = thermal_ref("thermal_y16_out_1x224x224_f32.npy");
    let out = default_preprocessor().tensor_u16(y16.view()).unwrap();
    let (max, mean, differing) = diff_stats(&out, &expected);
    eprintln!("thermal y16 160x120: max_abs {max:e}, mean_abs {mean:e}, differing {differing}");
    assert!(max <= TOLERANCE, "max_abs {max}");
    assert_eq!(differing, 0, "Pillow emulation should be bit exact");
}

#[test]
fn u8_frame_tensor_matches_reference() {
    let u8img: Array2<u8> = thermal_ref("thermal_u8_640x512.npy");
    let expected: Array3<f32> = thermal_ref("thermal_u8_out_1x224x224_f32.npy");
    let out = default_preprocessor().tensor_u8(u8img.view()).unwrap();
    let (max, mean, differing) = diff_stats(&out, &expected);
    eprintln!("thermal u8 640x512: max_abs {max:e}, mean_abs {mean:e}, differing {differing}");
    assert!(max <= TOLERANCE, "max_abs {max}");
    assert_eq!(differing, 0, "Pillow emulation should be bit exact");
}

#[test]
fn reused_preprocessor_gives_same_result_across_frame_sizes() {
    let y16: Array2<u16> = thermal_ref("thermal_y16_160x120_u16.npy");
    let u8img: Array2<u8> = thermal_ref("thermal_u8_640x512.npy");
    let mut p = default_preprocessor();
    let a1 = p.tensor_u16(y16.view()).unwrap();
    let b1 = p.tensor_u8(u8img.view()).unwrap();
    let a2 = p.tensor_u16(y16.view()).unwrap();
    let b2 = p.tensor_u8(u8img.view()).unwrap();
    assert_eq!(a1, a2);
    assert_eq!(b1, b2);
}

#[test]
fn non_contiguous_view_gives_same_tensor_as_contiguous_copy() {
    let u8img: Array2<u8> = thermal_ref("thermal_u8_640x512.npy");
    // Transposed view is not C-contiguous; compare with its contiguous copy.
    let t = u8img.t();
    let owned = t.to_owned();
    let mut p = default_preprocessor();
    assert_eq!(p.tensor_u8(t).unwrap(), p.tensor_u8(owned.view()).unwrap());
}

#[test]
fn cropped_resize_equals_full_resize_then_crop() {
    let u8img: Array2<u8> = thermal_ref("thermal_u8_640x512.npy");
    let (w, h) = (640, 512);
    let full = PilResizePlan::full(w, h, 280, 224).unwrap();
    let mut scratch = PilResizeScratch::default();
    let mut full_out = vec![0u8; 280 * 224];
    full.run(u8img.as_slice().unwrap(), &mut scratch, &mut full_out)
        .unwrap();
    let out = default_preprocessor().tensor_u8(u8img.view()).unwrap();
    for y in 0..224 {
        for x in 0..224 {
            let k = full_out[y * 280 + x + 28];
            assert_eq!(out[[0, y, x]], f32::from(k) / 255.0, "at ({x},{y})");
        }
    }
}

#[test]
fn upscale_with_vertical_overshoot_is_clipped_like_pillow() {
    // A hard edge upscaled 4x overshoots; Pillow clips to 0..=255 after each pass.
    let img = Array2::from_shape_fn((56, 56), |(_, x)| if x < 28 { 0u8 } else { 255 });
    let out = default_preprocessor().tensor_u8(img.view()).unwrap();
    assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(out[[0, 0, 0]], 0.0);
    assert_eq!(out[[0, 0, 223]], 1.0);
}

fn check_geometry(width_px: usize, height_px: usize, seed: u32) {
    let img = Array2::from_shape_fn((height_px, width_px), |(y, x)| {
        ((x as u32 * 31 + y as u32 * 17 + seed) % 256) as u8
    });
    let out = default_preprocessor().tensor_u8(img.view()).unwrap();
    assert_eq!(out.shape(), &[1, 224, 224]);
    assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn lepton2_80x60_frame_gives_224_square_tensor() {
    check_geometry(80, 60, 1);
}

#[test]
fn infiray_256x192_frame_gives_224_square_tensor() {
    check_geometry(256, 192, 2);
}

#[test]
fn vga_640x480_frame_gives_224_square_tensor() {
    check_geometry(640, 480, 3);
}

#[test]
fn constant_u16_frame_maps_to_zeros() {
    let img = Array2::from_elem((120, 160), 29315u16);
    let mut p = default_preprocessor();
    assert!(p.agc(img.view()).unwrap().iter().all(|&v| v == 0));
    let out = p.tensor_u16(img.view()).unwrap();
    assert_eq!(out.shape(), &[1, 224, 224]);
    assert!(out.iter().all(|&v| v == 0.0));
}

#[test]
fn zero_size_frames_are_errors() {
    let mut p = default_preprocessor();
    for (h, w) in [(0usize, 0usize), (0, 160), (120, 0)] {
        let u8img = Array2::<u8>::zeros((h, w));
        let u16img = Array2::<u16>::zeros((h, w));
        assert!(matches!(
            p.tensor_u8(u8img.view()),
            Err(ThermalError::EmptyFrame { .. })
        ));
        assert!(matches!(
            p.tensor_u16(u16img.view()),
            Err(ThermalError::EmptyFrame { .. })
        ));
        assert!(p.agc(u16img.view()).is_err());
    }
}

#[test]
fn invalid_parameters_are_rejected() {
    let bad = [
        ThermalParams {
            size_px: 0,
            ..ThermalParams::default()
        },
        ThermalParams {
            normalize: Some((0.5, 0.0)),
            ..ThermalParams::default()
        },
        ThermalParams {
            normalize: Some((f32::NAN, 1.0)),
            ..ThermalParams::default()
        },
        ThermalParams {
            agc: Agc::FixedCelsius {
                min_c: 40.0,
                max_c: 10.0,
                encoding: RadiometricEncoding::CentiKelvin,
            },
            ..ThermalParams::default()
        },
    ];
    for params in bad {
        assert!(ThermalPreprocessor::new(params).is_err(), "{params:?}");
    }
}

#[test]
fn normalize_applies_torchvision_formula_in_f32() {
    let u8img: Array2<u8> = thermal_ref("thermal_u8_640x512.npy");
    let (mean, std) = (0.3f32, 0.2f32);
    let mut plain = default_preprocessor();
    let mut norm = ThermalPreprocessor::new(ThermalParams {
        normalize: Some((mean, std)),
        ..ThermalParams::default()
    })
    .unwrap();
    let a = plain.tensor_u8(u8img.view()).unwrap();
    let b = norm.tensor_u8(u8img.view()).unwrap();
    for (x, y) in a.iter().zip(b.iter()) {
        assert_eq!(*y, (*x - mean) / std);
    }
}

#[test]
fn fixed_celsius_agc_keeps_a_cold_scene_dark() {
    // 15..17 C scene (centi-kelvin) with a fixed 0..100 C window: MinMax would stretch it to
    // 0..255, the fixed window keeps it near 15% grey.
    let cold = Array2::from_shape_fn((120, 160), |(y, x)| 28815u16 + ((x + y) % 200) as u16);
    let fixed = ThermalPreprocessor::new(ThermalParams {
        agc: Agc::FixedCelsius {
            min_c: 0.0,
            max_c: 100.0,
            encoding: RadiometricEncoding::CentiKelvin,
        },
        ..ThermalParams::default()
    })
    .unwrap();
    let agc = fixed.agc(cold.view()).unwrap();
    assert!(agc.iter().all(|&v| (38..=44).contains(&v)), "{agc:?}");
    let minmax = default_preprocessor().agc(cold.view()).unwrap();
    assert_eq!(minmax.iter().max(), Some(&255));

    let infiray = ThermalPreprocessor::new(ThermalParams {
        agc: Agc::FixedCelsius {
            min_c: 0.0,
            max_c: 100.0,
            encoding: RadiometricEncoding::InfiRay64,
        },
        ..ThermalParams::default()
    })
    .unwrap();
    // 50 C in raw/64 K: (273.15 + 50) * 64 = 20681.6 -> 20682 ~ 50.006 C -> 128 (127.5 + eps)
    let half = Array2::from_elem((1, 1), 20682u16);
    assert_eq!(infiray.agc(half.view()).unwrap()[[0, 0]], 128);
}

#[test]
fn output_into_wrong_shape_is_an_error() {
    let img = Array2::<u8>::zeros((120, 160));
    let mut out = Array3::<f32>::zeros((1, 224, 223));
    let r = default_preprocessor().tensor_u8_into(img.view(), out.view_mut());
    assert!(matches!(r, Err(ThermalError::OutputShape { .. })));
}

fn any_size_u8(width_px: usize, height_px: usize, seed: u64) -> Array2<u8> {
    let mut s = seed | 1;
    Array2::from_shape_fn((height_px, width_px), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 24) as u8
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_frame_size_gives_224_square_tensor_in_unit_range(
        width_px in 1usize..1000, height_px in 1usize..1000, seed in any::<u64>()
    ) {
        let img = any_size_u8(width_px, height_px, seed);
        let out = default_preprocessor().tensor_u8(img.view()).unwrap();
        prop_assert_eq!(out.shape(), &[1, 224, 224]);
        prop_assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn any_u16_frame_agc_spans_zero_to_255_unless_constant(
        width_px in 1usize..64, height_px in 1usize..64, values in prop::collection::vec(any::<u16>(), 1..8)
    ) {
        let img = Array2::from_shape_fn((height_px, width_px), |(y, x)| values[(x * 7 + y * 3) % values.len()]);
        let agc = default_preprocessor().agc(img.view()).unwrap();
        let (lo, hi) = (img.iter().min().unwrap(), img.iter().max().unwrap());
        if lo == hi {
            prop_assert!(agc.iter().all(|&v| v == 0));
        } else {
            prop_assert_eq!(agc.iter().min(), Some(&0));
            prop_assert_eq!(agc.iter().max(), Some(&255));
        }
        // Exact SPEC formula with integer arithmetic.
        for (&v, &a) in img.iter().zip(agc.iter()) {
            if lo != hi {
                let (v, lo, hi) = (u64::from(v), u64::from(*lo), u64::from(*hi));
                prop_assert_eq!(u64::from(a), ((v - lo) * 510 + (hi - lo)) / (2 * (hi - lo)));
            }
        }
    }
}
