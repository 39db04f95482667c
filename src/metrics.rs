//! Owns the server's metrics: the counters and gauges, where each lives, and their rendering
//! in the Prometheus text exposition format 0.0.4 (`Metrics::render`). Sans-IO (layer L0): no
//! sockets, no clock — it stores and renders the numbers it is given.
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

use std::fmt::{Display, Write as _};
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
}

impl Outcomes {
    pub const fn new() -> Outcomes {
        Outcomes {
            answers: [const { Counter::new() }; (STATUS_MAX - STATUS_MIN + 1) as usize],
            close_sent: CloseCodes::new(),
            close_received: CloseCodes::new(),
        }
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

    /// Append every family in the Prometheus text exposition format 0.0.4: one `# HELP` and
    /// one `# TYPE` per family, then its samples; counters end in `_total`; per-worker values
    /// carry a `worker` label.
    pub fn render(&self, out: &mut String) {
        let w = &self.workers;
        let mut r = Renderer { out };

        r.family(
            "wsloop_workers",
            "gauge",
            "Event-loop workers (reactors) running.",
        );
        r.sample("wsloop_workers", &[], w.len());

        r.family(
            "wsloop_connections",
            "gauge",
            "Open client connections by transport and phase (handshake: request head being \
             read or answered; open: serving; closing: closing handshake or final flush).",
        );
        for t in Transport::ALL {
            for p in Phase::ALL {
                let n: i64 = w.iter().map(|m| m.connections(t, p)).sum();
                let labels = [("transport", t.label()), ("state", p.label())];
                r.sample("wsloop_connections", &labels, n);
            }
        }

        r.family(
            "wsloop_worker_connections",
            "gauge",
            "Open client connections per worker (how evenly SO_REUSEPORT spreads them).",
        );
        for (i, m) in w.iter().enumerate() {
            let worker = i.to_string();
            r.sample(
                "wsloop_worker_connections",
                &[("worker", &worker)],
                m.connections_total(),
            );
        }

        r.family(
            "wsloop_connections_accepted_total",
            "counter",
            "TCP connections accepted (including those refused with 503 at max_connections).",
        );
        r.sample(
            "wsloop_connections_accepted_total",
            &[],
            self.sum(|m| m.accepted.get()),
        );

        r.family(
            "wsloop_connections_refused_total",
            "counter",
            "Connections refused by a limit, by reason: max_connections (503 at accept), \
             per_ip (429: over max_connections_per_ip, at accept, or behind a trusted proxy \
             when a request names a client over its cap).",
        );
        let refused = [
            ("max_connections", self.sum(|m| m.refused_full.get())),
            ("per_ip", self.sum(|m| m.refused_per_ip.get())),
        ];
        for (reason, n) in refused {
            r.sample("wsloop_connections_refused_total", &[("reason", reason)], n);
        }

        r.family(
            "wsloop_client_addresses",
            "gauge",
            "Distinct client addresses with open connections (behind a trusted proxy, the \
             addresses its requests name).",
        );
        r.sample("wsloop_client_addresses", &[], self.client_addresses.get());

        r.family(
            "wsloop_upgrades_total",
            "counter",
            "Requests answered before any WebSocket opened: result=\"accepted\" is the 101 of an \
             upgrade; result=\"rejected\" an error response and close, by status (validation, \
             routing, handler, limits, 408 slow request head, 429 at max_connections_per_ip, \
             503 at max_connections).",
        );
        let accepted = [("result", "accepted"), ("status", "101")];
        r.sample(
            "wsloop_upgrades_total",
            &accepted,
            self.outcomes().answers(101),
        );
        for status in STATUS_MIN..=STATUS_MAX {
            let n = self.outcomes().answers(status);
            if status != 101 && n > 0 {
                let s = status.to_string();
                let labels = [("result", "rejected"), ("status", s.as_str())];
                r.sample("wsloop_upgrades_total", &labels, n);
            }
        }

        let sums: [(&str, &str, u64); 5] = [
            (
                "wsloop_messages_received_total",
                "Complete WebSocket messages received and handed to handlers.",
                self.sum(|m| m.messages_in.get()),
            ),
            (
                "wsloop_messages_sent_total",
                "WebSocket messages queued for sending (handler sends and publish deliveries).",
                self.sum(|m| m.messages_out.get()),
            ),
            (
                "wsloop_received_bytes_total",
                "Bytes read from client sockets (HTTP and WebSocket framing included).",
                self.sum(|m| m.bytes_in.get()),
            ),
            (
                "wsloop_sent_bytes_total",
                "Bytes written to client sockets (HTTP and WebSocket framing included).",
                self.sum(|m| m.bytes_out.get()),
            ),
            (
                "wsloop_slow_consumer_closes_total",
                "Subscribers closed with 1008 for falling behind on publishes.",
                self.sum(|m| m.slow_closes.get()),
            ),
        ];
        for (name, help, n) in sums {
            r.family(name, "counter", help);
            r.sample(name, &[], n);
        }

        let closes = [
            (
                "wsloop_close_frames_sent_total",
                "WebSocket close frames sent, by status code (1005: sent without a code; \
                 3xxx/4xxx: application codes; other: anything else).",
                &self.outcomes().close_sent,
            ),
            (
                "wsloop_close_frames_received_total",
                "Valid WebSocket close frames received, by status code (1005: without a code; \
                 3xxx/4xxx: application codes; other: anything else).",
                &self.outcomes().close_received,
            ),
        ];
        for (name, help, codes) in closes {
            r.family(name, "counter", help);
            for (code, n) in codes.seen() {
                r.sample(name, &[("code", &code)], n);
            }
        }

        r.family(
            "wsloop_queued_bytes",
            "gauge",
            "Bytes queued for sending on every connection of the process.",
        );
        r.sample("wsloop_queued_bytes", &[], self.queued_bytes.get());

        r.family(
            "wsloop_deflate_dedicated_connections",
            "gauge",
            "Connections owning their own permessage-deflate state (--compression dedicated).",
        );
        let dedicated = self.deflate_dedicated.get();
        r.sample("wsloop_deflate_dedicated_connections", &[], dedicated);

        r.family(
            "wsloop_pubsub_subscriptions",
            "gauge",
            "Subscriptions (connection, topic) over all workers.",
        );
        let subs: i64 = w.iter().map(|m| m.subscriptions.get()).sum();
        r.sample("wsloop_pubsub_subscriptions", &[], subs);

        let per_worker: [PerWorker; 7] = [
            (
                "wsloop_pubsub_topics",
                "gauge",
                "Topics per worker (a topic with subscribers on several workers exists on each).",
                |m| Value::Int(m.topics.get()),
            ),
            (
                "wsloop_pubsub_topics_evicted_total",
                "counter",
                "Idle topics (no subscribers) evicted with their history to make room for new \
                 ones (--max-topics).",
                |m| Value::Int(i64::try_from(m.topic_evictions.get()).unwrap_or(i64::MAX)),
            ),
            (
                "wsloop_pubsub_topics_refused_total",
                "counter",
                "Subscriptions and publishes refused because the worker held --max-topics \
                 topics, all with subscribers.",
                |m| Value::Int(i64::try_from(m.topic_refusals.get()).unwrap_or(i64::MAX)),
            ),
            (
                "wsloop_pubsub_history_bytes",
                "gauge",
                "Bytes of kept messages in each worker's topic histories (--max-history-bytes).",
                |m| Value::Int(m.history_bytes.get()),
            ),
            (
                "wsloop_timer_wheel_entries",
                "gauge",
                "Timers armed in each worker's timer wheel.",
                |m| Value::Int(m.timers.get()),
            ),
            (
                "wsloop_loop_iterations_total",
                "counter",
                "Event-loop iterations per worker.",
                |m| Value::Int(i64::try_from(m.loop_iterations.get()).unwrap_or(i64::MAX)),
            ),
            (
                "wsloop_poll_seconds_total",
                "counter",
                "Seconds each worker spent blocked in epoll_wait (counted when it returns).",
                |m| Value::Float(m.poll_nanos.get() as f64 / 1e9),
            ),
        ];
        for (name, kind, help, get) in per_worker {
            r.family(name, kind, help);
            for (i, m) in w.iter().enumerate() {
                let worker = i.to_string();
                r.sample(name, &[("worker", &worker)], get(m));
            }
        }
        self.render_redis(&mut r);
    }

    fn render_redis(&self, r: &mut Renderer<'_>) {
        let redis = &self.redis;
        r.family(
            "wsloop_redis_link",
            "gauge",
            "State of the Redis backplane link: 1 for the current state (off without --redis; \
             down: waiting to reconnect; connecting: socket or HELLO pending; up).",
        );
        let state = redis.state.get();
        for (i, s) in RedisMetrics::STATES.iter().enumerate() {
            r.sample(
                "wsloop_redis_link",
                &[("state", s)],
                i64::from(state == i as i64),
            );
        }
        let families: [(&str, &str, &str, &Gauge); 5] = [
            (
                "wsloop_redis_reconnects_total",
                "counter",
                "Connection attempts to Redis after the first one.",
                &redis.reconnects,
            ),
            (
                "wsloop_redis_dropped_publishes_total",
                "counter",
                "Publishes not sent to Redis (link not up, too much queued, or refused): other \
                 nodes never see them; local subscribers did.",
                &redis.dropped,
            ),
            (
                "wsloop_redis_published_total",
                "counter",
                "Publishes sent to Redis for the other nodes.",
                &redis.published,
            ),
            (
                "wsloop_redis_received_total",
                "counter",
                "Messages from other nodes received through Redis and delivered here.",
                &redis.received,
            ),
            (
                "wsloop_redis_channels",
                "gauge",
                "Redis channels the link subscribes to, as Redis last confirmed.",
                &redis.channels,
            ),
        ];
        for (name, kind, help, g) in families {
            r.family(name, kind, help);
            r.sample(name, &[], g.get());
        }
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

/// A per-worker family: name, type, help, and how to read the value from a slot.
type PerWorker = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerMetrics) -> Value,
);

/// A sample's value.
enum Value {
    Int(i64),
    Float(f64),
}

impl Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            // Rust prints floats in plain decimal (never an exponent), which Prometheus parses.
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Writes the exposition format into a String (writing to a String cannot fail, hence the
/// ignored `fmt::Result`s).
struct Renderer<'a> {
    out: &'a mut String,
}

impl Renderer<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the format requires: backslash, double quote and newline escaped.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text as the format requires: backslash and newline escaped (quotes stay).
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(workers: usize) -> Metrics {
        Metrics::with_outcomes(workers, Box::leak(Box::new(Outcomes::new())))
    }

    fn rendered(m: &Metrics) -> String {
        let mut s = String::new();
        m.render(&mut s);
        s
    }

    /// The value of the sample written exactly as `series` (name and labels).
    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(String::from))
    }

    #[test]
    fn the_redis_link_state_is_one_series_at_1() {
        let m = fresh(1);
        let up = "wsloop_redis_link{state=\"up\"}";
        let off = "wsloop_redis_link{state=\"off\"}";
        let text = rendered(&m);
        assert_eq!(
            value(&text, off).as_deref(),
            Some("1"),
            "off without --redis"
        );
        assert_eq!(value(&text, up).as_deref(), Some("0"));
        m.redis.state.set(3);
        m.redis.dropped.set(5);
        let text = rendered(&m);
        assert_eq!(value(&text, off).as_deref(), Some("0"));
        assert_eq!(value(&text, up).as_deref(), Some("1"));
        let dropped = "wsloop_redis_dropped_publishes_total";
        assert_eq!(value(&text, dropped).as_deref(), Some("5"));
    }

    #[test]
    fn an_accepted_upgrade_shows_as_1() {
        let m = fresh(1);
        let series = "wsloop_upgrades_total{result=\"accepted\",status=\"101\"}";
        assert_eq!(value(&rendered(&m), series).as_deref(), Some("0"));
        m.outcomes().answered(101);
        assert_eq!(value(&rendered(&m), series).as_deref(), Some("1"));
    }

    #[test]
    fn rejections_appear_by_status_once_seen() {
        let m = fresh(1);
        let series = "wsloop_upgrades_total{result=\"rejected\",status=\"404\"}";
        assert_eq!(value(&rendered(&m), series), None);
        m.outcomes().answered(404);
        m.outcomes().answered(404);
        m.outcomes().answered(503);
        let text = rendered(&m);
        assert_eq!(value(&text, series).as_deref(), Some("2"));
        assert_eq!(
            value(
                &text,
                "wsloop_upgrades_total{result=\"rejected\",status=\"503\"}"
            )
            .as_deref(),
            Some("1")
        );
    }

    #[test]
    fn worker_counters_are_summed_and_per_worker_ones_labelled() {
        let m = Arc::new(fresh(2));
        let (w0, w1) = (m.handle(0), m.handle(1));
        w0.bytes_in.add(10);
        w1.bytes_in.add(5);
        w0.messages_out.inc();
        w1.loop_iterations.add(7);
        w1.poll_nanos.add(1_500_000_000);
        w0.topics.set(3);
        w1.topics.set(2);
        w0.subscriptions.set(4);
        w1.subscriptions.set(1);
        m.set_queued_bytes(12345);
        m.set_deflate_dedicated(6);
        w0.refused_per_ip.add(2);
        w1.refused_per_ip.inc();
        w1.refused_full.inc();
        m.set_client_addresses(6);
        let text = rendered(&m);
        for (series, want) in [
            ("wsloop_connections_refused_total{reason=\"per_ip\"}", "3"),
            (
                "wsloop_connections_refused_total{reason=\"max_connections\"}",
                "1",
            ),
            ("wsloop_client_addresses", "6"),
            ("wsloop_received_bytes_total", "15"),
            ("wsloop_messages_sent_total", "1"),
            ("wsloop_loop_iterations_total{worker=\"0\"}", "0"),
            ("wsloop_loop_iterations_total{worker=\"1\"}", "7"),
            ("wsloop_poll_seconds_total{worker=\"1\"}", "1.5"),
            ("wsloop_pubsub_topics{worker=\"0\"}", "3"),
            ("wsloop_pubsub_subscriptions", "5"),
            ("wsloop_queued_bytes", "12345"),
            ("wsloop_deflate_dedicated_connections", "6"),
            ("wsloop_workers", "2"),
        ] {
            assert_eq!(value(&text, series).as_deref(), Some(want), "{series}");
        }
    }

    #[test]
    fn connection_gauges_follow_moves_and_list_every_transport() {
        let m = Arc::new(fresh(2));
        let w = m.handle(1);
        let hs = ConnClass::new(Transport::Http, Phase::Handshake);
        let open = ConnClass::new(Transport::WebSocket, Phase::Open);
        let closing = ConnClass::new(Transport::WebSocket, Phase::Closing);
        w.move_conn(ConnClass::NONE, hs);
        w.move_conn(ConnClass::NONE, hs);
        w.move_conn(hs, open);
        w.move_conn(open, closing);
        w.move_conn(ConnClass::NONE, hs);
        w.move_conn(hs, open);
        let text = rendered(&m);
        let get = |t: &str, s: &str| {
            let series = format!("wsloop_connections{{transport=\"{t}\",state=\"{s}\"}}");
            value(&text, &series)
        };
        assert_eq!(get("http", "handshake").as_deref(), Some("1"));
        assert_eq!(get("websocket", "open").as_deref(), Some("1"));
        assert_eq!(get("websocket", "closing").as_deref(), Some("1"));
        for t in ["sse", "poll", "stream"] {
            assert_eq!(get(t, "open").as_deref(), Some("0"), "{t} listed with 0");
        }
        assert_eq!(
            value(&text, "wsloop_worker_connections{worker=\"1\"}").as_deref(),
            Some("3")
        );
        w.move_conn(closing, ConnClass::NONE);
        assert_eq!(w.connections_total(), 2);
        assert_eq!(closing.transport(), Some(Transport::WebSocket));
        assert_eq!(ConnClass::NONE.transport(), None);
    }

    #[test]
    fn close_codes_are_exact_for_the_standard_ones_and_bucketed_otherwise() {
        let m = fresh(1);
        let o = m.outcomes();
        o.close_sent.record(1000);
        o.close_sent.record(1000);
        o.close_sent.record(1008);
        o.close_received.record(1005);
        o.close_received.record(4001);
        o.close_received.record(4999);
        o.close_received.record(3000);
        o.close_received.record(2999);
        let text = rendered(&m);
        for (series, want) in [
            ("wsloop_close_frames_sent_total{code=\"1000\"}", "2"),
            ("wsloop_close_frames_sent_total{code=\"1008\"}", "1"),
            ("wsloop_close_frames_received_total{code=\"1005\"}", "1"),
            ("wsloop_close_frames_received_total{code=\"4xxx\"}", "2"),
            ("wsloop_close_frames_received_total{code=\"3xxx\"}", "1"),
            ("wsloop_close_frames_received_total{code=\"other\"}", "1"),
        ] {
            assert_eq!(value(&text, series).as_deref(), Some(want), "{series}");
        }
        assert_eq!(
            value(&text, "wsloop_close_frames_sent_total{code=\"1001\"}"),
            None
        );
    }

    #[test]
    fn every_family_has_one_help_and_type_before_its_samples() {
        let m = fresh(3);
        m.outcomes().answered(400);
        m.outcomes().close_sent.record(1001);
        let text = rendered(&m);
        let mut families: Vec<&str> = Vec::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("");
                assert!(!families.contains(&name), "{name} twice");
                families.push(name);
                current = name;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or(("", ""));
                assert_eq!(name, current);
                assert!(kind == "counter" || kind == "gauge", "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                assert_eq!(name, current, "sample outside its family: {line}");
                let v = line.rsplit(' ').next().unwrap_or("");
                assert!(v.parse::<f64>().is_ok(), "{line}");
            }
        }
        assert_eq!(families.len(), 30, "{families:?}");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_help("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
        let mut s = String::new();
        Renderer { out: &mut s }.sample("m", &[("k", "v\"1"), ("j", "2")], 3);
        assert_eq!(s, "m{k=\"v\\\"1\",j=\"2\"} 3\n");
    }

    #[test]
    fn worker_slots_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<WorkerMetrics>(), 128);
        assert_eq!(std::mem::size_of::<WorkerMetrics>() % 128, 0);
    }
}
