//! Fuzz target `utf8`: feeds libFuzzer's bytes to `wsloop::fuzzing::utf8`, which owns the property
//! (shared with the regression replay in tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsloop::fuzzing::utf8(data));
