//! Owns what the workers of a process add up between them — the bytes queued on all
//! connections (the slow-consumer process cap) and the connections owning compression state
//! (`--compression-max-dedicated`) — and the steps that add this worker's counts from its
//! `conn::Resources` (queued bytes once per iteration; dedicated compressors when they change,
//! once per connection) and record the outcomes its connections handed back.
//! Must not: be touched per message: each worker counts exactly in its own `Resources`.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Net, Reactor};
use crate::conn::Outcome;

/// What the workers of a process add up between them: each counts its own exactly (in its
/// `conn::Resources`) and adds the change here once per loop iteration (`sync_totals`), so
/// no cache line is shared per message.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    /// Bytes queued on every connection: the slow-consumer process cap and a gauge.
    queued: AtomicUsize,
    /// Connections that own compression state (`--compression-max-dedicated`).
    dedicated: AtomicUsize,
}

impl Totals {
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn dedicated(&self) -> usize {
        self.dedicated.load(Ordering::Relaxed)
    }
}

/// Move a total by the change from `told` (what this worker last added) to `now`.
fn add_change(total: &AtomicUsize, told: &mut usize, now: usize) {
    if now > *told {
        total.fetch_add(now - *told, Ordering::Relaxed);
    } else if now < *told {
        total.fetch_sub(*told - now, Ordering::Relaxed);
    }
    *told = now;
}

impl<N: Net> Reactor<N> {
    /// Once per iteration: add this worker's change in queued bytes and dedicated
    /// compressors to the process's totals, learn the rest of the process's part, and count
    /// the outcomes its connections recorded.
    pub(super) fn sync_totals(&mut self) {
        add_change(&self.totals.queued, &mut self.told.0, self.res.queued());
        self.sync_dedicated();
        let outcomes = self.metrics.all().outcomes();
        for o in self.res.take_outcomes() {
            match o {
                Outcome::Answered(status) => outcomes.answered(status),
                Outcome::CloseSent(code) => outcomes.close_sent.record(code),
                Outcome::CloseReceived(code) => outcomes.close_received.record(code),
            }
        }
    }

    /// Add this worker's change in connections owning compression state now, not at the end
    /// of the iteration: it changes once per connection (at the 101, when freed), and the
    /// 101 leaves before the iteration ends, so a client that upgrades again at once must
    /// find its first connection counted by every worker (`--compression-max-dedicated`).
    pub(super) fn sync_dedicated(&mut self) {
        let mine = self.res.compressors.dedicated();
        if mine != self.told.1 {
            add_change(&self.totals.dedicated, &mut self.told.1, mine);
        }
        self.learn_totals();
    }

    /// After `poll`: learn what the rest of the process owns and has queued before deciding
    /// anything (`Resources::process_queued` adds this worker's exact count).
    pub(super) fn learn_totals(&mut self) {
        let elsewhere = self.totals.dedicated().saturating_sub(self.told.1);
        self.res.compressors.set_dedicated_elsewhere(elsewhere);
        let queued = self.totals.queued().saturating_sub(self.told.0);
        self.res.set_queued_elsewhere(queued);
    }
}
