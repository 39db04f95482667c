//! Owns `Outbox`: the only way bytes enter a connection's tx ring — the 101 or an error
//! response, data frames, pongs and close frames — and the state changes they imply. It
//! formats headers into a stack array and copies each payload at most once (DESIGN §4; a
//! large echo is not copied at all: it is sent from the read ring it arrived in). Sans-IO.
//! Must not: write to a socket or queue anything after a close frame (RFC 6455 §5.5.1).

use super::{
    DeflateState, Mode, Outcome, Resources, State, TxSide, HELD_FOR_ACK, HELD_KEEP_ALIVE, REPORTED,
};
use crate::config::Config;
use crate::http::upgrade::{self, WsUpgrade};
use crate::ws::close::encode_close_payload;
use crate::ws::deflate::{Agreement, Codec, RSV1};
use crate::ws::frame::{encode_header, FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::ws::message::Message;

/// A window onto one connection's tx side, lent out next to each event so the caller can
/// answer it.
#[derive(Debug)]
pub struct Outbox<'a> {
    tx: &'a mut TxSide,
    res: &'a mut Resources,
    /// Queue size past which the peer counts as not reading (`Config::max_queued_bytes`).
    limit: usize,
    /// Messages sent through this window, for the reactor's messages-out count.
    sent: u64,
    /// Shortest message compressed when permessage-deflate is in use
    /// (`CompressionConfig::threshold`).
    compress_min: usize,
    /// While the rx side holds the large read ring: the addresses of its storage's start and
    /// of the end of what was read (`Ring::filled_addrs`). A payload sent from inside it (an
    /// echo) is queued as a reference, once per step.
    pub(super) read_ring: Option<(usize, usize)>,
}

impl<'a> Outbox<'a> {
    pub(crate) fn new(tx: &'a mut TxSide, res: &'a mut Resources, cfg: &Config) -> Outbox<'a> {
        Outbox {
            tx,
            res,
            limit: cfg.max_queued_bytes,
            sent: 0,
            compress_min: cfg.compression.threshold,
            read_ring: None,
        }
    }

    /// Record an outcome for the reactor's metrics.
    pub(super) fn record(&mut self, o: Outcome) {
        self.res.record(o);
    }

    /// Messages sent through this outbox so far.
    pub fn messages_sent(&self) -> u64 {
        self.sent
    }

    pub fn state(&self) -> State {
        self.tx.state
    }

    pub(crate) fn set_state(&mut self, state: State) {
        self.tx.state = state;
    }

    /// Can messages be sent? Only while open (§7.1: nothing after our close frame).
    pub fn is_open(&self) -> bool {
        self.tx.state == State::Open
    }

    /// Bytes queued for this connection.
    pub fn queued(&self) -> usize {
        self.tx.queue.len()
    }

    /// Accept the upgrade (§4.2.2): queue the 101 and open the WebSocket. `route` names the
    /// handler that serves it; `protocol` must be one the client offered. The 101 carries the
    /// permessage-deflate response negotiated with the request, if any (RFC 7692 §5).
    pub fn accept(&mut self, up: &WsUpgrade<'_>, route: u16, protocol: Option<&str>) {
        debug_assert!(protocol.is_none_or(|p| up.protocols.contains(&p)));
        let mut head = Vec::with_capacity(160);
        let extensions = self.tx.deflate.as_ref().map(|d| d.agreement.response());
        upgrade::write_accept(up.key, protocol, extensions.as_deref(), &mut head);
        if let Some(d) = self.tx.deflate.as_mut() {
            if d.agreement.keeps_context() {
                d.streams = Some(Box::default());
                self.res.compressors.streams_created();
            }
        }
        self.res.record(Outcome::Answered(101));
        self.push(&head);
        self.tx.route = route;
        self.tx.mode = Mode::WebSocket;
        self.tx.state = State::Open;
        let positioned = matches!(
            protocol,
            Some(super::POSITIONS_PROTOCOL | super::POSITIONS_REFRESH_PROTOCOL)
        );
        self.tx.flags.set(super::POSITIONED, positioned);
    }

    /// Answer a plain HTTP request with a complete response (`response` holds status line,
    /// headers and body). With `keep_alive` the connection reads the next request (RFC 9112
    /// §9.3); otherwise it closes after the response.
    pub fn respond(&mut self, response: &[u8], keep_alive: bool) {
        self.push(response);
        self.tx.mode = Mode::Http;
        self.tx.cycle = self.tx.cycle.wrapping_add(1);
        self.tx.state = if keep_alive {
            State::Handshake
        } else {
            State::Closing
        };
        self.tx.flags.set(REPORTED, true);
        self.tx.flags.set(HELD_FOR_ACK, false);
    }

    /// Start a streaming response: `head` is the response head and any first bytes of the
    /// body (e.g. SSE `retry:` and replayed events). Messages then arrive as shared bytes
    /// (`Conn::push`) until the client goes away.
    pub fn start_stream(&mut self, mode: Mode, head: &[u8]) {
        debug_assert!(matches!(mode, Mode::Sse | Mode::Stream));
        self.push(head);
        self.tx.mode = mode;
        self.tx.flags.set(REPORTED, true);
        self.tx.state = State::Streaming;
    }

    /// The server is going away (graceful shutdown) and `retry_ms` is when this client should
    /// come back: a streaming response ends — an SSE stream first says when to reconnect
    /// (`retry:`, so EventSources come back spread like the WebSockets' 1001 hints), a
    /// chunked stream with its last chunk (RFC 9112 §7.1) —, a held long poll is answered
    /// 204 now, and a publish waiting for its acknowledgement still gets it, with
    /// `Connection: close`. Nothing is kept alive for another request.
    pub fn end_for_shutdown(&mut self, retry_ms: u64) {
        match self.tx.state {
            State::Streaming => {
                let mut tail = Vec::new();
                match self.tx.mode {
                    Mode::Sse => crate::sse::push_retry(&mut tail, retry_ms),
                    Mode::Stream => tail.extend_from_slice(b"0\r\n\r\n"),
                    _ => {}
                }
                self.push(&tail);
                self.tx.state = State::Closing;
            }
            State::Held if self.held_for_ack() => self.tx.flags.set(HELD_KEEP_ALIVE, false),
            State::Held => self.respond(
                b"HTTP/1.1 204 No Content\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                false,
            ),
            _ => {}
        }
    }

    /// Hold the request (a long poll) until `Conn::push` answers it or the hold deadline;
    /// `keep_alive` is the request's choice for after the response.
    pub fn hold(&mut self, keep_alive: bool) {
        self.tx.flags.set(HELD_KEEP_ALIVE, keep_alive);
        self.tx.mode = Mode::Poll;
        self.tx.flags.set(REPORTED, true);
        self.tx.state = State::Held;
    }

    /// Hold a request until someone else answers it (`Conn::push` with `Push::Held`): a
    /// publish waiting for the broker's acknowledgement. Its deadline (the hold's) answers
    /// 503 instead of a long poll's 204: nothing is acknowledged that was not confirmed.
    pub fn hold_for_ack(&mut self, keep_alive: bool) {
        self.tx.flags.set(HELD_KEEP_ALIVE, keep_alive);
        self.tx.flags.set(HELD_FOR_ACK, true);
        self.tx.flags.set(REPORTED, true);
        self.tx.state = State::Held;
    }

    /// The held request waits for an acknowledgement (`hold_for_ack`), not a message.
    pub(crate) fn held_for_ack(&self) -> bool {
        self.tx.flags.has(HELD_FOR_ACK)
    }

    pub(crate) fn held_keep_alive(&self) -> bool {
        self.tx.flags.has(HELD_KEEP_ALIVE)
    }

    /// Refuse the request with an HTTP status and `Connection: close`; nothing more the
    /// peer sends is processed (§4.2.1).
    pub fn reject(&mut self, status: u16, reason: &str) {
        let mut resp = Vec::with_capacity(192);
        upgrade::write_status(status, reason, &mut resp);
        self.res.record(Outcome::Answered(status));
        self.push(&resp);
        self.tx.flags.set(REPORTED, true);
        self.tx.state = State::Closing;
    }

    /// Send a message. Returns false (and sends nothing) unless the connection is open.
    pub fn send(&mut self, msg: Message<'_>) -> bool {
        self.send_data(msg.is_text(), msg.as_bytes())
    }

    /// `send` for a payload already known to be valid UTF-8 when `text` (a published one).
    pub(crate) fn send_data(&mut self, text: bool, payload: &[u8]) -> bool {
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        self.is_open() && {
            self.data_frame(opcode, payload);
            self.sent += 1;
            true
        }
    }

    pub fn send_text(&mut self, text: &str) -> bool {
        self.send(Message::Text(text))
    }

    pub fn send_binary(&mut self, data: &[u8]) -> bool {
        self.send(Message::Binary(data))
    }

    /// Start the closing handshake (§7.1.2): send a close frame and wait for the peer's.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.is_open() {
            self.close_frame(Some(code), reason);
            self.tx.state = State::CloseSent;
        }
    }

    /// Turn away a WebSocket just accepted, before any handler saw it: a close frame with
    /// `code` and `reason`, then the closing handshake as usual; the application is never
    /// told (it never opened it).
    pub fn turn_away(&mut self, code: u16, reason: &str) {
        self.close(code, reason);
        self.tx.flags.set(REPORTED, true);
    }

    /// Fail the connection after a protocol error (§7.1.7): send a close with `code`, then
    /// close the TCP connection without waiting for the peer's close — after a framing error
    /// the byte stream cannot be trusted to carry one. The application counts as told.
    pub(crate) fn fail(&mut self, code: u16, reason: &str) {
        if self.is_open() {
            self.close_frame(Some(code), reason);
        }
        self.tx.state = State::Closing;
        self.tx.flags.set(REPORTED, true);
    }

    /// Queue a close frame; `None` sends an empty payload (no status code).
    pub(crate) fn close_frame(&mut self, code: Option<u16>, reason: &str) {
        let mut payload = [0u8; 125];
        let n = match code {
            Some(code) => encode_close_payload(code, reason, &mut payload),
            None => 0,
        };
        self.res.record(Outcome::CloseSent(code.unwrap_or(1005)));
        self.frame(OpCode::Close, &payload[..n]);
    }

    /// Answer a ping (§5.5.2). Every ping is answered while the peer reads; once its queue
    /// is over the limit, a pong still unsent at the tail of tx is replaced by the newer one
    /// (§5.5.3 allows answering only the most recent ping), so a ping flood from a peer that
    /// does not read costs one pending pong.
    pub(crate) fn pong(&mut self, payload: &[u8]) {
        let tail = self.tx.tail_pong as usize;
        if tail > 0 && self.queued() > self.limit && self.tx.queue.truncate_back(tail) {
            self.res.queue_shrank(tail);
        }
        let n = self.frame(OpCode::Pong, payload);
        self.tx.tail_pong = n as u8;
    }

    /// Send a heartbeat ping (§5.5.2).
    pub(crate) fn ping(&mut self, payload: &[u8]) {
        if self.is_open() {
            self.frame(OpCode::Ping, payload);
        }
    }

    /// Tell the application once that the connection is finished.
    pub(crate) fn report<'s>(&mut self, code: u16, reason: &'s str) -> super::Step<'s> {
        if self.tx.flags.has(REPORTED) {
            return super::Step::Again;
        }
        self.tx.flags.set(REPORTED, true);
        super::Step::Event(super::Event::Closed { code, reason })
    }

    /// Queue one unmasked server frame (§5.1: servers never mask). Returns its length.
    fn frame(&mut self, opcode: OpCode, payload: &[u8]) -> usize {
        self.frame_rsv(opcode, 0, payload)
    }

    /// `frame` with RSV bits (RSV1: a compressed message, RFC 7692 §6).
    fn frame_rsv(&mut self, opcode: OpCode, rsv: u8, payload: &[u8]) -> usize {
        let h = FrameHeader {
            fin: true,
            rsv,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&h, &mut head);
        // Growth is bounded: the reactor stops reading from a connection whose queue is over
        // its limit, and publishes close a subscriber over the slow-consumer limit.
        self.res.queue_grew(n + payload.len());
        if payload.len() > self.res.pool.buffer_size() {
            // A payload larger than a pooled ring goes out as its own writev segment. If it
            // is the message just read, still in the large read ring, it is sent from there
            // (the ring follows at the end of the step, `Conn::poll_event`); otherwise it
            // costs one allocation and one copy, instead of growing (and zero-filling) a ring.
            self.tx.queue.push(&mut self.res.pool, &[&head[..n]]);
            let max_behind = self.res.pool.buffer_size();
            match self
                .read_ring
                .and_then(|r| offset_in(r, payload, max_behind))
            {
                Some(at) => {
                    self.read_ring = None;
                    self.tx.queue.push_rx(at, payload.len(), &mut self.res.segs);
                }
                None => self
                    .tx
                    .queue
                    .push_shared(payload.into(), &mut self.res.segs),
            }
        } else {
            self.tx
                .queue
                .push_frame(&mut self.res.pool, &head, n, payload);
        }
        self.tx.tail_pong = 0;
        n + payload.len()
    }

    /// Queue raw bytes for this connection only (a keep-alive comment, a replayed event).
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.push(bytes);
    }

    fn push(&mut self, bytes: &[u8]) {
        self.res.queue_grew(bytes.len());
        self.tx.queue.push(&mut self.res.pool, &[bytes]);
        self.tx.tail_pong = 0;
    }
}

/// permessage-deflate (RFC 7692).
impl Outbox<'_> {
    /// The connection's permessage-deflate codec, if it was negotiated.
    pub(crate) fn deflate(&mut self) -> Option<Codec<'_>> {
        let d = self.tx.deflate.as_deref_mut()?;
        Some(Codec::new(
            d.agreement,
            d.streams.as_deref_mut(),
            &mut self.res.compressors,
        ))
    }

    /// The compression mode to negotiate a new WebSocket with (`Compressors::mode_for_new`).
    pub(crate) fn compression_mode(&self, cfg: &Config) -> crate::config::CompressionMode {
        let c = &cfg.compression;
        self.res.compressors.mode_for_new(c.mode, c.max_dedicated)
    }

    /// Record the agreement the 101 will answer with (before `accept`).
    pub(crate) fn set_deflate(&mut self, agreement: Option<Agreement>) {
        self.tx.deflate = agreement.map(|agreement| {
            Box::new(DeflateState {
                agreement,
                streams: None,
            })
        });
    }

    /// Queue a data message as one frame: compressed, with RSV1 (§6), when the extension is
    /// in use and the codec chose to compress it; otherwise as it is.
    fn data_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let min = self.compress_min;
        match self.deflate().and_then(|mut c| c.compress(payload, min)) {
            Some(z) => {
                self.frame_rsv(opcode, RSV1, &z);
                self.res.compressors.recycle(z);
            }
            None => {
                self.frame(opcode, payload);
            }
        }
    }
}

/// Where `payload` starts in the read ring whose storage starts at `start` and whose read
/// bytes end at `end`, if it lies inside them with at most `max_behind` bytes read after it.
/// Those bytes (the start of the next frame) must move to an ordinary ring when tx takes the
/// ring; more of them (pipelined messages) would cost a large copy, so those echoes are copied
/// instead, and the ring may be taken for the last one.
fn offset_in((start, end): (usize, usize), payload: &[u8], max_behind: usize) -> Option<usize> {
    let at = payload.as_ptr() as usize;
    let stop = at + payload.len();
    (start <= at && stop <= end && end - stop <= max_behind).then(|| at - start)
}
