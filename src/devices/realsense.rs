//! Intel RealSense cameras (and recordings): name, serial, firmware, streams, and a `realsense`
//! block for a depth mode the camera offers, with a `[sources.colour]` table when it has an
//! RGB8 colour stream.

use serde::Serialize;

use super::block::{BlockSpec, SourceBlock, StreamTable};

/// One stream mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamMode {
    /// `depth`, `color`, `infrared`, …
    pub stream: String,
    /// `Z16`, `RGB8`, …
    pub format: String,
    /// Width, pixels (0 for motion streams).
    pub width_px: u32,
    /// Height, pixels.
    pub height_px: u32,
    /// Frames per second.
    pub fps: u32,
}

/// One camera or recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RealsenseDevice {
    /// `Intel RealSense D435`.
    pub name: String,
    /// Serial number.
    pub serial: Option<String>,
    /// Firmware version.
    pub firmware: Option<String>,
    /// The recording this device plays (`--realsense-recording`), if it is one.
    pub recording: Option<String>,
    /// Stream modes, as librealsense lists them.
    pub streams: Vec<StreamMode>,
    /// Why there is no block.
    pub note: Option<String>,
    /// The `[[sources]]` block.
    pub source: Option<SourceBlock>,
    #[serde(skip)]
    pub(crate) spec: Option<BlockSpec>,
}

/// The depth mode the block asks for: the source's default 640x480 at 30 fps when offered,
/// else the largest Z16 depth mode at the highest rate up to 30 fps.
#[must_use]
pub fn depth_mode(streams: &[StreamMode]) -> Option<&StreamMode> {
    mode_of(streams, "depth", "Z16")
}

/// The colour mode the block asks for, chosen as [`depth_mode`] among the RGB8 colour modes.
#[must_use]
pub fn colour_mode(streams: &[StreamMode]) -> Option<&StreamMode> {
    mode_of(streams, "color", "RGB8")
}

fn mode_of<'a>(streams: &'a [StreamMode], stream: &str, format: &str) -> Option<&'a StreamMode> {
    let z16: Vec<&StreamMode> = streams
        .iter()
        .filter(|s| s.stream == stream && s.format == format && s.width_px > 0)
        .collect();
    z16.iter()
        .find(|s| (s.width_px, s.height_px, s.fps) == (640, 480, 30))
        .or_else(|| {
            z16.iter().max_by_key(|s| {
                (
                    s.fps <= 30,
                    u64::from(s.width_px) * u64::from(s.height_px),
                    s.fps.min(30),
                )
            })
        })
        .copied()
}

impl RealsenseDevice {
    /// A device with its block.
    #[must_use]
    pub fn new(
        name: String,
        serial: Option<String>,
        firmware: Option<String>,
        recording: Option<String>,
        mut streams: Vec<StreamMode>,
    ) -> Self {
        streams.sort_by(|a, b| {
            (&a.stream, &a.format, b.width_px, b.height_px, b.fps).cmp(&(
                &b.stream,
                &b.format,
                a.width_px,
                a.height_px,
                a.fps,
            ))
        });
        streams.dedup();
        let (spec, note) = match depth_mode(&streams) {
            Some(mode) => {
                let mut spec = BlockSpec::new(
                    "realsense",
                    &format!("depth-{}", serial.as_deref().unwrap_or("realsense")),
                )
                .note(&name);
                spec = match (&recording, &serial) {
                    (Some(path), _) => spec.field("recording", path.as_str()),
                    (None, Some(s)) => spec.field("serial", s.as_str()),
                    (None, None) => spec,
                };
                let mut spec = spec
                    .field("width_px", i64::from(mode.width_px))
                    .field("height_px", i64::from(mode.height_px))
                    .field("fps", i64::from(mode.fps));
                if let Some(colour) = colour_mode(&streams) {
                    spec = spec.stream(
                        StreamTable::new(
                            "colour",
                            &format!("colour-{}", serial.as_deref().unwrap_or("realsense")),
                        )
                        .field("width_px", i64::from(colour.width_px))
                        .field("height_px", i64::from(colour.height_px))
                        .field("fps", i64::from(colour.fps)),
                    );
                }
                (Some(spec), None)
            }
            None => (None, Some("no Z16 depth stream".to_string())),
        };
        Self {
            name,
            serial,
            firmware,
            recording,
            streams,
            note,
            source: None,
            spec,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mode(stream: &str, format: &str, w: u32, h: u32, fps: u32) -> StreamMode {
        StreamMode {
            stream: stream.into(),
            format: format.into(),
            width_px: w,
            height_px: h,
            fps,
        }
    }

    #[test]
    fn the_depth_mode_is_the_default_when_offered_else_the_largest_up_to_30_fps() {
        let d435 = [
            mode("depth", "Z16", 1280, 720, 30),
            mode("depth", "Z16", 640, 480, 30),
            mode("depth", "Z16", 640, 480, 90),
            mode("color", "RGB8", 1920, 1080, 30),
        ];
        assert_eq!(depth_mode(&d435), Some(&d435[1]));
        let small = [
            mode("depth", "Z16", 320, 240, 60),
            mode("depth", "Z16", 320, 240, 15),
            mode("depth", "Z16", 256, 144, 90),
        ];
        assert_eq!(depth_mode(&small), Some(&small[1]));
        assert_eq!(depth_mode(&[mode("color", "RGB8", 640, 480, 30)]), None);
    }

    #[test]
    fn a_camera_without_depth_has_a_note_not_a_block() {
        let d = RealsenseDevice::new(
            "Intel RealSense T265".into(),
            Some("1".into()),
            None,
            None,
            vec![mode("pose", "6DOF", 0, 0, 200)],
        );
        assert!(d.spec.is_none());
        assert_eq!(d.note.as_deref(), Some("no Z16 depth stream"));
    }

    #[test]
    fn a_camera_with_colour_gets_a_colour_table_that_reads_as_a_second_sensor() {
        let d = RealsenseDevice::new(
            "Intel RealSense D435".into(),
            Some("123".into()),
            None,
            None,
            vec![
                mode("depth", "Z16", 640, 480, 30),
                mode("color", "RGB8", 1920, 1080, 30),
                mode("color", "RGB8", 1920, 1080, 60),
                mode("color", "BGR8", 640, 480, 30),
            ],
        );
        let block = super::super::block::Names::default().block(d.spec.as_ref().unwrap());
        assert!(
            block.toml.ends_with(
                "[sources.colour]\nname = \"colour-123\"\nwidth_px = 1920\nheight_px = 1080\nfps = 30\n"
            ),
            "{}",
            block.toml
        );
        let source = super::super::block::parse_first_source(&block.toml);
        let names: Vec<String> = source
            .kind()
            .streams()
            .iter()
            .map(|s| s.name.as_str().to_string())
            .collect();
        assert_eq!(names, ["depth-123", "colour-123"]);
        // Without an RGB8 colour mode, no table.
        let d = RealsenseDevice::new(
            "D435".into(),
            None,
            None,
            None,
            vec![
                mode("depth", "Z16", 640, 480, 30),
                mode("color", "BGR8", 640, 480, 30),
            ],
        );
        assert!(d.spec.unwrap().streams.is_empty());
    }
}
