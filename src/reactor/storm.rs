//! Owns what keeps a reconnect storm from becoming a collapse, on the server's side: the
//! per-worker budget of WebSocket handshakes (`--max-handshake-rate`, a token bucket refilled
//! by the reactor's clock) and the retry hints clients are sent — with close 1013 when the
//! budget is spent, with close 1001 on a graceful shutdown (`--shutdown-spread`) — each a
//! random wait, so the clients told come back spread out instead of together
//! (docs/protocol.md, "Reconnecting").
//! Must not: read the clock (`now` is given) or allocate per handshake.

use crate::timer::Tick;

/// How a close reason carries the hint: `…; retry-after-ms=N` (docs/protocol.md).
pub const HINT: &str = "retry-after-ms=";

/// The longest wait a hint asks for: a storm that lasts does not push clients out for
/// hours; past it they come back at the rate, jittered over the last second.
pub const MAX_HINT_MS: u64 = 60_000;

/// The handshake budget of one worker and its source of jitter.
#[derive(Debug)]
pub struct Storm {
    /// Handshakes per second (0: no budget).
    rate: u32,
    /// Tokens left, in thousandths of a handshake (refilled `rate` per second, up to one
    /// second's worth).
    milli_tokens: u64,
    refilled_at: Tick,
    /// The time (µs on the reactor's clock) from which the next handshake turned away is
    /// told to come back: each one turned away takes the next 1/rate of a second, so the
    /// hints hand out the budget's future seconds in turn, and the queue shrinks as time
    /// passes (counting everyone ever turned away instead over-told clients that came back
    /// at their time and were let in).
    next_slot_us: u64,
    rng: u64,
}

impl Storm {
    pub fn new(rate: u32, seed: u64, now: Tick) -> Storm {
        Storm {
            rate,
            milli_tokens: u64::from(rate) * 1000,
            refilled_at: now,
            next_slot_us: 0,
            rng: seed | 1,
        }
    }

    /// Take one handshake from the budget at `now`: None if it may go on, else the wait to
    /// suggest (ms): until its slot after those turned away before it (one per 1/rate of a
    /// second), plus up to a second at random.
    pub fn admit(&mut self, now: Tick) -> Option<u64> {
        if self.rate == 0 {
            return None;
        }
        let full = u64::from(self.rate) * 1000;
        let elapsed = now.saturating_sub(self.refilled_at);
        self.refilled_at = now;
        self.milli_tokens = (self.milli_tokens + elapsed * u64::from(self.rate)).min(full);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            return None;
        }
        let now_us = now * 1000;
        let spacing_us = 1_000_000 / u64::from(self.rate);
        let slot = self.next_slot_us.max(now_us) + spacing_us;
        let queued = ((slot - now_us) / 1000).min(MAX_HINT_MS - 1000);
        // Past the longest hint the slots stop moving on: those clients come back jittered
        // over its last second.
        self.next_slot_us = slot.min(now_us + queued * 1000);
        Some(queued + self.random() % 1000)
    }

    /// A wait spread uniformly over `window_ms` (a graceful shutdown's 1001).
    pub fn spread(&mut self, window_ms: u64) -> u64 {
        match window_ms {
            0 => 0,
            w => self.random() % w,
        }
    }

    /// xorshift64* — jitter needs spread, not secrecy.
    fn random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_admits_its_rate_then_hints_waits_that_grow_with_the_queue() {
        let mut s = Storm::new(10, 7, 0);
        for _ in 0..10 {
            assert_eq!(s.admit(0), None, "a second's worth at once");
        }
        let hints: Vec<u64> = (0..20).map(|_| s.admit(0).unwrap()).collect();
        for (i, h) in hints.iter().enumerate() {
            // The i-th turned away queues behind i others: (i + 1) / rate seconds, plus jitter.
            let base = (i as u64 + 1) * 100;
            assert!((base..base + 1000).contains(h), "hint {i}: {h}");
        }
        // Refilled by the clock: 100 ms is one handshake at 10/s.
        assert_eq!(s.admit(100), None);
        assert!(s.admit(100).is_some());
        // A full bucket has tokens for all.
        assert_eq!(s.admit(5_000), None);
        let h = s.admit(5_000);
        assert_eq!(h, None, "still tokens left after a full refill");
        // A storm that goes on asks for at most a minute.
        let mut long = Storm::new(1, 7, 0);
        long.admit(0);
        let last = (0..100_000).map(|_| long.admit(0).unwrap()).last().unwrap();
        assert!((MAX_HINT_MS - 1000..MAX_HINT_MS).contains(&last), "{last}");
        // No budget: everything admitted.
        let mut open = Storm::new(0, 7, 0);
        assert!((0..10_000).all(|_| open.admit(0).is_none()));
    }

    #[test]
    fn the_queue_the_hints_describe_shrinks_as_its_slots_pass() {
        // 20 turned away at 10/s: slots over the next 2 s. Two seconds later, when they have
        // come back and been let in, a new one queues behind nobody — not behind all 20.
        let mut s = Storm::new(10, 3, 0);
        (0..10).for_each(|_| assert_eq!(s.admit(0), None));
        let last = (0..20).map(|_| s.admit(0).unwrap()).last().unwrap();
        assert!((2_000..3_000).contains(&last), "{last}");
        for t in (100..=2_000).step_by(100) {
            assert_eq!(s.admit(t), None, "its slot at {t} ms: let in");
        }
        let h = s.admit(2_000).unwrap();
        assert!(
            (100..1_100).contains(&h),
            "the next queues 1/rate back: {h}"
        );
    }

    #[test]
    fn shutdown_hints_spread_over_the_window() {
        let mut s = Storm::new(0, 42, 0);
        let hints: Vec<u64> = (0..10_000).map(|_| s.spread(5_000)).collect();
        assert!(hints.iter().all(|&h| h < 5_000));
        // Spread, not bunched: every 500 ms slice of the window gets some.
        for slice in 0..10 {
            let n = hints.iter().filter(|&&h| h / 500 == slice).count();
            assert!((700..1300).contains(&n), "slice {slice}: {n}");
        }
        assert_eq!(s.spread(0), 0);
    }
}
