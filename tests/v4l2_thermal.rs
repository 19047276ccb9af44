//! The `v4l2_thermal` source from the config side: it validates without the camera (and without
//! the `v4l2` feature), every problem is reported with its path, the preprocessing reads each
//! camera's temperature encoding, and frames are sampled once per interval.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use edgebind::config::{self, Config, SourceConfig};
use edgebind::pipeline::processor::{Processor, StreamCx, StreamLogs};
use edgebind::sources::kind::BuildContext;
use edgebind::sources::{Frame, FrameImage, SourceMessage};
use edgebind::telemetry::{DropReason, StreamStats};
use edgebind::time::Clock;

fn config_with(source: &str) -> Config {
    let text = format!(
        "{}[[sources]]\ntype = \"v4l2_thermal\"\nname = \"thermal\"\n{source}",
        base_config("dev", 1883)
    );
    Config::parse(&text, Path::new("x.toml")).unwrap()
}

fn problems(source: &str) -> Vec<String> {
    let text = format!(
        "{}[[sources]]\ntype = \"v4l2_thermal\"\nname = \"thermal\"\n{source}",
        base_config("dev", 1883)
    );
    config::problems_in(&text)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The processor of the configuration's source.
fn processor(c: &Config) -> Box<dyn Processor> {
    c.sources[0].kind().processors().unwrap().remove(0)
}

#[test]
fn cameras_validate_without_the_device() {
    for source in [
        "device = \"/dev/video0\"\n",
        "device = \"/dev/v4l/by-id/usb-GroupGets_PureThermal-video-index0\"\npixel_format = \"Y16 \"\n\
         layout = \"lepton\"\ntelemetry_rows = 2\nwidth_px = 160\nheight_px = 122\n\
         [sources.preprocess]\nagc = \"fixed_celsius\"\nagc_min_c = 10.0\nagc_max_c = 40.0\n",
        "device = \"card:PureThermal\"\npixel_format = \"UYVY\"\ninterval_ms = 0\n",
        "device = \"card:P2 Pro\"\npixel_format = \"YUYV\"\nlayout = \"infiray_split\"\n\
         width_px = 256\nheight_px = 384\nwhen_full = \"block\"\nreconnect_max_backoff_ms = 1000\n\
         [sources.preprocess]\nagc = \"fixed_celsius\"\nagc_min_c = 0.0\nagc_max_c = 50.0\n\
         radiometric = \"infiray64\"\n",
        "device = \"/dev/video2\"\npixel_format = \"GREY\"\nlayout = \"plain\"\n",
    ] {
        let p = problems(source);
        assert!(p.is_empty(), "{source}: {p:?}");
    }
    let c = config_with("device = \"/dev/video0\"\n");
    let SourceConfig::V4l2Thermal(v) = &c.sources[0] else {
        panic!("not a camera")
    };
    // Defaults: the latest frame wins, one frame per second.
    let queue = c.sources[0].kind().common().queue;
    assert_eq!(
        (queue.capacity.get().get(), queue.when_full),
        (4, config::WhenFull::DropOldest)
    );
    assert_eq!(v.cut.interval_ms.get(), 1000);
    assert_eq!(c.sources[0].modality(), edgebind::Modality::Thermal);
}

#[test]
fn unknown_pixel_formats_are_rejected_when_parsing() {
    let text = format!(
        "{}[[sources]]\ntype = \"v4l2_thermal\"\nname = \"t\"\ndevice = \"/dev/video0\"\npixel_format = \"MJPG\"\n",
        base_config("dev", 1883)
    );
    let e = Config::parse(&text, Path::new("x.toml")).unwrap_err();
    assert!(e.to_string().contains("MJPG"), "{e}");
}

#[test]
fn every_camera_problem_is_reported_with_its_path() {
    let p = problems(
        "device = \"video0\"\npixel_format = \"UYVY\"\nlayout = \"infiray_split\"\n\
         telemetry_rows = 2\nwidth_px = 256\nheight_px = 385\nqueue_capacity = 0\n\
         reconnect_max_backoff_ms = 10\n",
    );
    assert_eq!(
        p,
        vec![
            "sources[0].device: \"video0\" must be a device path such as /dev/video0, or card:<name>",
            "sources[0].pixel_format: layout \"infiray_split\" is a \"YUYV\" mode",
            "sources[0].telemetry_rows: only applies to layout = \"lepton\"",
            "sources[0].height_px: a split frame has an even height",
            "sources[0].queue_capacity: 0 frames is less than the 1 frame allowed: a waiting frame holds its pixels (600 KiB at 640x480 16-bit); a camera's latest frame is the one worth embedding",
            "sources[0].reconnect_max_backoff_ms: 10 ms is less than the 100 ms allowed: retries start at 100 ms and double up to this; past an hour a returning device or broker would wait for nothing",
        ]
    );
    let p = problems("device = \"card:\"\nlayout = \"lepton\"\nwidth_px = 160\nheight_px = 121\n");
    assert_eq!(
        p,
        vec![
            "sources[0].device: card: needs a card name",
            "sources[0].height_px: a Lepton frame is width*3/4 rows, or width*3/4 + telemetry_rows (2)",
        ]
    );
    assert_eq!(
        problems("device = \"/dev/video0\"\nwidth_px = 160\n"),
        vec!["sources[0].width_px: width_px and height_px go together"]
    );
}

#[test]
fn the_temperature_encoding_must_be_the_cameras() {
    let fixed =
        "[sources.preprocess]\nagc = \"fixed_celsius\"\nagc_min_c = 0.0\nagc_max_c = 50.0\n";
    assert_eq!(
        problems(&format!("device = \"/dev/video0\"\nlayout = \"infiray_split\"\n{fixed}")),
        vec!["sources[0].preprocess.radiometric: infiray_split frames are kelvin x 64: set \"infiray64\""]
    );
    assert_eq!(
        problems(&format!(
            "device = \"/dev/video0\"\nlayout = \"lepton\"\n{fixed}radiometric = \"infiray64\"\n"
        )),
        vec!["sources[0].preprocess.radiometric: \"infiray64\" is the encoding of layout = \"infiray_split\"; \"Y16 \" frames are centi_kelvin"]
    );
    assert_eq!(
        problems(&format!("device = \"/dev/video0\"\npixel_format = \"GREY\"\n{fixed}")),
        vec!["sources[0].preprocess.agc: fixed_celsius needs 16-bit frames (pixel_format \"Y16 \" or layout \"infiray_split\")"]
    );
    // Preprocessing problems are those of thermal_replay.
    assert_eq!(
        problems("device = \"/dev/video0\"\n[sources.preprocess]\nagc = \"fixed_celsius\"\n"),
        vec!["sources[0].preprocess.agc: fixed_celsius needs agc_min_c and agc_max_c"]
    );
}

#[test]
fn infiray_temperature_frames_are_read_as_kelvin_x64() {
    // A 0-50 °C window: 25 °C (298.15 K x 64 = 19081.6) is mid-grey, whatever else is in view.
    let c = config_with(
        "device = \"/dev/video0\"\nlayout = \"infiray_split\"\ninterval_ms = 0\n\
         [sources.preprocess]\nagc = \"fixed_celsius\"\nagc_min_c = 0.0\nagc_max_c = 50.0\n\
         radiometric = \"infiray64\"\n",
    );
    let mut processor = processor(&c);
    let stats = StreamStats::default();
    let mut out = Vec::new();
    let image = ndarray::Array2::from_elem((192, 256), 19_082u16);
    processor.process(
        SourceMessage::Frame(Frame {
            seq: 0,
            t: Clock::new().at_mono_ns(0),
            image: FrameImage::U16(image),
            calibration: None,
        }),
        &mut StreamCx {
            stats: &stats,
            logs: &mut StreamLogs::default(),
            out: &mut out,
        },
    );
    assert_eq!(out.len(), 1);
    let v = out[0].input.iter().copied().fold(f32::NAN, f32::max);
    assert!((v - 128.0 / 255.0).abs() < 1e-6, "{v}");
}

#[test]
fn one_frame_is_embedded_per_interval_and_the_others_are_counted_as_skipped() {
    let c = config_with("device = \"/dev/video0\"\ninterval_ms = 1000\n");
    let mut processor = processor(&c);
    let stats = StreamStats::default();
    let clock = Clock::new();
    let mut out = Vec::new();
    // Three seconds of a 25 fps camera.
    for i in 0..75u64 {
        let image =
            ndarray::Array2::from_shape_fn((120, 160), |(y, x)| (x + y + i as usize) as u16);
        processor.process(
            SourceMessage::Frame(Frame {
                seq: i,
                t: clock.at_mono_ns(i * 40_000_000),
                image: FrameImage::U16(image),
                calibration: None,
            }),
            &mut StreamCx {
                stats: &stats,
                logs: &mut StreamLogs::default(),
                out: &mut out,
            },
        );
    }
    assert_eq!(out.len(), 3);
    assert_eq!(stats.drops(DropReason::FrameSkipped), 72);
    assert_eq!(out[0].input.shape(), &[1, 224, 224]);
}

#[cfg(not(feature = "v4l2"))]
#[test]
fn without_the_feature_the_source_refuses_to_build_and_says_why() {
    let c = config_with("device = \"/dev/video0\"\n");
    let e = c.sources[0]
        .kind()
        .open(&BuildContext { config: &c })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "source thermal: edgebind was built without the v4l2 feature (cargo build --features v4l2)"
    );
}

#[cfg(feature = "v4l2")]
#[test]
fn with_the_feature_the_source_builds_without_opening_the_camera() {
    let c = config_with("device = \"/dev/video-edgebind-missing\"\n");
    let source = c.sources[0]
        .kind()
        .open(&BuildContext { config: &c })
        .unwrap();
    assert_eq!(source.sample_rate_hz(), 9.0);
}
