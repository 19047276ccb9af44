//! The untrusted-file readers (`.npy`, WAV, concept bank, IMU CSV) on arbitrary and on
//! hostile-but-plausible bytes: a value or a one-line error, never a panic, and no allocation
//! larger than a small multiple of the input (the cargo-fuzz invariants of
//! `fuzz/file_readers_bodies.rs`, on stable Rust). Own test binary: it installs an allocator
//! that records the largest single allocation of the test's thread.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Implementing `GlobalAlloc` requires `unsafe`; the impl only forwards to `System` and records.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;

#[path = "../fuzz/file_readers_bodies.rs"]
mod bodies;

struct LargestAlloc;

thread_local! {
    /// Largest allocation while recording on this thread (`None`: not recording).
    static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if let Some(max) = l.get() {
            l.set(Some(max.max(size)));
        }
    });
}

unsafe impl GlobalAlloc for LargestAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: LargestAlloc = LargestAlloc;

/// Buffers every reader may take whatever the input (the header, `csv`'s and `BufReader`'s
/// 8 KiB buffers): the fixed part of the bound.
const FIXED_BYTES: usize = 64 << 10;

/// Runs `check` on `data` and fails if any single allocation exceeded 8 bytes per input byte
/// (float32 samples from 8-bit WAV data are 4) plus [`FIXED_BYTES`].
fn bounded(check: fn(&[u8]), data: &[u8]) {
    LARGEST.with(|l| l.set(Some(0)));
    check(data);
    let largest = LARGEST.with(|l| l.replace(None)).unwrap_or(0);
    let bound = 8 * data.len() + FIXED_BYTES;
    assert!(
        largest <= bound,
        "allocated {largest} bytes at once for a {}-byte input",
        data.len()
    );
}

/// A `.npy` header in numpy's layout (version 1, padded to 64 bytes) followed by `data`.
fn npy_file(descr: &str, fortran: bool, shape: &[u64], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let fortran = if fortran { "True" } else { "False" };
    let mut text =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple}, }}");
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Plausible headers: real dtypes, small or huge dimensions, data of the right length or not,
/// then a few bytes overwritten.
fn npy_input() -> impl Strategy<Value = Vec<u8>> {
    let descr = prop::sample::select(vec!["<f4", ">f4", "|u1", "<u2", "<i8", "<f8", "|b1", "<U3"]);
    let dim = prop_oneof![4 => 0u64..6, 1 => Just(3_000_000u64), 1 => Just(u64::MAX / 3), 1 => any::<u64>()];
    let shape = prop::collection::vec(dim, 0..4);
    let extra = prop_oneof![4 => Just(0i64), 2 => -8i64..8];
    let flips = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3);
    (any::<u8>(), descr, any::<bool>(), shape, extra, flips).prop_map(
        |(selector, descr, fortran, shape, extra, flips)| {
            let item: u64 = descr[2..].parse().unwrap_or(1);
            let exact = shape
                .iter()
                .try_fold(item, |a, &d| a.checked_mul(d))
                .unwrap_or(u64::MAX);
            let len = if exact <= 4096 {
                exact as i64 + extra
            } else {
                extra.abs() * 16
            };
            let data: Vec<u8> = (0..len.max(0)).map(|i| (i * 37) as u8).collect();
            let mut file = vec![selector];
            file.extend(npy_file(descr, fortran, &shape, &data));
            for (at, byte) in flips {
                let i = at.index(file.len());
                file[i] = byte;
            }
            file
        },
    )
}

/// Plausible WAV headers: real and odd format fields, data chunks declaring up to 4 GiB.
fn wav_input() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![1u16, 3, 0xfffe, 2, 0]),
        0u16..4,
        prop::sample::select(vec![0u16, 8, 12, 16, 24, 32, 64]),
        prop_oneof![Just(16_000u32), any::<u32>()],
        prop_oneof![2 => 0u32..64, 1 => Just(u32::MAX - 1), 1 => any::<u32>()],
        prop::collection::vec(any::<u8>(), 0..96),
    )
        .prop_map(|(format, channels, bits, rate, data_len, data)| {
            let block_align = channels * bits.div_ceil(8);
            let mut b = vec![0u8];
            b.extend_from_slice(b"RIFF");
            b.extend_from_slice(&u32::MAX.to_le_bytes());
            b.extend_from_slice(b"WAVEfmt ");
            b.extend_from_slice(&16u32.to_le_bytes());
            b.extend_from_slice(&format.to_le_bytes());
            b.extend_from_slice(&channels.to_le_bytes());
            b.extend_from_slice(&rate.to_le_bytes());
            b.extend_from_slice(&rate.wrapping_mul(u32::from(block_align)).to_le_bytes());
            b.extend_from_slice(&block_align.to_le_bytes());
            b.extend_from_slice(&bits.to_le_bytes());
            b.extend_from_slice(b"data");
            b.extend_from_slice(&data_len.to_le_bytes());
            b.extend_from_slice(&data);
            b
        })
}

/// Labels and an embeddings `.npy` `[K, dim]` whose values may be zero, NaN or anything.
fn bank_input() -> impl Strategy<Value = Vec<u8>> {
    let value =
        prop_oneof![4 => -1.0f32..1.0, 1 => Just(0.0f32), 1 => Just(f32::NAN), 1 => any::<f32>()];
    (
        0usize..4,
        1usize..5,
        prop::collection::vec(value, 0..20),
        "[a-z \n]{0,30}",
        npy_input(),
    )
        .prop_map(|(k, dim, values, labels, hostile)| {
            let data: Vec<u8> = values
                .iter()
                .cycle()
                .take(k * dim)
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let npy = if k > 0 && data.len() < k * dim * 4 {
                hostile[1..].to_vec()
            } else {
                npy_file("<f4", false, &[k as u64, dim as u64], &data)
            };
            let mut out = vec![(dim - 1) as u8];
            out.extend_from_slice(labels.as_bytes());
            out.push(0);
            out.extend(npy);
            out
        })
}

fn csv_input() -> impl Strategy<Value = Vec<u8>> {
    let row = prop_oneof![
        4 => "[0-9]\\.[0-9]{1,3},-?[0-9],[0-9],9\\.8,0,0,[0-9]".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..20),
        1 => Just(b"x,".to_vec()),
    ];
    (any::<u8>(), prop::collection::vec(row, 0..40)).prop_map(|(selector, rows)| {
        let mut out = vec![selector];
        out.extend_from_slice(b"t_s,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n");
        for r in rows {
            out.extend(r);
            out.push(b'\n');
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn npy_reader_gives_a_value_or_an_error_within_the_file_size(data in npy_input()) {
        bounded(bodies::check_npy, &data);
    }

    #[test]
    fn wav_reader_gives_a_value_or_an_error_within_the_file_size(data in wav_input()) {
        bounded(bodies::check_wav, &data);
    }

    #[test]
    fn concept_bank_gives_a_bank_or_an_error_within_the_file_size(data in bank_input()) {
        bounded(bodies::check_concept_bank, &data);
    }

    #[test]
    fn imu_csv_gives_a_recording_or_an_error_within_the_file_size(data in csv_input()) {
        bounded(bodies::check_imu_csv, &data);
    }

    #[test]
    fn every_reader_survives_uniform_random_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        bounded(bodies::check_npy, &data);
        bounded(bodies::check_wav, &data);
        bounded(bodies::check_concept_bank, &data);
        bounded(bodies::check_imu_csv, &data);
    }
}

#[test]
fn the_hostile_files_of_issue_14_stay_within_the_bound() {
    // 128 bytes declaring 24 TB, as a frame stack, an IMU recording and a concept bank.
    let huge = npy_file("|u1", false, &[3_000_000, 1_000_000, 8], &[]);
    for selector in 0..6u8 {
        let mut data = vec![selector];
        data.extend_from_slice(&huge);
        bounded(bodies::check_npy, &data);
    }
    let mut bank = vec![3u8];
    bank.extend_from_slice(b"a\nb\n\0");
    bank.extend_from_slice(&npy_file("<f4", false, &[3_000_000, 1_000_000, 8], &[]));
    bounded(bodies::check_concept_bank, &bank);
    // A header nested 5000 brackets deep (ndarray-npy's parser took 640 KiB at once for it).
    let mut deep = vec![1u8];
    let text = format!("{}{}", "(".repeat(5000), ")".repeat(5000));
    deep.extend_from_slice(b"\x93NUMPY\x01\x00");
    deep.extend_from_slice(&((text.len() + 1) as u16).to_le_bytes());
    deep.extend_from_slice(text.as_bytes());
    deep.push(b'\n');
    bounded(bodies::check_npy, &deep);
    // A WAV whose data chunk declares 4 GiB of 8-bit samples.
    let mut wav = vec![0u8];
    wav.extend_from_slice(b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00");
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&[1, 0, 8, 0]);
    wav.extend_from_slice(b"data\xff\xff\xff\xff\x80\x80");
    bounded(bodies::check_wav, &wav);
}
