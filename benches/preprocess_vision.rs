#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
//! Vision preprocessing hot paths: a 640x480 RGB frame, a 640x480 YUYV camera buffer and an
//! 848x480 RealSense RGB8 frame to the `[3, 224, 224]` tensor, and a 640x480 JPEG decode.
//!
//! `cargo bench --bench preprocess_vision` runs criterion (wall clock);
//! `EDGEBIND_BENCH_CPU=1 cargo bench --bench preprocess_vision` prints the per-call on-CPU time
//! table (see benches/preprocess_thermal.rs for the knobs). The Pillow + torchvision figure for
//! the same 640x480 frame comes from `tools/vision_pillow_timing.py` (docs/performance.md).

use std::cell::RefCell;
use std::hint::black_box;

use criterion::Criterion;
use edgebind::preprocess::vision::decode::decode_jpeg;
use edgebind::preprocess::vision::frame::{FrameLayout, PixelFormat};
use edgebind::preprocess::vision::VisionPreprocessor;
use ndarray::{Array3, ArrayView3};

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::{cpu_time_table, Case};

/// Deterministic RGB content with edges, gradients and noise, so no pass can short-cut.
fn frame(width_px: usize, height_px: usize) -> Array3<u8> {
    let mut s = 0x2545_f491_u32;
    Array3::from_shape_fn((height_px, width_px, 3), |(y, x, c)| {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        let disc = (x as i64 - 320).pow(2) + (y as i64 - 240).pow(2) < 120 * 120;
        let base = if disc {
            230
        } else {
            (x * 3 + y + c * 70) % 256
        };
        (base as u32 + (s & 15)).min(255) as u8
    })
}

/// The frame packed as YUYV (any bytes will do for timing; the conversion has no fast paths).
fn yuyv(rgb: ArrayView3<u8>) -> Vec<u8> {
    rgb.as_slice()
        .unwrap()
        .chunks_exact(6)
        .flat_map(|p| [p[1], p[0], p[4], p[2]])
        .collect()
}

fn jpeg_fixture() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vision/rgb_640x480_q90_420.jpg");
    std::fs::read(path).unwrap()
}

struct Inputs {
    rgb_640: Array3<u8>,
    rgb_848: Array3<u8>,
    yuyv_640: Vec<u8>,
    jpeg_640: Vec<u8>,
}

fn cases<'a>(
    pre: &'a RefCell<VisionPreprocessor>,
    out: &'a RefCell<Array3<f32>>,
    inputs: &'a Inputs,
) -> Vec<Case<'a>> {
    let yuyv_layout = FrameLayout::packed(PixelFormat::Yuyv, 640, 480);
    vec![
        (
            "vision_rgb_640x480_to_tensor",
            Box::new(move || {
                let img = black_box(inputs.rgb_640.view());
                pre.borrow_mut()
                    .tensor_rgb_into(img, out.borrow_mut().view_mut())
                    .unwrap()
            }),
        ),
        (
            "vision_rgb_640x480_to_tensor_alloc",
            Box::new(move || {
                let img = black_box(inputs.rgb_640.view());
                black_box(pre.borrow_mut().tensor_rgb(img).unwrap());
            }),
        ),
        (
            "vision_rgb_848x480_to_tensor",
            Box::new(move || {
                let img = black_box(inputs.rgb_848.view());
                pre.borrow_mut()
                    .tensor_rgb_into(img, out.borrow_mut().view_mut())
                    .unwrap()
            }),
        ),
        (
            "vision_yuyv_640x480_to_tensor",
            Box::new(move || {
                let buf = black_box(&inputs.yuyv_640);
                pre.borrow_mut()
                    .tensor_frame_into(buf, &yuyv_layout, out.borrow_mut().view_mut())
                    .unwrap()
            }),
        ),
        (
            "vision_jpeg_640x480_decode",
            Box::new(move || {
                black_box(decode_jpeg(black_box(&inputs.jpeg_640)).unwrap());
            }),
        ),
    ]
}

fn main() {
    let pre = RefCell::new(VisionPreprocessor::new());
    let out = RefCell::new(Array3::<f32>::zeros((3, 224, 224)));
    let rgb_640 = frame(640, 480);
    let inputs = Inputs {
        yuyv_640: yuyv(rgb_640.view()),
        rgb_640,
        rgb_848: frame(848, 480),
        jpeg_640: jpeg_fixture(),
    };
    let mut cases = cases(&pre, &out, &inputs);
    if std::env::var_os("EDGEBIND_BENCH_CPU").is_some() {
        cpu_time_table(&mut cases);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    for (name, call) in cases.iter_mut() {
        c.bench_function(name, |b| b.iter(&mut *call));
    }
    c.final_summary();
}
