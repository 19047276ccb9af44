//! Pure, ImageBind-exact preprocessing: each modality's window in, the encoder's input tensor out
//! (`../shared/refdata/SPEC.md`). No I/O; tables are computed once and buffers reused.

pub mod audio;
pub mod depth;
pub mod imu;
pub mod pil_resize;
pub mod resize;
pub mod text;
pub mod thermal;
pub mod vision;
