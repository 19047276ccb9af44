//! Semantic checks of a parsed [`Config`]: every problem is collected, each with the path of the
//! field it concerns, so that one `edgebind check` run shows everything to fix.

use std::collections::HashSet;
use std::fmt;

use super::file_checks;
use super::limits::{self, Limit, Number};
use super::ranged::is_name;
use super::{Config, ExecutionProviderKind, SampleWindow};
use crate::publish::BrokerUrl;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Problem {
    /// Where: `sources[1].window_ms`.
    pub path: String,
    /// What: `must be > 0`.
    pub message: String,
    /// Other keys the problem depends on (`models.queue_capacity` for a batch larger than the
    /// queue): a problem is not reported when one of them could not be read.
    pub related: Vec<String>,
    /// Line and column (1-based) of the key in the file, when known.
    pub location: Option<(usize, usize)>,
    /// The sensor's name, for a problem of a source.
    pub sensor: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sensor {
            Some(name) => write!(f, "{} ({name}): {}", self.path, self.message),
            // A syntax error belongs to no key.
            None if self.path.is_empty() => f.write_str(&self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.add_related(path, Vec::new(), message);
    }

    /// A problem of `path` that also depends on the keys in `related`.
    pub(super) fn add_related(
        &mut self,
        path: impl Into<String>,
        related: Vec<String>,
        message: impl Into<String>,
    ) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
            related,
            ..Problem::default()
        });
    }

    /// The checks of the keys under `prefix` (`mqtt`, `sources[2]`).
    pub(super) fn scope(&mut self, prefix: impl Into<String>) -> Scope<'_> {
        Scope {
            p: self,
            prefix: prefix.into(),
        }
    }
}

/// The checks of the keys of one table (`mqtt`, `sources[2]`): problems are added with keys
/// relative to it.
pub struct Scope<'a> {
    p: &'a mut Problems,
    prefix: String,
}

impl fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Scope<'_> {
    /// The full path of `key`.
    #[must_use]
    pub fn at(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// A problem of `key`.
    pub fn add(&mut self, key: &str, message: impl Into<String>) {
        let path = self.at(key);
        self.p.add(path, message);
    }

    /// A problem of `key` that also depends on `others` (so that it is not reported when one of
    /// those could not be read).
    pub fn related(&mut self, key: &str, others: &[&str], message: impl Into<String>) {
        let path = self.at(key);
        let related = others.iter().map(|o| self.at(o)).collect();
        self.p.add_related(path, related, message);
    }

    /// Whether `v` is within `limit`; a problem under `key` when not.
    pub fn check<T: Number>(&mut self, key: &str, v: T, limit: &Limit<T>) -> bool {
        match limit.check(v) {
            Ok(_) => true,
            Err(e) => {
                self.add(key, e.0);
                false
            }
        }
    }

    /// [`check`](Self::check) for a key that may be unset (true when it is).
    pub fn optional<T: Number>(&mut self, key: &str, v: Option<T>, limit: &Limit<T>) -> bool {
        v.is_none_or(|v| self.check(key, v, limit))
    }

    /// `lo` < `hi`, both already within their limits.
    pub fn ordered(&mut self, (lo_key, lo): (&str, f64), (hi_key, hi): (&str, f64)) {
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
    /// memory. `rate_key` is the key the rate comes from.
    pub fn window_at_rate(&mut self, cut: &SampleWindow, rate_hz: f64, rate_key: &[&str]) {
        for (key, message) in super::ranges::window_problems(cut, rate_hz, "") {
            self.related(key, rate_key, message);
        }
    }
}

fn check_credentials_and_tls(config: &Config, p: &mut Problems) {
    let mqtt = &config.mqtt;
    if let Some(u) = &mqtt.username {
        if u.is_empty() || u.len() > 1024 {
            p.add("mqtt.username", "must be 1-1024 characters");
        }
    }
    match (&mqtt.password_file, &mqtt.password_env) {
        (Some(_), Some(_)) => p.add(
            "mqtt.password_env",
            "set either password_file or password_env, not both",
        ),
        (Some(f), None) => {
            if let Some(m) = file_checks::unreadable(&config.resolve(f)) {
                p.add("mqtt.password_file", m);
            }
        }
        (None, Some(var)) => {
            if var.is_empty() || std::env::var_os(var).is_none() {
                p.add(
                    "mqtt.password_env",
                    format!("environment variable {var:?} is not set"),
                );
            }
        }
        (None, None) => {}
    }
    if (mqtt.password_file.is_some() || mqtt.password_env.is_some()) && mqtt.username.is_none() {
        p.add("mqtt.username", "a password is configured but no username");
    }
    let tls_url = matches!(BrokerUrl::parse(&mqtt.url), Ok(BrokerUrl::Tls { .. }));
    if let Some(tls) = &mqtt.tls {
        if !tls_url {
            p.add_related(
                "mqtt.tls",
                vec!["mqtt.url".into()],
                "is set but mqtt.url is not mqtts://",
            );
        }
        for (field, message) in file_checks::tls(config) {
            p.add(field, message);
        }
        if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
            p.add(
                "mqtt.tls.client_key_file",
                "client_cert_file and client_key_file go together",
            );
        }
    }
}

fn check_providers(config: &Config, p: &mut Problems) {
    let rt = &config.runtime;
    let trt = &rt.tensorrt;
    if rt
        .execution_providers
        .contains(&ExecutionProviderKind::Tensorrt)
    {
        let dir = trt.resolved_cache_dir(&config.base_dir);
        if let Err(message) = writable_dir(&dir) {
            p.add(
                "runtime.tensorrt.cache_dir",
                format!("{}: {message}", dir.display()),
            );
        }
    }
}

fn check_outbox(config: &Config, p: &mut Problems) {
    let o = &config.outbox;
    let dir = config.resolve(&o.dir);
    if let Err(message) = writable_dir(&dir) {
        p.add("outbox.dir", format!("{}: {message}", dir.display()));
    }
}

/// Whether `dir` is (or can be created as) a writable directory; probes with a file that is
/// removed at once.
pub(super) fn writable_dir(dir: &std::path::Path) -> Result<(), String> {
    let mut existing = dir;
    while !existing.exists() {
        existing = existing.parent().ok_or("no existing parent directory")?;
        if existing.as_os_str().is_empty() {
            existing = std::path::Path::new(".");
        }
    }
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".edgebind-write-test-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| format!("not writable ({e})"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// What `edgebind check` points out without refusing the configuration: an outbox allowed more
/// than its filesystem has free (on a full disk `outbox.when_full` applies to disk space).
#[must_use]
pub fn warnings(config: &Config) -> Vec<Problem> {
    let dir = config.resolve(&config.outbox.dir);
    crate::publish::outbox::space_warning(&dir, config.outbox.max_bytes.0)
        .map(|message| Problem {
            path: "outbox.max_bytes".to_string(),
            message,
            ..Problem::default()
        })
        .into_iter()
        .collect()
}

/// Every problem in `config`; empty when the configuration is usable. Files the
/// configuration points to are opened and read as `run` reads them.
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
    check_runtime(config, &mut p);
    check_providers(config, &mut p);
    let models_dir = config.resolve(&config.models.dir);
    if !models_dir.join("manifest.json").is_file() {
        p.add(
            "models.dir",
            format!("{} has no manifest.json", models_dir.display()),
        );
    }
    for message in file_checks::model_set(config) {
        p.add("models.dir", message);
    }
    check_mqtt(config, &mut p);
    check_credentials_and_tls(config, &mut p);
    check_outbox(config, &mut p);
    if let Some(m) = &config.metrics {
        if m.listen.parse::<std::net::SocketAddr>().is_err() {
            p.add(
                "metrics.listen",
                format!("{:?} is not an address like \"127.0.0.1:9464\"", m.listen),
            );
        }
    }
    for (key, message) in config.home_assistant.problems() {
        p.add(key, message);
    }
    if let Some(message) = crate::publish::discovery::size_problem(config) {
        p.add("mqtt.max_packet_bytes", message);
    }
    if config.home_assistant.discovery {
        let dir = config.resolve(&config.home_assistant.state_dir);
        if let Err(message) = writable_dir(&dir) {
            p.add(
                "home_assistant.state_dir",
                format!("{}: {message}", dir.display()),
            );
        }
    }
    check_sources(config, &mut p);
    super::triggers::check(config, &mut p);
    super::concept_sets::check(config, &mut p);
    if config.concepts.control.enabled || !config.concepts.sets.is_empty() {
        let dir = config.resolve(&config.concepts.state_dir);
        if let Err(message) = writable_dir(&dir) {
            p.add(
                "concepts.state_dir",
                format!("{}: {message}", dir.display()),
            );
        }
    }
    super::ranges::check(config, &mut p);
    p.0
}

fn check_runtime(config: &Config, p: &mut Problems) {
    let rt = &config.runtime;
    if let Some(lib) = &rt.library_path {
        if let Some(m) = file_checks::unreadable(&config.resolve(lib)) {
            p.add("runtime.library_path", m);
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
    if rt.disable_cpu_fallback
        && rt
            .execution_providers
            .iter()
            .all(|e| *e == ExecutionProviderKind::Cpu)
    {
        p.add(
            "runtime.disable_cpu_fallback",
            "is true but no GPU provider (tensorrt, cuda) is listed",
        );
    }
}

fn check_mqtt(config: &Config, p: &mut Problems) {
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
}

/// Sensor names used once, and each source's own checks.
fn check_sources(config: &Config, p: &mut Problems) {
    let mut names = HashSet::new();
    for (i, stream) in config.streams() {
        if !names.insert(stream.name.as_str()) {
            p.add(
                format!("sources[{i}].{}", stream.name_key),
                format!("{:?} is used by another source", stream.name.as_str()),
            );
        }
    }
    for (i, source) in config.sources.iter().enumerate() {
        source
            .kind()
            .validate(config, &mut p.scope(format!("sources[{i}]")));
    }
    if config.sources.is_empty() {
        p.add("sources", "no sensor is configured");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::problems_in;

    fn problems(source: &str) -> Vec<String> {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny");
        let text = format!(
            "[device]\nid = \"d\"\n[models]\ndir = \"{models}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n\
             [[sources]]\ntype = \"imu_replay\"\nname = \"replay\"\n\
             path = \"{}/tests/fixtures/recordings/imu_still_200hz.csv\"\n\
             [[sources]]\ntype = \"imu_serial\"\nname = \"imu\"\n{source}",
            env!("CARGO_MANIFEST_DIR")
        );
        problems_in(&text).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_serial_port_that_is_not_plugged_in_yet_is_accepted() {
        let p = problems(
            "path = \"/dev/serial/by-id/not-plugged-in\"\nprotocol = \"witmotion\"\nsample_rate_hz = 200.0\n",
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn every_serial_problem_is_reported_at_once_with_its_path() {
        let p = problems(
            "path = \"\"\nprotocol = \"csv\"\nsample_rate_hz = 0.0\nbaud_rate = 0\ndata_bits = 9\n\
             stop_bits = 3\nwindow_ms = 0\nreconnect_max_backoff_ms = 10\n\
             csv_columns = [\"acc_x\", \"acc_x\", \"acc_z\", \"gyro_x\", \"gyro_y\", \"gyro_z\", \"t_s\", \"t_ms\"]\n\
             witmotion_acc_range_g = 4.0\n",
        );
        for want in [
            "sources[1].path: must name a serial device",
            "sources[1].baud_rate: 0 baud is less than the 50 baud allowed: serial lines",
            "sources[1].data_bits: 9 bits is more than the 8 bits allowed",
            "sources[1].stop_bits: 3 bits is more than the 2 bits allowed",
            "sources[1].sample_rate_hz: 0 Hz is less than the 1 Hz allowed",
            "sources[1].window_ms: 0 ms is less than the 1 ms allowed",
            "sources[1].reconnect_max_backoff_ms: 10 ms is less than the 100 ms allowed",
            "sources[1].witmotion_acc_range_g: does not apply to protocol = \"csv\"",
            "sources[1].acc_unit: is required for csv",
            "sources[1].gyro_unit: is required for csv",
            "sources[1].csv_columns: has no \"acc_y\" column",
            "sources[1].csv_columns: lists \"acc_x\" more than once",
            "sources[1].csv_columns: lists more than one device timestamp column",
        ] {
            assert!(
                p.iter().any(|m| m.starts_with(want)),
                "missing {want:?} in {p:#?}"
            );
        }
        assert_eq!(p.len(), 13, "{p:#?}");
    }

    #[test]
    fn witmotion_rejects_csv_fields_bad_ranges_and_xon_xoff() {
        let p = problems(
            "path = \"/dev/ttyUSB0\"\nprotocol = \"witmotion\"\nsample_rate_hz = 100.0\n\
             acc_unit = \"g\"\nwitmotion_gyro_range_dps = -1.0\nflow_control = \"software\"\n",
        );
        // In file order.
        assert_eq!(
            p,
            vec![
                "sources[1].acc_unit: does not apply to protocol = \"witmotion\"",
                "sources[1].witmotion_gyro_range_dps: -1 °/s is less than the 100 °/s allowed: WitMotion gyroscopes are set to ±250 to ±2000 °/s",
                "sources[1].flow_control: software (XON/XOFF) flow control would eat bytes of binary frames",
            ]
        );
    }

    fn realsense_problems(source: &str) -> Vec<String> {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny");
        let text = format!(
            "[device]\nid = \"d\"\n[models]\ndir = \"{models}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n\
             [[sources]]\ntype = \"realsense\"\nname = \"depth\"\n{source}"
        );
        problems_in(&text).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_realsense_camera_that_is_not_plugged_in_validates_only_with_the_feature() {
        let p = realsense_problems("serial = \"123456789012\"\n");
        if cfg!(feature = "realsense") {
            assert!(p.is_empty(), "{p:?}");
        } else {
            assert_eq!(
                p,
                vec!["sources[0].type: edgebind was built without the realsense feature (cargo build --features realsense)"]
            );
        }
    }

    #[test]
    fn every_realsense_problem_is_reported_at_once_with_its_path() {
        let p = realsense_problems(
            "serial = \"1\"\nrecording = \"/nonexistent/x.bag\"\nwidth_px = 0\nfps = 1000\n\
             queue_capacity = 0\nreconnect_max_backoff_ms = 5\n[sources.preprocess]\nfocal_px = -1.0\n",
        );
        let p: Vec<&str> = p
            .iter()
            .map(String::as_str)
            .filter(|m| !m.starts_with("sources[0].type"))
            .collect();
        // In file order.
        assert_eq!(
            p,
            vec![
                "sources[0].serial: does not apply to a recording",
                "sources[0].recording: /nonexistent/x.bag: does not exist",
                "sources[0].width_px: 0 px is less than the 1 px allowed: no depth, thermal or colour camera has frames wider or taller than 4096 pixels",
                "sources[0].fps: 1000 fps is more than the 300 fps allowed: RealSense depth and colour modes run at 6 to 300 fps",
                "sources[0].queue_capacity: 0 frames is less than the 1 frame allowed: a waiting frame holds its pixels (600 KiB at 640x480 16-bit); a camera's latest frame is the one worth embedding",
                "sources[0].reconnect_max_backoff_ms: 5 ms is less than the 100 ms allowed: retries start at 100 ms and double up to this; past an hour a returning device or broker would wait for nothing",
                "sources[0].preprocess.focal_px: -1 px is less than the 1 px allowed: a depth camera's focal length is hundreds to a few thousand pixels",
            ]
        );
        let p = realsense_problems("loop = true\n");
        assert!(
            p.iter()
                .any(|m| m == "sources[0].loop: applies only to a recording"),
            "{p:?}"
        );
    }

    fn runtime_problems(runtime: &str, models: &str) -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny");
        let text = format!(
            "[device]\nid = \"d\"\n[runtime]\n{runtime}\n[models]\ndir = \"{dir}\"\n{models}\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n"
        );
        problems_in(&text)
            .iter()
            .map(ToString::to_string)
            .filter(|p| !p.starts_with("sources:"))
            .collect()
    }

    #[test]
    fn every_provider_and_batching_problem_is_reported_with_its_path() {
        let p = runtime_problems(
            "execution_providers = [\"cuda\", \"cpu\"]\n[runtime.tensorrt]\n\
             builder_optimization_level = 9\nmax_workspace_bytes = \"1KiB\"\n\
             [runtime.parity]\nmin_cosine = 1.5",
            "queue_capacity = 2\nmax_batch = 4\nmax_batch_wait_ms = 5000",
        );
        // In file order.
        assert_eq!(
            p,
            vec![
                "runtime.tensorrt.builder_optimization_level: 9 is more than the 5 allowed: TensorRT's builder levels run from 0 (fast build) to 5 (slowest build, best engine)",
                "runtime.tensorrt.max_workspace_bytes: 1024 bytes (1 KiB) is less than the 1048576 bytes (1 MiB) allowed: TensorRT needs some scratch memory to build an engine, and no Jetson or GPU has more than 128 GiB",
                "runtime.parity.min_cosine: 1.5 is more than the 1 allowed: a cosine similarity lies between -1 and 1",
                "models.max_batch: 4 is larger than models.queue_capacity (2): a batch is made of waiting windows",
                "models.max_batch_wait_ms: 5000 ms (5 s) is more than the 1000 ms (1 s) allowed: every window of a batch waits this long at most before it is embedded",
            ]
        );
        assert!(runtime_problems("", "max_batch = 0")
            .contains(&"models.max_batch: 0 windows is less than the 1 window allowed: a batch is made of windows already waiting, and larger batches stop paying off well before 64".to_string()));
    }

    #[test]
    fn the_tensorrt_cache_directory_is_checked_only_when_tensorrt_is_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let cache = file.join("cache");
        let trt = format!(
            "execution_providers = [\"tensorrt\", \"cpu\"]\n[runtime.tensorrt]\ncache_dir = \"{}\"",
            cache.display()
        );
        let p = runtime_problems(&trt, "");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(&format!(
                "runtime.tensorrt.cache_dir: {}: ",
                cache.display()
            )),
            "{p:?}"
        );
        let cpu = trt.replace("\"tensorrt\", ", "");
        assert!(runtime_problems(&cpu, "").is_empty());
    }
}
