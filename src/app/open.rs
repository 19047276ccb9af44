//! Opening the sources of a configuration, and the configuration problems only found doing so
//! (a window that does not fit the rate of a recording or a device): exit 78 like `check`'s.

use anyhow::Result;

use crate::config::{Config, Problem, SourceConfig};
use crate::pipeline::stream::Processor;
use crate::sources;

/// What `run` would find wrong with the configuration when it opens the recordings: the rate of
/// each IMU and audio recording (a CSV's timestamps, a WAV header) against the source's window and
/// hop. The recordings are opened as `run` opens them; live devices are not (`check` must not
/// need them), and a recording that cannot be opened is left to the file checks of
/// [`validate`](crate::config::validate).
#[must_use]
pub fn recording_problems(config: &Config) -> Vec<Problem> {
    config
        .sources
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, SourceConfig::ImuReplay(_) | SourceConfig::AudioReplay(_)))
        .filter_map(|(index, source)| {
            let opened = sources::build(config, source).ok()?;
            Some(crate::config::source_rate_problems(
                config,
                index,
                opened.sample_rate_hz(),
            ))
        })
        .flatten()
        .collect()
}

/// A source built, with the processor of its stream.
pub(super) type BuiltSource = (SourceConfig, Box<dyn sources::Source>, Processor);

/// Opens every source and makes its stream's processor. A value that does not fit what a source
/// turned out to be (a window shorter than one sample at a recording's rate, preprocessing
/// options the preprocessor refuses) is a configuration error (exit 78) naming the key, like
/// those `check` finds, all of them at once.
///
/// # Errors
/// [`ConfigError::Invalid`](crate::config::ConfigError::Invalid) for those, else the first
/// source that cannot be opened.
pub(super) fn build_sources(config: &Config) -> Result<Vec<BuiltSource>> {
    let mut built = Vec::new();
    let mut problems = Vec::new();
    for (index, source) in config.sources.iter().enumerate() {
        let processor = Processor::for_source(source).map_err(|e| Problem {
            path: format!("sources[{index}].preprocess"),
            message: e.reason(),
            ..Problem::default()
        });
        let opened = sources::build(config, source)?;
        problems.extend(crate::config::source_rate_problems(
            config,
            index,
            opened.sample_rate_hz(),
        ));
        match processor {
            Ok(processor) => built.push((source.clone(), opened, processor)),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(built)
    } else {
        Err(config.invalid(problems).into())
    }
}
