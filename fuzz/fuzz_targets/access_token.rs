//! Fuzz target `access_token`: feeds libFuzzer's bytes to `wsloop::fuzzing::access_token`, which owns the property
//! (shared with the regression replay in tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsloop::fuzzing::access_token(data));
