//! TLS and authentication against a real mosquitto with certificates made by the test (openssl
//! CLI): the daemon connects with the CA file, refuses a broker it cannot verify, and reports a
//! refused password clearly while backing off. Also the Prometheus endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (tools/setup.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=edgebind test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

fn still(device: &str, url: &str, dir: &Path, mqtt_extra: &str) -> std::path::PathBuf {
    let base = base_config(device, 1).replace(
        "url = \"mqtt://127.0.0.1:1\"",
        &format!("url = \"{url}\"\n{mqtt_extra}"),
    );
    write_config(
        dir,
        &format!(
            "{base}\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nspeed = \"max\"\n",
            fixture("recordings/imu_still_200hz.csv").display()
        ),
    )
}

struct TlsBroker {
    broker: LocalBroker,
    tls_port: u16,
    dir: tempfile::TempDir,
}

fn tls_broker(extra: &[&str]) -> TlsBroker {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let tls_port = edgebind::publish::broker::free_port().unwrap();
    let d = dir.path().display().to_string();
    let mut lines = vec![
        format!("listener {tls_port} 127.0.0.1"),
        format!("cafile {d}/ca.pem"),
        format!("certfile {d}/server.pem"),
        format!("keyfile {d}/server.key"),
    ];
    lines.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    TlsBroker {
        broker: LocalBroker::start(&refs).unwrap(),
        tls_port,
        dir,
    }
}

#[test]
fn mqtts_connects_with_the_ca_file_and_refuses_without_it() {
    let b = tls_broker(&[]);
    let sub = Subscriber::start(b.broker.port(), "edgebind/tls/#");
    let work = tempfile::tempdir().unwrap();
    let ca = b.dir.path().join("ca.pem");
    let url = format!("mqtts://localhost:{}", b.tls_port);
    let cfg = still(
        "tls",
        &url,
        work.path(),
        &format!("tls = {{ ca_file = \"{}\" }}", ca.display()),
    );
    let out = run(edgebind().arg("run").arg("--config").arg(&cfg));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        sub.wait_for(Duration::from_secs(5), |m| m
            .iter()
            .filter(|s| s.topic.ends_with("/embedding"))
            .count()
            == 3),
        "{stderr}"
    );

    // The system roots do not know the test CA: the connection is refused, nothing is sent.
    let work = tempfile::tempdir().unwrap();
    let sub = Subscriber::start(b.broker.port(), "edgebind/notls/#");
    let cfg = still("notls", &url, work.path(), "");
    let out = run(edgebind()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .args(["--shutdown-timeout-s", "2"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("UnknownIssuer") || stderr.contains("certificate"),
        "{stderr}"
    );
    assert!(stderr.contains("stay in the outbox"), "{stderr}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(sub.on("/embedding").is_empty());
}

#[test]
fn a_wrong_password_is_a_clear_error_with_backoff_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    let out = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&pw)
        .args(["edge", "right-password"])
        .output()
        .expect("mosquitto_passwd");
    assert!(out.status.success());
    let broker = LocalBroker::start(&[&format!("password_file {}", pw.display())]).unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "wrong-password\n").unwrap();
    let cfg = still(
        "auth",
        &broker.url(),
        dir.path(),
        &format!(
            "username = \"edge\"\npassword_file = \"{}\"",
            secret.display()
        ),
    );
    let out = run(edgebind()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .args(["--shutdown-timeout-s", "3"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("refused the connection"), "{stderr}");
    assert_eq!(
        stderr.matches("refused the connection").count(),
        1,
        "one clear line, not a flood: {stderr}"
    );
    assert!(
        !stderr.contains("wrong-password"),
        "the password leaked into the log"
    );

    // The right password works.
    std::fs::write(&secret, "right-password\n").unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/auth/#");
    let out = run(edgebind().arg("run").arg("--config").arg(&cfg));
    assert!(out.status.success());
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .filter(|s| s.topic.ends_with("/embedding"))
        .count()
        >= 3));
}

#[test]
fn metrics_are_served_in_prometheus_text_format() {
    let broker = LocalBroker::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = edgebind::publish::broker::free_port().unwrap();
    let config = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nloop = true\nhop_ms = 100\n",
        base_config("metrics", broker.port()),
        fixture("recordings/imu_demo_200hz.csv").display()
    );
    let path = write_config(dir.path(), &config);
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&path, &log, &[]);
    assert!(wait_for_log(
        &log,
        "serving Prometheus metrics",
        Duration::from_secs(20)
    ));
    // Scraped until an acknowledged embedding shows in the end-to-end latency histogram.
    let e2e_count = "edgebind_stage_latency_seconds_count{sensor=\"imu\",stage=\"end_to_end\"} ";
    let mut body = String::new();
    for _ in 0..200 {
        body.clear();
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s.read_to_string(&mut body).unwrap();
            let acked = body
                .lines()
                .find_map(|l| l.strip_prefix(e2e_count))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if acked > 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&child);
    let _ = wait_with_timeout(&mut child, Duration::from_secs(20));
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for name in [
        "edgebind_samples_total{sensor=\"imu\"}",
        "edgebind_drops_total{sensor=\"imu\",reason=\"outbox_full\"}",
        "edgebind_broker_connected",
        "edgebind_outbox_bytes",
        "edgebind_outbox_messages",
        "edgebind_broker_reconnects_total",
        "edgebind_stage_latency_seconds_bucket{sensor=\"imu\",stage=\"preprocess\",le=\"+Inf\"}",
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
    // Every stage of an acknowledged window was measured.
    for stage in ["preprocess", "queue", "inference", "publish", "end_to_end"] {
        let prefix =
            format!("edgebind_stage_latency_seconds_count{{sensor=\"imu\",stage=\"{stage}\"}} ");
        let n: u64 = body
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "no {stage} latency recorded:\n{body}");
    }
}
