//! Fuzz target `pubsub_registry`: feeds libFuzzer's bytes to `wsloop::fuzzing::pubsub_registry`, which owns the property
//! (shared with the regression replay in tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsloop::fuzzing::pubsub_registry(data));
