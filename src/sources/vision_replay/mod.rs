//! Vision replay: PNG/JPEG pictures or a `.npy` RGB stack played back as a colour camera at
//! `fps` ([`files`] loads them; the frame replay's loop plays them).

pub mod config;
pub mod files;

pub use files::VisionFileError;
