//! Owns the RFC 6455 codec: frame headers, masking, UTF-8, close payloads, decoding frames in
//! place and assembling messages. Sans-IO: no sockets, no clock; it returns values and
//! errors, it never writes to a peer.
//! Must not: know about connections, sockets or handlers.

pub mod close;
pub mod decode;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod mask;
pub mod message;
pub mod utf8;

pub use error::ProtocolError;
pub use message::Message;
