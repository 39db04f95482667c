//! Owns the HTTP/1.1 side of the WebSocket opening handshake: parsing the request head
//! (`request`) and validating/answering the upgrade (`upgrade`). Sans-IO (layer L1): it works on
//! byte slices only, with no sockets, no clock and no imports from `ws`, `conn` or `reactor`.
//! Must not: know about frames, connections or sockets.

pub mod request;
pub mod response;
pub mod upgrade;
