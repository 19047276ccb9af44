//! edgebind beside a straightforward Python daemon doing the same job
//! (`tools/python_daemon_reference.py`: numpy ImageBind-style transforms, onnxruntime,
//! paho-mqtt, a thread per sensor), measured the same way: the daemon's end-to-end bench
//! (`edgebind::bench::e2e`, as `edgebind bench --e2e`), then the script on the same replay files
//! against its own mosquitto — CPU and peak RSS from `/proc/<pid>`, window end → delivery from
//! a subscriber. The script is driven over stdin/stdout lines: it prints `ready` once every
//! sensor has published, answers each `mark` with a JSON line of what happened since the
//! previous mark, switches to audio alone at full speed on `max` (answering `max-ready`) and
//! ends on `quit`. It lives here, not in the daemon.
//!
//! ```sh
//! python3 -m venv V && V/bin/pip install numpy onnxruntime paho-mqtt
//! cargo bench --bench python_reference -- --python V/bin/python [--duration 30s] \
//!     [--max-speed-duration 10s] [--json FILE]
//! ```
//! Without `--python` (e.g. under `cargo test --all-targets`) it says so and measures nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use edgebind::bench::e2e::{self, mib, utc_now_ns, DeliveryProbe, E2eOptions, Replays, TempDir};
use edgebind::bench::prom::Latency;
use edgebind::bench::{find_models, parse_duration, procfs, stats::nearest_rank};
use edgebind::config::ExecutionProviderKind;
use edgebind::inference::OrtRuntime;
use edgebind::publish::LocalBroker;
use serde::{Deserialize, Serialize};

/// Topic prefix of the reference daemon (`edgebind/<device>`).
const PREFIX: &str = "edgebind/pyref";
/// Longest wait for one line from the script (model loading, first 5 s IMU window).
const LINE_TIMEOUT: Duration = Duration::from_secs(180);

struct Args {
    python: Option<PathBuf>,
    duration: Duration,
    max_speed_duration: Duration,
    json: Option<PathBuf>,
}

fn parse() -> Args {
    let mut a = Args {
        python: std::env::var_os("EDGEBIND_BENCH_PYTHON").map(PathBuf::from),
        duration: Duration::from_secs(30),
        max_speed_duration: Duration::from_secs(10),
        json: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--python" => a.python = Some(PathBuf::from(value())),
            "--duration" => a.duration = parse_duration(&value()).unwrap(),
            "--max-speed-duration" => a.max_speed_duration = parse_duration(&value()).unwrap(),
            "--json" => a.json = Some(PathBuf::from(value())),
            _ => {} // `--bench` from cargo
        }
    }
    a
}

/// The reference daemon's figures.
#[derive(Debug, Clone, Serialize)]
struct PythonReference {
    /// Seconds measured.
    measured_s: f64,
    /// Its CPU, percent of one core (from /proc, as for the daemon).
    cpu_percent: f64,
    /// Inference share, percent of one core (its own sum of inference thread time).
    inference_cpu_percent: f64,
    /// `cpu_percent − inference_cpu_percent`.
    cpu_beyond_inference_percent: f64,
    /// Peak RSS, MiB.
    peak_rss_mib: f64,
    /// Window end → subscriber, minus inference, per window.
    end_to_delivery_excluding_inference: Option<Latency>,
    /// Its own window end → PUBACK latency (paho's on_publish).
    end_to_puback: Option<Latency>,
    /// Audio alone as fast as it goes, windows per second.
    max_speed_windows_per_s: f64,
    /// Its CPU in the max-speed run, percent of one core.
    max_speed_cpu_percent: f64,
}

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
    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("writing {line:?} to the script: {e}"));
    }

    fn expect(&self, what: &str) -> String {
        loop {
            let line = self.lines.recv_timeout(LINE_TIMEOUT).unwrap_or_else(|_| {
                panic!("no {what:?} from the script within {LINE_TIMEOUT:?} (its stderr is above)")
            });
            if let Some(rest) = line.strip_prefix(what) {
                return rest.trim().to_string();
            }
        }
    }

    fn mark(&mut self) -> Mark {
        self.send("mark");
        let json = self.expect("mark");
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("unreadable mark {json:?}: {e}"))
    }

    fn sample(&self, ticks: f64) -> procfs::ProcSample {
        procfs::sample(self.child.id(), ticks).expect("the script is running")
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if writeln!(self.stdin, "quit").is_ok() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.child.kill().ok();
        self.child.wait().ok();
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

fn spawn(python: &Path, o: &E2eOptions, r: &Replays, broker_port: u16) -> Script {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/python_daemon_reference.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(["--broker-port", &broker_port.to_string()])
        .args(["--prefix", PREFIX])
        .arg("--models")
        .arg(&o.models_dir)
        .arg("--imu")
        .arg(&r.imu)
        .arg("--audio")
        .arg(&r.audio)
        .arg("--thermal")
        .arg(&r.thermal)
        .args(["--thermal-fps", &e2e::THERMAL_FPS.to_string()])
        .arg("--depth")
        .arg(&r.depth)
        .args(["--depth-fps", &e2e::DEPTH_FPS.to_string()])
        .args(["--intra-threads", &o.intra_threads.max(1).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    Script {
        child,
        stdin,
        lines: reader_thread(stdout),
    }
}

/// The reference through a real-time and a max-speed phase.
fn python_reference(python: &Path, o: &E2eOptions) -> PythonReference {
    let dir = TempDir::new().unwrap();
    let recordings = edgebind::bench::inputs::find_recordings(o.recordings.as_deref()).unwrap();
    let replays = e2e::materialize(&dir.0, recordings.as_deref()).unwrap();
    let broker = LocalBroker::start(&[]).expect("mosquitto");
    let ticks = procfs::clock_ticks_per_s();
    let probe = DeliveryProbe::start(broker.port(), PREFIX).unwrap();
    let mut s = spawn(python, o, &replays, broker.port());
    s.expect("ready");
    std::thread::sleep(e2e::SETTLE);
    s.mark();
    let (p0, t0, utc0) = (s.sample(ticks), Instant::now(), utc_now_ns());
    std::thread::sleep(o.duration);
    let m = s.mark();
    let (p1, measured_s, utc1) = (s.sample(ticks), t0.elapsed().as_secs_f64(), utc_now_ns());
    let cpu_percent = (p1.cpu_s - p0.cpu_s) / measured_s * 100.0;
    let inference_cpu_percent = m.inference_s / measured_s * 100.0;
    println!(
        "python real time: {} windows in {measured_s:.1} s",
        m.windows
    );

    s.send("max");
    s.expect("max-ready");
    std::thread::sleep(e2e::SETTLE);
    s.mark();
    let (q0, t1) = (s.sample(ticks), Instant::now());
    std::thread::sleep(o.max_speed_duration);
    let mm = s.mark();
    let (q1, max_s) = (s.sample(ticks), t1.elapsed().as_secs_f64());
    PythonReference {
        measured_s,
        cpu_percent,
        inference_cpu_percent,
        cpu_beyond_inference_percent: cpu_percent - inference_cpu_percent,
        peak_rss_mib: mib(q1.peak_rss_bytes.max(p1.peak_rss_bytes)),
        end_to_delivery_excluding_inference: probe.between(utc0, utc1),
        end_to_puback: latency_of(m.puback_ms),
        max_speed_windows_per_s: mm.windows as f64 / max_s,
        max_speed_cpu_percent: (q1.cpu_s - q0.cpu_s) / max_s * 100.0,
    }
}

fn p99(l: Option<&Latency>) -> String {
    l.map_or_else(
        || "-".into(),
        |l| format!("{:.2} / {:.2}", l.p50_ms, l.p99_ms),
    )
}

fn main() {
    let args = parse();
    let Some(python) = args.python else {
        println!(
            "python_reference: no interpreter given (--python V/bin/python or EDGEBIND_BENCH_PYTHON); nothing measured"
        );
        return;
    };
    let runtime = OrtRuntime::load(None).expect("ONNX Runtime (tools/setup.sh)");
    let o = E2eOptions {
        daemon: PathBuf::from(env!("CARGO_BIN_EXE_edgebind")),
        ort_library: runtime.library.clone(),
        models_dir: std::fs::canonicalize(find_models(None)).unwrap(),
        providers: vec![ExecutionProviderKind::Cpu],
        intra_threads: 1,
        duration: args.duration,
        max_speed_duration: args.max_speed_duration,
        recordings: None,
    };
    eprintln!(
        "edgebind end to end ({:?} + {:?})",
        o.duration, o.max_speed_duration
    );
    let ours = e2e::run(&o, &mut |p| eprintln!("  {p}")).unwrap();
    eprintln!("python reference");
    let py = python_reference(&python, &o);
    let rt = &ours.realtime;
    println!("| | edgebind | python reference |");
    println!("|---|---|---|");
    println!(
        "| CPU, % of one core | {:.2} | {:.2} |",
        rt.daemon_cpu_percent, py.cpu_percent
    );
    println!(
        "| CPU beyond inference, % | {:.2} | {:.2} |",
        rt.cpu_beyond_inference_percent, py.cpu_beyond_inference_percent
    );
    println!(
        "| peak RSS, MiB | {:.1} | {:.1} |",
        rt.peak_rss_mib, py.peak_rss_mib
    );
    println!(
        "| window end → subscriber minus inference, p50 / p99 ms | {} | {} |",
        p99(rt.end_to_delivery_excluding_inference.as_ref()),
        p99(py.end_to_delivery_excluding_inference.as_ref())
    );
    println!(
        "| audio alone at max speed, windows/s (CPU %) | {:.0} ({:.0}) | {:.0} ({:.0}) |",
        ours.max_speed.windows_per_s,
        ours.max_speed.daemon_cpu_percent,
        py.max_speed_windows_per_s,
        py.max_speed_cpu_percent
    );
    if let Some(path) = args.json {
        let json = serde_json::json!({ "edgebind": ours, "python_reference": py });
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    }
}
