//! `cargo +nightly fuzz run csv_line`
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../fuzz_bodies.rs"]
mod fuzz_bodies;

fuzz_target!(|data: &[u8]| fuzz_bodies::check_csv_line(data));
