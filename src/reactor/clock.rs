//! Owns the server's only clock: monotonic milliseconds since the reactor started, the wall
//! clock (for `Date` headers and handler ticks) and the nanoseconds that time the poll. Every
//! read of time in the server goes through here (under `MioNet`; the fake harness has its
//! own clock behind the same `Net` methods); every layer below the reactor receives time as
//! a `Tick` parameter read once per loop iteration, so tests drive them with a fake clock.
//! Must not: be read more than once per loop iteration for the same decision.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::timer::Tick;

pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Milliseconds since the clock started.
    pub fn now(&self) -> Tick {
        self.start.elapsed().as_millis() as Tick
    }

    /// Nanoseconds since the clock started: for timing (the time blocked in poll).
    pub fn nanos(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// Milliseconds since the Unix epoch by the wall clock (0 before it).
pub fn unix_ms() -> u64 {
    unix_nanos() / 1_000_000
}

/// Nanoseconds since the Unix epoch by the wall clock (0 before it); also a seed that
/// differs between processes (`redis.rs::node_id`).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// How long to sleep from `now` until `tick` (zero if it has passed).
pub fn until(now: Tick, tick: Tick) -> Duration {
    Duration::from_millis(tick.saturating_sub(now))
}
