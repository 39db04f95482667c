//! Owns the `storm` mode (issue 20): N subscribers of one topic over `wsloop.positions` that
//! ride out a graceful restart of the server. Each keeps its last position and, whenever its
//! connection ends, reconnects with `?since=LAST`: with `--hints` after the wait the close
//! reason's `retry-after-ms=` asks for (else full-jitter exponential backoff), without them at
//! once after a close and a fixed delay after a failed attempt. It checks that every client's
//! positions strictly increase, counts gap notices, counts connection attempts and 101s per
//! bucket from the first 1001, times how long until every client is back, and at the end
//! compares what each client received with the positions a publisher had acknowledged
//! (`--acked FILE`). Its own event loop (one mio `Poll`); what a client decides and checks is
//! `reconnect`'s, formatting `report`'s.
//! Must not: let one client's failure stop the others, panic on anything a server sends, or
//! count a client back before a message reached it on its new connection.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use wsloop::client::frames::{close_frame, encode_masked};
use wsloop::client::handshake::{self, HandshakeError};
use wsloop::ws::close::parse_close_payload;
use wsloop::ws::frame::{parse_header, OpCode};

use crate::engine::{connect, Rng};
use crate::reconnect::{
    hint_ms, parse_acked, parse_message, Ended, Message, Policy, Received, SUBPROTOCOL,
};
use crate::report::{AckCheck, Failures, Output, StormReport};
use crate::sys;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// Largest message accepted from the server (a position message is ~50 bytes).
const MAX_MESSAGE: u64 = 1 << 20;
/// How often attempt deadlines, the --acked file and the settle condition are checked.
const SWEEP: u64 = 100 * MS;
/// How long the closing handshakes at the end may take before sockets are dropped.
const CLOSE_GRACE: u64 = 2 * SEC;
/// One read buffer shared by every client.
const SCRATCH: usize = 256 * 1024;
/// Most buckets kept (at 100 ms, almost three hours).
const MAX_BUCKETS: usize = 100_000;

/// A validated storm run (built by wsloop-load.rs from the command line).
#[derive(Debug, Clone)]
pub struct Spec {
    pub clients: usize,
    pub addr: SocketAddrV4,
    pub host: String,
    /// `/topic/NAME`, without a query (`?since=` is added on reconnects).
    pub path: String,
    pub source_ips: Vec<Ipv4Addr>,
    pub connect_concurrency: usize,
    /// Every client must be up this long after the start, or the run ends.
    pub connect_timeout_ns: u64,
    /// One attempt (connect + 101) may take this long.
    pub attempt_timeout_ns: u64,
    pub policy: Policy,
    pub acked: Option<PathBuf>,
    pub settle_ns: u64,
    /// The whole run ends this long after the start at the latest.
    pub duration_ns: u64,
    pub bucket_ns: u64,
    pub output: Output,
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started yet (initial stage).
    Idle,
    /// Between two connections, until `due_ns`.
    Waiting,
    Connecting,
    Handshake,
    Open,
    /// Our close frame is sent (end of the run).
    Closing,
    Done,
}

/// One subscriber, across all its connections.
struct Client {
    sock: Option<TcpStream>,
    generation: u32,
    phase: Phase,
    /// When this attempt began (attempt timeout).
    started_ns: u64,
    /// Waiting: when to try again.
    due_ns: u64,
    key: String,
    /// The handshake response so far, then undecoded frame bytes.
    rx: Vec<u8>,
    scanned: usize,
    tx: Vec<u8>,
    tx_pos: usize,
    writable: bool,
    /// A fragmented message so far.
    msg: Vec<u8>,
    msg_open: bool,
    got: Received,
    /// Attempts since the last connection that worked.
    attempt: u32,
    /// A message arrived on the current connection.
    worked: bool,
    /// The current connection's 101 selected the subprotocol (see `received`).
    selected: bool,
    /// Lost its connection since the run began and no message has reached it on a new one.
    down: bool,
}

impl Client {
    fn new() -> Client {
        Client {
            sock: None,
            generation: 0,
            phase: Phase::Idle,
            started_ns: 0,
            due_ns: 0,
            key: String::new(),
            rx: Vec::new(),
            scanned: 0,
            tx: Vec::new(),
            tx_pos: 0,
            writable: false,
            msg: Vec::new(),
            msg_open: false,
            got: Received::default(),
            attempt: 0,
            worked: false,
            selected: false,
            down: false,
        }
    }
}

/// Why an attempt or a connection failed without a close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Refused,
    Reset,
    /// Closed (FIN) without a close frame, before or after the 101.
    Eof,
    Timeout,
    /// An HTTP status other than 101.
    Status,
    /// Any other socket error, or a protocol error (counted as an error too).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Opening every client for the first time.
    Connecting,
    /// Everyone was up: waiting for the restart(s) and the --acked file.
    Running,
    /// The --acked file is read: waiting until every client has the last position.
    Settling,
    Closing,
    Finished,
}

/// What a frame asks of us, decided while the client's buffers are borrowed.
enum Act {
    Message(Result<Message, String>),
    Pong(Vec<u8>),
    Close(u16, String),
    Fail(String),
}

struct Storm<'s> {
    spec: &'s Spec,
    poll: Poll,
    clients: Vec<Client>,
    scratch: Vec<u8>,
    rng: Rng,
    /// Clients waiting to reconnect, by due time.
    wake: BinaryHeap<Reverse<(u64, usize)>>,
    stage: Stage,
    t_start: u64,
    stage_deadline: u64,
    next_open: usize,
    /// Clients connecting or handshaking; clients open; clients holding a socket.
    pending: usize,
    open: usize,
    live: usize,
    /// Clients down (see `Client::down`).
    down: usize,
    next_sweep: u64,
    next_tick: u64,
    tick_no: u64,
    /// Counters at the last progress line.
    last_msgs: u64,
    last_upgrades: u64,
    last_attempts: u64,
    acked: Option<Vec<u64>>,
    r: StormReport,
    t_first_1001: Option<u64>,
}

/// Run the storm and report.
pub fn run(spec: &Spec) -> io::Result<StormReport> {
    let mut s = Storm::new(spec)?;
    let mut events = Events::with_capacity(1024);
    loop {
        let now = sys::now_ns();
        s.tick(now);
        if s.stage == Stage::Finished {
            break;
        }
        let timeout = Duration::from_nanos(s.next_deadline(now).saturating_sub(now));
        if let Err(e) = s.poll.poll(&mut events, Some(timeout)) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            let idx = ev.token().0 & 0xFFFF_FFFF;
            let generation = (ev.token().0 >> 32) as u32;
            match s.clients.get(idx) {
                Some(c) if c.generation == generation && c.sock.is_some() => s.on_event(idx, ev),
                _ => {} // a socket since replaced
            }
        }
    }
    Ok(s.report())
}

impl<'s> Storm<'s> {
    fn new(spec: &'s Spec) -> io::Result<Storm<'s>> {
        let now = sys::now_ns();
        Ok(Storm {
            spec,
            poll: Poll::new()?,
            clients: (0..spec.clients).map(|_| Client::new()).collect(),
            scratch: vec![0u8; SCRATCH],
            rng: Rng(sys::random_seed()),
            wake: BinaryHeap::new(),
            stage: Stage::Connecting,
            t_start: now,
            stage_deadline: now.saturating_add(spec.connect_timeout_ns),
            next_open: 0,
            pending: 0,
            open: 0,
            live: 0,
            down: 0,
            next_sweep: now + SWEEP,
            next_tick: now + SEC,
            tick_no: 0,
            last_msgs: 0,
            last_upgrades: 0,
            last_attempts: 0,
            acked: None,
            r: StormReport {
                clients: spec.clients,
                hints: matches!(spec.policy, Policy::Hints { .. }),
                policy: describe(spec.policy),
                bucket_ms: spec.bucket_ns as f64 / 1e6,
                ..StormReport::default()
            },
            t_first_1001: None,
        })
    }

    // ---- timeline -------------------------------------------------------------------------

    fn tick(&mut self, now: u64) {
        if sys::stop_requested() && self.stage < Stage::Closing {
            self.error(None, "stopped by a signal".into());
            self.begin_close(now);
        }
        while let Some(&Reverse((due, idx))) = self.wake.peek() {
            if due > now {
                break;
            }
            self.wake.pop();
            let c = &self.clients[idx];
            if c.phase == Phase::Waiting && c.due_ns == due && self.stage < Stage::Closing {
                self.open(idx, now);
            }
        }
        if self.stage == Stage::Connecting {
            while self.pending < self.spec.connect_concurrency
                && self.next_open < self.clients.len()
            {
                let idx = self.next_open;
                self.next_open += 1;
                self.open(idx, now);
            }
            if self.open == self.clients.len() {
                self.r.setup_s = (now - self.t_start) as f64 / 1e9;
                eprintln!(
                    "wsloop-load: {}/{} connections up after {:.2} s",
                    self.open,
                    self.clients.len(),
                    self.r.setup_s
                );
                self.stage = Stage::Running;
                self.stage_deadline = self.t_start.saturating_add(self.spec.duration_ns);
            } else if now >= self.stage_deadline {
                let msg = format!(
                    "only {} of {} clients up after --connect-timeout",
                    self.open,
                    self.clients.len()
                );
                self.error(None, msg);
                self.begin_close(now);
            }
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP;
            self.sweep(now);
        }
        match self.stage {
            Stage::Running | Stage::Settling if now >= self.stage_deadline => {
                if self.stage == Stage::Running && self.spec.acked.is_some() {
                    self.error(
                        None,
                        "--duration ran out before the --acked file appeared".into(),
                    );
                }
                self.begin_close(now);
            }
            Stage::Closing if self.live == 0 || now >= self.stage_deadline => {
                for idx in 0..self.clients.len() {
                    self.release(idx, Phase::Done);
                }
                self.stage = Stage::Finished;
            }
            _ => {}
        }
        if now >= self.next_tick && self.stage < Stage::Finished {
            self.progress(now);
        }
    }

    /// Attempt deadlines; the --acked file; whether everyone has the last position.
    fn sweep(&mut self, now: u64) {
        for idx in 0..self.clients.len() {
            let c = &self.clients[idx];
            if matches!(c.phase, Phase::Connecting | Phase::Handshake)
                && now.saturating_sub(c.started_ns) >= self.spec.attempt_timeout_ns
            {
                self.end(idx, now, Ended::Failed { worked: false }, Why::Timeout);
            }
        }
        if self.stage == Stage::Running {
            if let Some(path) = &self.spec.acked {
                if path.exists() {
                    let read = std::fs::read_to_string(path)
                        .map_err(|e| format!("--acked {}: {e}", path.display()))
                        .and_then(|t| {
                            parse_acked(&t).map_err(|e| format!("--acked {}: {e}", path.display()))
                        });
                    match read {
                        Ok(v) => {
                            self.acked = Some(v);
                            self.stage = Stage::Settling;
                            self.stage_deadline = now.saturating_add(self.spec.settle_ns);
                        }
                        Err(e) => {
                            self.error(None, e);
                            self.begin_close(now);
                        }
                    }
                }
            }
        }
        if self.stage == Stage::Settling {
            let last = self.acked.as_ref().and_then(|a| a.last().copied());
            let settled = self.clients.iter().all(|c| {
                c.phase == Phase::Open && last.is_none_or(|l| c.got.last().is_some_and(|g| g >= l))
            });
            if settled {
                self.begin_close(now);
            }
        }
    }

    fn next_deadline(&self, now: u64) -> u64 {
        let mut d = self.next_tick.min(self.next_sweep);
        if let Some(&Reverse((due, _))) = self.wake.peek() {
            d = d.min(due);
        }
        if self.stage != Stage::Finished {
            d = d.min(self.stage_deadline);
        }
        if self.stage == Stage::Connecting
            && self.pending < self.spec.connect_concurrency
            && self.next_open < self.clients.len()
        {
            d = now;
        }
        d.max(now)
    }

    fn progress(&mut self, now: u64) {
        while self.next_tick <= now {
            self.next_tick += SEC;
        }
        self.tick_no += 1;
        let stage = match self.stage {
            Stage::Connecting => "connect",
            Stage::Running => "run",
            Stage::Settling => "settle",
            _ => "close",
        };
        let r = &self.r;
        let (msgs, upgrades, attempts) = (r.messages, r.upgrades_total, r.attempts_total);
        if !self.spec.quiet && self.spec.output != Output::Child {
            eprintln!(
                "[{:>4}s] {stage:<8} open {}/{}  down {}  {} attempts/s  {} 101s/s  {} msgs/s  \
                 1013 {}  refused {}  errors {}",
                self.tick_no,
                self.open,
                self.clients.len(),
                self.down,
                attempts - self.last_attempts,
                upgrades - self.last_upgrades,
                msgs - self.last_msgs,
                r.storm.closes_1013,
                r.storm.refused,
                r.errors
            );
        }
        (self.last_msgs, self.last_upgrades, self.last_attempts) = (msgs, upgrades, attempts);
    }

    /// The bucket `now` falls in, counted from the first 1001 (none before it).
    fn bucket(&mut self, now: u64) -> Option<usize> {
        let i = (now.saturating_sub(self.t_first_1001?) / self.spec.bucket_ns) as usize;
        if i >= MAX_BUCKETS {
            return None;
        }
        if self.r.attempts.len() <= i {
            self.r.attempts.resize(i + 1, 0);
            self.r.upgrades.resize(i + 1, 0);
        }
        Some(i)
    }

    /// End of the run: every open client sends a close 1000; the others are dropped.
    fn begin_close(&mut self, now: u64) {
        self.stage = Stage::Closing;
        self.stage_deadline = now + CLOSE_GRACE;
        for idx in 0..self.clients.len() {
            if self.clients[idx].phase == Phase::Open {
                let frame = close_echo(1000, self.rng.mask());
                let c = &mut self.clients[idx];
                c.tx.extend_from_slice(&frame);
                c.phase = Phase::Closing;
                self.open -= 1;
                self.flush(idx, now);
            } else if self.clients[idx].phase != Phase::Closing {
                self.release(idx, Phase::Done);
            }
        }
    }

    // ---- connections ------------------------------------------------------------------------

    fn open(&mut self, idx: usize, now: u64) {
        let spec = self.spec;
        let key = handshake::key_for_nonce(&self.rng.nonce());
        let c = &mut self.clients[idx];
        c.generation = c.generation.wrapping_add(1);
        c.phase = Phase::Connecting;
        c.started_ns = now;
        c.rx.clear();
        c.scanned = 0;
        c.tx.clear();
        c.tx_pos = 0;
        c.writable = false;
        c.msg.clear();
        c.msg_open = false;
        c.worked = false;
        c.key = key;
        let (generation, since) = (c.generation, c.got.last());
        // The request goes out once connected: the path resumes after the last position.
        let path = match since {
            Some(p) => format!("{}?since={p}", spec.path),
            None => spec.path.clone(),
        };
        let mut req = handshake::request(&spec.host, &path, &c.key);
        req.truncate(req.len() - 2); // before the blank line that ends the head
        req.extend_from_slice(format!("Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n").as_bytes());
        c.tx = req;
        self.pending += 1;
        self.r.attempts_total += 1;
        if let Some(b) = self.bucket(now) {
            self.r.attempts[b] += 1;
        }
        let source =
            (!spec.source_ips.is_empty()).then(|| spec.source_ips[idx % spec.source_ips.len()]);
        let res = connect(spec.addr, source).and_then(|mut sock| {
            let token = Token(((generation as usize) << 32) | idx);
            self.poll
                .registry()
                .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                .map(|()| sock)
        });
        match res {
            Ok(sock) => {
                self.clients[idx].sock = Some(sock);
                self.live += 1;
            }
            Err(e) => self.io_failed(idx, now, &e),
        }
    }

    fn on_event(&mut self, idx: usize, ev: &mio::event::Event) {
        let now = sys::now_ns();
        if self.clients[idx].phase == Phase::Connecting {
            self.check_connected(idx, now);
            if self.clients[idx].phase != Phase::Handshake {
                return;
            }
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.read(idx, now, ev.is_read_closed() || ev.is_error());
        }
        if ev.is_writable() && self.clients[idx].sock.is_some() {
            self.clients[idx].writable = true;
            self.flush(idx, now);
        }
    }

    /// A non-blocking connect finished, or failed (mio: `take_error`, then `peer_addr`).
    fn check_connected(&mut self, idx: usize, now: u64) {
        let Some(sock) = self.clients[idx].sock.as_ref() else {
            return;
        };
        let err = match sock.take_error() {
            Ok(None) => match sock.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == ErrorKind::NotConnected => return, // not yet
                Err(e) => Some(e),
            },
            Ok(Some(e)) | Err(e) => Some(e),
        };
        if let Some(e) = err {
            return self.io_failed(idx, now, &e);
        }
        let c = &mut self.clients[idx];
        c.phase = Phase::Handshake;
        c.writable = true;
        self.flush(idx, now);
    }

    /// Read until WouldBlock, or a short read unless `to_eof` (then no edge will follow).
    fn read(&mut self, idx: usize, now: u64, to_eof: bool) {
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(sock) = self.clients[idx].sock.as_ref() {
            match (&*sock).read(&mut scratch) {
                Ok(0) => {
                    self.eof(idx, now);
                    break;
                }
                Ok(n) => {
                    self.received(idx, &scratch[..n], now);
                    if n < scratch.len() && !to_eof {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.io_failed(idx, now, &e);
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    fn received(&mut self, idx: usize, bytes: &[u8], now: u64) {
        let c = &mut self.clients[idx];
        c.rx.extend_from_slice(bytes);
        if c.phase == Phase::Handshake {
            match handshake::check_response(&c.rx, c.scanned, &c.key) {
                Ok(None) => {
                    c.scanned = c.rx.len();
                    return;
                }
                Ok(Some(head)) => {
                    let agreed = String::from_utf8_lossy(&c.rx[..head])
                        .to_ascii_lowercase()
                        .contains(&format!("sec-websocket-protocol: {SUBPROTOCOL}"));
                    c.rx.drain(..head);
                    // RFC 6455 lets a server select no subprotocol; WHATWG clients (browsers)
                    // fail such a handshake. wsloop's turn-away (1013) answers so: read on to
                    // its close and count it; a message on such a connection is an error.
                    c.selected = agreed;
                    if !agreed {
                        self.fails().unselected += 1;
                    }
                    self.upgraded(idx, now);
                }
                Err(HandshakeError::Status { code, reason }) => {
                    self.fails().statuses += 1;
                    self.fails()
                        .first_status
                        .get_or_insert_with(|| format!("{code} {reason}"));
                    return self.end(idx, now, Ended::Failed { worked: false }, Why::Status);
                }
                Err(e) => {
                    self.error(Some(idx), e.to_string());
                    return self.end(idx, now, Ended::Failed { worked: false }, Why::Other);
                }
            }
        }
        if matches!(self.clients[idx].phase, Phase::Open | Phase::Closing) {
            self.frames(idx, now);
        }
    }

    /// A valid 101 selecting the subprotocol.
    fn upgraded(&mut self, idx: usize, now: u64) {
        self.clients[idx].phase = Phase::Open;
        self.pending -= 1;
        self.open += 1;
        self.r.upgrades_total += 1;
        if let Some(b) = self.bucket(now) {
            self.r.upgrades[b] += 1;
        }
        if self.open == self.clients.len() && self.t_first_1001.is_some() {
            self.r.all_open_s = self.since_1001(now);
        }
    }

    /// Decode the complete frames in the client's buffer and act on each.
    fn frames(&mut self, idx: usize, now: u64) {
        let mut rx = std::mem::take(&mut self.clients[idx].rx);
        let mut used = 0;
        while let Some((act, n)) = self.next_frame(idx, &rx[used..]) {
            used += n;
            let Some(act) = act else { continue };
            let phase = self.clients[idx].phase;
            match act {
                Act::Message(_) if phase == Phase::Closing => {}
                Act::Message(Ok(_)) if !self.clients[idx].selected => {
                    let msg =
                        format!("a message on a connection whose 101 did not select {SUBPROTOCOL}");
                    self.error(Some(idx), msg);
                    self.end(idx, now, Ended::Failed { worked: false }, Why::Other);
                }
                Act::Message(Ok(Message::Position(p))) => self.position(idx, p, now),
                Act::Message(Ok(Message::Gap)) => self.r.gaps += 1,
                Act::Message(Err(e)) | Act::Fail(e) => {
                    self.error(Some(idx), e);
                    self.end(idx, now, Ended::Failed { worked: false }, Why::Other);
                }
                Act::Pong(payload) => {
                    let mut frame = Vec::with_capacity(6 + payload.len());
                    encode_masked(OpCode::Pong, &payload, self.rng.mask(), &mut frame);
                    self.clients[idx].tx.extend_from_slice(&frame);
                    self.flush(idx, now);
                }
                Act::Close(code, reason) => self.server_closed(idx, code, &reason, now),
            }
            if self.clients[idx].sock.is_none() {
                return; // ended: what is left of its bytes goes with it
            }
        }
        rx.drain(..used);
        self.clients[idx].rx = rx;
    }

    /// The frame at the front of `buf`: `None` until it is complete; else what it asks and
    /// its length (the act is `None` for a fragment of an unfinished message).
    fn next_frame(&mut self, idx: usize, buf: &[u8]) -> Option<(Option<Act>, usize)> {
        let (h, hl) = match parse_header(buf) {
            Ok(Some(h)) => h,
            Ok(None) => return None,
            Err(e) => return Some((Some(Act::Fail(format!("server frame: {e}"))), buf.len())),
        };
        if h.mask.is_some() || h.rsv != 0 || h.payload_len > MAX_MESSAGE {
            let why = format!(
                "server frame: masked {}, rsv {}, {} bytes",
                h.mask.is_some(),
                h.rsv,
                h.payload_len
            );
            return Some((Some(Act::Fail(why)), buf.len()));
        }
        let end = hl + h.payload_len as usize;
        let payload = buf.get(hl..end)?;
        let c = &mut self.clients[idx];
        let act = match h.opcode {
            OpCode::Ping => Some(Act::Pong(payload.to_vec())),
            OpCode::Pong => None,
            OpCode::Close => Some(match parse_close_payload(payload) {
                Ok(Some((code, reason))) => Act::Close(code, reason.to_string()),
                Ok(None) => Act::Close(1005, String::new()),
                Err(e) => Act::Fail(format!("invalid close payload: {e}")),
            }),
            OpCode::Continuation if !c.msg_open => {
                Some(Act::Fail("continuation frame without a message".into()))
            }
            OpCode::Text | OpCode::Binary if c.msg_open => {
                Some(Act::Fail("new message inside a fragmented one".into()))
            }
            _ if c.msg.len() as u64 + h.payload_len > MAX_MESSAGE => {
                Some(Act::Fail("message over 1 MiB".into()))
            }
            _ if h.fin && !c.msg_open => Some(Act::Message(parse_message(payload))),
            _ => {
                c.msg.extend_from_slice(payload);
                c.msg_open = !h.fin;
                (!c.msg_open).then(|| {
                    let m = std::mem::take(&mut c.msg);
                    Act::Message(parse_message(&m))
                })
            }
        };
        Some((act, end))
    }

    fn position(&mut self, idx: usize, p: u64, now: u64) {
        self.r.messages += 1;
        let c = &mut self.clients[idx];
        if !c.got.push(p) {
            let last = c.got.last().unwrap_or(0);
            self.error(
                Some(idx),
                format!("position {p} after {last}: repeated or out of order"),
            );
        }
        let c = &mut self.clients[idx];
        if !c.worked {
            c.worked = true;
            if c.down {
                c.down = false;
                self.down -= 1;
                if self.down == 0 && self.t_first_1001.is_some() {
                    self.r.all_back_s = self.since_1001(now);
                }
            }
        }
    }

    /// The server sent a close frame: echo it, drop the connection, plan the next.
    fn server_closed(&mut self, idx: usize, code: u16, reason: &str, now: u64) {
        if self.clients[idx].phase == Phase::Closing {
            return self.release(idx, Phase::Done);
        }
        let hint = hint_ms(reason);
        match code {
            1001 => {
                self.t_first_1001.get_or_insert(now);
                self.r.closes_1001 += 1;
                self.r
                    .hints_1001
                    .extend(hint.map(|h| h.min(u32::MAX as u64) as u32));
            }
            1013 => {
                self.fails().closes_1013 += 1;
                self.fails()
                    .hints_1013
                    .extend(hint.map(|h| h.min(u32::MAX as u64) as u32));
            }
            _ => {
                self.fails().closes_other += 1;
                self.fails()
                    .first_other_close
                    .get_or_insert_with(|| format!("{code} {reason}"));
            }
        }
        let frame = close_echo(code, self.rng.mask());
        self.clients[idx].tx.extend_from_slice(&frame);
        self.flush(idx, now);
        let worked = self.clients[idx].worked;
        self.plan_next(
            idx,
            now,
            Ended::Closed {
                hint_ms: hint,
                worked,
            },
        );
    }

    /// A socket error (connect, read or write).
    fn io_failed(&mut self, idx: usize, now: u64, e: &io::Error) {
        let why = match e.kind() {
            ErrorKind::ConnectionRefused => Why::Refused,
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
                Why::Reset
            }
            ErrorKind::TimedOut => Why::Timeout,
            _ => Why::Other,
        };
        if why == Why::Other {
            self.fails().other_io += 1;
            self.fails()
                .first_other_io
                .get_or_insert_with(|| e.to_string());
        }
        let worked = self.clients[idx].worked;
        self.end(idx, now, Ended::Failed { worked }, why);
    }

    fn eof(&mut self, idx: usize, now: u64) {
        if self.clients[idx].phase == Phase::Closing {
            return self.release(idx, Phase::Done);
        }
        let worked = self.clients[idx].worked;
        self.end(idx, now, Ended::Failed { worked }, Why::Eof);
    }

    /// A connection or an attempt ended without a close frame.
    fn end(&mut self, idx: usize, now: u64, ended: Ended, why: Why) {
        if self.clients[idx].phase == Phase::Closing {
            return self.release(idx, Phase::Done);
        }
        match why {
            Why::Refused => self.fails().refused += 1,
            Why::Reset => self.fails().resets += 1,
            Why::Eof => self.fails().eofs += 1,
            Why::Timeout => self.fails().timeouts += 1,
            Why::Status | Why::Other => {}
        }
        self.plan_next(idx, now, ended);
    }

    /// Drop the connection and schedule the next attempt as the policy says.
    fn plan_next(&mut self, idx: usize, now: u64, ended: Ended) {
        self.release(idx, Phase::Waiting);
        if self.stage >= Stage::Closing {
            self.clients[idx].phase = Phase::Done;
            return;
        }
        let random = self.rng.next();
        let c = &mut self.clients[idx];
        if self.stage >= Stage::Running && !c.down {
            c.down = true;
            self.down += 1;
        }
        if ended.worked() {
            c.attempt = 0;
        }
        let delay = self.spec.policy.delay_ns(ended, c.attempt, random);
        c.attempt = c.attempt.saturating_add(1);
        c.due_ns = now + delay;
        self.wake.push(Reverse((c.due_ns, idx)));
    }

    fn release(&mut self, idx: usize, to: Phase) {
        let c = &mut self.clients[idx];
        match c.phase {
            Phase::Connecting | Phase::Handshake => self.pending -= 1,
            Phase::Open => self.open -= 1,
            _ => {}
        }
        if let Some(mut sock) = c.sock.take() {
            let _ = self.poll.registry().deregister(&mut sock);
            self.live -= 1;
        }
        c.phase = to;
        c.rx = Vec::new();
        c.tx = Vec::new();
        c.tx_pos = 0;
        c.msg = Vec::new();
    }

    /// Write what is queued until done or the socket is full (epoll reports the next edge).
    fn flush(&mut self, idx: usize, now: u64) {
        let c = &mut self.clients[idx];
        if c.phase == Phase::Connecting {
            return; // the request goes once connected
        }
        let Some(sock) = c.sock.as_ref() else { return };
        let mut failure = None;
        while c.writable && c.tx_pos < c.tx.len() {
            match (&*sock).write(&c.tx[c.tx_pos..]) {
                Ok(n) => c.tx_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if c.tx_pos == c.tx.len() {
            c.tx.clear();
            c.tx_pos = 0;
        }
        if let Some(e) = failure {
            self.io_failed(idx, now, &e);
        }
    }

    fn error(&mut self, idx: Option<usize>, msg: String) {
        self.r.errors += 1;
        if self.r.first_error.is_none() {
            self.r.first_error = Some(match idx {
                Some(i) => format!("client {i}: {msg}"),
                None => msg,
            });
        }
    }

    /// Where failures count: before the first 1001 (setup) or from it (the storm).
    fn fails(&mut self) -> &mut Failures {
        if self.t_first_1001.is_some() {
            &mut self.r.storm
        } else {
            &mut self.r.setup
        }
    }

    fn since_1001(&self, now: u64) -> Option<f64> {
        Some(now.saturating_sub(self.t_first_1001?) as f64 / 1e9)
    }

    fn report(mut self) -> StormReport {
        let mut r = std::mem::take(&mut self.r);
        r.still_down = self.down;
        r.restarted = self.t_first_1001.is_some();
        for c in &self.clients {
            r.repeats += c.got.repeats;
            r.skipped += c.got.skipped;
        }
        if let Some(acked) = &self.acked {
            let mut lost = vec![false; acked.len()];
            let mut check = AckCheck {
                acked: acked.len() as u64,
                ..AckCheck::default()
            };
            for c in &self.clients {
                let missing = c.got.missing(acked, |i| lost[i] = true);
                check.missing += missing;
                check.clients_incomplete += u64::from(missing > 0);
                check.unacked_received += c.got.count - (acked.len() as u64 - missing);
            }
            check.lost = lost.iter().filter(|&&l| l).count() as u64;
            check.first_lost = lost.iter().position(|&l| l).map(|i| acked[i]);
            r.ack = Some(check);
        }
        r
    }
}

/// Our close frame echoing `code` (§5.5.1); a code the wire must not carry (an empty close
/// is reported as 1005) is answered with an empty close.
fn close_echo(code: u16, key: [u8; 4]) -> Vec<u8> {
    if matches!(code, 1005 | 1006 | 1015) {
        let mut frame = Vec::with_capacity(6);
        encode_masked(OpCode::Close, &[], key, &mut frame);
        return frame;
    }
    close_frame(code, key)
}

fn describe(p: Policy) -> String {
    let ms = |ns: u64| format!("{} ms", ns / MS);
    match p {
        Policy::Hints { initial_ns, max_ns } => format!(
            "hints: obey retry-after-ms=, else full-jitter backoff from {} up to {}",
            ms(initial_ns),
            ms(max_ns)
        ),
        Policy::Naive { retry_ns } => format!(
            "no hints: at once after a close, {} after a failed attempt",
            ms(retry_ns)
        ),
    }
}
