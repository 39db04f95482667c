//! Owns the client side of a WebSocket connection, sans-IO (layers L1–L2): the opening
//! handshake as a client sends and checks it (`handshake`) and client frames — masked on the
//! way out, unmasked server frames on the way in (`frames`). It reuses the server's codecs
//! (`http::upgrade::accept_key`, `ws::frame`, `ws::mask`, `ws::close`) rather than a second
//! implementation; the load generator (`src/bin/wsloop-load.rs`) drives it over sockets.
//! Must not: be imported by the server, or touch a socket.

pub mod frames;
pub mod handshake;

pub use frames::{FrameReader, ServerFrame};
pub use handshake::HandshakeError;
