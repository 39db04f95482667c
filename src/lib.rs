//! wsloop: a WebSocket server built as a hand-written, single-threaded, epoll-based event loop.
//! Must not: re-export anything that lets a layer import upward.
//!
//! Layers (imports point down only; see docs/architecture.md): L0–L2, the sans-IO core, are
//! the `wsloop-proto` crate, re-exported here under their own names: `buf`, `timer`,
//! `config`, `cidr`, `text` · `http`, `ws`, `sse`, `longpoll` (codecs) · `conn` (one
//! connection's state machine). Here: L0 `metrics` · L3 `app` (handlers), `pubsub`,
//! `backplane` (the Redis link's state machine, sans-IO) · L4 `reactor` (the only code that
//! touches sockets and the clock). `client` (L1–L2) is the sans-IO client side used by the
//! load generator `wsloop-load`; the server never imports it.

pub use wsloop_proto::{bits, buf, cidr, config, conn, http, longpoll, sse, text, timer, ws};

pub mod app;
pub mod auth;
pub mod backplane;
pub mod cli;
pub mod client;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod pubsub;
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
pub mod reactor;
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
pub mod tls;
