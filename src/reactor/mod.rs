//! Owns the event loop: the slab of connections and one iteration of the loop (`turn`),
//! driven through `net::Net` (the mio `Poll`, the listening socket and the clock in
//! production, `MioNet`). The reactor is the only layer that touches sockets and the clock;
//! everything it learns it hands to `conn::Conn`, and everything a connection queues it
//! writes. Its other concepts have a file each: `accept.rs` (a slot from accept to free),
//! `conn_io.rs` (reading, processing, flushing), `transport.rs` (plain or TLS bytes),
//! `timers.rs`, `dispatch.rs` (connections to handlers and pub/sub), `totals.rs` (what the
//! workers add up), `redis.rs` (the backplane's socket), `observe.rs` (metrics).
//! Must not: block, parse protocol bytes itself (that is `conn`'s), or let one connection's
//! error touch another.
//!
//! One loop iteration (`Reactor::turn`, docs/architecture.md §2), in this order:
//!
//! 1. `poll` — sleep until a socket is ready, or until the next timer (no sleep when reads
//!    must resume without an event); then read the clock once;
//! 2. for each event: accept until WouldBlock; read a ready connection into its rx ring,
//!    run its state machine (handlers, pub/sub) and flush its reply at once; mail from other
//!    workers; the Redis link; signals;
//! 3. fire the timers that came due (handshake deadline, heartbeat, message deadline,
//!    linger, long-poll hold, keep-alives, handler ticks), re-arming lazily those whose
//!    deadline moved;
//! 4. resume reads that backpressure had stopped;
//! 5. hand interest changes to the Redis link and write what it queued;
//! 6. flush every connection that others queued bytes for (one write each), asking for
//!    WRITABLE only when bytes remain;
//! 7. free the connections that finished during the iteration (deferred close);
//! 8. add this worker's counts to the process's totals (`totals.rs`).
//!
//! SIGTERM/SIGINT start a graceful shutdown: stop accepting, close every WebSocket with 1001,
//! wait up to the drain deadline for the closing handshakes, return. A second signal returns
//! at once.

mod accept;
mod clients;
mod clock;
mod conn_io;
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
mod storm;
mod timers;
mod token;
mod totals;
mod transport;
pub mod workers;

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mio::{Interest, Poll, Token};
use slab::Slab;

use crate::app::{Command, Router};
use crate::bits::Bits;
use crate::config::Config;
use crate::conn::{Close, Conn, ConnId, Resources, State};
use crate::metrics::{self, ConnClass, Metrics};
use crate::pubsub::Hub;
use crate::timer::{Tick, TimerId, Wheel};
use clients::{ClientId, Clients};
pub use net::{MioNet, Net, Ready};
use token::{LISTENER, SIGNALS, WAKER};
use totals::Totals;

/// A slab slot: the socket and the connection's protocol state.
struct Entry<S> {
    sock: S,
    conn: Conn,
    generation: u32,
    /// The interest currently registered with epoll (re-registered only on change).
    interest: Interest,
    /// Bit set of the flags below (`DIRTY` … `TLS`).
    flags: Bits,
    /// The connections gauge that counts it (`observe.rs::track`).
    class: ConnClass,
    /// The client address this connection counts for (`--max-connections-per-ip`): the
    /// socket peer, or behind a trusted proxy the client its current request names (`None`
    /// while no request is in progress).
    client: Option<ClientId>,
}

// `Entry::flags`: the reactor's own bookkeeping of a slot — which of its per-iteration lists
// the slot is already in (`DIRTY`, `FREEING`), what epoll told it that the connection cannot
// know (`READ_BLOCKED`: no edge will come for bytes left in the socket; `PEER_DONE`: RDHUP)
// and what the slot is (`VIA_PROXY`, `TLS`). None of them is protocol state: that is the
// connection's alone (`Conn::status`; the peer's FIN is the connection's to remember, since
// `Conn::read_from` is what sees it), and `FREEING` is not `State::Closing`: a connection in
// any state is freed once `State::Closed`.

/// Already in `dirty` for this iteration.
const DIRTY: u8 = 1;
/// Reading stopped with bytes possibly left in the socket (rx full or tx over its limit);
/// under edge-triggered epoll no new event will come, so the loop must resume reading by
/// itself once there is room.
const READ_BLOCKED: u8 = 2;
/// Already in `closing`, the slots freed at the end of the iteration.
const FREEING: u8 = 4;
/// epoll reported RDHUP/HUP/ERR: read to the end, no short-read shortcut.
const PEER_DONE: u8 = 8;
/// The socket peer is a trusted proxy (`--trust-proxy`): each request names the client.
const VIA_PROXY: u8 = 16;
/// A `wss://`/`https://` connection: its TLS session is in `Reactor::sessions`.
const TLS: u8 = 32;

/// The TLS configuration `cfg` asks for, loaded from its PEM files.
pub fn tls_config(cfg: &Config) -> io::Result<Option<Arc<rustls::ServerConfig>>> {
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => crate::tls::load(cert, key)
            .map(Some)
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e)),
        _ => Ok(None),
    }
}

/// What every worker of a process shares with the others, besides the bus.
#[derive(Clone)]
pub(crate) struct Shared {
    /// TLS for every accepted connection (`--tls-cert`/`--tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Open connections per client address (`--max-connections-per-ip`).
    pub clients: Arc<Clients>,
    /// The workers' queued bytes and dedicated compressors, added up.
    pub totals: Arc<Totals>,
    /// Who may read and write which topic (`--token-…`, `--topic-rule`, `--api-key-file`).
    pub auth: Arc<crate::auth::Policy>,
    /// Where this process's topic numbers start (`SeqBook::starting_at`): its start time in
    /// microseconds when it numbers topics itself (no `--redis`), 0 in tests and with Redis.
    pub epoch: u64,
}

impl Shared {
    pub fn new(cfg: &Config) -> io::Result<Shared> {
        Ok(Shared {
            tls: tls_config(cfg)?,
            clients: Arc::new(Clients::new(cfg.max_connections_per_ip)),
            totals: Arc::default(),
            auth: Arc::new(
                crate::auth::Policy::load(&cfg.auth)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            ),
            epoch: 0,
        })
    }
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
    sessions: HashMap<usize, Box<crate::tls::Session>>,
    /// Where TLS records are read and encrypted, one session at a time (`tls::SCRATCH`
    /// bytes with `--tls-cert`, else none): sessions lend it instead of owning buffers.
    tls_scratch: Box<[u8]>,
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
    /// The handshake budget and the retry hints (`storm.rs`).
    storm: storm::Storm,
    conns: Slab<Entry<N::Stream>>,
    /// The buffer pool and shared compressors lent to every connection.
    res: Resources,
    router: Router,
    cfg: Config,
    /// Counts accepted connections (24 bits) for their generation, whose top byte is
    /// `worker`, this worker's index.
    next_generation: u32,
    worker: u32,
    /// Connections to flush before sleeping.
    dirty: Vec<usize>,
    /// Connections whose reading should resume without waiting for an event.
    resume: Vec<usize>,
    /// Connections to free at the end of the iteration.
    closing: Vec<usize>,
    /// Connections shed for want of descriptors, for a rate-limited log line.
    sheds: accept::Sheds,
    /// Held `POST /publish` requests waiting for Redis's answer: their topic and CORS origin
    /// (`Reactor::publish_answered`).
    held_publishes: HashMap<ConnId, (Box<str>, Option<String>)>,
    /// Access tokens (`--token-…`), shared by the workers.
    auth: Arc<crate::auth::Policy>,
    /// Tokens this worker verified, by hash, until they expire (`--token-cache`).
    token_cache: crate::auth::TokenCache,
    /// WebSockets that may read their route's topic but not write it (no `publish` right,
    /// or a topic the server owns): a message from one is closed with 3003.
    read_only: std::collections::HashSet<ConnId>,
    /// When the access token of a connection (by slab slot) expires, for the connections
    /// admitted with one (`Reactor::arm` keeps the slot's timer at or before it).
    token_expiry: HashMap<usize, Tick>,
    /// WebSockets that negotiated `auth::REFRESH_PROTOCOL`, with the topics they read and
    /// write (a refreshed token must grant them again).
    refreshable: HashMap<ConnId, crate::app::Access>,
    /// Resumes held until their topic's log is read back from Redis (`Command::Resume`), by
    /// topic.
    resuming: HashMap<Box<str>, Vec<crate::app::Resume>>,
    /// WebSockets resuming from a position while the topic's log is read back: no live
    /// message is queued on them until their replay is (`Reactor::deliver`).
    muted: std::collections::HashSet<ConnId>,
    /// Publishes of one topic in a row, delivered together once nothing else may come
    /// between them (`Reactor::deliver`, `Reactor::end_run`).
    run: crate::pubsub::fanout::Run,
    /// While a run may grow: `Some(source)` with the connection whose input is being
    /// processed (its own deliveries go out at once, in order with the rest of its output),
    /// `Some(None)` while taking mail from other workers.
    gathering: Option<Option<ConnId>>,
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
        // At most 256 workers (`cli`'s bound on `--workers`), so the index fits the byte.
        let worker = bus.as_ref().map_or(0, |b| b.me as u32 & 0xFF);
        Reactor {
            net,
            now,
            unix_ms,
            wheel: Wheel::new(now),
            conn_base: 1 + router.routes() as TimerId,
            sessions: HashMap::new(),
            tls_scratch: if shared.tls.is_some() {
                vec![0; crate::tls::SCRATCH].into_boxed_slice()
            } else {
                Box::default()
            },
            hub: Hub::numbered_from(cfg.pubsub.clone(), shared.epoch),
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
            storm: storm::Storm::new(
                cfg.max_handshake_rate,
                unix_ms ^ u64::from(worker).rotate_left(32),
                now,
            ),
            conns: Slab::with_capacity(1024),
            res: Resources::for_config(&cfg),
            router,
            cfg,
            next_generation: 0,
            worker,
            dirty: Vec::new(),
            resume: Vec::new(),
            closing: Vec::new(),
            sheds: accept::Sheds::default(),
            held_publishes: HashMap::new(),
            token_cache: crate::auth::TokenCache::new(shared.auth.cache_entries),
            auth: shared.auth,
            read_only: Default::default(),
            token_expiry: HashMap::new(),
            refreshable: HashMap::new(),
            resuming: HashMap::new(),
            muted: Default::default(),
            run: Default::default(),
            gathering: None,
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
                // A keep-alive connection back between requests (answered since the signal)
                // gets no other: closed, so it does not hold the exit to the deadline.
                let idle: Vec<usize> = self
                    .conns
                    .iter()
                    .filter(|(_, e)| {
                        e.conn.status().state == State::Handshake && e.conn.tx_len() == 0
                    })
                    .map(|(idx, _)| idx)
                    .collect();
                for idx in idle {
                    self.abort(idx);
                    self.mark_dirty(idx);
                }
                // A connection that has sent its FIN after the closing handshake has nothing
                // left to say; waiting for the peer's FIN would only delay the exit.
                let done = self
                    .conns
                    .iter()
                    .all(|(_, e)| matches!(e.conn.status().state, State::Draining | State::Closed));
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
            self.learn_totals();
            self.refresh_date();
            for ev in ready.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKER => self.receive_from_workers(),
                    SIGNALS => {
                        if self.on_signal() {
                            return Ok(false);
                        }
                    }
                    token => match token::redis_link(token) {
                        Some(link) => self.redis_event(link, ev),
                        None => self.conn_event(token, ev),
                    },
                }
            }
            self.expire_timers();
            for idx in std::mem::take(&mut self.resume) {
                if self.conns.get(idx).is_some_and(|e| !e.flags.has(FREEING)) {
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

    /// Keep the `Date` header value current (formatted once a second, not per response);
    /// once a second too, free the tx segment lists no connection took in the last one.
    fn refresh_date(&mut self) {
        let unix_ms = self.unix_ms;
        if unix_ms / 1000 != self.date_second {
            self.date_second = unix_ms / 1000;
            self.date = crate::text::Civil::from_unix_ms(unix_ms).http_date();
            self.res.segs.trim();
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
                self.conns[idx].flags.set(PEER_DONE, true);
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
        let window = self.cfg.shutdown_spread.as_millis() as u64;
        for idx in ids {
            // Each told a different moment to come back (`--shutdown-spread`).
            let away = Close::GoingAway {
                retry_ms: self.storm.spread(window),
            };
            if let Some(code) = self.conns[idx].conn.close(&self.cfg, &mut self.res, away) {
                self.told_closed(idx, code, "");
            }
            self.mark_dirty(idx);
        }
        self.apply_commands();
        false
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
