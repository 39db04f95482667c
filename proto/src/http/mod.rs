//! Owns the HTTP/1.1 side of the WebSocket opening handshake: parsing the request head
//! (`request`), validating/answering the upgrade (`upgrade`), and naming the client behind a
//! trusted proxy (`forwarded`). Sans-IO (layer L1): it works on
//! byte slices only, with no sockets, no clock and no imports from `ws`, `conn` or `reactor`.
//! Must not: know about frames, connections or sockets.

pub mod forwarded;
pub mod request;
pub mod response;
pub mod upgrade;
