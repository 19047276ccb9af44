//! Semantic checks of a parsed [`Config`]: every problem is collected, each with the path of the
//! field it concerns, so that one `edgebind check` run shows everything to fix.

use std::collections::HashSet;
use std::fmt;

use super::file_checks;
use super::{
    AlsaAudioConfig, Config, CsvColumn, ExecutionProviderKind, ImuFileFormat, ImuSerialConfig,
    Radiometric, RealsenseConfig, SerialFlowControl, SerialImuProtocol, SourceConfig, ThermalAgc,
    ThermalLayout, V4l2PixelFormat, V4l2ThermalConfig,
};
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
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
fn writable_dir(dir: &std::path::Path) -> Result<(), String> {
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
                if let Some(m) = file_checks::recording(config, source) {
                    p.add(at("path"), m);
                }
                let format = match c.format {
                    ImuFileFormat::Auto => match path.extension().and_then(|e| e.to_str()) {
                        Some("csv") => Some(ImuFileFormat::Csv),
                        Some("npy") => Some(ImuFileFormat::Npy),
                        _ => {
                            p.add_related(
                                at("format"),
                                vec![at("path")],
                                "cannot tell from the extension; set \"csv\" or \"npy\"",
                            );
                            None
                        }
                    },
                    f => Some(f),
                };
                if c.sample_rate_hz.is_none() && format == Some(ImuFileFormat::Npy) {
                    p.add_related(
                        at("sample_rate_hz"),
                        vec![at("path"), at("format")],
                        "is required for .npy recordings",
                    );
                }
            }
            SourceConfig::ThermalReplay(_)
            | SourceConfig::AudioReplay(_)
            | SourceConfig::DepthReplay(_) => {
                if let Some(m) = file_checks::recording(config, source) {
                    p.add(at("path"), m);
                }
            }
            SourceConfig::ImuSerial(c) => imu_serial(&mut p, &at, c),
            SourceConfig::V4l2Thermal(c) => v4l2_thermal(&mut p, &at, c),
            SourceConfig::Realsense(c) => realsense(&mut p, &at, config, c),
            SourceConfig::AlsaAudio(c) => alsa_audio(&mut p, &at, c),
        }
    }
    if config.sources.is_empty() {
        p.add("sources", "no sensor is configured");
    }
    super::ranges::check(config, &mut p);
    p.0
}

/// A `realsense` source. A live camera is not looked for (it may be plugged in later); a
/// recording must exist.
fn realsense(p: &mut Problems, at: &dyn Fn(&str) -> String, config: &Config, c: &RealsenseConfig) {
    if !cfg!(feature = "realsense") {
        p.add(
            at("type"),
            "edgebind was built without the realsense feature (cargo build --features realsense)",
        );
    }
    match &c.recording {
        Some(rec) => {
            if let Some(m) = file_checks::unreadable(&config.resolve(rec)) {
                p.add(at("recording"), m);
            }
            if c.serial.is_some() {
                p.add(at("serial"), "does not apply to a recording");
            }
        }
        None if c.looping => p.add(at("loop"), "applies only to a recording"),
        None => {}
    }
    if c.serial.as_ref().is_some_and(|s| s.trim().is_empty()) {
        p.add(
            at("serial"),
            "must not be empty (omit it for the first camera)",
        );
    }
}

/// A `v4l2_thermal` source. The device itself is not checked: a USB camera may be plugged in
/// after the daemon starts, and the source waits for it.
fn v4l2_thermal(p: &mut Problems, at: &dyn Fn(&str) -> String, c: &V4l2ThermalConfig) {
    match c.device.strip_prefix("card:") {
        Some(card) if card.trim().is_empty() => p.add(at("device"), "card: needs a card name"),
        Some(_) => {}
        None if !c.device.starts_with('/') => p.add(
            at("device"),
            format!(
                "{:?} must be a device path such as /dev/video0, or card:<name>",
                c.device
            ),
        ),
        None => {}
    }
    let split = c.layout == ThermalLayout::InfiraySplit;
    if split && c.pixel_format.is_some_and(|f| f != V4l2PixelFormat::Yuyv) {
        p.add(
            at("pixel_format"),
            "layout \"infiray_split\" is a \"YUYV\" mode",
        );
    }
    if c.telemetry_rows.is_some() && c.layout != ThermalLayout::Lepton {
        p.add(at("telemetry_rows"), "only applies to layout = \"lepton\"");
    }
    match (c.width_px, c.height_px) {
        (None, None) => {}
        // Zero or huge sizes are reported by the range check.
        (Some(w), Some(h)) if w == 0 || h == 0 => {}
        (Some(w), Some(h)) => match c.layout {
            ThermalLayout::InfiraySplit if h % 2 != 0 => {
                p.add(at("height_px"), "a split frame has an even height");
            }
            ThermalLayout::Lepton => {
                let rows = c
                    .telemetry_rows
                    .unwrap_or(super::DEFAULT_LEPTON_TELEMETRY_ROWS);
                if w % 4 != 0 || (h != w / 4 * 3 && h != w / 4 * 3 + rows) {
                    p.add(
                        at("height_px"),
                        format!(
                            "a Lepton frame is width*3/4 rows, or width*3/4 + telemetry_rows ({rows})"
                        ),
                    );
                }
            }
            _ => {}
        },
        _ => p.add(at("width_px"), "width_px and height_px go together"),
    }
    // The preprocessing must read temperature the way this camera encodes it.
    if c.preprocess.agc == ThermalAgc::FixedCelsius {
        match (split, c.preprocess.radiometric) {
            (true, Radiometric::CentiKelvin) => p.add(
                at("preprocess.radiometric"),
                "infiray_split frames are kelvin x 64: set \"infiray64\"",
            ),
            (false, Radiometric::Infiray64) => p.add(
                at("preprocess.radiometric"),
                "\"infiray64\" is the encoding of layout = \"infiray_split\"; \"Y16 \" frames are centi_kelvin",
            ),
            _ => {}
        }
        if !split && c.pixel_format.is_some_and(|f| f != V4l2PixelFormat::Y16) {
            p.add(
                at("preprocess.agc"),
                "fixed_celsius needs 16-bit frames (pixel_format \"Y16 \" or layout \"infiray_split\")",
            );
        }
    }
}

/// An `alsa_audio` source. The device itself is not checked here (`check` must not need the
/// sound card); the daemon opens it when it starts.
fn alsa_audio(p: &mut Problems, at: &dyn Fn(&str) -> String, c: &AlsaAudioConfig) {
    if c.device.trim().is_empty() {
        p.add(
            at("device"),
            "must name an ALSA PCM such as \"default\" or \"hw:1,0\"",
        );
    }
}

/// An `imu_serial` source. The port itself is not checked: a USB device may be plugged in after
/// the daemon starts, and the source waits for it.
fn imu_serial(p: &mut Problems, at: &dyn Fn(&str) -> String, c: &ImuSerialConfig) {
    if c.path.as_os_str().is_empty() {
        p.add(at("path"), "must name a serial device");
    }
    let csv_only = [
        ("csv_columns", c.csv_columns.is_some()),
        ("csv_delimiter", c.csv_delimiter.is_some()),
        ("acc_unit", c.acc_unit.is_some()),
        ("gyro_unit", c.gyro_unit.is_some()),
    ];
    let witmotion_only = [
        ("witmotion_acc_range_g", c.witmotion_acc_range_g.is_some()),
        (
            "witmotion_gyro_range_dps",
            c.witmotion_gyro_range_dps.is_some(),
        ),
    ];
    let (foreign, protocol) = match c.protocol {
        SerialImuProtocol::Csv => (witmotion_only.as_slice(), "csv"),
        SerialImuProtocol::Witmotion => (csv_only.as_slice(), "witmotion"),
    };
    // Every check below depends on the protocol (not reported if it could not be read).
    let protocol_key = || vec![at("protocol")];
    for (field, _) in foreign.iter().filter(|(_, set)| *set) {
        p.add_related(
            at(field),
            protocol_key(),
            format!("does not apply to protocol = \"{protocol}\""),
        );
    }

    match c.protocol {
        SerialImuProtocol::Csv => {
            if c.acc_unit.is_none() {
                p.add_related(
                    at("acc_unit"),
                    protocol_key(),
                    "is required for csv: \"g\" or \"m/s^2\"",
                );
            }
            if c.gyro_unit.is_none() {
                p.add_related(
                    at("gyro_unit"),
                    protocol_key(),
                    "is required for csv: \"deg/s\" or \"rad/s\"",
                );
            }
            if let Some(columns) = &c.csv_columns {
                csv_columns(p, at, columns);
            }
        }
        SerialImuProtocol::Witmotion => {
            if c.flow_control == SerialFlowControl::Software {
                p.add_related(
                    at("flow_control"),
                    protocol_key(),
                    "software (XON/XOFF) flow control would eat bytes of binary frames",
                );
            }
        }
    }
}

fn csv_columns(p: &mut Problems, at: &dyn Fn(&str) -> String, columns: &[CsvColumn]) {
    use crate::sources::imu_serial::csv_line::MAX_COLUMNS;
    if columns.len() > MAX_COLUMNS {
        p.add(
            at("csv_columns"),
            format!("lists {} columns; at most {MAX_COLUMNS}", columns.len()),
        );
    }
    for axis in CsvColumn::AXES {
        match columns.iter().filter(|c| **c == axis).count() {
            0 => p.add(
                at("csv_columns"),
                format!("has no {:?} column", axis.as_str()),
            ),
            1 => {}
            _ => p.add(
                at("csv_columns"),
                format!("lists {:?} more than once", axis.as_str()),
            ),
        }
    }
    if columns.iter().filter(|c| c.is_time()).count() > 1 {
        p.add(
            at("csv_columns"),
            "lists more than one device timestamp column",
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn problems(source: &str) -> Vec<String> {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny");
        let text = format!(
            "[device]\nid = \"d\"\n[models]\ndir = \"{models}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n\
             [[sources]]\ntype = \"imu_replay\"\nname = \"replay\"\n\
             path = \"{}/tests/fixtures/recordings/imu_still_200hz.csv\"\n\
             [[sources]]\ntype = \"imu_serial\"\nname = \"imu\"\n{source}",
            env!("CARGO_MANIFEST_DIR")
        );
        let config = Config::parse(&text, Path::new("x.toml")).unwrap();
        validate(&config).iter().map(ToString::to_string).collect()
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
        assert_eq!(
            p,
            vec![
                "sources[1].acc_unit: does not apply to protocol = \"witmotion\"",
                "sources[1].flow_control: software (XON/XOFF) flow control would eat bytes of binary frames",
                "sources[1].witmotion_gyro_range_dps: -1 °/s is less than the 100 °/s allowed: WitMotion gyroscopes are set to ±250 to ±2000 °/s",
            ]
        );
    }

    fn realsense_problems(source: &str) -> Vec<String> {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny");
        let text = format!(
            "[device]\nid = \"d\"\n[models]\ndir = \"{models}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n\
             [[sources]]\ntype = \"realsense\"\nname = \"depth\"\n{source}"
        );
        let config = Config::parse(&text, Path::new("x.toml")).unwrap();
        validate(&config).iter().map(ToString::to_string).collect()
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
        assert_eq!(
            p,
            vec![
                "sources[0].recording: /nonexistent/x.bag: does not exist",
                "sources[0].serial: does not apply to a recording",
                "sources[0].width_px: 0 px is less than the 1 px allowed: no depth or thermal camera has frames wider or taller than 4096 pixels",
                "sources[0].fps: 1000 fps is more than the 300 fps allowed: RealSense depth modes run at 6 to 300 fps",
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
        let config = Config::parse(&text, Path::new("x.toml")).unwrap();
        validate(&config)
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
        assert_eq!(
            p,
            vec![
                "runtime.tensorrt.max_workspace_bytes: 1024 bytes (1 KiB) is less than the 1048576 bytes (1 MiB) allowed: TensorRT needs some scratch memory to build an engine, and no Jetson or GPU has more than 128 GiB",
                "runtime.tensorrt.builder_optimization_level: 9 is more than the 5 allowed: TensorRT's builder levels run from 0 (fast build) to 5 (slowest build, best engine)",
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
