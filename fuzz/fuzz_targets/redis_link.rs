//! Fuzz target `redis_link`: feeds libFuzzer's bytes to `wsloop::fuzzing::redis_link`, which owns the property
//! (shared with the regression replay in tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsloop::fuzzing::redis_link(data));
