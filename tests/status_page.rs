//! The status page in a real headless Chromium (Debian `chromium`, installed by
//! tools/setup_browser.sh): the daemon on the demo configuration shows every sensor and its
//! labels; hostile labels are shown as text, never run. A screenshot of the demo is kept as
//! `target/status-page/demo.png`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{repo, spawn_daemon, LocalBroker};
use serde_json::Value;

/// The browser; the test fails (it does not skip) without it.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        for dir in ["/usr/bin", "/usr/local/bin", "/snap/bin"] {
            let p = Path::new(dir).join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("chromium is not installed: run tools/setup_browser.sh (tools/test.sh does)");
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=…`); its stdout.
/// Virtual time lets the page's first poll of /api/status finish before the dump.
fn run_chromium(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            // Root in CI: Chromium's sandbox needs user namespaces it may not have.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    // Read on a thread so that a hung browser is killed at the deadline.
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let status = common::wait_with_timeout(&mut child, Duration::from_secs(180));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromium did not finish within 180 s on {url}");
    }
    reader.join().unwrap()
}

fn get_json(port: u16, path: &str) -> Option<Value> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    );
    let mut response = agent
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .call()
        .ok()?;
    response.body_mut().read_json().ok()
}

/// The demo configuration as shipped, pointed at `broker`, with its outbox in `dir`, the
/// metrics listener on `metrics_port` and every replay looping (the demo's recordings end
/// after ~16 s; looping keeps the daemon up while the browser loads).
fn demo_config(dir: &Path, broker_port: u16, metrics_port: u16) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("config/demo.toml")).unwrap();
    let root = format!("\"{}/", repo().display());
    let text = text
        .replace(
            "\"../target/edgebind-demo-outbox\"",
            &format!("\"{}\"", dir.join("outbox").display()),
        )
        .replace("\"../", &root)
        .replace(
            "url = \"local\"",
            &format!("url = \"mqtt://127.0.0.1:{broker_port}\""),
        )
        .replace("speed = \"realtime\"", "speed = \"realtime\"\nloop = true");
    assert!(
        text.contains("loop = true") && !text.contains("\"local\""),
        "{text}"
    );
    let text = format!("{text}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    common::write_config(dir, &text)
}

/// The `<section>` of `sensor` in a dumped DOM.
fn section<'a>(dom: &'a str, sensor: &str) -> Option<&'a str> {
    let start = dom.find(&format!(
        "<section class=\"sensor\" data-sensor=\"{sensor}\">"
    ))?;
    let len = dom[start..].find("</section>")?;
    Some(&dom[start..start + len])
}

/// The texts of every `<span class="{class}">` in `html`.
fn spans(html: &str, class: &str) -> Vec<String> {
    let open = format!("<span class=\"{class}\">");
    html.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once("</span>").map(|(t, _)| t.to_string()))
        .collect()
}

/// Every label the daemon reported for `sensor` (its chart history and newest window).
fn labels_reported(status: &Value, sensor: &str) -> BTreeSet<String> {
    let s = status["sensors"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == sensor))
        .cloned()
        .unwrap_or_default();
    let points = s["history"].as_array().cloned().unwrap_or_default();
    points
        .iter()
        .chain(std::iter::once(&s["last"]))
        .flat_map(|p| p["labels"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| l["label"].as_str().map(str::to_string))
        .collect()
}

const DEMO_SENSORS: [&str; 5] = [
    "imu-wrist",
    "imu-table",
    "thermal-door",
    "depth-front",
    "camera-garden",
];

#[test]
fn the_demo_page_shows_every_sensor_with_its_labels_in_a_real_browser() {
    let browser = chromium();
    let broker = LocalBroker::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = edgebind::publish::broker::free_port().unwrap();
    let config = demo_config(dir.path(), broker.port(), metrics_port);
    let _daemon = spawn_daemon(&config, &dir.path().join("daemon.log"), &[]);

    // Every sensor has embedded a window with labels, and statistics have been reported.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = get_json(metrics_port, "/api/status");
        let ready = status.as_ref().is_some_and(|s| {
            s["stats_age_s"].is_number()
                && DEMO_SENSORS.iter().all(|name| {
                    s["sensors"].as_array().is_some_and(|a| {
                        a.iter().any(|x| {
                            x["name"] == *name
                                && x["last"]["labels"]
                                    .as_array()
                                    .is_some_and(|l| !l.is_empty())
                        })
                    })
                })
        });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo's sensors never all had labels: {status:?}\n{}",
            std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let url = format!("http://127.0.0.1:{metrics_port}/");
    let dom = run_chromium(&url, &["--dump-dom"]);
    let status = get_json(metrics_port, "/api/status").unwrap();
    assert!(dom.contains("<span id=\"device\">demo</span>"), "{dom}");
    assert!(dom.contains("imu: cpu"), "the providers are shown:\n{dom}");
    // The page's error line is empty: every poll it made was answered.
    let error = dom
        .split_once("<div id=\"error\"")
        .and_then(|(_, rest)| rest.split_once("</div>"))
        .map(|(div, _)| div.split_once('>').map_or("", |(_, text)| text));
    assert_eq!(error, Some(""), "{dom}");
    for name in DEMO_SENSORS {
        let card = section(&dom, name).unwrap_or_else(|| panic!("no card for {name}:\n{dom}"));
        assert_eq!(spans(card, "name"), vec![name.to_string()], "{card}");
        assert!(
            spans(card, "state connected").len() == 1,
            "{name} is not shown connected:\n{card}"
        );
        // The labels shown are labels the daemon reported for this very sensor.
        let shown = spans(card, "label");
        let reported = labels_reported(&status, name);
        assert!(!shown.is_empty(), "no label shown for {name}:\n{card}");
        for label in &shown {
            assert!(
                reported.contains(label),
                "{name}: {label:?} not in {reported:?}"
            );
        }
        assert!(
            card.contains("<polyline"),
            "no chart line for {name}:\n{card}"
        );
        assert!(card.contains("windows/s"), "{card}");
    }

    // The screenshot, kept for people to look at (CI artefact).
    let shots = repo().join("target/status-page");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("demo.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        &url,
        &[
            "--window-size=1280,900",
            &format!("--screenshot={}", png.display()),
        ],
    );
    let bytes = std::fs::read(&png).unwrap_or_default();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} is not a screenshot ({} bytes, browser {})",
        png.display(),
        bytes.len(),
        browser.display()
    );
}

/// A label crafted to break out of the page if it were inserted as HTML.
const HOSTILE: &str = "<img src=x onerror=\"document.title='pwned'\"></span><script>document.title='pwned'</script>&amp;";

#[test]
fn hostile_labels_and_trigger_names_are_shown_as_text_and_never_run() {
    use edgebind::concepts::Match;
    use edgebind::output::{EmbeddedWindow, EncoderInfo, Event, WindowLatency, WindowSpan};
    use edgebind::status::{router, serve, AppState, Limits, StatusBoard};
    use edgebind::telemetry::Telemetry;
    use edgebind::time::Timestamp;
    use edgebind::triggers::{Phase, TriggerKind, TriggerState};
    use edgebind::Modality;

    let telemetry = Arc::new(Telemetry::new(["cam"]));
    let sensors = [(Arc::from("cam"), Modality::Vision)];
    let mut board = StatusBoard::new("hostile", &sensors, Instant::now());
    let at = Timestamp {
        mono_ns: 1,
        utc_ns: 1_800_000_000_000_000_000,
    };
    let window = EmbeddedWindow {
        sensor: Arc::from("cam"),
        modality: Modality::Vision,
        window: WindowSpan {
            seq: 1,
            start: at,
            end: at,
            sample_count: 1,
            gaps: 0,
        },
        encoder: Arc::new(EncoderInfo {
            name: "tiny".into(),
            sha256: "00".into(),
            provider: "<b>cpu</b>".into(),
            ort_version: "1".into(),
        }),
        embedding: vec![1.0],
        norm: 1.0,
        reused_from_seq: None,
        input: None,
        labels: vec![Match {
            label: HOSTILE.to_string(),
            score: 0.5,
        }],
        latency: WindowLatency {
            preprocess_ms: 0.0,
            queue_ms: 0.0,
            inference_ms: 0.0,
        },
        window_end_age: Duration::ZERO,
        emitted_at: Instant::now(),
        stats: telemetry.stream("cam"),
    };
    board.apply(&Event::Embedded(Arc::new(window)), Instant::now());
    board.record_triggers(
        "cam",
        &[TriggerState {
            trigger: HOSTILE.to_string(),
            trigger_kind: TriggerKind::Concept,
            phase: Phase::Active,
            score: Some(0.9),
            unscored: None,
            seq: Some(1),
            event_id: Some("cam:x:1".into()),
            stuck_reason: None,
            on_threshold: 0.5,
            off_threshold: 0.4,
        }],
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let limits = Limits::default();
    let state = AppState {
        telemetry: Arc::clone(&telemetry),
        board: Arc::new(Mutex::new(board)),
    };
    let app = router(state, limits.max_body_bytes, limits.handler_timeout);
    let cancel = tokio_util::sync::CancellationToken::new();
    let task_cancel = cancel.clone();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        serve(listener, app, limits, telemetry, task_cancel).await;
    });

    let dom = run_chromium(&format!("http://127.0.0.1:{port}/"), &["--dump-dom"]);
    cancel.cancel();
    // Shown, escaped, as the label and as the trigger's name; nothing of it became markup.
    let escaped = "&lt;img src=x onerror=\"document.title='pwned'\"&gt;&lt;/span&gt;&lt;script&gt;document.title='pwned'&lt;/script&gt;&amp;amp;";
    assert_eq!(
        spans(section(&dom, "cam").unwrap_or_default(), "label"),
        vec![escaped.to_string()],
        "{dom}"
    );
    assert!(dom.contains(&format!("<td>{escaped}</td>")), "{dom}");
    assert!(dom.contains("&lt;b&gt;cpu&lt;/b&gt;"), "{dom}");
    assert!(!dom.contains("<img"), "{dom}");
    assert!(!dom.contains("pwned</title>"), "{dom}");
    assert!(dom.contains("<title>edgebind status</title>"), "{dom}");
    assert_eq!(
        dom.matches("<script>").count(),
        1,
        "only the page's own script:\n{dom}"
    );
}
