//! Semantic checks of a parsed [`Config`]: every problem is collected, each with the path of the
//! field it concerns, so that one `edgebind check` run shows everything to fix.

use std::collections::HashSet;
use std::fmt;

use super::{
    Config, ExecutionProviderKind, ImuFileFormat, SourceConfig, ThermalAgc, ThermalPreprocessConfig,
};
use crate::publish::BrokerUrl;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `sources[1].window_ms`.
    pub path: String,
    /// What: `must be > 0`.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn positive(&mut self, path: impl Into<String>, value: u64) {
        if value == 0 {
            self.add(path, "must be > 0");
        }
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Problems of thermal preprocessing options, as (field, message).
fn thermal_problems(t: &ThermalPreprocessConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if t.agc == ThermalAgc::FixedCelsius {
        match (t.agc_min_c, t.agc_max_c) {
            (Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() && lo < hi => {}
            (Some(_), Some(_)) => {
                out.push(("agc_max_c", "must be finite and above agc_min_c".into()))
            }
            _ => out.push(("agc", "fixed_celsius needs agc_min_c and agc_max_c".into())),
        }
    }
    match (t.normalize_mean, t.normalize_std) {
        (None, None) => {}
        (Some(m), Some(s)) if m.is_finite() && s.is_finite() && s > 0.0 => {}
        (Some(_), Some(_)) => out.push(("normalize_std", "must be a positive number".into())),
        _ => out.push((
            "normalize_mean",
            "normalize_mean and normalize_std go together".into(),
        )),
    }
    out
}

/// Every problem in `config`, in file order; empty when the configuration is usable.
/// Files the configuration points to are checked for existence.
#[must_use]
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut p = Problems(Vec::new());

    if !is_name(&config.device.id) {
        p.add(
            "device.id",
            format!(
                "{:?} must be 1-64 characters of letters, digits, '-' or '_'",
                config.device.id
            ),
        );
    }

    let rt = &config.runtime;
    if let Some(lib) = &rt.library_path {
        let lib = config.resolve(lib);
        if !lib.is_file() {
            p.add(
                "runtime.library_path",
                format!("{} does not exist", lib.display()),
            );
        }
    }
    if rt.execution_providers.is_empty() {
        p.add(
            "runtime.execution_providers",
            "must name at least one provider",
        );
    }
    let mut seen = HashSet::new();
    for (i, ep) in rt.execution_providers.iter().enumerate() {
        if !seen.insert(*ep) {
            p.add(
                format!("runtime.execution_providers[{i}]"),
                format!("{} is listed twice", ep.as_str()),
            );
        }
    }
    if rt.require_gpu
        && rt
            .execution_providers
            .iter()
            .all(|e| *e == ExecutionProviderKind::Cpu)
    {
        p.add(
            "runtime.require_gpu",
            "is true but no GPU provider (tensorrt, cuda) is listed",
        );
    }
    p.positive("runtime.intra_threads", rt.intra_threads as u64);

    let models_dir = config.resolve(&config.models.dir);
    if !models_dir.join("manifest.json").is_file() {
        p.add(
            "models.dir",
            format!("{} has no manifest.json", models_dir.display()),
        );
    }
    p.positive("models.queue_capacity", config.models.queue_capacity as u64);

    p.positive("concepts.top_k", config.concepts.top_k as u64);
    if !(-1.0..=1.0).contains(&config.concepts.min_score) {
        p.add("concepts.min_score", "must be a cosine in [-1, 1]");
    }

    let mqtt = &config.mqtt;
    if let Err(e) = BrokerUrl::parse(&mqtt.url) {
        p.add("mqtt.url", e.to_string());
    }
    if let Some(id) = &mqtt.client_id {
        if id.is_empty() || id.len() > 128 {
            p.add("mqtt.client_id", "must be 1-128 characters");
        }
    }
    if let Some(prefix) = &mqtt.topic_prefix {
        if prefix.is_empty()
            || prefix.ends_with('/')
            || prefix.contains(['+', '#'])
            || prefix.contains('\0')
        {
            p.add(
                "mqtt.topic_prefix",
                "must be non-empty, without a trailing '/' and without wildcards",
            );
        }
    }
    if mqtt.keep_alive_s == 0 || mqtt.keep_alive_s > 65_535 {
        p.add("mqtt.keep_alive_s", "must be between 1 and 65535");
    }
    if mqtt.max_packet_bytes < 32 * 1024 {
        p.add(
            "mqtt.max_packet_bytes",
            "must be >= 32768 (an embedding message as JSON is ~20 KiB)",
        );
    }
    p.positive("mqtt.queue_capacity", mqtt.queue_capacity as u64);
    if mqtt.reconnect_max_backoff_ms < 100 {
        p.add("mqtt.reconnect_max_backoff_ms", "must be >= 100");
    }

    let mut names = HashSet::new();
    for (i, source) in config.sources.iter().enumerate() {
        let at = |field: &str| format!("sources[{i}].{field}");
        if !is_name(source.name()) {
            p.add(
                at("name"),
                format!(
                    "{:?} must be 1-64 characters of letters, digits, '-' or '_'",
                    source.name()
                ),
            );
        } else if !names.insert(source.name().to_string()) {
            p.add(
                at("name"),
                format!("{:?} is used by another source", source.name()),
            );
        }
        match source {
            SourceConfig::ImuReplay(c) => {
                let path = config.resolve(&c.path);
                if !path.is_file() {
                    p.add(at("path"), format!("{} does not exist", path.display()));
                }
                let format = match c.format {
                    ImuFileFormat::Auto => match path.extension().and_then(|e| e.to_str()) {
                        Some("csv") => Some(ImuFileFormat::Csv),
                        Some("npy") => Some(ImuFileFormat::Npy),
                        _ => {
                            p.add(
                                at("format"),
                                "cannot tell from the extension; set \"csv\" or \"npy\"",
                            );
                            None
                        }
                    },
                    f => Some(f),
                };
                match c.sample_rate_hz {
                    Some(r) if !(r.is_finite() && r > 0.0 && r <= 100_000.0) => {
                        p.add(at("sample_rate_hz"), "must be > 0 and <= 100000");
                    }
                    None if format == Some(ImuFileFormat::Npy) => {
                        p.add(at("sample_rate_hz"), "is required for .npy recordings");
                    }
                    _ => {}
                }
                p.positive(at("window_ms"), c.window_ms);
                p.positive(at("hop_ms"), c.hop_ms);
                p.positive(at("queue_capacity"), c.queue_capacity as u64);
            }
            SourceConfig::ThermalReplay(c) => {
                let path = config.resolve(&c.path);
                if !path.is_file() {
                    p.add(at("path"), format!("{} does not exist", path.display()));
                }
                if !(c.fps.is_finite() && c.fps > 0.0 && c.fps <= 1000.0) {
                    p.add(at("fps"), "must be > 0 and <= 1000");
                }
                p.positive(at("queue_capacity"), c.queue_capacity as u64);
                for problem in thermal_problems(&c.preprocess) {
                    p.add(at(&format!("preprocess.{}", problem.0)), problem.1);
                }
            }
        }
    }
    if config.sources.is_empty() {
        p.add("sources", "no sensor is configured");
    }
    p.0
}
