//! Behaviour of the serial IMU parsers: datasheet values, chunking independence, recovery from
//! garbage with exact accounting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgebind::sources::imu_serial::csv_line::{
    AccUnit, CsvConfig, CsvLayout, CsvLineParser, Delimiter, GyroUnit, TimeColumn, TimeUnit,
};
use edgebind::sources::imu_serial::protocol::{ImuParser, ImuReading, ParserStats};
use edgebind::sources::imu_serial::witmotion::{WitmotionConfig, WitmotionParser};
use proptest::prelude::*;

const G_MPS2: f32 = 9.806_65;
const DEG_TO_RAD: f32 = std::f32::consts::PI / 180.0;

// ---------------------------------------------------------------- helpers

fn checksum(first10: &[u8]) -> u8 {
    first10.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

fn frame(kind: u8, data: [u8; 8]) -> [u8; 11] {
    let mut f = [0u8; 11];
    f[0] = 0x55;
    f[1] = kind;
    f[2..10].copy_from_slice(&data);
    f[10] = checksum(&f[..10]);
    f
}

fn i16x4(v: [i16; 4]) -> [u8; 8] {
    let mut d = [0u8; 8];
    for (chunk, x) in d.chunks_exact_mut(2).zip(v) {
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    d
}

fn witmotion() -> WitmotionParser {
    WitmotionParser::new(WitmotionConfig::default()).unwrap()
}

fn run<P: ImuParser>(mut parser: P, chunks: &[&[u8]]) -> (Vec<ImuReading>, ParserStats, usize) {
    let mut out = Vec::new();
    for chunk in chunks {
        parser.push(chunk, &mut out);
    }
    (out, *parser.stats(), parser.buffered_bytes())
}

fn assert_close(actual: f32, expected: f32, what: &str) {
    let tol = 1e-6 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tol,
        "{what}: got {actual}, expected {expected}"
    );
}

/// Split `bytes` at the given cut points (sorted, deduplicated, clamped).
fn split_at_cuts<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for c in cuts {
        chunks.push(&bytes[start..c]);
        start = c;
    }
    chunks.push(&bytes[start..]);
    chunks
}

/// Model of the frame search: a candidate at every 0x55, greedy, one byte forward on rejection.
/// Returns the start offsets of accepted frames.
fn reference_frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut p = 0;
    while p + 11 <= bytes.len() {
        let c = &bytes[p..p + 11];
        if c[0] == 0x55 && (0x50..=0x5F).contains(&c[1]) && checksum(&c[..10]) == c[10] {
            starts.push(p);
            p += 11;
        } else {
            p += 1;
        }
    }
    starts
}

// ---------------------------------------------------------------- WitMotion: datasheet values

/// Frames written out by hand from the WT901 datasheet formulas; the checksums were added up by
/// hand and are cross-checked against `checksum` below.
const TIME_2024_05_17_123456_789: [u8; 11] = [
    0x55, 0x50, 0x18, 0x05, 0x11, 0x0C, 0x22, 0x38, 0x15, 0x03, 0x51,
];
/// ax = 0xF800 = -2048 (-1 g), ay = 0, az = 0x0800 = 2048 (+1 g), T = 0x0A28 = 26.00 °C.
const ACC_MINUS1G_0_PLUS1G: [u8; 11] = [
    0x55, 0x51, 0x00, 0xF8, 0x00, 0x00, 0x00, 0x08, 0x28, 0x0A, 0xD8,
];
/// wx = 0x0800 = 2048 (125 °/s), wy = 0xC000 = -16384 (-1000 °/s), wz = 0.
const GYRO_125_MINUS1000_0: [u8; 11] = [
    0x55, 0x52, 0x00, 0x08, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x6F,
];
/// Angles all zero: recognised and skipped.
const ANGLE_ZERO: [u8; 11] = [
    0x55, 0x53, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xA8,
];

#[test]
fn hand_written_frames_have_correct_checksums() {
    for f in [
        TIME_2024_05_17_123456_789,
        ACC_MINUS1G_0_PLUS1G,
        GYRO_125_MINUS1000_0,
        ANGLE_ZERO,
    ] {
        assert_eq!(checksum(&f[..10]), f[10], "frame {f:02X?}");
    }
}

#[test]
fn witmotion_frames_decode_to_datasheet_values() {
    let stream = [
        TIME_2024_05_17_123456_789,
        ACC_MINUS1G_0_PLUS1G,
        GYRO_125_MINUS1000_0,
        ANGLE_ZERO,
    ]
    .concat();
    let (out, stats, buffered) = run(witmotion(), &[&stream]);
    assert_eq!(out.len(), 1);
    let r = out[0];
    assert_close(r.acc_mps2[0], -G_MPS2, "ax");
    assert_close(r.acc_mps2[1], 0.0, "ay");
    assert_close(r.acc_mps2[2], G_MPS2, "az");
    assert_close(r.gyro_radps[0], 125.0 * DEG_TO_RAD, "wx");
    assert_close(r.gyro_radps[1], -1000.0 * DEG_TO_RAD, "wy");
    assert_close(r.gyro_radps[2], 0.0, "wz");
    // 2024-05-17T12:34:56.789Z (Python: datetime(...).timestamp() == 1715949296.789).
    assert_eq!(r.device_time_ns, Some(1_715_949_296_789_000_000));
    assert_eq!(stats.frames_ok, 4);
    assert_eq!(stats.bytes_discarded, 0);
    assert_eq!(buffered, 0);
}

#[test]
fn witmotion_full_scale_values_stay_within_configured_range() {
    let stream = [
        frame(0x51, i16x4([i16::MIN, i16::MAX, 0, 0])),
        frame(0x52, i16x4([i16::MIN, i16::MAX, 0, 0])),
    ]
    .concat();
    let (out, _, _) = run(witmotion(), &[&stream]);
    assert_close(out[0].acc_mps2[0], -16.0 * G_MPS2, "ax min");
    assert_close(
        out[0].acc_mps2[1],
        16.0 * G_MPS2 * 32767.0 / 32768.0,
        "ay max",
    );
    assert_close(out[0].gyro_radps[0], -2000.0 * DEG_TO_RAD, "wx min");
}

#[test]
fn sample_without_time_frame_has_no_device_time() {
    let stream = [ACC_MINUS1G_0_PLUS1G, GYRO_125_MINUS1000_0].concat();
    let (out, _, _) = run(witmotion(), &[&stream]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].device_time_ns, None);
}

#[test]
fn second_acc_without_gyro_drops_the_first_and_counts_it() {
    let acc_a = frame(0x51, i16x4([100, 0, 0, 0]));
    let acc_b = frame(0x51, i16x4([200, 0, 0, 0]));
    let stream = [
        TIME_2024_05_17_123456_789,
        acc_a,
        acc_b,
        GYRO_125_MINUS1000_0,
        GYRO_125_MINUS1000_0,
    ]
    .concat();
    let (out, stats, _) = run(witmotion(), &[&stream]);
    assert_eq!(out.len(), 1);
    assert_close(
        out[0].acc_mps2[0],
        200.0 * 16.0 * G_MPS2 / 32768.0,
        "ax of acc_b",
    );
    assert_eq!(
        out[0].device_time_ns, None,
        "the time frame belonged to the dropped acc, not to acc_b"
    );
    assert_eq!(
        stats.unpaired_frames, 2,
        "acc_a superseded + trailing gyro without acc"
    );
    assert_eq!(stats.frames_ok, 5);
}

#[test]
fn sync_byte_inside_garbage_does_not_hide_the_real_frame_after_it() {
    // A fake header 5 bytes before a real frame: the 11-byte candidate starting at it overlaps the
    // real acc frame and fails its checksum; the search must restart one byte after it.
    let mut stream = vec![0x55, 0x51, 0x01, 0x02, 0x03];
    stream.extend_from_slice(&ACC_MINUS1G_0_PLUS1G);
    stream.extend_from_slice(&GYRO_125_MINUS1000_0);
    assert_ne!(
        checksum(&stream[..10]),
        stream[10],
        "fake candidate must be invalid"
    );
    let (out, stats, _) = run(witmotion(), &[&stream]);
    assert_eq!(out.len(), 1);
    assert_close(out[0].acc_mps2[2], G_MPS2, "az");
    assert_eq!(stats.bad_checksums, 1);
    assert_eq!(stats.bytes_discarded, 5);
    // Same when the fake header arrives alone in its own read.
    let (out_chunked, stats_chunked, _) = run(witmotion(), &[&stream[..2], &stream[2..]]);
    assert_eq!(out_chunked, out);
    assert_eq!(stats_chunked, stats);
}

#[test]
fn frame_with_corrupted_byte_is_lost_but_neighbours_are_kept() {
    let mut bad_gyro = GYRO_125_MINUS1000_0;
    bad_gyro[4] ^= 0x01;
    let stream = [
        ACC_MINUS1G_0_PLUS1G,
        bad_gyro,
        ACC_MINUS1G_0_PLUS1G,
        GYRO_125_MINUS1000_0,
    ]
    .concat();
    let (out, stats, _) = run(witmotion(), &[&stream]);
    assert_eq!(out.len(), 1);
    assert_eq!(stats.bad_checksums, 1);
    assert_eq!(stats.bytes_discarded, 11);
    assert_eq!(stats.unpaired_frames, 1);
    assert_eq!(stats.frames_ok, 3);
}

fn realistic_witmotion_stream(steps: usize) -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..steps {
        let t = i as i16;
        let ms = (i * 5 % 1000) as u16;
        let [ms_lo, ms_hi] = ms.to_le_bytes();
        s.extend(frame(
            0x50,
            [24, 5, 17, 12, 34, (i / 200 % 60) as u8, ms_lo, ms_hi],
        ));
        s.extend(frame(0x51, i16x4([t * 3, -t, 2048 + t, 2600])));
        s.extend(frame(0x52, i16x4([-t * 7, t, t / 2, 0])));
        s.extend(frame(0x53, i16x4([t, t, t, 0])));
        if i % 7 == 3 {
            s.extend_from_slice(&[0x55, 0x00, 0x55, 0x52, 0x13]); // line noise with sync bytes
        }
    }
    s
}

#[test]
fn witmotion_every_two_chunk_split_matches_one_push() {
    let stream = realistic_witmotion_stream(12);
    let whole = run(witmotion(), &[&stream]);
    assert_eq!(whole.0.len(), 12);
    for cut in 0..=stream.len() {
        let split = run(witmotion(), &[&stream[..cut], &stream[cut..]]);
        assert_eq!(split, whole, "split at {cut}");
    }
}

// ---------------------------------------------------------------- WitMotion: properties

#[derive(Debug, Clone)]
struct Step {
    acc: [i16; 3],
    gyro: [i16; 3],
    time: Option<(u8, u8, u8, u8, u8, u8, u16)>,
    has_gyro: bool,
    has_angle: bool,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    (
        any::<[i16; 3]>(),
        any::<[i16; 3]>(),
        proptest::option::of((
            0u8..100,
            1u8..=12,
            1u8..=28,
            0u8..24,
            0u8..60,
            0u8..60,
            0u16..1000,
        )),
        proptest::bool::weighted(0.9),
        any::<bool>(),
    )
        .prop_map(|(acc, gyro, time, has_gyro, has_angle)| Step {
            acc,
            gyro,
            time,
            has_gyro,
            has_angle,
        })
}

fn garbage_strategy() -> impl Strategy<Value = Vec<u8>> {
    // Biased towards sync and type bytes so the resynchronisation path is exercised constantly.
    prop::collection::vec(prop_oneof![Just(0x55u8), 0x50u8..=0x5F, any::<u8>()], 0..24)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Independent (loop-based) civil date → days since 1970-01-01, for the test's expectations.
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0;
    for year in 1970..y {
        days += if leap(year) { 366 } else { 365 };
    }
    let month_days = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += month_days[..(m - 1) as usize].iter().sum::<i64>();
    days + d - 1
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_global_rejects: 4096, ..ProptestConfig::default() })]

    #[test]
    fn witmotion_recovers_every_frame_between_garbage(
        steps in prop::collection::vec(step_strategy(), 1..24),
        garbage in prop::collection::vec(garbage_strategy(), 100),
        cuts in prop::collection::vec(0usize..2000, 0..12),
    ) {
        let mut stream = Vec::new();
        let mut real_starts = Vec::new();
        let mut garbage_bytes = 0usize;
        let mut expected = Vec::new();
        let mut expected_unpaired = 0u64;
        let mut frames = 0u64;
        let mut g = garbage.iter().cycle();
        let mut emit = |stream: &mut Vec<u8>, real_starts: &mut Vec<usize>, f: [u8; 11]| {
            let junk = g.next().unwrap();
            stream.extend_from_slice(junk);
            garbage_bytes += junk.len();
            real_starts.push(stream.len());
            stream.extend_from_slice(&f);
        };
        for (i, s) in steps.iter().enumerate() {
            if let Some((yy, mo, dd, hh, mi, ss, ms)) = s.time {
                let [lo, hi] = ms.to_le_bytes();
                emit(&mut stream, &mut real_starts, frame(0x50, [yy, mo, dd, hh, mi, ss, lo, hi]));
                frames += 1;
            }
            emit(&mut stream, &mut real_starts, frame(0x51, i16x4([s.acc[0], s.acc[1], s.acc[2], 2500])));
            frames += 1;
            if s.has_gyro {
                emit(&mut stream, &mut real_starts, frame(0x52, i16x4([s.gyro[0], s.gyro[1], s.gyro[2], 0])));
                frames += 1;
                let time = s.time.map(|(yy, mo, dd, hh, mi, ss, ms)| {
                    let days = days_from_civil(2000 + i64::from(yy), i64::from(mo), i64::from(dd));
                    let secs = days * 86_400 + i64::from(hh) * 3600 + i64::from(mi) * 60 + i64::from(ss);
                    secs as u64 * 1_000_000_000 + u64::from(ms) * 1_000_000
                });
                expected.push((s.acc, s.gyro, time));
            } else if i + 1 < steps.len() {
                expected_unpaired += 1;
            }
            if s.has_angle {
                emit(&mut stream, &mut real_starts, frame(0x53, [1, 2, 3, 4, 5, 6, 7, 8]));
                frames += 1;
            }
        }
        // Garbage that happens to contain a valid frame is not garbage: skip those cases.
        prop_assume!(reference_frame_starts(&stream) == real_starts);

        let (out, stats, buffered) = run(witmotion(), &split_at_cuts(&stream, &cuts));
        let acc_scale = 16.0 * G_MPS2 / 32768.0;
        let gyro_scale = 2000.0 * DEG_TO_RAD / 32768.0;
        prop_assert_eq!(out.len(), expected.len());
        for (r, (acc, gyro, time)) in out.iter().zip(&expected) {
            for k in 0..3 {
                prop_assert!((r.acc_mps2[k] - f32::from(acc[k]) * acc_scale).abs() <= 1e-4);
                prop_assert!((r.gyro_radps[k] - f32::from(gyro[k]) * gyro_scale).abs() <= 1e-5);
            }
            prop_assert_eq!(r.device_time_ns, *time);
        }
        prop_assert_eq!(stats.frames_ok, frames);
        prop_assert_eq!(stats.unpaired_frames, expected_unpaired);
        prop_assert_eq!(stats.bytes_discarded as usize + buffered, garbage_bytes);
        prop_assert_eq!(stats.bad_values, 0);
    }

    #[test]
    fn witmotion_random_chunking_matches_one_push(
        steps in 1usize..40,
        cuts in prop::collection::vec(0usize..2000, 0..40),
    ) {
        let stream = realistic_witmotion_stream(steps);
        let whole = run(witmotion(), &[&stream]);
        let chunked = run(witmotion(), &split_at_cuts(&stream, &cuts));
        prop_assert_eq!(chunked, whole);
    }
}

// ---------------------------------------------------------------- CSV: known values

fn csv(config: CsvConfig) -> CsvLineParser {
    CsvLineParser::new(config).unwrap()
}

#[test]
fn csv_default_layout_converts_g_and_deg_per_s_to_si() {
    let config = CsvConfig {
        discard_first_line: false,
        ..CsvConfig::default()
    };
    let (out, stats, _) = run(csv(config), &[b"0.5,-1,1.0,90,-180,0\r\n"]);
    assert_eq!(out.len(), 1);
    let r = out[0];
    assert_close(r.acc_mps2[0], 0.5 * G_MPS2, "ax");
    assert_close(r.acc_mps2[1], -G_MPS2, "ay");
    assert_close(r.acc_mps2[2], G_MPS2, "az");
    assert_close(r.gyro_radps[0], std::f32::consts::FRAC_PI_2, "gx");
    assert_close(r.gyro_radps[1], -std::f32::consts::PI, "gy");
    assert_eq!(r.device_time_ns, None);
    assert_eq!(stats.frames_ok, 1);
}

#[test]
fn csv_custom_column_order_delimiters_and_timestamps() {
    // time_us; gz gy gx; az ay ax — already SI.
    let layout = CsvLayout {
        acc_columns: [6, 5, 4],
        gyro_columns: [3, 2, 1],
        time_column: Some(TimeColumn {
            column: 0,
            unit: TimeUnit::Microseconds,
        }),
    };
    let line_by_delim = [
        (
            Delimiter::Semicolon,
            &b"1500;0.3;0.2;0.1;9.8;-0.5;0.25;extra\n"[..],
        ),
        (Delimiter::Tab, b"1500\t0.3\t0.2\t0.1\t9.8\t-0.5\t0.25\n"),
        (
            Delimiter::Space,
            b"  1500  0.3 0.2\t0.1   9.8 -0.5 0.25  \r\n",
        ),
        (Delimiter::Comma, b"1500, 0.3, 0.2, 0.1, 9.8, -0.5, 0.25\n"),
    ];
    for (delimiter, line) in line_by_delim {
        let config = CsvConfig {
            layout,
            delimiter,
            acc_unit: AccUnit::MetersPerSecond2,
            gyro_unit: GyroUnit::RadPerSec,
            discard_first_line: false,
            ..CsvConfig::default()
        };
        let (out, stats, _) = run(csv(config), &[line]);
        assert_eq!(out.len(), 1, "{delimiter:?}: {stats:?}");
        assert_eq!(out[0].acc_mps2, [0.25, -0.5, 9.8], "{delimiter:?}");
        assert_eq!(out[0].gyro_radps, [0.1, 0.2, 0.3], "{delimiter:?}");
        assert_eq!(out[0].device_time_ns, Some(1_500_000), "{delimiter:?}");
    }
}

#[test]
fn csv_timestamp_units_scale_to_nanoseconds() {
    for (unit, text, ns) in [
        (TimeUnit::Seconds, "12.000345", 12_000_345_000u64),
        (TimeUnit::Milliseconds, "12", 12_000_000),
        (TimeUnit::Microseconds, "12", 12_000),
        (TimeUnit::Nanoseconds, "12", 12),
    ] {
        let config = CsvConfig {
            layout: CsvLayout {
                time_column: Some(TimeColumn { column: 6, unit }),
                ..CsvLayout::default()
            },
            discard_first_line: false,
            ..CsvConfig::default()
        };
        let line = format!("0,0,0,0,0,0,{text}\n");
        let (out, _, _) = run(csv(config), &[line.as_bytes()]);
        assert_eq!(out[0].device_time_ns, Some(ns), "{unit:?}");
    }
}

#[test]
fn csv_bad_lines_are_counted_and_parsing_continues() {
    let config = CsvConfig {
        discard_first_line: false,
        max_preamble_lines: 0,
        ..CsvConfig::default()
    };
    let bad: [&[u8]; 4] = [
        b"0,0,1,0,0\n",       // too few columns
        b"0,0,1,0,zero,0\n",  // not a number
        b"0,0,\xFF1,0,0,0\n", // invalid UTF-8
        b"0,0,1,0,0,\n",      // empty field
    ];
    let mut stream = Vec::new();
    for line in bad {
        stream.extend_from_slice(line);
        stream.extend_from_slice(b"# comment\n\n0,0,1,0,0,0\n");
    }
    let (out, stats, _) = run(csv(config), &[&stream]);
    assert_eq!(out.len(), 4);
    assert_eq!(stats.bad_lines, 4);
    assert_eq!(stats.skipped_lines, 8);
    assert_eq!(
        stats.bytes_discarded,
        bad.iter().map(|l| l.len() as u64).sum::<u64>()
    );
}

#[test]
fn csv_overlong_line_is_discarded_up_to_the_next_newline() {
    let config = CsvConfig {
        discard_first_line: false,
        max_line_bytes: 32,
        ..CsvConfig::default()
    };
    let long = format!("{}\n", "1,".repeat(40)); // 80 bytes + newline
    let exact = format!("{},0,0,0,0,0\n", "0".repeat(22)); // exactly 32 bytes
    assert_eq!(exact.len(), 33);
    let stream = format!("0,0,1,0,0,0\n{long}{exact}0,0,2,0,0,0\n");
    let whole = run(csv(config), &[stream.as_bytes()]);
    assert_eq!(whole.0.len(), 3, "{:?}", whole.1);
    assert_eq!(whole.1.overlong_lines, 1);
    assert_eq!(whole.1.bytes_discarded, long.len() as u64);
    for cut in 0..=stream.len() {
        let split = run(
            csv(config),
            &[&stream.as_bytes()[..cut], &stream.as_bytes()[cut..]],
        );
        assert_eq!(split, whole, "split at {cut}");
    }
}

fn realistic_csv_stream(lines: usize) -> Vec<u8> {
    let mut s = String::from("# IMU logger\nt_ms,ax,ay,az,gx,gy,gz\n");
    for i in 0..lines {
        let x = i as f32;
        s.push_str(&format!(
            "{},{:.4},{:.4},{:.4},{:.3},{:.3},{:.3}\r\n",
            i * 5,
            (x * 0.1).sin() * 0.05,
            (x * 0.07).cos() * 0.03,
            0.998 + (x * 0.2).sin() * 0.01,
            (x * 0.3).sin() * 12.0,
            (x * 0.11).cos() * -4.0,
            (x * 0.05).sin() * 1.5
        ));
        if i % 9 == 4 {
            s.push_str("ERR sensor timeout\n");
        }
    }
    s.into_bytes()
}

fn csv_with_time() -> CsvLineParser {
    csv(CsvConfig {
        layout: CsvLayout {
            acc_columns: [1, 2, 3],
            gyro_columns: [4, 5, 6],
            time_column: Some(TimeColumn {
                column: 0,
                unit: TimeUnit::Milliseconds,
            }),
        },
        ..CsvConfig::default()
    })
}

#[test]
fn csv_every_two_chunk_split_matches_one_push() {
    let stream = realistic_csv_stream(12);
    let whole = run(csv_with_time(), &[&stream]);
    assert_eq!(whole.0.len(), 12);
    assert_eq!(whole.1.bad_lines, 1, "the ERR line");
    assert_eq!(
        whole.1.skipped_lines, 2,
        "first line discarded + header as preamble"
    );
    for cut in 0..=stream.len() {
        let split = run(csv_with_time(), &[&stream[..cut], &stream[cut..]]);
        assert_eq!(split, whole, "split at {cut}");
    }
}

// ---------------------------------------------------------------- CSV: properties

#[derive(Debug, Clone)]
enum CsvGarbage {
    /// Random bytes without newline or comma (can never have enough columns).
    Noise(Vec<u8>),
    /// A data line cut after fewer than all columns.
    Truncated(usize),
    /// A data line with one field replaced by text.
    BadField(usize),
}

fn csv_garbage_strategy() -> impl Strategy<Value = CsvGarbage> {
    prop_oneof![
        prop::collection::vec(
            any::<u8>().prop_filter("no newline/comma", |b| *b != b'\n' && *b != b','),
            0..300
        )
        .prop_map(CsvGarbage::Noise),
        (1usize..7).prop_map(CsvGarbage::Truncated),
        (0usize..7).prop_map(CsvGarbage::BadField),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn csv_recovers_every_line_between_garbage_lines(
        lines in prop::collection::vec(
            (any::<u32>(), [-16.0f32..16.0, -16.0f32..16.0, -16.0f32..16.0],
             [-2000.0f32..2000.0, -2000.0f32..2000.0, -2000.0f32..2000.0], any::<bool>()),
            1..30),
        garbage in prop::collection::vec(proptest::option::of(csv_garbage_strategy()), 30),
        cuts in prop::collection::vec(0usize..6000, 0..12),
    ) {
        let max_line_bytes = 256;
        let mut stream = Vec::new();
        let (mut bad, mut overlong, mut skipped, mut discarded) = (0u64, 0u64, 0u64, 0u64);
        for (i, (t_ms, acc_g, gyro_dps, crlf)) in lines.iter().enumerate() {
            let fields = [
                // Debug prints floats shortest-round-trip, in exponent form when tiny.
                t_ms.to_string(), format!("{:?}", acc_g[0]), format!("{:?}", acc_g[1]), format!("{:?}", acc_g[2]),
                format!("{:?}", gyro_dps[0]), format!("{:?}", gyro_dps[1]), format!("{:?}", gyro_dps[2]),
            ];
            if let Some(junk) = &garbage[i] {
                let line: Vec<u8> = match junk {
                    CsvGarbage::Noise(bytes) => bytes.clone(),
                    CsvGarbage::Truncated(n) => fields[..*n].join(",").into_bytes(),
                    CsvGarbage::BadField(k) => {
                        let mut f = fields.clone();
                        f[*k] = "n/a".into();
                        f.join(",").into_bytes()
                    }
                };
                // Expected classification, from the documented policy (no preamble allowed).
                let is_comment = std::str::from_utf8(&line)
                    .map(|s| s.trim_ascii().is_empty() || s.trim_ascii().starts_with('#'))
                    .unwrap_or(false);
                if line.len() > max_line_bytes {
                    overlong += 1;
                    discarded += line.len() as u64 + 1;
                } else if is_comment {
                    skipped += 1;
                } else {
                    bad += 1;
                    discarded += line.len() as u64 + 1;
                }
                stream.extend_from_slice(&line);
                stream.push(b'\n');
            }
            stream.extend_from_slice(fields.join(",").as_bytes());
            stream.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
        }
        let config = CsvConfig {
            layout: CsvLayout {
                acc_columns: [1, 2, 3],
                gyro_columns: [4, 5, 6],
                time_column: Some(TimeColumn { column: 0, unit: TimeUnit::Milliseconds }),
            },
            discard_first_line: false,
            max_preamble_lines: 0,
            max_line_bytes,
            ..CsvConfig::default()
        };
        let (out, stats, buffered) = run(csv(config), &split_at_cuts(&stream, &cuts));
        prop_assert_eq!(buffered, 0);
        prop_assert_eq!(out.len(), lines.len());
        for (r, (t_ms, acc_g, gyro_dps, _)) in out.iter().zip(&lines) {
            prop_assert_eq!(r.device_time_ns, Some(u64::from(*t_ms) * 1_000_000));
            for k in 0..3 {
                prop_assert!((r.acc_mps2[k] - acc_g[k] * G_MPS2).abs() <= 1e-4);
                prop_assert!((r.gyro_radps[k] - gyro_dps[k] * DEG_TO_RAD).abs() <= 1e-5);
            }
        }
        prop_assert_eq!(stats.frames_ok, lines.len() as u64);
        prop_assert_eq!(stats.bad_lines, bad);
        prop_assert_eq!(stats.overlong_lines, overlong);
        prop_assert_eq!(stats.skipped_lines, skipped);
        prop_assert_eq!(stats.bytes_discarded, discarded);
    }

    #[test]
    fn csv_random_chunking_matches_one_push(
        lines in 1usize..40,
        cuts in prop::collection::vec(0usize..3000, 0..40),
    ) {
        let stream = realistic_csv_stream(lines);
        let whole = run(csv_with_time(), &[&stream]);
        let chunked = run(csv_with_time(), &split_at_cuts(&stream, &cuts));
        prop_assert_eq!(chunked, whole);
    }
}
