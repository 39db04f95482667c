//! Owns `Conn`: one connection's state machine, from the first request byte to the last
//! close frame, with no socket and no clock (sans-IO, DESIGN §1 L2).
//! Must not: touch a socket, read a clock, or call a handler: the reactor does all three.
//!
//! The reactor drives it through ten calls (`interface.rs`), per readiness event in this
//! order: `read_from` (one read into the rx ring), `poll_event` until it returns
//! `Step::Idle` (each step may yield an `Event` — upgrade request, request, message, close —
//! with an `Outbox` through which the caller answers: every answer lands in this
//! connection's tx ring), `write_to` (one write of what is queued) until nothing is left,
//! `take_shutdown` (FIN), then `interest`, `deadline` and `status` to learn what it wants
//! next; `on_timeout`, `push` (a publish) and `close` arrive from outside.
//!
//! Protocol obligations (pong for ping, close echo, fail on a protocol error) are queued here
//! ahead of application data; the reactor only moves bytes. Input is read in `http_input.rs`
//! (request heads and bodies) and `ws_input.rs` (frames); the rest of the machine is here.

mod deadline;
mod http_input;
mod interface;
mod outbox;
mod resources;
#[cfg(test)]
mod tests;
mod txqueue;
mod ws_input;

pub use deadline::Expiry;
pub use interface::{Close, Interest, Io, Push, Pushed, Received, Sent, Status};
pub use outbox::Outbox;
pub use resources::{Outcome, Resources};

pub use txqueue::{SegsPool, SharedFrame, MAX_IOV};

use deadline::Deadlines;
use http_input::Head;
use txqueue::TxQueue;

use crate::bits::Bits;
use crate::buf::{BufPool, Ring};
use crate::config::Config;
use crate::http::request::Request;
use crate::http::upgrade::WsUpgrade;
use crate::timer::Tick;
use crate::ws::decode::Decoder;
use crate::ws::deflate::{Agreement, Streams};
use crate::ws::message::{Assembler, Message};

/// Identifies a connection for the life of the server (the reactor packs its slab index
/// and generation into it): how the layers above `conn` (topics, handlers) name one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Where a connection is in its life. Transitions only move down this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading an HTTP request head (the first, or the next on a keep-alive connection).
    Handshake,
    /// Reading a request body announced by `Content-Length`.
    Body,
    /// The request was handed to the caller, which must answer it (accept, reject, respond,
    /// start a stream, or hold it).
    Upgrading,
    /// A long poll is held until a message arrives or its deadline passes; pipelined
    /// requests wait in rx.
    Held,
    /// A streaming response (SSE or chunked) is open: messages are pushed, input ignored.
    Streaming,
    /// WebSocket open in both directions.
    Open,
    /// We sent a close frame; waiting for the peer's (§7.1.2), discarding data frames.
    CloseSent,
    /// Nothing more to read or say: flush tx, then shut down our side (send FIN).
    Closing,
    /// Our FIN is sent: read and discard until the peer's FIN, then close the socket.
    Draining,
    /// Finished; the reactor frees it.
    Closed,
}

/// What the application is told.
#[derive(Debug)]
pub enum Event<'a> {
    /// A valid WebSocket upgrade request: answer with `Outbox::accept` or `Outbox::reject`.
    Upgrade(Request<'a>, WsUpgrade<'a>),
    /// A complete HTTP request that is not an upgrade, with its body: answer with
    /// `Outbox::respond`, `start_stream`, `hold` or `reject`.
    Request(Request<'a>, &'a [u8]),
    /// A complete message.
    Message(Message<'a>),
    /// The WebSocket is finished: the peer's close code (1005 if it sent none, 1006 if the
    /// connection dropped without a close frame), or the code we failed it with. Reported
    /// once; no event follows.
    Closed { code: u16, reason: &'a str },
}

/// One step of `poll_event`.
#[derive(Debug)]
pub enum Step<'a> {
    /// Nothing more can be done with the bytes buffered now.
    Idle,
    /// Progress was made but there is nothing to report; call again.
    Again,
    Event(Event<'a>),
}

/// The rx side: bytes in, parser state.
#[derive(Debug, Default)]
struct RxSide {
    ring: Option<Box<Ring>>,
    /// HTTP request state until the connection becomes a WebSocket, then the frame decoder:
    /// never both, so they share the space.
    parser: Parser,
    asm: Assembler,
}

#[derive(Debug)]
enum Parser {
    Http(Head),
    Ws(Decoder),
}

impl Default for Parser {
    fn default() -> Self {
        Parser::Http(Head::default())
    }
}

/// The tx side: state, bytes out. `Outbox` is a window onto it.
#[derive(Debug)]
pub(crate) struct TxSide {
    state: State,
    /// `REPORTED`, `HELD_KEEP_ALIVE`, `PEER_EOF`: one byte, so the small fields fill one
    /// word (the slab slot, and so an idle connection, does not grow).
    flags: Bits,
    /// Length of a pong frame at the very end of tx that no write has touched yet: a newer
    /// ping replaces it (RFC 6455 §5.5.3 allows answering only the most recent ping).
    tail_pong: u8,
    /// Index of the handler serving this connection (set on accept).
    route: u16,
    /// What the connection carries, for the reactor to pick a message's encoding.
    mode: Mode,
    /// Requests answered on this connection (wrapping): a new one restarts the keep-alive
    /// deadline.
    cycle: u8,
    /// permessage-deflate as negotiated with the upgrade request (RFC 7692), answered in the
    /// 101; `None` (and no allocation) for connections that did not negotiate it.
    deflate: Option<Box<DeflateState>>,
    queue: TxQueue,
}

/// `TxSide::flags`: the application has been told the connection closed.
const REPORTED: u8 = 1;
/// `TxSide::flags`: the held request asked to keep the connection alive after its response.
const HELD_KEEP_ALIVE: u8 = 2;
/// `TxSide::flags`: the peer's FIN has been read (nothing more will arrive).
const PEER_EOF: u8 = 4;
/// `TxSide::flags`: the held request waits for an acknowledgement (`Outbox::hold_for_ack`).
const HELD_FOR_ACK: u8 = 8;
/// The WebSocket negotiated `POSITIONS_PROTOCOL`: published messages reach it enveloped
/// with their positions (`Takes::Positioned`).
pub(crate) const POSITIONED: u8 = 16;

/// The subprotocol a WebSocket client offers to receive every published message with its
/// position, as JSON (docs/protocol.md, "Positions over WebSocket").
pub const POSITIONS_PROTOCOL: &str = "wsloop.positions";

/// `POSITIONS_PROTOCOL` plus in-band token refresh (`{"type":"refresh","token":…}` is not
/// published): what a client with an expiring token offers first (docs/protocol.md,
/// "Refreshing a token in-band").
pub const POSITIONS_REFRESH_PROTOCOL: &str = "wsloop.positions.auth";

/// A connection's permessage-deflate state, behind one pointer.
pub(crate) struct DeflateState {
    agreement: Agreement,
    /// The compressor and decompressor of the directions that keep context
    /// (`--compression dedicated`); `None` when no direction does.
    streams: Option<Box<Streams>>,
}

impl std::fmt::Debug for DeflateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.agreement.response())
    }
}

/// How a WebSocket subscriber takes a published message (`Conn::broadcast_form`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastForm {
    /// No permessage-deflate: the shared uncompressed frame.
    Plain,
    /// The server compresses without context takeover, with a window of `bits`: the frame
    /// compressed once for every such subscriber (`Published::deflated`).
    Fresh { bits: u8 },
    /// The server keeps its compression context across messages for this connection
    /// (`--compression dedicated`): a frame shared with others would desynchronise the
    /// client's window from ours, so the message goes through this connection's compressor.
    OwnContext,
}

/// How a subscriber takes a published message (`Conn::takes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// A WebSocket: a frame, in this form.
    Frame(BroadcastForm),
    /// A Server-Sent Events response: an event.
    SseEvent,
    /// A chunked streaming response: a chunk.
    StreamChunk,
    /// A long poll (held, or no longer held): the batch that answers it, if it is held.
    HeldPoll,
    /// A WebSocket that negotiated `POSITIONS_PROTOCOL`: the message with its position, as
    /// a JSON text frame.
    Positioned,
}

/// What a connection carries once its first request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain HTTP requests and responses (and, before that, the handshake).
    Http,
    WebSocket,
    /// A Server-Sent Events response.
    Sse,
    /// A chunked streaming response (one chunk per message).
    Stream,
    /// A held long poll.
    Poll,
}

/// One connection's protocol state: the socket lives in the reactor, everything else here.
#[derive(Debug)]
pub struct Conn {
    rx: RxSide,
    tx: TxSide,
    times: Deadlines,
}

impl Conn {
    /// A connection accepted at `now`.
    pub fn new(now: Tick) -> Conn {
        Conn {
            times: Deadlines::new(now),
            rx: RxSide::default(),
            tx: TxSide {
                state: State::Handshake,
                flags: Bits::new(HELD_KEEP_ALIVE),
                tail_pong: 0,
                route: 0,
                mode: Mode::Http,
                cycle: 0,
                deflate: None,
                queue: TxQueue::default(),
            },
        }
    }

    pub fn state(&self) -> State {
        self.tx.state
    }

    /// Is reading from the socket useful now? Not once the peer has nothing more to tell us,
    /// not while rx is full, and not while tx holds more than `max_queued` bytes (a client
    /// that does not read its replies is throttled by TCP, not buffered without bound).
    pub(crate) fn wants_read(&self, max_queued: usize) -> bool {
        match self.tx.state {
            State::Closing | State::Closed => false,
            State::Draining => true,
            _ => self.tx_len() <= max_queued && self.rx.ring.as_ref().is_none_or(|r| !r.is_full()),
        }
    }

    /// Are unprocessed bytes buffered?
    pub(crate) fn has_input(&self) -> bool {
        self.rx.ring.as_ref().is_some_and(|r| !r.is_empty())
    }

    /// The rx ring to read into, taken from the pool on first use. A WebSocket with no bytes
    /// waiting reads into the pool's large ring instead (`BufPool::take_large`): a 64 KiB
    /// message then arrives in one read and, whole in one frame, is delivered from the ring
    /// with no copy. Only a WebSocket may borrow it: its decoder consumes every byte but a
    /// split header or control frame, so `shed_rx` can always give it back; an HTTP
    /// connection may leave a held request's pipelined successors unread.
    pub(crate) fn rx_ring<'s>(&'s mut self, res: &'s mut Resources) -> &'s mut Ring {
        let pool = &mut res.pool;
        let idle = self.rx.ring.as_ref().is_none_or(|r| r.is_empty());
        if idle && self.tx.mode == Mode::WebSocket && pool.large_size() > pool.buffer_size() {
            let own = self.rx.ring.take();
            if own
                .as_ref()
                .is_none_or(|r| r.capacity() != pool.large_size())
            {
                // The large ring may be out, still writing an echo (`hand_over`).
                if let Some(large) = pool.take_large() {
                    if let Some(own) = own {
                        pool.give(own);
                    }
                    return self.rx.ring.insert(large);
                }
            }
            self.rx.ring = own;
        }
        self.rx.ring.get_or_insert_with(|| pool.take())
    }

    /// After a read's bytes are processed: give back the large ring, or a ring grown to take
    /// what a handed-over read ring still held (`RxSide::hand_over`), moving what is left in
    /// it — at most a split frame header or control frame — into an ordinary ring; and an
    /// ordinary ring that holds nothing (the connection is idle between frames).
    #[inline]
    pub(crate) fn shed_rx(&mut self, res: &mut Resources) {
        self.rx.asm.shed();
        // The usual case once the processed input's buffers are back (`interest` asks more
        // than once per read): nothing to give back, and no call made to find that out.
        if self.rx.ring.is_some() {
            self.shed_ring(res);
        }
    }

    fn shed_ring(&mut self, res: &mut Resources) {
        let pool = &mut res.pool;
        // An HTTP request whose body is still arriving grew its ring to hold all of it
        // (`HttpInput::body`): that ring stays until the request is handled. Anything else
        // larger than a pool buffer is the pool's large ring, lent to a WebSocket read.
        let body_pending = matches!(&self.rx.parser, Parser::Http(h) if h.len != 0);
        let size = pool.buffer_size();
        let lent = |r: &mut Box<Ring>| !body_pending && r.capacity() > size;
        if let Some(large) = self.rx.ring.take_if(lent) {
            if large.len() <= pool.buffer_size() {
                if !large.is_empty() {
                    let mut own = pool.take();
                    let (a, b) = large.as_slices();
                    own.push(a);
                    own.push(b);
                    self.rx.ring = Some(own);
                }
                pool.give(large);
            } else {
                self.rx.ring = Some(large); // cannot happen for a WebSocket; kept, not lost
            }
        }
        let idle = match &self.rx.parser {
            Parser::Http(h) => h.len == 0,
            Parser::Ws(d) => d.at_frame_boundary(),
        };
        if idle && self.rx.ring.as_ref().is_some_and(|r| r.is_empty()) {
            if let Some(r) = self.rx.ring.take() {
                pool.give(r);
            }
        }
    }

    /// Advance the state machine over buffered input by one step.
    pub fn poll_event<'s>(
        &'s mut self,
        cfg: &Config,
        res: &'s mut Resources,
        now: Tick,
    ) -> (Step<'s>, Outbox<'s>) {
        let Conn { rx, tx, .. } = self;
        let pool = &mut res.pool;
        if tx.queue.awaits_rx() {
            rx.hand_over(&mut tx.queue, pool);
        }
        // A payload the handler sends back from the large read ring is queued as a reference
        // into it (`Outbox::frame_rsv`) instead of copied.
        let read_ring = rx
            .ring
            .as_ref()
            .filter(|r| r.capacity() == pool.large_size() && pool.large_size() > pool.buffer_size())
            .and_then(|r| r.filled_addrs());
        let mut out = Outbox::new(tx, res, cfg);
        out.read_ring = read_ring;
        let step = rx.step(cfg, &mut out, now);
        (step, out)
    }

    /// Bytes arrived at `now` (call once per read that returned data).
    pub(crate) fn on_input(&mut self, now: Tick) {
        self.times.input(self.tx.state, self.tx.cycle, now);
    }

    /// The connection's next deadline, after noting any state change made at `now`.
    pub fn deadline(&mut self, cfg: &Config, now: Tick) -> Option<Tick> {
        self.times.observe(self.tx.state, self.tx.cycle, now);
        let msg = self.rx.asm.started_at();
        self.times.next(self.tx.state, msg, &cfg.timeouts)
    }

    /// `deadline`, or `None` when it cannot be earlier than the one last returned by this
    /// method: the state, the request cycle, the heartbeat ping and whether a message is in
    /// progress are as they were then, and inbound bytes only push a deadline later. A timer
    /// armed at or before that one still fires in time (early, and is re-armed then). Call
    /// `unsettle_deadline` when that timer is gone.
    pub fn deadline_if_moved(&mut self, cfg: &Config, now: Tick) -> Option<Option<Tick>> {
        self.times.observe(self.tx.state, self.tx.cycle, now);
        let msg = self.rx.asm.started_at();
        if self.times.is_settled(msg.is_some()) {
            return None;
        }
        self.times.settle(msg.is_some());
        Some(self.times.next(self.tx.state, msg, &cfg.timeouts))
    }

    /// The timer armed for the last deadline reported by `deadline_if_moved` is gone, or the
    /// caller combines it with a deadline of its own that changed: report the next one.
    pub fn unsettle_deadline(&mut self) {
        self.times.unsettle();
    }

    /// A timer fired at `now`: act on whichever deadline passed. Returns the close code to
    /// report to the application, if it must be told now.
    pub fn on_timeout(&mut self, cfg: &Config, res: &mut Resources, now: Tick) -> Option<u16> {
        self.times.observe(self.tx.state, self.tx.cycle, now);
        let msg = self.rx.asm.started_at();
        let expiry = self.times.expired(self.tx.state, msg, &cfg.timeouts, now)?;
        log::debug!("deadline passed: {expiry:?}");
        let (cycle_started, mode) = (self.tx.cycle != 0, self.tx.mode);
        let mut out = Outbox::new(&mut self.tx, res, cfg);
        match expiry {
            Expiry::Handshake => {
                let pending = self.rx.ring.as_ref().is_some_and(|r| !r.is_empty());
                if out.state() == State::Handshake && cycle_started && !pending {
                    // An idle keep-alive connection simply closes (RFC 9112 §9.5).
                    out.set_state(State::Closing);
                } else {
                    out.reject(408, "request not received in time");
                }
                None
            }
            Expiry::Hold => {
                let keep_alive = out.held_keep_alive();
                let close = if keep_alive {
                    ""
                } else {
                    "Connection: close\r\n"
                };
                let resp = if out.held_for_ack() {
                    // No acknowledgement in time: not acknowledged (RFC 9110 §15.6.4).
                    let body = "the message broker did not confirm the message in time\n";
                    format!(
                        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
                         Content-Type: text/plain\r\nContent-Length: {}\r\n{close}\r\n{body}",
                        body.len()
                    )
                } else {
                    // The documented answer to a long poll that saw no message: 204.
                    format!("HTTP/1.1 204 No Content\r\nCache-Control: no-store\r\n{close}\r\n")
                };
                out.respond(resp.as_bytes(), keep_alive);
                None
            }
            Expiry::KeepAlive => {
                let ka: &[u8] = match mode {
                    Mode::Sse => b": keep-alive\n\n",
                    _ => b"1\r\n\n\r\n", // one chunk holding an empty line
                };
                out.push_bytes(ka);
                self.times.restart(now);
                None
            }
            Expiry::Ping => {
                // §5.5.2: any pong, or any other frame, proves the peer is alive.
                out.ping(b"wsloop");
                self.times.pinged();
                None
            }
            Expiry::Message => {
                out.fail(1008, "message not completed in time");
                self.rx.asm.clear();
                Some(1008)
            }
            Expiry::Silent | Expiry::Linger => self.abort(),
        }
    }

    /// The peer closed its side (read returned 0) or the socket failed. Returns the close
    /// code to report to the application, if it has not been told yet (1006: no close frame,
    /// RFC 6455 §7.1.5).
    pub(crate) fn on_eof(&mut self) -> Option<u16> {
        let report = match self.tx.state {
            State::Open | State::CloseSent if !self.tx.flags.has(REPORTED) => Some(1006),
            _ => None,
        };
        self.tx.flags.set(REPORTED, true);
        self.tx.state = match self.tx.state {
            // A close echo or error response still queued may yet reach the peer.
            State::Closing => State::Closing,
            _ => State::Closed,
        };
        self.rx.asm.clear();
        report
    }

    /// The server is shutting down: an open WebSocket gets close 1001 "going away" (RFC 6455
    /// §7.4.1) and finishes its closing handshake under the linger deadline; a connection
    /// still in its handshake is dropped. Returns the code to report, if any.
    pub(crate) fn going_away(
        &mut self,
        cfg: &Config,
        res: &mut Resources,
        retry_ms: u64,
    ) -> Option<u16> {
        match self.tx.state {
            State::Open => {
                let reason = format!("server shutting down; retry-after-ms={retry_ms}");
                Outbox::new(&mut self.tx, res, cfg).close(1001, &reason);
                None
            }
            // A response still queued (a keep-alive connection just answered) goes out first.
            State::Handshake if !self.tx.queue.is_empty() => {
                self.tx.state = State::Closing;
                None
            }
            State::Handshake | State::Upgrading => self.abort(),
            State::Streaming | State::Held => {
                Outbox::new(&mut self.tx, res, cfg).end_for_shutdown(retry_ms);
                None
            }
            _ => None,
        }
    }

    /// Bytes waiting to be written.
    pub fn tx_len(&self) -> usize {
        self.tx.queue.len()
    }

    /// `n` bytes were written; a drained ring goes back to the pool.
    pub(crate) fn consume_tx(&mut self, n: usize, res: &mut Resources) {
        self.tx.tail_pong = 0;
        res.queue_shrank(n.min(self.tx.queue.len()));
        self.tx.queue.consume(n, &mut res.pool, &mut res.segs);
    }

    /// Answer a held long poll with a complete response; the connection goes back to reading
    /// requests (pipelined ones may already wait in rx). False if nothing was held.
    /// `response` builds it, told whether the request asked to keep the connection alive.
    pub(crate) fn complete_held(
        &mut self,
        res: &mut Resources,
        cfg: &Config,
        response: impl FnOnce(bool) -> Vec<u8>,
    ) -> bool {
        if self.tx.state != State::Held {
            return false;
        }
        let keep_alive = self.tx.flags.has(HELD_KEEP_ALIVE);
        Outbox::new(&mut self.tx, res, cfg).respond(&response(keep_alive), keep_alive);
        true
    }

    /// How this connection takes a published message, for the fan-out plan
    /// (`pubsub::fanout::plan`): a WebSocket frame in the form its permessage-deflate
    /// agreement allows, an SSE event, a stream chunk, or the batch that answers a held
    /// long poll.
    pub(crate) fn takes(&self) -> Takes {
        match self.tx.mode {
            Mode::WebSocket if self.tx.flags.has(POSITIONED) => Takes::Positioned,
            Mode::WebSocket => Takes::Frame(self.broadcast_form()),
            Mode::Sse => Takes::SseEvent,
            Mode::Stream => Takes::StreamChunk,
            Mode::Poll | Mode::Http => Takes::HeldPoll,
        }
    }

    /// Slow-consumer check after a publish: `Some(reason)` if this connection must be
    /// closed — over the hard limit, over the soft limit for longer than allowed, or over
    /// the soft limit while the whole process is over its cap (`process_queued`: the bytes
    /// queued on every connection of the process, as the reactor counts them).
    pub(crate) fn slow_consumer(
        &mut self,
        cfg: &Config,
        now: Tick,
        process_queued: usize,
    ) -> Option<&'static str> {
        let s = &cfg.slow;
        if self.tx_len() > s.hard_limit {
            return Some("slow consumer: queue over the hard limit");
        }
        let since = self.tx.queue.over_soft_since(s.soft_limit, now)?;
        if now.saturating_sub(since) >= s.soft_for.as_millis() as Tick {
            return Some("slow consumer: queue over the soft limit for too long");
        }
        if process_queued > s.process_limit {
            return Some("slow consumer: server queues full");
        }
        None
    }

    /// Close with 1008 (policy violation) and a reason, e.g. a slow consumer. The close frame
    /// queues behind the backlog; the linger deadline drops a peer that never drains it.
    /// Returns the code to report.
    pub(crate) fn close_policy(
        &mut self,
        cfg: &Config,
        res: &mut Resources,
        code: u16,
        reason: &str,
    ) -> Option<u16> {
        if self.tx.state == State::Streaming {
            // An SSE or streaming response has no close frame: it just ends (EventSource will
            // reconnect and resume with Last-Event-ID).
            self.tx.state = State::Closing;
            return None;
        }
        if self.tx.state != State::Open {
            return None;
        }
        Outbox::new(&mut self.tx, res, cfg).fail(code, reason);
        self.rx.asm.clear();
        Some(code)
    }

    /// How a published message must be framed for this WebSocket (RFC 7692 §7.2.1).
    pub(crate) fn broadcast_form(&self) -> BroadcastForm {
        match self.tx.deflate.as_deref() {
            None => BroadcastForm::Plain,
            // No server context: a message deflated from an empty window by anyone fits.
            Some(d) if d.agreement.server_no_context_takeover() || d.streams.is_none() => {
                BroadcastForm::Fresh {
                    bits: d.agreement.server_max_window_bits(),
                }
            }
            Some(_) => BroadcastForm::OwnContext,
        }
    }

    /// Queue bytes encoded once for many connections (a publish: a WebSocket frame, an SSE
    /// event or a chunk). Returns false, queuing nothing, unless a WebSocket or a streaming
    /// response is open.
    pub(crate) fn push_shared(&mut self, frame: SharedFrame, res: &mut Resources) -> bool {
        if !matches!(self.tx.state, State::Open | State::Streaming) {
            return false;
        }
        self.tx.tail_pong = 0;
        res.queue_grew(frame.len());
        self.tx.queue.push_shared(frame, &mut res.segs);
        true
    }

    /// Drop the connection at once (I/O error, shutdown): returns the code to report, if any.
    pub(crate) fn abort(&mut self) -> Option<u16> {
        let report = self.on_eof();
        self.tx.state = State::Closed;
        report
    }

    /// Return every buffer to the pool (the connection is being freed), and its
    /// compression state: a released connection never compresses again.
    pub(crate) fn release(&mut self, res: &mut Resources) {
        self.rx.asm.clear();
        if let Some(r) = self.rx.ring.take() {
            res.pool.give(r);
        }
        res.queue_shrank(self.tx.queue.len());
        self.tx.queue.release(&mut res.pool, &mut res.segs);
        if let Some(streams) = self.tx.deflate.as_mut().and_then(|d| d.streams.take()) {
            drop(streams);
            res.compressors.streams_freed();
        }
    }
}

impl RxSide {
    /// The last step's handler queued its payload as a reference into the read ring
    /// (`TxQueue::push_rx`): hand the ring to tx before anything can write into it again.
    /// Bytes still unread in it (the start of the next frame, at most a pooled ring's worth:
    /// `Outbox::frame_rsv` asks for no more) move to an ordinary ring.
    fn hand_over(&mut self, queue: &mut TxQueue, pool: &mut BufPool) {
        let Some(mut ring) = self.ring.take() else {
            return;
        };
        if !ring.is_empty() {
            let mut own = pool.take();
            if own.free() < ring.len() {
                own.grow(ring.len()); // not reached (see above); correct if it were
            }
            let (a, b) = ring.as_slices();
            own.push(a);
            own.push(b);
            ring.consume(ring.len());
            self.ring = Some(own);
        }
        queue.lend(ring, pool);
    }

    fn step<'s>(&'s mut self, cfg: &Config, out: &mut Outbox<'_>, now: Tick) -> Step<'s> {
        match out.state() {
            State::Handshake => self.handshake(cfg, out),
            State::Body => self.body(cfg, out),
            // Pipelined requests wait until the held one is answered.
            State::Held => Step::Idle,
            State::Streaming => {
                // Nothing a client sends on a streaming response is meaningful.
                if let Some(r) = self.ring.as_mut() {
                    r.consume(r.len());
                }
                Step::Idle
            }
            State::Upgrading => {
                // The caller must answer an upgrade before asking for more; not answering is
                // a bug in the caller, answered safely.
                out.reject(500, "upgrade not answered");
                Step::Again
            }
            State::Open | State::CloseSent => self.frames(cfg, out, now),
            State::Closing | State::Draining | State::Closed => {
                // §4.2.1/§7.1.1: after a rejection or the close handshake nothing the peer
                // sends is processed.
                if let Some(r) = self.ring.as_mut() {
                    r.consume(r.len());
                }
                // Nothing of the request is pending any more: the rx ring may go back.
                if let Parser::Http(head) = &mut self.parser {
                    *head = Head::default();
                }
                self.asm.clear();
                Step::Idle
            }
        }
    }
}

#[cfg(test)]
impl TxSide {
    /// The context-keeping compression streams, if any (tests look at them).
    fn streams(&self) -> Option<&Streams> {
        self.deflate.as_ref()?.streams.as_deref()
    }
}
