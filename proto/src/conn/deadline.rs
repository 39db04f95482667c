//! Owns a connection's deadlines: the handshake deadline, the two-step heartbeat (ping after
//! silence, drop after more), the message-completion deadline and the close linger. It stores
//! one timestamp (a message's start lives with the partial message, in `ws::message`) and
//! derives every deadline from the connection's state, so inbound traffic costs a field
//! write, never a timer-wheel operation (the reactor re-arms its wheel lazily). Time is a
//! parameter (`Tick`, milliseconds); this module never reads a clock.
//! Must not: read a clock or touch the timer wheel.

use super::State;
use crate::config::Timeouts;
use crate::timer::Tick;

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The request head did not arrive in time → 408 and close.
    Handshake,
    /// A long poll was held for `poll_hold` with nothing to send → 204.
    Hold,
    /// A streaming response was quiet for `stream_keepalive` → a keep-alive comment.
    KeepAlive,
    /// Silence for `idle - ping_margin` → send a heartbeat ping.
    Ping,
    /// Still silent `ping_margin` after the ping → drop; the app sees 1006.
    Silent,
    /// A message took longer than `Timeouts::message` → close 1008.
    Message,
    /// The peer did not finish closing within `close_linger` → drop.
    Linger,
}

/// 16 bytes per connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// When the current phase began: accept (handshake), the last inbound bytes (open), or
    /// the start of closing.
    since: Tick,
    /// The state `since` belongs to; a different state restarts the phase clock.
    phase: State,
    /// The connection's request cycle `since` belongs to (see `TxSide::cycle`).
    cycle: u8,
    /// A heartbeat ping is out and unanswered.
    pinged: bool,
    /// The next deadline was reported (`settle`) and nothing that could move it earlier has
    /// happened since: only `since` moving on, which moves it later. Which deadline applies
    /// and where it counts from change with the phase, the ping and a message's start; each
    /// of those clears this.
    settled: Settled,
}

/// What `Deadlines::settle` saw: nothing reported yet, or a report with or without a
/// message in progress (its start is the message deadline's origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    No,
    Idle,
    InMessage,
}

/// `d` in whole milliseconds, at most half the clock's range (so adding it to a time cannot
/// wrap). In 64 bits: `Duration::as_millis` works in 128, and this runs on every re-arm.
fn ms(d: std::time::Duration) -> Tick {
    let ms = d
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()));
    ms.min(Tick::MAX / 2)
}

impl Deadlines {
    pub(crate) fn new(now: Tick) -> Deadlines {
        Deadlines {
            since: now,
            phase: State::Handshake,
            cycle: 0,
            pinged: false,
            settled: Settled::No,
        }
    }

    /// Restart the phase clock when the state or the request cycle has changed since it was
    /// last observed.
    pub(crate) fn observe(&mut self, state: State, cycle: u8, now: Tick) {
        // Reading a head, its body and waiting for the answer are one phase: the request
        // deadline runs from accept, or from the previous response on a keep-alive connection.
        let request = |s| matches!(s, State::Handshake | State::Body | State::Upgrading);
        let same = state == self.phase || (request(state) && request(self.phase));
        if !same || cycle != self.cycle {
            self.phase = state;
            self.cycle = cycle;
            self.since = now;
            self.pinged = false;
            self.settled = Settled::No;
        }
    }

    /// The deadline last reported still holds or moved later: true when `settle` was called
    /// since the last change that could move it earlier, with a message in progress then
    /// exactly when one is now (`msg`). Call after `observe`.
    pub(crate) fn is_settled(&self, msg: bool) -> bool {
        self.settled
            == if msg {
                Settled::InMessage
            } else {
                Settled::Idle
            }
    }

    /// The next deadline was just reported (to a timer armed at or before it).
    pub(crate) fn settle(&mut self, msg: bool) {
        self.settled = if msg {
            Settled::InMessage
        } else {
            Settled::Idle
        };
    }

    /// The timer armed for the reported deadline is gone (it fired) or something outside
    /// these deadlines moved (an access token's expiry): the next one must be reported.
    pub(crate) fn unsettle(&mut self) {
        self.settled = Settled::No;
    }

    /// Restart the phase clock (a keep-alive comment went out).
    pub(crate) fn restart(&mut self, now: Tick) {
        self.since = now;
    }

    /// Bytes arrived. While open, silence ends: any inbound frame resets the heartbeat.
    pub(crate) fn input(&mut self, state: State, cycle: u8, now: Tick) {
        if state == State::Open {
            self.observe(state, cycle, now);
            self.since = now;
            if self.pinged {
                // From "silent since the ping" back to the heartbeat: with a ping margin
                // longer than the wait before a ping, that deadline can be the earlier one.
                self.pinged = false;
                self.settled = Settled::No;
            }
        }
    }

    pub(crate) fn pinged(&mut self) {
        self.pinged = true;
        self.settled = Settled::No;
    }

    /// The earliest deadline in this state, if any. `msg` is when the message in progress
    /// began, if one is.
    pub(crate) fn next(&self, state: State, msg: Option<Tick>, t: &Timeouts) -> Option<Tick> {
        self.due(state, msg, t).map(|(at, _)| at)
    }

    /// The deadline that has passed at `now`, if one has.
    pub(crate) fn expired(
        &self,
        state: State,
        msg: Option<Tick>,
        t: &Timeouts,
        now: Tick,
    ) -> Option<Expiry> {
        self.due(state, msg, t)
            .filter(|&(at, _)| at <= now)
            .map(|(_, e)| e)
    }

    fn due(&self, state: State, msg: Option<Tick>, t: &Timeouts) -> Option<(Tick, Expiry)> {
        let after = |d| self.since.saturating_add(ms(d));
        match state {
            State::Handshake | State::Body | State::Upgrading => {
                Some((after(t.handshake), Expiry::Handshake))
            }
            State::Held => Some((after(t.poll_hold), Expiry::Hold)),
            State::Streaming => Some((after(t.stream_keepalive), Expiry::KeepAlive)),
            State::Open => {
                let beat = if self.pinged {
                    (after(t.idle), Expiry::Silent)
                } else {
                    (after(t.ping_after()), Expiry::Ping)
                };
                let Some(started) = msg else {
                    return Some(beat);
                };
                let msg = (started.saturating_add(ms(t.message)), Expiry::Message);
                Some(if msg.0 < beat.0 { msg } else { beat })
            }
            State::CloseSent | State::Closing | State::Draining => {
                Some((after(t.close_linger), Expiry::Linger))
            }
            State::Closed => None,
        }
    }
}
