//! The `v4l2_camera` source (a colour camera through V4L2) without a camera: its keys validate
//! without the device or the `v4l2` feature; format negotiation on what real webcams enumerate;
//! decoding of real captured-format buffers (the refdata YUYV buffer, the same as UYVY, rows
//! padded as drivers pad them, 4:2:2 MJPEG frames, also without Huffman tables as UVC webcams
//! send them); and the shared capture loop driving a scripted colour camera into RGB frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use edgebind::config::{self, Config, SourceConfig, WhenFull};
use edgebind::pipeline::bounded;
use edgebind::preprocess::vision::decode::decode_jpeg;
use edgebind::sources::thermal_decode::BufferGeometry;
use edgebind::sources::v4l2_camera::format::{choose, ColourBuffers, ColourFormat, ColourRequest};
use edgebind::sources::v4l2_thermal::capture::{
    run_capture, CaptureSettings, DecodeBuffer, DeviceError, FrameDevice, RawBuffer,
};
use edgebind::sources::v4l2_thermal::negotiate::{OfferedFormat, SizeRange};
use edgebind::sources::{FrameImage, SourceContext, SourceMessage};
use edgebind::telemetry::{DropReason, StreamStats};
use edgebind::time::Clock;
use ndarray::Array3;
use tokio_util::sync::CancellationToken;

fn problems(source: &str) -> Vec<String> {
    let text = format!(
        "{}[[sources]]\ntype = \"v4l2_camera\"\nname = \"cam\"\n{source}",
        base_config("dev", 1883)
    );
    config::problems_in(&text)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn colour_cameras_validate_without_the_device_and_feed_the_vision_stream() {
    for source in [
        "device = \"/dev/video0\"\n",
        "device = \"card:C920\"\npixel_format = \"MJPG\"\nwidth_px = 1280\nheight_px = 720\n",
        "device = \"/dev/v4l/by-id/usb-046d_0825-video-index0\"\npixel_format = \"UYVY\"\n\
         interval_ms = 250\nreconnect_max_backoff_ms = 1000\n",
    ] {
        let p = problems(source);
        assert!(p.is_empty(), "{source}: {p:?}");
    }
    let text = format!(
        "{}[[sources]]\ntype = \"v4l2_camera\"\nname = \"cam\"\ndevice = \"/dev/video0\"\n",
        base_config("dev", 1883)
    );
    let c = Config::parse(&text, Path::new("x.toml")).unwrap();
    assert!(matches!(c.sources[0], SourceConfig::V4l2Camera(_)));
    let kind = c.sources[0].kind();
    assert_eq!(kind.modality(), edgebind::Modality::Vision);
    let queue = kind.common().queue;
    assert_eq!(
        (queue.capacity.get().get(), queue.when_full),
        (4, WhenFull::DropOldest)
    );
    assert_eq!(
        problems("device = \"video0\"\nwidth_px = 641\nheight_px = 480\n"),
        vec![
            "sources[0].device: \"video0\" must be a device path such as /dev/video0, or card:<name>",
            "sources[0].width_px: YUV pixels come in pairs: the width is even",
        ]
    );
    assert_eq!(
        problems("device = \"/dev/video0\"\nheight_px = 480\n"),
        vec!["sources[0].width_px: width_px and height_px go together"]
    );
    let bad = format!(
        "{}[[sources]]\ntype = \"v4l2_camera\"\nname = \"c\"\ndevice = \"/dev/video0\"\npixel_format = \"Y16 \"\n",
        base_config("dev", 1883)
    );
    let e = Config::parse(&bad, Path::new("x.toml")).unwrap_err();
    assert!(e.to_string().contains("Y16"), "{e}");
}

#[cfg(not(feature = "v4l2"))]
#[test]
fn without_the_feature_building_the_source_says_so() {
    let text = format!(
        "{}[[sources]]\ntype = \"v4l2_camera\"\nname = \"cam\"\ndevice = \"/dev/video0\"\n",
        base_config("dev", 1883)
    );
    let c = Config::parse(&text, Path::new("x.toml")).unwrap();
    let cx = edgebind::sources::kind::BuildContext { config: &c };
    let e = c.sources[0].kind().open(&cx).unwrap_err().to_string();
    assert_eq!(e, "source cam: edgebind was built without the v4l2 feature");
}

/// What a Logitech C920 enumerates (`v4l2-ctl --list-formats-ext`), abridged.
fn c920() -> Vec<OfferedFormat> {
    let d = SizeRange::discrete;
    let sizes = vec![
        d(640, 480),
        d(160, 90),
        d(160, 120),
        d(176, 144),
        d(320, 180),
        d(320, 240),
        d(352, 288),
        d(432, 240),
        d(640, 360),
        d(800, 600),
        d(1280, 720),
        d(1920, 1080),
    ];
    vec![
        OfferedFormat {
            fourcc: *b"YUYV",
            sizes: sizes.clone(),
        },
        OfferedFormat {
            fourcc: *b"H264",
            sizes: sizes.clone(),
        },
        OfferedFormat {
            fourcc: *b"MJPG",
            sizes,
        },
    ]
}

#[test]
fn negotiation_takes_yuv_at_the_smallest_size_imagebind_needs() {
    let any = ColourRequest {
        pixel_format: None,
        size_px: None,
    };
    let c = choose(&c920(), &any).unwrap();
    // 320x240: the smallest mode whose shorter side reaches 224 (not 432x240 nor 352x288).
    assert_eq!(
        (c.format, c.width_px, c.height_px),
        (ColourFormat::Yuyv, 320, 240)
    );
    let mjpeg_hd = ColourRequest {
        pixel_format: Some(ColourFormat::Mjpeg),
        size_px: Some((1280, 720)),
    };
    let c = choose(&c920(), &mjpeg_hd).unwrap();
    assert_eq!(
        (c.format, c.width_px, c.height_px),
        (ColourFormat::Mjpeg, 1280, 720)
    );
    // A camera with only small modes gets its largest.
    let tiny = vec![OfferedFormat {
        fourcc: *b"UYVY",
        sizes: vec![SizeRange::discrete(160, 120), SizeRange::discrete(176, 144)],
    }];
    let c = choose(&tiny, &any).unwrap();
    assert_eq!(
        (c.format, c.width_px, c.height_px),
        (ColourFormat::Uyvy, 176, 144)
    );
    // What it lacks is an error listing every offer.
    let e = choose(
        &c920(),
        &ColourRequest {
            pixel_format: Some(ColourFormat::Uyvy),
            size_px: None,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("does not offer 'UYVY'; it offers 'YUYV' 640x480 160x90"),
        "{e}"
    );
    assert!(e.contains("'H264'"), "{e}");
    let e = choose(
        &[OfferedFormat {
            fourcc: *b"GREY",
            sizes: vec![],
        }],
        &any,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "does not offer any of 'YUYV', 'UYVY', 'MJPG'; it offers 'GREY'"
    );
}

fn vision_ref(name: &str) -> std::path::PathBuf {
    refdata_dir().join("vision").join(name)
}

fn buffer<'a>(
    bytes: &'a [u8],
    format: ColourFormat,
    (w, h, stride): (u32, u32, u32),
) -> RawBuffer<'a, ColourFormat> {
    RawBuffer {
        bytes,
        format,
        geometry: BufferGeometry {
            width_px: w,
            height_px: h,
            bytes_per_line: stride,
        },
        timestamp: None,
        sequence: 0,
        corrupt: false,
    }
}

fn rgb(image: FrameImage) -> Array3<u8> {
    match image {
        FrameImage::Rgb8(a) => a,
        other => panic!("not RGB: {:?}", other.size_px()),
    }
}

/// YUYV rows of `width` pixels (2 bytes each) padded to `stride` bytes.
fn padded(yuyv: &[u8], width: usize, stride: usize) -> Vec<u8> {
    yuyv.chunks_exact(width * 2)
        .flat_map(|row| {
            let mut r = row.to_vec();
            r.resize(stride, 0xEE);
            r
        })
        .collect()
}

#[test]
fn yuyv_and_uyvy_buffers_decode_to_the_conventions_rgb_with_or_without_row_padding() {
    let yuyv = std::fs::read(vision_ref("yuyv_640x480.bin")).unwrap();
    let want: Array3<u8> = ndarray_npy::read_npy(vision_ref("yuyv_640x480_rgb_u8.npy")).unwrap();
    let d = ColourBuffers;
    let got = rgb(d
        .decode(&buffer(&yuyv, ColourFormat::Yuyv, (640, 480, 1280)))
        .unwrap());
    assert_eq!(got, want);
    let wide = padded(&yuyv, 640, 1344);
    let got = rgb(d
        .decode(&buffer(&wide, ColourFormat::Yuyv, (640, 480, 1344)))
        .unwrap());
    assert_eq!(got, want);
    // The same pixels as UYVY: U Y0 V Y1.
    let uyvy: Vec<u8> = yuyv
        .chunks_exact(4)
        .flat_map(|q| [q[1], q[0], q[3], q[2]])
        .collect();
    let got = rgb(d
        .decode(&buffer(&uyvy, ColourFormat::Uyvy, (640, 480, 1280)))
        .unwrap());
    assert_eq!(got, want);
    // A short buffer (a driver's bytesused) is refused, naming the sizes.
    let e = d
        .decode(&buffer(
            &yuyv[..yuyv.len() - 2],
            ColourFormat::Yuyv,
            (640, 480, 1280),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("614398"), "{e}");
}

/// The JPEG without its DHT segments: how UVC webcams send MJPEG (the decoder must use the
/// standard tables of JPEG Annex K.3, as every MJPEG decoder does).
fn without_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        let marker = jpeg[i + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if marker == 0xDA {
            out.extend_from_slice(&jpeg[i..]);
            return out;
        }
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    panic!("no scan")
}

#[test]
fn mjpeg_frames_decode_also_without_huffman_tables_and_truncated_ones_are_refused() {
    let jpeg = std::fs::read(fixture("vision/rgb_320x240_q90_422.jpg")).unwrap();
    let want = decode_jpeg(&jpeg).unwrap().into_array();
    assert_eq!(want.dim(), (240, 320, 3));
    let d = ColourBuffers;
    let got = rgb(d
        .decode(&buffer(&jpeg, ColourFormat::Mjpeg, (320, 240, 0)))
        .unwrap());
    assert_eq!(got, want);
    let bare = without_huffman_tables(&jpeg);
    assert!(bare.len() < jpeg.len());
    let got = rgb(d
        .decode(&buffer(&bare, ColourFormat::Mjpeg, (320, 240, 0)))
        .unwrap());
    assert_eq!(got, want, "the fixture uses the standard tables");
    let e = d
        .decode(&buffer(
            &jpeg[..jpeg.len() / 2],
            ColourFormat::Mjpeg,
            (320, 240, 0),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("MJPEG frame: JPEG:"), "{e}");
}

/// One scripted buffer: its format, `(width, height, bytes per line)` and bytes.
type Scripted = (ColourFormat, (u32, u32, u32), Vec<u8>);

/// A colour camera that plays buffers (stamped 40 ms apart by the driver), then stays silent.
struct ScriptedCamera {
    frames: VecDeque<Scripted>,
    held: Vec<u8>,
    sequence: u32,
}

impl FrameDevice<ColourFormat> for ScriptedCamera {
    fn next_frame(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<RawBuffer<'_, ColourFormat>>, DeviceError> {
        let Some((format, (w, h, stride), bytes)) = self.frames.pop_front() else {
            std::thread::sleep(timeout);
            return Ok(None);
        };
        std::thread::sleep(Duration::from_millis(5));
        self.held = bytes;
        self.sequence += 1;
        Ok(Some(RawBuffer {
            timestamp: Some(Duration::from_millis(40 * u64::from(self.sequence))),
            sequence: self.sequence,
            ..buffer(&self.held, format, (w, h, stride))
        }))
    }

    fn describe(&self) -> String {
        "scripted colour camera".into()
    }
}

#[test]
fn the_shared_capture_loop_turns_a_colour_cameras_buffers_into_rgb_frames() {
    let yuyv = std::fs::read(vision_ref("yuyv_640x480.bin")).unwrap();
    let jpeg = std::fs::read(fixture("vision/rgb_320x240_q90_422.jpg")).unwrap();
    let camera = ScriptedCamera {
        frames: VecDeque::from(vec![
            (ColourFormat::Yuyv, (640, 480, 1280), yuyv),
            (
                ColourFormat::Mjpeg,
                (320, 240, 0),
                jpeg[..jpeg.len() / 2].to_vec(),
            ),
            (ColourFormat::Mjpeg, (320, 240, 0), jpeg.clone()),
        ]),
        held: Vec::new(),
        sequence: 0,
    };
    let stats = Arc::new(StreamStats::default());
    let (tx, rx) = bounded(
        8,
        WhenFull::Block,
        DropReason::SampleQueueFull,
        Arc::clone(&stats),
    );
    let cancel = CancellationToken::new();
    let ctx = SourceContext {
        name: "cam".into(),
        clock: Clock::new(),
        cancel: cancel.clone(),
        stats: Arc::clone(&stats),
        out: tx,
        others: Vec::new(),
    };
    let settings = CaptureSettings {
        decoder: ColourBuffers,
        nominal_fps: 30.0,
        max_backoff: Duration::from_secs(1),
        stall_timeout: Duration::from_secs(60),
        interval_ms: 0,
    };
    let thread = std::thread::spawn(move || {
        let mut camera = Some(camera);
        let open = move || {
            camera.take().ok_or_else(|| DeviceError::NotFound {
                device: "/dev/video0".into(),
                detail: "gone".into(),
            })
        };
        run_capture(open, &settings, &ctx);
    });
    let mut frames = Vec::new();
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(SourceMessage::Frame(f)) => frames.push(f),
            other => panic!("{other:?}"),
        }
    }
    cancel.cancel();
    thread.join().unwrap();
    let want: Array3<u8> = ndarray_npy::read_npy(vision_ref("yuyv_640x480_rgb_u8.npy")).unwrap();
    assert_eq!(frames[0].image, FrameImage::Rgb8(want));
    assert_eq!(
        frames[1].image,
        FrameImage::Rgb8(decode_jpeg(&jpeg).unwrap().into_array())
    );
    // The truncated MJPEG frame was dropped and counted; the driver's numbering is kept.
    assert_eq!((frames[0].seq, frames[1].seq), (0, 2));
    assert_eq!(stats.drops(DropReason::BadInput), 1);
    assert!(frames[1].t.mono_ns > frames[0].t.mono_ns);
}

/// The real device path (feature `v4l2`): no camera exists on CI machines, so what is tested
/// against the kernel is a node that is not one, opened as a colour camera.
#[cfg(feature = "v4l2")]
#[test]
fn opening_a_node_that_is_not_a_camera_says_so_naming_it() {
    use edgebind::sources::v4l2_thermal::device::V4l2Camera;
    use edgebind::sources::v4l2_thermal::DeviceSelector;
    let any = ColourRequest {
        pixel_format: None,
        size_px: None,
    };
    let open = |device: &str| {
        V4l2Camera::<ColourFormat>::open(&DeviceSelector::parse(device), |offered| {
            choose(offered, &any)
        })
        .unwrap_err()
    };
    let e = open("/dev/null");
    assert!(matches!(e, DeviceError::NotV4l2 { .. }), "{e}");
    assert!(
        e.to_string().starts_with("/dev/null: not a V4L2 device"),
        "{e}"
    );
    let e = open("/dev/video-edgebind-missing");
    assert!(matches!(e, DeviceError::NotFound { .. }), "{e}");
}
