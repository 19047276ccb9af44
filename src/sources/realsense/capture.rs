//! One streaming session of a RealSense pipeline: framesets in, each depth and colour frame
//! copied, checked, stamped by the camera's one clock and sent to its own stream.

use std::time::Instant;

use ndarray::{Array2, Array3};
use realsense_rust::frame::{ColorFrame, DepthFrame, FrameEx, PixelKind};
use realsense_rust::pipeline::{ActivePipeline, FrameWaitError};

use super::device::{
    check_layout, check_layout_of, Calibration, DeviceClock, Realsense, LIVE_SILENCE,
    RECORDING_END_SILENCE, RGB8, WAIT,
};
use crate::log_limited;
use crate::preprocess::depth::DepthCalibration;
use crate::sources::device_loop::Ended;
use crate::sources::{Frame, FrameGate, FrameImage, SourceContext, SourceMessage};
use crate::telemetry::{DropReason, LogLimiter};

/// Frames of one kind that cannot be used: counted on their stream, logged once, then
/// summarised every few seconds.
#[derive(Default)]
struct BadFrames(LogLimiter);

impl BadFrames {
    fn count(&mut self, ctx: &SourceContext, port: usize, what: &'static str, why: &str) {
        if let Some(stats) = ctx.stats_of(port) {
            stats.add_drops(DropReason::BadInput, 1);
        }
        log_limited!(
            self.0,
            tracing::Level::WARN,
            format_args!("{what} frame dropped (counted as bad_input)"),
            reason = why
        );
    }
}

/// One streaming session (one open pipeline).
pub(super) struct Session<'a> {
    source: &'a Realsense,
    /// The camera's one clock, for every stream.
    clock: DeviceClock,
    calibration: Option<DepthCalibration>,
    bad_depth: BadFrames,
    bad_colour: BadFrames,
    /// Colour frames its stream would pass over are counted, not copied (as a V4L2 camera's).
    colour_gate: FrameGate,
    /// A frame has arrived (usable or not).
    received: bool,
    /// A frame has been sent on.
    delivered: bool,
}

impl<'a> Session<'a> {
    pub(super) fn new(source: &'a Realsense) -> Self {
        Self {
            source,
            clock: DeviceClock::default(),
            calibration: None,
            bad_depth: BadFrames::default(),
            bad_colour: BadFrames::default(),
            colour_gate: FrameGate::new(source.spec.colour_interval_ms),
            received: false,
            delivered: false,
        }
    }

    pub(super) fn run(
        &mut self,
        pipeline: &mut ActivePipeline,
        ctx: &SourceContext,
    ) -> Ended<String> {
        let recording = self.source.spec.recording.is_some();
        let (depth_port, colour_port) = self.source.spec.ports();
        let mut last_frame = Instant::now();
        loop {
            if ctx.cancel.is_cancelled() {
                return Ended::Stop;
            }
            match pipeline.wait(Some(WAIT)) {
                Ok(frames) => {
                    last_frame = Instant::now();
                    self.received = true;
                    // Both kinds from the same frameset, stamped by the same clock.
                    if let Some(port) = depth_port {
                        for frame in frames.frames_of_type::<DepthFrame>() {
                            if !self.handle_depth(&frame, port, ctx) {
                                return Ended::Stop;
                            }
                        }
                    }
                    if let Some(port) = colour_port {
                        for frame in frames.frames_of_type::<ColorFrame>() {
                            if !self.handle_colour(&frame, port, ctx) {
                                return Ended::Stop;
                            }
                        }
                    }
                }
                Err(FrameWaitError::DidTimeoutBeforeFrameArrival) => {
                    let quiet = last_frame.elapsed();
                    if recording && !self.source.spec.looping && self.received {
                        if quiet >= RECORDING_END_SILENCE {
                            return Ended::Finished;
                        }
                    } else if quiet >= LIVE_SILENCE {
                        return Ended::Lost {
                            error: format!("no frame for {} s", quiet.as_secs()),
                            delivered: self.delivered,
                        };
                    }
                }
                Err(e) => {
                    return Ended::Lost {
                        error: e.to_string(),
                        delivered: self.delivered,
                    }
                }
            }
        }
    }

    /// Copies, checks, stamps and sends one depth frame to stream `port`; false when the
    /// pipeline has stopped.
    fn handle_depth(&mut self, frame: &DepthFrame, port: usize, ctx: &SourceContext) -> bool {
        let t = self.stamp(Lane::Depth, frame.timestamp(), ctx);
        if self.calibration.is_none() {
            let cal = Calibration::read(frame);
            let in_use = cal.complete();
            cal.log(&self.source.preprocess);
            self.calibration = Some(in_use);
        }
        let Some(mode) = self.source.spec.depth else {
            return true;
        };
        let layout = check_layout(
            (frame.width(), frame.height()),
            (mode.width_px, mode.height_px),
            frame.stride(),
            frame.bits_per_pixel(),
            frame.get_data_size(),
        );
        let image = match layout {
            Ok(()) => Array2::from_shape_fn((frame.height(), frame.width()), |(y, x)| match frame
                .get_unchecked(x, y)
            {
                PixelKind::Z16 { depth } => *depth,
                _ => 0,
            }),
            Err(e) => {
                self.bad_depth.count(ctx, port, "depth", &e);
                return true;
            }
        };
        if image.iter().all(|&d| d == 0) {
            self.bad_depth
                .count(ctx, port, "depth", "no valid depth (every pixel is 0)");
            return true;
        }
        self.deliver(
            ctx,
            port,
            Frame {
                seq: frame.frame_number(),
                t,
                image: FrameImage::U16(image),
                calibration: self.calibration,
            },
        )
    }

    /// Copies, checks, stamps and sends one colour frame to stream `port`; false when the
    /// pipeline has stopped.
    fn handle_colour(&mut self, frame: &ColorFrame, port: usize, ctx: &SourceContext) -> bool {
        let t = self.stamp(Lane::Colour, frame.timestamp(), ctx);
        let Some(mode) = self.source.spec.colour else {
            return true;
        };
        if self.colour_gate.skip(t) {
            if let Some(stats) = ctx.stats_of(port) {
                self.colour_gate.flush(stats);
            }
            return true;
        }
        let layout = check_layout_of(
            RGB8,
            (frame.width(), frame.height()),
            (mode.width_px, mode.height_px),
            frame.stride(),
            frame.bits_per_pixel(),
            frame.get_data_size(),
        );
        if let Err(e) = layout {
            self.bad_colour.count(ctx, port, "colour", &e);
            return true;
        }
        let (w, h) = (frame.width(), frame.height());
        let mut pixels = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                match frame.get_unchecked(x, y) {
                    PixelKind::Bgr8 { r, g, b } | PixelKind::Rgb8 { r, g, b } => {
                        pixels.extend_from_slice(&[*r, *g, *b]);
                    }
                    _ => {
                        self.bad_colour
                            .count(ctx, port, "colour", "pixels are not RGB8");
                        return true;
                    }
                }
            }
        }
        let Ok(rgb) = Array3::from_shape_vec((h, w, 3), pixels) else {
            self.bad_colour
                .count(ctx, port, "colour", "pixels do not fill the frame");
            return true;
        };
        self.colour_gate.take(t);
        self.deliver(
            ctx,
            port,
            Frame {
                seq: frame.frame_number(),
                t,
                image: FrameImage::Rgb8(rgb),
                calibration: None,
            },
        )
    }

    /// The capture time of a frame stamped `device_ms` by the camera.
    fn stamp(&mut self, lane: Lane, device_ms: f64, ctx: &SourceContext) -> crate::time::Timestamp {
        let now = ctx.clock.now();
        ctx.clock
            .at_mono_ns(self.clock.map_lane(lane as usize, device_ms, now.mono_ns))
    }

    /// Sends `frame` to stream `port`, counting it; false when the pipeline has stopped.
    fn deliver(&mut self, ctx: &SourceContext, port: usize, frame: Frame) -> bool {
        let t = frame.t;
        if !ctx.send_to(port, SourceMessage::Frame(frame)) {
            return false;
        }
        if let Some(stats) = ctx.stats_of(port) {
            stats.add_samples(1, t.utc_ns);
        }
        self.delivered = true;
        true
    }
}

/// The streams of one camera, each keeping its own order on the shared [`DeviceClock`].
#[derive(Debug, Clone, Copy)]
enum Lane {
    Depth = 0,
    Colour = 1,
}
