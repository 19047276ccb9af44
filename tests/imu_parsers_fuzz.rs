//! The cargo-fuzz invariants (`fuzz/fuzz_bodies.rs`) on stable Rust, over proptest inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

#[path = "../fuzz/fuzz_bodies.rs"]
mod fuzz_bodies;

/// Bytes biased towards what the parsers react to, so random input reaches the deep paths.
fn witmotion_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![3 => any::<u8>(), 2 => Just(0x55u8), 2 => 0x50u8..=0x53],
        0..400,
    )
}

fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        4 => "-?[0-9]{1,4}(\\.[0-9]{1,9})?(e-?[0-9]{1,2})?".prop_map(String::into_bytes),
        2 => prop::sample::select(vec![b",".to_vec(), b";".to_vec(), b"\t".to_vec(), b" ".to_vec()]),
        2 => Just(b"\n".to_vec()),
        1 => Just(b"\r\n".to_vec()),
        1 => prop::sample::select(vec![b"#".to_vec(), b"NaN".to_vec(), b"inf".to_vec(), b"1e39".to_vec()]),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ];
    (any::<[u8; 3]>(), prop::collection::vec(token, 0..120))
        .prop_map(|(header, tokens)| [header.to_vec(), tokens.concat()].concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn witmotion_fuzz_invariants_hold(data in witmotion_bytes()) {
        fuzz_bodies::check_witmotion(&data);
    }

    #[test]
    fn csv_line_fuzz_invariants_hold(data in csv_bytes()) {
        fuzz_bodies::check_csv_line(&data);
    }

    #[test]
    fn fuzz_invariants_hold_on_uniform_random_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzz_bodies::check_witmotion(&data);
        fuzz_bodies::check_csv_line(&data);
    }
}
