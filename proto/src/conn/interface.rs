//! Owns the connection's interface to the reactor, in quinn-proto's shape: inputs
//! (`read_from`, `on_timeout`, `push`, `close`), outputs (`poll_event`, `write_to`,
//! `take_shutdown`) and what the connection wants next (`interest`, `deadline`, `status`).
//! These ten calls are all the reactor makes (docs/architecture.md §2); the order rules that
//! lending the large read ring needs (take it for a read, give it back once the bytes are
//! processed, copy an echo out of it after a write that did not finish) live behind them.
//! Must not: name a socket type: bytes move through the caller's `Io`, one call per system
//! call.

use std::io::{self, IoSlice};

use super::{Conn, State, Takes, PEER_EOF};
use crate::config::Config;
use crate::conn::{Outbox, Resources, SharedFrame, MAX_IOV};
use crate::timer::Tick;

/// Where a connection's bytes come from and go to: the reactor's transport (a socket, or a
/// TLS session over one). Each call is one system call's worth; `WouldBlock` and the other
/// errors pass through unchanged.
pub trait Io {
    /// Read into `a`, then `b` (`b` is empty unless the ring's free space wraps). `Ok(0)` is
    /// the end of the peer's bytes.
    fn read(&mut self, a: &mut [u8], b: &mut [u8]) -> io::Result<usize>;
    /// Write `bufs` in order; returns how many bytes were taken.
    fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

/// What one `read_from` brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// `n` bytes; `filled`: they took all the room offered (more may wait in the socket).
    /// Call `poll_event` until `Step::Idle` next.
    Bytes { n: usize, filled: bool },
    /// The peer's FIN (or its TLS close_notify). `report`: the close code to tell the
    /// application, if it has not been told (1006, RFC 6455 §7.1.5).
    Eof { report: Option<u16> },
}

/// What one `write_to` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Nothing is queued.
    Nothing,
    /// `n` bytes left; `short`: fewer than were offered (on a plain socket, its send buffer
    /// is full).
    Wrote { n: usize, short: bool },
}

/// What the connection wants of the reactor now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// Reading is useful: not once the peer has nothing more to say, not while rx is full,
    /// and not while tx holds more than `max_queued_bytes` (a client that does not read its
    /// replies is throttled by TCP, not buffered without bound).
    pub read: bool,
    /// Bytes are queued: ask for WRITABLE until they are written.
    pub write: bool,
    /// Bytes already read wait to be processed (pipelined requests behind one just
    /// answered): `poll_event` before reading more.
    pub input: bool,
}

/// What the reactor may look at of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    /// The handler index chosen when the upgrade was accepted.
    pub route: u16,
    /// How it takes a published message (`pubsub::fanout::plan`).
    pub takes: Takes,
}

/// A published message for one subscriber, in the form the fan-out plan chose.
pub enum Push<'a> {
    /// Bytes encoded once for many connections: a WebSocket frame, an SSE event or a chunk.
    Shared(SharedFrame),
    /// Through this connection's own compressor (`BroadcastForm::OwnContext`).
    Own { text: bool, data: &'a [u8] },
    /// The answer to a held long poll, built from whether the request asked to keep the
    /// connection alive.
    Held(&'a mut dyn FnMut(bool) -> Vec<u8>),
    /// The answer to a held request that is a stream (`Mode::Sse` or `Mode::Stream`): its
    /// head and first events; messages follow as `Shared` pushes.
    Stream { mode: super::Mode, head: &'a [u8] },
}

/// What became of a `push`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued: one message out.
    Queued,
    /// Not taken: the connection is not open for messages (or holds no poll).
    Refused,
    /// A held long poll was answered; the connection reads requests again (pipelined ones
    /// may already wait in rx: read it).
    Released,
    /// Queued, and the connection fell too far behind: it is closing with 1008 for
    /// `reason`. `report`: the code to tell the application, if any.
    SlowClosed {
        reason: &'static str,
        report: Option<u16>,
    },
}

/// Why the reactor closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close<'a> {
    /// Drop it now (an I/O error, or it is being freed): nothing more reaches the peer, and
    /// every buffer goes back to the pool.
    Abort,
    /// The server is shutting down: an open WebSocket gets 1001 "going away" (RFC 6455
    /// §7.4.1), its reason carrying a retry hint of this many milliseconds
    /// (`retry-after-ms=N`), and finishes its closing handshake under the linger deadline; a
    /// connection still in its handshake is dropped.
    GoingAway { retry_ms: u64 },
    /// Close with 1008 (policy violation) and this reason, behind what is queued; a
    /// streaming response just ends.
    Policy(&'a str),
    /// A service it needs is unavailable (the message broker): close 1013 (IANA: Try Again
    /// Later) with this reason, behind what is queued; a streaming response just ends.
    Unavailable(&'a str),
    /// The access token it was admitted with has expired: close 3000 (IANA: Unauthorized)
    /// behind what is queued; a streaming response just ends (the client reconnects with a
    /// fresh token).
    Expired,
}

impl Conn {
    /// Read once from `io` into the rx ring (taken from the pool on first use; a WebSocket
    /// with nothing buffered borrows the pool's large ring, `Conn::rx_ring`), at `now`.
    /// After `Received::Bytes`, call `poll_event` until `Step::Idle`, then `interest`: that
    /// gives a borrowed ring back. An error or the end gives it back here.
    pub fn read_from(
        &mut self,
        now: Tick,
        res: &mut Resources,
        io: &mut impl Io,
    ) -> io::Result<Received> {
        let ring = self.rx_ring(res);
        let (a, b) = ring.free_slices_mut();
        let room = a.len() + b.len();
        match io.read(a, b) {
            Ok(0) => {
                self.shed_rx(res);
                self.tx.flags.set(PEER_EOF, true);
                Ok(Received::Eof {
                    report: self.on_eof(),
                })
            }
            Ok(n) => {
                ring.commit(n);
                self.on_input(now);
                Ok(Received::Bytes {
                    n,
                    filled: n == room,
                })
            }
            Err(e) => {
                self.shed_rx(res);
                Err(e)
            }
        }
    }

    /// Write once to `io` what is queued: one contiguous run as one slice (a plain send(2),
    /// and no iovec array to fill: docs/perf-history.md, "Instructions per echoed message"),
    /// otherwise up to `MAX_IOV` slices. What was taken leaves the queue (a drained ring
    /// goes back to the pool); an echo still being sent from the large read ring is then
    /// copied out, so the ring serves the next read on any connection.
    pub fn write_to(&mut self, res: &mut Resources, io: &mut impl Io) -> io::Result<Sent> {
        if self.tx.queue.is_empty() {
            return Ok(Sent::Nothing);
        }
        let queue = &self.tx.queue;
        let (result, want) = match queue.contiguous() {
            Some(bytes) => (io.write(&[IoSlice::new(bytes)]), bytes.len()),
            // A subscriber's few frames of one iteration: an array this small costs little to
            // set up, where the full one is most of the user-space cost of a small write.
            None if queue.segments() * 2 <= SMALL_IOV => {
                write_slices(io, queue, &mut [IoSlice::new(&[]); SMALL_IOV])
            }
            None => write_slices(io, queue, &mut [IoSlice::new(&[]); MAX_IOV]),
        };
        if let Ok(n) = result {
            self.consume_tx(n, res);
        }
        self.tx.queue.return_rx(&mut res.pool);
        result.map(|n| Sent::Wrote { n, short: n < want })
    }

    /// Everything is said and written: send FIN now. True once, when the connection has
    /// closed its side and tx is empty; it then drains (reads and discards until the peer's
    /// FIN, `State::Draining`). If the peer's FIN came first there is nothing to wait for:
    /// the connection is `Closed` and this is false.
    pub fn take_shutdown(&mut self) -> bool {
        if self.tx.state != State::Closing || !self.tx.queue.is_empty() {
            return false;
        }
        if self.tx.flags.has(PEER_EOF) {
            self.tx.state = State::Closed;
            return false;
        }
        self.tx.state = State::Draining;
        true
    }

    /// What the connection wants of the reactor now. First it gives back what the input
    /// it has processed no longer needs — the pool's large read ring (a split frame header
    /// left in it moves to an ordinary ring), a ring holding nothing, a delivered message's
    /// buffer — so ask after every `poll_event` loop (the reactor does, to decide what to
    /// do next): an idle connection holds no buffer, and the large ring serves the next
    /// read on any connection.
    #[inline]
    pub fn interest(&mut self, cfg: &Config, res: &mut Resources) -> Interest {
        self.shed_rx(res);
        Interest {
            read: self.wants_read(cfg.max_queued_bytes),
            write: !self.tx.queue.is_empty(),
            input: self.has_input(),
        }
    }

    /// `poll_event` would return `Step::Idle` at once: an open WebSocket with no bytes
    /// buffered and no read ring for tx to take over (`RxSide::hand_over`). The caller may
    /// skip the call; it is the usual state after every message of a read was handled.
    #[inline]
    pub fn input_drained(&self) -> bool {
        self.tx.state == State::Open && !self.has_input() && !self.tx.queue.awaits_rx()
    }

    pub fn status(&self) -> Status {
        Status {
            state: self.tx.state,
            route: self.tx.route,
            takes: self.takes(),
        }
    }

    /// Queue a published message at `now`, then check this subscriber is keeping up
    /// (`slow_consumer`: over the hard limit, over the soft one for too long, or over it
    /// while the process is over its cap) and close it with 1008 if not.
    pub fn push(&mut self, cfg: &Config, res: &mut Resources, now: Tick, push: Push) -> Pushed {
        let queued = match push {
            Push::Shared(frame) => self.push_shared(frame, res),
            Push::Own { text, data } => Outbox::new(&mut self.tx, res, cfg).send_data(text, data),
            Push::Held(response) => {
                return if self.complete_held(res, cfg, response) {
                    Pushed::Released
                } else {
                    Pushed::Refused
                };
            }
            Push::Stream { mode, head } => {
                if self.tx.state != State::Held {
                    return Pushed::Refused;
                }
                Outbox::new(&mut self.tx, res, cfg).start_stream(mode, head);
                true
            }
        };
        if !queued {
            return Pushed::Refused;
        }
        match self.slow_consumer(cfg, now, res.process_queued()) {
            None => Pushed::Queued,
            Some(reason) => Pushed::SlowClosed {
                reason,
                report: self.close_policy(cfg, res, 1008, reason),
            },
        }
    }

    /// Close it for `why`. Returns the close code to report to the application, if it must
    /// be told now.
    pub fn close(&mut self, cfg: &Config, res: &mut Resources, why: Close) -> Option<u16> {
        match why {
            Close::Abort => {
                let report = self.abort();
                self.release(res);
                report
            }
            Close::GoingAway { retry_ms } => self.going_away(cfg, res, retry_ms),
            Close::Policy(reason) => self.close_policy(cfg, res, 1008, reason),
            Close::Expired => self.close_policy(cfg, res, 3000, "access token expired"),
            Close::Unavailable(reason) => self.close_policy(cfg, res, 1013, reason),
        }
    }
}

/// Slices of the array most writes use: a queue of up to half this many entries fits.
const SMALL_IOV: usize = 32;

/// Write the queue's slices through `iov`: the result and how many bytes were offered.
fn write_slices<'a, const N: usize>(
    io: &mut impl Io,
    queue: &'a super::txqueue::TxQueue,
    iov: &mut [IoSlice<'a>; N],
) -> (io::Result<usize>, usize) {
    let used = queue.slices(iov);
    let want = iov[..used].iter().map(|s| s.len()).sum();
    (io.write(&iov[..used]), want)
}
