//! Owns the properties the fuzz targets check: one function per target (`fuzz/fuzz_targets/`),
//! each taking the fuzzer's raw bytes, driving one parser or state machine and panicking when a
//! property fails. `tests/fuzz_regressions.rs` replays the seed and regression corpora through
//! the same functions, so an input that once crashed stays fixed. Sans-IO like the layers it
//! exercises; not part of the server's API (hidden from the docs).
//! Must not: be used by the server at run time.

mod auth;
mod conn;
mod deflate;
mod http;
mod pubsub;
mod redis;
mod sse;
mod text;
mod ws;

pub use auth::access_token;
pub use conn::conn;
pub use deflate::deflate_offer;
pub use http::http_request;
pub use pubsub::pubsub_registry;
pub use redis::redis_link;
pub use sse::sse_encode;
pub use text::{close_payload, utf8};
pub use ws::ws_decode;

/// A target's property: panics when it does not hold for the input.
pub type Check = fn(&[u8]);

/// Every target by name, as the fuzz crate and the regression replay name them.
pub const TARGETS: &[(&str, Check)] = &[
    ("ws_decode", ws_decode),
    ("http_request", http_request),
    ("utf8", utf8),
    ("close_payload", close_payload),
    ("pubsub_registry", pubsub_registry),
    ("conn", conn),
    ("deflate_offer", deflate_offer),
    ("sse_encode", sse_encode),
    ("redis_link", redis_link),
    ("access_token", access_token),
];

/// Reads the fuzzer's bytes front to back; past the end every read yields zeros, so any input
/// is a valid program.
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub(crate) fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub(crate) fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub(crate) fn rest(self) -> &'a [u8] {
        self.data
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// A chunking plan: a count byte, then that many sizes of 1..=256 bytes, cycled by the
    /// caller. An empty plan means "everything at once".
    pub(crate) fn chunks(&mut self, max_count: u8) -> Vec<usize> {
        let n = self.byte() % max_count.max(1);
        (0..n).map(|_| usize::from(self.byte()) + 1).collect()
    }
}

/// Size of the `i`-th chunk of a plan (cycled); `whole` when the plan is empty.
pub(crate) fn chunk_at(plan: &[usize], i: usize, whole: usize) -> usize {
    if plan.is_empty() {
        whole.max(1)
    } else {
        plan[i % plan.len()]
    }
}
