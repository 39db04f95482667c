//! wsloop: a WebSocket server built as a hand-written, single-threaded, epoll-based event loop.
//!
//! Layers (imports point down only; see docs/architecture.md):
//! L0 `buf`, `timer`, `config` · L1 `http`, `ws` (sans-IO codecs) · L2 `conn` (one
//! connection's state machine, sans-IO) · L3 `app` (handlers) · L4 `reactor` (the only code
//! that touches sockets and the clock).

pub mod app;
pub mod buf;
pub mod cli;
pub mod config;
pub mod conn;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod pubsub;
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
pub mod reactor;
pub mod timer;
pub mod ws;
