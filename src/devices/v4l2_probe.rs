//! The V4L2 ioctls behind [`V4l2Query`], with the `v4l` crate (feature `v4l2`), and where the
//! nodes are (`/dev/video*`, `/dev/v4l/by-id`, the USB id in sysfs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use v4l::capability::Flags;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::v4l2::{describe, Caps, Interval, NodeInfo, V4l2Device, V4l2Query};
use crate::sources::v4l2_thermal::negotiate::SizeRange;

struct Node(Device);

impl V4l2Query for Node {
    fn caps(&self) -> std::io::Result<Caps> {
        let c = self.0.query_caps()?;
        Ok(Caps {
            capture: c
                .capabilities
                .contains(Flags::VIDEO_CAPTURE | Flags::STREAMING),
            driver: c.driver,
            card: c.card,
            bus: c.bus,
        })
    }

    fn formats(&self) -> std::io::Result<Vec<([u8; 4], String)>> {
        Ok(self
            .0
            .enum_formats()?
            .into_iter()
            .map(|f| (f.fourcc.repr, f.description))
            .collect())
    }

    fn sizes(&self, fourcc: [u8; 4]) -> std::io::Result<Vec<SizeRange>> {
        Ok(self
            .0
            .enum_framesizes(FourCC::new(&fourcc))?
            .into_iter()
            .map(|s| match s.size {
                FrameSizeEnum::Discrete(d) => SizeRange::discrete(d.width, d.height),
                FrameSizeEnum::Stepwise(s) => SizeRange {
                    min_width_px: s.min_width,
                    max_width_px: s.max_width,
                    step_width_px: s.step_width,
                    min_height_px: s.min_height,
                    max_height_px: s.max_height,
                    step_height_px: s.step_height,
                },
            })
            .collect())
    }

    fn intervals(&self, fourcc: [u8; 4], w: u32, h: u32) -> std::io::Result<Vec<Interval>> {
        Ok(self
            .0
            .enum_frameintervals(FourCC::new(&fourcc), w, h)?
            .into_iter()
            .map(|i| match i.interval {
                FrameIntervalEnum::Discrete(f) => Interval::Discrete(f.numerator, f.denominator),
                FrameIntervalEnum::Stepwise(s) => Interval::Range {
                    min: (s.min.numerator, s.min.denominator),
                    max: (s.max.numerator, s.max.denominator),
                },
            })
            .collect())
    }
}

/// Every V4L2 capture node, in number order, and the reasons nodes could not be read.
#[must_use]
pub fn probe() -> (Vec<V4l2Device>, Vec<String>) {
    let by_id = links(Path::new("/dev/v4l/by-id"));
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let n = e
                        .file_name()
                        .to_str()?
                        .strip_prefix("video")?
                        .parse()
                        .ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let mut not_capture = Vec::new();
    for (_, path) in nodes {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = NodeInfo {
            device: path.display().to_string(),
            by_id: by_id.get(&name).map(|p| p.display().to_string()),
            usb: usb_id(
                &Path::new("/sys/class/video4linux")
                    .join(&name)
                    .join("device"),
            ),
        };
        match Device::with_path(&path) {
            Ok(dev) => match describe(&info, &Node(dev)) {
                Ok(Some(d)) => found.push(d),
                Ok(None) => not_capture.push(info.device),
                Err(e) => problems.push(e),
            },
            Err(e) => problems.push(format!("{}: cannot open: {e}", path.display())),
        }
    }
    if !not_capture.is_empty() {
        // A UVC camera's second node carries metadata, not frames.
        problems.push(format!(
            "not video capture nodes (metadata or output): {}",
            not_capture.join(", ")
        ));
    }
    (found, problems)
}

/// `by-id` links by the node they lead to. A camera has one per node (`-video-index0`,
/// `-index1`); the capture node is the one that leads to it.
fn links(dir: &Path) -> HashMap<String, PathBuf> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Some(node) = std::fs::read_link(e.path())
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        {
            out.insert(node, e.path());
        }
    }
    out
}

/// The USB id above a video4linux device directory (the interface's parent).
fn usb_id(device: &Path) -> Option<(u16, u16)> {
    let mut dir = std::fs::canonicalize(device).ok()?;
    for _ in 0..3 {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .ok()
                .and_then(|v| u16::from_str_radix(v.trim(), 16).ok())
        };
        if let (Some(v), Some(p)) = (read("idVendor"), read("idProduct")) {
            return Some((v, p));
        }
        dir = dir.parent()?.to_path_buf();
    }
    None
}
