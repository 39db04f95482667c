//! Fuzz target `http_request`: feeds libFuzzer's bytes to `wsloop::fuzzing::http_request`, which owns the property
//! (shared with the regression replay in tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsloop::fuzzing::http_request(data));
