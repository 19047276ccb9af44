//! The daemon under test as a child process: started with a phase's configuration, scraped,
//! watched, and stopped with SIGTERM (then killed) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::super::procfs::{self, ProcSample};
use super::super::prom::{self, Scrape};
use super::super::BenchError;
use super::{io_err, START_TIMEOUT};
use crate::telemetry::metrics::STAGE_LATENCY;
use crate::telemetry::Stage;

/// The daemon as a child process, stopped with SIGTERM (then killed) when dropped.
#[derive(Debug)]
pub(super) struct Daemon {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Daemon {
    pub(super) fn start(
        exe: &Path,
        config: &Path,
        log: PathBuf,
        metrics_port: u16,
    ) -> Result<Self, BenchError> {
        let log_file = std::fs::File::create(&log).map_err(|e| io_err(&log, e))?;
        let child = Command::new(exe)
            .args(["--log", "warn", "run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| io_err(exe, e))?;
        Ok(Self {
            child,
            log,
            metrics: format!("127.0.0.1:{metrics_port}"),
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    pub(super) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "the daemon exited ({status}) before the measurement ended:\n{}",
                self.log_tail()
            )),
            _ => None,
        }
    }

    pub(super) fn scrape(&mut self) -> Result<Scrape, BenchError> {
        match prom::fetch(&self.metrics, Duration::from_secs(5)) {
            Ok(body) => Ok(Scrape::parse(&body)),
            Err(e) => {
                Err(BenchError::Daemon(self.exited().unwrap_or_else(|| {
                    format!("metrics endpoint {}: {e}", self.metrics)
                })))
            }
        }
    }

    /// Waits until every sensor's end-to-end histogram has a window.
    pub(super) fn wait_for_windows(&mut self, sensors: &[&str]) -> Result<(), BenchError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(e) = self.exited() {
                return Err(BenchError::Daemon(e));
            }
            if let Ok(body) = prom::fetch(&self.metrics, Duration::from_secs(2)) {
                let s = Scrape::parse(&body);
                let ready = sensors.iter().all(|name| {
                    s.sum(
                        &format!("{}_count", STAGE_LATENCY.name),
                        &[("sensor", name), ("stage", Stage::EndToEnd.as_str())],
                    ) >= 1.0
                });
                if ready {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(BenchError::Daemon(format!(
                    "no embedding from every sensor within {} s:\n{}",
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(super) fn proc(&self, ticks: f64) -> Result<ProcSample, BenchError> {
        procfs::sample(self.pid(), ticks)
            .ok_or_else(|| BenchError::Daemon(format!("/proc/{} is gone", self.pid())))
    }

    /// SIGTERM, then up to 15 s for the ordered shutdown, then SIGKILL.
    pub(super) fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
