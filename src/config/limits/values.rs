//! The named ranges: one per setting, with its unit and the reason for its bounds.

use super::{int, real, Limit, Unit};

// ---- ONNX Runtime -----------------------------------------------------------------------------

/// Intra-op threads per model: `runtime.intra_threads`, `embed --threads`, `bench
/// --intra-threads`. Depends on this machine: at most four per CPU core.
#[must_use]
pub fn intra_threads() -> Limit<u64> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u64;
    int(
        1,
        4 * cores,
        Unit::Count("threads"),
        "ONNX Runtime starts this many threads for every model; more than four per CPU core of \
         this machine only adds contention (and 10^8 never finishes starting)",
    )
}

/// `runtime.tensorrt.max_workspace_bytes`.
pub const TRT_WORKSPACE_BYTES: Limit<u64> = int(
    1 << 20,
    128 << 30,
    Unit::Bytes,
    "TensorRT needs some scratch memory to build an engine, and no Jetson or GPU has more than \
     128 GiB",
);

/// `runtime.tensorrt.device_id`, `runtime.cuda.device_id`.
pub const GPU_DEVICE_ID: Limit<u64> = int(
    0,
    63,
    Unit::Plain,
    "a CUDA device number counts the GPUs of this machine from 0",
);

/// `runtime.tensorrt.dla_core`.
pub const DLA_CORE: Limit<u64> = int(
    0,
    1,
    Unit::Plain,
    "Jetson modules have at most two DLA cores, 0 and 1 (AGX Orin two, Orin Nano none; \
     docs/inference.md)",
);

/// `runtime.tensorrt.fp16_excluded_op_types`: how many op types.
pub const TRT_EXCLUDED_OP_TYPES: Limit<u64> = int(
    0,
    64,
    Unit::Count("op types"),
    "each entry is an ONNX operator type; an encoder uses a few dozen types",
);

/// `runtime.tensorrt.builder_optimization_level`.
pub const TRT_BUILDER_OPTIMIZATION_LEVEL: Limit<u64> = int(
    0,
    5,
    Unit::Plain,
    "TensorRT's builder levels run from 0 (fast build) to 5 (slowest build, best engine)",
);

/// `runtime.parity.min_cosine`, `concepts.min_score`.
pub const COSINE: Limit<f64> = real(
    -1.0,
    1.0,
    Unit::Plain,
    "a cosine similarity lies between -1 and 1",
);

// ---- Models, concepts -------------------------------------------------------------------------

/// `models.queue_capacity`: windows waiting for one model.
pub const INFERENCE_QUEUE: Limit<u64> = int(
    1,
    256,
    Unit::Count("windows"),
    "each waiting window holds its model input (up to 1.7 MB for 16 audio clips); a longer \
     backlog only adds latency",
);

/// `models.max_batch`, `bench --max-batch`.
pub const MAX_BATCH: Limit<u64> = int(
    1,
    64,
    Unit::Count("windows"),
    "a batch is made of windows already waiting, and larger batches stop paying off well before 64",
);

/// `models.max_batch_wait_ms`.
pub const MAX_BATCH_WAIT_MS: Limit<u64> = int(
    0,
    1000,
    Unit::Ms,
    "every window of a batch waits this long at most before it is embedded",
);

/// `concepts.top_k`.
pub const TOP_K: Limit<u64> = int(
    1,
    100,
    Unit::Count("concepts"),
    "each published window lists this many nearest concepts",
);

// ---- MQTT, outbox, metrics --------------------------------------------------------------------

/// `mqtt.keep_alive_s`.
pub const KEEP_ALIVE_S: Limit<u64> =
    int(1, 65_535, Unit::S, "MQTT carries the keep-alive in 16 bits");

/// `mqtt.max_packet_bytes`.
pub const MAX_PACKET_BYTES: Limit<u64> = int(
    32 << 10,
    268_435_455,
    Unit::Bytes,
    "an embedding message as JSON is ~20 KiB, and MQTT packets are at most 256 MiB",
);

/// `mqtt.queue_capacity`: messages waiting for the publisher.
pub const PUBLISH_QUEUE: Limit<u64> = int(
    1,
    4096,
    Unit::Count("messages"),
    "each waiting message is ~20 KiB; the outbox, not this queue, holds a backlog",
);

/// `mqtt.stats_interval_s` (0 = off).
pub const STATS_INTERVAL_S: Limit<u64> = int(
    0,
    86_400,
    Unit::S,
    "0 turns the periodic stats off; a period longer than a day would never be seen",
);

/// `mqtt.reconnect_max_backoff_ms` and every source's `reconnect_max_backoff_ms`.
pub const RECONNECT_MAX_BACKOFF_MS: Limit<u64> = int(
    100,
    3_600_000,
    Unit::Ms,
    "retries start at 100 ms and double up to this; past an hour a returning device or broker \
     would wait for nothing",
);

/// `outbox.max_bytes`.
pub const OUTBOX_MAX_BYTES: Limit<u64> = int(
    64 << 10,
    16 << 40,
    Unit::Bytes,
    "the outbox needs room for a few segments, and 16 TiB is more disk than an edge device has",
);

/// `outbox.fsync_interval_ms`.
pub const FSYNC_INTERVAL_MS: Limit<u64> = int(
    1,
    60_000,
    Unit::Ms,
    "a power loss loses at most this much of the outbox",
);

/// The port of `metrics.listen`.
pub const PORT: Limit<u64> = int(
    1,
    65_535,
    Unit::Plain,
    "a TCP port is 16 bits, and port 0 would pick a random one nobody can scrape",
);

// ---- Sources ----------------------------------------------------------------------------------

/// `sample_rate_hz` of `imu_replay` and `imu_serial`, `preprocess`/`embed --rate-hz`.
pub const IMU_SAMPLE_RATE_HZ: Limit<f64> = real(
    1.0,
    32_000.0,
    Unit::Hz,
    "the fastest MEMS IMUs stream at 32 kHz, and below 1 Hz a window holds almost nothing to embed",
);

/// Sample rate of an audio source: `alsa_audio.sample_rate_hz`, the rate a device negotiates,
/// the rate of a replayed WAV file.
pub const AUDIO_SAMPLE_RATE_HZ: Limit<u64> = int(
    8_000,
    384_000,
    Unit::Hz,
    "audio devices run from 8 kHz (telephony) to 384 kHz; ImageBind resamples to 16 kHz",
);

/// `alsa_audio.channels`.
pub const AUDIO_CHANNELS: Limit<u64> = int(
    1,
    32,
    Unit::Count("channels"),
    "channel 0 is embedded; 32 covers every capture interface",
);

/// `fps` of `thermal_replay` and `depth_replay`.
pub const REPLAY_FPS: Limit<f64> = real(
    0.1,
    1000.0,
    Unit::Fps,
    "frames are paced at this rate; slower than one frame every 10 s is a slide show, faster \
     than 1000 fps no camera delivers",
);

/// `fps` of `realsense` and its `colour` table.
pub const REALSENSE_FPS: Limit<u64> = int(
    1,
    300,
    Unit::Fps,
    "RealSense depth and colour modes run at 6 to 300 fps",
);

/// `width_px`/`height_px` of `realsense` (and its `colour` table), `v4l2_thermal` and `v4l2_camera`.
pub const FRAME_SIZE_PX: Limit<u64> = int(
    1,
    4096,
    Unit::Px,
    "no depth, thermal or colour camera has frames wider or taller than 4096 pixels",
);

/// `v4l2_thermal.telemetry_rows`.
pub const TELEMETRY_ROWS: Limit<u64> = int(
    0,
    64,
    Unit::Count("rows"),
    "a Lepton sends 2 telemetry rows (3 for the Lepton 2); 64 leaves room for any other camera",
);

/// `window_ms` of IMU sources (at least one sample at the source's rate, and at most
/// [`MAX_WINDOW_SAMPLES`] samples).
pub const WINDOW_MS: Limit<u64> = int(
    1,
    600_000,
    Unit::Ms,
    "a window's samples are held in memory until it is cut, and its embedding is published only \
     then",
);

/// `window_ms` of audio sources (and at most [`MAX_WINDOW_SAMPLES`] samples at the rate).
pub const AUDIO_WINDOW_MS: Limit<u64> = int(
    25,
    600_000,
    Unit::Ms,
    "the audio front end needs one 25 ms frame, and a window's samples are held in memory until \
     it is cut",
);

/// `hop_ms` of IMU and audio sources (at least one sample at the rate). A hop longer than the
/// window is allowed: the samples between windows are skipped (a 5 s window every minute).
pub const HOP_MS: Limit<u64> = int(
    1,
    3_600_000,
    Unit::Ms,
    "a window starts every hop; more than an hour between windows is no longer a stream",
);

/// `interval_ms` of camera sources (0 = every frame).
pub const FRAME_INTERVAL_MS: Limit<u64> = int(
    0,
    3_600_000,
    Unit::Ms,
    "one frame is embedded per interval (0: every frame); more than an hour between frames is no \
     longer a stream",
);

/// `queue_capacity` of IMU and audio sources: sample blocks waiting for the windower.
pub const SAMPLE_QUEUE: Limit<u64> = int(
    1,
    4096,
    Unit::Count("blocks"),
    "a waiting block holds one capture period of a device (10-20 ms) or up to 1 s of a \
     replay, and the queue bounds what a stalled pipeline keeps in memory",
);

/// `queue_capacity` of camera sources: frames waiting for preprocessing.
pub const FRAME_QUEUE: Limit<u64> = int(
    1,
    64,
    Unit::Count("frames"),
    "a waiting frame holds its pixels (600 KiB at 640x480 16-bit); a camera's latest frame is the \
     one worth embedding",
);

/// `clips` of audio sources, `preprocess`/`embed --clips`.
pub const AUDIO_CLIPS: Limit<u64> = int(
    1,
    16,
    Unit::Count("clips"),
    "each clip is a 2 s spectrogram the audio model embeds; 16 clips are 16 times the work",
);

/// `imu_serial.baud_rate`.
pub const BAUD_RATE: Limit<u64> = int(
    50,
    4_000_000,
    Unit::Baud,
    "serial lines run from 50 baud to the 3-4 Mbit/s of USB-UART bridges",
);

/// `imu_serial.data_bits`.
pub const DATA_BITS: Limit<u64> = int(
    5,
    8,
    Unit::Count("bits"),
    "a serial character has 5 to 8 data bits",
);

/// `imu_serial.stop_bits`.
pub const STOP_BITS: Limit<u64> = int(
    1,
    2,
    Unit::Count("bits"),
    "a serial character ends with 1 or 2 stop bits",
);

/// `imu_serial.witmotion_acc_range_g`.
pub const WITMOTION_ACC_RANGE_G: Limit<f64> = real(
    1.0,
    64.0,
    Unit::G,
    "WitMotion accelerometers are set to ±2, 4, 8 or 16 g",
);

/// `imu_serial.witmotion_gyro_range_dps`.
pub const WITMOTION_GYRO_RANGE_DPS: Limit<f64> = real(
    100.0,
    4000.0,
    Unit::Dps,
    "WitMotion gyroscopes are set to ±250 to ±2000 °/s",
);

/// `alsa_audio.max_frames`.
pub const MAX_FRAMES: Limit<u64> = int(
    1,
    u64::MAX,
    Unit::Count("frames"),
    "leave it unset to capture forever",
);

// ---- Preprocessing ----------------------------------------------------------------------------

/// `preprocess.focal_px` of depth sources, `--focal-px`.
pub const FOCAL_PX: Limit<f64> = real(
    1.0,
    100_000.0,
    Unit::Px,
    "a depth camera's focal length is hundreds to a few thousand pixels",
);

/// `preprocess.baseline_m` of depth sources, `--baseline-m`.
pub const BASELINE_M: Limit<f64> = real(
    0.001,
    10.0,
    Unit::M,
    "stereo baselines run from millimetres to a few metres",
);

/// `preprocess.depth_units_m` of depth sources, `--depth-units-m`.
pub const DEPTH_UNITS_M: Limit<f64> = real(
    1e-6,
    1.0,
    Unit::M,
    "a raw depth unit is a micrometre to a metre (RealSense: 1 mm)",
);

/// `preprocess.min_depth_m`/`max_depth_m` of depth sources.
pub const DEPTH_M: Limit<f64> = real(
    0.001,
    1000.0,
    Unit::M,
    "depths are clipped to this range before they become disparities",
);

/// `preprocess.norm_min`/`norm_max` of depth sources (disparity, pixels).
pub const DISPARITY_NORM: Limit<f64> = real(
    1e-6,
    1e6,
    Unit::Plain,
    "disparities are clamped to this range and divided by its top",
);

/// `preprocess.normalize_mean` of depth and thermal sources.
pub const NORMALIZE_MEAN: Limit<f64> = real(
    -1e6,
    1e6,
    Unit::Plain,
    "the mean is subtracted from values of order 1",
);

/// `preprocess.normalize_std` of depth and thermal sources.
pub const NORMALIZE_STD: Limit<f64> = real(
    1e-9,
    1e6,
    Unit::Plain,
    "values are divided by the standard deviation, which must be positive",
);

/// `preprocess.agc_min_c`/`agc_max_c` of thermal sources, `--agc-min-c`/`--agc-max-c`.
pub const CELSIUS: Limit<f64> = real(
    -273.15,
    2000.0,
    Unit::Celsius,
    "nothing is colder than absolute zero, and thermal cameras stop well below 2000 °C",
);

// ---- Command line -----------------------------------------------------------------------------

/// `run --shutdown-timeout-s`.
pub const SHUTDOWN_TIMEOUT_S: Limit<u64> = int(
    1,
    3600,
    Unit::S,
    "a clean stop waits this long for the pipeline and the broker; systemd's own stop timeout \
     should be longer",
);

/// `bench --duration` and `--max-speed-duration`, in seconds.
pub const BENCH_DURATION_S: Limit<f64> = real(
    0.1,
    86_400.0,
    Unit::S,
    "a measurement needs some runs, and a day is longer than any useful bench",
);

/// `skip_unchanged.threshold` of a source: a distance between two preprocessed model inputs.
pub const UNCHANGED_THRESHOLD: Limit<f64> = real(
    0.0,
    100.0,
    Unit::Plain,
    "model inputs are normalised (images and spectrograms lie within a few units of 0; IMU \
     channels are m/s² and rad/s), so a larger distance would call every window unchanged",
);
