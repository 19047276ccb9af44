//! `edgebind preprocess vision` / `embed vision` with the real binary: every refdata scene, as
//! `.npy` and as PNG, gives ImageBind's tensor bit for bit; a JPEG gives Pillow's within the
//! decoders' difference; the embedding equals the daemon's for the same frame and lands on the
//! tiny model's label; hostile files are one-line errors naming the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use edgebind::config::ExecutionProviderKind;
use edgebind::inference::{Encoder, OrtRuntime};
use edgebind::Modality;
use ndarray::{Array2, Array3, Array4, Axis};

const SCENES: [&str; 5] = [
    "rgb_640x480",
    "rgb_848x480",
    "rgb_480x640",
    "rgb_224x224",
    "rgb_160x120",
];

fn vision_ref(name: &str) -> PathBuf {
    refdata_dir().join("vision").join(name)
}

fn tiny_vision() -> PathBuf {
    repo().join("models/tiny/vision.onnx")
}

/// Runs `edgebind preprocess vision IN` and returns the tensor written.
fn preprocess(input: &Path) -> Array3<f32> {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("x.npy");
    let out = run(edgebind()
        .args(["preprocess", "vision"])
        .arg(input)
        .arg("-o")
        .arg(&out_path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ndarray_npy::read_npy(&out_path).unwrap()
}

/// Runs `edgebind preprocess vision IN` expecting exit 1; returns stderr.
fn preprocess_err(input: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = run(edgebind()
        .args(["preprocess", "vision"])
        .arg(input)
        .arg("-o")
        .arg(dir.path().join("x.npy")));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(!dir.path().join("x.npy").exists());
    err
}

fn max_diff(a: &Array3<f32>, b: &Array3<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn bit_equal(a: &Array3<f32>, b: &Array3<f32>) -> bool {
    a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn preprocess_vision_of_every_refdata_scene_as_npy_and_png_is_imagebinds_bit_for_bit() {
    for scene in SCENES {
        let want: Array3<f32> =
            ndarray_npy::read_npy(vision_ref(&format!("{scene}_out_3x224x224_f32.npy"))).unwrap();
        assert_eq!(want.shape(), [3, 224, 224]);
        for ext in ["npy", "png"] {
            let got = preprocess(&vision_ref(&format!("{scene}.{ext}")));
            assert!(
                bit_equal(&got, &want),
                "{scene}.{ext}: max |Δ| {}",
                max_diff(&got, &want)
            );
        }
    }
}

#[test]
fn preprocess_vision_of_a_jpeg_is_pillows_within_the_decoders_difference() {
    // Pillow's decode of the same JPEG, stored losslessly.
    for name in ["rgb_640x480_q90_420", "rgb_320x240_q90_422"] {
        let jpeg = preprocess(&fixture(&format!("vision/{name}.jpg")));
        let pillow = preprocess(&fixture(&format!("vision/{name}_pillow.png")));
        let d = max_diff(&jpeg, &pillow);
        // decode.rs: at most 0.044 after preprocessing on these fixtures.
        assert!(d <= 0.045, "{name}: max |Δ| {d}");
        assert!(
            !bit_equal(&jpeg, &pillow),
            "{name}: decoders differ a little"
        );
    }
}

#[test]
fn preprocess_vision_takes_the_first_frame_of_an_npy_stack() {
    let scene: Array3<u8> = ndarray_npy::read_npy(vision_ref("rgb_160x120.npy")).unwrap();
    let mut stack = Array4::<u8>::zeros((3, 120, 160, 3));
    stack.index_axis_mut(Axis(0), 0).assign(&scene);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stack.npy");
    ndarray_npy::write_npy(&path, &stack).unwrap();
    let want: Array3<f32> =
        ndarray_npy::read_npy(vision_ref("rgb_160x120_out_3x224x224_f32.npy")).unwrap();
    assert!(bit_equal(&preprocess(&path), &want));
}

/// The label of the tiny concept bank nearest to `v` (cosine).
fn nearest_label(v: &[f32]) -> String {
    let bank: Array2<f32> = ndarray_npy::read_npy(repo().join("models/tiny/concepts.npy")).unwrap();
    let labels = std::fs::read_to_string(repo().join("models/tiny/concepts.txt")).unwrap();
    let labels: Vec<&str> = labels.lines().collect();
    let cos = |row: ndarray::ArrayView1<f32>| {
        let dot: f32 = row.iter().zip(v).map(|(a, b)| a * b).sum();
        dot / row.dot(&row).sqrt()
    };
    let best = bank
        .outer_iter()
        .map(cos)
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
        .0;
    labels[best].to_string()
}

#[test]
fn embed_vision_writes_1x1024_equal_to_the_daemons_embedding_of_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("emb.npy");
    let out = run(edgebind()
        .args(["embed", "vision"])
        .arg(vision_ref("rgb_640x480.png"))
        .arg("--model")
        .arg(tiny_vision())
        .arg("-o")
        .arg(&out_path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = npy_f32_2d(&out_path);
    assert_eq!(got.shape(), [1, 1024]);
    // The daemon's encoder on ImageBind's own tensor for the scene.
    let want: Array3<f32> =
        ndarray_npy::read_npy(vision_ref("rgb_640x480_out_3x224x224_f32.npy")).unwrap();
    let rt = OrtRuntime::load(None).unwrap();
    let mut enc = Encoder::load(
        &rt,
        Modality::Vision,
        &tiny_vision(),
        &[ExecutionProviderKind::Cpu],
        false,
        1,
    )
    .unwrap();
    let want = enc.run_one(&want.into_dyn()).unwrap();
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert_eq!(max, 0.0, "embed differs from the daemon's embedding");
    let norm = got.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-3,
        "vision embeddings are unit: {norm}"
    );
    // models/README.md: the refdata scenes hold saturated red colour bars.
    assert_eq!(nearest_label(&want), "red object in view");
}

/// A PNG whose IHDR declares `width_px` x `height_px` 8-bit RGB, followed by a few bytes of
/// image data: valid chunks and CRCs, far too little data.
fn png_header(width_px: u32, height_px: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        let mut body = kind.to_vec();
        body.extend(data);
        bytes.extend((data.len() as u32).to_be_bytes());
        bytes.extend(&body);
        bytes.extend(crc32fast::hash(&body).to_be_bytes());
    };
    let mut ihdr = width_px.to_be_bytes().to_vec();
    ihdr.extend(height_px.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    bytes
}

#[test]
fn hostile_pictures_and_stacks_are_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // A PNG declaring 100000 x 100000 px: refused before anything is allocated.
    let huge = write("huge.png", &png_header(100_000, 100_000));
    let err = preprocess_err(&huge);
    assert!(err.contains("huge.png"), "{err}");
    assert!(err.contains("100000x100000 px"), "{err}");
    // Truncated PNG and JPEG.
    let png = std::fs::read(vision_ref("rgb_160x120.png")).unwrap();
    let cut = write("cut.png", &png[..png.len() / 2]);
    let err = preprocess_err(&cut);
    assert!(err.contains("cut.png"), "{err}");
    let jpeg = std::fs::read(fixture("vision/rgb_320x240_q90_422.jpg")).unwrap();
    let cut = write("cut.jpg", &jpeg[..600]);
    let err = preprocess_err(&cut);
    assert!(err.contains("cut.jpg"), "{err}");
    // Neither PNG nor JPEG.
    let text = write("notes.png", b"hello");
    let err = preprocess_err(&text);
    assert!(err.contains("notes.png: not a PNG or JPEG file"), "{err}");
    // A grey stack, and a stack whose header declares far more than the file holds.
    let grey = dir.path().join("grey.npy");
    ndarray_npy::write_npy(&grey, &Array3::<u8>::zeros((2, 4, 5))).unwrap();
    let err = preprocess_err(&grey);
    assert!(
        err.contains("grey.npy: is uint8 [2, 4, 5]; a vision recording must be uint8"),
        "{err}"
    );
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (100000, 4000, 4000, 3), }";
    let padded = format!("{header:<117}\n");
    npy.extend((padded.len() as u16).to_le_bytes());
    npy.extend(padded.as_bytes());
    npy.extend([0u8; 64]);
    let lying = write("lying.npy", &npy);
    let err = preprocess_err(&lying);
    assert!(err.contains("lying.npy"), "{err}");
}
