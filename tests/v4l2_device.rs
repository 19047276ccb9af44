//! The real `v4l` error paths (feature `v4l2`): no camera can exist on CI machines, so what is
//! tested against the kernel is what happens when the configured node is not a camera.
#![cfg(feature = "v4l2")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgebind::config::WhenFull;
use edgebind::pipeline::bounded;
use edgebind::sources::thermal_decode::FrameLayout;
use edgebind::sources::v4l2_thermal::capture::{
    run_capture, CaptureSettings, DeviceError, ThermalBuffers,
};
use edgebind::sources::v4l2_thermal::device::V4l2Camera;
use edgebind::sources::v4l2_thermal::negotiate::{self, FormatRequest};
use edgebind::sources::v4l2_thermal::DeviceSelector;
use edgebind::sources::{SourceContext, SourceMessage};
use edgebind::telemetry::{DropReason, StreamStats};
use edgebind::time::Clock;
use tokio_util::sync::CancellationToken;

fn request() -> FormatRequest {
    FormatRequest {
        pixel_format: None,
        layout: FrameLayout::Lepton { telemetry_rows: 2 },
        size_px: None,
    }
}

fn open(device: &str) -> DeviceError {
    match V4l2Camera::open(&DeviceSelector::parse(device), |offered| {
        negotiate::choose(offered, &request())
    }) {
        Ok(camera) => panic!("{device} opened as a camera: {camera:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_device_node_that_does_not_exist_is_not_found_by_name() {
    let e = open("/dev/video-edgebind-missing");
    assert!(matches!(e, DeviceError::NotFound { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "/dev/video-edgebind-missing: no such device node (is the camera plugged in?)"
    );
}

#[test]
fn dev_null_is_not_a_v4l2_device() {
    let e = open("/dev/null");
    assert!(matches!(e, DeviceError::NotV4l2 { .. }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.starts_with("/dev/null: not a V4L2 device: "),
        "{message}"
    );
    // VIDIOC_QUERYCAP on a character device that is not V4L2.
    assert!(message.contains("os error 25"), "{message}");
}

#[test]
fn a_regular_file_is_not_a_v4l2_device() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), vec![0u8; 4096]).unwrap();
    let e = open(file.path().to_str().unwrap());
    assert!(matches!(e, DeviceError::NotV4l2 { .. }), "{e:?}");
    assert!(e.to_string().contains(file.path().to_str().unwrap()));
}

#[test]
fn a_directory_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path().to_str().unwrap());
    assert!(matches!(e, DeviceError::Open { .. }), "{e:?}");
    assert!(e.to_string().contains("cannot open"), "{e}");
}

#[test]
fn a_card_name_no_camera_has_is_not_found() {
    let e = open("card:edgebind-no-such-camera");
    assert!(matches!(e, DeviceError::NotFound { .. }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.starts_with("card:edgebind-no-such-camera: no "),
        "{message}"
    );
}

#[test]
fn the_capture_loop_waits_for_a_missing_camera_and_stops_when_told() {
    let stats = Arc::new(StreamStats::default());
    let (tx, rx) = bounded::<SourceMessage>(
        4,
        WhenFull::DropOldest,
        DropReason::SampleQueueFull,
        Arc::clone(&stats),
    );
    let cancel = CancellationToken::new();
    let ctx = SourceContext {
        name: "thermal".into(),
        clock: Clock::new(),
        cancel: cancel.clone(),
        stats: Arc::clone(&stats),
        out: tx,
        others: Vec::new(),
    };
    // The time of every open attempt. Backoff from 100 ms doubling to a 30 s cap: attempts at
    // 0, 0.1, 0.3, 0.7, 1.5, 3.1 s, then a 3.2 s wait. Only lower bounds on time and counts
    // are asserted, which a loaded machine cannot break.
    let attempts: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let started = Instant::now();
    let thread = {
        let attempts = Arc::clone(&attempts);
        std::thread::spawn(move || {
            let selector = DeviceSelector::parse("/dev/null");
            let settings = CaptureSettings {
                decoder: ThermalBuffers(FrameLayout::Plain),
                nominal_fps: 9.0,
                max_backoff: Duration::from_secs(30),
                interval_ms: 0,
                stall_timeout: Duration::from_secs(5),
            };
            run_capture(
                || {
                    attempts.lock().unwrap().push(Instant::now());
                    V4l2Camera::open(&selector, |offered| negotiate::choose(offered, &request()))
                },
                &settings,
                &ctx,
            );
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while attempts.lock().unwrap().len() < 6 {
        assert!(Instant::now() < deadline, "{:?}", attempts.lock().unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!stats.snapshot().connected);
    // Retried with a growing backoff, not in a tight loop: 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s.
    let sixth = attempts.lock().unwrap()[5];
    assert!(
        sixth - started >= Duration::from_millis(3100),
        "6 attempts within {:?}",
        sixth - started
    );
    // Cancelled during the 3.2 s wait: it stops at once, without waiting it out or trying again.
    cancel.cancel();
    thread.join().unwrap();
    let stopped = Instant::now();
    assert_eq!(attempts.lock().unwrap().len(), 6);
    assert!(
        stopped < sixth + Duration::from_millis(3200),
        "stopped {:?} after the last attempt",
        stopped - sixth
    );
    assert!(rx.is_empty());
}
