//! Owns the load generator's event loop: one mio `Poll`, edge-triggered like the server's
//! reactor, driving every client connection of one process through connect → upgrade →
//! traffic → close, and the run's timeline (connect, warm-up, measure, drain, close). The
//! protocol work is done by the sans-IO `wsloop::client`; this file only moves bytes, keeps
//! time and counts.
//! Must not: encode or parse the protocol itself (that is `wsloop::client`'s), or let one
//! failing connection stop the others.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use wsloop::client::frames::{close_frame, encode_masked, FrameReader, Prefix, ServerFrame};
use wsloop::client::handshake;
use wsloop::ws::close::parse_close_payload;
use wsloop::ws::frame::OpCode;

use crate::fanout::{self, Fanout};
use crate::report::{new_histogram, Output, Progress, Report};
use crate::sys;

const SEC: u64 = 1_000_000_000;
/// The timerfd's token; connection tokens are `generation << 32 | index`, never this.
const TIMER: Token = Token(usize::MAX);
/// One read buffer shared by all connections: payloads are counted, not kept.
const SCRATCH: usize = 256 * 1024;
/// Queued copies of a frame written with one `writev`.
const MAX_IOV: usize = 64;
/// How long closing handshakes may take at the end before sockets are simply dropped.
const CLOSE_GRACE: u64 = 2 * SEC;

/// What the run does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Closed loop: each connection sends one message, waits for its echo, repeats.
    Echo,
    /// Open loop at `per_sec` messages per second in total; echoes still missing `drain`
    /// after the end are counted as unanswered.
    Rate { per_sec: f64, drain: Duration },
    /// Open, upgrade, close, repeat, on `connections` concurrent slots.
    Connect,
    /// Open and hold.
    Idle,
    /// The last connection publishes to the topic of the URL, the others subscribe to it.
    Fanout(fanout::Spec),
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Rate { .. } => "rate",
            Mode::Connect => "connect",
            Mode::Idle => "idle",
            Mode::Fanout(_) => "fanout",
        }
    }

    /// Every connection sends the same pre-masked message (echo, rate).
    fn sends(&self) -> bool {
        matches!(self, Mode::Echo | Mode::Rate { .. })
    }

    /// Messages per second the schedule follows (rate; fanout with --rate).
    fn per_sec(&self) -> Option<f64> {
        match self {
            Mode::Rate { per_sec, .. } => Some(*per_sec),
            Mode::Fanout(spec) => spec.rate,
            _ => None,
        }
    }
}

/// A validated run description (built by main.rs from the command line).
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub addr: SocketAddrV4,
    /// `Host` header value.
    pub host: String,
    pub path: String,
    pub connections: usize,
    pub size: usize,
    pub text: bool,
    /// No WebSocket: write `size` bytes, read `size` bytes back.
    pub raw: bool,
    /// Measured time; `None` (idle only): until killed.
    pub duration: Option<Duration>,
    pub warmup: Duration,
    pub source_ips: Vec<Ipv4Addr>,
    /// Index of this process's first connection among all processes (spreads source IPs
    /// and numbers connections in messages).
    pub conn_offset: usize,
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    pub output: Output,
    pub quiet: bool,
    pub per_conn: bool,
    /// Sample this process's CPU time (and our own) at the start and end of the window.
    pub server_pid: Option<u32>,
}

impl Plan {
    pub fn kind(&self) -> &'static str {
        if let Mode::Fanout(_) = self.mode {
            return "binary";
        }
        match (self.mode.sends(), self.raw, self.text) {
            (false, _, _) => "-",
            (true, true, _) => "raw",
            (true, false, true) => "text",
            (true, false, false) => "binary",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not opened yet (or between two connections of a `connect` slot).
    Unused,
    Connecting,
    Handshake,
    Open,
    /// Our close frame (or FIN, raw) is queued or sent; waiting for the server's end.
    Closing,
    Done,
    Failed,
}

/// One client connection (or one `connect` slot, reused for connection after connection).
struct Conn {
    sock: Option<TcpStream>,
    generation: u32,
    phase: Phase,
    started_ns: u64,
    key: String,
    /// The handshake response gathered so far, and how much of it was searched.
    hs: Vec<u8>,
    hs_scanned: usize,
    /// The message, framed and masked once; every send writes this same buffer again.
    frame: Vec<u8>,
    /// Copies of `frame` queued and not yet fully written; `pos` bytes of the first are out.
    copies: u64,
    pos: usize,
    /// Handshake, pong and close bytes, written after the queued copies.
    extra: Vec<u8>,
    extra_pos: usize,
    /// Raw mode: shut our side down once everything queued is written.
    shutdown_pending: bool,
    writable: bool,
    reader: FrameReader,
    /// The message being received: its opcode, length so far and first bytes.
    msg_opcode: Option<OpCode>,
    msg_len: u64,
    msg_head: Prefix,
    /// Raw mode: bytes of the next echo received so far.
    raw_got: u64,
    /// Send times (echo: actual; rate: intended) of messages awaiting their echo, oldest first.
    in_flight: VecDeque<u64>,
    /// Counted in the measurement window (messages, or handshakes for connect).
    count: u64,
    got_close: bool,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            sock: None,
            generation: 0,
            phase: Phase::Unused,
            started_ns: 0,
            key: String::new(),
            hs: Vec::new(),
            hs_scanned: 0,
            frame: Vec::new(),
            copies: 0,
            pos: 0,
            extra: Vec::new(),
            extra_pos: 0,
            shutdown_pending: false,
            writable: false,
            reader: FrameReader::new(),
            msg_opcode: None,
            msg_len: 0,
            msg_head: Prefix::default(),
            raw_got: 0,
            in_flight: VecDeque::new(),
            count: 0,
            got_close: false,
        }
    }

    /// Queue control bytes behind whatever is queued (never inside a frame being written).
    fn queue_extra(&mut self, bytes: &[u8]) {
        if self.extra_pos == self.extra.len() {
            self.extra.clear();
            self.extra_pos = 0;
        }
        self.extra.extend_from_slice(bytes);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Opening the connections (echo, rate, idle); nothing is sent yet.
    Connecting,
    /// Warm-up and measurement.
    Running,
    /// rate: waiting for the last echoes.
    Draining,
    /// Closing handshakes.
    Closing,
    Finished,
}

/// splitmix64: fast, good enough for keys and masks (RFC 6455 §10.3 wants masks an attacker
/// cannot predict; a load generator only needs them to differ).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn nonce(&mut self) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&self.next().to_ne_bytes());
        n[8..].copy_from_slice(&self.next().to_ne_bytes());
        n
    }

    pub(crate) fn mask(&mut self) -> [u8; 4] {
        let v = self.next().to_ne_bytes();
        [v[0], v[1], v[2], v[3]]
    }
}

struct Engine<'p> {
    plan: &'p Plan,
    poll: Poll,
    conns: Vec<Conn>,
    scratch: Vec<u8>,
    rng: Rng,
    /// The message every connection sends, before framing.
    payload: Vec<u8>,
    timer: Option<sys::TimerFd>,
    timer_armed_for: u64,
    progress: Progress,

    stage: Stage,
    /// The run reached its Running stage.
    ran: bool,
    t_start: u64,
    /// Start of warm-up, start and end of the measurement window.
    t0: u64,
    t_warm: u64,
    t_end: u64,
    /// End of the current connect, drain or close stage.
    stage_deadline: u64,
    /// When the closing stage began.
    t_closed: u64,
    setup_ns: u64,

    next_open: usize,
    /// Connections connecting or handshaking.
    pending: usize,
    /// Connections open (handshake done).
    up: usize,
    /// Connections that reached Open (connect: counts every connection of every slot).
    ever_up: usize,
    /// Connections holding a socket.
    live: usize,
    /// connect: slots to start again.
    restart: Vec<usize>,

    /// rate: index of the next scheduled message.
    next_msg: u64,
    in_flight_total: u64,

    completed: u64,
    /// Echoes that arrived inside the window (rate: the throughput actually sustained).
    received: u64,
    measured: u64,
    sent: u64,
    unanswered: u64,
    skipped: u64,
    errors: u64,
    close_errors: u64,
    first_error: Option<String>,
    hist: Histogram<u64>,

    next_tick: u64,
    tick_no: u64,
    last_completed: u64,

    /// CPU seconds (server, ours) when the window opened, and used during it.
    cpu_at_warm: Option<(f64, f64)>,
    cpu_used: Option<(f64, f64)>,

    /// fanout: the schedule and the delivery check.
    fan: Option<Fanout>,
    /// fanout: one frame buffer for the publisher, reused.
    fan_frame: Vec<u8>,
}

/// Run the plan in this process and report.
pub fn run(plan: &Plan) -> io::Result<Report> {
    let mut e = Engine::new(plan)?;
    let mut events = Events::with_capacity(1024);
    loop {
        let now = sys::now_ns();
        e.tick(now);
        if e.stage == Stage::Finished {
            break;
        }
        let deadline = e.next_deadline(now);
        e.arm_timer()?;
        let timeout = Duration::from_nanos(deadline.saturating_sub(now));
        if let Err(err) = e.poll.poll(&mut events, Some(timeout)) {
            if err.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for ev in events.iter() {
            if ev.token() == TIMER {
                if let Some(t) = &e.timer {
                    t.clear();
                }
                e.timer_armed_for = 0;
                continue;
            }
            let idx = ev.token().0 & 0xFFFF_FFFF;
            let generation = (ev.token().0 >> 32) as u32;
            let Some(c) = e.conns.get(idx) else { continue };
            if c.generation != generation || c.sock.is_none() {
                continue; // an event for a socket since replaced
            }
            e.on_event(idx, ev);
        }
    }
    Ok(e.report())
}

impl<'p> Engine<'p> {
    fn new(plan: &'p Plan) -> io::Result<Engine<'p>> {
        let poll = Poll::new()?;
        let timer = if plan.mode.per_sec().is_some() {
            let t = sys::TimerFd::new()?;
            poll.registry()
                .register(&mut SourceFd(&t.raw_fd()), TIMER, Interest::READABLE)?;
            Some(t)
        } else {
            None
        };
        let payload: Vec<u8> = if plan.text {
            (0..plan.size).map(|i| b'a' + (i % 26) as u8).collect()
        } else {
            (0..plan.size).map(|i| (i * 31 + 7) as u8).collect()
        };
        let now = sys::now_ns();
        let mut e = Engine {
            plan,
            poll,
            conns: (0..plan.connections).map(|_| Conn::new()).collect(),
            scratch: vec![0u8; SCRATCH],
            rng: Rng(sys::random_seed()),
            payload,
            timer,
            timer_armed_for: 0,
            progress: Progress::new(plan.output, plan.quiet, plan.mode, plan.connections),
            stage: Stage::Connecting,
            ran: false,
            t_start: now,
            t0: now,
            t_warm: now,
            t_end: u64::MAX,
            stage_deadline: now.saturating_add(plan.connect_timeout.as_nanos() as u64),
            t_closed: u64::MAX,
            setup_ns: 0,
            next_open: 0,
            pending: 0,
            up: 0,
            ever_up: 0,
            live: 0,
            restart: Vec::new(),
            next_msg: 0,
            in_flight_total: 0,
            completed: 0,
            received: 0,
            measured: 0,
            sent: 0,
            unanswered: 0,
            skipped: 0,
            errors: 0,
            close_errors: 0,
            first_error: None,
            hist: new_histogram(),
            next_tick: now + SEC,
            tick_no: 0,
            last_completed: 0,
            cpu_at_warm: None,
            cpu_used: None,
            fan: match plan.mode {
                Mode::Fanout(spec) => Some(Fanout::new(spec, plan.connections)),
                _ => None,
            },
            fan_frame: Vec::new(),
        };
        if plan.mode == Mode::Connect {
            // Every slot starts at once; the measurement window starts now.
            e.start_running(now);
            for idx in 0..plan.connections {
                e.open(idx, now);
            }
            e.next_open = plan.connections;
        }
        Ok(e)
    }

    // ---- timeline -------------------------------------------------------------------------

    fn tick(&mut self, now: u64) {
        if sys::stop_requested() {
            self.stop_early(now);
        }
        match self.stage {
            Stage::Connecting => {
                while self.pending < self.plan.connect_concurrency
                    && self.next_open < self.plan.connections
                {
                    let idx = self.next_open;
                    self.next_open += 1;
                    self.open(idx, now);
                }
                if now >= self.stage_deadline {
                    self.give_up_connecting();
                }
                if self.pending == 0 && self.next_open >= self.plan.connections {
                    self.setup_ns = now - self.t_start;
                    self.progress.all_up(
                        self.up,
                        self.plan.connections,
                        self.setup_ns as f64 / 1e9,
                    );
                    if self.up == 0 {
                        self.begin_close(now);
                    } else {
                        self.start_running(now);
                        if self.fan.is_some() {
                            self.fanout_start(now);
                        }
                        if self.plan.mode == Mode::Echo {
                            for idx in 0..self.conns.len() {
                                if self.conns[idx].phase == Phase::Open {
                                    self.send_copy(idx, now);
                                }
                            }
                        }
                    }
                }
            }
            Stage::Running if self.fan.is_some() => self.fanout_tick(now),
            Stage::Running => {
                if self.cpu_at_warm.is_none() && now >= self.t_warm {
                    self.cpu_at_warm = self.cpu_sample();
                }
                if let Mode::Rate { per_sec, .. } = self.plan.mode {
                    self.schedule_sends(now, per_sec);
                }
                if self.plan.mode == Mode::Connect && now < self.t_end {
                    for idx in std::mem::take(&mut self.restart) {
                        self.open(idx, now);
                    }
                }
                if now >= self.t_end {
                    if let (Some((s0, c0)), Some((s1, c1))) = (self.cpu_at_warm, self.cpu_sample())
                    {
                        self.cpu_used = Some((s1 - s0, c1 - c0));
                    }
                    match self.plan.mode {
                        Mode::Rate { drain, .. } => {
                            self.stage = Stage::Draining;
                            self.stage_deadline = now + drain.as_nanos() as u64;
                        }
                        _ => self.begin_close(now),
                    }
                } else if self.live == 0 && self.plan.mode != Mode::Connect {
                    // Every connection failed: nothing left to measure.
                    self.begin_close(now);
                }
            }
            Stage::Draining => {
                if self.in_flight_total == 0 || now >= self.stage_deadline {
                    self.begin_close(now);
                }
            }
            Stage::Closing => {
                if self.live == 0 || now >= self.stage_deadline {
                    self.drop_all();
                    self.stage = Stage::Finished;
                }
            }
            Stage::Finished => {}
        }
        if now >= self.next_tick && self.stage != Stage::Finished {
            self.tick_progress(now);
        }
    }

    /// (server, own) CPU seconds, when a server PID was given.
    fn cpu_sample(&self) -> Option<(f64, f64)> {
        let server = sys::cpu_seconds(self.plan.server_pid?)?;
        let own = sys::cpu_seconds(std::process::id())?;
        Some((server, own))
    }

    /// SIGINT/SIGTERM: cut the window short here and wind down as if it had ended.
    fn stop_early(&mut self, now: u64) {
        match self.stage {
            Stage::Connecting => {
                self.setup_ns = now - self.t_start;
                self.begin_close(now);
            }
            Stage::Running if self.t_end > now => self.t_end = now.max(self.t_warm),
            _ => {}
        }
    }

    fn start_running(&mut self, now: u64) {
        self.stage = Stage::Running;
        self.ran = true;
        self.t0 = now;
        self.t_warm = now + self.plan.warmup.as_nanos() as u64;
        self.t_end = match self.plan.duration {
            Some(d) => self.t_warm + d.as_nanos() as u64,
            None => u64::MAX,
        };
    }

    /// rate: issue every message whose intended time has come. Message j is due at
    /// t0 + j/R and goes to connection j mod N, so the total rate is R whatever any one
    /// connection does; its latency is measured from that intended time.
    fn schedule_sends(&mut self, now: u64, per_sec: f64) {
        loop {
            let due = self.t0 + (self.next_msg as f64 * 1e9 / per_sec) as u64;
            if due > now || due >= self.t_end {
                return;
            }
            let idx = (self.next_msg % self.conns.len() as u64) as usize;
            self.next_msg += 1;
            let in_window = due >= self.t_warm;
            if in_window {
                self.sent += 1;
            }
            if self.conns[idx].phase == Phase::Open {
                self.send_copy(idx, due);
            } else if in_window {
                self.skipped += 1;
            }
        }
    }

    fn next_deadline(&self, now: u64) -> u64 {
        let mut d = self.next_tick;
        match self.stage {
            Stage::Connecting | Stage::Draining | Stage::Closing => d = d.min(self.stage_deadline),
            Stage::Running if self.fan.is_some() => {
                if let Some(f) = &self.fan {
                    d = d.min(f.last_progress + f.spec.drain_ns);
                    d = d.min(f.next_due(self.t0).unwrap_or(u64::MAX));
                }
            }
            Stage::Running => {
                d = d.min(self.t_end);
                if self.cpu_at_warm.is_none() && self.plan.server_pid.is_some() {
                    d = d.min(self.t_warm);
                }
                if let Mode::Rate { per_sec, .. } = self.plan.mode {
                    d = d.min(self.next_due(per_sec));
                }
                if !self.restart.is_empty() {
                    d = now;
                }
            }
            Stage::Finished => d = now,
        }
        d.max(now)
    }

    fn next_due(&self, per_sec: f64) -> u64 {
        match &self.fan {
            Some(f) => f.next_due(self.t0).unwrap_or(u64::MAX),
            None => self.t0 + (self.next_msg as f64 * 1e9 / per_sec) as u64,
        }
    }

    /// epoll's timeout is in milliseconds; a rate run needs its next send on time, so the
    /// timerfd is armed for it (only when that time changes).
    fn arm_timer(&mut self) -> io::Result<()> {
        let Some(per_sec) = self.plan.mode.per_sec() else {
            return Ok(());
        };
        if self.stage != Stage::Running {
            return Ok(());
        }
        let due = self.next_due(per_sec);
        if due != self.timer_armed_for && due < self.t_end {
            if let Some(t) = &self.timer {
                t.arm_at(due)?;
                self.timer_armed_for = due;
            }
        }
        Ok(())
    }

    fn tick_progress(&mut self, now: u64) {
        while self.next_tick <= now {
            self.next_tick += SEC;
        }
        self.tick_no += 1;
        let stage = match self.stage {
            Stage::Connecting => "connect",
            Stage::Running if now < self.t_warm => "warmup",
            Stage::Running => "run",
            Stage::Draining => "drain",
            _ => "close",
        };
        let count = if self.plan.mode == Mode::Idle {
            self.up as u64
        } else {
            let c = self.completed - self.last_completed;
            self.last_completed = self.completed;
            c
        };
        self.progress
            .tick(self.tick_no, stage, count, self.up, self.errors);
    }

    /// The connect stage timed out: what is not up by now counts as failed.
    fn give_up_connecting(&mut self) {
        for idx in 0..self.conns.len() {
            if matches!(self.conns[idx].phase, Phase::Connecting | Phase::Handshake) {
                self.fail(idx, "connect/handshake timed out".to_string());
            }
        }
        let never = self.plan.connections - self.next_open;
        if never > 0 {
            self.errors += never as u64;
            self.first_error
                .get_or_insert_with(|| format!("{never} connection(s) never attempted: timeout"));
            self.next_open = self.plan.connections;
        }
    }

    /// End of the run: rate's missing echoes are counted, every open connection starts its
    /// closing handshake (close frame; FIN for raw), half-open ones are dropped.
    fn begin_close(&mut self, now: u64) {
        self.stage = Stage::Closing;
        self.t_closed = now;
        self.stage_deadline = now + CLOSE_GRACE;
        for idx in 0..self.conns.len() {
            let c = &mut self.conns[idx];
            for &t in &c.in_flight {
                if matches!(self.plan.mode, Mode::Rate { .. }) && t >= self.t_warm && t < self.t_end
                {
                    self.unanswered += 1;
                }
            }
            c.in_flight.clear();
            // A frame half written must be finished before anything else may follow it.
            c.copies = u64::from(c.pos > 0);
            match c.phase {
                Phase::Connecting | Phase::Handshake => self.finish(idx),
                Phase::Open => {
                    c.phase = Phase::Closing;
                    if self.plan.raw {
                        c.shutdown_pending = true;
                    } else {
                        let key = self.rng.mask();
                        c.queue_extra(&close_frame(1000, key));
                    }
                    self.up -= 1;
                    self.flush(idx);
                }
                _ => {}
            }
        }
        self.in_flight_total = 0;
        if self.live == 0 {
            self.stage = Stage::Finished;
        }
    }

    fn drop_all(&mut self) {
        for idx in 0..self.conns.len() {
            if self.conns[idx].sock.is_some() {
                if self.conns[idx].phase == Phase::Closing {
                    self.close_errors += 1;
                    self.first_error.get_or_insert_with(|| {
                        format!(
                            "connection {}: closing handshake not finished in time",
                            idx + self.plan.conn_offset
                        )
                    });
                }
                self.finish(idx);
            }
        }
    }

    // ---- connections ------------------------------------------------------------------------

    fn open(&mut self, idx: usize, now: u64) {
        let plan = self.plan;
        let c = &mut self.conns[idx];
        c.generation = c.generation.wrapping_add(1);
        c.phase = Phase::Connecting;
        c.started_ns = now;
        c.hs.clear();
        c.hs_scanned = 0;
        c.copies = 0;
        c.pos = 0;
        c.extra.clear();
        c.extra_pos = 0;
        c.shutdown_pending = false;
        c.writable = false;
        c.reader = FrameReader::new();
        c.msg_opcode = None;
        c.msg_len = 0;
        c.raw_got = 0;
        c.got_close = false;
        if plan.mode.sends() && c.frame.is_empty() {
            // Framed and masked once per connection; every message resends these bytes.
            if plan.raw {
                c.frame = self.payload.clone();
            } else {
                let opcode = if plan.text {
                    OpCode::Text
                } else {
                    OpCode::Binary
                };
                encode_masked(opcode, &self.payload, self.rng.mask(), &mut c.frame);
            }
        }
        if !plan.raw {
            c.key = handshake::key_for_nonce(&self.rng.nonce());
        }
        self.pending += 1;
        self.live += 1;
        let global = idx + plan.conn_offset;
        let source =
            (!plan.source_ips.is_empty()).then(|| plan.source_ips[global % plan.source_ips.len()]);
        match connect(plan.addr, source) {
            Ok(mut sock) => {
                let token = Token(((c.generation as usize) << 32) | idx);
                match self.poll.registry().register(
                    &mut sock,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    Ok(()) => c.sock = Some(sock),
                    Err(e) => self.fail(idx, format!("register: {e}")),
                }
            }
            Err(e) => self.fail(idx, format!("connect to {}: {e}", plan.addr)),
        }
    }

    fn on_event(&mut self, idx: usize, ev: &mio::event::Event) {
        if self.conns[idx].phase == Phase::Connecting {
            self.check_connected(idx);
            if self.conns[idx].phase == Phase::Connecting {
                return;
            }
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            // With the FIN already announced, the read that returns 0 must happen now: no
            // further edge will come for it.
            self.read(idx, ev.is_read_closed() || ev.is_error());
        }
        if ev.is_writable() && self.conns[idx].sock.is_some() {
            self.conns[idx].writable = true;
            self.flush(idx);
        }
    }

    /// A non-blocking connect finished (mio: check `take_error`, then `peer_addr`).
    fn check_connected(&mut self, idx: usize) {
        let Some(sock) = self.conns[idx].sock.as_ref() else {
            return;
        };
        match sock.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                let msg = format!("connect to {}: {e}", self.plan.addr);
                self.fail(idx, msg);
                return;
            }
        }
        match sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotConnected => return, // not yet
            Err(e) => {
                let msg = format!("connect to {}: {e}", self.plan.addr);
                self.fail(idx, msg);
                return;
            }
        }
        let c = &mut self.conns[idx];
        c.writable = true;
        if self.plan.raw {
            self.opened(idx, sys::now_ns());
        } else {
            c.phase = Phase::Handshake;
            let req = handshake::request(&self.plan.host, &self.plan.path, &c.key);
            c.queue_extra(&req);
            self.flush(idx);
        }
    }

    /// The connection is usable (101 checked, or TCP connected in raw mode).
    fn opened(&mut self, idx: usize, now: u64) {
        self.pending -= 1;
        self.up += 1;
        self.ever_up += 1;
        let c = &mut self.conns[idx];
        c.phase = Phase::Open;
        c.hs = Vec::new();
        if self.plan.mode == Mode::Connect {
            if self.stage == Stage::Running && now >= self.t_warm && now < self.t_end {
                c.count += 1;
                self.measured += 1;
                self.hist.saturating_record(now - c.started_ns);
            }
            self.completed += 1;
            // Straight into the closing handshake; the server's close and FIN end it.
            c.phase = Phase::Closing;
            self.up -= 1;
            let key = self.rng.mask();
            c.queue_extra(&close_frame(1000, key));
            self.flush(idx);
        }
    }

    /// Read until WouldBlock, or until a short read (the socket is drained, so the next
    /// bytes bring a new edge) unless `to_eof`.
    fn read(&mut self, idx: usize, to_eof: bool) {
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(sock) = self.conns[idx].sock.as_ref() {
            let res = (&*sock).read(&mut scratch);
            let now = sys::now_ns();
            match res {
                Ok(0) => {
                    self.eof(idx);
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
                    self.io_error(idx, format!("read: {e}"));
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    fn received(&mut self, idx: usize, bytes: &[u8], now: u64) {
        match self.conns[idx].phase {
            Phase::Handshake => {
                let c = &mut self.conns[idx];
                c.hs.extend_from_slice(bytes);
                match handshake::check_response(&c.hs, c.hs_scanned, &c.key) {
                    Ok(None) => c.hs_scanned = c.hs.len(),
                    Ok(Some(head)) => {
                        let rest = c.hs.split_off(head);
                        self.opened(idx, now);
                        if !rest.is_empty() {
                            self.frames(idx, &rest, now);
                        }
                    }
                    Err(e) => self.fail(idx, e.to_string()),
                }
            }
            Phase::Open | Phase::Closing if self.plan.raw => self.raw_bytes(idx, bytes.len(), now),
            Phase::Open | Phase::Closing => self.frames(idx, bytes, now),
            _ => {}
        }
    }

    fn raw_bytes(&mut self, idx: usize, n: usize, now: u64) {
        let size = self.plan.size as u64;
        let c = &mut self.conns[idx];
        if c.phase != Phase::Open {
            return;
        }
        c.raw_got += n as u64;
        while self.conns[idx].raw_got >= size && self.conns[idx].phase == Phase::Open {
            self.conns[idx].raw_got -= size;
            self.message_done(idx, now);
        }
    }

    fn frames(&mut self, idx: usize, mut bytes: &[u8], now: u64) {
        /// What a frame asks of us, decided while the reader is borrowed.
        enum Act {
            Nothing,
            Message,
            Delivery(Prefix),
            Pong([u8; 125], usize),
            Fail(String),
        }
        let expect = if self.plan.text {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        let size = self.plan.size as u64;
        while !bytes.is_empty() {
            let c = &mut self.conns[idx];
            let closing = c.phase == Phase::Closing;
            let (n, act) = match c.reader.feed(bytes) {
                Err(e) => (0, Act::Fail(e.to_string())),
                Ok((n, None)) => (n, Act::Nothing),
                Ok((n, Some(ServerFrame::Data { .. }))) if closing => (n, Act::Nothing),
                Ok((
                    n,
                    Some(ServerFrame::Data {
                        opcode,
                        fin,
                        len,
                        head,
                    }),
                )) => {
                    let act = match (opcode, c.msg_opcode) {
                        (OpCode::Continuation, None) => {
                            Act::Fail("continuation frame without a message".into())
                        }
                        (OpCode::Continuation, Some(_)) => Act::Nothing,
                        (_, Some(_)) => Act::Fail("new message inside a fragmented one".into()),
                        (op, None) => {
                            c.msg_opcode = Some(op);
                            c.msg_len = 0;
                            c.msg_head = head;
                            Act::Nothing
                        }
                    };
                    c.msg_len += len;
                    let act = match act {
                        Act::Nothing if fin => {
                            let op = c.msg_opcode.take();
                            if op != Some(expect) {
                                Act::Fail(format!("echo arrived as {op:?}, sent {expect:?}"))
                            } else if c.msg_len == size && self.fan.is_some() {
                                Act::Delivery(c.msg_head)
                            } else if c.msg_len != size || !self.plan.mode.sends() {
                                Act::Fail(format!(
                                    "unexpected message of {} bytes (sent {size})",
                                    c.msg_len
                                ))
                            } else {
                                Act::Message
                            }
                        }
                        other => other,
                    };
                    (n, act)
                }
                Ok((n, Some(ServerFrame::Control { opcode, payload }))) => match opcode {
                    OpCode::Ping if !closing => {
                        let mut p = [0u8; 125];
                        p[..payload.len()].copy_from_slice(payload);
                        (n, Act::Pong(p, payload.len()))
                    }
                    OpCode::Close if closing => {
                        c.got_close = true;
                        (n, Act::Nothing)
                    }
                    OpCode::Close => {
                        let why = match parse_close_payload(payload) {
                            Ok(Some((code, reason))) => format!("{code} {reason}"),
                            Ok(None) => "no status".to_string(),
                            Err(e) => format!("invalid close payload: {e}"),
                        };
                        (n, Act::Fail(format!("server closed the connection: {why}")))
                    }
                    _ => (n, Act::Nothing),
                },
            };
            bytes = &bytes[n..];
            match act {
                Act::Nothing => {}
                Act::Message => self.message_done(idx, now),
                Act::Delivery(head) => self.fanout_delivered(idx, head, now),
                Act::Pong(p, len) => {
                    let mut frame = Vec::with_capacity(6 + len);
                    encode_masked(OpCode::Pong, &p[..len], self.rng.mask(), &mut frame);
                    self.conns[idx].queue_extra(&frame);
                    self.flush(idx);
                }
                Act::Fail(msg) => {
                    self.fail(idx, msg);
                    return;
                }
            }
            if self.conns[idx].sock.is_none() {
                return;
            }
        }
    }

    // ---- fanout -------------------------------------------------------------------------------

    /// The publisher is the last connection; the others subscribe.
    fn publisher(&self) -> usize {
        self.conns.len() - 1
    }

    /// Everyone is up (or failed): publishing starts now, if the publisher and at least one
    /// subscriber are there.
    fn fanout_start(&mut self, now: u64) {
        let p = self.publisher();
        let subs = self.conns[..p]
            .iter()
            .filter(|c| c.phase == Phase::Open)
            .count();
        if self.conns[p].phase != Phase::Open || subs == 0 {
            self.begin_close(now);
            return;
        }
        if let Some(f) = self.fan.as_mut() {
            f.start(subs, now);
        }
    }

    /// Publish what is due; end when every message reached every subscriber, when a
    /// connection failed, or when deliveries stalled for --drain.
    fn fanout_tick(&mut self, now: u64) {
        let (t0, p) = (self.t0, self.publisher());
        if self.errors > 0 || now >= self.t_end {
            return self.fanout_end(now);
        }
        while let Some((seq, at)) = self.fan.as_mut().and_then(|f| f.take_due(t0, now)) {
            let warmup = self.fan.as_ref().map_or(0, |f| f.spec.warmup);
            if seq == warmup {
                self.cpu_at_warm = self.cpu_sample();
            }
            if seq >= warmup {
                self.sent += 1;
            }
            let payload = Fanout::payload(seq, at, self.plan.size);
            let mut frame = std::mem::take(&mut self.fan_frame);
            frame.clear();
            encode_masked(OpCode::Binary, &payload, self.rng.mask(), &mut frame);
            self.conns[p].queue_extra(&frame);
            self.fan_frame = frame;
            self.flush(p);
        }
        let Some(f) = self.fan.as_ref() else { return };
        if f.done() {
            self.fanout_end(now);
        } else if now >= f.last_progress + f.spec.drain_ns {
            self.errors += 1;
            self.first_error.get_or_insert_with(|| f.stalled(p));
            self.fanout_end(now);
        }
    }

    fn fanout_end(&mut self, now: u64) {
        if let (Some((s0, c0)), Some((s1, c1))) = (self.cpu_at_warm, self.cpu_sample()) {
            self.cpu_used = Some((s1 - s0, c1 - c0));
        }
        self.begin_close(now);
    }

    /// A subscriber received a complete message whose first bytes are `head`.
    fn fanout_delivered(&mut self, idx: usize, head: Prefix, now: u64) {
        if idx == self.publisher() {
            return; // its own copies (a /topic connection subscribes too): read, not counted
        }
        let Some(f) = self.fan.as_mut() else { return };
        self.completed += 1;
        let Some((seq, at)) = Fanout::parse(head.as_slice()) else {
            return self.fail(idx, "a message without the 16-byte fanout header".into());
        };
        match f.delivered(idx, seq, at, now) {
            Ok(Some(latency)) => self.hist.saturating_record(latency),
            Ok(None) => {}
            Err(msg) => self.fail(idx, msg),
        }
    }

    /// An echo came back complete.
    fn message_done(&mut self, idx: usize, now: u64) {
        let c = &mut self.conns[idx];
        let Some(sent) = c.in_flight.pop_front() else {
            self.fail(idx, "an echo of a message never sent".into());
            return;
        };
        self.in_flight_total -= 1;
        self.completed += 1;
        if now >= self.t_warm && now < self.t_end {
            self.received += 1;
        }
        let counted = match self.plan.mode {
            // Closed loop: what completes inside the window counts.
            Mode::Echo => now >= self.t_warm && now < self.t_end,
            // Open loop: what was due inside the window counts, however late it returns.
            _ => sent >= self.t_warm && sent < self.t_end,
        };
        if counted {
            c.count += 1;
            self.measured += 1;
            self.hist.saturating_record(now.saturating_sub(sent));
        }
        if self.plan.mode == Mode::Echo && self.stage == Stage::Running && now < self.t_end {
            self.send_copy(idx, now);
        }
    }

    fn send_copy(&mut self, idx: usize, at: u64) {
        let c = &mut self.conns[idx];
        c.copies += 1;
        c.in_flight.push_back(at);
        self.in_flight_total += 1;
        self.flush(idx);
    }

    /// Write queued copies (one `writev` of up to 64 of them), then control bytes, until
    /// done or the socket is full. A short write means full: epoll reports the next edge.
    fn flush(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        let Some(sock) = c.sock.as_ref() else {
            return;
        };
        let mut failure = None;
        while c.writable {
            let res = if c.copies > 0 {
                let flen = c.frame.len();
                let k = c.copies.min(MAX_IOV as u64) as usize;
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                iov[0] = IoSlice::new(&c.frame[c.pos..]);
                for s in iov.iter_mut().take(k).skip(1) {
                    *s = IoSlice::new(&c.frame);
                }
                let want = flen - c.pos + (k - 1) * flen;
                (&*sock).write_vectored(&iov[..k]).map(|n| {
                    let done = c.pos + n;
                    c.copies -= (done / flen) as u64;
                    c.pos = done % flen;
                    n < want
                })
            } else if c.extra_pos < c.extra.len() {
                let want = c.extra.len() - c.extra_pos;
                (&*sock).write(&c.extra[c.extra_pos..]).map(|n| {
                    c.extra_pos += n;
                    n < want
                })
            } else if c.shutdown_pending {
                c.shutdown_pending = false;
                let _ = sock.shutdown(Shutdown::Write);
                break;
            } else {
                break;
            };
            match res {
                Ok(short) => {
                    if short {
                        c.writable = false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(format!("write: {e}"));
                    break;
                }
            }
        }
        if let Some(msg) = failure {
            self.io_error(idx, msg);
        }
    }

    fn eof(&mut self, idx: usize) {
        let c = &self.conns[idx];
        match c.phase {
            Phase::Closing => {
                if !self.plan.raw && !c.got_close {
                    self.close_problem(idx, "server closed TCP without a close frame");
                }
                self.finish(idx);
            }
            Phase::Handshake => self.fail(idx, "connection closed during the handshake".into()),
            _ => self.fail(idx, "server closed the connection (EOF)".into()),
        }
    }

    /// A socket error: fatal for the run unless it happens while closing.
    fn io_error(&mut self, idx: usize, msg: String) {
        if self.conns[idx].phase == Phase::Closing {
            self.close_problem(idx, &msg);
            self.finish(idx);
        } else {
            self.fail(idx, msg);
        }
    }

    fn close_problem(&mut self, idx: usize, msg: &str) {
        self.close_errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!(
                "connection {} (closing): {msg}",
                idx + self.plan.conn_offset
            ));
        }
    }

    fn fail(&mut self, idx: usize, msg: String) {
        self.errors += 1;
        if self.first_error.is_none() || self.errors == 1 {
            self.first_error = Some(format!("connection {}: {msg}", idx + self.plan.conn_offset));
        }
        self.release(idx, Phase::Failed);
    }

    /// The connection ended normally.
    fn finish(&mut self, idx: usize) {
        self.release(idx, Phase::Done);
    }

    fn release(&mut self, idx: usize, to: Phase) {
        let c = &mut self.conns[idx];
        match c.phase {
            Phase::Connecting | Phase::Handshake => self.pending -= 1,
            Phase::Open => self.up -= 1,
            _ => {}
        }
        if let Some(mut sock) = c.sock.take() {
            let _ = self.poll.registry().deregister(&mut sock);
            self.live -= 1;
        }
        self.in_flight_total -= c.in_flight.len() as u64;
        c.in_flight.clear();
        c.copies = 0;
        c.pos = 0;
        c.phase = to;
        c.hs = Vec::new();
        if self.plan.mode == Mode::Connect && self.stage == Stage::Running {
            self.restart.push(idx);
        }
    }

    fn report(&self) -> Report {
        // The window ran from t_warm to t_end, or to the close if that came first (idle
        // without a duration, a stop signal); nothing if every connection failed first.
        let measured_ns = if self.ran {
            self.t_end.min(self.t_closed).saturating_sub(self.t_warm)
        } else {
            0
        };
        let up = if self.plan.mode == Mode::Connect {
            self.conns.iter().filter(|c| c.count > 0).count()
        } else {
            self.ever_up
        };
        if let Some(f) = &self.fan {
            return self.fanout_report(f);
        }
        Report {
            mode: self.plan.mode.name(),
            connections: self.plan.connections,
            up,
            size: if self.plan.mode.sends() {
                self.plan.size
            } else {
                0
            },
            kind: self.plan.kind(),
            duration_s: measured_ns as f64 / 1e9,
            warmup_s: self.plan.warmup.as_secs_f64(),
            setup_s: self.setup_ns as f64 / 1e9,
            rate: match self.plan.mode {
                Mode::Rate { per_sec, .. } => Some(per_sec),
                _ => None,
            },
            messages: self.measured,
            completed: self.completed,
            received: self.received,
            server_cpu_s: self.cpu_used.map(|c| c.0),
            client_cpu_s: self.cpu_used.map(|c| c.1),
            sent: self.sent,
            unanswered: self.unanswered,
            skipped: self.skipped,
            errors: self.errors,
            close_errors: self.close_errors,
            first_error: self.first_error.clone(),
            per_conn: self.conns.iter().map(|c| c.count).collect(),
            hist: self.hist.clone(),
            procs: 1,
            fanout: None,
        }
    }
}

impl Engine<'_> {
    fn fanout_report(&self, f: &Fanout) -> Report {
        let p = self.publisher();
        Report {
            mode: self.plan.mode.name(),
            connections: self.plan.connections,
            up: self.ever_up,
            size: self.plan.size,
            kind: self.plan.kind(),
            duration_s: f.window_ns() as f64 / 1e9,
            warmup_s: 0.0,
            setup_s: self.setup_ns as f64 / 1e9,
            rate: f.spec.rate,
            messages: f.deliveries,
            completed: f.all_deliveries,
            received: f.deliveries,
            server_cpu_s: self.cpu_used.map(|c| c.0),
            client_cpu_s: self.cpu_used.map(|c| c.1),
            sent: self.sent,
            unanswered: 0,
            skipped: 0,
            errors: self.errors,
            close_errors: self.close_errors,
            first_error: self.first_error.clone(),
            per_conn: Vec::new(),
            hist: self.hist.clone(),
            procs: 1,
            fanout: Some(f.summary(p)),
        }
    }
}

/// Start a non-blocking connect, from `source` (port chosen at connect time) if given.
pub(crate) fn connect(addr: SocketAddrV4, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::IPV4,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    // Echoes are one write each; Nagle would hold small ones back.
    sock.set_nodelay(true)?;
    if let Some(ip) = source {
        sys::set_bind_address_no_port(sock.as_raw_fd())?;
        sock.bind(&SocketAddr::from(SocketAddrV4::new(ip, 0)).into())?;
    }
    match sock.connect(&SocketAddr::from(addr).into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}
