//! Fuzz target `close_payload`: feeds libFuzzer's bytes to `wsloop::fuzzing::close_payload`, which owns the property
//! (shared with the regression replay in tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsloop::fuzzing::close_payload(data));
