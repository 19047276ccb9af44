//! Clap value parsers for the numeric flags, each the limit of the setting it mirrors.

use super::*;

/// `embed --threads`, `bench --intra-threads`.
///
/// # Errors
/// A one-line message.
pub fn intra_threads(s: &str) -> Result<usize, String> {
    super::intra_threads().parse(s).map(|v| v as usize)
}

/// `preprocess`/`embed --rate-hz`.
///
/// # Errors
/// A one-line message.
pub fn imu_rate_hz(s: &str) -> Result<f64, String> {
    IMU_SAMPLE_RATE_HZ.parse(s)
}

/// `preprocess`/`embed --clips`.
///
/// # Errors
/// A one-line message.
pub fn clips(s: &str) -> Result<usize, String> {
    AUDIO_CLIPS.parse(s).map(|v| v as usize)
}

/// `--agc-min-c`, `--agc-max-c`.
///
/// # Errors
/// A one-line message.
pub fn celsius(s: &str) -> Result<f64, String> {
    CELSIUS.parse(s)
}

/// `--focal-px`.
///
/// # Errors
/// A one-line message.
pub fn focal_px(s: &str) -> Result<f64, String> {
    FOCAL_PX.parse(s)
}

/// `--baseline-m`.
///
/// # Errors
/// A one-line message.
pub fn baseline_m(s: &str) -> Result<f64, String> {
    BASELINE_M.parse(s)
}

/// `--depth-units-m`.
///
/// # Errors
/// A one-line message.
pub fn depth_units_m(s: &str) -> Result<f64, String> {
    DEPTH_UNITS_M.parse(s)
}

/// `run --shutdown-timeout-s`.
///
/// # Errors
/// A one-line message.
pub fn shutdown_timeout_s(s: &str) -> Result<u64, String> {
    SHUTDOWN_TIMEOUT_S.parse(s)
}

/// `bench --max-batch`.
///
/// # Errors
/// A one-line message.
pub fn max_batch(s: &str) -> Result<usize, String> {
    MAX_BATCH.parse(s).map(|v| v as usize)
}
