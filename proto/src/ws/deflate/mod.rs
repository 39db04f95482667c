//! Owns permessage-deflate (RFC 7692): the extension's name and its frame bit, shared by the
//! two halves it is split into — choosing a response to the client's
//! `Sec-WebSocket-Extensions` offers (§5, §7.1: `negotiate.rs`) and the codec, compressing an
//! outgoing message (§7.2.1) and inflating an incoming one within the message limit (§7.2.2:
//! `codec.rs`). Sans-IO: bytes in, bytes out, no sockets and no clock.
//! Must not: inflate past the message limit, keep state for a connection that did not negotiate
//! context takeover, or touch a socket.

mod codec;
mod negotiate;

pub use codec::{compressed_bound, Codec, Compressors, Streams};
pub use negotiate::{negotiate, negotiate_counted, Agreement};

/// The "Per-Message Compressed" bit (RFC 7692 §6) as it appears in a frame header's `rsv`
/// (`rsv1 << 2 | rsv2 << 1 | rsv3`).
pub const RSV1: u8 = 0b100;

/// The extension's name (RFC 7692 §7).
pub const NAME: &str = "permessage-deflate";

#[cfg(test)]
mod tests;
