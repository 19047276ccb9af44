#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Decoding of raw V4L2 buffers laid out byte for byte as the thermal cameras deliver them.

use edgebind::sources::thermal_decode::{
    BufferGeometry, DecodeError, FrameLayout, PixelFormat, ThermalDecoder, ThermalFrame,
};
use proptest::prelude::*;

/// Padding byte that must never show up in a decoded frame.
const PAD: u8 = 0xEE;

/// Builds a buffer of `rows` rows, each `row(r)` followed by padding up to `stride`; the last
/// row's padding is included only if `pad_last`.
fn buffer(rows: usize, stride: usize, pad_last: bool, row: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let mut buf = Vec::new();
    for r in 0..rows {
        let bytes = row(r);
        assert!(bytes.len() <= stride);
        buf.extend_from_slice(&bytes);
        if r + 1 < rows || pad_last {
            buf.resize(buf.len() + stride - bytes.len(), PAD);
        }
    }
    buf
}

fn geometry(width_px: u32, height_px: u32, bytes_per_line: u32) -> BufferGeometry {
    BufferGeometry {
        width_px,
        height_px,
        bytes_per_line,
    }
}

fn y16_value(x: usize, y: usize) -> u16 {
    // Lepton TLinear-like centi-kelvin with both bytes varying.
    29315u16.wrapping_add((x * 37 + y * 311) as u16)
}

fn le_row(width: usize, y: usize, f: impl Fn(usize, usize) -> u16) -> Vec<u8> {
    (0..width).flat_map(|x| f(x, y).to_le_bytes()).collect()
}

#[test]
fn fourcc_codes_round_trip() {
    assert_eq!(PixelFormat::Y16.fourcc(), *b"Y16 ");
    assert_eq!(PixelFormat::Grey.fourcc(), *b"GREY");
    assert_eq!(PixelFormat::Yuyv.fourcc(), *b"YUYV");
    assert_eq!(PixelFormat::Uyvy.fourcc(), *b"UYVY");
    for f in PixelFormat::ALL {
        assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
    }
    assert_eq!(PixelFormat::from_fourcc(*b"MJPG"), None);
}

#[test]
fn lepton_y16_160x122_strips_two_telemetry_rows() {
    let stride = 320 + 16; // padded rows
    let buf = buffer(122, stride, true, |y| {
        if y < 120 {
            le_row(160, y, y16_value)
        } else {
            vec![0xAB; 320] // telemetry
        }
    });
    let dec =
        ThermalDecoder::new(PixelFormat::Y16, FrameLayout::Lepton { telemetry_rows: 2 }).unwrap();
    let ThermalFrame::U16(frame) = dec.decode(&buf, geometry(160, 122, stride as u32)).unwrap()
    else {
        panic!("Y16 decodes to U16")
    };
    assert_eq!(frame.dim(), (120, 160));
    for ((y, x), &v) in frame.indexed_iter() {
        assert_eq!(v, y16_value(x, y), "at ({x},{y})");
    }
}

#[test]
fn lepton_y16_160x120_without_telemetry_keeps_all_rows() {
    let buf = buffer(120, 320, false, |y| le_row(160, y, y16_value));
    let dec =
        ThermalDecoder::new(PixelFormat::Y16, FrameLayout::Lepton { telemetry_rows: 2 }).unwrap();
    let ThermalFrame::U16(frame) = dec.decode(&buf, geometry(160, 120, 320)).unwrap() else {
        panic!("Y16 decodes to U16")
    };
    assert_eq!(frame.dim(), (120, 160));
    assert_eq!(frame[[119, 159]], y16_value(159, 119));
    assert_eq!(frame[[0, 1]], y16_value(1, 0));
}

#[test]
fn lepton2_80x63_strips_three_telemetry_rows() {
    let buf = buffer(63, 160, true, |y| {
        if y < 60 {
            le_row(80, y, y16_value)
        } else {
            vec![0x55; 160]
        }
    });
    let dec =
        ThermalDecoder::new(PixelFormat::Y16, FrameLayout::Lepton { telemetry_rows: 3 }).unwrap();
    let frame = dec.decode(&buf, geometry(80, 63, 160)).unwrap();
    assert_eq!(frame.size_px(), (80, 60));
    let ThermalFrame::U16(a) = frame else {
        panic!()
    };
    assert_eq!(a[[59, 79]], y16_value(79, 59));
}

#[test]
fn lepton_layout_rejects_unexpected_height() {
    let buf = vec![0u8; 121 * 320];
    let dec =
        ThermalDecoder::new(PixelFormat::Y16, FrameLayout::Lepton { telemetry_rows: 2 }).unwrap();
    let err = dec.decode(&buf, geometry(160, 121, 320)).unwrap_err();
    assert!(matches!(err, DecodeError::LayoutMismatch { .. }), "{err}");
    assert!(err.to_string().contains("160x121"), "{err}");
}

#[test]
fn plain_y16_with_padding_and_short_last_row() {
    // 5x3, stride 14 (4 bytes of padding), last row without padding.
    let buf = buffer(3, 14, false, |y| le_row(5, y, y16_value));
    assert_eq!(buf.len(), 2 * 14 + 10);
    let dec = ThermalDecoder::new(PixelFormat::Y16, FrameLayout::Plain).unwrap();
    let ThermalFrame::U16(a) = dec.decode(&buf, geometry(5, 3, 14)).unwrap() else {
        panic!()
    };
    for ((y, x), &v) in a.indexed_iter() {
        assert_eq!(v, y16_value(x, y));
    }
}

#[test]
fn grey_with_odd_stride_skips_padding() {
    // 7x4 at bytesperline 9: 2 padding bytes per row.
    let buf = buffer(4, 9, true, |y| (0..7).map(|x| (y * 10 + x) as u8).collect());
    let dec = ThermalDecoder::new(PixelFormat::Grey, FrameLayout::Plain).unwrap();
    let ThermalFrame::U8(a) = dec.decode(&buf, geometry(7, 4, 9)).unwrap() else {
        panic!()
    };
    assert_eq!(a.dim(), (4, 7));
    for ((y, x), &v) in a.indexed_iter() {
        assert_eq!(usize::from(v), y * 10 + x);
    }
    assert!(!a.iter().any(|&v| v == PAD));
}

#[test]
fn yuyv_takes_luma_bytes() {
    // 6x2 YUYV at odd stride 15: Y0 U Y1 V macropixels; chroma bytes are 0x80 / 0x7F.
    let buf = buffer(2, 15, true, |y| {
        (0..3)
            .flat_map(|m| [(y * 6 + 2 * m) as u8, 0x80, (y * 6 + 2 * m + 1) as u8, 0x7F])
            .collect()
    });
    let dec = ThermalDecoder::new(PixelFormat::Yuyv, FrameLayout::Plain).unwrap();
    let ThermalFrame::U8(a) = dec.decode(&buf, geometry(6, 2, 15)).unwrap() else {
        panic!()
    };
    assert_eq!(a.as_slice().unwrap(), &(0u8..12).collect::<Vec<_>>()[..]);
}

#[test]
fn uyvy_takes_luma_bytes() {
    // Lepton's default colourised UYVY: U Y0 V Y1.
    let buf = buffer(2, 8 + 3, true, |y| {
        (0..2)
            .flat_map(|m| {
                [
                    0x80,
                    (100 + y * 4 + 2 * m) as u8,
                    0x7F,
                    (100 + y * 4 + 2 * m + 1) as u8,
                ]
            })
            .collect()
    });
    let dec = ThermalDecoder::new(PixelFormat::Uyvy, FrameLayout::Plain).unwrap();
    let ThermalFrame::U8(a) = dec.decode(&buf, geometry(4, 2, 11)).unwrap() else {
        panic!()
    };
    assert_eq!(a.as_slice().unwrap(), &(100u8..108).collect::<Vec<_>>()[..]);
}

fn infiray_raw(x: usize, y: usize) -> u16 {
    // 20 C = 293.15 K * 64 = 18761.6; add a gradient reaching ~ +10 K.
    18762 + (x + 2 * y) as u16
}

#[test]
fn infiray_split_frame_returns_temperature_half() {
    let (w, h) = (256usize, 384usize);
    let buf = buffer(h, 2 * w, true, |y| {
        if y < h / 2 {
            // image half: YUYV grey ramp, must not leak into the temperature frame
            (0..w).flat_map(|x| [(x % 256) as u8, 0x80]).collect()
        } else {
            le_row(w, y - h / 2, infiray_raw)
        }
    });
    let dec = ThermalDecoder::new(PixelFormat::Yuyv, FrameLayout::InfiRaySplit).unwrap();
    let ThermalFrame::InfiRayTemperature(t) = dec
        .decode(&buf, geometry(w as u32, h as u32, 2 * w as u32))
        .unwrap()
    else {
        panic!("split frame decodes to InfiRayTemperature")
    };
    assert_eq!(t.dim(), (192, 256));
    for ((y, x), &v) in t.indexed_iter() {
        assert_eq!(v, infiray_raw(x, y), "at ({x},{y})");
    }
    let c = f64::from(t[[0, 0]]) / 64.0 - 273.15;
    assert!((c - 20.0).abs() < 0.02, "{c}");
}

#[test]
fn infiray_split_with_padded_stride() {
    let (w, h, stride) = (4usize, 6usize, 12usize);
    let buf = buffer(h, stride, false, |y| {
        if y < 3 {
            vec![0x10; 2 * w]
        } else {
            le_row(w, y - 3, infiray_raw)
        }
    });
    let dec = ThermalDecoder::new(PixelFormat::Yuyv, FrameLayout::InfiRaySplit).unwrap();
    let ThermalFrame::InfiRayTemperature(t) = dec
        .decode(&buf, geometry(w as u32, h as u32, stride as u32))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(t.dim(), (3, 4));
    assert_eq!(t[[2, 3]], infiray_raw(3, 2));
}

#[test]
fn infiray_split_rejects_odd_height_and_wrong_format() {
    let dec = ThermalDecoder::new(PixelFormat::Yuyv, FrameLayout::InfiRaySplit).unwrap();
    let err = dec
        .decode(&[0u8; 512 * 3], geometry(256, 3, 512))
        .unwrap_err();
    assert!(matches!(err, DecodeError::LayoutMismatch { .. }), "{err}");
    assert!(matches!(
        ThermalDecoder::new(PixelFormat::Grey, FrameLayout::InfiRaySplit),
        Err(DecodeError::UnsupportedLayout { .. })
    ));
}

#[test]
fn truncated_buffer_error_names_format_and_sizes() {
    let buf = buffer(120, 320, false, |y| le_row(160, y, y16_value));
    let dec = ThermalDecoder::new(PixelFormat::Y16, FrameLayout::Plain).unwrap();
    let err = dec
        .decode(&buf[..buf.len() - 1], geometry(160, 120, 320))
        .unwrap_err();
    assert_eq!(
        err,
        DecodeError::Truncated {
            format: PixelFormat::Y16,
            width_px: 160,
            height_px: 120,
            bytes_per_line: 320,
            needed: 38400,
            actual: 38399,
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("'Y16 '") && msg.contains("160x120") && msg.contains("38399"),
        "{msg}"
    );
}

#[test]
fn stride_shorter_than_row_is_an_error() {
    let dec = ThermalDecoder::new(PixelFormat::Yuyv, FrameLayout::Plain).unwrap();
    let err = dec.decode(&[0u8; 1024], geometry(16, 4, 31)).unwrap_err();
    assert!(
        matches!(err, DecodeError::StrideTooSmall { row_bytes: 32, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("'YUYV'"), "{err}");
}

#[test]
fn zero_sizes_are_errors() {
    let dec = ThermalDecoder::new(PixelFormat::Grey, FrameLayout::Plain).unwrap();
    for g in [geometry(0, 10, 10), geometry(10, 0, 10), geometry(0, 0, 0)] {
        assert!(matches!(
            dec.decode(&[0u8; 100], g),
            Err(DecodeError::ZeroSize { .. })
        ));
    }
}

#[test]
fn huge_geometry_is_an_error_not_an_overflow() {
    let dec = ThermalDecoder::new(PixelFormat::Y16, FrameLayout::Plain).unwrap();
    let r = dec.decode(&[0u8; 64], geometry(u32::MAX, u32::MAX, u32::MAX));
    assert!(r.is_err());
}

fn any_format() -> impl Strategy<Value = PixelFormat> {
    prop::sample::select(PixelFormat::ALL.to_vec())
}

fn any_layout() -> impl Strategy<Value = FrameLayout> {
    prop_oneof![
        Just(FrameLayout::Plain),
        (0u32..5).prop_map(|telemetry_rows| FrameLayout::Lepton { telemetry_rows }),
        Just(FrameLayout::InfiRaySplit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_buffers_and_geometries_never_panic(
        format in any_format(),
        layout in any_layout(),
        width_px in prop_oneof![0u32..40, Just(u32::MAX), any::<u32>()],
        height_px in prop_oneof![0u32..40, Just(u32::MAX), any::<u32>()],
        bytes_per_line in prop_oneof![0u32..100, any::<u32>()],
        buf in prop::collection::vec(any::<u8>(), 0..4000),
    ) {
        let Ok(dec) = ThermalDecoder::new(format, layout) else {
            return Ok(());
        };
        if let Ok(frame) = dec.decode(&buf, geometry(width_px, height_px, bytes_per_line)) {
            let (w, h) = frame.size_px();
            prop_assert_eq!(w as u32, width_px);
            prop_assert!(h as u32 <= height_px && h > 0);
        }
    }

    #[test]
    fn grey_decode_returns_exactly_the_pixel_bytes(
        width_px in 1u32..24, height_px in 1u32..24, pad in 0u32..7, seed in any::<u8>()
    ) {
        let stride = width_px + pad;
        let (w, h, s) = (width_px as usize, height_px as usize, stride as usize);
        let buf: Vec<u8> = (0..s * h).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let dec = ThermalDecoder::new(PixelFormat::Grey, FrameLayout::Plain).unwrap();
        let ThermalFrame::U8(a) = dec.decode(&buf, geometry(width_px, height_px, stride)).unwrap() else {
            panic!()
        };
        for ((y, x), &v) in a.indexed_iter() {
            prop_assert_eq!(v, buf[y * s + x]);
        }
        prop_assert_eq!(a.dim(), (h, w));
    }
}
