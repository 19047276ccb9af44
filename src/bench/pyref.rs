//! Runs `tools/python_daemon_reference.py` (a straightforward Python daemon doing the same job)
//! against the same broker and replay files, measured the same way as the daemon: CPU and peak
//! RSS from `/proc/<pid>`, window end → delivery from a subscriber. The script is driven over
//! stdin/stdout lines: it prints `ready` once every sensor has published, answers each `mark`
//! with a JSON line of what happened since the previous mark, switches to audio alone at full
//! speed on `max` (answering `max-ready`) and ends on `quit`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::e2e::{
    io_err, mib, utc_now_ns, DeliveryProbe, E2eOptions, PythonInputs, PythonReference, SETTLE,
};
use super::procfs;
use super::prom::Latency;
use super::stats::nearest_rank;
use super::BenchError;

/// Topic prefix of the reference daemon (`edgebind/<device>`).
const PREFIX: &str = "edgebind/pyref";
/// Longest wait for one line from the script (model loading, first 5 s IMU window).
const LINE_TIMEOUT: Duration = Duration::from_secs(180);

/// What the script reports at a `mark`.
#[derive(Debug, Deserialize)]
struct Mark {
    /// Windows published and acknowledged since the last mark.
    windows: u64,
    /// Seconds spent in inference since the last mark.
    inference_s: f64,
    /// Window end → PUBACK of each window acknowledged since the last mark, ms.
    #[serde(default)]
    puback_ms: Vec<f64>,
}

struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: crossbeam_channel::Receiver<String>,
}

impl Script {
    fn send(&mut self, line: &str) -> Result<(), BenchError> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| BenchError::Python(format!("writing {line:?} to the script: {e}")))
    }

    fn expect(&self, what: &str) -> Result<String, BenchError> {
        loop {
            let line = self.lines.recv_timeout(LINE_TIMEOUT).map_err(|_| {
                BenchError::Python(format!(
                    "no {what:?} from the script within {} s (its stderr is above)",
                    LINE_TIMEOUT.as_secs()
                ))
            })?;
            if let Some(rest) = line.strip_prefix(what) {
                return Ok(rest.trim().to_string());
            }
        }
    }

    fn mark(&mut self) -> Result<Mark, BenchError> {
        self.send("mark")?;
        let json = self.expect("mark")?;
        serde_json::from_str(&json)
            .map_err(|e| BenchError::Python(format!("unreadable mark {json:?}: {e}")))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.send("quit");
        let deadline = Instant::now() + Duration::from_secs(10);
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

fn reader_thread(stdout: ChildStdout) -> crossbeam_channel::Receiver<String> {
    let (tx, rx) = crossbeam_channel::bounded(64);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn latency_of(mut v: Vec<f64>) -> Option<Latency> {
    v.sort_by(f64::total_cmp);
    Some(Latency {
        count: v.len() as u64,
        p50_ms: nearest_rank(&v, 0.5)?,
        p99_ms: nearest_rank(&v, 0.99)?,
        mean_ms: v.iter().sum::<f64>() / v.len() as f64,
    })
}

/// Runs the reference through a real-time and a max-speed phase.
///
/// # Errors
/// [`BenchError::Python`] when the script cannot start or misbehaves.
pub fn run(
    python: &Path,
    script: &Path,
    o: &E2eOptions,
    inputs: &PythonInputs,
    broker_port: u16,
    ticks: f64,
) -> Result<PythonReference, BenchError> {
    let probe = DeliveryProbe::start(broker_port, PREFIX)?;
    let mut child = Command::new(python)
        .arg(script)
        .args(["--broker-port", &broker_port.to_string()])
        .args(["--prefix", PREFIX])
        .arg("--models")
        .arg(&o.models_dir)
        .arg("--imu")
        .arg(&inputs.imu)
        .arg("--audio")
        .arg(&inputs.audio)
        .arg("--thermal")
        .arg(&inputs.thermal)
        .args(["--thermal-fps", &inputs.thermal_fps.to_string()])
        .arg("--depth")
        .arg(&inputs.depth)
        .args(["--depth-fps", &inputs.depth_fps.to_string()])
        .args(["--intra-threads", &o.intra_threads.max(1).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| io_err(python, e))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(BenchError::Python("no pipes to the script".into()));
    };
    let mut s = Script {
        child,
        stdin,
        lines: reader_thread(stdout),
    };
    let pid = s.child.id();
    let proc = |what: &str| {
        procfs::sample(pid, ticks)
            .ok_or_else(|| BenchError::Python(format!("the script exited ({what})")))
    };
    s.expect("ready")?;
    std::thread::sleep(SETTLE);
    s.mark()?;
    let (p0, t0, utc0) = (proc("real time")?, Instant::now(), utc_now_ns());
    std::thread::sleep(o.duration);
    let m = s.mark()?;
    let (p1, measured_s, utc1) = (proc("real time")?, t0.elapsed().as_secs_f64(), utc_now_ns());
    let cpu_percent = (p1.cpu_s - p0.cpu_s) / measured_s * 100.0;
    let inference_cpu_percent = m.inference_s / measured_s * 100.0;
    let _ = m.windows;

    s.send("max")?;
    s.expect("max-ready")?;
    std::thread::sleep(SETTLE);
    s.mark()?;
    let (q0, t1) = (proc("max speed")?, Instant::now());
    std::thread::sleep(o.max_speed_duration);
    let mm = s.mark()?;
    let (q1, max_s) = (proc("max speed")?, t1.elapsed().as_secs_f64());
    Ok(PythonReference {
        measured_s,
        cpu_percent,
        inference_cpu_percent,
        cpu_beyond_inference_percent: cpu_percent - inference_cpu_percent,
        peak_rss_mib: mib(q1.peak_rss_bytes.max(p1.peak_rss_bytes)),
        end_to_delivery_excluding_inference: probe.between(utc0, utc1),
        end_to_puback: latency_of(m.puback_ms),
        max_speed_windows_per_s: Some(mm.windows as f64 / max_s),
        max_speed_cpu_percent: Some((q1.cpu_s - q0.cpu_s) / max_s * 100.0),
    })
}
