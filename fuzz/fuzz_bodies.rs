//! Invariants checked on arbitrary input by the cargo-fuzz targets (`fuzz_targets/*.rs`) and, on
//! stable Rust, by `tests/imu_parsers_fuzz.rs` over proptest-generated inputs.
//!
//! Input format: `data[0]` (and `data[1]` for CSV) choose the configuration, `data[2]` seeds the
//! chunk sizes, the rest is the byte stream. Every check panics on violation.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use edgebind::sources::imu_serial::csv_line::{
    AccUnit, CsvConfig, CsvLayout, CsvLineParser, Delimiter, GyroUnit, TimeColumn, TimeUnit,
};
use edgebind::sources::imu_serial::protocol::{ImuParser, ImuReading};
use edgebind::sources::imu_serial::witmotion::{WitmotionConfig, WitmotionParser, FRAME_LEN};

/// Chunk lengths 0..=67 from a tiny LCG, so one input also fixes one way to split the stream.
fn chunks(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut rest = stream;
    let mut out = Vec::new();
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = ((state >> 16) % 68) as usize;
        let (head, tail) = rest.split_at(len.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

fn split_header(data: &[u8]) -> ([u8; 3], &[u8]) {
    let mut header = [0u8; 3];
    let n = data.len().min(3);
    header[..n].copy_from_slice(&data[..n]);
    (header, &data[n..])
}

fn assert_readings_sane(out: &[ImuReading], max_acc: f32, max_gyro: f32) {
    for r in out {
        for v in r.acc_mps2 {
            assert!(v.is_finite() && v.abs() <= max_acc, "acc {v} out of range");
        }
        for v in r.gyro_radps {
            assert!(
                v.is_finite() && v.abs() <= max_gyro,
                "gyro {v} out of range"
            );
        }
    }
}

/// Push `chunks` one by one, checking the buffer bound after each push.
fn run_chunked<P: ImuParser>(
    parser: &mut P,
    chunks: &[&[u8]],
    max_buffer: usize,
) -> Vec<ImuReading> {
    let mut out = Vec::new();
    for chunk in chunks {
        parser.push(chunk, &mut out);
        assert!(
            parser.buffered_bytes() <= max_buffer,
            "buffer bound exceeded"
        );
    }
    out
}

pub fn check_witmotion(data: &[u8]) {
    let ([config_byte, seed, _], stream) = split_header(data);
    let config = WitmotionConfig {
        acc_range_g: [2.0, 4.0, 8.0, 16.0][usize::from(config_byte & 3)],
        gyro_range_dps: [250.0, 500.0, 1000.0, 2000.0][usize::from((config_byte >> 2) & 3)],
    };
    let mut chunked = WitmotionParser::new(config).unwrap();
    let mut whole = WitmotionParser::new(config).unwrap();
    let out_chunked = run_chunked(&mut chunked, &chunks(stream, seed), FRAME_LEN - 1);
    let out_whole = run_chunked(&mut whole, &[stream], FRAME_LEN - 1);

    assert_eq!(out_chunked, out_whole, "chunking changed the output");
    assert_eq!(chunked.stats(), whole.stats(), "chunking changed the stats");
    assert_eq!(chunked.buffered_bytes(), whole.buffered_bytes());
    let s = whole.stats();
    // Every byte is accounted for exactly once: in a frame, discarded, or still buffered.
    assert_eq!(
        s.frames_ok * FRAME_LEN as u64 + s.bytes_discarded + whole.buffered_bytes() as u64,
        stream.len() as u64,
        "byte accounting: {s:?}"
    );
    assert!(
        out_whole.len() as u64 * 2 <= s.frames_ok,
        "a sample needs two frames"
    );
    assert!(s.bad_checksums <= s.bytes_discarded);
    assert_readings_sane(
        &out_whole,
        whole.max_abs_acc_mps2(),
        whole.max_abs_gyro_radps(),
    );
}

pub fn check_csv_line(data: &[u8]) {
    let ([config_byte, size_byte, seed], stream) = split_header(data);
    let bit = |n: u8| config_byte & (1 << n) != 0;
    let layout = if bit(0) {
        CsvLayout {
            acc_columns: [6, 5, 4],
            gyro_columns: [1, 2, 3],
            time_column: Some(TimeColumn {
                column: 0,
                unit: [
                    TimeUnit::Seconds,
                    TimeUnit::Milliseconds,
                    TimeUnit::Microseconds,
                    TimeUnit::Nanoseconds,
                ][usize::from((config_byte >> 6) & 3)],
            }),
        }
    } else {
        CsvLayout::default()
    };
    let config = CsvConfig {
        layout,
        delimiter: [
            Delimiter::Comma,
            Delimiter::Semicolon,
            Delimiter::Tab,
            Delimiter::Space,
        ][usize::from((config_byte >> 1) & 3)],
        acc_unit: if bit(3) {
            AccUnit::G
        } else {
            AccUnit::MetersPerSecond2
        },
        gyro_unit: if bit(4) {
            GyroUnit::DegPerSec
        } else {
            GyroUnit::RadPerSec
        },
        max_line_bytes: 16 + usize::from(size_byte),
        discard_first_line: bit(5),
        max_preamble_lines: u32::from(size_byte & 3),
    };
    let mut chunked = CsvLineParser::new(config).unwrap();
    let mut whole = CsvLineParser::new(config).unwrap();
    let max_buffer = config.max_line_bytes;
    let out_chunked = run_chunked(&mut chunked, &chunks(stream, seed), max_buffer);
    let out_whole = run_chunked(&mut whole, &[stream], max_buffer);

    assert_eq!(out_chunked, out_whole, "chunking changed the output");
    assert_eq!(chunked.stats(), whole.stats(), "chunking changed the stats");
    assert_eq!(chunked.buffered_bytes(), whole.buffered_bytes());
    let s = whole.stats();
    assert_eq!(s.frames_ok, out_whole.len() as u64);
    assert_eq!(s.bad_checksums, 0);
    let newlines = stream.iter().filter(|&&b| b == b'\n').count() as u64;
    let open_overlong = u64::from(!stream.ends_with(b"\n") && s.overlong_lines > 0);
    assert!(
        s.frames_ok + s.bad_lines + s.skipped_lines + s.overlong_lines <= newlines + open_overlong,
        "more lines counted than exist: {s:?}, {newlines} newlines"
    );
    assert!(s.bytes_discarded <= stream.len() as u64);
    assert_readings_sane(&out_whole, f32::MAX, f32::MAX);
    if config.layout.time_column.is_some() {
        assert!(out_whole.iter().all(|r| r.device_time_ns.is_some()));
    }
}
