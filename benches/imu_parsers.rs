//! Throughput of the serial IMU parsers on realistic streams, in bytes per second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgebind::sources::imu_serial::csv_line::{
    CsvConfig, CsvLayout, CsvLineParser, TimeColumn, TimeUnit,
};
use edgebind::sources::imu_serial::protocol::{ImuParser, ImuReading};
use edgebind::sources::imu_serial::witmotion::{WitmotionConfig, WitmotionParser};

fn frame(kind: u8, data: [i16; 4]) -> [u8; 11] {
    let mut f = [0u8; 11];
    f[0] = 0x55;
    f[1] = kind;
    for (chunk, x) in f[2..10].chunks_exact_mut(2).zip(data) {
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    f[10] = f[..10].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    f
}

/// A WT901 at 200 Hz with time, acc, gyro, angle and magnetometer enabled (55 bytes per step),
/// a little line noise every 100 steps. About 1.1 MB.
fn witmotion_stream() -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..20_000u32 {
        let t = (i % 30_000) as i16;
        let ms = (i * 5 % 1000) as i16;
        s.extend(frame(0x50, [0x0518, 0x0C11, 0x3822, ms]));
        s.extend(frame(0x51, [t % 300, -(t % 170), 2048 + t % 40, 2612]));
        s.extend(frame(0x52, [t % 900, -(t % 50), t % 7, 0]));
        s.extend(frame(0x53, [t, -t, t / 2, 0]));
        s.extend(frame(0x54, [120, -340, 560, 0]));
        if i % 100 == 0 {
            s.extend([0x00, 0x55, 0x13]);
        }
    }
    s
}

/// `t_ms,ax,ay,az,gx,gy,gz` at 4–6 significant digits, CRLF, about 1 MB.
fn csv_stream() -> Vec<u8> {
    let mut s = String::from("t_ms,ax,ay,az,gx,gy,gz\r\n");
    for i in 0..20_000u32 {
        let x = i as f32;
        s.push_str(&format!(
            "{},{:.4},{:.4},{:.4},{:.3},{:.3},{:.3}\r\n",
            1_000_000 + i * 5,
            (x * 0.1).sin() * 0.05,
            (x * 0.07).cos() * 0.03,
            0.998 + (x * 0.2).sin() * 0.01,
            (x * 0.3).sin() * 12.0,
            (x * 0.11).cos() * -4.0,
            (x * 0.05).sin() * 1.5
        ));
    }
    s.into_bytes()
}

fn bench_parser<P: ImuParser>(c: &mut Criterion, name: &str, stream: &[u8], make: impl Fn() -> P) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(stream.len() as u64));
    // 4096: a read from a USB-serial adapter at high baud; 64: a read per FTDI latency tick.
    for read_bytes in [4096usize, 64] {
        group.bench_with_input(
            BenchmarkId::new("read_bytes", read_bytes),
            &read_bytes,
            |b, &n| {
                let mut out: Vec<ImuReading> = Vec::with_capacity(1024);
                b.iter(|| {
                    let mut parser = make();
                    let mut samples = 0usize;
                    for chunk in stream.chunks(n) {
                        parser.push(black_box(chunk), &mut out);
                        samples += out.len();
                        out.clear();
                    }
                    black_box(samples)
                });
            },
        );
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let wit = witmotion_stream();
    bench_parser(c, "witmotion", &wit, || {
        WitmotionParser::new(WitmotionConfig::default()).unwrap()
    });
    let csv = csv_stream();
    let config = CsvConfig {
        layout: CsvLayout {
            acc_columns: [1, 2, 3],
            gyro_columns: [4, 5, 6],
            time_column: Some(TimeColumn {
                column: 0,
                unit: TimeUnit::Milliseconds,
            }),
        },
        ..CsvConfig::default()
    };
    bench_parser(c, "csv_line", &csv, || CsvLineParser::new(config).unwrap());
}

criterion_group!(imu_parsers, benches);
criterion_main!(imu_parsers);
