//! Intel RealSense cameras (depth and colour streams) through librealsense2, live or from a
//! recording.
//!
//! - [`config`]: the `realsense` keys, their checks and the build (always compiled: the kind
//!   validates without the feature, and building it then says the feature is missing).
//! - `device` (feature `realsense`): the librealsense pipeline on the source's thread;
//!   `capture`: one streaming session; `calibration`: the depth calibration the camera reports.

#[cfg(feature = "realsense")]
mod calibration;
#[cfg(feature = "realsense")]
mod capture;
pub mod config;
#[cfg(feature = "realsense")]
pub mod device;

pub use self::config::{
    RealsenseColourConfig, RealsenseColourSettings, RealsenseConfig, RealsenseSettings, StreamMode,
};
#[cfg(feature = "realsense")]
pub use self::device::{Realsense, RealsenseError};
