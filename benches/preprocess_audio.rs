#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
//! Per-window cost of the audio preprocessing: one 2 s window of 44.1 kHz stereo
//! (`refdata/audio/window_2s_44k1_stereo.wav`), single thread.
//!
//! `cargo bench --bench preprocess_audio` runs criterion (wall clock). On a loaded machine
//! `EDGEBIND_BENCH_CPU=1 cargo bench --bench preprocess_audio` instead prints per-call on-CPU
//! time of this thread (`/proc/thread-self/schedstat`, Linux), median and minimum over batches;
//! `EDGEBIND_BENCH_BATCHES`, `EDGEBIND_BENCH_CALLS` (calls per batch, rounded up to a multiple
//! of 16) and `EDGEBIND_BENCH_ONLY` (name filter) tune
//! it, e.g. for instruction counts under `valgrind --tool=callgrind`.

use std::cell::RefCell;
use std::hint::black_box;

use criterion::Criterion;
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

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::{cpu_time_table, Case};

fn main() {
    let (planar, rate) = window_wav();
    let ch0 = planar[0].clone();
    let resampler = SincResampler::new(rate, 16_000).unwrap();
    let mut resampled = Vec::new();
    resampler.process_into(&ch0, &mut resampled);
    let pre = RefCell::new(AudioPreprocessor::new(AudioParams::default()).unwrap());
    let mut resample_out = Vec::with_capacity(32_000);
    let mut fbank_out = ndarray::Array2::<f32>::zeros((128, 204));
    let mut fbank = edgebind::preprocess::audio::KaldiFbank::new(128).unwrap();
    let mut out3 = ndarray::Array4::<f32>::zeros((3, 1, 128, 204));
    // S = 1 gives the same embedding as S = 3 for 2 s windows (SPEC §2, daemon window).
    let mut out1 = ndarray::Array4::<f32>::zeros((1, 1, 128, 204));
    let (ch0, planar, resampled, pre) = (&ch0, &planar, &resampled, &pre);
    let mut cases: Vec<Case<'_>> = vec![
        (
            "resample_ch0_44k1_to_16k",
            Box::new(|| {
                resampler.process_into(black_box(ch0), &mut resample_out);
                black_box(resample_out.len());
            }),
        ),
        (
            "fbank_32000_samples",
            Box::new(|| {
                fbank
                    .compute_into(black_box(resampled), fbank_out.view_mut())
                    .unwrap();
            }),
        ),
        (
            "window_tensor_into_3_clips",
            Box::new(|| {
                pre.borrow_mut()
                    .window_tensor_into(black_box(ch0), rate, out3.view_mut())
                    .unwrap()
            }),
        ),
        (
            "window_tensor_into_1_clip",
            Box::new(|| {
                pre.borrow_mut()
                    .window_tensor_into(black_box(ch0), rate, out1.view_mut())
                    .unwrap()
            }),
        ),
        (
            "window_tensor_3_clips_alloc",
            Box::new(|| {
                black_box(
                    pre.borrow_mut()
                        .window_tensor(black_box(ch0), rate, 3)
                        .unwrap(),
                );
            }),
        ),
        (
            "file_tensor_stereo_3_clips",
            Box::new(|| {
                black_box(
                    pre.borrow_mut()
                        .file_tensor(black_box(planar), rate, 3)
                        .unwrap(),
                );
            }),
        ),
    ];
    if std::env::var_os("EDGEBIND_BENCH_CPU").is_some() {
        cpu_time_table(&mut cases);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("audio_window_2s_44k1");
    for (name, call) in cases.iter_mut() {
        group.bench_function(*name, |b| b.iter(&mut *call));
    }
    group.finish();
    c.final_summary();
}
