//! Owns the event loop: the slab of connections and the buffer pool, driven through
//! `net::Net` (the mio `Poll`, the listening socket and the clock in production, `MioNet`).
//! It is the only layer that touches sockets (and, with timers, the clock); everything it
//! learns it hands to `conn::Conn`, and everything a connection queues it writes.
//! Must not: block, parse protocol bytes itself (that is `conn`'s), or let one connection's
//! error touch another.
//!
//! One loop iteration (DESIGN §2, docs/architecture.md):
//!
//! 1. `poll` — sleep until a socket is ready (no timeout unless work is pending);
//! 2. accept until WouldBlock; for each ready connection read into its rx ring and run its
//!    state machine, dispatching events to the app's handlers;
//! 3. flush every connection that queued bytes, with one `writev` each, asking for WRITABLE
//!    only when bytes remain;
//! 4. fire the timers that came due (handshake deadline, heartbeat, message deadline,
//!    linger), re-arming lazily those whose deadline moved;
//! 5. free the connections that finished during the iteration (deferred close).
//!
//! SIGTERM/SIGINT start a graceful shutdown: stop accepting, close every WebSocket with 1001,
//! wait up to the drain deadline for the closing handshakes, return. A second signal returns
//! at once.

mod clients;
mod clock;
mod dispatch;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod fake_redis_tests;
#[cfg(test)]
mod fake_tests;
mod listener;
pub mod net;
mod observe;
mod redis;
mod timers;
mod token;
mod transport;
pub mod workers;

use std::collections::HashMap;
use std::io::{self, ErrorKind, IoSlice, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::{Interest, Poll, Token};
use slab::Slab;

use crate::app::{Command, Router};
use crate::cidr;
use crate::config::Config;
use crate::conn::{Conn, Outcome, Resources, State, MAX_IOV};
use crate::metrics::{self, ConnClass, Metrics};
use crate::pubsub::Hub;
use crate::timer::{Tick, TimerId, Wheel};
use clients::{ClientId, Clients};
pub use net::{MioNet, Net, Ready};
use token::{LISTENER, REDIS, SIGNALS, WAKER};
use transport::Transport;

/// A slab slot: the socket and the connection's protocol state.
struct Entry<S> {
    sock: S,
    conn: Conn,
    generation: u32,
    /// The interest currently registered with epoll (re-registered only on change).
    interest: Interest,
    /// Bit set of the `DIRTY`, `READ_BLOCKED`, `EOF` and `CLOSING` flags below.
    flags: u8,
    /// The connections gauge that counts it (`observe.rs::track`).
    class: ConnClass,
    /// The client address this connection counts for (`--max-connections-per-ip`): the
    /// socket peer, or behind a trusted proxy the client its current request names (`None`
    /// while no request is in progress).
    client: Option<ClientId>,
}

/// Already in `dirty` for this iteration.
const DIRTY: u8 = 1;
/// Reading stopped with bytes possibly left in the socket (rx full or tx over its limit);
/// under edge-triggered epoll no new event will come, so the loop must resume reading by
/// itself once there is room.
const READ_BLOCKED: u8 = 2;
/// The peer's FIN has been read.
const EOF: u8 = 4;
/// Already in `closing`.
const CLOSING: u8 = 8;
/// epoll reported RDHUP/HUP/ERR: read to the end, no short-read shortcut.
const PEER_DONE: u8 = 16;
/// The socket peer is a trusted proxy (`--trust-proxy`): each request names the client.
const VIA_PROXY: u8 = 32;
/// A `wss://`/`https://` connection: its TLS session is in `Reactor::sessions`.
const TLS: u8 = 64;

/// The TLS session of slab slot `idx`, if its flags say it has one.
fn session(
    sessions: &mut HashMap<usize, Box<rustls::ServerConnection>>,
    flags: u8,
    idx: usize,
) -> Option<&mut rustls::ServerConnection> {
    if flags & TLS == 0 {
        return None;
    }
    sessions.get_mut(&idx).map(|s| &mut **s)
}

impl<S> Entry<S> {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }
}

/// The TLS configuration `cfg` asks for, loaded from its PEM files.
pub fn tls_config(cfg: &Config) -> io::Result<Option<Arc<rustls::ServerConfig>>> {
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => crate::tls::load(cert, key)
            .map(Some)
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e)),
        _ => Ok(None),
    }
}

/// Open client connections over all workers of the process.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// The body of the 429 that refuses a client over `--max-connections-per-ip`.
const TOO_MANY_FROM_YOU: &str = "too many connections from your address";

/// What every worker of a process shares with the others, besides the bus.
#[derive(Clone)]
pub(crate) struct Shared {
    /// TLS for every accepted connection (`--tls-cert`/`--tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Open connections per client address (`--max-connections-per-ip`).
    pub clients: Arc<Clients>,
    /// The workers' queued bytes and dedicated compressors, added up.
    pub totals: Arc<Totals>,
}

impl Shared {
    pub fn new(cfg: &Config) -> io::Result<Shared> {
        Ok(Shared {
            tls: tls_config(cfg)?,
            clients: Arc::new(Clients::new(cfg.max_connections_per_ip)),
            totals: Arc::default(),
        })
    }
}

/// What the workers of a process add up between them: each counts its own exactly (in its
/// `conn::Resources`) and adds the change here once per loop iteration (`sync_totals`), so
/// no cache line is shared per message.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    /// Bytes queued on every connection: the slow-consumer process cap and a gauge.
    queued: AtomicUsize,
    /// Connections that own compression state (`--compression-max-dedicated`).
    dedicated: AtomicUsize,
}

impl Totals {
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn dedicated(&self) -> usize {
        self.dedicated.load(Ordering::Relaxed)
    }
}

/// Move a total by the change from `told` (what this worker last added) to `now`.
fn add_change(total: &AtomicUsize, told: &mut usize, now: usize) {
    if now > *told {
        total.fetch_add(now - *told, Ordering::Relaxed);
    } else if now < *told {
        total.fetch_sub(*told - now, Ordering::Relaxed);
    }
    *told = now;
}

/// A single-threaded event loop serving one listening socket. `N` is its way to the
/// operating system: mio in production, a scripted fake in the fault harness.
pub struct Reactor<N: Net = MioNet> {
    net: N,
    /// The time of this iteration, read once after `poll` returns: monotonic, and by the
    /// wall clock (milliseconds since the Unix epoch).
    now: Tick,
    unix_ms: u64,
    /// One timer per connection, one per ticking handler and one for the Redis link
    /// (`timers.rs` names them).
    wheel: Wheel,
    /// The wheel id of slab slot 0: ids below it are the Redis link's and the handlers' ticks.
    conn_base: TimerId,
    /// The TLS sessions of the connections flagged `TLS`, by slab index: kept out of the slab
    /// so a plain connection does not carry a pointer for them (docs/architecture.md §9).
    sessions: HashMap<usize, Box<rustls::ServerConnection>>,
    /// The topics of this reactor.
    hub: Hub,
    /// Commands recorded by handlers, applied after each hand-off.
    cmds: Vec<Command>,
    /// The HTTP `Date` header value, refreshed when the second changes.
    date: String,
    date_second: u64,
    /// The link to the other workers (None with one worker).
    bus: Option<workers::BusEnd>,
    /// This worker's part in the Redis backplane (`reactor/redis.rs`).
    redis: redis::Role<N::Stream>,
    /// TLS for every accepted connection (`--tls-cert`/`--tls-key`).
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Open connections per client address, shared by all workers.
    clients: Arc<Clients>,
    /// The process's sums of every worker's counts, and this worker's part in them as last
    /// added (queued bytes, dedicated compressors).
    totals: Arc<Totals>,
    told: (usize, usize),
    /// This worker's slot in the process's metrics (`render_metrics` renders them all).
    metrics: metrics::Worker,
    /// When shutting down: the drain deadline.
    draining_until: Option<Tick>,
    conns: Slab<Entry<N::Stream>>,
    /// The buffer pool and shared compressors lent to every connection.
    res: Resources,
    router: Router,
    cfg: Config,
    next_generation: u32,
    /// Connections to flush before sleeping.
    dirty: Vec<usize>,
    /// Connections whose reading should resume without waiting for an event.
    resume: Vec<usize>,
    /// Connections to free at the end of the iteration.
    closing: Vec<usize>,
}

impl Reactor {
    /// Bind `cfg.listen` and set up the loop.
    pub fn bind(cfg: Config, router: Router) -> io::Result<Reactor> {
        let mut listener = listener::bind(cfg.listen, false)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let shared = Shared::new(&cfg)?;
        let metrics = Arc::new(Metrics::new(1)).handle(0);
        let net = MioNet::new(poll, listener)?;
        Ok(Reactor::from_parts(cfg, router, net, None, shared, metrics))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.net.local_addr()
    }

    /// Handle SIGTERM and SIGINT with a graceful shutdown (call once, before `run`).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        self.net.handle_signals()
    }
}

impl<N: Net> Reactor<N> {
    /// A reactor over `net` (its listener registered); `bus` links it to other workers.
    fn from_parts(
        cfg: Config,
        router: Router,
        net: N,
        bus: Option<workers::BusEnd>,
        shared: Shared,
        metrics: metrics::Worker,
    ) -> Reactor<N> {
        let (now, unix_ms) = (net.now(), net.unix_ms());
        Reactor {
            net,
            now,
            unix_ms,
            wheel: Wheel::new(now),
            conn_base: 1 + router.routes() as TimerId,
            sessions: HashMap::new(),
            hub: Hub::new(cfg.pubsub.clone()),
            cmds: Vec::new(),
            date: String::new(),
            date_second: u64::MAX,
            bus,
            redis: redis::Role::Off,
            tls: shared.tls,
            clients: shared.clients,
            totals: shared.totals,
            told: (0, 0),
            metrics,
            draining_until: None,
            conns: Slab::with_capacity(1024),
            res: Resources::for_config(&cfg),
            router,
            cfg,
            next_generation: 0,
            dirty: Vec::new(),
            resume: Vec::new(),
            closing: Vec::new(),
        }
    }

    /// Run until a graceful shutdown completes, or an unrecoverable error of the poller.
    pub fn run(&mut self) -> io::Result<()> {
        let mut ready = Vec::with_capacity(1024);
        self.start_ticks();
        while self.turn(&mut ready)? {}
        Ok(())
    }

    /// One iteration of the loop (DESIGN §2); false once the loop should end. `ready` is
    /// the caller's buffer for the poller's report, kept across iterations.
    fn turn(&mut self, ready: &mut Vec<Ready>) -> io::Result<bool> {
        // Loops only to retry a poll interrupted by a signal.
        loop {
            if let Some(until) = self.draining_until {
                // A connection that has sent its FIN after the closing handshake has nothing
                // left to say; waiting for the peer's FIN would only delay the exit.
                let done = self
                    .conns
                    .iter()
                    .all(|(_, e)| matches!(e.conn.state(), State::Draining | State::Closed));
                if done || self.now >= until {
                    log::info!("shutdown complete; {} connections left", self.conns.len());
                    return Ok(false);
                }
            }
            let polled = self.net.nanos();
            if let Err(e) = self.net.poll(ready, self.poll_timeout()) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.after_poll(self.net.nanos().saturating_sub(polled));
            self.now = self.net.now();
            self.unix_ms = self.net.unix_ms();
            self.refresh_date();
            for ev in ready.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKER => self.receive_from_workers(),
                    REDIS => self.redis_event(ev),
                    SIGNALS => {
                        if self.on_signal() {
                            return Ok(false);
                        }
                    }
                    token => self.conn_event(token, ev),
                }
            }
            self.expire_timers();
            for idx in std::mem::take(&mut self.resume) {
                if self.conns.get(idx).is_some_and(|e| !e.has(CLOSING)) {
                    self.read(idx);
                }
            }
            self.redis_sync();
            self.flush_dirty();
            self.free_closed();
            self.sync_totals();
            return Ok(true);
        }
    }

    /// Once per iteration: add this worker's change in queued bytes and dedicated
    /// compressors to the process's totals, learn the rest of the process's part, and count
    /// the outcomes its connections recorded.
    fn sync_totals(&mut self) {
        let t = &self.totals;
        add_change(&t.queued, &mut self.told.0, self.res.queued());
        add_change(
            &t.dedicated,
            &mut self.told.1,
            self.res.compressors.dedicated(),
        );
        let elsewhere = t.dedicated().saturating_sub(self.told.1);
        self.res.compressors.set_dedicated_elsewhere(elsewhere);
        let outcomes = self.metrics.all().outcomes();
        for o in self.res.take_outcomes() {
            match o {
                Outcome::Answered(status) => outcomes.answered(status),
                Outcome::CloseSent(code) => outcomes.close_sent.record(code),
                Outcome::CloseReceived(code) => outcomes.close_received.record(code),
            }
        }
    }

    /// Bytes queued on every connection of the process: this worker's exactly, the others'
    /// as they last added them.
    fn process_queued(&self) -> usize {
        let elsewhere = self.totals.queued().saturating_sub(self.told.0);
        elsewhere + self.res.queued()
    }

    /// Keep the `Date` header value current (formatted once a second, not per response).
    fn refresh_date(&mut self) {
        let unix_ms = self.unix_ms;
        if unix_ms / 1000 != self.date_second {
            self.date_second = unix_ms / 1000;
            self.date = crate::text::Civil::from_unix_ms(unix_ms).http_date();
        }
    }

    /// Sleep until the next timer, or not at all when reads must resume without an event.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.resume.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = match (self.wheel.next_expiration(), self.draining_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Round up by a millisecond so the wake-up finds the timer due, not just short of it.
        next.map(|t| clock::until(self.now, t) + Duration::from_millis(1))
    }

    fn conn_event(&mut self, token: Token, ev: &Ready) {
        let (idx, generation) = token::decode(token);
        if self
            .conns
            .get(idx)
            .is_none_or(|e| e.generation != generation)
        {
            return; // stale: that connection is gone
        }
        // RDHUP, HUP and ERR are handled by reading: the read reports EOF or the error, so
        // none of them can make the loop spin.
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            // With the peer's FIN in the same event, a short read must not end reading:
            // the EOF behind the data would raise no further edge.
            if ev.is_read_closed() || ev.is_error() {
                self.conns[idx].set(PEER_DONE, true);
            }
            self.read(idx);
        }
        if ev.is_writable() {
            self.mark_dirty(idx);
        }
    }

    /// SIGTERM/SIGINT: the first starts a graceful shutdown, a second one ends it at once.
    /// Returns true to stop the loop now.
    fn on_signal(&mut self) -> bool {
        let count = self.net.pending_signals();
        if count == 0 {
            return false;
        }
        if self.draining_until.is_some() || count > 1 {
            log::warn!("second signal: exiting now");
            return true;
        }
        log::info!("shutting down: closing {} connections", self.conns.len());
        self.net.stop_accepting();
        self.draining_until = Some(self.now + self.cfg.timeouts.drain.as_millis() as Tick);
        let ids: Vec<usize> = self.conns.iter().map(|(idx, _)| idx).collect();
        for idx in ids {
            if let Some(code) = self.conns[idx].conn.going_away(&self.cfg, &mut self.res) {
                self.told_closed(idx, code, "");
            }
            self.mark_dirty(idx);
        }
        self.apply_commands();
        false
    }

    /// Accept until WouldBlock (edge-triggered: one event may stand for many connections).
    fn accept_all(&mut self) {
        loop {
            match self.net.accept() {
                Ok((sock, peer)) => self.admit(sock, peer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if listener::out_of_fds(&e) => {
                    log::warn!("accept: {e}; shedding a pending connection");
                    if !self.net.shed_one() {
                        return;
                    }
                }
                Err(e) => {
                    // ECONNABORTED and friends concern one connection only.
                    log::debug!("accept: {e}");
                    if e.kind() != ErrorKind::ConnectionAborted {
                        return;
                    }
                }
            }
        }
    }

    fn admit(&mut self, mut sock: N::Stream, peer: SocketAddr) {
        self.metrics.accepted.inc();
        // The limit is process-wide: workers share one count.
        if OPEN.fetch_add(1, Ordering::Relaxed) >= self.cfg.max_connections {
            OPEN.fetch_sub(1, Ordering::Relaxed);
            self.metrics.refused_full.inc();
            self.refuse(&mut sock, 503, "");
            return;
        }
        let ip = cidr::canonical(peer.ip());
        // A trusted proxy is no client: its connections count for the clients its requests
        // name (`dispatch.rs::count_client`), and the proxy itself is never capped.
        let via_proxy = cidr::any_contains(&self.cfg.trust_proxy, ip);
        let client = if via_proxy {
            None
        } else {
            match self.clients.acquire(ip, true) {
                Ok(id) => Some(id),
                Err(_) => {
                    // Refused before reading a byte: a client over its cap costs no slot,
                    // no buffer and no parsing.
                    OPEN.fetch_sub(1, Ordering::Relaxed);
                    self.metrics.refused_per_ip.inc();
                    log::debug!("{ip}: refused, over max_connections_per_ip");
                    self.refuse(&mut sock, 429, TOO_MANY_FROM_YOU);
                    return;
                }
            }
        };
        let undo = |clients: &Clients| {
            OPEN.fetch_sub(1, Ordering::Relaxed);
            if let Some(id) = client {
                clients.release(id);
            }
        };
        let session = match self.tls.as_ref().map(crate::tls::session) {
            None => None,
            Some(Ok(session)) => Some(session),
            Some(Err(e)) => {
                log::warn!("tls session: {e}");
                undo(&self.clients);
                return;
            }
        };
        self.next_generation = self.next_generation.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let idx = entry.key();
        let token = token::encode(idx, self.next_generation);
        if let Err(e) = self.net.register(&mut sock, token, Interest::READABLE) {
            log::warn!("register: {e}");
            undo(&self.clients);
            return;
        }
        entry.insert(Entry {
            sock,
            conn: Conn::new(self.now),
            generation: self.next_generation,
            interest: Interest::READABLE,
            flags: if via_proxy { VIA_PROXY } else { 0 } | if session.is_some() { TLS } else { 0 },
            class: ConnClass::NONE,
            client,
        });
        if let Some(session) = session {
            self.sessions.insert(idx, session);
        }
        self.track(idx);
        self.arm(idx);
    }

    /// Answer a connection refused at accept and close it. Best effort: a full server says
    /// so rather than leaving the client guessing. Not under TLS, where plaintext would be
    /// noise to the client: it just sees the close.
    fn refuse(&mut self, sock: &mut N::Stream, status: u16, body: &str) {
        self.metrics.all().outcomes().answered(status);
        if self.tls.is_none() {
            let mut resp = Vec::with_capacity(160);
            crate::http::upgrade::write_status(status, body, &mut resp);
            let _ = sock.write(&resp);
        }
    }

    /// Read until WouldBlock, a short read, or backpressure; run the state machine after
    /// every read so the rx ring keeps room.
    fn read(&mut self, idx: usize) {
        // Reading again supersedes an earlier stop (set again below if it stops the same way),
        // so `flush` does not schedule one more read for it.
        self.conns[idx].set(READ_BLOCKED, false);
        // Bytes already buffered (pipelined requests behind one just answered) go first.
        if self.conns[idx].conn.has_input() {
            self.process(idx);
        }
        loop {
            let e = &mut self.conns[idx];
            if !e.conn.wants_read(self.cfg.max_queued_bytes) {
                let blocked = !matches!(e.conn.state(), State::Closing | State::Closed);
                e.set(READ_BLOCKED, blocked);
                break;
            }
            let peer_done = e.has(PEER_DONE);
            let mut t = Transport::new(&mut e.sock, session(&mut self.sessions, e.flags, idx));
            // A short read drains the socket, unless it is TLS (`short_means_drained`) or
            // the peer's FIN waits behind the data (RDHUP): then read until WouldBlock or EOF.
            let drains = t.short_means_drained() && !peer_done;
            let ring = e.conn.rx_ring(&mut self.res);
            let (a, b) = ring.free_slices_mut();
            let room = a.len() + b.len();
            let res = t.read(a, b);
            match res {
                Ok(0) => {
                    self.peer_closed(idx);
                    break;
                }
                Ok(n) => {
                    self.metrics.bytes_in.add(n as u64);
                    ring.commit(n);
                    e.conn.on_input(self.now);
                    self.process(idx);
                    // A short read drained the socket: epoll will report the next bytes.
                    if n < room && drains {
                        break;
                    }
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => {
                    log::debug!("read: {err}");
                    self.abort(idx);
                    break;
                }
            }
        }
        if let Some(e) = self.conns.get_mut(idx) {
            e.conn.shed_rx(&mut self.res);
            // The reply to what was just read leaves now, while its bytes are in cache,
            // rather than after every other ready connection has been read: there is one
            // write per connection either way, and holding it back means one tx ring per
            // ready connection in use at once (more CPU per message at many connections:
            // docs/perf-history.md, "recv/send instead of readv/writev") and its peer idle
            // meanwhile. Frames that
            // publishes queue for *other* connections still wait for the end of the
            // iteration (`mark_dirty`), so a subscriber's broadcasts of one iteration leave
            // in one write. An echo from the large read ring leaves here too, so the ring is
            // back for the next connection's read.
            if (e.conn.tx_len() > 0 || e.conn.tx_holds_rx()) && !e.has(CLOSING) {
                self.flush(idx);
                return;
            }
        }
        self.mark_dirty(idx);
    }

    /// The peer's FIN: report the close to the app if it was not told, then let the flush
    /// finish what is queued and free the connection.
    fn peer_closed(&mut self, idx: usize) {
        let e = &mut self.conns[idx];
        e.set(EOF, true);
        if let Some(code) = e.conn.on_eof() {
            self.told_closed(idx, code, "");
        }
        self.mark_dirty(idx);
    }

    /// An I/O error: drop the connection now. Nothing queued can reach the peer any more,
    /// so its buffers go back at once and no write follows the error; the caller's flush
    /// (or the one it marks dirty) finds it done and frees it.
    fn abort(&mut self, idx: usize) {
        if let Some(code) = self.conns[idx].conn.abort() {
            self.told_closed(idx, code, "");
        }
        self.conns[idx].conn.release(&mut self.res);
    }

    fn mark_dirty(&mut self, idx: usize) {
        if let Some(e) = self.conns.get_mut(idx) {
            if !e.has(DIRTY) {
                e.set(DIRTY, true);
                self.dirty.push(idx);
            }
        }
    }

    /// Write what every dirty connection queued (Redis's beforeSleep / handleClients-
    /// WithPendingWrites): most replies leave in this one syscall, and WRITABLE is asked
    /// for only when the socket could not take everything.
    fn flush_dirty(&mut self) {
        while let Some(idx) = self.dirty.pop() {
            if let Some(e) = self.conns.get_mut(idx) {
                e.set(DIRTY, false);
                self.flush(idx);
            }
        }
    }

    fn flush(&mut self, idx: usize) {
        self.track(idx);
        let e = &mut self.conns[idx];
        // Behind a proxy, a connection waiting for its next request counts for nobody: nginx
        // keeps idle ones in its `keepalive` pool and reuses them for any client. Every state
        // change is followed by a flush, so this sees each return to waiting (a response,
        // a held poll answered by a publish or by its deadline).
        if e.has(VIA_PROXY) && e.conn.state() == State::Handshake {
            if let Some(id) = e.client.take() {
                self.clients.release(id);
            }
        }
        let mut t = Transport::new(&mut e.sock, session(&mut self.sessions, e.flags, idx));
        let mut failed = false;
        while e.conn.tx_len() > 0 {
            let (res, want) = match e.conn.tx_contiguous() {
                // The usual reply, one run of bytes in the ring: one slice (a plain send(2)
                // on a plain socket), and no 64-entry iovec array to fill
                // (docs/perf-history.md, "Instructions per echoed message").
                Some(bytes) => (t.write(&[IoSlice::new(bytes)]), bytes.len()),
                None => {
                    let mut iov = [IoSlice::new(&[]); MAX_IOV];
                    let used = e.conn.tx_iov(&mut iov);
                    let want: usize = iov[..used].iter().map(|s| s.len()).sum();
                    (t.write(&iov[..used]), want)
                }
            };
            match res {
                Ok(n) => {
                    self.metrics.bytes_out.add(n as u64);
                    e.conn.consume_tx(n, &mut self.res);
                    // A short plain write means the send buffer is full (WRITABLE will tell
                    // us); under TLS it only means the session's buffer was, and that has
                    // been flushed: go on until WouldBlock.
                    if n == 0 || (n < want && t.short_means_drained()) {
                        break;
                    }
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => {
                    // Not marked dirty again: a connection re-queued on every failed write
                    // would keep `flush_dirty` writing to a dead socket forever.
                    log::debug!("write: {err}");
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            self.abort(idx);
        }
        let e = &mut self.conns[idx];
        // What the socket did not take of an echo is copied out of the large read ring, which
        // goes back to the pool: the ring serves every connection's reads, not one slow peer.
        e.conn.return_rx(&mut self.res);
        // TLS records the socket could not take yet (the plaintext left tx already).
        let mut t = Transport::new(&mut e.sock, session(&mut self.sessions, e.flags, idx));
        let tls_pending = match t.flush() {
            Ok(done) => !done,
            Err(err) => {
                log::debug!("tls write: {err}");
                if let Some(code) = e.conn.abort() {
                    self.told_closed(idx, code, "");
                }
                false
            }
        };
        let e = &mut self.conns[idx];
        if e.conn.wants_shutdown() && !tls_pending {
            if e.has(EOF) {
                e.conn.abort();
            } else {
                // Our FIN tells the peer we are done (RFC 6455 §7.1.1: the server closes
                // the TCP connection first); reading on until its FIN avoids a reset that
                // could destroy the last bytes we sent.
                Transport::new(&mut e.sock, session(&mut self.sessions, e.flags, idx))
                    .close_notify();
                let _ = self.net.shutdown_write(&mut e.sock);
                e.conn.start_draining();
                self.resume.push(idx);
            }
        }
        if e.conn.is_done() {
            if !e.has(CLOSING) {
                e.set(CLOSING, true);
                self.closing.push(idx);
            }
            return;
        }
        let want = if e.conn.tx_len() > 0 || tls_pending {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if want != e.interest {
            let token = token::encode(idx, e.generation);
            if let Err(err) = self.net.reregister(&mut e.sock, token, want) {
                log::debug!("reregister: {err}");
            }
            e.interest = want;
        }
        if e.has(READ_BLOCKED) && e.conn.wants_read(self.cfg.max_queued_bytes) {
            e.set(READ_BLOCKED, false);
            self.resume.push(idx);
        }
        self.arm(idx);
    }

    /// Deferred close: sockets and slots are released only here, after the whole event
    /// batch, so no event in the batch can refer to a slot reused meanwhile.
    fn free_closed(&mut self) {
        for idx in std::mem::take(&mut self.closing) {
            let id = self.conn_id(idx);
            self.hub.unsubscribe_all(id);
            OPEN.fetch_sub(1, Ordering::Relaxed);
            let mut e = self.conns.remove(idx);
            if let Some(id) = e.client {
                self.clients.release(id);
            }
            self.metrics.move_conn(e.class, ConnClass::NONE);
            self.wheel.cancel(self.conn_timer_id(idx));
            self.sessions.remove(&idx);
            self.net.deregister(&mut e.sock);
            e.conn.release(&mut self.res);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_costs_at_most_128_bytes() {
        // DESIGN §3 target: ≤ 128 B of user-space memory per idle WebSocket. An idle
        // connection owns no ring and no reassembly buffer: its slab slot and its timer-wheel
        // node (16 B, `timer::wheel::tests::a_node_is_16_bytes`) are all it costs: 120 B
        // (docs/architecture.md §9).
        let entry = std::mem::size_of::<Entry<mio::net::TcpStream>>();
        let conn = std::mem::size_of::<Conn>();
        // mio's TcpStream carries a selector id in debug builds only.
        let debug_extra = if cfg!(debug_assertions) { 16 } else { 0 };
        assert!(
            entry <= 104 + debug_extra,
            "slab entry is {entry} bytes (Conn {conn})"
        );
    }
}
