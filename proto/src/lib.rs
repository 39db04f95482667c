//! wsloop-proto: the sans-IO core of wsloop — everything below the reactor (L0–L2 of
//! docs/architecture.md §1). Bytes and times go in as parameters; bytes, events and tallies
//! come out as values.
//! Must not: depend on anything that reaches the outside (sockets, an event loop, a clock,
//! TLS, signals), or hold process-wide state (statics, thread-locals, atomics):
//! tests/proto_boundary.rs checks both.
//!
//! Layers (imports point down only):
//! L0 `buf`, `timer`, `config`, `cidr`, `text` · L1 `http`, `ws`, `sse`, `longpoll` (codecs)
//! · L2 `conn` (one connection's state machine, and `ConnId`, which names a connection to
//! the layers above).

pub mod bits;
pub mod buf;
pub mod cidr;
pub mod config;
pub mod conn;
pub mod http;
pub mod longpoll;
pub mod sse;
pub mod text;
pub mod timer;
pub mod ws;
