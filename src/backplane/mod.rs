//! Owns the Redis pub/sub backplane's protocol side, sans-IO (layer L3, beside `pubsub`): the
//! link's state machine (`link::Link`: handshake, subscriptions, sequenced publishes,
//! timeouts, reconnection backoff), the RESP3 bytes it speaks (`resp`), the script Redis runs
//! to number, keep and publish each message (`sequence.lua`) and what a channel message
//! carries (`envelope`: its position and epoch), and Redis Cluster's slots (`slots`). The socket, the clock and the hub are the reactor's
//! (`reactor/redis.rs`); nothing here touches them.
//! Must not: touch the socket, the clock or the hub, or deliver a message twice to one node.

pub mod envelope;
pub mod link;
pub mod resp;
pub mod slots;

pub use link::{Action, Event, Link, LinkError, LinkState, LogEntry, Redirected, Stats};

#[cfg(test)]
pub(crate) mod tests;
