//! Owns `Resources`: what one reactor lends all its connections — the buffer pool and the
//! shared compressors — and the tallies connections hand back to it: bytes queued and the
//! once-per-connection outcomes (answers, close codes) the metrics count. Plain values: the
//! reactor owns one, passes it to every connection call that may need it, and records what
//! it learns from it once per loop iteration (docs/architecture.md §1 rule 2).
//! Must not: be shared between threads, or hold anything of one connection's.

use super::txqueue::SegsPool;
use crate::buf::BufPool;
use crate::config::Config;
use crate::ws::deflate::Compressors;

/// A once-per-connection outcome decided by the protocol, for the reactor to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A request was answered with this status: 101 accepted an upgrade, anything else
    /// refused the request.
    Answered(u16),
    /// A close frame went out with this code (1005: without one).
    CloseSent(u16),
    /// A valid close frame came in with this code (1005: without one).
    CloseReceived(u16),
}

/// One reactor's lendings to its connections, and their tallies.
#[derive(Debug)]
pub struct Resources {
    pub pool: BufPool,
    /// Segment lists of drained tx queues, for the next shared frame (`txqueue::SegsPool`).
    pub segs: SegsPool,
    pub compressors: Compressors,
    /// Bytes queued on every connection of this reactor (`queued`).
    queued: usize,
    /// Bytes queued on the other reactors of the process, as the reactor last learnt them
    /// (`set_queued_elsewhere`).
    queued_elsewhere: usize,
    /// Outcomes since the reactor last took them (`take_outcomes`).
    outcomes: Vec<Outcome>,
}

impl Resources {
    pub fn new(pool: BufPool) -> Resources {
        Resources {
            pool,
            segs: SegsPool::default(),
            compressors: Compressors::new(),
            queued: 0,
            queued_elsewhere: 0,
            outcomes: Vec::new(),
        }
    }

    /// Pool sizes as `cfg` sets them.
    pub fn for_config(cfg: &Config) -> Resources {
        Resources::new(BufPool::new(cfg.buffer_size, cfg.pool_max_free))
    }

    /// Bytes queued on every connection that was lent these resources.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// What the rest of the process has queued, for the slow-consumer process cap.
    pub fn set_queued_elsewhere(&mut self, n: usize) {
        self.queued_elsewhere = n;
    }

    /// Bytes queued on every connection of the process: these exactly, the others' as the
    /// reactor last learnt them.
    pub fn process_queued(&self) -> usize {
        self.queued + self.queued_elsewhere
    }

    pub(super) fn queue_grew(&mut self, n: usize) {
        self.queued += n;
    }

    pub(super) fn queue_shrank(&mut self, n: usize) {
        debug_assert!(
            n <= self.queued,
            "bug: more bytes left the queues than entered"
        );
        self.queued = self.queued.saturating_sub(n);
    }

    pub(super) fn record(&mut self, o: Outcome) {
        self.outcomes.push(o);
    }

    /// The outcomes recorded since the last call, oldest first (the buffer is kept).
    pub fn take_outcomes(&mut self) -> std::vec::Drain<'_, Outcome> {
        self.outcomes.drain(..)
    }
}
