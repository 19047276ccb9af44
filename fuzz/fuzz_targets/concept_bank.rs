//! `cargo +nightly fuzz run concept_bank -- -malloc_limit_mb=64`: any input must give a value or a
//! one-line error, and no single allocation may come near the limit (inputs are a few KiB).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../file_readers_bodies.rs"]
mod file_readers_bodies;

fuzz_target!(|data: &[u8]| file_readers_bodies::check_concept_bank(data));
