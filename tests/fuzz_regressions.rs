//! Replays the fuzz corpora through the fuzz targets' properties (`wsloop::fuzzing`) in the
//! ordinary test run: the committed seeds (fuzz/corpus/<target>/) and every input that once
//! crashed or hung a target (fuzz/regressions/<target>/), so a crash found once stays fixed
//! without nightly or cargo-fuzz. Inputs of bugs still open live in fuzz/regressions/open/
//! and are replayed by the `#[ignore]`d tests at the end, each naming its bug.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The files directly under `dir`, sorted (a missing directory has none).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

/// Run `check` on every seed and regression input of `target`; fail naming every input that
/// panicked. Returns how many inputs ran.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dirs = [
        Path::new(ROOT).join("fuzz/corpus").join(target),
        Path::new(ROOT).join("fuzz/regressions").join(target),
    ];
    let inputs: Vec<PathBuf> = dirs.iter().flat_map(|d| files(d)).collect();
    let mut failed = Vec::new();
    for path in &inputs {
        let data = std::fs::read(path).expect("read input");
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: failing inputs: {failed:?}");
    inputs.len()
}

/// Each target has its seeds committed (a target with an empty corpus would replay nothing).
fn replay_with_seeds(target: &str) {
    let check = wsloop::fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|&(_, f)| f)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    let n = replay(target, check);
    assert!(n >= 3, "{target}: only {n} corpus files");
}

#[test]
fn ws_decode() {
    replay_with_seeds("ws_decode");
}

#[test]
fn http_request() {
    replay_with_seeds("http_request");
}

#[test]
fn utf8() {
    replay_with_seeds("utf8");
}

#[test]
fn close_payload() {
    replay_with_seeds("close_payload");
}

#[test]
fn pubsub_registry() {
    replay_with_seeds("pubsub_registry");
}

#[test]
fn conn() {
    replay_with_seeds("conn");
}

#[test]
fn deflate_offer() {
    replay_with_seeds("deflate_offer");
}

#[test]
fn sse_encode() {
    replay_with_seeds("sse_encode");
}

#[test]
fn redis_link() {
    replay_with_seeds("redis_link");
}

#[test]
fn access_token() {
    replay_with_seeds("access_token");
}

#[test]
fn every_target_is_replayed_here() {
    let here = [
        "ws_decode",
        "http_request",
        "utf8",
        "close_payload",
        "pubsub_registry",
        "conn",
        "deflate_offer",
        "sse_encode",
        "redis_link",
        "access_token",
    ];
    let names: Vec<&str> = wsloop::fuzzing::TARGETS.iter().map(|t| t.0).collect();
    assert_eq!(names, here, "add a #[test] for the new target");
    for t in here {
        let bin = Path::new(ROOT).join(format!("fuzz/fuzz_targets/{t}.rs"));
        assert!(bin.is_file(), "{} missing", bin.display());
    }
}

#[test]
fn a_failing_check_fails_the_replay() {
    // The replay must surface a check's panic rather than swallow it.
    fn always_panics(_: &[u8]) {
        panic!("planted");
    }
    let r = catch_unwind(|| replay("ws_decode", always_panics));
    assert!(r.is_err(), "replay swallowed a failing check");
}

/// Replay every input under `dir` (relative to the crate) through `check`; fail naming the
/// inputs that fail. Open bugs keep theirs in fuzz/regressions/open/<target>/ with an
/// `#[ignore]`d test calling this (docs/testing.md); none is open now.
fn replay_dir(dir: &str, check: fn(&[u8])) -> Vec<String> {
    let inputs = files(&Path::new(ROOT).join(dir));
    let failed: Vec<String> = inputs
        .iter()
        .filter(|p| {
            let data = std::fs::read(p).expect("read input");
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(failed.is_empty(), "failing inputs: {failed:?}");
    inputs
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect()
}

/// Fixed bug, found by the strict `pubsub_registry` model from an empty corpus in about 1,400
/// executions. With `--history-len 0`, `Hub::leave` dropped a topic that had no subscribers
/// and no history, and its sequence number with it, so the next message on that topic was
/// numbered 1 again (docs/protocol.md: a topic never reuses a number). Inputs:
/// `seq-restart-publish-then-unsubscribe` (history 0; publish to "a", which nobody subscribes
/// to; conn 0 unsubscribes from "a" → `last_seq("a")` was 0, expected 1) and
/// `seq-restart-history-len-0` (conn 0 subscribes to "a", publish, unsubscribe, publish → seq
/// was 1, expected 2). Fixed by keeping the numbers of dropped topics (`pubsub::SeqBook`).
#[test]
fn fixed_topic_sequence_restarted_without_history() {
    let names = replay_dir(
        "fuzz/regressions/pubsub_registry",
        wsloop::fuzzing::pubsub_registry,
    );
    for want in [
        "seq-restart-publish-then-unsubscribe",
        "seq-restart-history-len-0",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
}
