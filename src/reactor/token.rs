//! Owns the mapping between mio `Token`s and connections: a token carries the slab index and
//! a generation, so an event for a connection freed earlier in the same batch (whose slot may
//! already serve a new connection) is recognised as stale and dropped (DESIGN §2 step 6).
//! Must not: let an event for a freed slot reach the connection now in it.

use mio::Token;

/// The listening socket.
pub const LISTENER: Token = Token(usize::MAX);
/// The waker other threads and signal handlers use to interrupt `poll`.
pub const WAKER: Token = Token(usize::MAX - 1);
/// The signal pipe (SIGTERM/SIGINT).
pub const SIGNALS: Token = Token(usize::MAX - 2);
/// The Redis link's socket (`reactor/redis.rs`).
pub const REDIS: Token = Token(usize::MAX - 3);

/// Pack a slab index (low 32 bits) and a generation (high 32 bits).
pub fn encode(index: usize, generation: u32) -> Token {
    debug_assert!(index < u32::MAX as usize - 8);
    Token((generation as usize) << 32 | index)
}

/// Unpack a connection token into (index, generation).
pub fn decode(token: Token) -> (usize, u32) {
    (token.0 & 0xFFFF_FFFF, (token.0 >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_distinct_from_fixed_tokens() {
        for (i, g) in [(0, 0), (1, 7), (123_456, u32::MAX)] {
            let t = encode(i, g);
            assert_eq!(decode(t), (i, g));
            assert!(t != LISTENER && t != WAKER && t != SIGNALS && t != REDIS);
        }
    }
}
