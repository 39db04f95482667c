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
/// The Redis link's socket (`reactor/redis.rs`); on a Redis Cluster, the first of
/// `REDIS_LINKS` tokens counting down, one per master.
pub const REDIS: Token = Token(usize::MAX - 3);
/// Most Redis links one process keeps (cluster masters it talks to at once).
pub const REDIS_LINKS: usize = 64;

/// The token of Redis link `i` (`i < REDIS_LINKS`).
pub fn redis(i: usize) -> Token {
    debug_assert!(i < REDIS_LINKS);
    Token(REDIS.0 - i)
}

/// Which Redis link `token` names, if it names one.
pub fn redis_link(token: Token) -> Option<usize> {
    let i = REDIS.0.checked_sub(token.0)?;
    (i < REDIS_LINKS).then_some(i)
}

/// Pack a slab index (low 32 bits) and a generation (high 32 bits).
pub fn encode(index: usize, generation: u32) -> Token {
    debug_assert!(index < u32::MAX as usize - 8 - REDIS_LINKS);
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
            assert_eq!(redis_link(redis(5)), Some(5));
            assert_eq!(redis_link(redis(REDIS_LINKS - 1)), Some(REDIS_LINKS - 1));
            assert_eq!(redis_link(SIGNALS), None);
            assert!(t != LISTENER && t != WAKER && t != SIGNALS && redis_link(t).is_none());
        }
    }
}
