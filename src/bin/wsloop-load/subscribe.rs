//! Owns the `subscribe` mode (issue 22): N raw WebSocket subscribers of one topic, spread round
//! robin over several servers (`--url`, repeatable: one per wsloop process) and loopback source
//! addresses, held open while a publisher outside (scripts/bench-100k: `POST /publish`) sends
//! messages whose first 8 bytes are a sequence number 0..M. It writes JSON lines on stdout, all
//! times on CLOCK_MONOTONIC (nanoseconds, one clock for every process of the host): `up` once
//! every connection is up or has failed, `message` when every subscriber of this process that
//! came up has a message (its first and last arrival), `done` at the end (counts, errors, what
//! is still missing). Its own event loop (one mio `Poll`), answering the server's pings.
//! Must not: reach beyond loopback, let one connection's failure stop the others, panic on
//! anything a server sends, or call a message complete before every subscriber that came up
//! has it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;
use socket2::{Domain, Protocol, Socket, Type};

use wsloop::client::frames::{close_frame, encode_masked, FrameReader, ServerFrame};
use wsloop::client::handshake;
use wsloop::ws::frame::OpCode;

use crate::sys;

const SEC: u64 = 1_000_000_000;
/// Bytes read per `read` call (shared by every connection).
const SCRATCH: usize = 64 * 1024;
/// Most distinct error messages kept for the report.
const MAX_ERRORS: usize = 8;

/// The `subscribe` command line.
#[derive(Debug, clap::Args)]
pub struct SubscribeArgs {
    /// Server URL, ws://HOST:PORT/topic/NAME (loopback); repeat it for several servers, the
    /// connections go round robin over them.
    #[arg(long = "url", value_name = "URL", required = true)]
    urls: Vec<String>,
    /// Subscriber connections.
    #[arg(short = 'c', long, default_value_t = 100)]
    connections: usize,
    /// Bind client sockets to these loopback source addresses, round robin: A-B or A,B,C.
    #[arg(long, value_name = "IPS")]
    source_ips: Option<String>,
    /// Most connections being opened at the same time.
    #[arg(long, value_name = "N", default_value_t = 256)]
    connect_concurrency: usize,
    /// Give up on connections not up this long after the first connect.
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = crate::parse_duration)]
    connect_timeout: Duration,
    /// Messages to wait for (sequence numbers 0..M); the run ends once every subscriber that
    /// came up has them all.
    #[arg(short, long, default_value_t = 1)]
    messages: u64,
    /// Hold the connections at most this long after the `up` line, whatever arrives.
    #[arg(long, value_name = "TIME", default_value = "120s", value_parser = crate::parse_duration)]
    hold: Duration,
    /// Once every subscriber has every message, keep the connections open this much longer
    /// (for measurements taken after the last message).
    #[arg(long, value_name = "TIME", default_value = "0s", value_parser = crate::parse_duration)]
    linger: Duration,
    /// No per-second progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not opened yet.
    Waiting,
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent, reading the 101.
    Handshake,
    Open,
    /// Failed before it was up, or closed after; its socket is gone.
    Gone,
}

/// One subscriber.
struct Sub {
    stream: Option<TcpStream>,
    phase: Phase,
    /// During the handshake: its key and the response read so far.
    key: String,
    head: Vec<u8>,
    /// Bytes not yet written (the request, pongs, a close).
    out: Vec<u8>,
    reader: FrameReader,
    /// The sequence number this subscriber should receive next.
    next: u64,
}

/// Arrivals of one message over this process's subscribers.
#[derive(Debug, Clone, Copy, Default)]
struct Arrivals {
    count: u32,
    first_ns: u64,
    last_ns: u64,
    reported: bool,
}

/// splitmix64, for WebSocket keys and masks (they must differ, not resist an attacker).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn mask(&mut self) -> [u8; 4] {
        let v = self.next().to_ne_bytes();
        [v[0], v[1], v[2], v[3]]
    }
}

/// A target server: its address, Host header and path.
struct Target {
    addr: SocketAddrV4,
    host: String,
    path: String,
}

struct Run {
    args: SubscribeArgs,
    targets: Vec<Target>,
    sources: Vec<Ipv4Addr>,
    poll: Poll,
    subs: Vec<Sub>,
    msgs: Vec<Arrivals>,
    rng: Rng,
    scratch: Vec<u8>,
    /// Index of the next subscriber to open; how many are connecting or in the handshake.
    next_open: usize,
    opening: usize,
    up: usize,
    failed: usize,
    closed: usize,
    /// Subscribers that have every message.
    complete: usize,
    missing: u64,
    duplicates: u64,
    strangers: u64,
    errors: Vec<(String, u64)>,
    t_first_connect: u64,
    t_last_up: u64,
}

/// Run the mode; exit 0 when every connection came up and got every message, 1 otherwise,
/// 2 for a command line it cannot honour.
pub fn main(args: SubscribeArgs) -> ExitCode {
    let mut run = match Run::new(args) {
        Ok(r) => r,
        Err(msg) => {
            eprintln!("wsloop-load subscribe: {msg}");
            return ExitCode::from(2);
        }
    };
    sys::catch_stop_signals();
    match run.run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wsloop-load subscribe: {e}");
            ExitCode::from(1)
        }
    }
}

impl Run {
    fn new(args: SubscribeArgs) -> Result<Run, String> {
        if args.connections == 0 || args.connect_concurrency == 0 {
            return Err("--connections and --connect-concurrency: at least 1".into());
        }
        if args.messages > 10_000_000 {
            return Err(format!("--messages {}: at most 10,000,000", args.messages));
        }
        let mut targets = Vec::new();
        for url in &args.urls {
            let (addr, host, path) = crate::parse_url(url, false)?;
            if !path.starts_with("/topic/") {
                return Err(format!("--url {url}: want ws://HOST:PORT/topic/NAME"));
            }
            targets.push(Target { addr, host, path });
        }
        let sources = match &args.source_ips {
            Some(s) => crate::parse_source_ips(s)?,
            None => Vec::new(),
        };
        let limit = sys::raise_fd_limit();
        if args.connections as u64 + 64 > limit {
            return Err(format!(
                "{} connections need about {} descriptors, the limit (ulimit -n) is {limit}: \
                 run several processes",
                args.connections,
                args.connections + 64
            ));
        }
        let subs = (0..args.connections)
            .map(|_| Sub {
                stream: None,
                phase: Phase::Waiting,
                key: String::new(),
                head: Vec::new(),
                out: Vec::new(),
                reader: FrameReader::new(),
                next: 0,
            })
            .collect();
        Ok(Run {
            msgs: vec![Arrivals::default(); args.messages as usize],
            targets,
            sources,
            poll: Poll::new().map_err(|e| format!("epoll: {e}"))?,
            subs,
            rng: Rng(sys::random_seed()),
            scratch: vec![0; SCRATCH],
            next_open: 0,
            opening: 0,
            up: 0,
            failed: 0,
            closed: 0,
            complete: 0,
            missing: 0,
            duplicates: 0,
            strangers: 0,
            errors: Vec::new(),
            t_first_connect: 0,
            t_last_up: 0,
            args,
        })
    }

    /// The event loop: open, hold, record; true when everything came up and arrived.
    fn run(&mut self) -> io::Result<bool> {
        let mut events = Events::with_capacity(1024);
        let n = self.args.connections;
        let start = sys::now_ns();
        self.t_first_connect = start;
        let connect_deadline = start + self.args.connect_timeout.as_nanos() as u64;
        let mut hold_deadline = None;
        // When every open subscriber last became complete.
        let mut all_since: Option<u64> = None;
        let mut next_progress = start + SEC;
        loop {
            self.open_more();
            let now = sys::now_ns();
            if hold_deadline.is_none() && (self.up + self.failed == n || now >= connect_deadline) {
                self.give_up_connecting();
                self.print_up();
                hold_deadline = Some(now + self.args.hold.as_nanos() as u64);
            }
            if let Some(end) = hold_deadline {
                let open = self.up - self.closed;
                if self.complete == open && all_since.is_none() {
                    all_since = Some(now);
                }
                let lingered =
                    all_since.is_some_and(|t| now >= t + self.args.linger.as_nanos() as u64);
                if now >= end || open == 0 || lingered || sys::stop_requested() {
                    break;
                }
            } else if sys::stop_requested() {
                self.give_up_connecting();
                self.print_up();
                break;
            }
            if now >= next_progress {
                next_progress = now + SEC;
                if !self.args.quiet {
                    eprintln!(
                        "subscribe: {} up, {} failed, {} closed, {} complete",
                        self.up, self.failed, self.closed, self.complete
                    );
                }
            }
            match self
                .poll
                .poll(&mut events, Some(Duration::from_millis(100)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                self.on_event(ev.token().0, ev.is_readable(), ev.is_writable());
            }
        }
        Ok(self.finish())
    }

    /// Start connects up to the concurrency limit.
    fn open_more(&mut self) {
        while self.opening < self.args.connect_concurrency && self.next_open < self.subs.len() {
            let i = self.next_open;
            self.next_open += 1;
            let target = &self.targets[i % self.targets.len()];
            let source = (!self.sources.is_empty())
                .then(|| self.sources[(i / self.targets.len()) % self.sources.len()]);
            match connect(target.addr, source) {
                Ok(mut stream) => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self
                        .poll
                        .registry()
                        .register(&mut stream, Token(i), interest)
                    {
                        self.fail(i, format!("epoll register: {e}"));
                        continue;
                    }
                    let sub = &mut self.subs[i];
                    sub.stream = Some(stream);
                    sub.phase = Phase::Connecting;
                    self.opening += 1;
                }
                Err(e) => self.fail(i, format!("connect: {e}")),
            }
        }
    }

    fn on_event(&mut self, i: usize, readable: bool, writable: bool) {
        if i >= self.subs.len() {
            return;
        }
        if self.subs[i].phase == Phase::Connecting {
            if !writable {
                return;
            }
            let Some(stream) = self.subs[i].stream.as_ref() else {
                return;
            };
            match stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail(i, format!("connect: {e}")),
            }
            match stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(e) => return self.fail(i, format!("connect: {e}")),
            }
            self.send_request(i);
        }
        if writable {
            self.flush(i);
        }
        if readable {
            self.read(i);
        }
    }

    fn send_request(&mut self, i: usize) {
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&self.rng.next().to_ne_bytes());
        nonce[8..].copy_from_slice(&self.rng.next().to_ne_bytes());
        let key = handshake::key_for_nonce(&nonce);
        let target = &self.targets[i % self.targets.len()];
        let request = handshake::request(&target.host, &target.path, &key);
        let sub = &mut self.subs[i];
        sub.key = key;
        sub.out = request;
        sub.phase = Phase::Handshake;
        self.flush(i);
    }

    /// Write what is pending until done or the socket is full.
    fn flush(&mut self, i: usize) {
        let sub = &mut self.subs[i];
        let Some(stream) = sub.stream.as_mut() else {
            return;
        };
        while !sub.out.is_empty() {
            match stream.write(&sub.out) {
                Ok(0) => return self.fail(i, "write returned 0".into()),
                Ok(n) => {
                    sub.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, format!("write: {e}")),
            }
        }
    }

    /// Read until the socket is empty (edge-triggered).
    fn read(&mut self, i: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(stream) = self.subs[i].stream.as_mut() {
            match stream.read(&mut scratch) {
                Ok(0) => {
                    self.fail(i, "closed by the server without a close frame".into());
                    break;
                }
                Ok(n) => {
                    let now = sys::now_ns();
                    if !self.received(i, &scratch[..n], now) {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(i, format!("read: {e}"));
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// Bytes from subscriber `i`'s socket; false when it is gone.
    fn received(&mut self, i: usize, bytes: &[u8], now: u64) -> bool {
        if self.subs[i].phase == Phase::Handshake {
            let sub = &mut self.subs[i];
            let scanned = sub.head.len().saturating_sub(3);
            sub.head.extend_from_slice(bytes);
            match handshake::check_response(&sub.head, scanned, &sub.key) {
                Ok(None) => return true,
                Ok(Some(n)) => {
                    let rest = std::mem::take(&mut sub.head);
                    sub.key = String::new();
                    sub.phase = Phase::Open;
                    self.opening -= 1;
                    self.up += 1;
                    self.t_last_up = now;
                    return self.frames(i, &rest[n..], now);
                }
                Err(e) => {
                    self.fail(i, format!("handshake: {e}"));
                    return false;
                }
            }
        }
        if self.subs[i].phase != Phase::Open {
            return false;
        }
        self.frames(i, bytes, now)
    }

    /// WebSocket bytes from open subscriber `i`; false when it is gone.
    fn frames(&mut self, i: usize, mut bytes: &[u8], now: u64) -> bool {
        while !bytes.is_empty() {
            let (used, frame) = match self.subs[i].reader.feed(bytes) {
                Ok(v) => v,
                Err(e) => {
                    self.fail(i, format!("{e}"));
                    return false;
                }
            };
            bytes = &bytes[used..];
            match frame {
                None => {}
                Some(ServerFrame::Data { opcode, head, .. }) => {
                    if opcode == OpCode::Continuation {
                        continue;
                    }
                    let seq = head
                        .as_slice()
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes);
                    self.delivered(i, seq, now);
                }
                Some(ServerFrame::Control { opcode, payload }) => match opcode {
                    OpCode::Ping => {
                        let mask = self.rng.mask();
                        let mut pong = Vec::with_capacity(6 + payload.len());
                        encode_masked(OpCode::Pong, payload, mask, &mut pong);
                        self.subs[i].out.extend_from_slice(&pong);
                        self.flush(i);
                    }
                    OpCode::Close => {
                        let frame = close_frame(1000, self.rng.mask());
                        self.subs[i].out.extend_from_slice(&frame);
                        self.flush(i);
                        self.fail(i, "closed by the server".into());
                        return false;
                    }
                    _ => {}
                },
            }
        }
        true
    }

    /// Subscriber `i` received a message whose first 8 bytes read `seq`.
    fn delivered(&mut self, i: usize, seq: Option<u64>, now: u64) {
        let Some(seq) = seq.filter(|&s| s < self.args.messages) else {
            self.strangers += 1;
            return;
        };
        let sub = &mut self.subs[i];
        if seq < sub.next {
            self.duplicates += 1;
            return;
        }
        self.missing += seq - sub.next;
        sub.next = seq + 1;
        if sub.next == self.args.messages {
            self.complete += 1;
        }
        let m = &mut self.msgs[seq as usize];
        if m.count == 0 {
            m.first_ns = now;
        }
        m.count += 1;
        m.last_ns = now;
        if !m.reported && m.count as usize == self.up {
            m.reported = true;
            let line = json!({"event": "message", "seq": seq, "subscribers": m.count,
                              "first_ns": m.first_ns, "last_ns": m.last_ns});
            println!("{line}");
        }
    }

    /// Connections still connecting when the deadline passed count as failed.
    fn give_up_connecting(&mut self) {
        for i in 0..self.subs.len() {
            if matches!(
                self.subs[i].phase,
                Phase::Waiting | Phase::Connecting | Phase::Handshake
            ) {
                self.fail(i, "not up before --connect-timeout".into());
            }
        }
    }

    /// Subscriber `i` is gone: before it was up (failed) or after (closed).
    fn fail(&mut self, i: usize, why: String) {
        let sub = &mut self.subs[i];
        match sub.phase {
            Phase::Gone => return,
            Phase::Open => self.closed += 1,
            Phase::Connecting | Phase::Handshake => {
                self.opening -= 1;
                self.failed += 1;
            }
            Phase::Waiting => self.failed += 1,
        }
        if sub.phase == Phase::Open && sub.next == self.args.messages {
            self.complete -= 1;
        }
        sub.phase = Phase::Gone;
        if let Some(mut s) = sub.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        sub.out = Vec::new();
        sub.head = Vec::new();
        if let Some((_, n)) = self.errors.iter_mut().find(|(m, _)| *m == why) {
            *n += 1;
        } else if self.errors.len() < MAX_ERRORS {
            self.errors.push((why, 1));
        }
    }

    fn print_up(&self) {
        let line = json!({"event": "up", "connections": self.args.connections, "up": self.up,
                          "failed": self.failed, "first_connect_ns": self.t_first_connect,
                          "last_up_ns": self.t_last_up, "rss_kib": rss_kib()});
        println!("{line}");
    }

    /// Print the `done` line; true when everything came up and arrived.
    fn finish(&mut self) -> bool {
        let incomplete: Vec<_> = (self.msgs.iter().enumerate())
            .filter(|(_, m)| !m.reported)
            .map(|(seq, m)| json!({"seq": seq, "subscribers": m.count}))
            .collect();
        let errors: Vec<_> = (self.errors.iter())
            .map(|(m, n)| json!({"error": m, "count": n}))
            .collect();
        let ok = self.failed == 0
            && self.closed == 0
            && incomplete.is_empty()
            && self.missing + self.duplicates + self.strangers == 0;
        let line = json!({"event": "done", "connections": self.args.connections, "up": self.up,
                          "failed": self.failed, "closed": self.closed,
                          "complete": self.complete, "missing": self.missing,
                          "duplicates": self.duplicates, "strangers": self.strangers,
                          "incomplete": incomplete, "errors": errors, "rss_kib": rss_kib(),
                          "ok": ok});
        println!("{line}");
        ok
    }
}

/// This process's resident set (KiB), from /proc/self/status.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (status.lines())
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Start a non-blocking connect, from `source` (port chosen at connect time) if given.
fn connect(addr: SocketAddrV4, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::IPV4,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
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
