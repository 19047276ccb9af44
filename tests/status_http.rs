//! The metrics listener's HTTP stack (src/status/): its routes and its limits, against the real
//! server on a loopback socket with plain TCP clients. No assertion on durations: every wait is
//! for a condition, with a generous deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgebind::status::{router, serve, AppState, Limits, StatusBoard};
use edgebind::telemetry::{ErrorKind, Telemetry};
use edgebind::Modality;
use tokio_util::sync::CancellationToken;

/// A running listener; stopped when dropped.
struct Server {
    port: u16,
    telemetry: Arc<Telemetry>,
    cancel: CancellationToken,
    _runtime: tokio::runtime::Runtime,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn start(limits: Limits) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let telemetry = Arc::new(Telemetry::new(["imu"]));
    let sensors = [(Arc::from("imu"), Modality::Imu)];
    let board = Arc::new(Mutex::new(StatusBoard::new(
        "web",
        &sensors,
        Instant::now(),
    )));
    let state = AppState {
        telemetry: Arc::clone(&telemetry),
        board,
    };
    let app = router(state, limits.max_body_bytes, limits.handler_timeout);
    let cancel = CancellationToken::new();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    let task_telemetry = Arc::clone(&telemetry);
    let task_cancel = cancel.clone();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        serve(listener, app, limits, task_telemetry, task_cancel).await;
    });
    Server {
        port,
        telemetry,
        cancel,
        _runtime: runtime,
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Generous: only a broken server takes this long.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Sends `request` as it is and reads the whole answer (the server closes after one).
fn exchange(port: u16, request: &[u8]) -> String {
    let mut s = connect(port);
    s.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(port: u16, path: &str) -> String {
    exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split_once("\r\n\r\n")?.0;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Waits until `cond` holds, up to a minute.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_is_prometheus_text_as_before_and_a_client_reading_to_the_end_gets_it() {
    let server = start(Limits::default());
    server.telemetry.stream("imu").add_window(0);
    // The request the old scrapers send: HTTP/1.1 without `Connection: close`, then read to
    // the end. The answer must end (one request per connection).
    let answer = get(server.port, "/metrics");
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    assert_eq!(
        header(&answer, "content-type"),
        Some(edgebind::telemetry::metrics::CONTENT_TYPE)
    );
    assert_eq!(header(&answer, "connection"), Some("close"));
    let text = body(&answer);
    assert_eq!(
        header(&answer, "content-length"),
        Some(text.len().to_string().as_str())
    );
    assert!(
        text.contains("edgebind_windows_total{sensor=\"imu\"} 1\n"),
        "{text}"
    );
    assert!(text.ends_with('\n'), "{text}");
    // Exactly what the telemetry renders, but for the uptime, which moved on.
    let without_uptime = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("edgebind_uptime_seconds "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_uptime(text),
        without_uptime(&server.telemetry.render_prometheus())
    );
}

#[test]
fn the_page_and_the_status_json_are_served_and_anything_else_is_refused_plainly() {
    let server = start(Limits::default());
    let page = get(server.port, "/");
    assert_eq!(status_line(&page), "HTTP/1.1 200 OK");
    assert_eq!(
        header(&page, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let policy = header(&page, "content-security-policy").unwrap_or("");
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(body(&page).contains("<title>edgebind status</title>"));

    let status = get(server.port, "/api/status");
    assert_eq!(status_line(&status), "HTTP/1.1 200 OK");
    assert_eq!(header(&status, "content-type"), Some("application/json"));
    assert_eq!(header(&status, "cache-control"), Some("no-store"));
    let doc: serde_json::Value = serde_json::from_str(body(&status)).unwrap();
    assert_eq!(doc["v"], 1);
    assert_eq!(doc["device"], "web");
    assert_eq!(doc["sensors"][0]["name"], "imu");
    assert_eq!(doc["sensors"][0]["state"], "starting");

    let missing = get(server.port, "/nothing/here");
    assert_eq!(status_line(&missing), "HTTP/1.1 404 Not Found");
    assert_eq!(body(&missing), "not found\n");
    let post = exchange(
        server.port,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status_line(&post), "HTTP/1.1 405 Method Not Allowed");
    let garbage = exchange(
        server.port,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    );
    assert!(
        status_line(&garbage).starts_with("HTTP/1.1 400"),
        "{garbage:?}"
    );
}

#[test]
fn an_oversized_request_head_gets_431_and_other_clients_are_served() {
    let server = start(Limits::default());
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let mut s = connect(server.port);
    // The server may close before it has read all of it: a write error is fine.
    let _ = s.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(
        status_line(&get(server.port, "/metrics")),
        "HTTP/1.1 200 OK"
    );
    wait_until("the refusal is counted", || {
        server.telemetry.errors.get(ErrorKind::HttpRefused) == 1
    });
}

#[test]
fn a_body_over_the_limit_gets_413() {
    let server = start(Limits::default());
    let body = "x".repeat(4096);
    let answer = exchange(
        server.port,
        format!(
            "GET /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(status_line(&answer), "HTTP/1.1 413 Payload Too Large");
}

#[test]
fn a_slow_client_is_cut_while_other_clients_are_served() {
    let server = start(Limits {
        head_timeout: Duration::from_millis(500),
        ..Limits::default()
    });
    // Half a request head, and then nothing.
    let mut slow = connect(server.port);
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Others are served while it dawdles.
    for _ in 0..3 {
        assert_eq!(
            status_line(&get(server.port, "/api/status")),
            "HTTP/1.1 200 OK"
        );
    }
    // Then the server closes it: the read ends (with an answer or none), never a response 200.
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("200 OK"), "{answer}");
    wait_until("the cut is counted", || {
        server.telemetry.errors.get(ErrorKind::HttpRefused) >= 1
    });
}

#[test]
fn a_connection_is_cut_at_its_time_limit_whatever_it_does() {
    let server = start(Limits {
        head_timeout: Duration::from_secs(600),
        connection_timeout: Duration::from_millis(500),
        ..Limits::default()
    });
    // The head timeout is out of reach here: only the connection's own limit can end it.
    let mut slow = connect(server.port);
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    wait_until("the cut is counted", || {
        server.telemetry.errors.get(ErrorKind::HttpRefused) == 1
    });
    assert_eq!(
        status_line(&get(server.port, "/metrics")),
        "HTTP/1.1 200 OK"
    );
}

#[test]
fn a_client_over_the_connection_limit_gets_503_and_a_freed_slot_serves_again() {
    let server = start(Limits {
        max_connections: 1,
        // Long enough that only the test frees the slot.
        head_timeout: Duration::from_secs(600),
        connection_timeout: Duration::from_secs(600),
        ..Limits::default()
    });
    let mut holder = connect(server.port);
    holder.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    // Once the holder's connection is accepted, a second one is refused at once.
    wait_until("a second client is refused with 503", || {
        let mut s = connect(server.port);
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        status_line(&answer) == "HTTP/1.1 503 Service Unavailable"
    });
    assert!(server.telemetry.errors.get(ErrorKind::HttpRefused) >= 1);
    // The holder finishes its request and is served; its slot is then free for the next.
    holder.write_all(b"Host: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = holder.read_to_string(&mut answer);
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    wait_until("the freed slot serves a new client", || {
        status_line(&get(server.port, "/metrics")) == "HTTP/1.1 200 OK"
    });
}
