//! Opening the sources of a configuration, and the configuration problems only found doing so
//! (a window that does not fit the rate of a recording or a device): exit 78 like `check`'s.

use anyhow::Result;

use crate::config::{Config, Problem};
use crate::sources::kind::{self, BuildContext, BuildFailure, BuiltSource, RateFrom};

/// What `run` would find wrong with the configuration when it opens the recordings: the rate of
/// each IMU and audio recording (a CSV's timestamps, a WAV header) against the source's window and
/// hop. The recordings are opened as `run` opens them; live devices are not (`check` must not
/// need them), and a recording that cannot be opened is left to the file checks of
/// [`validate`](crate::config::validate).
#[must_use]
pub fn recording_problems(config: &Config) -> Vec<Problem> {
    let cx = BuildContext { config };
    config
        .sources
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind().rate_from() == Some(RateFrom::Recording))
        .filter_map(|(index, source)| {
            let opened = source.kind().open(&cx).ok()?;
            let problems = kind::rate_problems(source.kind(), opened.sample_rate_hz());
            Some(in_source(index, problems))
        })
        .flatten()
        .collect()
}

/// `problems` with keys relative to source `index` placed under `sources[index]`.
fn in_source(index: usize, problems: Vec<Problem>) -> Vec<Problem> {
    problems
        .into_iter()
        .map(|mut p| {
            p.path = format!("sources[{index}].{}", p.path);
            p.related = p
                .related
                .iter()
                .map(|r| format!("sources[{index}].{r}"))
                .collect();
            p
        })
        .collect()
}

/// Opens every source and makes its streams' processors. A value that does not fit what a
/// source turned out to be (a window shorter than one sample at a recording's rate,
/// preprocessing options the preprocessor refuses) is a configuration error (exit 78) naming the
/// key, like those `check` finds, all of them at once.
///
/// # Errors
/// [`ConfigError::Invalid`](crate::config::ConfigError::Invalid) for those, else the first
/// source that cannot be opened.
pub(super) fn build_sources(config: &Config) -> Result<Vec<BuiltSource>> {
    let cx = BuildContext { config };
    let mut built = Vec::new();
    let mut problems = Vec::new();
    for (index, source) in config.sources.iter().enumerate() {
        match source.kind().build(&cx) {
            Ok(b) => built.push(b),
            Err(BuildFailure::Config(p)) => problems.extend(in_source(index, p)),
            Err(BuildFailure::Open(e)) => return Err(e.into()),
        }
    }
    if problems.is_empty() {
        Ok(built)
    } else {
        Err(config.invalid(problems).into())
    }
}
