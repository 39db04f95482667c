//! Fuzz target `deflate_offer`: feeds libFuzzer's bytes to `wsloop::fuzzing::deflate_offer`, which owns the property
//! (shared with the regression replay in tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsloop::fuzzing::deflate_offer(data));
