//! ONNX Runtime's log, routed. The environment's messages (where the TensorRT provider writes,
//! TensorRT's own build log included) go to `tracing` under the target `onnxruntime`, and while
//! an engine build is watched the latest line is kept for systemd's `STATUS=`. A session's
//! verbose log during its creation says which provider got how many nodes; that is parsed into a
//! [`Placement`].

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use ort::environment::Environment;
use ort::logging::{LogLevel, LoggerFunction};

/// The latest line of a watched build and how many lines it logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildLine {
    /// The message (trimmed).
    pub text: String,
    /// Lines logged since the watch began.
    pub count: u64,
}

static BUILD: Mutex<Option<BuildLine>> = Mutex::new(None);

/// The logger the ONNX Runtime environment is created with.
#[must_use]
pub fn env_logger() -> LoggerFunction {
    Arc::new(|level, _category, _id, _location, message| route(level, message))
}

fn route(level: LogLevel, message: &str) {
    let message = message.trim();
    let watched = note_build_line(message);
    match level {
        LogLevel::Verbose => tracing::debug!(target: "onnxruntime", "{message}"),
        // INFO reaches us only while a build is watched; the TensorRT provider's lines (the
        // partition, each engine's build time) are what a user wants to see of it.
        LogLevel::Info if watched && message.contains("TensorRT") => {
            tracing::info!(target: "onnxruntime", "{message}");
        }
        LogLevel::Info => tracing::debug!(target: "onnxruntime", "{message}"),
        LogLevel::Warning => tracing::warn!(target: "onnxruntime", "{message}"),
        LogLevel::Error | LogLevel::Fatal => tracing::error!(target: "onnxruntime", "{message}"),
    }
}

fn note_build_line(message: &str) -> bool {
    let mut build = BUILD.lock().unwrap_or_else(PoisonError::into_inner);
    match build.as_mut() {
        Some(b) => {
            b.count += 1;
            if !message.is_empty() {
                b.text = message.to_string();
            }
            true
        }
        None => false,
    }
}

/// While alive, the environment logs at INFO (VERBOSE with `detailed`, which is where TensorRT's
/// detailed build log arrives) and [`latest_build_line`] follows it; dropped, back to WARNING.
#[derive(Debug)]
pub struct BuildWatch<'a> {
    env: &'a Environment,
}

/// Starts watching an engine build. Models load one after the other, so one watch at a time.
#[must_use]
pub fn watch_build(env: &Environment, detailed: bool) -> BuildWatch<'_> {
    *BUILD.lock().unwrap_or_else(PoisonError::into_inner) = Some(BuildLine::default());
    env.set_log_level(if detailed {
        LogLevel::Verbose
    } else {
        LogLevel::Info
    });
    BuildWatch { env }
}

impl Drop for BuildWatch<'_> {
    fn drop(&mut self) {
        self.env.set_log_level(LogLevel::Warning);
        *BUILD.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The latest line of the watched build (`None`: no build watched, or nothing logged yet).
#[must_use]
pub fn latest_build_line() -> Option<BuildLine> {
    BUILD
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .filter(|b| b.count > 0)
}

/// How many graph nodes each provider was given (ONNX Runtime's names shortened: `tensorrt`,
/// `cuda`, `cpu`). TensorRT's count is of the subgraphs it took, each fused into one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement(pub Vec<(String, usize)>);

impl Placement {
    /// `tensorrt 3, cuda 41, cpu 2` (`unknown` when ONNX Runtime did not say).
    #[must_use]
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "unknown".into();
        }
        let mut out = String::new();
        for (i, (provider, n)) in self.0.iter().enumerate() {
            let _ = write!(out, "{}{provider} {n}", if i == 0 { "" } else { ", " });
        }
        out
    }

    /// Nodes on `provider` (short name).
    #[must_use]
    pub fn nodes_on(&self, provider: &str) -> usize {
        self.0
            .iter()
            .filter(|(p, _)| p == provider)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A provider and its node count from one of ONNX Runtime's placement lines
/// (`All nodes placed on [CPUExecutionProvider]. Number of nodes: 12`,
/// `Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 40`).
#[must_use]
pub fn parse_placement(message: &str) -> Option<(String, usize)> {
    let rest = &message[message.find("placed on [")? + "placed on [".len()..];
    let (provider, rest) = rest.split_once(']')?;
    let count = rest.split("Number of nodes:").nth(1)?.trim();
    let digits: String = count.chars().take_while(char::is_ascii_digit).collect();
    Some((short_provider(provider), digits.parse().ok()?))
}

fn short_provider(name: &str) -> String {
    match name {
        "TensorrtExecutionProvider" => "tensorrt".into(),
        "CUDAExecutionProvider" => "cuda".into(),
        "CPUExecutionProvider" => "cpu".into(),
        other => other.into(),
    }
}

/// A session logger that collects the placement lines into `sink` and passes warnings and
/// errors on to `tracing` (the "not assigned to the preferred execution providers" warning at
/// INFO: the placement reported with the model says the same in numbers).
#[must_use]
pub fn placement_logger(sink: Arc<Mutex<Placement>>) -> LoggerFunction {
    Arc::new(move |level, _category, _id, _location, message| {
        let message = message.trim();
        if let Some(entry) = parse_placement(message) {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .push(entry);
            return;
        }
        match level {
            LogLevel::Verbose | LogLevel::Info => {}
            LogLevel::Warning if message.contains("not assigned to the preferred") => {
                tracing::info!(target: "onnxruntime", "{message}");
            }
            LogLevel::Warning => tracing::warn!(target: "onnxruntime", "{message}"),
            LogLevel::Error | LogLevel::Fatal => {
                tracing::error!(target: "onnxruntime", "{message}");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_build_keeps_its_latest_line_and_count_for_the_status() {
        // No watch: ONNX Runtime's lines are only logged.
        *BUILD.lock().unwrap_or_else(PoisonError::into_inner) = None;
        route(LogLevel::Verbose, "[TensorRT EP] unwatched");
        assert_eq!(latest_build_line(), None);
        // Watched (what watch_build does besides raising the environment's level).
        *BUILD.lock().unwrap_or_else(PoisonError::into_inner) = Some(BuildLine::default());
        assert_eq!(latest_build_line(), None, "nothing logged yet");
        route(LogLevel::Verbose, "  [TRT] Tactic: 0x0000 Time: 0.1 ms  ");
        route(
            LogLevel::Info,
            "TensorRT engine build for TRTKernel_graph_main_0 took: 81234 ms",
        );
        route(LogLevel::Verbose, "");
        assert_eq!(
            latest_build_line(),
            Some(BuildLine {
                text: "TensorRT engine build for TRTKernel_graph_main_0 took: 81234 ms".into(),
                count: 3,
            })
        );
        *BUILD.lock().unwrap_or_else(PoisonError::into_inner) = None;
        assert_eq!(latest_build_line(), None);
    }

    #[test]
    fn placement_lines_are_parsed_into_short_provider_names() {
        assert_eq!(
            parse_placement(" All nodes placed on [CPUExecutionProvider]. Number of nodes: 12"),
            Some(("cpu".into(), 12))
        );
        assert_eq!(
            parse_placement(" Node(s) placed on [TensorrtExecutionProvider]. Number of nodes: 3"),
            Some(("tensorrt".into(), 3))
        );
        assert_eq!(
            parse_placement("Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 41"),
            Some(("cuda".into(), 41))
        );
        assert_eq!(parse_placement("  Softmax (/blocks.0/attn/Softmax)"), None);
        assert_eq!(
            parse_placement("placed on [X]. Number of nodes: many"),
            None
        );
        let p = Placement(vec![
            ("tensorrt".into(), 3),
            ("cuda".into(), 41),
            ("cpu".into(), 2),
        ]);
        assert_eq!(p.describe(), "tensorrt 3, cuda 41, cpu 2");
        assert_eq!(p.nodes_on("cpu"), 2);
        assert_eq!(Placement::default().describe(), "unknown");
    }
}
