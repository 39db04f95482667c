//! Owns `Link`, the state machine of one RESP3 connection to Redis, sans-IO: it is told when
//! the socket connected, fed the bytes read, asked for the bytes to write, and given `now`;
//! it answers with `Action`s (connect, drop the socket) and `Event`s (a message from another
//! node). It never touches a socket or reads the clock — the reactor (`reactor/redis.rs`)
//! does both.
//! Must not: touch a socket, read a clock, or block; a lost link must never stall the loop.
//!
//! What it keeps: which topics the process wants (a count of holders per topic: each worker
//! that has local subscribers holds it once), which of those are subscribed on the current
//! connection, the replies it waits for (in command order), the reconnection backoff.
//!
//! Phases: `Down` (waiting to retry) → `Connecting` (socket opening, `HELLO` pipelined; one
//! deadline covers both) → `Up` (`HELLO` answered). Any failure — connect error, EOF,
//! timeout, an unanswered `PING`, a refused command, bytes that are not RESP3 — goes back to
//! `Down` with a jittered, doubling backoff. Every (re)connection sends the handshake (with
//! `SCRIPT LOAD` of the sequencing script) and one `SUBSCRIBE` for every live topic as a
//! single pipeline.
//!
//! A publish is `EVALSHA` of the sequencing script (`sequence.lua`): Redis numbers it, keeps
//! it in the topic's log and publishes it with its position, and answers the position, which
//! the publisher is told (`take_acks`). This node's own publishes come back on the channel
//! like everyone else's and are delivered then, in Redis's order. A publish while the link is
//! not `Up`, or while too much is queued for Redis, is refused at once (its publisher is told)
//! and counted.
//!
//! On a Redis Cluster (`RedisConfig::cluster`) a link talks to one master: channels are
//! sharded (`PREFIX{TOPIC}`, `SSUBSCRIBE` one slot per command, `SPUBLISH` from the script),
//! a `MOVED`/`ASK` answer hands the publish back to be sent on (`take_redirects`, `resend`),
//! and a slot given up or a subscription redirected marks the map stale (`take_stale`).

use std::collections::{HashMap, VecDeque};

use super::envelope::{self, Position};
use super::resp::{self, Frame, RespError};
use super::slots::{self, Redirect, SlotRange};
use crate::config::RedisConfig;
use crate::timer::Tick;

/// The sequencing script, run by Redis for every publish.
pub const SEQUENCE_SCRIPT: &str = include_str!("sequence.lua");

/// A message read back from a topic's log: (position, text, payload).
pub type LogEntry = (u64, bool, Vec<u8>);

/// First reconnection wait; each failed attempt doubles it up to `backoff_max`.
const BACKOFF_MIN: Tick = 100;

/// Where the link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No socket; the next attempt is scheduled.
    Down,
    /// Socket opening or `HELLO` not yet answered.
    Connecting,
    /// Handshake answered: publishes are sent, messages arrive.
    Up,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Down { retry_at: Tick },
    Connecting { deadline: Tick },
    Up,
}

/// What the reactor must do for the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open a new socket to Redis (the handshake is already queued in `tx`).
    Connect,
    /// Close the socket: the link gave up on it (the reason is for the log).
    Disconnect(&'static str),
}

/// Something that arrived from Redis for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A message a node (this one included) or another publisher published on a topic we
    /// hold; its position if it was sequenced.
    Message {
        topic: &'a str,
        position: Option<Position>,
        text: bool,
        payload: &'a [u8],
    },
    /// What a topic's log held from the position `read_log` asked for: (position, text,
    /// payload) in order, at most `Link::range_count`; `tag` is the caller's, given back.
    Log {
        topic: Box<str>,
        tag: u32,
        entries: Vec<LogEntry>,
    },
}

/// What `next_message` found.
enum Found {
    Message(Range, Range),
    Log(Box<str>, u32, Vec<LogEntry>),
}

/// Why the link dropped its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The bytes were not RESP3 the link understands.
    Resp(RespError),
    /// Redis refused the handshake or a subscription (the command and Redis's error text).
    Refused(&'static str, String),
    /// A reply or confirmation that matches no command sent.
    Unexpected(&'static str),
    /// An incomplete frame grew past the largest message the server accepts.
    TooLarge { size: usize, max: usize },
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Resp(e) => e.fmt(f),
            LinkError::Refused(cmd, e) => write!(f, "Redis refused {cmd}: {e}"),
            LinkError::Unexpected(what) => write!(f, "unexpected from Redis: {what}"),
            LinkError::TooLarge { size, max } => {
                write!(
                    f,
                    "a frame from Redis of at least {size} bytes (limit {max})"
                )
            }
        }
    }
}

/// A publish a cluster node sent elsewhere (`MOVED`/`ASK`), for the caller to send again on
/// the link to that node (`Link::resend`): Redis did not run it here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirected {
    pub to: Redirect,
    waiter: Option<u64>,
    hops: u8,
    command: Vec<u8>,
}

impl Redirected {
    /// The publisher waiting for Redis's answer, if one is.
    pub fn waiter(&self) -> Option<u64> {
        self.waiter
    }
}

/// Redirections one publish may follow before it is given up (the map is refreshed after
/// each `MOVED`, so more than a couple means the cluster is reconfiguring).
const MAX_HOPS: u8 = 4;

/// What a reply, in order, answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Hello,
    Select,
    ScriptLoad,
    Ping,
    /// A sequenced publish (`EVALSHA`); the publisher waiting for Redis's answer, if one is
    /// (`publish`), and the redirections it followed to get here (cluster).
    Publish(Option<u64>, u8),
    /// `ASKING` before a publish redirected by `ASK`.
    Asking,
    /// `CLUSTER SLOTS`.
    Slots,
    /// `WAIT` after a batch of publishes (`--redis-wait-replicas`).
    Wait,
    /// A `SUBSCRIBE`/`UNSUBSCRIBE` of this many channels: one push each (or one error).
    Subscribe(usize),
    Unsubscribe(usize),
    /// An `XRANGE` of a topic's log (the topic is the front of `Link::reads`).
    Range,
}

/// A topic the process holds or recently held.
#[derive(Debug, Clone, Copy)]
struct Topic {
    /// Workers with local subscribers (0: lingering until `since + linger`).
    holders: u32,
    /// When `holders` last fell to 0.
    since: Tick,
    /// `SUBSCRIBE` sent on the current connection.
    sent: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("prefix", &self.prefix)
            .field("node", &format_args!("{:016x}", self.node))
            .field("phase", &self.phase)
            .field("attempts", &self.attempts)
            .field("topics", &self.topics.len())
            .field("tx_queued", &(self.tx.len() - self.tx_start))
            .field("expect", &self.expect.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Counts for the metrics (`reactor/redis.rs` copies them out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connection attempts after the first.
    pub reconnects: u64,
    /// Publishes not sent to Redis: link not up, too much queued, or refused by Redis.
    pub dropped: u64,
    /// Publishes sent to Redis.
    pub published: u64,
    /// Messages from Redis handed to the application (this node's own included).
    pub received: u64,
    /// Channels Redis says this connection subscribes to.
    pub channels: i64,
}

/// One RESP3 connection's worth of state, surviving reconnections. Its `Debug` shows the
/// state, never the bytes: the handshake (and tx while it waits) holds `AUTH`'s password.
pub struct Link {
    prefix: String,
    /// `HELLO 3 [AUTH …] SETNAME …` and `SELECT` if a database was named, encoded once.
    handshake: Vec<u8>,
    handshake_expects: Vec<Expect>,
    node: u64,
    /// The sequencing script's SHA-1, in hex, as `EVALSHA` names it.
    script_sha: String,
    /// Messages each topic's log keeps (`--history-len`).
    keep: usize,
    /// `--redis-log-ttl` in milliseconds, as the script takes it.
    ttl: String,
    timeout: Tick,
    backoff_max: Tick,
    linger: Tick,
    max_queued: usize,
    max_frame: usize,
    phase: Phase,
    /// Upper bound of the next wait (the wait is a random 50–100 % of it).
    backoff: Tick,
    rng: u64,
    attempts: u64,
    topics: HashMap<Box<str>, Topic>,
    /// (topic, expiry) in expiry order; an entry is stale if the topic was held again since.
    lingering: VecDeque<(Box<str>, Tick)>,
    rx: Vec<u8>,
    rx_start: usize,
    tx: Vec<u8>,
    tx_start: usize,
    expect: VecDeque<Expect>,
    last_rx: Tick,
    ping_sent: Option<Tick>,
    stats: Stats,
    /// Publishers' answers not yet taken (`take_acks`): the position Redis gave the message,
    /// or None when it refused it or the connection failed before it answered.
    acks: Vec<(u64, Option<u64>)>,
    /// The topics (and callers' tags) of the `XRANGE`s sent, in order (one per
    /// `Expect::Range`).
    reads: VecDeque<(Box<str>, u32)>,
    /// Reads lost with a connection before Redis answered (`take_lost_reads`).
    lost_reads: Vec<(Box<str>, u32)>,
    /// Redis Cluster (`--redis-cluster`): sharded channels `PREFIX{TOPIC}` (`SSUBSCRIBE`,
    /// `SPUBLISH`), subscribed one slot per command; publishes kept until answered so a
    /// `MOVED`/`ASK` can be sent on.
    cluster: bool,
    /// Cluster: each unanswered publish's command bytes, in the order of its `Expect`.
    unanswered: VecDeque<Vec<u8>>,
    /// Cluster: publishes redirected (`take_redirects`).
    redirects: Vec<Redirected>,
    /// Cluster: this node said the slot map is stale (a `MOVED`, a slot given up).
    stale: bool,
    /// Cluster: the last `CLUSTER SLOTS` answer not yet taken.
    slots: Option<Vec<SlotRange>>,
    /// `--redis-wait-replicas` and the `WAIT` timeout (half `--redis-timeout`, so a `PING`
    /// queued behind it is still answered in time), as the command takes them.
    wait: Option<(u32, String, String)>,
    /// Publishes queued since the last `WAIT` (`seal` adds one when there are any).
    unsealed: usize,
    /// Publishers Redis answered whose `WAIT` is still out: (waiter, position), in order.
    unwaited: Vec<(u64, u64)>,
}

/// Buffers are compacted once this much at their front is consumed (and freed down to it
/// when emptied), so a burst does not pin megabytes.
const COMPACT: usize = 64 * 1024;

impl Link {
    /// A link for `cfg` (its URL must be set) that will connect at `now`. `node` tags this
    /// process's publishes; `max_message` bounds one incoming message (payload and topic).
    pub fn new(cfg: &RedisConfig, node: u64, max_message: usize, now: Tick) -> Link {
        let url = cfg.url.as_ref();
        let name = format!("wsloop-{node:016x}");
        let mut hello: Vec<&[u8]> = vec![b"HELLO", b"3"];
        let user = url.and_then(|u| u.username.as_deref()).unwrap_or("default");
        if let Some(pass) = url.and_then(|u| u.password.as_deref()) {
            hello.extend([&b"AUTH"[..], user.as_bytes(), pass.as_bytes()]);
        }
        hello.extend([&b"SETNAME"[..], name.as_bytes()]);
        let mut handshake = Vec::new();
        let args: Vec<&[&[u8]]> = hello.iter().map(std::slice::from_ref).collect();
        resp::push_command(&mut handshake, &args);
        let mut handshake_expects = vec![Expect::Hello];
        if let Some(db) = url.map(|u| u.db).filter(|&db| db != 0) {
            let db = db.to_string();
            resp::push_command(&mut handshake, &[&[b"SELECT"], &[db.as_bytes()]]);
            handshake_expects.push(Expect::Select);
        }
        let script = SEQUENCE_SCRIPT.as_bytes();
        resp::push_command(&mut handshake, &[&[b"SCRIPT"], &[b"LOAD"], &[script]]);
        handshake_expects.push(Expect::ScriptLoad);
        let sha = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, script);
        let script_sha = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Link {
            prefix: cfg.prefix.clone(),
            handshake,
            handshake_expects,
            node,
            script_sha,
            keep: 100,
            ttl: cfg.log_ttl.as_millis().to_string(),
            timeout: (cfg.timeout.as_millis() as Tick).max(1),
            backoff_max: (cfg.backoff_max.as_millis() as Tick).max(BACKOFF_MIN),
            linger: cfg.linger.as_millis() as Tick,
            max_queued: cfg.max_queued,
            // Room for the push header, the prefix and the envelope around the payload.
            max_frame: max_message
                .saturating_add(cfg.prefix.len())
                .saturating_add(1024),
            phase: Phase::Down { retry_at: now },
            backoff: BACKOFF_MIN,
            rng: node | 1,
            attempts: 0,
            topics: HashMap::new(),
            lingering: VecDeque::new(),
            rx: Vec::new(),
            rx_start: 0,
            tx: Vec::new(),
            tx_start: 0,
            expect: VecDeque::new(),
            last_rx: now,
            ping_sent: None,
            stats: Stats::default(),
            acks: Vec::new(),
            reads: VecDeque::new(),
            lost_reads: Vec::new(),
            cluster: cfg.cluster,
            unanswered: VecDeque::new(),
            redirects: Vec::new(),
            stale: false,
            slots: None,
            wait: (cfg.wait_replicas > 0).then(|| {
                let n = cfg.wait_replicas;
                let ms = (cfg.timeout.as_millis() / 2).max(1);
                (n, n.to_string(), ms.to_string())
            }),
            unsealed: 0,
            unwaited: Vec::new(),
        }
    }

    /// End a batch of publishes: with `--redis-wait-replicas`, a `WAIT` for all of them
    /// (their publishers are answered once it is). Call before writing `tx`.
    pub fn seal(&mut self) {
        let Some((_, n, ms)) = self.wait.as_ref().filter(|_| self.unsealed > 0) else {
            return;
        };
        resp::push_command(
            &mut self.tx,
            &[&[b"WAIT"], &[n.as_bytes()], &[ms.as_bytes()]],
        );
        self.expect.push_back(Expect::Wait);
        self.unsealed = 0;
    }

    /// Keep `n` messages in each topic's log (`--history-len`; 100 unless told).
    pub fn keeping(mut self, n: usize) -> Link {
        self.keep = n;
        self
    }

    /// Most entries one read of a log asks for: as many as the log keeps, so one read
    /// brings all of it.
    pub fn range_count(&self) -> usize {
        self.keep.max(1)
    }

    pub fn state(&self) -> LinkState {
        match self.phase {
            Phase::Down { .. } => LinkState::Down,
            Phase::Connecting { .. } => LinkState::Connecting,
            Phase::Up => LinkState::Up,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The id this process tags its publishes with.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// Topics held or lingering (each has, or will get, a subscription on the connection).
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// One more holder of `topic` (a worker whose first local subscriber arrived).
    pub fn want(&mut self, topic: &str) {
        let connected = self.carries_commands();
        let t = self.topics.entry(topic.into()).or_insert(Topic {
            holders: 0,
            since: 0,
            sent: false,
        });
        t.holders += 1;
        if !t.sent && connected {
            t.sent = true;
            self.subscribe(true, &[topic]);
        }
    }

    /// One holder fewer (a worker's last local subscriber left): the channel lingers, then is
    /// unsubscribed by `poll_action` unless held again meanwhile.
    pub fn unwant(&mut self, topic: &str, now: Tick) {
        let Some(t) = self.topics.get_mut(topic) else {
            return;
        };
        t.holders = t.holders.saturating_sub(1);
        if t.holders == 0 {
            t.since = now;
            self.lingering.push_back((topic.into(), now + self.linger));
        }
    }

    /// Send a publish to Redis to be sequenced, or count it dropped (link not up, or
    /// `max_queued` bytes already waiting). Returns whether it was queued. `waiter` names a
    /// publisher waiting for Redis's answer: `take_acks` reports it once, whatever happens (a
    /// dropped publish is reported at once).
    pub fn publish(
        &mut self,
        topic: &str,
        text: bool,
        payload: &[u8],
        waiter: Option<u64>,
    ) -> bool {
        if self.phase != Phase::Up || self.tx.len() - self.tx_start > self.max_queued {
            self.stats.dropped += 1;
            self.acks.extend(waiter.map(|w| (w, None)));
            return false;
        }
        let p = self.prefix.as_bytes();
        let t = topic.as_bytes();
        // `{topic}`: a hash tag, so that the metadata, the log (and, on a cluster, the
        // channel) of a topic share one slot.
        let meta: &[&[u8]] = &[p, b"{", t, b"}:meta"];
        let log: &[&[u8]] = &[p, b"{", t, b"}:log"];
        let keep = self.keep.to_string();
        let kind: &[u8] = if text { b"t" } else { b"b" };
        let start = self.tx.len();
        let sha = self.script_sha.as_bytes();
        let mut args: Vec<&[&[u8]]> = vec![
            &[b"EVALSHA"],
            std::slice::from_ref(&sha),
            &[b"2"],
            meta,
            log,
        ];
        let sharded: &[&[u8]] = &[p, b"{", t, b"}"];
        let plain: &[&[u8]] = &[p, t];
        args.push(if self.cluster { sharded } else { plain });
        let (kind, payload, keep) = ([kind], [payload], [keep.as_bytes()]);
        args.extend([&kind[..], &payload[..], &keep[..]]);
        args.push(if self.cluster {
            &[b"SPUBLISH"]
        } else {
            &[b"PUBLISH"]
        });
        let ttl = [self.ttl.as_bytes()];
        args.push(&ttl);
        resp::push_command(&mut self.tx, &args);
        if self.cluster {
            self.unanswered.push_back(self.tx[start..].to_vec());
        }
        self.expect.push_back(Expect::Publish(waiter, 0));
        self.unsealed += 1;
        self.stats.published += 1;
        true
    }

    /// Send on a publish another node redirected here (cluster; `take_redirects`), after
    /// `ASKING` for an `ASK`. False when the link is not up or the publish followed too many
    /// redirections: its publisher is told it is not published.
    pub fn resend(&mut self, r: Redirected) -> bool {
        if self.phase != Phase::Up || r.hops >= MAX_HOPS {
            self.stats.dropped += 1;
            self.acks.extend(r.waiter.map(|w| (w, None)));
            return false;
        }
        if r.to.ask {
            resp::push_command(&mut self.tx, &[&[b"ASKING"]]);
            self.expect.push_back(Expect::Asking);
        }
        self.tx.extend_from_slice(&r.command);
        self.unanswered.push_back(r.command);
        self.expect.push_back(Expect::Publish(r.waiter, r.hops + 1));
        self.unsealed += 1;
        true
    }

    /// Cluster: publishes a node sent elsewhere since the last call.
    pub fn take_redirects(&mut self) -> std::vec::Drain<'_, Redirected> {
        self.redirects.drain(..)
    }

    /// Cluster: ask this node for the slot map (`CLUSTER SLOTS`); `take_slots` has the answer.
    /// False when the link cannot carry it now.
    pub fn ask_slots(&mut self) -> bool {
        if self.phase != Phase::Up {
            return false;
        }
        resp::push_command(&mut self.tx, &[&[b"CLUSTER"], &[b"SLOTS"]]);
        self.expect.push_back(Expect::Slots);
        true
    }

    /// Cluster: the slot map this node answered, once.
    pub fn take_slots(&mut self) -> Option<Vec<SlotRange>> {
        self.slots.take()
    }

    /// Cluster: did this node say the slot map is stale since the last call?
    pub fn take_stale(&mut self) -> bool {
        std::mem::take(&mut self.stale)
    }

    /// Does this link hold (or let linger) `topic`?
    pub fn holds(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
    }

    /// The topics this link holds or lets linger.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(|t| &**t)
    }

    /// Cluster: hand `topic` over to another link (its slot moved): forgotten here
    /// (unsubscribed if this node still serves it), its holders returned for `adopt`.
    pub fn release(&mut self, topic: &str) -> Option<(u32, Tick)> {
        let t = self.topics.remove(topic)?;
        if t.sent && self.carries_commands() {
            self.subscribe(false, &[topic]);
        }
        Some((t.holders, t.since))
    }

    /// Cluster: take over `topic` with the holders `release` gave, subscribing it here.
    pub fn adopt(&mut self, topic: &str, (holders, since): (u32, Tick)) {
        let t = self.topics.entry(topic.into()).or_insert(Topic {
            holders: 0,
            since,
            sent: false,
        });
        t.holders += holders;
        if t.holders == 0 {
            self.lingering
                .push_back((topic.into(), since + self.linger));
        }
        self.resubscribe();
    }

    /// Subscribe every topic not subscribed on the current connection (after a node gave up
    /// a slot or refused a subscription), one command per slot.
    pub fn resubscribe(&mut self) {
        if !self.carries_commands() {
            return;
        }
        let mut unsent: Vec<Box<str>> = Vec::new();
        for (name, t) in self.topics.iter_mut().filter(|(_, t)| !t.sent) {
            t.sent = true;
            unsent.push(name.clone());
        }
        unsent.sort();
        let unsent: Vec<&str> = unsent.iter().map(|t| &**t).collect();
        self.subscribe(true, &unsent);
    }

    /// Ask for what `topic`'s log holds from position `from` to `to` (at most `range_count`
    /// entries: the whole log in one read); the answer is an `Event::Log` with `tag`, or (topic, tag) is in
    /// `take_lost_reads` if the connection fails first. False (nothing sent) when the link is
    /// not up.
    pub fn read_log(&mut self, topic: &str, from: u64, to: u64, tag: u32) -> bool {
        if self.phase != Phase::Up {
            return false;
        }
        let log: &[&[u8]] = &[self.prefix.as_bytes(), b"{", topic.as_bytes(), b"}:log"];
        let (from, to) = (format!("0-{from}"), format!("0-{to}"));
        let count = self.range_count().to_string();
        resp::push_command(
            &mut self.tx,
            &[
                &[b"XRANGE"],
                log,
                &[from.as_bytes()],
                &[to.as_bytes()],
                &[b"COUNT"],
                &[count.as_bytes()],
            ],
        );
        self.expect.push_back(Expect::Range);
        self.reads.push_back((topic.into(), tag));
        true
    }

    /// The (topic, tag) of every `read_log` lost with a connection since the last call.
    pub fn take_lost_reads(&mut self) -> std::vec::Drain<'_, (Box<str>, u32)> {
        self.lost_reads.drain(..)
    }

    /// Time-driven work, to run whenever the loop wakes: start a connection when the backoff
    /// is over, give up on a connection past its deadline or a `PING` unanswered, send a
    /// `PING` after silence, unsubscribe channels whose linger ended.
    pub fn poll_action(&mut self, now: Tick) -> Option<Action> {
        self.expire_lingering(now);
        match self.phase {
            Phase::Down { retry_at } if now >= retry_at => {
                self.start(now);
                Some(Action::Connect)
            }
            Phase::Connecting { deadline } if now >= deadline => {
                self.fail(now);
                Some(Action::Disconnect(
                    "no answer to HELLO within redis_timeout",
                ))
            }
            Phase::Up => match self.ping_sent {
                Some(sent) if now >= sent + self.timeout => {
                    self.fail(now);
                    Some(Action::Disconnect("PING unanswered within redis_timeout"))
                }
                None if now >= self.last_rx + self.timeout => {
                    resp::push_command(&mut self.tx, &[&[b"PING"]]);
                    self.expect.push_back(Expect::Ping);
                    self.ping_sent = Some(now);
                    None
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// When `poll_action` next has something to do.
    pub fn next_deadline(&self) -> Option<Tick> {
        let phase = match self.phase {
            Phase::Down { retry_at } => retry_at,
            Phase::Connecting { deadline } => deadline,
            Phase::Up => match self.ping_sent {
                Some(sent) => sent + self.timeout,
                None => self.last_rx + self.timeout,
            },
        };
        let linger = self.lingering.front().map(|&(_, at)| at);
        Some(linger.map_or(phase, |l| l.min(phase)))
    }

    /// The socket is gone (EOF, an error, or a failed connect): retry after the backoff.
    pub fn on_closed(&mut self, now: Tick) {
        if self.state() != LinkState::Down {
            self.fail(now);
        }
    }

    /// The publishers' answers since the last call (`publish`'s `waiter`), in order: the
    /// position Redis gave the message, or None if it is not published.
    pub fn take_acks(&mut self) -> std::vec::Drain<'_, (u64, Option<u64>)> {
        self.acks.drain(..)
    }

    /// Bytes to write to the socket.
    pub fn tx(&self) -> &[u8] {
        &self.tx[self.tx_start..]
    }

    /// `n` bytes of `tx()` were written.
    pub fn consume_tx(&mut self, n: usize) {
        self.tx_start = (self.tx_start + n).min(self.tx.len());
        compact(&mut self.tx, &mut self.tx_start);
    }

    /// Bytes read from the socket at `now`; `poll_event` decodes them.
    pub fn feed(&mut self, bytes: &[u8], now: Tick) {
        self.rx.extend_from_slice(bytes);
        self.last_rx = now;
    }

    /// The next message for the application, handling every reply and confirmation before
    /// it. `Ok(None)`: nothing complete is buffered. An error means the connection cannot
    /// go on: the link is already `Down` (backoff scheduled); the caller closes the socket.
    pub fn poll_event(&mut self, now: Tick) -> Result<Option<Event<'_>>, LinkError> {
        match self.next_message() {
            Ok(Some(Found::Log(topic, tag, entries))) => Ok(Some(Event::Log {
                topic,
                tag,
                entries,
            })),
            Ok(Some(Found::Message(channel, payload))) => {
                let topic = self
                    .topic_of(&self.rx[channel.clone()])
                    .expect("bug: checked in next_message");
                let msg = envelope::open(&self.rx[payload]);
                Ok(Some(Event::Message {
                    topic,
                    position: msg.position,
                    text: msg.text,
                    payload: msg.payload,
                }))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.fail(now);
                Err(e)
            }
        }
    }

    /// Decode until a message for the application (its channel and payload ranges in `rx`).
    fn next_message(&mut self) -> Result<Option<Found>, LinkError> {
        compact(&mut self.rx, &mut self.rx_start);
        loop {
            // A read of a log may bring up to `range_count` messages in one reply (as many
            // as a hub's history of the topic holds).
            let max = match self.expect.front() {
                Some(Expect::Range) => self.max_frame.saturating_mul(self.range_count()),
                _ => self.max_frame,
            };
            let buf = &self.rx[self.rx_start..];
            let Some((frame, used)) = resp::decode(buf).map_err(LinkError::Resp)? else {
                if buf.len() > max {
                    let size = buf.len();
                    return Err(LinkError::TooLarge { size, max });
                }
                return Ok(None);
            };
            // The same limit for a frame that arrived whole as for one still arriving, so
            // how the bytes were split never changes the outcome.
            if used > max {
                return Err(LinkError::TooLarge { size: used, max });
            }
            let base = self.rx_start;
            self.rx_start += used;
            match frame {
                Frame::Message { channel, payload } => {
                    let (c, p) = (range_in(buf, channel, base), range_in(buf, payload, base));
                    if self.wanted(channel) && envelope::open(payload).node != Some(self.node) {
                        self.stats.received += 1;
                        return Ok(Some(Found::Message(c, p)));
                    }
                }
                Frame::Slots(ranges) if self.expect.front() == Some(&Expect::Slots) => {
                    self.expect.pop_front();
                    self.slots = Some(ranges);
                }
                Frame::Entries(e)
                    if e.is_empty() && self.expect.front() == Some(&Expect::Slots) =>
                {
                    self.expect.pop_front();
                    self.slots = Some(Vec::new());
                }
                Frame::Entries(entries) if self.expect.front() == Some(&Expect::Range) => {
                    self.expect.pop_front();
                    let (topic, tag) = self.reads.pop_front().expect("bug: a read per Range");
                    let entries = entries
                        .iter()
                        .map(|e| (e.seq, e.text, e.payload.to_vec()))
                        .collect();
                    return Ok(Some(Found::Log(topic, tag, entries)));
                }
                Frame::Entries(_) | Frame::Slots(_) => self.on_reply(Ok(None))?,
                Frame::Subscription {
                    subscribed,
                    channel,
                    count,
                } => {
                    let channel = channel.to_vec();
                    self.on_subscription(subscribed, &channel, count)?
                }
                Frame::OtherPush => {}
                Frame::Reply(res) => {
                    let res = res.map_err(|e| String::from_utf8_lossy(e).into_owned());
                    self.on_reply(res)?
                }
            }
        }
    }

    /// Is `channel` one of ours, naming a topic the process holds (a message that crossed
    /// our `UNSUBSCRIBE` is dropped)?
    fn wanted(&self, channel: &[u8]) -> bool {
        self.topic_of(channel)
            .is_some_and(|t| self.topics.contains_key(t))
    }

    /// The topic a channel of ours names: `PREFIX` + topic, or on a cluster `PREFIX{topic}`
    /// (the topic its own hash tag, so channel, metadata and log share a slot).
    fn topic_of<'c>(&self, channel: &'c [u8]) -> Option<&'c str> {
        let t = channel.strip_prefix(self.prefix.as_bytes())?;
        let t = match self.cluster {
            true => t.strip_prefix(b"{")?.strip_suffix(b"}")?,
            false => t,
        };
        std::str::from_utf8(t).ok()
    }

    fn on_reply(&mut self, res: Result<Option<i64>, String>) -> Result<(), LinkError> {
        let expected = self
            .expect
            .pop_front()
            .ok_or(LinkError::Unexpected("a reply to no command"))?;
        match (expected, res) {
            (Expect::Hello, Ok(_)) => {
                self.phase = Phase::Up;
                self.backoff = BACKOFF_MIN;
            }
            (Expect::Ping, Ok(_)) => self.ping_sent = None,
            (Expect::Select | Expect::ScriptLoad | Expect::Asking, Ok(_)) => {}
            (Expect::Slots, Ok(_)) => return Err(LinkError::Unexpected("CLUSTER SLOTS' answer")),
            (Expect::Slots, Err(e)) => log::warn!("redis: CLUSTER SLOTS refused: {e}"),
            // An `ASK` target refusing `ASKING` refuses the publish after it too.
            (Expect::Asking, Err(_)) => {}
            (Expect::Publish(waiter, _), Ok(Some(position))) => {
                self.unanswered.pop_front();
                match (waiter, u64::try_from(position).ok(), self.wait.is_some()) {
                    (Some(w), Some(p), true) => self.unwaited.push((w, p)),
                    (waiter, p, _) => self.acks.extend(waiter.map(|w| (w, p))),
                }
            }
            // The replicas that have everything this connection wrote: enough, and the
            // publishers are told their positions; too few within the timeout, and they are
            // told it is not safe (published, but a failover could lose it).
            (Expect::Wait, Ok(Some(replicas))) => {
                let need = self.wait.as_ref().map_or(0, |w| w.0);
                let safe = u32::try_from(replicas).is_ok_and(|r| r >= need);
                if !safe && !self.unwaited.is_empty() {
                    log::warn!("redis: WAIT: {replicas} of {need} replicas; publishes refused");
                }
                let done = self.unwaited.drain(..);
                self.acks.extend(done.map(|(w, p)| (w, safe.then_some(p))));
            }
            (Expect::Wait, Ok(None)) => return Err(LinkError::Unexpected("WAIT's answer")),
            (Expect::Wait, Err(e)) => return Err(LinkError::Refused("WAIT", e)),
            (Expect::Publish(waiter, _), Ok(None)) => {
                self.unanswered.pop_front();
                log::warn!("redis: the sequencing script answered no position");
                self.stats.dropped += 1;
                self.acks.extend(waiter.map(|w| (w, None)));
            }
            (Expect::Publish(waiter, hops), Err(e)) => {
                let command = self.unanswered.pop_front();
                // Cluster: the topic's slot is served elsewhere; Redis ran nothing here, so the
                // publish is sent on there (`take_redirects`).
                let to = Redirect::parse(&e).filter(|_| self.cluster);
                if let (Some(to), Some(command)) = (to, command) {
                    self.stale |= !to.ask;
                    self.redirects.push(Redirected {
                        to,
                        waiter,
                        hops,
                        command,
                    });
                    return Ok(());
                }
                self.stats.dropped += 1;
                self.acks.extend(waiter.map(|w| (w, None)));
                // The script is loaded by every handshake: without it (`SCRIPT FLUSH`), start
                // a new connection, which loads it again.
                if e.starts_with("NOSCRIPT") {
                    return Err(LinkError::Refused("EVALSHA", e));
                }
                if e.starts_with("MOVED") && !self.cluster {
                    log::error!(
                        "redis: publish refused: {e}: this Redis is a cluster; start with \
                         --redis-cluster"
                    );
                } else {
                    log::warn!("redis: publish refused: {e}");
                }
            }
            (Expect::Subscribe(_) | Expect::Unsubscribe(_), Ok(_)) => {
                return Err(LinkError::Unexpected("a plain reply to (UN)SUBSCRIBE"))
            }
            // Cluster: a slot that moved since the map was read. Subscribe again once it is
            // read anew (which topics the refused command held is not said, so all of them:
            // a channel subscribed twice is confirmed twice, nothing more).
            (Expect::Subscribe(_) | Expect::Unsubscribe(_), Err(e))
                if self.cluster && Redirect::parse(&e).is_some() =>
            {
                self.stale = true;
                for t in self.topics.values_mut() {
                    t.sent = false;
                }
            }
            (Expect::Range, Err(e)) if self.cluster && Redirect::parse(&e).is_some() => {
                self.stale = true;
                self.lost_reads.extend(self.reads.pop_front());
            }
            (Expect::Hello, Err(e)) => return Err(LinkError::Refused("HELLO 3", e)),
            (Expect::Select, Err(e)) => return Err(LinkError::Refused("SELECT", e)),
            (Expect::ScriptLoad, Err(e)) => return Err(LinkError::Refused("SCRIPT LOAD", e)),
            (Expect::Range, Ok(_)) => return Err(LinkError::Unexpected("XRANGE's answer")),
            (Expect::Range, Err(e)) => return Err(LinkError::Refused("XRANGE", e)),
            (Expect::Ping, Err(e)) => return Err(LinkError::Refused("PING", e)),
            (Expect::Subscribe(_), Err(e)) => return Err(LinkError::Refused("SUBSCRIBE", e)),
            (Expect::Unsubscribe(_), Err(e)) => return Err(LinkError::Refused("UNSUBSCRIBE", e)),
        }
        Ok(())
    }

    fn on_subscription(
        &mut self,
        subscribed: bool,
        channel: &[u8],
        count: i64,
    ) -> Result<(), LinkError> {
        let left = match (self.expect.front_mut(), subscribed) {
            (Some(Expect::Subscribe(n)), true) | (Some(Expect::Unsubscribe(n)), false) => n,
            // Cluster: a node gave up the slot of a channel (it moved, or the node became a
            // replica); the map is read again and the topic subscribed where it went.
            (_, false) if self.cluster => {
                let topic = self.topic_of(channel).map(Box::<str>::from);
                if let Some(t) = topic.and_then(|t| self.topics.get_mut(&t)) {
                    t.sent = false;
                }
                self.stale = true;
                self.stats.channels = count;
                return Ok(());
            }
            _ => return Err(LinkError::Unexpected("a (un)subscribe confirmation")),
        };
        *left -= 1;
        if *left == 0 {
            self.expect.pop_front();
        }
        self.stats.channels = count;
        Ok(())
    }

    /// Can commands be queued now (the handshake is ahead of them in `tx`)?
    fn carries_commands(&self) -> bool {
        !matches!(self.phase, Phase::Down { .. })
    }

    /// Queue `SUBSCRIBE` (or `UNSUBSCRIBE`) of `topics`' channels as one command.
    fn subscribe(&mut self, on: bool, topics: &[&str]) {
        if topics.is_empty() {
            return; // UNSUBSCRIBE with no channel would mean "all of them"
        }
        if self.cluster {
            // A node refuses a command whose channels are in several slots (CROSSSLOT): one
            // command per slot.
            let mut by_slot: Vec<(u16, &str)> =
                topics.iter().map(|t| (self.slot_of(t), *t)).collect();
            by_slot.sort();
            for group in by_slot.chunk_by(|a, b| a.0 == b.0) {
                let topics: Vec<&str> = group.iter().map(|&(_, t)| t).collect();
                self.push_subscribe(on, &topics);
            }
        } else {
            self.push_subscribe(on, topics);
        }
    }

    /// The slot of `topic` on a cluster: its metadata's, its log's and its channel's.
    pub fn slot_of(&self, topic: &str) -> u16 {
        let meta = [self.prefix.as_bytes(), b"{", topic.as_bytes(), b"}:meta"].concat();
        slots::key_slot(&meta)
    }

    fn push_subscribe(&mut self, on: bool, topics: &[&str]) {
        let verb: &[u8] = match (on, self.cluster) {
            (true, false) => b"SUBSCRIBE",
            (false, false) => b"UNSUBSCRIBE",
            (true, true) => b"SSUBSCRIBE",
            (false, true) => b"SUNSUBSCRIBE",
        };
        let p = self.prefix.as_bytes();
        let channels: Vec<[&[u8]; 4]> = topics
            .iter()
            .map(|t| match self.cluster {
                true => [p, b"{", t.as_bytes(), b"}"],
                false => [p, t.as_bytes(), b"", b""],
            })
            .collect();
        let mut args: Vec<&[&[u8]]> = vec![std::slice::from_ref(&verb)];
        args.extend(channels.iter().map(|c| &c[..]));
        resp::push_command(&mut self.tx, &args);
        self.expect.push_back(if on {
            Expect::Subscribe(topics.len())
        } else {
            Expect::Unsubscribe(topics.len())
        });
    }

    /// A new connection: the handshake and every live topic's `SUBSCRIBE`, one pipeline.
    fn start(&mut self, now: Tick) {
        self.attempts += 1;
        if self.attempts > 1 {
            self.stats.reconnects += 1;
        }
        self.reset_connection(now);
        self.phase = Phase::Connecting {
            deadline: now + self.timeout,
        };
        self.tx.extend_from_slice(&self.handshake);
        self.expect.extend(self.handshake_expects.iter().copied());
        let mut live: Vec<Box<str>> = self.topics.keys().cloned().collect();
        live.sort(); // deterministic bytes, for tests and for reading a capture
        for t in self.topics.values_mut() {
            t.sent = true;
        }
        let live: Vec<&str> = live.iter().map(|t| &**t).collect();
        self.subscribe(true, &live);
    }

    /// Give up on the connection: schedule the next attempt after a jittered backoff.
    fn fail(&mut self, now: Tick) {
        self.reset_connection(now);
        let wait = self.backoff / 2 + self.random() % (self.backoff / 2 + 1);
        self.backoff = (self.backoff * 2).min(self.backoff_max);
        self.phase = Phase::Down {
            retry_at: now + wait,
        };
    }

    /// Forget everything about the current connection (not the topics).
    fn reset_connection(&mut self, now: Tick) {
        for t in self.topics.values_mut() {
            t.sent = false;
        }
        self.rx.clear();
        self.rx_start = 0;
        self.tx.clear();
        self.tx_start = 0;
        // Publishes Redis never answered: their publishers are told they may be lost.
        for e in self.expect.drain(..) {
            if let Expect::Publish(Some(w), _) = e {
                self.acks.push((w, None));
            }
        }
        self.unanswered.clear();
        self.acks
            .extend(self.unwaited.drain(..).map(|(w, _)| (w, None)));
        self.unsealed = 0;
        self.lost_reads.extend(self.reads.drain(..));
        self.ping_sent = None;
        self.last_rx = now;
        self.stats.channels = 0;
    }

    /// Unsubscribe (one command) every topic whose linger ended without a new holder.
    fn expire_lingering(&mut self, now: Tick) {
        let mut gone = Vec::new();
        while let Some((topic, at)) = self.lingering.front() {
            if *at > now {
                break;
            }
            let t = self.topics.get(topic).copied();
            if let Some(t) = t.filter(|t| t.holders == 0 && t.since + self.linger <= now) {
                self.topics.remove(topic);
                if t.sent {
                    gone.push(topic.clone());
                }
            }
            self.lingering.pop_front();
        }
        if self.carries_commands() {
            let gone: Vec<&str> = gone.iter().map(|t| &**t).collect();
            self.subscribe(false, &gone);
        }
    }

    /// xorshift64* — jitter needs spread, not secrecy.
    fn random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

type Range = std::ops::Range<usize>;

/// Where `part` (a subslice of `buf`) lies, as a range of the buffer `buf` starts at `base` of.
fn range_in(buf: &[u8], part: &[u8], base: usize) -> Range {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    base + start..base + start + part.len()
}

/// Drop the consumed front of a buffer once it is all consumed or large.
fn compact(buf: &mut Vec<u8>, start: &mut usize) {
    if *start == buf.len() {
        buf.clear();
        *start = 0;
        if buf.capacity() > 16 * COMPACT {
            buf.shrink_to(COMPACT);
        }
    } else if *start >= COMPACT {
        buf.drain(..*start);
        *start = 0;
    }
}
