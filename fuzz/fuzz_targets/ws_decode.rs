//! Fuzz target `ws_decode`: feeds libFuzzer's bytes to `wsloop::fuzzing::ws_decode`, which owns the property
//! (shared with the regression replay in tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsloop::fuzzing::ws_decode(data));
