#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Vision preprocessing against the reference data (refdata/README.md `vision/`, SPEC.md §6):
//! every scene, its PNG, the YUYV buffer, the other camera layouts, and random sizes against a
//! plain scalar Pillow emulation.

use edgebind::preprocess::vision::decode::{decode_image, decode_jpeg, decode_png, DecodeError};
use edgebind::preprocess::vision::frame::{frame_to_rgb, FrameLayout, PixelFormat};
use edgebind::preprocess::vision::{VisionError, VisionPreprocessor, CLIP_MEAN, CLIP_STD};
use ndarray::{Array3, Axis, ShapeBuilder};
use ndarray_npy::read_npy;
use proptest::prelude::*;

fn refdata_dir() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("EDGEBIND_REFDATA") {
        return p.into();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/refdata")
}

fn vision_file(name: &str) -> std::path::PathBuf {
    refdata_dir().join("vision").join(name)
}

fn npy<T: ndarray_npy::ReadableElement>(name: &str) -> Array3<T> {
    read_npy(vision_file(name)).unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision");
    std::fs::read(dir.join(name)).unwrap()
}

const SCENES: [&str; 5] = [
    "rgb_640x480",
    "rgb_848x480",
    "rgb_480x640",
    "rgb_224x224",
    "rgb_160x120",
];

/// refdata/README.md: one uint8 step in the worst channel; the emulation should give 0.
const TOLERANCE: f32 = 0.015_017_77;

/// (max abs diff, number of elements whose bits differ)
fn diff(a: &Array3<f32>, b: &Array3<f32>) -> (f32, usize) {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b).fold((0f32, 0), |(max, n), (x, y)| {
        (
            max.max((x - y).abs()),
            n + usize::from(x.to_bits() != y.to_bits()),
        )
    })
}

fn assert_exact(out: &Array3<f32>, expected: &Array3<f32>, what: &str) {
    let (max, differing) = diff(out, expected);
    eprintln!("{what}: max_abs {max:e}, differing {differing}");
    assert!(max <= TOLERANCE, "{what}: max_abs {max}");
    assert_eq!(differing, 0, "{what}: Pillow emulation should be bit exact");
}

#[test]
fn every_scene_matches_the_reference_bit_for_bit() {
    let mut pre = VisionPreprocessor::new();
    for scene in SCENES {
        let rgb: Array3<u8> = npy(&format!("{scene}.npy"));
        let out = pre.tensor_rgb(rgb.view()).unwrap();
        let resized: Array3<u8> = npy(&format!("{scene}_resized_224x224_u8.npy"));
        assert_eq!(pre.cropped_rgb(), resized, "{scene}: resized+cropped u8");
        let expected: Array3<f32> = npy(&format!("{scene}_out_3x224x224_f32.npy"));
        assert_exact(&out, &expected, scene);
    }
}

#[test]
fn png_files_decode_to_the_npy_pixels_and_the_same_tensor() {
    let mut pre = VisionPreprocessor::new();
    for scene in SCENES {
        let bytes = std::fs::read(vision_file(&format!("{scene}.png"))).unwrap();
        let img = decode_image(&bytes).unwrap().into_array();
        let rgb: Array3<u8> = npy(&format!("{scene}.npy"));
        assert_eq!(img, rgb, "{scene}.png");
        let expected: Array3<f32> = npy(&format!("{scene}_out_3x224x224_f32.npy"));
        assert_exact(&pre.tensor_rgb(img.view()).unwrap(), &expected, scene);
    }
}

#[test]
fn yuyv_buffer_converts_exactly_and_gives_the_reference_tensor() {
    let buf = std::fs::read(vision_file("yuyv_640x480.bin")).unwrap();
    let layout = FrameLayout::packed(PixelFormat::Yuyv, 640, 480);
    let mut rgb = Vec::new();
    frame_to_rgb(&buf, &layout, &mut rgb).unwrap();
    let expected: Array3<u8> = npy("yuyv_640x480_rgb_u8.npy");
    assert_eq!(rgb, expected.as_slice().unwrap());
    let want: Array3<f32> = npy("yuyv_640x480_out_3x224x224_f32.npy");
    let mut pre = VisionPreprocessor::new();
    assert_exact(&pre.tensor_frame(&buf, &layout).unwrap(), &want, "yuyv");
    // UYVY carries the same values as `U Y0 V Y1`.
    let uyvy: Vec<u8> = buf
        .chunks_exact(4)
        .flat_map(|q| [q[1], q[0], q[3], q[2]])
        .collect();
    let layout = FrameLayout::packed(PixelFormat::Uyvy, 640, 480);
    assert_exact(&pre.tensor_frame(&uyvy, &layout).unwrap(), &want, "uyvy");
}

#[test]
fn realsense_layouts_with_row_padding_give_the_rgb_tensor() {
    let rgb: Array3<u8> = npy("rgb_848x480.npy");
    let want: Array3<f32> = npy("rgb_848x480_out_3x224x224_f32.npy");
    let mut pre = VisionPreprocessor::new();
    for (format, order) in [
        (PixelFormat::Rgb8, &[0usize, 1, 2][..]),
        (PixelFormat::Bgr8, &[2, 1, 0]),
        (PixelFormat::Rgba8, &[0, 1, 2, 9]),
        (PixelFormat::Bgra8, &[2, 1, 0, 9]),
    ] {
        // 64 bytes of padding per row (filled with 0xee, which must not leak in).
        let stride = 848 * order.len() + 64;
        let mut buf = vec![0xeeu8; stride * 480];
        for (y, row) in rgb.axis_iter(Axis(0)).enumerate() {
            for (x, px) in row.axis_iter(Axis(0)).enumerate() {
                for (i, &c) in order.iter().enumerate() {
                    buf[y * stride + x * order.len() + i] = px.get(c).copied().unwrap_or(255);
                }
            }
        }
        let layout = FrameLayout {
            format,
            width_px: 848,
            height_px: 480,
            stride_bytes: stride,
        };
        assert_exact(&pre.tensor_frame(&buf, &layout).unwrap(), &want, "layout");
    }
}

#[test]
fn non_contiguous_views_and_reuse_across_sizes_are_exact() {
    let mut pre = VisionPreprocessor::new();
    let rgb: Array3<u8> = npy("rgb_640x480.npy");
    let want: Array3<f32> = npy("rgb_640x480_out_3x224x224_f32.npy");
    // The same pixels in column-major memory: a view that is not one contiguous HWC slice.
    let mut fortran = Array3::<u8>::zeros((480, 640, 3).f());
    fortran.assign(&rgb);
    assert!(fortran.as_slice().is_none());
    assert_exact(
        &pre.tensor_rgb(fortran.view()).unwrap(),
        &want,
        "strided view",
    );
    let small: Array3<u8> = npy("rgb_160x120.npy");
    pre.tensor_rgb(small.view()).unwrap();
    let mut out = Array3::<f32>::from_elem((3, 224, 224), f32::NAN);
    pre.tensor_rgb_into(rgb.view(), out.view_mut()).unwrap();
    assert_exact(&out, &want, "after a size change");
}

#[test]
fn bad_shapes_and_buffers_are_clear_errors() {
    let mut pre = VisionPreprocessor::new();
    let four = Array3::<u8>::zeros((4, 4, 4));
    let err = pre.tensor_rgb(four.view()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "RGB image has shape [4, 4, 4], expected [height, width, 3]"
    );
    let empty = Array3::<u8>::zeros((0, 5, 3));
    assert!(matches!(
        pre.tensor_rgb(empty.view()),
        Err(VisionError::Frame(_))
    ));
    let mut out = Array3::<f32>::zeros((1, 224, 224));
    let rgb = Array3::<u8>::zeros((4, 4, 3));
    assert!(matches!(
        pre.tensor_rgb_into(rgb.view(), out.view_mut()),
        Err(VisionError::OutputShape { .. })
    ));
    let yuyv = FrameLayout::packed(PixelFormat::Yuyv, 641, 480);
    let err = pre.tensor_frame(&[0u8; 641 * 2 * 480], &yuyv).unwrap_err();
    assert_eq!(
        err.to_string(),
        "YUYV frame width 641 px is odd: YUYV packs pixels in pairs"
    );
    // A 100000 x 1 px frame resizes to 22400000 x 224 px: only the crop is computed, so it
    // neither fails nor allocates the resized image.
    let wide = FrameLayout::packed(PixelFormat::Rgb8, 100_000, 1);
    let out = pre.tensor_frame(&vec![255u8; 300_000], &wide).unwrap();
    let white = (1.0 - CLIP_MEAN[0] as f32) / CLIP_STD[0] as f32;
    assert!(out.index_axis(Axis(0), 0).iter().all(|&v| v == white));
    // Larger than the frame limit: refused before anything is read.
    let huge = FrameLayout::packed(PixelFormat::Rgb8, 1 << 14, 1 << 14);
    let err = pre.tensor_frame(&[0u8; 16], &huge).unwrap_err();
    assert_eq!(
        err.to_string(),
        "RGB8 frame of 16384x16384 px exceeds the limit of 67108864 px"
    );
}

#[test]
fn hostile_image_files_are_errors() {
    assert!(matches!(
        decode_image(b"GIF89a..."),
        Err(DecodeError::UnknownFormat { .. })
    ));
    assert_eq!(
        decode_image(&[]).unwrap_err().to_string(),
        "not a PNG or JPEG file (starts with nothing (empty))"
    );
    // A JPEG header declaring 65535 x 65535 px: refused from the header, nothing allocated.
    let mut jpeg = fixture("rgb_320x240_q90_422.jpg");
    let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let err = decode_jpeg(&jpeg).unwrap_err();
    assert!(matches!(err, DecodeError::Size { .. }), "{err}");
    // Truncated files: errors, not a frame half filled with grey.
    let jpeg = fixture("rgb_320x240_q90_422.jpg");
    for cut in [jpeg.len() / 2, 600, 2] {
        assert!(decode_jpeg(&jpeg[..cut]).is_err(), "JPEG cut at {cut}");
    }
    let png = std::fs::read(vision_file("rgb_160x120.png")).unwrap();
    assert!(decode_png(&png[..png.len() / 2]).is_err());
    // A PNG header declaring 1,000,000 x 1,000,000 px (CRC fixed up so only the size is wrong).
    let mut huge = png.clone();
    huge[16..24].copy_from_slice(&[0, 0x0f, 0x42, 0x40, 0, 0x0f, 0x42, 0x40]);
    let crc = crc32fast::hash(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    let err = decode_png(&huge).unwrap_err();
    assert!(matches!(err, DecodeError::Size { .. }), "{err}");
}

/// (max abs step, mean abs step, fraction of differing samples) of zune-jpeg vs Pillow.
fn jpeg_vs_pillow(name: &str) -> (u8, f64, f64) {
    let ours = decode_jpeg(&fixture(&format!("{name}.jpg"))).unwrap();
    let pillow = decode_png(&fixture(&format!("{name}_pillow.png"))).unwrap();
    assert_eq!(
        (ours.width_px, ours.height_px),
        (pillow.width_px, pillow.height_px)
    );
    let (mut max, mut sum, mut n) = (0u8, 0u64, 0usize);
    for (a, b) in ours.data.iter().zip(&pillow.data) {
        let d = a.abs_diff(*b);
        max = max.max(d);
        sum += u64::from(d);
        n += usize::from(d != 0);
    }
    let len = ours.data.len() as f64;
    (max, sum as f64 / len, n as f64 / len)
}

/// The JPEG decoder is not Pillow's (libjpeg-turbo 3.2.0 in Pillow 13.0.0): this states by how
/// much the pixels differ on JPEGs that Pillow wrote (tools/make_jpeg_fixtures.py), and bounds it
/// so a change of decoder behaviour is noticed.
#[test]
fn jpeg_decode_differs_from_pillow_by_a_known_small_amount() {
    for name in [
        "rgb_640x480_q90_420",
        "rgb_320x240_q90_422",
        "grey_96x64_q90",
    ] {
        let (max, mean, frac) = jpeg_vs_pillow(name);
        // What reaches the model: the tensors of both decodes.
        let mut pre = VisionPreprocessor::new();
        let ours = decode_jpeg(&fixture(&format!("{name}.jpg")))
            .unwrap()
            .into_array();
        let pillow = decode_png(&fixture(&format!("{name}_pillow.png")))
            .unwrap()
            .into_array();
        let (tensor_max, _) = diff(
            &pre.tensor_rgb(ours.view()).unwrap(),
            &pre.tensor_rgb(pillow.view()).unwrap(),
        );
        eprintln!(
            "{name}: zune-jpeg vs Pillow max {max} steps, mean {mean:.4}, differing {frac:.4}; \
             tensor max_abs {tensor_max:.4}"
        );
        assert!(
            max <= 4 && mean <= 0.2 && frac <= 0.1,
            "{name}: {max} {mean} {frac}"
        );
        assert!(tensor_max <= 0.05, "{name}: tensor {tensor_max}");
        assert!(max > 0, "{name}: identical to Pillow; update the docs");
    }
}

/// A one-component JPEG becomes R = G = B, like Pillow's `convert("RGB")` of an "L" image.
#[test]
fn greyscale_jpeg_decodes_to_equal_channels() {
    let img = decode_jpeg(&fixture("grey_96x64_q90.jpg")).unwrap();
    assert_eq!((img.width_px, img.height_px), (96, 64));
    assert!(img
        .data
        .chunks_exact(3)
        .all(|p| p[0] == p[1] && p[1] == p[2]));
    assert!(img.data.chunks_exact(3).any(|p| p[0] != img.data[0]));
}

/// MJPEG cameras leave out the Huffman tables (DHT) and rely on the standard ones, which is
/// what Pillow wrote: the frame without its DHT segments decodes to the same pixels.
#[test]
fn mjpeg_frames_without_huffman_tables_decode() {
    let jpeg = fixture("rgb_320x240_q90_422.jpg");
    let mut mjpeg = vec![0xff, 0xd8];
    let mut i = 2;
    let mut dropped = 0;
    while jpeg[i] == 0xff && jpeg[i + 1] != 0xda {
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if jpeg[i + 1] == 0xc4 {
            dropped += 1;
        } else {
            mjpeg.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    mjpeg.extend_from_slice(&jpeg[i..]);
    assert!(dropped > 0 && mjpeg.len() < jpeg.len());
    assert_eq!(decode_jpeg(&mjpeg).unwrap(), decode_jpeg(&jpeg).unwrap());
}

// ---------------------------------------------------------------- scalar Pillow emulation

/// Pillow's bicubic (a = -0.5) fixed-point coefficients of one axis (Resample.c
/// `precompute_coeffs` + `normalize_coeffs_8bpc`): per output pixel `(xmin, coefficients)`.
fn pillow_coeffs(input: usize, output: usize) -> Vec<(usize, Vec<i64>)> {
    let cubic = |x: f64| {
        let (a, x) = (-0.5, x.abs());
        if x < 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * a
        } else {
            0.0
        }
    };
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let w: Vec<f64> = (xmin..xmax)
                .map(|x| cubic((x as f64 - center + 0.5) / filterscale))
                .collect();
            let total: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&v| {
                    let v = if total != 0.0 { v / total } else { v };
                    let f = v * f64::from(1u32 << 22);
                    (if v < 0.0 { f - 0.5 } else { f + 0.5 }) as i64
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// One pass over a plane `[h][w]`, horizontal or vertical, with Pillow's rounding and u8
/// clipping, computing only the outputs `keep` of the resized axis (`out_n` long).
fn pillow_pass(
    src: &[u8],
    (w, h): (usize, usize),
    out_n: usize,
    horizontal: bool,
    keep: std::ops::Range<usize>,
) -> Vec<u8> {
    let coeffs = pillow_coeffs(if horizontal { w } else { h }, out_n);
    let (ow, oh) = if horizontal {
        (keep.len(), h)
    } else {
        (w, keep.len())
    };
    let mut out = vec![0u8; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            let (start, k) = &coeffs[keep.start + if horizontal { x } else { y }];
            let acc = k.iter().enumerate().fold(1i64 << 21, |acc, (t, &c)| {
                let p = if horizontal {
                    src[y * w + start + t]
                } else {
                    src[(start + t) * w + x]
                };
                acc + c * i64::from(p)
            });
            out[y * ow + x] = (acc >> 22).clamp(0, 255) as u8;
        }
    }
    out
}

/// Rows `keep` (vertical) or columns `keep` (horizontal) of a plane, without resizing.
fn crop_axis(
    src: &[u8],
    (w, h): (usize, usize),
    horizontal: bool,
    keep: std::ops::Range<usize>,
) -> Vec<u8> {
    if horizontal {
        (0..h)
            .flat_map(|y| src[y * w + keep.start..y * w + keep.end].to_vec())
            .collect()
    } else {
        src[keep.start * w..keep.end * w].to_vec()
    }
}

/// The whole transform, written out plainly: per channel Pillow's two passes (Pillow 13 runs
/// the vertical one first when the height loses more than twice as many pixels as the width),
/// each keeping only the resized rows or columns inside the centre crop (the passes are
/// separable, so this equals cropping afterwards), then the normalisation.
fn scalar_reference(rgb: &Array3<u8>) -> Array3<f32> {
    let (h, w, _) = rgb.dim();
    let (ow, oh) = if w <= h {
        (224, (224 * h as u64 / w as u64) as usize)
    } else {
        ((224 * w as u64 / h as u64) as usize, 224)
    };
    let half_even = |d: usize| d / 2 + usize::from(d % 2 == 1 && (d / 2) % 2 == 1);
    let (top, left) = (half_even(oh - 224), half_even(ow - 224));
    let vertical_first = oh < h && (h - oh) as i64 > 2 * (w as i64 - ow as i64);
    let order = if vertical_first {
        [false, true]
    } else {
        [true, false]
    };
    let mut out = Array3::zeros((3, 224, 224));
    for c in 0..3 {
        let mut img: Vec<u8> = rgb.index_axis(Axis(2), c).iter().copied().collect();
        let mut size = (w, h);
        for horizontal in order {
            let (from, to, keep) = if horizontal {
                (w, ow, left..left + 224)
            } else {
                (h, oh, top..top + 224)
            };
            img = if from == to {
                crop_axis(&img, size, horizontal, keep)
            } else {
                pillow_pass(&img, size, to, horizontal, keep)
            };
            size = if horizontal {
                (224, size.1)
            } else {
                (size.0, 224)
            };
        }
        let (mean, std) = (CLIP_MEAN[c] as f32, CLIP_STD[c] as f32);
        for (o, &k) in out.index_axis_mut(Axis(0), c).iter_mut().zip(&img) {
            *o = (f32::from(k) / 255.0 - mean) / std;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_sizes_match_the_scalar_pillow_emulation(
        w in 1usize..700,
        h in 1usize..700,
        seed in any::<u64>(),
    ) {
        let mut s = seed | 1;
        let rgb = Array3::from_shape_fn((h, w, 3), |(y, x, c)| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // Saturated blocks (clipping between the passes) mixed with noise.
            match (x / 5 + y / 3 + c) % 4 {
                0 => 0,
                1 => 255,
                _ => (s >> 32) as u8,
            }
        });
        let out = VisionPreprocessor::new().tensor_rgb(rgb.view()).unwrap();
        let want = scalar_reference(&rgb);
        let (max, differing) = diff(&out, &want);
        prop_assert_eq!(differing, 0, "{}x{}: max {}", w, h, max);
    }
}

#[test]
fn extreme_aspect_ratios_match_the_scalar_emulation() {
    // One-pixel rows and columns (upscale of one axis, huge downscale of the other) and a
    // tall frame that Pillow 13 resizes vertical pass first.
    for (w, h) in [(1, 1), (1, 300), (300, 1), (2, 2), (300, 700), (1000, 3)] {
        let rgb = Array3::from_shape_fn((h, w, 3), |(y, x, c)| {
            ((x * 31 + y * 17 + c * 80) % 256) as u8
        });
        let out = VisionPreprocessor::new().tensor_rgb(rgb.view()).unwrap();
        let (max, differing) = diff(&out, &scalar_reference(&rgb));
        assert_eq!(differing, 0, "{w}x{h}: max {max}");
    }
}
