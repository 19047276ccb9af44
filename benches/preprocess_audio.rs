#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Per-window cost of the audio preprocessing: one 2 s window of 44.1 kHz stereo
//! (`refdata/audio/window_2s_44k1_stereo.wav`), single thread.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgebind::preprocess::audio::{AudioParams, AudioPreprocessor, SincResampler};

fn refdata_dir() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("EDGEBIND_REFDATA") {
        return p.into();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/refdata")
}

/// Planar channels of the reference window (int16 / 32768) and its rate.
fn window_wav() -> (Vec<Vec<f32>>, u32) {
    let path = refdata_dir().join("audio/window_2s_44k1_stereo.wav");
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    let channels = spec.channels as usize;
    let mut planar = vec![Vec::new(); channels];
    for (i, s) in reader.samples::<i16>().enumerate() {
        planar[i % channels].push(f32::from(s.unwrap()) / 32768.0);
    }
    (planar, spec.sample_rate)
}

fn bench_window(c: &mut Criterion) {
    let (planar, rate) = window_wav();
    let ch0 = planar[0].clone();
    let resampler = SincResampler::new(rate, 16_000).unwrap();
    let mut resampled = Vec::new();
    resampler.process_into(&ch0, &mut resampled);
    let mut pre = AudioPreprocessor::new(AudioParams::default()).unwrap();

    let mut group = c.benchmark_group("audio_window_2s_44k1");
    group.bench_function("resample_ch0_44k1_to_16k", |b| {
        let mut out = Vec::with_capacity(32_000);
        b.iter(|| {
            resampler.process_into(black_box(&ch0), &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("fbank_32000_samples", |b| {
        let mut out = ndarray::Array2::<f32>::zeros((128, 204));
        let mut fbank = edgebind::preprocess::audio::KaldiFbank::new(128).unwrap();
        b.iter(|| {
            fbank
                .compute_into(black_box(&resampled), out.view_mut())
                .unwrap()
        })
    });
    group.bench_function("window_tensor_into_3_clips", |b| {
        let mut out = ndarray::Array4::<f32>::zeros((3, 1, 128, 204));
        b.iter(|| {
            pre.window_tensor_into(black_box(&ch0), rate, out.view_mut())
                .unwrap()
        })
    });
    group.bench_function("window_tensor_into_1_clip", |b| {
        // S = 1 gives the same embedding as S = 3 for 2 s windows (SPEC §2, daemon window).
        let mut out = ndarray::Array4::<f32>::zeros((1, 1, 128, 204));
        b.iter(|| {
            pre.window_tensor_into(black_box(&ch0), rate, out.view_mut())
                .unwrap()
        })
    });
    group.bench_function("window_tensor_3_clips_alloc", |b| {
        b.iter(|| pre.window_tensor(black_box(&ch0), rate, 3).unwrap())
    });
    group.bench_function("file_tensor_stereo_3_clips", |b| {
        b.iter(|| pre.file_tensor(black_box(&planar), rate, 3).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_window);
criterion_main!(benches);
