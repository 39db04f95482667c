//! Owns the server's only clock: monotonic milliseconds since the reactor started. Every
//! layer below the reactor receives time as a `Tick` parameter read from here once per loop
//! iteration, so tests drive them with a fake clock.
//! Must not: be read more than once per loop iteration for the same decision.

use std::time::{Duration, Instant};

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
}

/// How long to sleep from `now` until `tick` (zero if it has passed).
pub fn until(now: Tick, tick: Tick) -> Duration {
    Duration::from_millis(tick.saturating_sub(now))
}
