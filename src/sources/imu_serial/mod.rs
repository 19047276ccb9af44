//! IMUs on a serial line: pure incremental protocol parsers (bytes in, SI samples out). The
//! tokio-serial port owner that feeds them is not part of this version yet.

pub mod csv_line;
pub mod protocol;
pub mod witmotion;
