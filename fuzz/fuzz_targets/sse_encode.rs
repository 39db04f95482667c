//! Fuzz target `sse_encode`: feeds libFuzzer's bytes to `wsloop::fuzzing::sse_encode`, which owns the property
//! (shared with the regression replay in tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsloop::fuzzing::sse_encode(data));
