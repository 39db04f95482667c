//! Owns the reactor's use of the timer wheel: one entry per connection, armed at or before
//! its next deadline and re-armed lazily (a busy connection never touches the wheel per
//! frame), plus one entry per ticking handler (the clock publishes once a second for all its
//! clients, not once per client) and one for the Redis link. Wheel ids are fixed: 0 is the
//! Redis link, `1 + route` a handler's tick, and `conn_base + slab index` a connection, so a
//! connection keeps no timer key (docs/architecture.md §9).
//! Must not: touch the wheel per frame or keep more than one entry per connection.

use super::{Net, Reactor};
use crate::app::{Command, Ctx, RouteId};
use crate::conn::{Close, State};
use crate::timer::{Tick, TimerId};

/// The Redis link's wheel id (`reactor/redis.rs`).
pub(super) const REDIS_TIMER: TimerId = 0;

/// What a wheel id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimerOwner {
    /// A connection's slab index.
    Conn(usize),
    Tick(RouteId),
    /// The Redis link's next deadline (`reactor/redis.rs`).
    Redis,
}

impl<N: Net> Reactor<N> {
    /// The wheel id of the connection in slab slot `idx`. Freeing a slot cancels its timer
    /// (`free_closed`), so the id always names the slot's current connection.
    pub(super) fn conn_timer_id(&self, idx: usize) -> TimerId {
        self.conn_base + idx as TimerId
    }

    fn owner(&self, id: TimerId) -> TimerOwner {
        match id {
            REDIS_TIMER => TimerOwner::Redis,
            id if id < self.conn_base => TimerOwner::Tick((id - 1) as RouteId),
            id => TimerOwner::Conn((id - self.conn_base) as usize),
        }
    }

    /// Schedule every handler that asked for ticks. With several workers only the first
    /// ticks: a tick publishes, and publishes reach every worker through the bus.
    pub(super) fn start_ticks(&mut self) {
        if self.bus.as_ref().is_some_and(|end| end.me != 0) {
            return;
        }
        for (route, every) in self.router.tick_intervals() {
            let at = self.now + every.as_millis() as Tick;
            self.wheel.insert(1 + TimerId::from(route), at);
        }
    }

    /// Fire every timer that is due. A connection whose deadline moved later since its timer
    /// was armed does nothing here and is re-armed by `flush`.
    pub(super) fn expire_timers(&mut self) {
        while let Some((id, at)) = self.wheel.poll(self.now) {
            match self.owner(id) {
                TimerOwner::Conn(idx) => self.conn_timer(idx),
                TimerOwner::Tick(route) => self.tick(route, at),
                // The wheel disarmed it; `redis_sync`, later in this iteration, does the work.
                TimerOwner::Redis => {}
            }
        }
        self.apply_commands();
    }

    fn conn_timer(&mut self, idx: usize) {
        // The wheel no longer holds its timer: the flush that follows must arm the next one.
        if let Some(e) = self.conns.get_mut(idx) {
            e.conn.unsettle_deadline();
        }
        if self
            .token_expiry
            .get(&idx)
            .is_some_and(|&at| at <= self.now)
        {
            // The token it was admitted with expired: 3000 for a WebSocket, the end of a
            // stream (the client comes back with a fresh token).
            self.token_expiry.remove(&idx);
            let e = &mut self.conns[idx];
            if let Some(code) = e.conn.close(&self.cfg, &mut self.res, Close::Expired) {
                self.told_closed(idx, code, "access token expired");
            }
            self.mark_dirty(idx);
            return;
        }
        let Some(e) = self.conns.get_mut(idx) else {
            return; // cannot happen: freeing a slot cancels its timer
        };
        let was_held = e.conn.status().state == State::Held;
        if let Some(code) = e.conn.on_timeout(&self.cfg, &mut self.res, self.now) {
            self.told_closed(idx, code, "");
        }
        if was_held && self.conns[idx].conn.status().state != State::Held {
            // The hold ran out (204): stop listening, and serve any pipelined request.
            let id = self.conn_id(idx);
            self.hub.take_waiting(id);
            self.resume.push(idx);
        }
        self.mark_dirty(idx);
    }

    fn tick(&mut self, route: RouteId, at: Tick) {
        let unix_ms = self.unix_ms;
        let before = self.cmds.len();
        self.router
            .handler(route)
            .on_tick(&mut Ctx::tick(unix_ms, &mut self.cmds));
        // Every node runs its own ticks, so a tick's publishes stay on this node: sent to
        // Redis, each node's clock would reach every client once per node.
        for cmd in self.cmds.split_off(before) {
            match cmd {
                Command::Publish {
                    topic,
                    text,
                    payload,
                    ..
                } => {
                    self.publish_local(&topic, text, &payload);
                }
                other => self.cmds.push(other),
            }
        }
        if let Some(every) = self.router.handler(route).tick_interval() {
            // Keep the cadence (no drift), but never schedule into the past after a stall.
            let next = (at + every.as_millis().max(1) as Tick).max(self.now + 1);
            self.wheel.insert(1 + TimerId::from(route), next);
        }
    }

    /// Make sure the wheel holds a timer at or before the connection's next deadline. Runs
    /// after every flush; most find that nothing could have moved the deadline earlier since
    /// the last time (`Conn::deadline_if_moved`) and touch neither the deadlines nor the wheel.
    pub(super) fn arm(&mut self, idx: usize) {
        let id = self.conn_timer_id(idx);
        let Some(want) = self.conns[idx].conn.deadline_if_moved(&self.cfg, self.now) else {
            return;
        };
        // Most connections were admitted without a token: no hashing for them.
        let expiry = if self.token_expiry.is_empty() {
            None
        } else {
            self.token_expiry.get(&idx)
        };
        let want = match (want, expiry) {
            (Some(d), Some(&t)) => Some(d.min(t)),
            (d, t) => d.or(t.copied()),
        };
        match (want, self.wheel.deadline(id)) {
            (Some(d), Some(at)) if at <= d => {} // fires early, re-arms then
            (Some(d), _) => self.wheel.insert(id, d), // arms it, or moves it earlier
            (None, _) => {
                self.wheel.cancel(id);
            }
        }
    }
}
