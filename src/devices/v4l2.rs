//! V4L2 cameras: what each capture node offers (driver, card, formats, sizes, frame rates) and
//! which thermal cameras edgebind knows (FLIR Lepton on PureThermal, InfiRay P2 Pro / Topdon
//! TC001), with a `v4l2_thermal` block for those and a `v4l2_camera` block for colour cameras,
//! each with the format the source's own negotiation picks.
//!
//! Pure: the ioctls are behind [`V4l2Query`] (the `v4l` crate in `v4l2_probe`, scripted answers
//! in the tests).

use serde::Serialize;

use super::block::{BlockSpec, SourceBlock};
use crate::sources::thermal_decode::{FrameLayout, PixelFormat};
use crate::sources::v4l2_camera::format::{self as colour, ColourFormat, ColourRequest};
use crate::sources::v4l2_thermal::negotiate::{self, FormatRequest, OfferedFormat, SizeRange};

/// Most frame sizes listed per format (a stepwise range counts as one).
const MAX_SIZES: usize = 32;

/// `VIDIOC_QUERYCAP`, reduced to what is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// Driver (`uvcvideo`).
    pub driver: String,
    /// Card name (`PureThermal (fw:v1.3.0)`).
    pub card: String,
    /// Bus (`usb-3610000.xhci-2.1`).
    pub bus: String,
    /// Video capture with streaming I/O (a UVC camera's metadata node is not).
    pub capture: bool,
}

/// One frame interval (`VIDIOC_ENUM_FRAMEINTERVALS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// `numerator/denominator` seconds.
    Discrete(u32, u32),
    /// A continuous or stepwise range, fastest and slowest.
    Range {
        /// Shortest interval, `(numerator, denominator)`.
        min: (u32, u32),
        /// Longest interval.
        max: (u32, u32),
    },
}

/// The ioctls the listing needs; errors are the driver's.
pub trait V4l2Query {
    /// `VIDIOC_QUERYCAP`.
    ///
    /// # Errors
    /// The ioctl's.
    fn caps(&self) -> std::io::Result<Caps>;
    /// `VIDIOC_ENUM_FMT`: FourCC and description of each capture format.
    ///
    /// # Errors
    /// The ioctl's.
    fn formats(&self) -> std::io::Result<Vec<([u8; 4], String)>>;
    /// `VIDIOC_ENUM_FRAMESIZES`.
    ///
    /// # Errors
    /// The ioctl's.
    fn sizes(&self, fourcc: [u8; 4]) -> std::io::Result<Vec<SizeRange>>;
    /// `VIDIOC_ENUM_FRAMEINTERVALS`.
    ///
    /// # Errors
    /// The ioctl's.
    fn intervals(
        &self,
        fourcc: [u8; 4],
        width_px: u32,
        height_px: u32,
    ) -> std::io::Result<Vec<Interval>>;
}

/// One frame size with its frame rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizeInfo {
    /// `160x120`, or a range `640x480-1920x1080 step 8/8`.
    pub size: String,
    /// Frame rates, fastest first, rounded to 0.1 fps (empty: the driver does not say).
    pub fps: Vec<f64>,
}

/// One capture format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormatInfo {
    /// FourCC, spaces kept (`"Y16 "`).
    pub fourcc: String,
    /// The driver's description.
    pub description: String,
    /// Whether a V4L2 source can decode it (`v4l2_thermal` or `v4l2_camera`).
    pub usable: bool,
    /// Sizes.
    pub sizes: Vec<SizeInfo>,
}

/// A thermal camera edgebind knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownCamera {
    /// FLIR Lepton on a GroupGets PureThermal board.
    PureThermalLepton,
    /// InfiRay P2 Pro (also sold as Topdon TC001).
    InfirayP2Pro,
}

impl KnownCamera {
    /// What it is called.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::PureThermalLepton => "FLIR Lepton on PureThermal",
            Self::InfirayP2Pro => "InfiRay P2 Pro / Topdon TC001",
        }
    }
}

/// One V4L2 capture node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct V4l2Device {
    /// The path to configure: the `/dev/v4l/by-id` link when there is one, else the node.
    pub path: String,
    /// The node (`/dev/video0`).
    pub device: String,
    /// Driver.
    pub driver: String,
    /// Card name.
    pub card: String,
    /// Bus.
    pub bus: String,
    /// USB `vid:pid`, when known.
    pub usb_id: Option<String>,
    /// Capture formats.
    pub formats: Vec<FormatInfo>,
    /// The thermal camera recognised.
    pub recognised: Option<KnownCamera>,
    /// Why there is no block (or what to check in it).
    pub note: Option<String>,
    /// The `[[sources]]` block.
    pub source: Option<SourceBlock>,
    #[serde(skip)]
    pub(crate) spec: Option<BlockSpec>,
}

/// Where a node is, besides what its ioctls say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node.
    pub device: String,
    /// Its `/dev/v4l/by-id` link.
    pub by_id: Option<String>,
    /// USB `(vid, pid)` from sysfs.
    pub usb: Option<(u16, u16)>,
}

/// Lists one node; `Ok(None)` for a node that is not a video capture node.
///
/// # Errors
/// A one-line reason naming the node when `VIDIOC_QUERYCAP` fails (not a V4L2 device).
pub fn describe(node: &NodeInfo, q: &dyn V4l2Query) -> Result<Option<V4l2Device>, String> {
    let caps = q
        .caps()
        .map_err(|e| format!("{}: not a V4L2 device: {e}", node.device))?;
    if !caps.capture {
        return Ok(None);
    }
    let mut offered = Vec::new();
    let mut formats = Vec::new();
    // A node whose format list cannot be read is still listed, with what failed.
    let (list, mut note) = match q.formats() {
        Ok(list) => (list, None),
        Err(e) => (Vec::new(), Some(format!("VIDIOC_ENUM_FMT failed: {e}"))),
    };
    for (fourcc, description) in list {
        let sizes = q.sizes(fourcc).unwrap_or_default();
        let listed: Vec<SizeInfo> = sizes
            .iter()
            .take(MAX_SIZES)
            .map(|s| size_info(q, fourcc, s))
            .collect();
        formats.push(FormatInfo {
            fourcc: String::from_utf8_lossy(&fourcc).into_owned(),
            description,
            usable: PixelFormat::from_fourcc(fourcc).is_some() || is_colour(fourcc),
            sizes: listed,
        });
        offered.push(OfferedFormat { fourcc, sizes });
    }
    let recognised = recognise(&caps.card, node.usb, &offered);
    let path = node.by_id.clone().unwrap_or_else(|| node.device.clone());
    // A camera that is not a known thermal one but offers a colour format is a colour camera
    // (every UVC webcam offers YUYV or MJPG); one that offers only greyscale may be a thermal
    // core edgebind does not know.
    let colour = recognised
        .is_none()
        .then(|| colour_block(&path, &caps.card, &offered))
        .flatten();
    let spec = match colour {
        Some(spec) => Some(spec),
        None => match thermal_block(&path, &caps.card, recognised, &offered) {
            Ok(spec) => {
                if recognised.is_none() {
                    note.get_or_insert_with(|| {
                        "not a thermal camera edgebind knows: the block reads its greyscale or luma as a thermal image".into()
                    });
                }
                Some(spec)
            }
            Err(why) => {
                let why = format!("{why}, nor a colour format v4l2_camera can (YUYV, UYVY, MJPG)");
                note = Some(note.map_or(why.clone(), |n| format!("{n}; {why}")));
                None
            }
        },
    };
    Ok(Some(V4l2Device {
        path,
        device: node.device.clone(),
        driver: caps.driver,
        card: caps.card,
        bus: caps.bus,
        usb_id: node.usb.map(|(v, p)| format!("{v:04x}:{p:04x}")),
        formats,
        recognised,
        note,
        source: None,
        spec,
    }))
}

fn size_info(q: &dyn V4l2Query, fourcc: [u8; 4], s: &SizeRange) -> SizeInfo {
    // Intervals are asked for the largest size of a range: what a thermal camera runs at.
    let mut fps: Vec<f64> = q
        .intervals(fourcc, s.max_width_px, s.max_height_px)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|i| match i {
            Interval::Discrete(n, d) => vec![fps_of(n, d)],
            Interval::Range { min, max } => vec![fps_of(min.0, min.1), fps_of(max.0, max.1)],
        })
        .flatten()
        .collect();
    fps.sort_by(|a, b| b.total_cmp(a));
    fps.dedup();
    SizeInfo {
        size: s.to_string(),
        fps,
    }
}

/// Frames per second of an interval of `n/d` s, rounded to 0.1.
fn fps_of(n: u32, d: u32) -> Option<f64> {
    (n > 0 && d > 0).then(|| (f64::from(d) / f64::from(n) * 10.0).round() / 10.0)
}

/// Whether `fourcc` is a colour format the `v4l2_camera` source decodes.
fn is_colour(fourcc: [u8; 4]) -> bool {
    [ColourFormat::Yuyv, ColourFormat::Uyvy, ColourFormat::Mjpeg]
        .iter()
        .any(|f| crate::sources::v4l2_thermal::capture::V4l2Format::fourcc(*f) == fourcc)
}

/// The `v4l2_camera` block for a colour camera, with the format and size its negotiation picks
/// (the smallest mode whose shorter side reaches ImageBind's 224 px); `None` when it offers no
/// colour format.
fn colour_block(path: &str, card: &str, offered: &[OfferedFormat]) -> Option<BlockSpec> {
    let request = ColourRequest {
        pixel_format: None,
        size_px: None,
    };
    let choice = colour::choose(offered, &request).ok()?;
    let fourcc = String::from_utf8_lossy(
        &crate::sources::v4l2_thermal::capture::V4l2Format::fourcc(choice.format),
    )
    .into_owned();
    let node = path.rsplit('/').next().unwrap_or(path);
    Some(
        BlockSpec::new("v4l2_camera", &format!("camera-{node}"))
            .note(&format!(
                "{card}: a colour camera for ImageBind's vision encoder (it sees the centre \
                 square of the frame)"
            ))
            .field("device", path)
            .field("pixel_format", fourcc.as_str())
            .field("width_px", i64::from(choice.width_px))
            .field("height_px", i64::from(choice.height_px))
            .alternative("A thermal core behind a colour bridge: type = \"v4l2_thermal\", layout = \"plain\""),
    )
}

/// USB id of PureThermal boards (GroupGets).
const PURETHERMAL_USB: (u16, u16) = (0x1e4e, 0x0100);
/// USB id of the InfiRay P2 Pro (a Realtek UVC bridge).
const P2PRO_USB: (u16, u16) = (0x0bda, 0x5830);

/// Which known thermal camera this is, from its card name, USB id and format signature.
#[must_use]
pub fn recognise(
    card: &str,
    usb: Option<(u16, u16)>,
    offered: &[OfferedFormat],
) -> Option<KnownCamera> {
    let card = card.to_lowercase();
    let offers = |fourcc: &[u8; 4], w: u32, h: u32| {
        offered
            .iter()
            .any(|o| &o.fourcc == fourcc && o.sizes.iter().any(|s| s.contains(w, h)))
    };
    if card.contains("purethermal") || usb == Some(PURETHERMAL_USB) {
        return Some(KnownCamera::PureThermalLepton);
    }
    // The P2 Pro calls itself "USB Camera"; its 256x384 YUYV split mode is the signature.
    let split_mode = offers(b"YUYV", 256, 384);
    if split_mode
        && (usb == Some(P2PRO_USB)
            || card.contains("p2")
            || card.contains("tc001")
            || card.contains("usb camera"))
    {
        return Some(KnownCamera::InfirayP2Pro);
    }
    None
}

/// The `v4l2_thermal` block for a node, checked against the source's own negotiation.
fn thermal_block(
    path: &str,
    card: &str,
    known: Option<KnownCamera>,
    offered: &[OfferedFormat],
) -> Result<BlockSpec, String> {
    let (layout, layout_name) = match known {
        Some(KnownCamera::PureThermalLepton) => {
            (FrameLayout::Lepton { telemetry_rows: 2 }, "lepton")
        }
        Some(KnownCamera::InfirayP2Pro) => (FrameLayout::InfiRaySplit, "infiray_split"),
        None => (FrameLayout::Plain, "plain"),
    };
    let request = FormatRequest {
        pixel_format: None,
        layout,
        size_px: None,
    };
    let choice = negotiate::choose(offered, &request).map_err(|_| {
        "no format the v4l2_thermal source can read (Y16, GREY, YUYV, UYVY)".to_string()
    })?;
    let fourcc = String::from_utf8_lossy(&choice.format.fourcc()).into_owned();
    let node = path.rsplit('/').next().unwrap_or(path);
    let hint = match known {
        Some(KnownCamera::PureThermalLepton) => "thermal-lepton".to_string(),
        Some(KnownCamera::InfirayP2Pro) => "thermal-p2pro".to_string(),
        None => format!("thermal-{node}"),
    };
    let mut spec = BlockSpec::new("v4l2_thermal", &hint)
        .note(&match known {
            Some(k) => format!("{} ({card})", k.label()),
            None => format!("{card}: not a thermal camera edgebind knows"),
        })
        .field("device", path)
        .field("layout", layout_name)
        .field("pixel_format", fourcc.as_str())
        .field("width_px", i64::from(choice.width_px))
        .field("height_px", i64::from(choice.height_px));
    spec = match (known, choice.format) {
        (Some(KnownCamera::InfirayP2Pro), _) => spec
            .preprocess("agc", "fixed_celsius")
            .preprocess("agc_min_c", 10.0)
            .preprocess("agc_max_c", 40.0)
            .preprocess("radiometric", "infiray64"),
        (Some(KnownCamera::PureThermalLepton), PixelFormat::Y16) => spec
            .alternative("With radiometry (TLinear) on, a fixed window keeps absolute temperature:")
            .alternative("[sources.preprocess]")
            .alternative("agc = \"fixed_celsius\"")
            .alternative("agc_min_c = 10.0")
            .alternative("agc_max_c = 40.0"),
        _ => spec,
    };
    Ok(spec)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{FrameSidePx, SourceConfig};
    use crate::sources::v4l2_thermal::{ThermalLayout, V4l2PixelFormat, V4l2ThermalSettings};
    use std::collections::HashMap;

    /// Scripted ioctl answers.
    #[derive(Default)]
    struct Script {
        caps: Option<Caps>,
        formats: Vec<([u8; 4], String)>,
        sizes: HashMap<[u8; 4], Vec<SizeRange>>,
        intervals: HashMap<([u8; 4], u32, u32), Vec<Interval>>,
        enum_fmt_fails: bool,
    }

    impl V4l2Query for Script {
        fn caps(&self) -> std::io::Result<Caps> {
            self.caps
                .clone()
                .ok_or_else(|| std::io::Error::from_raw_os_error(25))
        }
        fn formats(&self) -> std::io::Result<Vec<([u8; 4], String)>> {
            if self.enum_fmt_fails {
                return Err(std::io::Error::from_raw_os_error(22));
            }
            Ok(self.formats.clone())
        }
        fn sizes(&self, fourcc: [u8; 4]) -> std::io::Result<Vec<SizeRange>> {
            self.sizes
                .get(&fourcc)
                .cloned()
                .ok_or_else(|| std::io::Error::from_raw_os_error(22))
        }
        fn intervals(&self, fourcc: [u8; 4], w: u32, h: u32) -> std::io::Result<Vec<Interval>> {
            self.intervals
                .get(&(fourcc, w, h))
                .cloned()
                .ok_or_else(|| std::io::Error::from_raw_os_error(22))
        }
    }

    fn caps(card: &str) -> Option<Caps> {
        Some(Caps {
            driver: "uvcvideo".into(),
            card: card.into(),
            bus: "usb-0000:00:14.0-1".into(),
            capture: true,
        })
    }

    fn node(device: &str, usb: Option<(u16, u16)>) -> NodeInfo {
        NodeInfo {
            device: device.into(),
            by_id: None,
            usb,
        }
    }

    /// What a PureThermal 2 with a Lepton 3.5 answers.
    fn purethermal() -> Script {
        let d = SizeRange::discrete;
        let mut s = Script {
            caps: caps("PureThermal (fw:v1.3.0)"),
            ..Script::default()
        };
        for (code, desc) in [
            (*b"UYVY", "UYVY 4:2:2"),
            (*b"Y16 ", "16-bit Greyscale"),
            (*b"GREY", "8-bit Greyscale"),
            (*b"RGBP", "16-bit RGB 5-6-5"),
        ] {
            s.formats.push((code, desc.into()));
            s.sizes.insert(code, vec![d(160, 120)]);
            s.intervals
                .insert((code, 160, 120), vec![Interval::Discrete(1, 9)]);
        }
        s.sizes.insert(*b"Y16 ", vec![d(160, 120), d(160, 122)]);
        s.intervals
            .insert((*b"Y16 ", 160, 122), vec![Interval::Discrete(1, 9)]);
        s
    }

    /// What an InfiRay P2 Pro answers: "USB Camera", YUYV 256x192 and the 256x384 split mode.
    fn p2pro() -> Script {
        let d = SizeRange::discrete;
        let mut s = Script {
            caps: caps("USB Camera: USB Camera"),
            ..Script::default()
        };
        s.formats.push((*b"YUYV", "YUYV 4:2:2".into()));
        s.sizes.insert(*b"YUYV", vec![d(256, 192), d(256, 384)]);
        s.intervals
            .insert((*b"YUYV", 256, 384), vec![Interval::Discrete(1, 25)]);
        s.intervals
            .insert((*b"YUYV", 256, 192), vec![Interval::Discrete(1, 25)]);
        s
    }

    fn parsed(dev: &V4l2Device) -> V4l2ThermalSettings {
        let text = dev.spec.as_ref().unwrap().render("t", &[]);
        match crate::devices::block::parse_first_source(&text) {
            SourceConfig::V4l2Thermal(c) => c.settings,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_purethermal_is_recognised_with_its_formats_and_rates() {
        let dev = describe(&node("/dev/video0", None), &purethermal())
            .unwrap()
            .unwrap();
        assert_eq!(dev.recognised, Some(KnownCamera::PureThermalLepton));
        assert_eq!(dev.formats.len(), 4);
        let y16 = &dev.formats[1];
        assert_eq!((y16.fourcc.as_str(), y16.usable), ("Y16 ", true));
        assert_eq!(
            y16.sizes[1],
            SizeInfo {
                size: "160x122".into(),
                fps: vec![9.0]
            }
        );
        assert!(!dev.formats[3].usable);
        let c = parsed(&dev);
        assert_eq!(c.device, "/dev/video0");
        assert_eq!(c.layout, ThermalLayout::Lepton);
        assert_eq!(c.pixel_format, Some(V4l2PixelFormat::Y16));
        // The telemetry size is the largest that fits the Lepton layout.
        assert_eq!(
            (
                c.width_px.map(FrameSidePx::px),
                c.height_px.map(FrameSidePx::px)
            ),
            (Some(160), Some(122))
        );
        assert_eq!(dev.note, None);
    }

    #[test]
    fn an_infiray_p2_pro_is_recognised_by_its_split_mode_and_usb_id() {
        let dev = describe(&node("/dev/video2", Some((0x0bda, 0x5830))), &p2pro())
            .unwrap()
            .unwrap();
        assert_eq!(dev.recognised, Some(KnownCamera::InfirayP2Pro));
        assert_eq!(dev.usb_id.as_deref(), Some("0bda:5830"));
        assert_eq!(dev.formats[0].sizes[1].fps, vec![25.0]);
        let c = parsed(&dev);
        assert_eq!(c.layout, ThermalLayout::InfiraySplit);
        assert_eq!(
            (
                c.width_px.map(FrameSidePx::px),
                c.height_px.map(FrameSidePx::px)
            ),
            (Some(256), Some(384))
        );
        assert_eq!(
            c.preprocess.radiometric,
            crate::config::Radiometric::Infiray64
        );
        // Without the split mode a "USB Camera" is just a camera: a colour one.
        let mut webcam = p2pro();
        webcam.sizes.insert(
            *b"YUYV",
            vec![SizeRange::discrete(640, 480), SizeRange::discrete(320, 240)],
        );
        let dev = describe(&node("/dev/video4", None), &webcam)
            .unwrap()
            .unwrap();
        assert_eq!(dev.recognised, None);
        assert_eq!(dev.note, None);
        // The smallest mode whose shorter side reaches ImageBind's 224 px.
        let c = parsed_camera(&dev);
        assert_eq!(c.device, "/dev/video4");
        assert_eq!(
            (
                c.width_px.map(FrameSidePx::px),
                c.height_px.map(FrameSidePx::px)
            ),
            (Some(320), Some(240))
        );
    }

    fn parsed_camera(dev: &V4l2Device) -> crate::sources::v4l2_camera::V4l2CameraSettings {
        let text = dev.spec.as_ref().unwrap().render("c", &[]);
        match crate::devices::block::parse_first_source(&text) {
            SourceConfig::V4l2Camera(c) => c.settings,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_greyscale_only_camera_edgebind_does_not_know_gets_a_plain_thermal_block() {
        let mut s = Script {
            caps: caps("Boson"),
            ..Script::default()
        };
        s.formats.push((*b"Y16 ", "16-bit Greyscale".into()));
        s.sizes
            .insert(*b"Y16 ", vec![SizeRange::discrete(320, 256)]);
        let dev = describe(&node("/dev/video6", None), &s).unwrap().unwrap();
        assert!(dev
            .note
            .as_deref()
            .unwrap()
            .starts_with("not a thermal camera edgebind knows"));
        assert_eq!(parsed(&dev).layout, ThermalLayout::Plain);
    }

    #[test]
    fn metadata_nodes_are_skipped_and_unreadable_nodes_say_why() {
        let mut meta = purethermal();
        meta.caps.as_mut().unwrap().capture = false;
        assert_eq!(describe(&node("/dev/video1", None), &meta).unwrap(), None);
        let e = describe(&node("/dev/null", None), &Script::default()).unwrap_err();
        assert!(e.starts_with("/dev/null: not a V4L2 device: "), "{e}");
        let mut broken = purethermal();
        broken.enum_fmt_fails = true;
        let dev = describe(&node("/dev/video0", None), &broken)
            .unwrap()
            .unwrap();
        assert!(dev.formats.is_empty());
        assert!(dev.spec.is_none());
        let note = dev.note.unwrap();
        assert!(note.starts_with("VIDIOC_ENUM_FMT failed: "), "{note}");
        assert!(
            note.ends_with("no format the v4l2_thermal source can read (Y16, GREY, YUYV, UYVY), nor a colour format v4l2_camera can (YUYV, UYVY, MJPG)"),
            "{note}"
        );
    }

    #[test]
    fn frame_rates_are_rounded_fastest_first_and_ranges_give_both_ends() {
        let mut s = Script {
            caps: caps("Some Cam"),
            ..Script::default()
        };
        s.formats.push((*b"MJPG", "Motion-JPEG".into()));
        let range = SizeRange {
            min_width_px: 32,
            max_width_px: 1920,
            step_width_px: 8,
            min_height_px: 32,
            max_height_px: 1080,
            step_height_px: 8,
        };
        s.sizes.insert(*b"MJPG", vec![range]);
        s.intervals.insert(
            (*b"MJPG", 1920, 1080),
            vec![
                Interval::Discrete(1001, 30000),
                Interval::Range {
                    min: (1, 60),
                    max: (1, 5),
                },
                Interval::Discrete(1, 60),
            ],
        );
        let dev = describe(&node("/dev/video0", None), &s).unwrap().unwrap();
        let size = &dev.formats[0].sizes[0];
        assert_eq!(size.size, "32x32-1920x1080 step 8/8");
        assert_eq!(size.fps, vec![60.0, 30.0, 5.0]);
        // MJPG only: a colour camera. Of a stepwise range only its ends are modes a driver is
        // sure to give: the larger end is the one that reaches 224 px.
        assert!(dev.formats[0].usable);
        let c = parsed_camera(&dev);
        assert_eq!(
            c.pixel_format,
            Some(crate::sources::v4l2_camera::format::ColourFormat::Mjpeg)
        );
        assert_eq!(
            (
                c.width_px.map(FrameSidePx::px),
                c.height_px.map(FrameSidePx::px)
            ),
            (Some(1920), Some(1080))
        );
    }
}
