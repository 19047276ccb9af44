//! `type = "realsense"`: its keys, checks and build. One source is one camera (or recording) and
//! one librealsense pipeline; it feeds the depth stream (the keys of its table, sensor `name`)
//! and, with a `[sources.colour]` table, the colour stream (a `vision` sensor of its own name),
//! both stamped by the camera's one clock. `depth = false` keeps only the colour stream.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{
    unreadable, BackoffMs, Config, DepthPreprocessConfig, FrameInterval, FrameSidePx, RealsenseFps,
    Scope, Stream, StreamKind, WhenFull,
};
use crate::pipeline::processor::{self, Processor, ProcessorError};
use crate::sources::kind::{stream_decl, BuildContext, Kind, StreamDecl};
use crate::sources::{Source, SourceError};
use crate::Modality;

/// An Intel RealSense camera (D400 family), or a recording of one played back.
/// Depth calibration comes from the camera (or the recording); `preprocess` values override it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealsenseSettings {
    /// Serial number of the camera to use; the first camera found when omitted.
    #[serde(default)]
    pub serial: Option<String>,
    /// A RealSense recording (`.bag`, or `.db3` from librealsense 2.57+) to play back instead of
    /// a live camera; librealsense paces playback in real time.
    #[serde(default)]
    pub recording: Option<PathBuf>,
    /// With `recording`: start again at the end.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Feed the depth stream (the sensor `name`); `false` keeps only the colour stream.
    #[serde(default = "yes")]
    pub depth: bool,
    /// Depth stream width (default 640).
    #[serde(default)]
    pub width_px: Option<FrameSidePx>,
    /// Depth stream height (default 480).
    #[serde(default)]
    pub height_px: Option<FrameSidePx>,
    /// Depth stream frame rate (a mode the camera offers: 6, 15, 30, 60, 90; default 30).
    #[serde(default)]
    pub fps: Option<RealsenseFps>,
    /// Longest wait between attempts to reopen a missing or failed camera (exponential backoff
    /// from 100 ms).
    #[serde(default = "BackoffMs::device_default")]
    pub reconnect_max_backoff_ms: BackoffMs,
    /// Depth preprocessing options; calibration set here overrides the camera's.
    #[serde(default)]
    pub preprocess: DepthPreprocessConfig,
    /// The colour stream (`[sources.colour]`), from the same camera and pipeline.
    #[serde(default)]
    pub colour: Option<RealsenseColourConfig>,
}

fn yes() -> bool {
    true
}

/// A stream mode of the camera: size and frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamMode {
    /// Width, pixels.
    pub width_px: usize,
    /// Height, pixels.
    pub height_px: usize,
    /// Frames per second.
    pub fps: usize,
}

impl RealsenseSettings {
    /// The depth stream's mode, `None` with `depth = false`.
    #[must_use]
    pub fn depth_mode(&self) -> Option<StreamMode> {
        self.depth.then(|| StreamMode {
            width_px: self.width_px.map_or(640, |w| w.px() as usize),
            height_px: self.height_px.map_or(480, |h| h.px() as usize),
            fps: self.fps.map_or(30, |f| f.fps() as usize),
        })
    }

    /// The colour stream's mode, `None` without a `colour` table.
    #[must_use]
    pub fn colour_mode(&self) -> Option<StreamMode> {
        self.colour.as_ref().map(|c| {
            let c = &c.settings;
            StreamMode {
                width_px: c.width_px.px() as usize,
                height_px: c.height_px.px() as usize,
                fps: c.fps.fps() as usize,
            }
        })
    }
}

/// The keys of a RealSense's colour stream besides the stream keys every frame stream has
/// (`name`, `interval_ms`, `queue_capacity`, `when_full`, `skip_unchanged`): the mode of the
/// camera's RGB sensor, delivered as RGB8.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealsenseColourSettings {
    /// Colour stream width.
    #[serde(default = "default_width_px")]
    pub width_px: FrameSidePx,
    /// Colour stream height.
    #[serde(default = "default_height_px")]
    pub height_px: FrameSidePx,
    /// Colour stream frame rate (a mode the RGB sensor offers: 6, 15, 30, 60).
    #[serde(default = "default_fps")]
    pub fps: RealsenseFps,
}

fn default_width_px() -> FrameSidePx {
    FrameSidePx::trusted(640)
}
fn default_height_px() -> FrameSidePx {
    FrameSidePx::trusted(480)
}
fn default_fps() -> RealsenseFps {
    RealsenseFps::trusted(30)
}

/// The `colour` table of a `realsense` source: a vision stream of its own.
pub type RealsenseColourConfig = Stream<RealsenseColourSettings>;

impl StreamKind for RealsenseColourSettings {
    const TYPE: &'static str = "realsense";
    const MODALITY: Modality = Modality::Vision;
    type Cut = FrameInterval;
    /// Frames waiting for preprocessing.
    const QUEUE_CAPACITY: std::num::NonZeroUsize = DEPTH_QUEUE;
    /// The latest frame wins: the camera never waits.
    const WHEN_FULL: WhenFull = WhenFull::DropOldest;
}

const DEPTH_QUEUE: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(2) {
    Some(n) => n,
    None => std::num::NonZeroUsize::MIN,
};

/// A `realsense` source.
pub type RealsenseConfig = Stream<RealsenseSettings>;

impl StreamKind for RealsenseSettings {
    const TYPE: &'static str = "realsense";
    const MODALITY: Modality = Modality::Depth;
    type Cut = FrameInterval;
    /// Frames waiting for preprocessing.
    const QUEUE_CAPACITY: std::num::NonZeroUsize = DEPTH_QUEUE;
    /// The latest frame wins: the camera never waits.
    const WHEN_FULL: WhenFull = WhenFull::DropOldest;
}

impl Kind for RealsenseSettings {
    /// A live camera is not looked for (it may be plugged in later); a recording must exist.
    fn validate(stream: &Stream<Self>, config: &Config, s: &mut Scope<'_>) {
        let c = &stream.settings;
        if !cfg!(feature = "realsense") {
            s.add(
                "type",
                "edgebind was built without the realsense feature (cargo build --features realsense)",
            );
        }
        match &c.recording {
            Some(rec) => {
                if let Some(m) = unreadable(&config.resolve(rec)) {
                    s.add("recording", m);
                }
                if c.serial.is_some() {
                    s.add("serial", "does not apply to a recording");
                }
            }
            None if c.looping => s.add("loop", "applies only to a recording"),
            None => {}
        }
        if c.serial.as_ref().is_some_and(|s| s.trim().is_empty()) {
            s.add("serial", "must not be empty (omit it for the first camera)");
        }
        if c.depth {
            c.preprocess.validate(s);
        } else {
            check_without_depth(stream, s);
        }
    }

    #[cfg(feature = "realsense")]
    fn open(stream: &Stream<Self>, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(super::Realsense::new(
            stream.name(),
            &stream.settings,
            stream.settings.recording.as_ref().map(|p| cx.resolve(p)),
        )?))
    }

    #[cfg(not(feature = "realsense"))]
    fn open(stream: &Stream<Self>, _cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        Err(SourceError::NotBuilt {
            name: stream.name().to_string(),
            feature: "realsense",
        })
    }

    fn processor(stream: &Stream<Self>) -> Result<Box<dyn Processor>, ProcessorError> {
        let c = &stream.settings;
        let fps = c.fps.map_or(30, |f| f.fps());
        processor::depth::depth_frames(
            stream.name(),
            stream.cut.interval_ms,
            &c.preprocess,
            1e9 / f64::from(fps),
        )
    }

    /// Depth (unless `depth = false`), then colour (with a `colour` table).
    fn streams(stream: &Stream<Self>) -> Vec<StreamDecl<'_>> {
        let depth = stream
            .settings
            .depth
            .then(|| stream_decl(stream, "name", Self::item_shape(stream)));
        let colour = stream.settings.colour.as_ref().map(|c| {
            stream_decl(
                c,
                "colour.name",
                RealsenseColourSettings::MODALITY.example_shape(),
            )
        });
        depth.into_iter().chain(colour).collect()
    }

    fn processors(stream: &Stream<Self>) -> Result<Vec<Box<dyn Processor>>, ProcessorError> {
        let mut processors = Vec::new();
        if stream.settings.depth {
            processors.push(Self::processor(stream)?);
        }
        if let Some(c) = &stream.settings.colour {
            processors.push(processor::vision::vision_frames(
                c.cut.interval_ms,
                1e9 / f64::from(c.settings.fps.fps()),
            ));
        }
        Ok(processors)
    }
}

/// With `depth = false` the table's depth keys would be ignored: each is refused, and a source
/// without the colour stream would feed nothing. (The stream keys of the table itself —
/// `interval_ms`, `queue_capacity`, … — are refused when they differ from their defaults.)
fn check_without_depth(stream: &Stream<RealsenseSettings>, s: &mut Scope<'_>) {
    let c = &stream.settings;
    if c.colour.is_none() {
        s.add(
            "depth",
            "is false and there is no [sources.colour] table: the source would feed nothing",
        );
    }
    let why = "applies to the depth stream, which depth = false turns off";
    let given = [
        ("width_px", c.width_px.is_some()),
        ("height_px", c.height_px.is_some()),
        ("fps", c.fps.is_some()),
        (
            "preprocess",
            c.preprocess != DepthPreprocessConfig::default(),
        ),
        (
            "interval_ms",
            stream.cut != <FrameInterval as crate::config::CutKeys>::defaults(Modality::Depth),
        ),
        (
            "queue_capacity",
            stream.common.queue.capacity.get() != DEPTH_QUEUE,
        ),
        (
            "when_full",
            stream.common.queue.when_full != RealsenseSettings::WHEN_FULL,
        ),
        ("skip_unchanged", stream.common.skip_unchanged.is_some()),
    ];
    for (key, _) in given.iter().filter(|(_, set)| *set) {
        s.add(key, why);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::{problems_in, Config, WhenFull, Windowing};
    use crate::Modality;

    fn config_text(source: &str) -> String {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny");
        format!(
            "[device]\nid = \"d\"\n[models]\ndir = \"{models}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n\
             [[sources]]\ntype = \"realsense\"\nname = \"front_depth\"\n{source}"
        )
    }

    /// Every problem as `line:column: problem`.
    fn problems(source: &str) -> Vec<String> {
        problems_in(&config_text(source))
            .iter()
            .map(|p| {
                let (l, c) = p.location.unwrap_or((0, 0));
                format!("{l}:{c}: {p}")
            })
            .collect()
    }

    /// The line after `name = "front_depth"`.
    const FIRST: usize = 10;

    #[test]
    fn a_colour_table_is_a_vision_stream_of_its_own_after_depth() {
        let text = config_text(
            "[sources.colour]\nname = \"front_rgb\"\nwidth_px = 1280\nheight_px = 720\nfps = 15\n\
             interval_ms = 500\nskip_unchanged = { distance = \"rms\", threshold = 0.01 }\n",
        );
        let config = Config::parse(&text, std::path::Path::new("x.toml")).unwrap();
        let streams = config.streams();
        let names: Vec<_> = streams
            .iter()
            .map(|(i, s)| (*i, s.name.as_str(), s.modality, s.name_key))
            .collect();
        assert_eq!(
            names,
            [
                (0, "front_depth", Modality::Depth, "name"),
                (0, "front_rgb", Modality::Vision, "colour.name"),
            ]
        );
        let colour = &streams[1].1;
        assert_eq!(colour.item_shape, [3, 224, 224]);
        assert_eq!(colour.queue.capacity.get().get(), 2);
        assert_eq!(colour.queue.when_full, WhenFull::DropOldest);
        assert!(colour.skip_unchanged.is_some());
        assert!(
            matches!(colour.windowing, Windowing::Frames { interval_ms } if interval_ms.get() == 500)
        );
        assert_eq!(config.modalities(), [Modality::Depth, Modality::Vision]);
        let crate::sources::registry::SourceConfig::Realsense(rs) = &config.sources[0] else {
            panic!("not a realsense source");
        };
        let mode = rs.settings.colour_mode().unwrap();
        assert_eq!((mode.width_px, mode.height_px, mode.fps), (1280, 720, 15));
        // Depth keeps its defaults.
        let depth = rs.settings.depth_mode().unwrap();
        assert_eq!((depth.width_px, depth.height_px, depth.fps), (640, 480, 30));
    }

    #[test]
    fn colour_only_feeds_one_vision_stream() {
        let text = config_text("depth = false\n[sources.colour]\nname = \"front_rgb\"\n");
        let config = Config::parse(&text, std::path::Path::new("x.toml")).unwrap();
        let streams = config.streams();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].1.name.as_str(), "front_rgb");
        assert_eq!(streams[0].1.modality, Modality::Vision);
        assert_eq!(config.modalities(), [Modality::Vision]);
        // Refused only by a build without the feature, at `type`.
        let p = problems("depth = false\n[sources.colour]\nname = \"front_rgb\"\n");
        if cfg!(feature = "realsense") {
            assert!(p.is_empty(), "{p:?}");
        } else {
            assert_eq!(
                p,
                ["8:8: sources[0].type: edgebind was built without the realsense feature (cargo build --features realsense)"]
            );
        }
    }

    #[test]
    fn bad_colour_values_are_refused_at_their_line() {
        let at = |k: usize| FIRST + k;
        for (source, want) in [
            (
                "[sources.colour]\nname = \"rgb\"\nfps = 0\n",
                format!("{}:7: sources[0].colour.fps: 0 fps is less than the 1 fps allowed", at(2)),
            ),
            (
                "[sources.colour]\nname = \"rgb\"\nwidth_px = 100000\n",
                format!("{}:12: sources[0].colour.width_px: 100000 px is more than", at(2)),
            ),
            (
                "[sources.colour]\nname = \"rgb\"\nqueue_capacity = 0\n",
                format!("{}:18: sources[0].colour.queue_capacity: 0 frames is less than", at(2)),
            ),
            (
                "[sources.colour]\nname = \"rgb\"\nwindow_ms = 100\n",
                format!("{}:1: sources[0].colour.window_ms: unknown key \"window_ms\"; the keys here are name, queue_capacity", at(2)),
            ),
            (
                "[sources.colour]\nwidth_px = 320\n",
                format!("{}:1: sources[0].colour.name: is required and missing", at(0)),
            ),
            (
                "[sources.colour]\nname = \"front_depth\"\n",
                format!(
                    "{}:8: sources[0].colour.name: \"front_depth\" is used by another source",
                    at(1)
                ),
            ),
            (
                "depth = false\n",
                format!(
                    "{}:9: sources[0].depth: is false and there is no [sources.colour] table",
                    at(0)
                ),
            ),
            (
                "depth = false\nwidth_px = 320\ninterval_ms = 10\n[sources.colour]\nname = \"rgb\"\n",
                format!(
                    "{}:12: sources[0].width_px: applies to the depth stream, which depth = false turns off",
                    at(1)
                ),
            ),
            (
                "depth = false\nwidth_px = 320\ninterval_ms = 10\n[sources.colour]\nname = \"rgb\"\n",
                format!(
                    "{}:15: sources[0].interval_ms: applies to the depth stream",
                    at(2)
                ),
            ),
            (
                "depth = false\n[sources.preprocess]\nfocal_px = 600.0\n[sources.colour]\nname = \"rgb\"\n",
                format!(
                    "{}:1: sources[0].preprocess: applies to the depth stream",
                    at(1)
                ),
            ),
        ] {
            let p = problems(source);
            assert!(
                p.iter().any(|p| p.starts_with(&want)),
                "{source}: want {want}, got {p:?}"
            );
        }
    }
}
