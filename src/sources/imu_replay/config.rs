//! `type = "imu_replay"`: its keys, checks and build.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{load, ImuReplay};
use crate::config::{
    unreadable, Config, ImuRateHz, ReplaySpeed, SampleWindow, Scope, Stream, StreamKind, WhenFull,
};
use crate::pipeline::processor::{self, Processor, ProcessorError};
use crate::sources::kind::{BuildContext, Kind, RateFrom};
use crate::sources::{Source, SourceError};
use crate::Modality;

/// File format of an IMU recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImuFileFormat {
    /// Decide by the file extension (`.csv` or `.npy`).
    Auto,
    /// Text with a header naming the columns `acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z` (any order,
    /// other columns ignored; an optional `t_s` column gives the rate).
    Csv,
    /// NumPy float32 `[6, N]` (rows acc xyz, gyro xyz), with `sample_rate_hz`.
    Npy,
}

impl ImuFileFormat {
    /// The format of `path` in effect: `auto` decided by the extension (`None` when it cannot
    /// be).
    #[must_use]
    pub fn of(self, path: &Path) -> Option<Self> {
        match self {
            Self::Auto => match path.extension().and_then(|e| e.to_str()) {
                Some("csv") => Some(Self::Csv),
                Some("npy") => Some(Self::Npy),
                _ => None,
            },
            f => Some(f),
        }
    }
}

/// An IMU recording replayed as a sensor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImuReplaySettings {
    /// The recording (relative paths are relative to the config file).
    pub path: PathBuf,
    /// File format.
    #[serde(default = "auto")]
    pub format: ImuFileFormat,
    /// Sample rate of the recording; required for `.npy`, optional for CSV with a `t_s` column.
    #[serde(default)]
    pub sample_rate_hz: Option<ImuRateHz>,
    /// Replay pace.
    #[serde(default = "realtime")]
    pub speed: ReplaySpeed,
    /// Start again at the end (timestamps keep increasing).
    #[serde(default, rename = "loop")]
    pub looping: bool,
}

fn auto() -> ImuFileFormat {
    ImuFileFormat::Auto
}

fn realtime() -> ReplaySpeed {
    ReplaySpeed::Realtime
}

/// An `imu_replay` source.
pub type ImuReplayConfig = Stream<ImuReplaySettings>;

impl StreamKind for ImuReplaySettings {
    const TYPE: &'static str = "imu_replay";
    const MODALITY: Modality = Modality::Imu;
    type Cut = SampleWindow;
    /// Sample blocks waiting for the windower.
    const QUEUE_CAPACITY: std::num::NonZeroUsize = crate::config::DEFAULT_SAMPLE_QUEUE;
    /// `block` is the right choice for replays: nothing is lost.
    const WHEN_FULL: WhenFull = WhenFull::Block;
}

impl Kind for ImuReplaySettings {
    const RATE_FROM: Option<RateFrom> = Some(RateFrom::Recording);

    fn validate(stream: &Stream<Self>, config: &Config, s: &mut Scope<'_>) {
        let c = &stream.settings;
        let path = config.resolve(&c.path);
        if let Some(m) = recording_problem(c, &path) {
            s.add("path", m);
        }
        let format = c.format.of(&path);
        if format.is_none() {
            s.related(
                "format",
                &["path"],
                "cannot tell from the extension; set \"csv\" or \"npy\"",
            );
        }
        match c.sample_rate_hz {
            None if format == Some(ImuFileFormat::Npy) => s.related(
                "sample_rate_hz",
                &["path", "format"],
                "is required for .npy recordings",
            ),
            None => {}
            Some(rate) => s.window_at_rate(&stream.cut, rate.get(), &["sample_rate_hz"]),
        }
    }

    fn open(stream: &Stream<Self>, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(ImuReplay::open(
            cx.resolve(&stream.settings.path),
            stream,
        )?))
    }

    fn processor(stream: &Stream<Self>) -> Result<Box<dyn Processor>, ProcessorError> {
        Ok(processor::imu::imu_windows(stream.cut))
    }
}

/// What `run` would refuse about the recording (loaded in full, as `run` loads it).
fn recording_problem(c: &ImuReplaySettings, path: &Path) -> Option<String> {
    let format = c.format.of(path);
    if format.is_none() || (format == Some(ImuFileFormat::Npy) && c.sample_rate_hz.is_none()) {
        // Validation names the format or the rate; the file can only be opened.
        return unreadable(path);
    }
    load(path, c.format, c.sample_rate_hz.map(ImuRateHz::get))
        .err()
        .map(|e| e.to_string())
}
