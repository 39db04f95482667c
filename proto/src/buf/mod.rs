//! Owns the byte buffers of the server: the fixed-capacity `Ring` every connection reads into
//! and writes from, and the per-reactor `BufPool` that lends rings out on first use and takes
//! them back when drained, so an idle connection holds no buffer (DESIGN §3). Sans-IO.
//! Must not: read a socket or grow a ring behind the pool's back.

pub mod pool;
pub mod ring;

pub use pool::BufPool;
pub use ring::Ring;
