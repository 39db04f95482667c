//! wsloop: a WebSocket server built as a hand-written, single-threaded, epoll-based event loop.
//! Must not: re-export anything that lets a layer import upward.
//!
//! Layers (imports point down only; see docs/architecture.md):
//! L0 `buf`, `timer`, `config`, `cidr`, `text`, `metrics` · L1 `http`, `ws`, `sse`, `poll` (sans-IO
//! codecs) · L2 `conn` (one
//! connection's state machine, sans-IO) · L3 `app` (handlers), `pubsub`, `backplane` (the
//! Redis link's state machine, sans-IO) · L4 `reactor` (the only code
//! that touches sockets and the clock). `client` (L1–L2) is the sans-IO client side used by
//! the load generator `wsloop-load`; the server never imports it.

pub mod app;
pub mod backplane;
pub mod buf;
pub mod cidr;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod poll;
pub mod pubsub;
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
pub mod reactor;
pub mod sse;
pub mod text;
pub mod timer;
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
pub mod tls;
pub mod ws;
