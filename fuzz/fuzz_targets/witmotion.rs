//! `cargo +nightly fuzz run witmotion`
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../fuzz_bodies.rs"]
mod fuzz_bodies;

fuzz_target!(|data: &[u8]| fuzz_bodies::check_witmotion(data));
