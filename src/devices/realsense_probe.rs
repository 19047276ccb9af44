//! RealSense cameras and recordings through librealsense2 (feature `realsense`).

use std::collections::HashSet;
use std::path::Path;

use realsense_rust::context::Context;
use realsense_rust::device::Device;
use realsense_rust::kind::Rs2CameraInfo;

use super::realsense::{RealsenseDevice, StreamMode};

fn info(d: &Device, what: Rs2CameraInfo) -> Option<String> {
    d.info(what)
        .map(|s| s.to_string_lossy().trim().to_string())
        .filter(|s| !s.is_empty())
}

fn streams(d: &Device) -> Vec<StreamMode> {
    let mut modes = Vec::new();
    for sensor in d.sensors() {
        for p in sensor.stream_profiles() {
            let (width_px, height_px) = p
                .intrinsics()
                .map(|i| (i.width() as u32, i.height() as u32))
                .unwrap_or((0, 0));
            modes.push(StreamMode {
                stream: format!("{:?}", p.kind()).to_lowercase(),
                format: format!("{:?}", p.format()).to_uppercase(),
                width_px,
                height_px,
                fps: u32::try_from(p.framerate()).unwrap_or(0),
            });
        }
    }
    modes
}

fn entry(d: &Device, recording: Option<String>) -> RealsenseDevice {
    RealsenseDevice::new(
        info(d, Rs2CameraInfo::Name).unwrap_or_else(|| "RealSense device".into()),
        info(d, Rs2CameraInfo::SerialNumber),
        info(d, Rs2CameraInfo::FirmwareVersion),
        recording,
        streams(d),
    )
}

/// The cameras connected, then each recording named (played as a device).
///
/// # Errors
/// A one-line reason when librealsense cannot start or a recording cannot be opened.
pub fn probe(recordings: &[&Path]) -> Result<(Vec<RealsenseDevice>, Vec<String>), String> {
    let mut context = Context::new().map_err(|e| format!("librealsense: {e}"))?;
    let mut found: Vec<RealsenseDevice> = context
        .query_devices(HashSet::new())
        .iter()
        .filter(|d| info(d, Rs2CameraInfo::Name).is_some())
        .map(|d| entry(d, None))
        .collect();
    let mut problems = Vec::new();
    for path in recordings {
        match context.add_device(path) {
            Ok(d) => found.push(entry(&d, Some(path.display().to_string()))),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    Ok((found, problems))
}
