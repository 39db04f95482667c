//! Owns the server's metrics: the counters and gauges and where each lives; their rendering in
//! the Prometheus text exposition format 0.0.4 (`Metrics::render`) is `render.rs`. Sans-IO
//! (layer L0): no sockets, no clock — it stores and renders the numbers it is given.
//! Must not: take a lock or share a cache line between workers on the hot path, or read a
//! clock.
//!
//! Where numbers live (docs/architecture.md, "Metrics"):
//! - **per worker** (`WorkerMetrics`): everything counted on the hot path — bytes, messages,
//!   accepts, loop iterations, poll time — and the gauges only a worker can see (its
//!   connections by transport and state, topics, timers). Each worker writes only its own
//!   slot, cache-line aligned, with relaxed atomic adds: no lock, no line shared with another
//!   writer. A `/metrics` request on any worker reads every slot and sums.
//! - **process-wide** (`Outcomes`, one per registry): rare per-connection outcomes — the
//!   answer to an upgrade request, close codes sent and received. The protocol layer decides
//!   them and hands them back as values (`conn::Outcome`); each reactor counts them here once
//!   per loop iteration, so these atomics are touched once per connection, not per message.

mod render;
#[cfg(test)]
mod tests;

pub use render::{escape_help, escape_label};

use std::ops::Deref;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    /// Relaxed: a count needs no ordering with other memory, only atomicity against a reader
    /// on another worker.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Gauge {
        Gauge(AtomicI64::new(0))
    }

    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How a connection talks once its request is understood. Every connection starts as `Http`
/// (reading a request head); the HTTP transports (SSE, polling, streaming) are listed so the
/// families have all their series from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Sse,
    Poll,
    Stream,
    Http,
}

impl Transport {
    pub const ALL: [Transport; 5] = [
        Transport::WebSocket,
        Transport::Sse,
        Transport::Poll,
        Transport::Stream,
        Transport::Http,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::Poll => "poll",
            Transport::Stream => "stream",
            Transport::Http => "http",
        }
    }
}

/// Where a connection is in its life, coarsely (the `conn::State`s grouped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Request head being read or answered.
    Handshake,
    /// Serving: a WebSocket open, a stream running.
    Open,
    /// Closing handshake, flushing, or waiting for the peer's FIN.
    Closing,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Handshake, Phase::Open, Phase::Closing];

    pub fn label(self) -> &'static str {
        match self {
            Phase::Handshake => "handshake",
            Phase::Open => "open",
            Phase::Closing => "closing",
        }
    }
}

/// A (transport, phase) pair packed into a byte, so the reactor can remember per connection
/// which gauge counts it (and take it out of exactly that one when it changes or closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnClass(u8);

impl ConnClass {
    /// Not counted anywhere (yet).
    pub const NONE: ConnClass = ConnClass(u8::MAX);

    pub fn new(t: Transport, p: Phase) -> ConnClass {
        ConnClass((t as u8) * Phase::ALL.len() as u8 + p as u8)
    }

    pub fn transport(self) -> Option<Transport> {
        Transport::ALL
            .get(self.0 as usize / Phase::ALL.len())
            .copied()
    }

    fn index(self) -> Option<usize> {
        let i = self.0 as usize;
        (i < CLASSES).then_some(i)
    }
}

const CLASSES: usize = Transport::ALL.len() * Phase::ALL.len();

/// One worker's numbers. Only its worker writes them; any worker may read them.
/// Aligned to 128 bytes so two workers' slots never share a cache line (or an adjacent-line
/// prefetch pair).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerMetrics {
    /// TCP connections accepted (including those then refused with 503 or 429).
    pub accepted: Counter,
    /// Connections refused at `max_connections` (503).
    pub refused_full: Counter,
    /// Connections, or requests behind a trusted proxy, refused at `max_connections_per_ip`
    /// (429).
    pub refused_per_ip: Counter,
    /// Complete WebSocket messages handed to handlers.
    pub messages_in: Counter,
    /// WebSocket messages queued for sending: handler sends and publish deliveries.
    pub messages_out: Counter,
    /// Bytes read from client sockets.
    pub bytes_in: Counter,
    /// Bytes written to client sockets.
    pub bytes_out: Counter,
    /// Subscribers closed for falling behind on publishes.
    pub slow_closes: Counter,
    /// WebSocket handshakes turned away with 1013 over `--max-handshake-rate`.
    pub turned_away: Counter,
    /// Iterations of the event loop.
    pub loop_iterations: Counter,
    /// Nanoseconds spent blocked in `epoll_wait`.
    pub poll_nanos: Counter,
    /// Topics in this worker's hub.
    pub topics: Gauge,
    /// Idle topics this worker's hub evicted to make room for new ones.
    pub topic_evictions: Counter,
    /// Subscriptions and publishes refused because this worker's hub was full.
    pub topic_refusals: Counter,
    /// What the kept messages of this worker's topic histories cost (`Hub::history_bytes`).
    pub history_bytes: Gauge,
    /// (connection, topic) subscriptions in this worker's hub.
    pub subscriptions: Gauge,
    /// Entries in this worker's timer wheel.
    pub timers: Gauge,
    /// Connections by `ConnClass`.
    connections: [Gauge; CLASSES],
}

impl WorkerMetrics {
    /// A connection moved from class `from` to `to` (either may be `NONE`).
    pub fn move_conn(&self, from: ConnClass, to: ConnClass) {
        if from == to {
            return;
        }
        if let Some(i) = from.index() {
            self.connections[i].add(-1);
        }
        if let Some(i) = to.index() {
            self.connections[i].add(1);
        }
    }

    /// Connections of this worker in (transport, phase).
    pub fn connections(&self, t: Transport, p: Phase) -> i64 {
        ConnClass::new(t, p)
            .index()
            .map_or(0, |i| self.connections[i].get())
    }

    /// All connections of this worker.
    pub fn connections_total(&self) -> i64 {
        self.connections.iter().map(Gauge::get).sum()
    }
}

/// Close codes, counted exactly for the codes RFC 6455 defines (1000–1015) and in buckets
/// for application codes, so a peer choosing codes cannot create unbounded series.
#[derive(Debug)]
pub struct CloseCodes {
    /// 1000..=1015.
    standard: [Counter; 16],
    /// 3000–3999 (registered), 4000–4999 (private), anything else.
    registered: Counter,
    private: Counter,
    other: Counter,
}

impl CloseCodes {
    pub const fn new() -> CloseCodes {
        CloseCodes {
            standard: [const { Counter::new() }; 16],
            registered: Counter::new(),
            private: Counter::new(),
            other: Counter::new(),
        }
    }

    pub fn record(&self, code: u16) {
        match code {
            1000..=1015 => self.standard[(code - 1000) as usize].inc(),
            3000..=3999 => self.registered.inc(),
            4000..=4999 => self.private.inc(),
            _ => self.other.inc(),
        }
    }

    /// (label, count) for every code seen.
    fn seen(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        let standard = (1000u16..)
            .zip(&self.standard)
            .map(|(c, n)| (c.to_string(), n));
        let buckets = [
            ("3xxx", &self.registered),
            ("4xxx", &self.private),
            ("other", &self.other),
        ];
        standard
            .chain(buckets.into_iter().map(|(l, n)| (l.to_string(), n)))
            .map(|(l, n)| (l, n.get()))
            .filter(|(_, n)| *n > 0)
    }
}

impl Default for CloseCodes {
    fn default() -> Self {
        CloseCodes::new()
    }
}

/// The lowest and highest HTTP status counted.
const STATUS_MIN: u16 = 100;
const STATUS_MAX: u16 = 599;

/// Once-per-connection outcomes decided in the protocol layer, process-wide.
#[derive(Debug)]
pub struct Outcomes {
    /// Responses that ended a request before any WebSocket: 101 (upgrade accepted) or an
    /// error status, indexed by status - 100.
    answers: [Counter; (STATUS_MAX - STATUS_MIN + 1) as usize],
    pub close_sent: CloseCodes,
    pub close_received: CloseCodes,
    /// Access tokens checked: their signature verified, or found in a reactor's cache.
    pub tokens_verified: Counter,
    pub tokens_cached: Counter,
    /// Access tokens refused (or missing where one was needed), by `TOKEN_REFUSALS` reason.
    token_refused: [Counter; TOKEN_REFUSALS.len()],
}

/// Why an access token was refused: the `reason` label of `wsloop_token_refusals_total`, a
/// fixed set (`auth::AuthError::index` counts into it).
pub const TOKEN_REFUSALS: [&str; 7] = [
    "missing",
    "too_large",
    "malformed",
    "signature",
    "claims",
    "expired",
    "not_yet",
];

impl Outcomes {
    pub const fn new() -> Outcomes {
        Outcomes {
            answers: [const { Counter::new() }; (STATUS_MAX - STATUS_MIN + 1) as usize],
            close_sent: CloseCodes::new(),
            close_received: CloseCodes::new(),
            tokens_verified: Counter::new(),
            tokens_cached: Counter::new(),
            token_refused: [const { Counter::new() }; TOKEN_REFUSALS.len()],
        }
    }

    /// A token was refused for reason `TOKEN_REFUSALS[reason]`.
    pub fn token_refused(&self, reason: usize) {
        if let Some(c) = self.token_refused.get(reason) {
            c.inc();
        }
    }

    pub fn token_refusals(&self, reason: usize) -> u64 {
        self.token_refused.get(reason).map_or(0, Counter::get)
    }

    /// A request was answered with `status`: 101 accepts an upgrade; anything else refused
    /// the request and closes the connection.
    pub fn answered(&self, status: u16) {
        let s = status.clamp(STATUS_MIN, STATUS_MAX);
        self.answers[(s - STATUS_MIN) as usize].inc();
    }

    pub fn answers(&self, status: u16) -> u64 {
        if !(STATUS_MIN..=STATUS_MAX).contains(&status) {
            return 0;
        }
        self.answers[(status - STATUS_MIN) as usize].get()
    }
}

impl Default for Outcomes {
    fn default() -> Self {
        Outcomes::new()
    }
}

/// A registry's outcomes: its own, or a caller's that it reports.
#[derive(Debug)]
enum HeldOutcomes {
    Own(Box<Outcomes>),
    Lent(&'static Outcomes),
}

/// The Redis link's numbers. One link per process (docs/architecture.md, "The Redis link"),
/// so one writer: the worker that owns it stores the link's own counts after each turn of its
/// loop (`reactor/redis.rs`), which is why the counters are stored, not added to.
#[derive(Debug, Default)]
pub struct RedisMetrics {
    /// An index into `RedisMetrics::STATES`.
    pub state: Gauge,
    pub reconnects: Gauge,
    pub dropped: Gauge,
    pub published: Gauge,
    pub received: Gauge,
    pub channels: Gauge,
}

impl RedisMetrics {
    /// The link's states, as the `state` label shows them; `off` without `--redis`.
    pub const STATES: [&'static str; 4] = ["off", "down", "connecting", "up"];

    /// Is the link up (handshake answered)? What the HTTP publish endpoint asks before it
    /// accepts a message for the other nodes; any worker may ask, worker 0 sets it.
    pub fn link_up(&self) -> bool {
        self.state.get() == 3
    }
}

/// Every number the server exports: one slot per worker, the process-wide outcomes, and the
/// process-wide gauges the caller sets before rendering.
#[derive(Debug)]
pub struct Metrics {
    workers: Box<[WorkerMetrics]>,
    outcomes: HeldOutcomes,
    /// Bytes queued on every connection of the process (the workers' `conn::Resources::queued`).
    queued_bytes: Gauge,
    /// Connections owning permessage-deflate state (the workers' `Compressors::dedicated`).
    deflate_dedicated: Gauge,
    /// Distinct client addresses with open connections (the reactor's per-address count).
    client_addresses: Gauge,
    pub redis: RedisMetrics,
}

impl Metrics {
    /// A registry for `workers` workers, with outcomes of its own.
    pub fn new(workers: usize) -> Metrics {
        Metrics::holding(workers, HeldOutcomes::Own(Box::default()))
    }

    /// A registry reporting the given outcomes (a test that records some itself).
    pub fn with_outcomes(workers: usize, outcomes: &'static Outcomes) -> Metrics {
        Metrics::holding(workers, HeldOutcomes::Lent(outcomes))
    }

    fn holding(workers: usize, outcomes: HeldOutcomes) -> Metrics {
        Metrics {
            workers: (0..workers.max(1))
                .map(|_| WorkerMetrics::default())
                .collect(),
            outcomes,
            queued_bytes: Gauge::new(),
            deflate_dedicated: Gauge::new(),
            client_addresses: Gauge::new(),
            redis: RedisMetrics::default(),
        }
    }

    /// Worker `i`'s handle on its slot (and on the whole registry, to render it).
    pub fn handle(self: &Arc<Self>, i: usize) -> Worker {
        assert!(
            i < self.workers.len(),
            "bug: worker {i} has no metrics slot"
        );
        Worker {
            all: self.clone(),
            index: i,
        }
    }

    pub fn worker(&self, i: usize) -> &WorkerMetrics {
        &self.workers[i]
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    pub fn outcomes(&self) -> &Outcomes {
        match &self.outcomes {
            HeldOutcomes::Own(o) => o,
            HeldOutcomes::Lent(o) => o,
        }
    }

    /// The process-wide queued bytes, read by the caller (which may see `conn`).
    pub fn set_queued_bytes(&self, n: usize) {
        self.queued_bytes.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The process-wide count of connections with their own compression state.
    pub fn set_deflate_dedicated(&self, n: usize) {
        self.deflate_dedicated
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The process-wide number of client addresses, read by the caller (the reactor).
    pub fn set_client_addresses(&self, n: usize) {
        self.client_addresses
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn sum(&self, f: impl Fn(&WorkerMetrics) -> u64) -> u64 {
        self.workers.iter().map(f).sum()
    }
}

/// A worker's handle: derefs to its own slot; `all()` reaches the registry for rendering.
#[derive(Debug, Clone)]
pub struct Worker {
    all: Arc<Metrics>,
    index: usize,
}

impl Worker {
    pub fn all(&self) -> &Arc<Metrics> {
        &self.all
    }

    pub fn index(&self) -> usize {
        self.index
    }
}

impl Deref for Worker {
    type Target = WorkerMetrics;

    fn deref(&self) -> &WorkerMetrics {
        &self.all.workers[self.index]
    }
}
