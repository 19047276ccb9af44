//! What a source kind is to the rest of edgebind. Each kind (`imu_replay`, `realsense`, …) is
//! a module of its own holding its settings ([`StreamKind`]: keys, defaults), its checks and how
//! it is built ([`Kind`]); [`SourceKind`] is the same seen through `dyn`, which is all that
//! validation, model loading and the supervisor use. The kinds are listed once, in
//! [`registry`](super::registry).

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Source, SourceError};
use crate::config::CutKeys;
use crate::config::{
    Config, Problem, QueueSettings, Scope, SensorName, Stream, StreamCommon, StreamKind, Windowing,
};
use crate::pipeline::processor::{Processor, ProcessorError};
use crate::Modality;

/// Where a windowed source's sample rate comes from when the configuration does not say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateFrom {
    /// The recording (a CSV's timestamps, a WAV header): known when the source is opened, also
    /// by `check`.
    Recording,
    /// The device (a negotiated ALSA format): known when `run` opens it.
    Device,
}

impl RateFrom {
    /// How a message names the rate: `the recording's 200 Hz`.
    #[must_use]
    pub fn whose(self) -> &'static str {
        match self {
            Self::Recording => "the recording's",
            Self::Device => "the device's",
        }
    }
}

/// One sensor stream a source feeds (most feed one; a camera with a depth and a colour stream
/// would feed two, on one capture clock).
#[derive(Debug, Clone)]
pub struct StreamDecl<'a> {
    /// The sensor's name.
    pub name: &'a SensorName,
    /// Where that name is in the source's table (`name`, `colour.name`).
    pub name_key: &'static str,
    /// The modality.
    pub modality: Modality,
    /// The queue between the source and the stream.
    pub queue: QueueSettings,
    /// How the stream is cut.
    pub windowing: Windowing,
    /// The model input of one window, without the batch dimension.
    pub item_shape: Vec<usize>,
    /// Reuse the last embedding while the input stays close (`skip_unchanged`).
    pub skip_unchanged: Option<crate::config::SkipUnchanged>,
}

/// What building a source needs besides its settings.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// The whole configuration (paths are relative to its file).
    pub config: &'a Config,
}

impl BuildContext<'_> {
    /// A path of the configuration, resolved against its file's directory.
    #[must_use]
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.config.resolve(p)
    }
}

/// A source built, with the processor of each of its streams (in [`SourceKind::streams`]
/// order).
#[derive(Debug)]
pub struct BuiltSource {
    /// The source, ready to run on its thread.
    pub source: Box<dyn Source>,
    /// One per stream.
    pub processors: Vec<Box<dyn Processor>>,
}

/// Why a source could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildFailure {
    /// The file or device cannot be used (exit 1).
    #[error(transparent)]
    Open(#[from] SourceError),
    /// Values that do not fit what the source turned out to be (a window shorter than a sample at
    /// a recording's rate, preprocessing options the preprocessing refuses): configuration
    /// problems, every one found, with keys relative to the source's table.
    #[error("{} configuration problem(s)", .0.len())]
    Config(Vec<Problem>),
}

/// A source kind's checks and how it is built, on its settings `Self`.
pub trait Kind: StreamKind {
    /// Where the sample rate comes from when only opening the source tells (`None`: the
    /// configuration gives it, or the stream is cut in frames).
    const RATE_FROM: Option<RateFrom> = None;

    /// The checks of its own keys: files it names, keys that go together, numbers whose range
    /// is its own. The common keys were checked when the file was read.
    fn validate(stream: &Stream<Self>, config: &Config, s: &mut Scope<'_>);

    /// Opens its file or checks its device settings (a device itself may be opened when the
    /// source runs).
    ///
    /// # Errors
    /// A [`SourceError`] naming the source and what is wrong.
    fn open(stream: &Stream<Self>, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError>;

    /// The processor of its stream.
    ///
    /// # Errors
    /// [`ProcessorError`] when the preprocessing refuses its options.
    fn processor(stream: &Stream<Self>) -> Result<Box<dyn Processor>, ProcessorError>;

    /// The model input of one window (the modality's, with one clip where it has clips).
    fn item_shape(_stream: &Stream<Self>) -> Vec<usize> {
        Self::MODALITY.example_shape()
    }

    /// Every stream it feeds: the one of its table, unless it feeds several from one device
    /// (a RealSense's depth and colour streams, on one capture clock).
    fn streams(stream: &Stream<Self>) -> Vec<StreamDecl<'_>> {
        vec![stream_decl(stream, "name", Self::item_shape(stream))]
    }

    /// The processors of its streams, in [`streams`](Self::streams) order.
    ///
    /// # Errors
    /// [`ProcessorError`] when the preprocessing refuses its options.
    fn processors(stream: &Stream<Self>) -> Result<Vec<Box<dyn Processor>>, ProcessorError> {
        Self::processor(stream).map(|p| vec![p])
    }
}

/// The stream configured by `stream`'s common keys, its name at `name_key` of the source's
/// table.
#[must_use]
pub fn stream_decl<'a, K: StreamKind>(
    stream: &'a Stream<K>,
    name_key: &'static str,
    item_shape: Vec<usize>,
) -> StreamDecl<'a> {
    StreamDecl {
        name: &stream.common.name,
        name_key,
        modality: K::MODALITY,
        queue: stream.common.queue,
        windowing: stream.cut.windowing(),
        item_shape,
        skip_unchanged: stream.common.skip_unchanged,
    }
}

/// A source's configuration as the rest of edgebind sees it, whatever its kind.
pub trait SourceKind: fmt::Debug + Send + Sync {
    /// Its `type`.
    fn type_name(&self) -> &'static str;
    /// Name and queue of its (first) stream.
    fn common(&self) -> &StreamCommon;
    /// The modality of its (first) stream.
    fn modality(&self) -> Modality;
    /// How its (first) stream is cut.
    fn windowing(&self) -> Windowing;
    /// Where its sample rate comes from when only opening it tells.
    fn rate_from(&self) -> Option<RateFrom>;
    /// Every stream it feeds.
    fn streams(&self) -> Vec<StreamDecl<'_>>;
    /// Its own checks (see [`Kind::validate`]).
    fn validate(&self, config: &Config, s: &mut Scope<'_>);
    /// The processors of its streams, in [`streams`](Self::streams) order.
    ///
    /// # Errors
    /// [`ProcessorError`] when the preprocessing refuses its options.
    fn processors(&self) -> Result<Vec<Box<dyn Processor>>, ProcessorError>;
    /// Opens it (see [`Kind::open`]).
    ///
    /// # Errors
    /// As [`Kind::open`].
    fn open(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError>;
    /// Builds it: its processors and the opened source, or every configuration problem found
    /// doing so (keys relative to its table).
    ///
    /// # Errors
    /// [`BuildFailure`].
    fn build(&self, cx: &BuildContext<'_>) -> Result<BuiltSource, BuildFailure>;

    /// The sensor name of its (first) stream.
    fn name(&self) -> &str {
        self.common().name.as_str()
    }
}

impl<K: Kind> SourceKind for Stream<K> {
    fn type_name(&self) -> &'static str {
        K::TYPE
    }

    fn common(&self) -> &StreamCommon {
        &self.common
    }

    fn modality(&self) -> Modality {
        K::MODALITY
    }

    fn windowing(&self) -> Windowing {
        self.cut.windowing()
    }

    fn rate_from(&self) -> Option<RateFrom> {
        K::RATE_FROM
    }

    fn streams(&self) -> Vec<StreamDecl<'_>> {
        K::streams(self)
    }

    fn validate(&self, config: &Config, s: &mut Scope<'_>) {
        K::validate(self, config, s);
    }

    fn processors(&self) -> Result<Vec<Box<dyn Processor>>, ProcessorError> {
        K::processors(self)
    }

    fn open(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        K::open(self, cx)
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<BuiltSource, BuildFailure> {
        let processors = self.processors().map_err(|e| Problem {
            path: "preprocess".into(),
            message: e.reason(),
            ..Problem::default()
        });
        let source = K::open(self, cx)?;
        let mut problems = rate_problems(self, source.sample_rate_hz());
        match processors {
            Ok(processors) if problems.is_empty() => Ok(BuiltSource { source, processors }),
            Ok(_) => Err(BuildFailure::Config(problems)),
            Err(problem) => {
                problems.insert(0, problem);
                Err(BuildFailure::Config(problems))
            }
        }
    }
}

/// Problems of a source at the sample rate it turned out to have when it was opened: the rate
/// itself, and the window and hop at that rate (keys relative to its table). Empty for a usable
/// rate, and for sources whose rate the configuration gives or that are cut in frames.
#[must_use]
pub fn rate_problems(source: &dyn SourceKind, rate_hz: f64) -> Vec<Problem> {
    match source.rate_from() {
        Some(from) => crate::config::rate_problems(
            source.modality(),
            source.windowing(),
            from.whose(),
            rate_hz,
        ),
        None => Vec::new(),
    }
}
