//! Owns the RFC 6455 codec: frame headers, masking, UTF-8, close payloads, the upgrade rules.
//! Sans-IO: no sockets, no clock; it returns values and errors, it never writes to a peer.

pub mod error;

pub use error::ProtocolError;
