//! Every number of a configuration against its range in [`limits`], and the checks that tie
//! numbers to each other: a window at its sample rate, a batch within its queue, a sample rate a
//! serial line can carry, ordered pairs (`min_depth_m` < `max_depth_m`). `validate` runs
//! [`check`] once; `app` runs [`source_rate_problems`] for the rates only known at start (a
//! recording's, a device's).

use super::limits::{self, Limit, Number};
use super::validate::{Problem, Problems};
use super::{
    AlsaAudioConfig, Config, DepthPreprocessConfig, ImuSerialConfig, SerialImuProtocol,
    SourceConfig, ThermalAgc, ThermalPreprocessConfig,
};
use crate::window::{samples_in, WindowError};

/// Checks of the keys under one prefix (`mqtt`, `sources[2]`).
struct Scope<'a> {
    p: &'a mut Problems,
    prefix: String,
}

impl Scope<'_> {
    fn at(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Whether `v` is within `limit`; a problem under `key` when not.
    fn check<T: Number>(&mut self, key: &str, v: T, limit: &Limit<T>) -> bool {
        match limit.check(v) {
            Ok(_) => true,
            Err(e) => {
                let path = self.at(key);
                self.p.add(path, e.0);
                false
            }
        }
    }

    fn count(&mut self, key: &str, v: usize, limit: &Limit<u64>) -> bool {
        self.check(key, v as u64, limit)
    }

    fn optional<T: Number>(&mut self, key: &str, v: Option<T>, limit: &Limit<T>) -> bool {
        v.is_none_or(|v| self.check(key, v, limit))
    }

    /// A problem of `key` that also depends on `others` (so that it is not reported when one of
    /// those could not be read).
    fn related(&mut self, key: &str, others: &[&str], message: String) {
        let path = self.at(key);
        let related = others.iter().map(|o| self.at(o)).collect();
        self.p.add_related(path, related, message);
    }

    /// `lo` < `hi`, both already within their limits.
    fn ordered(&mut self, (lo_key, lo): (&str, f64), (hi_key, hi): (&str, f64)) {
        if lo >= hi {
            self.related(
                hi_key,
                &[lo_key],
                format!(
                    "{} must be above {lo_key} ({})",
                    limits::number(hi),
                    limits::number(lo)
                ),
            );
        }
    }

    /// The window and hop at `rate_hz`: at least one sample each, and a window that fits in
    /// memory. `rate_key` is the key the rate comes from, if it is in the file.
    fn window_at_rate(&mut self, window_ms: u64, hop_ms: u64, rate_hz: f64, rate_key: &[&str]) {
        for error in window_errors(window_ms, hop_ms, rate_hz) {
            if let Some((key, message)) = window_problem(&error, "") {
                self.related(key, rate_key, message);
            }
        }
    }
}

/// The window and hop errors at `rate_hz` (both, when both are wrong).
fn window_errors(window_ms: u64, hop_ms: u64, rate_hz: f64) -> Vec<WindowError> {
    [("window_ms", window_ms), ("hop_ms", hop_ms)]
        .into_iter()
        .filter_map(|(what, ms)| samples_in(what, ms, rate_hz).err())
        .collect()
}

/// The key a window error is about and what it means; `whose` says where the rate comes from
/// when it is not the file's (`"the recording's "`).
fn window_problem(error: &WindowError, whose: &str) -> Option<(&'static str, String)> {
    use limits::{number, Unit};
    match *error {
        WindowError::TooShort { what, ms, rate_hz } => Some((
            what,
            format!(
                "{} holds no sample at {whose}{} Hz (one sample every {} ms)",
                Unit::Ms.show(ms as f64),
                number(rate_hz),
                number(1000.0 / rate_hz)
            ),
        )),
        WindowError::TooLong {
            what,
            ms,
            rate_hz,
            samples,
            max,
        } => {
            let why = if what == "window_ms" {
                "a window's samples are held in memory until it is cut"
            } else {
                "sample positions are counted in 64 bits"
            };
            Some((
                what,
                format!(
                    "{} is {} samples at {whose}{} Hz, more than the {max} allowed (at most {} at \
                     this rate): {why}",
                    Unit::Ms.show(ms as f64),
                    number(samples),
                    number(rate_hz),
                    Unit::Ms.show((max as f64 * 1000.0 / rate_hz).floor()),
                ),
            ))
        }
        WindowError::BadRate(_) => None,
    }
}

/// Every number of `config` against its range, and the cross-checks between numbers.
pub(super) fn check(config: &Config, p: &mut Problems) {
    runtime(config, p);
    models_and_concepts(config, p);
    mqtt_outbox_metrics(config, p);
    for (i, source) in config.sources.iter().enumerate() {
        let mut s = Scope {
            p: &mut *p,
            prefix: format!("sources[{i}]"),
        };
        source_ranges(&mut s, source);
    }
}

fn runtime(config: &Config, p: &mut Problems) {
    let rt = &config.runtime;
    let mut s = Scope {
        p,
        prefix: "runtime".into(),
    };
    s.count("intra_threads", rt.intra_threads, &limits::intra_threads());
    let trt = &rt.tensorrt;
    s.check(
        "tensorrt.max_workspace_bytes",
        trt.max_workspace_bytes.0,
        &limits::TRT_WORKSPACE_BYTES,
    );
    s.count(
        "tensorrt.fp16_excluded_op_types",
        trt.fp16_excluded_op_types.len(),
        &limits::TRT_EXCLUDED_OP_TYPES,
    );
    s.check(
        "tensorrt.device_id",
        u64::from(trt.device_id),
        &limits::GPU_DEVICE_ID,
    );
    s.optional(
        "tensorrt.dla_core",
        trt.dla_core.map(u64::from),
        &limits::DLA_CORE,
    );
    s.check(
        "tensorrt.builder_optimization_level",
        u64::from(trt.builder_optimization_level),
        &limits::TRT_BUILDER_OPTIMIZATION_LEVEL,
    );
    s.check(
        "cuda.device_id",
        u64::from(rt.cuda.device_id),
        &limits::GPU_DEVICE_ID,
    );
    s.check("parity.min_cosine", rt.parity.min_cosine, &limits::COSINE);
}

fn models_and_concepts(config: &Config, p: &mut Problems) {
    let m = &config.models;
    let mut s = Scope {
        p: &mut *p,
        prefix: "models".into(),
    };
    let queue_ok = s.count("queue_capacity", m.queue_capacity, &limits::INFERENCE_QUEUE);
    let batch_ok = s.count("max_batch", m.max_batch, &limits::MAX_BATCH);
    if queue_ok && batch_ok && m.max_batch > m.queue_capacity {
        s.related(
            "max_batch",
            &["queue_capacity"],
            format!(
                "{} is larger than models.queue_capacity ({}): a batch is made of waiting windows",
                m.max_batch, m.queue_capacity
            ),
        );
    }
    s.check(
        "max_batch_wait_ms",
        m.max_batch_wait_ms,
        &limits::MAX_BATCH_WAIT_MS,
    );
    let c = &config.concepts;
    let mut s = Scope {
        p,
        prefix: "concepts".into(),
    };
    s.count("top_k", c.top_k, &limits::TOP_K);
    s.check("min_score", f64::from(c.min_score), &limits::COSINE);
}

fn mqtt_outbox_metrics(config: &Config, p: &mut Problems) {
    let m = &config.mqtt;
    let mut s = Scope {
        p: &mut *p,
        prefix: "mqtt".into(),
    };
    s.check("keep_alive_s", m.keep_alive_s, &limits::KEEP_ALIVE_S);
    s.count(
        "max_packet_bytes",
        m.max_packet_bytes,
        &limits::MAX_PACKET_BYTES,
    );
    s.count("queue_capacity", m.queue_capacity, &limits::PUBLISH_QUEUE);
    s.check(
        "stats_interval_s",
        m.stats_interval_s,
        &limits::STATS_INTERVAL_S,
    );
    s.check(
        "reconnect_max_backoff_ms",
        m.reconnect_max_backoff_ms,
        &limits::RECONNECT_MAX_BACKOFF_MS,
    );
    let o = &config.outbox;
    let mut s = Scope {
        p: &mut *p,
        prefix: "outbox".into(),
    };
    s.check("max_bytes", o.max_bytes.0, &limits::OUTBOX_MAX_BYTES);
    s.check(
        "fsync_interval_ms",
        o.fsync_interval_ms,
        &limits::FSYNC_INTERVAL_MS,
    );
    if let Some(metrics) = &config.metrics {
        if let Ok(addr) = metrics.listen.parse::<std::net::SocketAddr>() {
            let s = Scope {
                p,
                prefix: "metrics".into(),
            };
            if let Err(e) = limits::PORT.check(u64::from(addr.port())) {
                s.p.add(s.at("listen"), format!("port {}", e.0));
            }
        }
    }
}

fn source_ranges(s: &mut Scope<'_>, source: &SourceConfig) {
    match source {
        SourceConfig::ImuReplay(c) => {
            let rate_ok = s.optional(
                "sample_rate_hz",
                c.sample_rate_hz,
                &limits::IMU_SAMPLE_RATE_HZ,
            );
            let window_ok = s.check("window_ms", c.window_ms, &limits::WINDOW_MS)
                & s.check("hop_ms", c.hop_ms, &limits::HOP_MS);
            s.count("queue_capacity", c.queue_capacity, &limits::SAMPLE_QUEUE);
            if let (Some(rate), true, true) = (c.sample_rate_hz, rate_ok, window_ok) {
                s.window_at_rate(c.window_ms, c.hop_ms, rate, &["sample_rate_hz"]);
            }
        }
        SourceConfig::ImuSerial(c) => imu_serial(s, c),
        SourceConfig::AudioReplay(c) => {
            s.check("window_ms", c.window_ms, &limits::AUDIO_WINDOW_MS);
            s.check("hop_ms", c.hop_ms, &limits::HOP_MS);
            s.count("clips", c.clips, &limits::AUDIO_CLIPS);
            s.count("queue_capacity", c.queue_capacity, &limits::SAMPLE_QUEUE);
        }
        SourceConfig::AlsaAudio(c) => alsa_audio(s, c),
        SourceConfig::ThermalReplay(c) => {
            s.check("fps", c.fps, &limits::REPLAY_FPS);
            s.check("interval_ms", c.interval_ms, &limits::FRAME_INTERVAL_MS);
            s.count("queue_capacity", c.queue_capacity, &limits::FRAME_QUEUE);
            thermal_preprocess(s, &c.preprocess);
        }
        SourceConfig::DepthReplay(c) => {
            s.check("fps", c.fps, &limits::REPLAY_FPS);
            s.check("interval_ms", c.interval_ms, &limits::FRAME_INTERVAL_MS);
            s.count("queue_capacity", c.queue_capacity, &limits::FRAME_QUEUE);
            depth_preprocess(s, &c.preprocess);
        }
        SourceConfig::V4l2Thermal(c) => {
            s.optional(
                "telemetry_rows",
                c.telemetry_rows.map(u64::from),
                &limits::TELEMETRY_ROWS,
            );
            s.optional(
                "width_px",
                c.width_px.map(u64::from),
                &limits::FRAME_SIZE_PX,
            );
            s.optional(
                "height_px",
                c.height_px.map(u64::from),
                &limits::FRAME_SIZE_PX,
            );
            s.check("interval_ms", c.interval_ms, &limits::FRAME_INTERVAL_MS);
            s.count("queue_capacity", c.queue_capacity, &limits::FRAME_QUEUE);
            s.check(
                "reconnect_max_backoff_ms",
                c.reconnect_max_backoff_ms,
                &limits::RECONNECT_MAX_BACKOFF_MS,
            );
            thermal_preprocess(s, &c.preprocess);
        }
        SourceConfig::Realsense(c) => {
            s.check("width_px", u64::from(c.width_px), &limits::FRAME_SIZE_PX);
            s.check("height_px", u64::from(c.height_px), &limits::FRAME_SIZE_PX);
            s.check("fps", u64::from(c.fps), &limits::REALSENSE_FPS);
            s.check("interval_ms", c.interval_ms, &limits::FRAME_INTERVAL_MS);
            s.count("queue_capacity", c.queue_capacity, &limits::FRAME_QUEUE);
            s.check(
                "reconnect_max_backoff_ms",
                c.reconnect_max_backoff_ms,
                &limits::RECONNECT_MAX_BACKOFF_MS,
            );
            depth_preprocess(s, &c.preprocess);
        }
    }
}

fn imu_serial(s: &mut Scope<'_>, c: &ImuSerialConfig) {
    let baud_ok = s.check("baud_rate", u64::from(c.baud_rate), &limits::BAUD_RATE);
    s.check("data_bits", u64::from(c.data_bits), &limits::DATA_BITS);
    s.check("stop_bits", u64::from(c.stop_bits), &limits::STOP_BITS);
    let rate_ok = s.check(
        "sample_rate_hz",
        c.sample_rate_hz,
        &limits::IMU_SAMPLE_RATE_HZ,
    );
    let window_ok = s.check("window_ms", c.window_ms, &limits::WINDOW_MS)
        & s.check("hop_ms", c.hop_ms, &limits::HOP_MS);
    s.count("queue_capacity", c.queue_capacity, &limits::SAMPLE_QUEUE);
    s.check(
        "reconnect_max_backoff_ms",
        c.reconnect_max_backoff_ms,
        &limits::RECONNECT_MAX_BACKOFF_MS,
    );
    if c.protocol == SerialImuProtocol::Witmotion {
        s.optional(
            "witmotion_acc_range_g",
            c.witmotion_acc_range_g.map(f64::from),
            &limits::WITMOTION_ACC_RANGE_G,
        );
        s.optional(
            "witmotion_gyro_range_dps",
            c.witmotion_gyro_range_dps.map(f64::from),
            &limits::WITMOTION_GYRO_RANGE_DPS,
        );
        let bits_per_sample = limits::WITMOTION_BYTES_PER_SAMPLE * limits::SERIAL_BITS_PER_BYTE;
        if rate_ok && baud_ok && c.sample_rate_hz * bits_per_sample as f64 > f64::from(c.baud_rate)
        {
            s.related(
                "sample_rate_hz",
                &["baud_rate"],
                format!(
                    "{} Hz needs at least {} baud ({} bytes of WitMotion frames per sample), but \
                     baud_rate is {}: at most {} samples/s get through",
                    limits::number(c.sample_rate_hz),
                    (c.sample_rate_hz * bits_per_sample as f64).ceil(),
                    limits::WITMOTION_BYTES_PER_SAMPLE,
                    c.baud_rate,
                    u64::from(c.baud_rate) / bits_per_sample
                ),
            );
        }
    }
    if rate_ok && window_ok {
        s.window_at_rate(c.window_ms, c.hop_ms, c.sample_rate_hz, &["sample_rate_hz"]);
    }
}

fn alsa_audio(s: &mut Scope<'_>, c: &AlsaAudioConfig) {
    let rate_ok = s.optional(
        "sample_rate_hz",
        c.sample_rate_hz.map(u64::from),
        &limits::AUDIO_SAMPLE_RATE_HZ,
    );
    s.optional(
        "channels",
        c.channels.map(u64::from),
        &limits::AUDIO_CHANNELS,
    );
    let window_ok = s.check("window_ms", c.window_ms, &limits::AUDIO_WINDOW_MS)
        & s.check("hop_ms", c.hop_ms, &limits::HOP_MS);
    s.count("clips", c.clips, &limits::AUDIO_CLIPS);
    s.count("queue_capacity", c.queue_capacity, &limits::SAMPLE_QUEUE);
    s.check(
        "reconnect_max_backoff_ms",
        c.reconnect_max_backoff_ms,
        &limits::RECONNECT_MAX_BACKOFF_MS,
    );
    s.optional("max_frames", c.max_frames, &limits::MAX_FRAMES);
    if let (Some(rate), true, true) = (c.sample_rate_hz, rate_ok, window_ok) {
        s.window_at_rate(c.window_ms, c.hop_ms, f64::from(rate), &["sample_rate_hz"]);
    }
}

fn thermal_preprocess(s: &mut Scope<'_>, t: &ThermalPreprocessConfig) {
    let lo_ok = s.optional("preprocess.agc_min_c", t.agc_min_c, &limits::CELSIUS);
    let hi_ok = s.optional("preprocess.agc_max_c", t.agc_max_c, &limits::CELSIUS);
    match (t.agc, t.agc_min_c, t.agc_max_c) {
        (ThermalAgc::FixedCelsius, Some(lo), Some(hi)) if lo_ok && hi_ok => {
            s.ordered(("preprocess.agc_min_c", lo), ("preprocess.agc_max_c", hi))
        }
        (ThermalAgc::FixedCelsius, None, _) | (ThermalAgc::FixedCelsius, _, None) => {
            s.related(
                "preprocess.agc",
                &["preprocess.agc_min_c", "preprocess.agc_max_c"],
                "fixed_celsius needs agc_min_c and agc_max_c".into(),
            );
        }
        _ => {}
    }
    normalize(
        s,
        t.normalize_mean.map(f64::from),
        t.normalize_std.map(f64::from),
    );
}

fn normalize(s: &mut Scope<'_>, mean: Option<f64>, std: Option<f64>) {
    s.optional("preprocess.normalize_mean", mean, &limits::NORMALIZE_MEAN);
    s.optional("preprocess.normalize_std", std, &limits::NORMALIZE_STD);
    if mean.is_some() != std.is_some() {
        s.related(
            "preprocess.normalize_mean",
            &["preprocess.normalize_std"],
            "normalize_mean and normalize_std go together".into(),
        );
    }
}

fn depth_preprocess(s: &mut Scope<'_>, d: &DepthPreprocessConfig) {
    s.optional("preprocess.focal_px", d.focal_px, &limits::FOCAL_PX);
    s.optional("preprocess.baseline_m", d.baseline_m, &limits::BASELINE_M);
    s.optional(
        "preprocess.depth_units_m",
        d.depth_units_m,
        &limits::DEPTH_UNITS_M,
    );
    for (lo, hi, limit) in [
        (
            ("preprocess.min_depth_m", d.min_depth_m),
            ("preprocess.max_depth_m", d.max_depth_m),
            &limits::DEPTH_M,
        ),
        (
            ("preprocess.norm_min", d.norm_min),
            ("preprocess.norm_max", d.norm_max),
            &limits::DISPARITY_NORM,
        ),
    ] {
        if s.check(lo.0, lo.1, limit) & s.check(hi.0, hi.1, limit) {
            s.ordered(lo, hi);
        }
    }
    normalize(s, Some(d.normalize_mean), Some(d.normalize_std));
}

/// Problems of source `index` at the sample rate it turned out to have when it was opened (a
/// recording's own rate, the rate a device negotiated): the rate itself, and the window and hop
/// at that rate. Empty for camera sources and for a usable rate.
#[must_use]
pub fn source_rate_problems(config: &Config, index: usize, rate_hz: f64) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    let Some(source) = config.sources.get(index) else {
        return p.0;
    };
    let s = Scope {
        p: &mut p,
        prefix: format!("sources[{index}]"),
    };
    let (window_ms, hop_ms) = match source {
        SourceConfig::ImuReplay(c) => (c.window_ms, c.hop_ms),
        SourceConfig::ImuSerial(c) => (c.window_ms, c.hop_ms),
        SourceConfig::AudioReplay(c) => (c.window_ms, c.hop_ms),
        SourceConfig::AlsaAudio(c) => (c.window_ms, c.hop_ms),
        _ => return p.0,
    };
    let from = match source {
        SourceConfig::AudioReplay(_) | SourceConfig::ImuReplay(_) => "the recording's",
        _ => "the device's",
    };
    let rate_problem = match source.modality() {
        crate::Modality::Audio if rate_hz.is_finite() => limits::AUDIO_SAMPLE_RATE_HZ
            .check(rate_hz.round() as u64)
            .err(),
        _ => limits::IMU_SAMPLE_RATE_HZ.check(rate_hz).err(),
    };
    if let Some(e) = rate_problem {
        s.p.add(s.at("sample_rate_hz"), format!("{from} {}", e.0));
        return p.0;
    }
    for error in window_errors(window_ms, hop_ms, rate_hz) {
        if let Some((key, message)) = window_problem(&error, &format!("{from} ")) {
            s.p.add(s.at(key), message);
        }
    }
    p.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[device]\nid = \"d\"\n[models]\ndir = \"m\"\n[mqtt]\nurl = \"mqtt://h\"\n{extra}"
        );
        Config::parse(&text, Path::new("x.toml")).unwrap()
    }

    fn problems(extra: &str) -> Vec<String> {
        let mut p = Problems(Vec::new());
        check(&config(extra), &mut p);
        p.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_witmotion_rate_the_baud_rate_cannot_carry_is_refused() {
        let serial = "[[sources]]\ntype = \"imu_serial\"\nname = \"imu\"\npath = \"/dev/x\"\n\
                      protocol = \"witmotion\"\nsample_rate_hz = 200.0\n";
        assert_eq!(
            problems(&format!("{serial}baud_rate = 9600\n")),
            vec!["sources[0].sample_rate_hz: 200 Hz needs at least 44000 baud (22 bytes of WitMotion frames per sample), but baud_rate is 9600: at most 43 samples/s get through"]
        );
        assert!(problems(&format!("{serial}baud_rate = 115200\n")).is_empty());
    }

    #[test]
    fn pairs_must_be_ordered_and_ports_not_zero() {
        let p = problems(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[[sources]]\ntype = \"depth_replay\"\n\
             name = \"d\"\npath = \"x.npy\"\n[sources.preprocess]\nmin_depth_m = 60.0\n",
        );
        assert_eq!(
            p,
            vec![
                "metrics.listen: port 0 is less than the 1 allowed: a TCP port is 16 bits, and port 0 would pick a random one nobody can scrape",
                "sources[0].preprocess.max_depth_m: 50 must be above preprocess.min_depth_m (60)",
            ]
        );
    }

    #[test]
    fn a_window_checked_at_the_rate_a_source_opened_with_names_the_rate() {
        let c = config(
            "[[sources]]\ntype = \"audio_replay\"\nname = \"a\"\npath = \"a.wav\"\nhop_ms = 25\n",
        );
        // 2 s at 48 kHz is fine, at 1 Hz (no real WAV) the rate itself is refused.
        assert!(source_rate_problems(&c, 0, 48_000.0).is_empty());
        assert_eq!(
            source_rate_problems(&c, 0, 1.0)[0].to_string(),
            "sources[0].sample_rate_hz: the recording's 1 Hz is less than the 8000 Hz allowed: audio devices run from 8 kHz (telephony) to 384 kHz; ImageBind resamples to 16 kHz"
        );
        let c = config(
            "[[sources]]\ntype = \"imu_replay\"\nname = \"i\"\npath = \"a.csv\"\nwindow_ms = 2\nhop_ms = 1\n",
        );
        let p: Vec<String> = source_rate_problems(&c, 0, 200.0)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            p,
            vec![
                "sources[0].window_ms: 2 ms holds no sample at the recording's 200 Hz (one sample every 5 ms)",
                "sources[0].hop_ms: 1 ms holds no sample at the recording's 200 Hz (one sample every 5 ms)",
            ]
        );
    }

    #[test]
    fn a_cross_check_names_the_keys_it_depends_on() {
        let c = config("");
        let mut c2 = c.clone();
        c2.models.max_batch = 8;
        c2.models.queue_capacity = 4;
        let mut p = Problems(Vec::new());
        check(&c2, &mut p);
        assert_eq!(p.0.len(), 1);
        assert_eq!(p.0[0].related, vec!["models.queue_capacity".to_string()]);
    }
}
