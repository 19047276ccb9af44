//! Invariants of the untrusted-file readers (`.npy`, WAV, concept bank, IMU CSV), checked by the
//! cargo-fuzz targets (`fuzz_targets/{npy,wav,concept_bank}.rs`) and, on stable Rust, by
//! `tests/file_readers_fuzz.rs` over proptest inputs, where a counting allocator also checks
//! that no allocation exceeds a small multiple of the input's length.
//!
//! Input format: `data[0]` chooses the element type, dimensions or embedding width, the rest is
//! the file (for the concept bank: labels, a NUL byte, the embeddings `.npy`). Every check
//! panics on violation; a reader may only return a value or a one-line error naming the file.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use edgebind::concepts::ConceptBank;
use edgebind::files::npy::{self, NpyElement};
use edgebind::sources::audio_replay::decode_wav;
use edgebind::sources::imu_replay::parse_csv;
use ndarray::{Dimension, Ix1, Ix2, Ix3, IxDyn};

/// A limit far above any fuzz input, so that the size checks against the file itself are what
/// stops a hostile header.
const LIMIT: u64 = 1 << 30;

fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&selector, rest)) => (selector, rest),
        None => (0, &[]),
    }
}

/// An error is one line that starts with the file's name.
fn assert_one_line(message: &str, name: &str) {
    assert!(
        message.starts_with(&format!("{name}: ")),
        "does not name the file: {message}"
    );
    assert!(!message.contains('\n'), "more than one line: {message}");
}

fn npy_as<A: NpyElement, D: Dimension>(file: &[u8]) {
    let path = Path::new("fuzz.npy");
    match npy::read_from::<A, D>(
        &mut &file[..],
        file.len() as u64,
        path,
        LIMIT,
        "a fuzz input",
    ) {
        Ok(a) => assert!(
            (a.len() * std::mem::size_of::<A>()) as u64 <= file.len() as u64,
            "more elements than the file holds"
        ),
        Err(e) => assert_one_line(&e.to_string(), "fuzz.npy"),
    }
}

/// The `.npy` reader on any bytes, as one of the element types and dimensions edgebind reads.
pub fn check_npy(data: &[u8]) {
    let (selector, file) = split(data);
    match selector % 6 {
        0 => npy_as::<f32, Ix2>(file),
        1 => npy_as::<f32, IxDyn>(file),
        2 => npy_as::<u8, Ix3>(file),
        3 => npy_as::<u16, Ix2>(file),
        4 => npy_as::<i64, Ix1>(file),
        _ => {
            if let Err(e) =
                npy::read_header(&mut &file[..], file.len() as u64, Path::new("fuzz.npy"))
            {
                assert_one_line(&e.to_string(), "fuzz.npy");
            }
        }
    }
}

/// The WAV decoder on any bytes: audio no longer than the file, or a one-line error.
pub fn check_wav(data: &[u8]) {
    let (_, file) = split(data);
    match decode_wav(file, file.len() as u64, Path::new("fuzz.wav")) {
        Ok(audio) => {
            let samples: usize = audio.planar.iter().map(Vec::len).sum();
            assert!(samples <= file.len(), "more samples than bytes");
            assert!(audio
                .planar
                .iter()
                .all(|c| c.len() == audio.planar[0].len()));
        }
        Err(e) => assert_one_line(&e.to_string(), "fuzz.wav"),
    }
}

/// The concept bank on any labels and embeddings: a bank of at least one concept whose labels
/// and rows agree and whose rows are unit vectors, or a one-line error.
pub fn check_concept_bank(data: &[u8]) {
    let (selector, rest) = split(data);
    let dim = 1 + usize::from(selector % 4);
    let (labels, npy_bytes) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let labels = String::from_utf8_lossy(labels);
    let path = Path::new("fuzz.npy");
    match ConceptBank::parse(
        &labels,
        &mut &npy_bytes[..],
        npy_bytes.len() as u64,
        path,
        dim,
    ) {
        Ok(bank) => {
            assert!(!bank.is_empty(), "an empty bank was accepted");
            assert_eq!(bank.dim(), dim);
            assert_eq!(bank.labels().len(), bank.len());
            assert!(bank.labels().iter().all(|l| !l.trim().is_empty()));
            let probe = vec![1.0f32; dim];
            for m in bank.top_k(&probe, bank.len(), -1.0) {
                assert!((-1.0..=1.0).contains(&m.score), "score {}", m.score);
            }
        }
        Err(e) => assert_one_line(&e.to_string(), "fuzz.npy"),
    }
}

/// The IMU CSV parser on any bytes: no more samples than lines, times that increase, or a
/// one-line error.
pub fn check_imu_csv(data: &[u8]) {
    let (selector, file) = split(data);
    let rate = (selector % 2 == 0).then_some(100.0);
    match parse_csv(file, Path::new("fuzz.csv"), rate) {
        Ok(rec) => {
            let lines = file.iter().filter(|&&b| b == b'\n' || b == b'\r').count() + 1;
            assert!(rec.samples.len() <= lines, "more samples than lines");
            assert!(rec.skipped.len() as u64 <= rec.skipped_total);
            assert!(rec.sample_rate_hz.is_finite() && rec.sample_rate_hz > 0.0);
        }
        Err(e) => assert_one_line(&e.to_string(), "fuzz.csv"),
    }
}
