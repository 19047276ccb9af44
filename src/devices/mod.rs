//! `edgebind devices`: what can be configured on this machine, each sensor with a ready-to-paste
//! `[[sources]]` block that `edgebind check` accepts.
//!
//! - [`serial`]: serial ports (sysfs, `/dev/serial/by-id`, USB ids, known IMU adapters).
//! - [`v4l2`]: V4L2 cameras and known thermal cameras, pure over scripted ioctls
//!   ([`v4l2::V4l2Query`]); `v4l2_probe` (feature `v4l2`) asks the kernel.
//! - [`realsense`]: RealSense cameras and recordings; `realsense_probe` (feature `realsense`).
//! - [`alsa`]: ALSA capture PCMs; `alsa_probe` (feature `alsa`).
//! - [`onnxruntime`]: the ONNX Runtime library `run` would load and its providers.
//! - [`platform`]: GPU / Jetson module, L4T release, power mode, TensorRT.
//! - [`block`]: the `[[sources]]` blocks; [`render`]: the tables (pure).
//!
//! Whatever is missing (a kind of device, a library, a feature of this build) is a
//! [`Status`] with a reason, never an error.

pub mod alsa;
#[cfg(feature = "alsa")]
mod alsa_probe;
pub mod block;
pub mod onnxruntime;
pub mod platform;
pub mod realsense;
#[cfg(feature = "realsense")]
mod realsense_probe;
pub mod render;
pub mod serial;
pub mod v4l2;
#[cfg(feature = "v4l2")]
mod v4l2_probe;

use std::path::{Path, PathBuf};

use serde::Serialize;

use self::alsa::AlsaPcm;
use self::block::{BlockSpec, Names, SourceBlock};
use self::onnxruntime::OnnxRuntimeInfo;
use self::platform::PlatformInfo;
use self::realsense::RealsenseDevice;
use self::serial::{SerialPort, SerialRoots};
use self::v4l2::V4l2Device;

/// Version of the `--json` document (docs/devices.schema.json); raised when a key changes
/// meaning or goes away (new keys may be added without it).
pub const SCHEMA_VERSION: u32 = 1;

/// Whether a kind of device was looked for and found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// At least one device.
    Found,
    /// Looked, none present.
    None,
    /// This binary was built without the Cargo feature that reads them.
    NotBuilt,
    /// Could not look (the reason is in `notes`).
    Unavailable,
}

/// One kind of device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section<T> {
    /// Found, none, not built, unavailable.
    pub status: Status,
    /// Reasons and what was skipped, one line each.
    pub notes: Vec<String>,
    /// The devices.
    pub devices: Vec<T>,
}

impl<T> Section<T> {
    fn of(devices: Vec<T>, notes: Vec<String>) -> Self {
        Self {
            status: if devices.is_empty() {
                Status::None
            } else {
                Status::Found
            },
            notes,
            devices,
        }
    }

    fn unavailable(reason: String) -> Self {
        Self {
            status: Status::Unavailable,
            notes: vec![reason],
            devices: Vec::new(),
        }
    }

    #[allow(
        dead_code,
        reason = "used by builds without one of the device features"
    )]
    fn not_built(feature: &str) -> Self {
        Self {
            status: Status::NotBuilt,
            notes: vec![format!(
                "this edgebind was built without the {feature} feature: cargo build --features {feature}"
            )],
            devices: Vec::new(),
        }
    }
}

/// Everything `edgebind devices` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inventory {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Serial ports.
    pub serial: Section<SerialPort>,
    /// V4L2 cameras.
    pub v4l2: Section<V4l2Device>,
    /// RealSense cameras and recordings.
    pub realsense: Section<RealsenseDevice>,
    /// ALSA capture PCMs.
    pub alsa: Section<AlsaPcm>,
    /// The ONNX Runtime library.
    pub onnxruntime: OnnxRuntimeInfo,
    /// GPU, Jetson, TensorRT.
    pub platform: PlatformInfo,
}

/// What to look at besides what the machine lists.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// Ports to list although the scan does not find them (a pty, a port behind a link).
    pub serial_ports: Vec<PathBuf>,
    /// RealSense recordings to list as devices.
    pub realsense_recordings: Vec<PathBuf>,
    /// The ONNX Runtime library the config names (`ORT_DYLIB_PATH` wins, as for `run`).
    pub ort_library: Option<PathBuf>,
}

/// Looks at the machine. Also returns the problems with what `options` named explicitly.
#[must_use]
pub fn probe(options: &ProbeOptions) -> (Inventory, Vec<String>) {
    let mut given_problems = Vec::new();
    let serial = probe_serial(&options.serial_ports, &mut given_problems);
    let realsense = probe_realsense(&options.realsense_recordings, &mut given_problems);
    let mut inventory = Inventory {
        schema_version: SCHEMA_VERSION,
        serial,
        v4l2: probe_v4l2(),
        realsense,
        alsa: probe_alsa(),
        onnxruntime: onnxruntime::probe(options.ort_library.as_deref()),
        platform: platform::probe(),
    };
    inventory.name_blocks();
    (inventory, given_problems)
}

fn probe_serial(given: &[PathBuf], problems: &mut Vec<String>) -> Section<SerialPort> {
    let (mut ports, mut notes) = match serial::scan(&SerialRoots::default()) {
        Ok(p) => (p, Vec::new()),
        Err(e) if given.is_empty() => return Section::unavailable(e),
        Err(e) => (Vec::new(), vec![e]),
    };
    for path in given {
        match serial::given(Path::new(&normalise(path))) {
            Ok(p) => ports.push(p),
            Err(e) => {
                notes.push(e.clone());
                problems.push(e);
            }
        }
    }
    Section::of(ports, notes)
}

#[cfg(feature = "v4l2")]
fn probe_v4l2() -> Section<V4l2Device> {
    let (devices, notes) = v4l2_probe::probe();
    Section::of(devices, notes)
}

#[cfg(not(feature = "v4l2"))]
fn probe_v4l2() -> Section<V4l2Device> {
    Section::not_built("v4l2")
}

#[cfg(feature = "alsa")]
fn probe_alsa() -> Section<AlsaPcm> {
    match alsa_probe::probe() {
        Ok(pcms) => Section::of(pcms, Vec::new()),
        Err(e) => Section::unavailable(e),
    }
}

#[cfg(not(feature = "alsa"))]
fn probe_alsa() -> Section<AlsaPcm> {
    Section::not_built("alsa")
}

#[cfg(feature = "realsense")]
fn probe_realsense(recordings: &[PathBuf], problems: &mut Vec<String>) -> Section<RealsenseDevice> {
    let normalised: Vec<PathBuf> = recordings
        .iter()
        .map(|p| PathBuf::from(normalise(p)))
        .collect();
    let paths: Vec<&Path> = normalised.iter().map(PathBuf::as_path).collect();
    match realsense_probe::probe(&paths) {
        Ok((devices, failed)) => {
            problems.extend(failed.iter().cloned());
            Section::of(devices, failed)
        }
        Err(e) => {
            if !recordings.is_empty() {
                problems.push(e.clone());
            }
            Section::unavailable(e)
        }
    }
}

#[cfg(not(feature = "realsense"))]
fn probe_realsense(recordings: &[PathBuf], problems: &mut Vec<String>) -> Section<RealsenseDevice> {
    let section = Section::not_built("realsense");
    if !recordings.is_empty() {
        problems.extend(section.notes.iter().cloned());
    }
    section
}

impl Inventory {
    /// Gives every block a name unique across the listing and renders it.
    fn name_blocks(&mut self) {
        let mut names = Names::default();
        let mut fill = |spec: &Option<BlockSpec>, source: &mut Option<SourceBlock>| {
            *source = spec.as_ref().map(|s| names.block(s));
        };
        for d in &mut self.serial.devices {
            fill(&d.spec, &mut d.source);
        }
        for d in &mut self.v4l2.devices {
            fill(&d.spec, &mut d.source);
        }
        for d in &mut self.realsense.devices {
            fill(&d.spec, &mut d.source);
        }
        for d in &mut self.alsa.devices {
            fill(&d.spec, &mut d.source);
        }
    }

    /// Every block, in listing order.
    #[must_use]
    pub fn blocks(&self) -> Vec<&SourceBlock> {
        let serial = self.serial.devices.iter().filter_map(|d| d.source.as_ref());
        let v4l2 = self.v4l2.devices.iter().filter_map(|d| d.source.as_ref());
        let rs = self
            .realsense
            .devices
            .iter()
            .filter_map(|d| d.source.as_ref());
        let alsa = self.alsa.devices.iter().filter_map(|d| d.source.as_ref());
        serial.chain(v4l2).chain(rs).chain(alsa).collect()
    }
}

/// An absolute path without `.` and `..`, as text ([`crate::files::tidy`]).
#[must_use]
pub fn normalise(path: &Path) -> String {
    crate::files::tidy(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shown_absolute_without_dots() {
        assert_eq!(normalise(Path::new("/a/b/../../c/./d.so")), "/c/d.so");
        let cwd = std::env::current_dir().unwrap_or_default();
        assert_eq!(
            normalise(Path::new("x/../y")),
            cwd.join("y").display().to_string()
        );
    }
}
