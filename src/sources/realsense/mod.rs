//! Intel RealSense depth cameras through librealsense2, live or from a recording.
//!
//! - [`config`]: the `realsense` keys, their checks and the build (always compiled: the kind
//!   validates without the feature, and building it then says the feature is missing).
//! - `device` (feature `realsense`): the librealsense pipeline on the source's thread.

pub mod config;
#[cfg(feature = "realsense")]
pub mod device;

pub use self::config::{RealsenseConfig, RealsenseSettings};
#[cfg(feature = "realsense")]
pub use self::device::{Realsense, RealsenseError};
