//! Owns the `churn` mode (issue 22, item 4): K concurrent loops, each repeating one full
//! short-lived-client cycle — TCP connect (from the `--source-ips` round robin), WebSocket
//! upgrade, one message and its echo, close handshake (our close, the server's close, its FIN)
//! — for a measured window; with `--raw` the floor: connect, write SIZE bytes, read them back,
//! half-close, the server's FIN; with a `wss://` URL the WebSocket cycle over TLS (rustls,
//! sessions resumed across cycles). Counts cycles per second, times each cycle (connect to FIN),
//! counts failed cycles by kind and, with `--server-pid`, the server's CPU per cycle. Its own
//! event loop (one mio `Poll`) and its own report.
//! Must not: let a failed cycle stop the loop (it counts it and starts over), or count a cycle
//! that began before the window opened.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use wsloop::client::frames::{close_frame, encode_masked, FrameReader, ServerFrame};
use wsloop::client::handshake::{self, HandshakeError};
use wsloop::ws::frame::OpCode;

use crate::engine::{connect, Rng};
use crate::report::{json_string, new_histogram, Output};
use crate::sys;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// How often cycle deadlines and retry delays are checked.
const SWEEP: u64 = 10 * MS;
/// After a failed cycle, the loop waits this long before the next (a refusing server would
/// otherwise be hammered at the speed of `connect`).
const RETRY: u64 = 10 * MS;
/// One read buffer shared by every loop.
const SCRATCH: usize = 64 * 1024;

/// A validated churn run (built by wsloop-load.rs from the command line).
#[derive(Debug, Clone)]
pub struct Spec {
    pub loops: usize,
    pub addr: SocketAddrV4,
    pub host: String,
    pub path: String,
    pub size: usize,
    pub text: bool,
    /// No WebSocket: the raw TCP cycle (for raw-mio-echo).
    pub raw: bool,
    /// `wss://`: the client configuration (trusting `--ca`; rustls' default session cache, so
    /// later cycles resume) and the name the server's certificate is checked against.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    pub source_ips: Vec<Ipv4Addr>,
    pub warmup_ns: u64,
    pub duration_ns: u64,
    /// One cycle may take this long before it counts as timed out.
    pub cycle_timeout_ns: u64,
    pub server_pid: Option<u32>,
    pub output: Output,
    pub quiet: bool,
}

/// Why a cycle failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Refused,
    Reset,
    /// FIN before the cycle's end (before the echo or before the server's close frame).
    Eof,
    Timeout,
    /// An HTTP status other than 101, or a bad 101.
    Handshake,
    /// A malformed frame, a wrong echo, a close code other than ours.
    Protocol,
    /// `connect` failed at once (e.g. EADDRNOTAVAIL: no ephemeral port left).
    AddrNotAvail,
    Other,
}

impl Why {
    const ALL: [Why; 8] = [
        Why::Refused,
        Why::Reset,
        Why::Eof,
        Why::Timeout,
        Why::Handshake,
        Why::Protocol,
        Why::AddrNotAvail,
        Why::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Why::Refused => "refused",
            Why::Reset => "reset",
            Why::Eof => "eof",
            Why::Timeout => "timeout",
            Why::Handshake => "handshake",
            Why::Protocol => "protocol",
            Why::AddrNotAvail => "addr_not_avail",
            Why::Other => "other",
        }
    }

    /// The kind of a socket error.
    pub fn of(e: &io::Error) -> Why {
        match e.kind() {
            ErrorKind::ConnectionRefused => Why::Refused,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                Why::Reset
            }
            ErrorKind::TimedOut => Why::Timeout,
            ErrorKind::AddrNotAvailable => Why::AddrNotAvail,
            _ => Why::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between cycles, until `due_ns` (after a failure).
    Waiting,
    Connecting,
    /// The upgrade request is out; waiting for the 101.
    Handshake,
    /// The message is out; waiting for its echo.
    Echo,
    /// Our close frame is out; waiting for the server's.
    Closing,
    /// Both close frames seen (or, raw, our FIN sent): waiting for the server's FIN.
    Fin,
}

/// What an echo so far says, given the payload bytes and whether the message has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoState {
    More,
    Done,
    Wrong,
}

/// A message of `expected` bytes: `got` bytes in, `fin` when the server ended the message.
pub fn echo_state(expected: usize, got: u64, fin: bool) -> EchoState {
    match (got.cmp(&(expected as u64)), fin) {
        (std::cmp::Ordering::Greater, _) => EchoState::Wrong,
        (std::cmp::Ordering::Equal, true) => EchoState::Done,
        (std::cmp::Ordering::Less, true) => EchoState::Wrong,
        (_, false) => EchoState::More,
    }
}

/// One loop: one connection at a time, cycle after cycle.
struct Slot {
    sock: Option<TcpStream>,
    generation: u32,
    phase: Phase,
    /// When the current cycle began (its connect call).
    started_ns: u64,
    due_ns: u64,
    key: String,
    /// The handshake response so far (then unused).
    rx: Vec<u8>,
    scanned: usize,
    tx: Vec<u8>,
    tx_pos: usize,
    writable: bool,
    reader: FrameReader,
    /// Echo bytes received in this cycle.
    echoed: u64,
    tls: Option<Box<ClientConnection>>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            sock: None,
            generation: 0,
            phase: Phase::Waiting,
            started_ns: 0,
            due_ns: 0,
            key: String::new(),
            rx: Vec::new(),
            scanned: 0,
            tx: Vec::new(),
            tx_pos: 0,
            writable: false,
            reader: FrameReader::new(),
            echoed: 0,
            tls: None,
        }
    }
}

/// The result of a churn run.
#[derive(Debug)]
pub struct ChurnReport {
    pub loops: usize,
    pub size: usize,
    pub raw: bool,
    pub tls: bool,
    pub duration_s: f64,
    /// Cycles that began and ended inside the window.
    pub cycles: u64,
    /// Cycles completed in the whole run (warm-up included).
    pub completed: u64,
    /// Failed cycles by kind (`Why::ALL` order), inside the window.
    pub errors: [u64; 8],
    pub first_error: Option<String>,
    pub server_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
    /// Cycle time, connect call to the server's FIN, in nanoseconds.
    pub hist: Histogram<u64>,
}

impl ChurnReport {
    pub fn failed(&self) -> bool {
        self.errors.iter().sum::<u64>() > 0
    }

    pub fn per_sec(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.cycles as f64 / self.duration_s
        } else {
            0.0
        }
    }

    fn q_us(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.value_at_quantile(q) as f64 / 1e3
        }
    }

    fn per_cycle_us(&self, cpu: Option<f64>) -> Option<f64> {
        cpu.filter(|_| self.cycles > 0)
            .map(|c| c * 1e6 / self.cycles as f64)
    }

    pub fn print(&self, output: Output) {
        match output {
            Output::Json => println!("{}", self.json()),
            _ => print!("{}", self.human()),
        }
    }

    pub fn human(&self) -> String {
        let kind = match (self.raw, self.tls) {
            (true, _) => "raw TCP",
            (false, true) => "WebSocket over TLS",
            (false, false) => "WebSocket",
        };
        let mut s = format!(
            "churn ({kind}): {} loops, {} B message, {:.2} s measured\n  {} cycles, {:.0} cycles/s\n  \
             cycle latency: p50 {:.0} µs  p99 {:.0} µs  max {:.0} µs\n",
            self.loops,
            self.size,
            self.duration_s,
            self.cycles,
            self.per_sec(),
            self.q_us(0.5),
            self.q_us(0.99),
            if self.hist.is_empty() {
                0.0
            } else {
                self.hist.max() as f64 / 1e3
            },
        );
        let errs: Vec<String> = Why::ALL
            .iter()
            .zip(self.errors)
            .filter(|(_, n)| *n > 0)
            .map(|(w, n)| format!("{} {n}", w.name()))
            .collect();
        if errs.is_empty() {
            s += "  errors: none\n";
        } else {
            s += &format!("  errors: {}\n", errs.join(", "));
            if let Some(e) = &self.first_error {
                s += &format!("  first error: {e}\n");
            }
        }
        if let Some(us) = self.per_cycle_us(self.server_cpu_s) {
            s += &format!(
                "  server CPU: {:.2} s, {us:.1} µs/cycle\n",
                self.server_cpu_s.unwrap_or(0.0)
            );
        }
        if let Some(us) = self.per_cycle_us(self.client_cpu_s) {
            s += &format!("  generator CPU: {us:.1} µs/cycle\n");
        }
        s
    }

    pub fn json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.3}"));
        let errs: Vec<String> = Why::ALL
            .iter()
            .zip(self.errors)
            .map(|(w, n)| format!("\"{}\":{n}", w.name()))
            .collect();
        format!(
            "{{\"mode\":\"churn\",\"raw\":{},\"tls\":{},\"loops\":{},\"size\":{},\"duration_s\":{:.3},\
             \"cycles\":{},\"completed\":{},\"cycles_per_s\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\
             \"errors\":{{{}}},\"first_error\":{},\"server_cpu_s\":{},\"server_cpu_us_per_cycle\":{},\
             \"client_cpu_us_per_cycle\":{}}}",
            self.raw,
            self.tls,
            self.loops,
            self.size,
            self.duration_s,
            self.cycles,
            self.completed,
            self.per_sec(),
            self.q_us(0.5),
            self.q_us(0.99),
            errs.join(","),
            self.first_error
                .as_deref()
                .map_or("null".to_string(), json_string),
            opt(self.server_cpu_s),
            opt(self.per_cycle_us(self.server_cpu_s)),
            opt(self.per_cycle_us(self.client_cpu_s)),
        )
    }
}

struct Churn<'s> {
    spec: &'s Spec,
    poll: Poll,
    slots: Vec<Slot>,
    scratch: Vec<u8>,
    /// Decrypted bytes of one read (wss://).
    plain: Vec<u8>,
    rng: Rng,
    payload: Vec<u8>,
    /// Source address round robin, one step per cycle.
    next_source: usize,
    t_window: u64,
    t_end: u64,
    in_window: bool,
    cpu_start: Option<(f64, f64)>,
    next_tick: u64,
    tick_no: u64,
    last_completed: u64,
    r: ChurnReport,
}

/// Run the churn and report.
pub fn run(spec: &Spec) -> io::Result<ChurnReport> {
    let mut c = Churn::new(spec)?;
    let mut events = Events::with_capacity(1024);
    let now = sys::now_ns();
    for idx in 0..c.slots.len() {
        c.start(idx, now);
    }
    let mut next_sweep = now + SWEEP;
    loop {
        let now = sys::now_ns();
        if sys::stop_requested() && now < c.t_end {
            c.t_end = now;
        }
        if c.tick(now) {
            break;
        }
        if now >= next_sweep {
            next_sweep = now + SWEEP;
            c.sweep(now);
        }
        let deadline =
            next_sweep
                .min(c.next_tick)
                .min(if c.in_window { c.t_end } else { c.t_window });
        let timeout = Duration::from_nanos(deadline.saturating_sub(now));
        if let Err(e) = c.poll.poll(&mut events, Some(timeout)) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            let idx = ev.token().0 & 0xFFFF_FFFF;
            let generation = (ev.token().0 >> 32) as u32;
            match c.slots.get(idx) {
                Some(s) if s.generation == generation && s.sock.is_some() => c.on_event(idx, ev),
                _ => {}
            }
        }
    }
    Ok(c.r)
}

fn cpu_pair(spec: &Spec) -> Option<(f64, f64)> {
    Some((
        sys::cpu_seconds(spec.server_pid?)?,
        sys::cpu_seconds(std::process::id())?,
    ))
}

impl<'s> Churn<'s> {
    fn new(spec: &'s Spec) -> io::Result<Churn<'s>> {
        let now = sys::now_ns();
        let payload = if spec.text {
            (0..spec.size).map(|i| b'a' + (i % 26) as u8).collect()
        } else {
            (0..spec.size).map(|i| i as u8).collect()
        };
        Ok(Churn {
            spec,
            poll: Poll::new()?,
            slots: (0..spec.loops).map(|_| Slot::new()).collect(),
            scratch: vec![0u8; SCRATCH],
            plain: Vec::with_capacity(SCRATCH),
            rng: Rng(sys::random_seed()),
            payload,
            next_source: 0,
            t_window: now + spec.warmup_ns,
            t_end: now + spec.warmup_ns + spec.duration_ns,
            in_window: false,
            cpu_start: None,
            next_tick: now + SEC,
            tick_no: 0,
            last_completed: 0,
            r: ChurnReport {
                loops: spec.loops,
                size: spec.size,
                raw: spec.raw,
                tls: spec.tls.is_some(),
                duration_s: 0.0,
                cycles: 0,
                completed: 0,
                errors: [0; 8],
                first_error: None,
                server_cpu_s: None,
                client_cpu_s: None,
                hist: new_histogram(),
            },
        })
    }

    /// The window's start and end, progress lines; true when the run is over.
    fn tick(&mut self, now: u64) -> bool {
        if !self.in_window && now >= self.t_window && now < self.t_end {
            self.in_window = true;
            self.t_window = now;
            self.cpu_start = cpu_pair(self.spec);
        }
        if now >= self.t_end {
            if self.in_window {
                if let (Some(a), Some(b)) = (self.cpu_start, cpu_pair(self.spec)) {
                    self.r.server_cpu_s = Some(b.0 - a.0);
                    self.r.client_cpu_s = Some(b.1 - a.1);
                }
                self.r.duration_s = (now - self.t_window) as f64 / 1e9;
            }
            for s in &mut self.slots {
                s.sock = None;
            }
            return true;
        }
        if now >= self.next_tick {
            while self.next_tick <= now {
                self.next_tick += SEC;
            }
            self.tick_no += 1;
            if !self.spec.quiet {
                eprintln!(
                    "[{:>4}s] {:<6} {} cycles/s  errors {}",
                    self.tick_no,
                    if self.in_window { "run" } else { "warmup" },
                    self.r.completed - self.last_completed,
                    self.r.errors.iter().sum::<u64>()
                );
            }
            self.last_completed = self.r.completed;
        }
        false
    }

    /// Cycle deadlines and retry delays.
    fn sweep(&mut self, now: u64) {
        for idx in 0..self.slots.len() {
            let s = &self.slots[idx];
            if s.phase == Phase::Waiting {
                if now >= s.due_ns {
                    self.start(idx, now);
                }
            } else if now.saturating_sub(s.started_ns) >= self.spec.cycle_timeout_ns {
                self.fail(idx, now, Why::Timeout, "cycle timed out".into());
            }
        }
    }

    fn start(&mut self, idx: usize, now: u64) {
        let spec = self.spec;
        let source = (!spec.source_ips.is_empty()).then(|| {
            self.next_source = (self.next_source + 1) % spec.source_ips.len();
            spec.source_ips[self.next_source]
        });
        let key = if spec.raw {
            String::new()
        } else {
            handshake::key_for_nonce(&self.rng.nonce())
        };
        let s = &mut self.slots[idx];
        s.generation = s.generation.wrapping_add(1);
        s.phase = Phase::Connecting;
        s.started_ns = now;
        s.rx.clear();
        s.scanned = 0;
        s.tx.clear();
        s.tx_pos = 0;
        s.writable = false;
        s.reader = FrameReader::new();
        s.echoed = 0;
        s.tls = None;
        if spec.raw {
            s.tx.extend_from_slice(&self.payload);
        } else {
            s.tx = handshake::request(&spec.host, &spec.path, &key);
        }
        s.key = key;
        let generation = s.generation;
        let res = connect(spec.addr, source).and_then(|mut sock| {
            let token = Token(((generation as usize) << 32) | idx);
            self.poll
                .registry()
                .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                .map(|()| sock)
        });
        match res {
            Ok(sock) => self.slots[idx].sock = Some(sock),
            Err(e) => self.fail(idx, now, Why::of(&e), format!("connect: {e}")),
        }
    }

    fn fail(&mut self, idx: usize, now: u64, why: Why, msg: String) {
        let s = &mut self.slots[idx];
        s.sock = None;
        s.phase = Phase::Waiting;
        s.due_ns = now + RETRY;
        if self.in_window && s.started_ns >= self.t_window {
            self.r.errors[Why::ALL.iter().position(|w| *w == why).unwrap_or(7)] += 1;
            self.r
                .first_error
                .get_or_insert(format!("{}: {msg}", why.name()));
        }
    }

    /// The server's FIN at the end of a cycle: count it and begin the next.
    fn done(&mut self, idx: usize, now: u64) {
        let s = &mut self.slots[idx];
        s.sock = None;
        self.r.completed += 1;
        if self.in_window && s.started_ns >= self.t_window && now <= self.t_end {
            self.r.cycles += 1;
            let _ = self.r.hist.record(now - s.started_ns);
        }
        self.start(idx, now);
    }

    fn on_event(&mut self, idx: usize, ev: &mio::event::Event) {
        let now = sys::now_ns();
        if self.slots[idx].phase == Phase::Connecting {
            let Some(sock) = self.slots[idx].sock.as_ref() else {
                return;
            };
            let err = match sock.take_error() {
                Ok(None) => match sock.peer_addr() {
                    Ok(_) => None,
                    Err(e) if e.kind() == ErrorKind::NotConnected => return,
                    Err(e) => Some(e),
                },
                Ok(Some(e)) | Err(e) => Some(e),
            };
            if let Some(e) = err {
                return self.fail(idx, now, Why::of(&e), format!("connect: {e}"));
            }
            if let Some((config, name)) = &self.spec.tls {
                match ClientConnection::new(config.clone(), name.clone()) {
                    Ok(c) => self.slots[idx].tls = Some(Box::new(c)),
                    Err(e) => return self.fail(idx, now, Why::Handshake, format!("tls: {e}")),
                }
            }
            let s = &mut self.slots[idx];
            s.phase = if self.spec.raw {
                Phase::Echo
            } else {
                Phase::Handshake
            };
            s.writable = true;
            self.flush(idx, now);
        }
        let generation = self.slots[idx].generation;
        if (ev.is_readable() || ev.is_read_closed() || ev.is_error())
            && self.slots[idx].sock.is_some()
        {
            self.read(idx, now);
        }
        let s = &self.slots[idx];
        if ev.is_writable() && s.sock.is_some() && s.generation == generation {
            self.slots[idx].writable = true;
            self.flush(idx, now);
        }
    }

    fn flush(&mut self, idx: usize, now: u64) {
        let s = &mut self.slots[idx];
        let Some(sock) = s.sock.as_ref() else {
            return;
        };
        if let Some(tls) = s.tls.as_mut() {
            // Plaintext into the session at once; records out as the socket takes them.
            if s.tx_pos < s.tx.len() {
                let _ = tls.writer().write_all(&s.tx[s.tx_pos..]);
                s.tx.clear();
                s.tx_pos = 0;
            }
            while s.writable && tls.wants_write() {
                match tls.write_tls(&mut &*sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => s.writable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return self.fail(idx, now, Why::of(&e), format!("write: {e}")),
                }
            }
            return;
        }
        while s.writable && s.tx_pos < s.tx.len() {
            match (&*sock).write(&s.tx[s.tx_pos..]) {
                Ok(n) => s.tx_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => s.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(idx, now, Why::of(&e), format!("write: {e}")),
            }
        }
        if s.tx_pos == s.tx.len() {
            s.tx.clear();
            s.tx_pos = 0;
        }
    }

    /// Read until WouldBlock or the end of the cycle.
    fn read(&mut self, idx: usize, now: u64) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let generation = self.slots[idx].generation;
        loop {
            let s = &self.slots[idx];
            let Some(sock) = s.sock.as_ref().filter(|_| s.generation == generation) else {
                break;
            };
            match (&*sock).read(&mut scratch) {
                Ok(0) => {
                    if s.phase == Phase::Fin {
                        self.done(idx, now);
                    } else {
                        let msg = format!("server closed the connection in {:?}", s.phase);
                        self.fail(idx, now, Why::Eof, msg);
                    }
                    break;
                }
                Ok(n) if s.tls.is_some() => {
                    if let Err(msg) = self.decrypt(idx, &scratch[..n]) {
                        self.fail(idx, now, Why::Handshake, msg);
                        break;
                    }
                    let plain = std::mem::take(&mut self.plain);
                    if !plain.is_empty() {
                        self.received(idx, &plain, now);
                    }
                    self.plain = plain;
                    // The session may have records to send (handshake, key updates).
                    if self.slots[idx].generation == generation {
                        self.flush(idx, now);
                    }
                }
                Ok(n) => self.received(idx, &scratch[..n], now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(idx, now, Why::of(&e), format!("read: {e}"));
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// TLS records read from the socket → plaintext in `self.plain`.
    fn decrypt(&mut self, idx: usize, mut records: &[u8]) -> Result<(), String> {
        self.plain.clear();
        let Some(tls) = self.slots[idx].tls.as_mut() else {
            return Ok(());
        };
        while !records.is_empty() {
            tls.read_tls(&mut records)
                .map_err(|e| format!("tls: {e}"))?;
            tls.process_new_packets().map_err(|e| format!("tls: {e}"))?;
            let mut buf = [0u8; 4096];
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => break, // close_notify: the TCP FIN follows
                    Ok(n) => self.plain.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("tls: {e}")),
                }
            }
        }
        Ok(())
    }

    fn received(&mut self, idx: usize, bytes: &[u8], now: u64) {
        let size = self.spec.size;
        if self.spec.raw {
            let s = &mut self.slots[idx];
            if s.phase != Phase::Echo {
                return self.fail(idx, now, Why::Protocol, "bytes after the echo".into());
            }
            s.echoed += bytes.len() as u64;
            match echo_state(size, s.echoed, s.echoed >= size as u64) {
                EchoState::More => {}
                EchoState::Wrong => {
                    return self.fail(idx, now, Why::Protocol, "echo longer than sent".into())
                }
                EchoState::Done => {
                    s.phase = Phase::Fin;
                    if let Some(sock) = s.sock.as_ref() {
                        if let Err(e) = sock.shutdown(Shutdown::Write) {
                            self.fail(idx, now, Why::of(&e), format!("shutdown: {e}"));
                        }
                    }
                }
            }
            return;
        }
        if self.slots[idx].phase == Phase::Handshake {
            let s = &mut self.slots[idx];
            s.rx.extend_from_slice(bytes);
            match handshake::check_response(&s.rx, s.scanned, &s.key) {
                Ok(None) => {
                    s.scanned = s.rx.len();
                    return;
                }
                Ok(Some(head)) => {
                    let rest = s.rx.split_off(head);
                    s.rx.clear();
                    s.phase = Phase::Echo;
                    let op = if self.spec.text {
                        OpCode::Text
                    } else {
                        OpCode::Binary
                    };
                    let mask = self.rng.mask();
                    let s = &mut self.slots[idx];
                    encode_masked(op, &self.payload, mask, &mut s.tx);
                    self.flush(idx, now);
                    if !rest.is_empty() {
                        self.frames(idx, &rest, now);
                    }
                    return;
                }
                Err(e) => {
                    let why = match e {
                        HandshakeError::Status { .. } | HandshakeError::BadAccept => Why::Handshake,
                        _ => Why::Protocol,
                    };
                    return self.fail(idx, now, why, e.to_string());
                }
            }
        }
        self.frames(idx, bytes, now);
    }

    /// Server frames after the 101.
    fn frames(&mut self, idx: usize, mut bytes: &[u8], now: u64) {
        let size = self.spec.size;
        let generation = self.slots[idx].generation;
        while !bytes.is_empty() {
            let s = &mut self.slots[idx];
            if s.generation != generation || s.sock.is_none() {
                return;
            }
            let phase = s.phase;
            let (used, frame) = match s.reader.feed(bytes) {
                Ok(v) => v,
                Err(e) => return self.fail(idx, now, Why::Protocol, e.to_string()),
            };
            // What the frame asks, decided before the reader's borrow ends.
            let act = match frame {
                None => None,
                Some(ServerFrame::Data { len, fin, .. }) => {
                    if phase != Phase::Echo {
                        Some(Err(format!("a data frame in {phase:?}")))
                    } else {
                        s.echoed += len;
                        Some(match echo_state(size, s.echoed, fin) {
                            EchoState::More => Ok(None),
                            EchoState::Done => Ok(Some(Phase::Closing)),
                            EchoState::Wrong => {
                                Err(format!("echo of {} bytes, sent {size}", s.echoed))
                            }
                        })
                    }
                }
                Some(ServerFrame::Control { opcode, payload }) => match opcode {
                    OpCode::Close if phase == Phase::Closing => {
                        let code = (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        if code.is_some_and(|c| c != 1000) {
                            Some(Err(format!("server closed with {code:?}")))
                        } else {
                            Some(Ok(Some(Phase::Fin)))
                        }
                    }
                    OpCode::Close => {
                        let code = (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        Some(Err(format!("server closed with {code:?} in {phase:?}")))
                    }
                    _ => None, // ping/pong: not expected in so short a life; ignored
                },
            };
            bytes = &bytes[used..];
            match act {
                None | Some(Ok(None)) => {}
                Some(Err(msg)) => return self.fail(idx, now, Why::Protocol, msg),
                Some(Ok(Some(Phase::Closing))) => {
                    let frame = close_frame(1000, self.rng.mask());
                    let s = &mut self.slots[idx];
                    s.phase = Phase::Closing;
                    s.tx.extend_from_slice(&frame);
                    self.flush(idx, now);
                }
                Some(Ok(Some(p))) => self.slots[idx].phase = p,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_completion() {
        assert_eq!(echo_state(16, 8, false), EchoState::More);
        assert_eq!(echo_state(16, 16, true), EchoState::Done);
        assert_eq!(echo_state(16, 16, false), EchoState::More);
        assert_eq!(echo_state(16, 8, true), EchoState::Wrong);
        assert_eq!(echo_state(16, 17, false), EchoState::Wrong);
        assert_eq!(echo_state(0, 0, true), EchoState::Done);
    }

    #[test]
    fn error_kinds() {
        let e = io::Error::from(ErrorKind::ConnectionRefused);
        assert_eq!(Why::of(&e), Why::Refused);
        let e = io::Error::from(ErrorKind::AddrNotAvailable);
        assert_eq!(Why::of(&e), Why::AddrNotAvail);
        assert_eq!(Why::ALL.len(), 8);
        assert_eq!(Why::ALL[7], Why::Other);
    }

    #[test]
    fn report_formats() {
        let mut r = ChurnReport {
            loops: 50,
            size: 16,
            raw: false,
            tls: false,
            duration_s: 2.0,
            cycles: 100,
            completed: 120,
            errors: [0; 8],
            first_error: None,
            server_cpu_s: Some(0.5),
            client_cpu_s: Some(0.25),
            hist: new_histogram(),
        };
        assert!(!r.failed());
        assert_eq!(r.per_sec(), 50.0);
        assert_eq!(r.per_cycle_us(r.server_cpu_s), Some(5000.0));
        r.errors[2] = 1;
        assert!(r.failed());
        let j = r.json();
        assert!(
            j.contains("\"eof\":1") && j.contains("\"cycles_per_s\":50.0"),
            "{j}"
        );
        assert!(r.human().contains("eof 1"));
    }
}
