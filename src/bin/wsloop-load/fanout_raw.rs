//! Owns `fanout --raw`'s event loop, the fan-out floor against benches/peers/raw-mio-fanout:
//! plain TCP connections (no upgrade), subscribers first and the publisher only once every
//! subscriber has the server's one-byte greeting (so the server has accepted them all before
//! the first byte: a connected socket may still wait in its accept queue), the publisher writing each
//! message's SIZE bytes as they are, subscribers cutting their byte streams into SIZE-byte
//! records; the schedule, the once-and-in-order check and the report are `fanout`'s, as on
//! the WebSocket path (`engine`).
//! Must not: frame anything, or start publishing before every subscriber is connected.

use std::io::{self, ErrorKind, Read, Write};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::engine::{self, Mode, Plan};
use crate::fanout::{Fanout, Records};
use crate::report::{new_histogram, Progress, Report};
use crate::sys;

const SEC: u64 = 1_000_000_000;

/// What raw-mio-fanout sends a connection it has accepted, before anything else.
const GREETING: u8 = b'+';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Unused,
    Connecting,
    /// Connected; the server's greeting has not arrived yet.
    Greeting,
    Up,
    Failed,
}

struct Conn {
    sock: Option<TcpStream>,
    st: St,
    records: Records,
}

struct Run<'p> {
    plan: &'p Plan,
    poll: Poll,
    conns: Vec<Conn>,
    fan: Fanout,
    /// The publisher's unwritten bytes: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    scratch: Vec<u8>,
    hist: hdrhistogram::Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    sent: u64,
    up: usize,
    cpu_at_warm: Option<(f64, f64)>,
    cpu_used: Option<(f64, f64)>,
}

/// Run `fanout --raw` in this process and report.
pub fn run(plan: &Plan) -> io::Result<Report> {
    let Mode::Fanout(spec) = plan.mode else {
        return Err(io::Error::other("fanout_raw::run needs a fanout plan"));
    };
    let n = plan.connections;
    let p = n - 1;
    let mut r = Run {
        plan,
        poll: Poll::new()?,
        conns: (0..n)
            .map(|_| Conn {
                sock: None,
                st: St::Unused,
                records: Records::new(plan.size),
            })
            .collect(),
        fan: Fanout::new(spec, n),
        out: Vec::new(),
        out_pos: 0,
        scratch: vec![0; 256 << 10],
        hist: new_histogram(),
        errors: 0,
        first_error: None,
        sent: 0,
        up: 0,
        cpu_at_warm: None,
        cpu_used: None,
    };
    let progress = Progress::new(plan.output, plan.quiet, plan.mode, n);
    let mut events = Events::with_capacity(1024);
    let t_start = sys::now_ns();
    let deadline = t_start.saturating_add(plan.connect_timeout.as_nanos() as u64);

    // Connect: subscribers (at most --connect-concurrency at once), then the publisher.
    let (mut next, mut pending) = (0, 0);
    loop {
        let now = sys::now_ns();
        if sys::stop_requested() || now >= deadline {
            break;
        }
        while pending < plan.connect_concurrency && next < p {
            r.open(next);
            pending += (r.conns[next].st == St::Connecting) as usize;
            next += 1;
        }
        if pending == 0 && next == p {
            if r.conns[p].st == St::Unused {
                r.open(p);
                pending += (r.conns[p].st == St::Connecting) as usize;
            }
            if pending == 0 {
                break;
            }
        }
        r.poll_once(&mut events, deadline - now, |r, idx, _| {
            let opening = |st| matches!(st, St::Connecting | St::Greeting);
            let before = r.conns[idx].st;
            if before == St::Connecting {
                r.connected(idx);
            }
            if r.conns[idx].st == St::Greeting {
                r.read(idx);
            }
            pending -= (opening(before) && !opening(r.conns[idx].st)) as usize;
        })?;
    }
    let setup_ns = sys::now_ns() - t_start;
    let subs = r.conns[..p].iter().filter(|c| c.st == St::Up).count();
    progress.all_up(r.up, n, setup_ns as f64 / 1e9);
    if r.conns[p].st != St::Up || subs == 0 {
        r.error("the publisher or every subscriber failed to connect".into());
    }

    // Publish and check.
    let t0 = sys::now_ns();
    r.fan.start(subs, t0);
    let mut next_tick = t0 + SEC;
    let (mut second, mut last_deliveries) = (0, 0);
    while r.errors == 0 && !sys::stop_requested() {
        let now = sys::now_ns();
        while let Some((seq, at)) = r.fan.take_due(t0, now) {
            if seq == spec.warmup {
                r.cpu_at_warm = r.cpu_sample();
            }
            if seq >= spec.warmup {
                r.sent += 1;
            }
            r.out
                .extend_from_slice(&Fanout::payload(seq, at, plan.size));
        }
        r.flush();
        if r.fan.done() {
            break;
        }
        if now >= r.fan.last_progress + spec.drain_ns {
            let why = r.fan.stalled(p);
            r.error(why);
            break;
        }
        if now >= next_tick {
            second += 1;
            let d = r.fan.all_deliveries;
            progress.tick(second, "running", d - last_deliveries, r.up, r.errors);
            last_deliveries = d;
            next_tick += SEC;
        }
        let mut wait = (r.fan.last_progress + spec.drain_ns).min(next_tick);
        if let Some(due) = r.fan.next_due(t0) {
            wait = wait.min(due);
        }
        r.poll_once(&mut events, wait.saturating_sub(now), |r, idx, ev| {
            if idx == p {
                if ev.is_writable() {
                    r.flush();
                }
                if ev.is_readable() {
                    r.read(idx);
                }
            } else if ev.is_readable() {
                r.read(idx);
            }
        })?;
    }
    if let (Some((s0, c0)), Some((s1, c1))) = (r.cpu_at_warm, r.cpu_sample()) {
        r.cpu_used = Some((s1 - s0, c1 - c0));
    }
    Ok(r.report(setup_ns))
}

impl Run<'_> {
    fn error(&mut self, msg: String) {
        self.errors += 1;
        self.first_error.get_or_insert(msg);
    }

    fn cpu_sample(&self) -> Option<(f64, f64)> {
        let server = sys::cpu_seconds(self.plan.server_pid?)?;
        Some((server, sys::cpu_seconds(std::process::id())?))
    }

    /// Start connection `idx`'s connect.
    fn open(&mut self, idx: usize) {
        let ips = &self.plan.source_ips;
        let source = (!ips.is_empty()).then(|| ips[(self.plan.conn_offset + idx) % ips.len()]);
        let res = engine::connect(self.plan.addr, source).and_then(|mut s| {
            self.poll.registry().register(
                &mut s,
                Token(idx),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        match res {
            Ok(s) => {
                self.conns[idx].sock = Some(s);
                self.conns[idx].st = St::Connecting;
            }
            Err(e) => {
                self.conns[idx].st = St::Failed;
                self.error(format!("connection {idx}: connect: {e}"));
            }
        }
    }

    /// A connecting socket reported readiness: connected, or failed.
    fn connected(&mut self, idx: usize) {
        let Some(s) = self.conns[idx].sock.as_ref() else {
            return;
        };
        let err = match s.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => s.peer_addr().err(),
        };
        match err {
            None => self.conns[idx].st = St::Greeting,
            Some(e) if e.kind() == ErrorKind::NotConnected => {} // not yet: wait
            Some(e) => {
                self.conns[idx].st = St::Failed;
                self.conns[idx].sock = None;
                self.error(format!("connection {idx}: connect: {e}"));
            }
        }
    }

    /// Wait up to `timeout_ns` and hand each event's connection to `f`.
    fn poll_once(
        &mut self,
        events: &mut Events,
        timeout_ns: u64,
        mut f: impl FnMut(&mut Self, usize, &mio::event::Event),
    ) -> io::Result<()> {
        match self
            .poll
            .poll(events, Some(Duration::from_nanos(timeout_ns)))
        {
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            r => r?,
        }
        for ev in events.iter() {
            f(self, ev.token().0, ev);
        }
        Ok(())
    }

    /// Write what the publisher's socket takes.
    fn flush(&mut self) {
        let p = self.conns.len() - 1;
        let Some(s) = self.conns[p].sock.as_mut() else {
            return;
        };
        while self.out_pos < self.out.len() {
            match s.write(&self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.error(format!("publisher: write: {e}")),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Read connection `idx` dry; a subscriber's complete records are deliveries.
    fn read(&mut self, idx: usize) {
        let p = self.conns.len() - 1;
        loop {
            let Some(s) = self.conns[idx].sock.as_mut() else {
                return;
            };
            let n = match s.read(&mut self.scratch) {
                Ok(0) => return self.error(format!("connection {idx}: closed by the server")),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return self.error(format!("connection {idx}: read: {e}")),
            };
            let mut data = 0..n;
            if self.conns[idx].st == St::Greeting {
                if self.scratch[0] != GREETING {
                    self.conns[idx].st = St::Failed;
                    return self.error(format!(
                        "connection {idx}: no greeting from the server (not raw-mio-fanout?)"
                    ));
                }
                self.conns[idx].st = St::Up;
                self.up += 1;
                data.start = 1;
            }
            if idx == p {
                continue; // the publisher gets nothing from the raw peer; ignore anything
            }
            let now = sys::now_ns();
            let (fan, hist) = (&mut self.fan, &mut self.hist);
            let mut failed = None;
            self.conns[idx].records.feed(&self.scratch[data], |head| {
                let Some((seq, at)) = Fanout::parse(head) else {
                    return;
                };
                match fan.delivered(idx, seq, at, now) {
                    Ok(Some(latency)) => hist.saturating_record(latency),
                    Ok(None) => {}
                    Err(msg) => {
                        failed.get_or_insert(msg);
                    }
                }
            });
            if let Some(msg) = failed {
                return self.error(format!("connection {idx}: {msg}"));
            }
        }
    }

    fn report(&self, setup_ns: u64) -> Report {
        let f = &self.fan;
        let p = self.conns.len() - 1;
        Report {
            mode: self.plan.mode.name(),
            connections: self.plan.connections,
            up: self.up,
            size: self.plan.size,
            kind: "raw",
            duration_s: f.window_ns() as f64 / 1e9,
            warmup_s: 0.0,
            setup_s: setup_ns as f64 / 1e9,
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
            close_errors: 0,
            first_error: self.first_error.clone(),
            per_conn: Vec::new(),
            hist: self.hist.clone(),
            procs: 1,
            fanout: Some(f.summary(p)),
        }
    }
}
