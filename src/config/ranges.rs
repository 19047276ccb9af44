//! Every number of the daemon-wide sections against its range in [`limits`] (those not already
//! checked by their type when read), and the checks that tie numbers to each other: a batch
//! within its queue, a window at its sample rate. Each source kind checks its own numbers
//! (`sources::<kind>::config`) with [`Scope`]; `app` runs [`rate_problems`] for the rates only
//! known when a source is opened (a recording's, a device's).

use super::limits::{self, Unit};
use super::validate::{Problem, Problems};
use super::{Config, SampleWindow, Windowing};
use crate::modality::Cut;
use crate::window::{samples_in, WindowError};
use crate::Modality;

/// The window and hop errors at `rate_hz` (both, when both are wrong).
fn window_errors(window_ms: u64, hop_ms: u64, rate_hz: f64) -> Vec<WindowError> {
    [("window_ms", window_ms), ("hop_ms", hop_ms)]
        .into_iter()
        .filter_map(|(what, ms)| samples_in(what, ms, rate_hz).err())
        .collect()
}

/// The problems of a window and hop at `rate_hz`, as (key, message); `whose` says where the rate
/// comes from when it is not the file's (`"the recording's "`).
pub(super) fn window_problems(
    cut: &SampleWindow,
    rate_hz: f64,
    whose: &str,
) -> Vec<(&'static str, String)> {
    window_errors(cut.window_ms.get(), cut.hop_ms.get(), rate_hz)
        .iter()
        .filter_map(|e| window_problem(e, whose))
        .collect()
}

/// The key a window error is about and what it means; `whose` says where the rate comes from
/// when it is not the file's (`"the recording's "`).
fn window_problem(error: &WindowError, whose: &str) -> Option<(&'static str, String)> {
    use limits::number;
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

/// Every number of the daemon-wide sections against its range, and the cross-checks between
/// numbers.
pub(super) fn check(config: &Config, p: &mut Problems) {
    runtime(config, p);
    models_and_concepts(config, p);
    mqtt_outbox_metrics(config, p);
}

fn runtime(config: &Config, p: &mut Problems) {
    let rt = &config.runtime;
    let mut s = p.scope("runtime");
    let trt = &rt.tensorrt;
    s.check(
        "tensorrt.max_workspace_bytes",
        trt.max_workspace_bytes.0,
        &limits::TRT_WORKSPACE_BYTES,
    );
    s.check(
        "tensorrt.fp16_excluded_op_types",
        trt.fp16_excluded_op_types.len() as u64,
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
    let mut s = p.scope("models");
    if m.max_batch.n() > m.queue_capacity.n() {
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
    let mut s = p.scope("concepts");
    s.check("top_k", c.top_k as u64, &limits::TOP_K);
    s.check("min_score", f64::from(c.min_score), &limits::COSINE);
}

fn mqtt_outbox_metrics(config: &Config, p: &mut Problems) {
    let m = &config.mqtt;
    let mut s = p.scope("mqtt");
    s.check("keep_alive_s", m.keep_alive_s, &limits::KEEP_ALIVE_S);
    s.check(
        "max_packet_bytes",
        m.max_packet_bytes as u64,
        &limits::MAX_PACKET_BYTES,
    );
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
    let mut s = p.scope("outbox");
    s.check("max_bytes", o.max_bytes.0, &limits::OUTBOX_MAX_BYTES);
    s.check(
        "fsync_interval_ms",
        o.fsync_interval_ms,
        &limits::FSYNC_INTERVAL_MS,
    );
    if let Some(metrics) = &config.metrics {
        if let Ok(addr) = metrics.listen.parse::<std::net::SocketAddr>() {
            if let Err(e) = limits::PORT.check(u64::from(addr.port())) {
                p.add("metrics.listen", format!("port {}", e.0));
            }
        }
    }
}

/// Problems of a source of `modality` cut as `windowing` at the sample rate it turned out to
/// have when it was opened (`whose`: "the recording's", "the device's"): the rate itself, and
/// the window and hop at that rate, with keys relative to the source's table. Empty for a usable
/// rate and for sources cut in frames.
#[must_use]
pub fn rate_problems(
    modality: Modality,
    windowing: Windowing,
    whose: &str,
    rate_hz: f64,
) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    let (Windowing::Samples { window_ms, hop_ms }, Cut::Samples { rate, .. }) =
        (windowing, modality.spec().cut)
    else {
        return p.0;
    };
    if let Err(e) = rate.check(rate_hz) {
        p.add("sample_rate_hz", format!("{whose} {}", e.0));
        return p.0;
    }
    let cut = SampleWindow { window_ms, hop_ms };
    for (key, message) in window_problems(&cut, rate_hz, &format!("{whose} ")) {
        p.add(key, message);
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

    /// The number checks: the daemon-wide sections' and each source's (the recordings these
    /// configurations name do not exist: their problems are left out).
    fn problems(extra: &str) -> Vec<String> {
        let config = config(extra);
        let mut p = Problems(Vec::new());
        check(&config, &mut p);
        for (i, s) in config.sources.iter().enumerate() {
            s.kind()
                .validate(&config, &mut p.scope(format!("sources[{i}]")));
        }
        p.0.iter()
            .map(ToString::to_string)
            .filter(|p| !p.contains(".path: "))
            .collect()
    }

    /// The problems of source `index` at `rate_hz`, placed in the file.
    fn source_rate_problems(config: &Config, index: usize, rate_hz: f64) -> Vec<Problem> {
        let source = config.sources[index].kind();
        crate::sources::kind::rate_problems(source, rate_hz)
            .into_iter()
            .map(|mut p| {
                p.path = format!("sources[{index}].{}", p.path);
                p
            })
            .collect()
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
        c2.models.max_batch = crate::config::MaxBatch::new(8).unwrap();
        c2.models.queue_capacity = crate::config::InferenceQueue::new(4).unwrap();
        let mut p = Problems(Vec::new());
        check(&c2, &mut p);
        assert_eq!(p.0.len(), 1);
        assert_eq!(p.0[0].related, vec!["models.queue_capacity".to_string()]);
    }
}
