//! Owns the `conn` property: a whole `Conn`, past a valid upgrade, driven by arbitrary client
//! bytes interleaved with the reactor's other inputs (the peer reading some output, the fake
//! clock advancing and firing deadlines, publishes, shutdown, the peer's FIN), the way
//! `reactor::Reactor` drives it. It never panics, its queues stay bounded (the reactor's
//! backpressure contract), the close is reported to the application at most once, every
//! connection ends by itself once the clock runs, all buffers go back to the pool, and what
//! goes on the wire is a 101 then well-formed server frames: the data frames exactly the
//! messages sent, in order, and nothing after a close frame.
//! Must not: use real sockets, threads or time.

use std::io::{self, IoSlice};
use std::rc::Rc;
use std::time::Duration;

use super::Input;
use crate::buf::BufPool;
use crate::config::Config;
use crate::conn::{Close, Conn, Event, Io, Push, Pushed, Received, Resources, Sent, State, Step};
use crate::pubsub::Published;
use crate::timer::Tick;
use crate::ws::close::is_valid_close_code;
use crate::ws::frame::parse_header;

const UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

struct Driver<'a> {
    conn: Conn,
    res: Resources,
    cfg: Config,
    now: Tick,
    /// Client bytes not yet read by the "reactor".
    wire_in: &'a [u8],
    /// Server bytes the peer has read.
    wire_out: Vec<u8>,
    /// Data frames queued, in order: (text, payload).
    sent: Vec<(bool, Vec<u8>)>,
    /// Close codes reported to the application.
    reported: Vec<u16>,
    /// The peer's FIN was seen.
    eof: bool,
    /// Largest tx queue allowed by the backpressure contract.
    tx_bound: usize,
}

/// `[config][op count][ops: 2 bytes each][client stream]`.
pub fn conn(data: &[u8]) {
    let mut input = Input::new(data);
    let c = input.byte();
    let n_ops = usize::from(input.byte());
    let ops = input.take(2 * n_ops);
    let wire = input.rest();

    let mut cfg = Config {
        // Small rings (bit 7) make short inputs reach what only large payloads do otherwise:
        // wrapping rings, payloads bigger than a pooled ring, echoes sent from the read ring.
        buffer_size: if c & 0x80 != 0 { 256 } else { 4096 },
        max_queued_bytes: [0, 256, 4096, 65536][usize::from(c & 3)],
        ..Config::default()
    };
    cfg.ws.max_frame_size = [125, 1000, 4096, 1 << 16][usize::from((c >> 2) & 3)];
    cfg.ws.max_message_size = [200, 3000, 1 << 16, 1 << 16][usize::from((c >> 4) & 3)];
    cfg.ws.max_frame_size = cfg.ws.max_frame_size.min(cfg.ws.max_message_size);
    cfg.ws.max_fragments = if c & 0x40 != 0 { 4 } else { 1024 };
    cfg.slow.hard_limit = 8192;
    cfg.slow.soft_limit = 2048;
    cfg.slow.soft_for = Duration::from_millis(300);
    cfg.timeouts.handshake = Duration::from_millis(1000);
    cfg.timeouts.idle = Duration::from_millis(3000);
    cfg.timeouts.ping_margin = Duration::from_millis(1000);
    cfg.timeouts.close_linger = Duration::from_millis(500);
    cfg.timeouts.message = Duration::from_millis(2000);
    // The reactor reads only while tx is at most max_queued_bytes; one read of a full rx ring
    // can then queue its echo, a reassembled message can come back whole, and publishes may
    // pile up to the slow-consumer hard limit (plus the one that crossed it).
    let tx_bound = cfg.max_queued_bytes
        + 2 * cfg.buffer_size
        + cfg.ws.max_message_size as usize
        + cfg.slow.hard_limit
        + 4096;

    let stream: Vec<u8> = [UPGRADE, wire].concat();
    let mut d = Driver {
        conn: Conn::new(0),
        res: Resources::new(BufPool::new(cfg.buffer_size, 4)),
        cfg,
        now: 0,
        wire_in: &stream,
        wire_out: Vec::new(),
        sent: Vec::new(),
        reported: Vec::new(),
        eof: false,
        tx_bound,
    };
    d.deliver(UPGRADE.len());
    d.peer_reads(usize::MAX);
    assert!(
        d.wire_out.starts_with(b"HTTP/1.1 101 "),
        "upgrade not accepted"
    );

    let mut published = 0u32;
    for op in ops.chunks(2) {
        if d.done() {
            break;
        }
        let (kind, arg) = (op[0], op.get(1).copied().unwrap_or(0));
        match kind % 8 {
            0..=2 => d.deliver(usize::from(arg) * 17 + 1),
            3 => d.peer_reads(usize::from(arg) * 37),
            4 => d.advance(Tick::from(arg) * 20),
            5 => {
                published += 1;
                d.publish(published, usize::from(arg) * 8);
            }
            6 if arg < 32 => {
                let code = d
                    .conn
                    .close(&d.cfg, &mut d.res, Close::GoingAway { retry_ms: 1234 });
                d.report(code);
            }
            7 if arg < 32 => d.peer_fin(),
            _ => d.deliver(usize::from(arg) + 1),
        }
        d.check_bounds();
    }
    // The rest of the input, then a peer that reads everything and a clock that runs: every
    // connection must end by itself.
    for _ in 0..10_000 {
        if d.wire_in.is_empty() || d.done() || d.eof {
            break;
        }
        let before = d.wire_in.len();
        d.deliver(4096);
        d.peer_reads(usize::MAX);
        d.check_bounds();
        if d.wire_in.len() == before {
            break; // not reading: closing, or the peer's bytes are discarded
        }
    }
    for _ in 0..16 {
        if d.done() {
            break;
        }
        d.peer_reads(usize::MAX);
        let Some(due) = d.conn.deadline(&d.cfg, d.now) else {
            break;
        };
        d.advance(due.saturating_sub(d.now));
    }
    d.peer_reads(usize::MAX);
    assert!(d.done(), "connection in {:?} never ended", d.conn.state());
    assert!(d.reported.len() <= 1, "close reported {:?}", d.reported);
    d.conn.close(&d.cfg, &mut d.res, Close::Abort);
    assert_eq!(d.res.pool.lent(), 0, "a ring was not given back");
    d.check_output();
}

impl Driver<'_> {
    /// Read up to `n` client bytes the way `Reactor::read` does: only while the connection
    /// wants to read, at most the ring's free space per read, the state machine after each.
    fn deliver(&mut self, mut n: usize) {
        if self.conn.interest(&self.cfg, &mut self.res).input {
            self.process();
        }
        while n > 0 && !self.wire_in.is_empty() && !self.done() {
            if !self.conn.interest(&self.cfg, &mut self.res).read {
                break;
            }
            let mut wire = Wire {
                input: &mut self.wire_in,
                limit: &mut n,
                output: None,
            };
            match self.conn.read_from(self.now, &mut self.res, &mut wire) {
                Ok(Received::Bytes { n: k, .. }) => assert!(k > 0),
                other => panic!("read_from gave {other:?} with bytes to read"),
            }
            self.process();
        }
        // What `Reactor::read` asks at its end: buffers the input no longer needs go back.
        self.conn.interest(&self.cfg, &mut self.res);
    }

    fn done(&self) -> bool {
        self.conn.status().state == State::Closed
    }

    fn process(&mut self) {
        let limit = 100_000;
        for _ in 0..limit {
            let (step, mut out) = self.conn.poll_event(&self.cfg, &mut self.res, self.now);
            match step {
                Step::Idle => return,
                Step::Again => {}
                Step::Event(Event::Upgrade(_, up)) => out.accept(&up, 0, None),
                Step::Event(Event::Request(..)) => out.reject(404, "not found"),
                Step::Event(Event::Message(m)) => {
                    let bytes = m.as_bytes().to_vec();
                    // A binary message starting with 0 asks the app to close (CloseSent).
                    if !m.is_text() && bytes.first() == Some(&0) {
                        out.close(4000, "asked to");
                    } else if out.send(m) {
                        self.sent.push((m.is_text(), bytes));
                    }
                }
                Step::Event(Event::Closed { code, .. }) => self.reported.push(code),
            }
        }
        panic!("poll_event did not return Idle in {limit} steps");
    }

    /// The peer reads up to `n` bytes of output (a short write when fewer than queued), the
    /// way `Reactor::flush` writes: until nothing is left or the peer stops taking bytes,
    /// then FIN once everything is said.
    fn peer_reads(&mut self, mut n: usize) {
        let mut none: &[u8] = &[];
        loop {
            let mut wire = Wire {
                input: &mut none,
                limit: &mut n,
                output: Some(&mut self.wire_out),
            };
            match self.conn.write_to(&mut self.res, &mut wire) {
                Ok(Sent::Nothing) => break,
                Ok(Sent::Wrote { n: 0, .. }) => break,
                Ok(Sent::Wrote { .. }) => {}
                Err(e) => panic!("the wire never fails: {e}"),
            }
        }
        // Nothing to do at FIN: the fake peer reads nothing after it.
        self.conn.take_shutdown();
    }

    /// Move the fake clock forward and fire the connection's deadline if it is due.
    fn advance(&mut self, by: Tick) {
        self.now += by;
        if self
            .conn
            .deadline(&self.cfg, self.now)
            .is_some_and(|d| d <= self.now)
        {
            let code = self.conn.on_timeout(&self.cfg, &mut self.res, self.now);
            self.report(code);
        }
        self.peer_reads(0);
    }

    /// A publish reaches this subscriber; a slow one is closed as `Reactor::deliver` does.
    fn publish(&mut self, n: u32, len: usize) {
        let payload: Vec<u8> = (0..len).map(|i| (i as u32 ^ n) as u8).collect();
        let p = Rc::new(Published::encode(u64::from(n), false, &payload));
        let push = Push::Shared(p.frame.clone());
        match self.conn.push(&self.cfg, &mut self.res, self.now, push) {
            Pushed::Queued => self.sent.push((false, payload)),
            Pushed::SlowClosed { report, .. } => {
                self.sent.push((false, payload));
                self.report(report);
            }
            Pushed::Refused => {}
            Pushed::Released => panic!("a WebSocket holds no poll"),
        }
    }

    fn peer_fin(&mut self) {
        if self.eof {
            return;
        }
        self.eof = true;
        self.wire_in = &[];
        let (mut none, mut limit): (&[u8], usize) = (&[], usize::MAX);
        let mut wire = Wire {
            input: &mut none,
            limit: &mut limit,
            output: None,
        };
        match self.conn.read_from(self.now, &mut self.res, &mut wire) {
            Ok(Received::Eof { report }) => self.report(report),
            other => panic!("read_from gave {other:?} at the end"),
        }
        self.peer_reads(0);
    }

    fn report(&mut self, code: Option<u16>) {
        self.reported.extend(code);
    }

    fn check_bounds(&self) {
        assert!(
            self.conn.tx_len() <= self.tx_bound,
            "tx queue of {} bytes, bound {} ({:?})",
            self.conn.tx_len(),
            self.tx_bound,
            self.conn.state()
        );
        assert!(
            self.reported.len() <= 1,
            "close reported {:?}",
            self.reported
        );
    }

    /// The wire, as a client would parse it: the 101 head, then frames.
    fn check_output(&self) {
        let out = &self.wire_out[..];
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("101 head ends")
            + 4;
        let mut rest = &out[end..];
        let mut data = Vec::new();
        let mut closed = false;
        while !rest.is_empty() {
            assert!(!closed, "{} bytes after the close frame", rest.len());
            let (h, n) = match parse_header(rest) {
                Ok(Some(x)) => x,
                Ok(None) => panic!("truncated server frame header: {rest:02x?}"),
                Err(e) => panic!("server sent an invalid frame: {e}"),
            };
            assert!(h.fin && h.rsv == 0 && h.mask.is_none(), "{h:?}");
            let len = h.payload_len as usize;
            assert!(n + len <= rest.len(), "a server frame cut short");
            let payload = &rest[n..n + len];
            match h.opcode as u8 {
                1 | 2 => data.push((h.opcode as u8 == 1, payload.to_vec())),
                8 => {
                    closed = true;
                    if !payload.is_empty() {
                        assert!(payload.len() >= 2);
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        assert!(is_valid_close_code(code), "sent close code {code}");
                        assert!(std::str::from_utf8(&payload[2..]).is_ok());
                    }
                }
                9 | 10 => assert!(len <= 125),
                op => panic!("server sent opcode {op}"),
            }
            rest = &rest[n + len..];
        }
        // Every message sent reached the wire in order, unless the connection was dropped
        // with output still queued.
        assert!(data.len() <= self.sent.len());
        assert_eq!(data[..], self.sent[..data.len()], "data frames differ");
    }
}

/// The fake socket: reads take client bytes (at most `limit` in all), writes hand server
/// bytes to the peer (at most `limit`), like a socket whose peer reads only so much.
struct Wire<'w, 'a> {
    input: &'w mut &'a [u8],
    limit: &'w mut usize,
    output: Option<&'w mut Vec<u8>>,
}

impl Io for Wire<'_, '_> {
    fn read(&mut self, a: &mut [u8], b: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        for buf in [a, b] {
            let k = buf.len().min(*self.limit).min(self.input.len());
            buf[..k].copy_from_slice(&self.input[..k]);
            *self.input = &self.input[k..];
            *self.limit -= k;
            got += k;
        }
        Ok(got)
    }

    fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let out = self.output.as_deref_mut().expect("a write to the wire");
        let mut taken = 0;
        for s in bufs {
            let k = s.len().min(*self.limit);
            out.extend_from_slice(&s[..k]);
            *self.limit -= k;
            taken += k;
        }
        Ok(taken)
    }
}
