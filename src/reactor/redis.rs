//! Owns the Redis link's socket inside the reactor's own poller: a non-blocking stream opened
//! through `Net::connect` under the `REDIS` token (so the fake harness scripts Redis like any
//! peer), connected, read, written and closed as the sans-IO
//! `backplane::Link` asks, its deadlines (connect, PING, backoff, linger) kept by one timer
//! wheel entry. Nothing here blocks: connect returns at once (EINPROGRESS) and completes on
//! WRITABLE; reads and writes stop at `WouldBlock`; the host name was resolved before the
//! loop started (`resolve`).
//! Must not: block the loop (connect, resolve, read or write), or let Redis being down slow
//! local delivery.
//!
//! One link per process (on a Redis Cluster, one per master: `Backplane::shards`, each with its
//! own token, topics routed by slot, the map from `CLUSTER SLOTS` kept current by
//! `redis_remap`), owned by worker 0 (docs/architecture.md, "The Redis link"). Every
//! worker's hub records when a topic gains its first subscriber or loses its last; worker 0
//! gives those changes to the link, the other workers mail them to worker 0 over the bus.
//! A client's publish leaves for Redis from worker 0: its own, and those the bus brings it
//! from the other workers (`Mail::Sequence`). Redis sequences it (`backplane/sequence.lua`)
//! and publishes it back with its position; worker 0 delivers it then, with that number, and
//! the bus carries it to the others — so every node delivers a topic in Redis's order, its
//! own publishes included. Worker 0 checks that each topic's positions follow on
//! (`Backplane::order`): a new epoch, or positions skipped, drop the topic's history so a
//! resume across is told of the gap. A message from another kind of publisher (no position)
//! is numbered on this node like a local one.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};

use mio::Interest;

use mio::Token;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::sync::Arc;

use super::timers::REDIS_TIMER;
use super::token::{self, REDIS_LINKS};
use super::workers::Mail;
use super::{Net, Reactor, Ready};
use crate::backplane::envelope::Position;
use crate::backplane::slots::SlotMap;
use crate::backplane::LogEntry;
use crate::backplane::{Action, Event, Link, LinkState, Stats};
use crate::config::Config;
use crate::conn::ConnId;
use crate::timer::Tick;
use crate::tls::ClientStream;
use std::collections::HashMap;

/// This worker's part in the backplane; `S` is the `Net`'s stream type.
#[derive(Debug, Default)]
pub(super) enum Role<S> {
    /// No `--redis`.
    #[default]
    Off,
    /// Worker 0: owns the link.
    Owner(Box<Backplane<S>>),
    /// Another worker: mails its hub's interest changes to worker 0.
    Forward,
}

/// The links (one, or one per cluster master) and what worker 0 keeps about topics' order.
#[derive(Debug)]
pub(super) struct Backplane<S> {
    /// Link `i` has token `token::redis(i)`; None: a place freed when its master left the
    /// cluster's map (a later master may take it).
    shards: Vec<Option<Shard<S>>>,
    /// Redis Cluster (`--redis-cluster`): the slot map, once a node answered `CLUSTER
    /// SLOTS`; the seed nodes; when the map was last asked for and whether it is stale.
    cluster: Option<Cluster>,
    /// What a new link is made with: this node's id, the largest message, TLS (`rediss://`:
    /// every node's certificate verified for the URL's host).
    node: u64,
    max_message: usize,
    tls: Option<Tls>,
    /// Per topic, the epoch and position of the last sequenced message delivered. Bounded:
    /// cleared past `ORDER_CAP` topics (a topic then starts over, checked against its hub).
    order: HashMap<Box<str>, Position>,
    /// Topics whose missed positions are being read from their log (`Link::read_log`), with
    /// the messages that arrived meanwhile, held back so the order is kept.
    filling: HashMap<Box<str>, Vec<Held>>,
    /// Topics whose log is being read back for resumes (`Reactor::read_back`), with what the
    /// reads brought so far: one read at a time per topic, however many clients resume.
    backfills: HashMap<Box<str>, Vec<LogEntry>>,
}

/// How links speak TLS: the client configuration and the name certificates must carry.
#[derive(Debug, Clone)]
struct Tls {
    cfg: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// Where the backplane's Redis is, as `workers::run` found it before any loop ran.
#[derive(Debug, Clone)]
pub struct RedisPlan {
    /// The one Redis, or a cluster's seed nodes, resolved.
    pub seeds: Vec<SocketAddr>,
    /// `rediss://`: the client configuration (its CAs read from disk).
    pub tls: Option<Arc<ClientConfig>>,
}

/// One Redis connection: the sans-IO link and its socket.
#[derive(Debug)]
struct Shard<S> {
    link: Link,
    addr: SocketAddr,
    token: Token,
    sock: Option<ClientStream<S>>,
    /// The socket's connect completed (WRITABLE seen, no error).
    connected: bool,
    /// "Link up" was logged for the current connection.
    up_logged: bool,
    /// A warning was logged for the current outage (start-up included): one per outage, not
    /// one per failed attempt.
    down_logged: bool,
}

/// What the backplane knows of a Redis Cluster.
#[derive(Debug)]
struct Cluster {
    map: Option<SlotMap>,
    seeds: Vec<SocketAddr>,
    /// A `CLUSTER SLOTS` is out (since then), or the last one was asked at.
    asked: Option<Tick>,
    last_read: Tick,
    stale: bool,
}

/// Least time between two `CLUSTER SLOTS`, and the longest a map is trusted without asking
/// (a master added, a failover no link noticed).
const MAP_EVERY: Tick = 1000;
const MAP_AT_LEAST_EVERY: Tick = 30_000;

/// Messages held back per topic while its missed positions are read, at least.
const MIN_HELD: usize = 64;

/// `Link::read_log` tags: positions missed (delivered in order), or history for resumes.
const FILL: u32 = 0;
const BACKFILL: u32 = 1;

/// A sequenced message held back while the positions before it are read from the log:
/// (position, text, payload).
type Held = (Position, bool, Vec<u8>);

/// Topics whose order `Backplane::order` follows before it starts over.
const ORDER_CAP: usize = 65_536;

/// What to do with a sequenced message, given what was delivered before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The next one: deliver.
    Deliver,
    /// Delivered already (or older): drop.
    Old,
    /// Positions were skipped or the epoch changed: deliver after dropping the history.
    Restart,
}

/// Does `at` follow `last` (the topic's last delivered position; None: not followed here,
/// `hub_last` is what the hub numbered last)?
fn next(last: Option<Position>, hub_last: u64, at: Position) -> Next {
    match last {
        Some(l) if l.epoch == at.epoch && at.seq <= l.seq => Next::Old,
        Some(l) if l.epoch == at.epoch && at.seq == l.seq + 1 => Next::Deliver,
        Some(_) => Next::Restart,
        None if at.seq == hub_last + 1 => Next::Deliver,
        None if at.seq <= hub_last && at.seq > at.epoch => Next::Old,
        None => Next::Restart,
    }
}

/// Resolve `--redis`'s hosts to addresses and read the CAs for `rediss://`, once, before any
/// loop runs (`getaddrinfo` and file reads block). None without `--redis`.
pub fn resolve(cfg: &Config) -> io::Result<Option<RedisPlan>> {
    let Some(url) = cfg.redis.url.as_ref() else {
        return Ok(None);
    };
    let mut seeds = Vec::new();
    let hosts = std::iter::once((url.host.as_str(), url.port))
        .chain(url.more.iter().map(|(h, p)| (h.as_str(), *p)));
    for (host, port) in hosts {
        let found = (host, port).to_socket_addrs();
        let found =
            found.map_err(|e| io::Error::new(e.kind(), format!("redis {host}:{port}: {e}")))?;
        let addr = found.into_iter().next().ok_or_else(|| {
            io::Error::new(
                ErrorKind::NotFound,
                format!("redis {host}:{port}: no address"),
            )
        })?;
        seeds.push(addr);
    }
    let tls = match url.tls {
        true => Some(
            crate::tls::client_config(cfg.redis.ca.as_deref())
                .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("redis TLS: {e}")))?,
        ),
        false => None,
    };
    if url.tls {
        ServerName::try_from(url.host.clone()).map_err(|e| {
            io::Error::new(ErrorKind::InvalidInput, format!("redis {}: {e}", url.host))
        })?;
    }
    Ok(Some(RedisPlan { seeds, tls }))
}

/// A random id for this process's publishes (std's `RandomState` is seeded from the OS),
/// mixed with the pid and the time so two processes cannot share it by accident.
fn node_id() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(super::clock::unix_nanos());
    h.finish()
}

impl<N: Net> Reactor<N> {
    /// Take part in the Redis backplane: `owner` is Redis's address (or a cluster's seed
    /// nodes) on the worker that owns the links (worker 0), None on the others. Call once,
    /// before `run`.
    pub fn join_redis(&mut self, owner: Option<RedisPlan>) {
        self.hub.track_interest();
        self.redis = match owner {
            None => Role::Forward,
            Some(RedisPlan { seeds, tls }) => {
                let host = self.cfg.redis.url.as_ref().map(|u| u.host.clone());
                let tls = tls.zip(host.and_then(|h| ServerName::try_from(h).ok()));
                let tls = tls.map(|(cfg, name)| Tls { cfg, name });
                // The largest message this node would publish: a peer configured alike
                // sends nothing larger.
                let max_message = usize::try_from(self.cfg.ws.max_message_size)
                    .unwrap_or(usize::MAX)
                    .max(self.cfg.http.max_body)
                    .saturating_add(self.cfg.pubsub.max_topic_len);
                let node = node_id();
                let url = self.cfg.redis.url.as_ref();
                log::info!(
                    "redis backplane: {}{} ({seeds:?}), node {node:016x}, channel prefix {:?}",
                    if self.cfg.redis.cluster {
                        "cluster "
                    } else {
                        ""
                    },
                    url.map(|u| u.redacted()).unwrap_or_default(),
                    self.cfg.redis.prefix
                );
                let mut bp = Backplane {
                    shards: Vec::new(),
                    cluster: None,
                    node,
                    max_message,
                    tls,
                    order: HashMap::new(),
                    filling: HashMap::new(),
                    backfills: HashMap::new(),
                };
                // A cluster starts with a link to each seed node (up to the cap), the first
                // holding every topic until the map says where each goes.
                let take = if self.cfg.redis.cluster {
                    REDIS_LINKS
                } else {
                    1
                };
                for &addr in seeds.iter().take(take) {
                    bp.add_shard(&self.cfg, addr, self.now);
                }
                if self.cfg.redis.cluster {
                    bp.cluster = Some(Cluster {
                        map: None,
                        seeds,
                        asked: None,
                        last_read: self.now,
                        stale: true,
                    });
                }
                Role::Owner(Box::new(bp))
            }
        };
        // Connect now: the loop's first `poll` may otherwise sleep until some other event.
        self.redis_drive();
    }

    /// Once per loop iteration, before the flush: hand the hub's interest changes to the
    /// link (or to worker 0), then let the link act on time and write what it queued.
    pub(super) fn redis_sync(&mut self) {
        match &mut self.redis {
            Role::Off => {}
            Role::Forward => {
                let Some(end) = self.bus.as_ref() else { return };
                for (topic, on) in self.hub.take_interest() {
                    let topic = topic.into();
                    end.bus.tell(0, Mail::Interest { topic, on });
                }
            }
            Role::Owner(bp) => {
                for (topic, on) in self.hub.take_interest() {
                    bp.interest(&topic, on, self.now);
                }
                self.redis_drive();
            }
        }
    }

    /// Do client publishes go through Redis to be sequenced (`--redis`)?
    pub(super) fn sequenced(&self) -> bool {
        !matches!(self.redis, Role::Off)
    }

    /// Is this the worker that owns the link (worker 0 with `--redis`)?
    pub(super) fn owns_link(&self) -> bool {
        matches!(self.redis, Role::Owner(_))
    }

    /// Worker 0: another worker's hub gained (`on`) or lost a topic.
    pub(super) fn redis_interest(&mut self, topic: &str, on: bool) {
        if let Role::Owner(bp) = &mut self.redis {
            bp.interest(topic, on, self.now);
        }
    }

    /// Send a publish made on this node to Redis to be sequenced (worker 0 only; elsewhere
    /// the bus brings it to worker 0, which calls this).
    pub(super) fn redis_publish(
        &mut self,
        topic: &str,
        text: bool,
        payload: &[u8],
        ack: Option<ConnId>,
    ) {
        if let Role::Owner(bp) = &mut self.redis {
            let i = bp.route(topic);
            if let Some(sh) = bp.shards[i].as_mut() {
                sh.link.publish(topic, text, payload, ack.map(|c| c.0));
            }
        }
    }

    /// The backplane, out of `self` while it is worked on (put back as `Role::Owner`); None
    /// (and `self.redis` untouched) on a worker that does not own it.
    fn take_backplane(&mut self) -> Option<Box<Backplane<N::Stream>>> {
        if !self.owns_link() {
            return None;
        }
        match std::mem::take(&mut self.redis) {
            Role::Owner(bp) => Some(bp),
            _ => unreachable!("checked by owns_link"),
        }
    }

    /// Readiness on Redis link `i`'s socket: finish a connect, read and deliver what arrived.
    pub(super) fn redis_event(&mut self, i: usize, ev: &Ready) {
        let Some(mut bp) = self.take_backplane() else {
            return;
        };
        let now = self.now;
        if let Some(sh) = bp.shards.get_mut(i).and_then(Option::as_mut) {
            if !sh.connected && (ev.is_writable() || ev.is_error()) {
                sh.finish_connect(&mut self.net, now);
            }
            if sh.connected && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                self.redis_read(&mut bp, i);
            }
        }
        self.redis = Role::Owner(bp);
    }

    /// Read link `i` until `WouldBlock`, decoding after every read so buffered bytes stay
    /// small; each message from another node is published here like a local one, but not
    /// to Redis.
    fn redis_read(&mut self, bp: &mut Backplane<N::Stream>, i: usize) {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let Some(sh) = bp.shards[i].as_mut() else {
                return;
            };
            let Some(sock) = sh.sock.as_mut() else { return };
            match sock.read(&mut buf) {
                Ok(0) => return sh.lost(&mut self.net, self.now, "Redis closed the connection"),
                Ok(n) => sh.link.feed(&buf[..n], self.now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return sh.lost(&mut self.net, self.now, &format!("read: {e}")),
            }
            loop {
                let Some(sh) = bp.shards[i].as_mut() else {
                    return;
                };
                match sh.link.poll_event(self.now) {
                    Ok(Some(Event::Message {
                        topic,
                        position: Some(at),
                        text,
                        payload,
                    })) => {
                        if let Some(held) = bp.filling.get_mut(topic) {
                            held.push((at, text, payload.to_vec()));
                            // Bounded: a read Redis is slow to answer holds back at most a
                            // log's worth; past that, what is held goes out after the jump
                            // (history dropped, resumes told of the gap), the read ignored.
                            if held.len() > self.cfg.pubsub.history_len.max(MIN_HELD) {
                                let topic = topic.to_string();
                                self.log_read(bp, &topic, Vec::new());
                            }
                            continue;
                        }
                        let Some(from) = self.missed_from(&bp.order, topic, at) else {
                            self.deliver_in_order(&mut bp.order, topic, at, text, payload);
                            continue;
                        };
                        // Positions missed: read them from the log, holding this one back.
                        let (topic, payload) = (topic.to_string(), payload.to_vec());
                        if bp.read_log(&topic, from, at.seq - 1, FILL) {
                            log::debug!("redis: {topic:?}: reading {from}.. from its log");
                            bp.filling.insert(topic.into(), vec![(at, text, payload)]);
                        } else {
                            self.deliver_in_order(&mut bp.order, &topic, at, text, &payload);
                        }
                    }
                    Ok(Some(Event::Log {
                        topic,
                        tag: FILL,
                        entries,
                    })) => self.log_read(bp, &topic, entries),
                    Ok(Some(Event::Log { topic, entries, .. })) => {
                        self.backfill_read(bp, &topic, entries, false)
                    }
                    Ok(Some(Event::Message {
                        topic,
                        position: None,
                        text,
                        payload,
                    })) => {
                        // Another kind of publisher: numbered here. Refused only when this
                        // worker's hub is full (logged and counted).
                        self.publish_local(topic, text, payload);
                    }
                    Ok(None) => break,
                    Err(e) => return sh.close(&mut self.net, &e.to_string()),
                }
            }
        }
    }

    /// Positions before `at` that this node missed and the topic's log may still hold: from
    /// where to read (within `--history-len` of `at`), or None when nothing was missed or it
    /// cannot be shown to connect (another epoch, a topic not followed here).
    fn missed_from(
        &self,
        order: &HashMap<Box<str>, Position>,
        topic: &str,
        at: Position,
    ) -> Option<u64> {
        let last = match order.get(topic) {
            Some(l) if l.epoch == at.epoch => l.seq,
            Some(_) => return None,
            // Not followed since the link started: what the hub numbered last, if it is of
            // this epoch (a node that followed the topic before, then let it go).
            None => Some(self.hub.last_seq(topic)).filter(|&s| s > at.epoch)?,
        };
        let keep = self.cfg.pubsub.history_len as u64;
        (at.seq > last + 1 && at.seq - 1 - last <= keep).then_some(last + 1)
    }

    /// Deliver a sequenced message if it comes next for its topic (`next`): drop a repeat;
    /// after a jump or a new epoch, drop the topic's history first.
    fn deliver_in_order(
        &mut self,
        order: &mut HashMap<Box<str>, Position>,
        topic: &str,
        at: Position,
        text: bool,
        payload: &[u8],
    ) {
        let last = order.get(topic).copied();
        let step = next(last, self.hub.last_seq(topic), at);
        if step == Next::Old {
            return;
        }
        if step == Next::Restart && last.is_some() {
            log::info!(
                "redis: topic {topic:?} goes on at {} (epoch {}) after {last:?}: its history \
                 here is dropped",
                at.seq,
                at.epoch,
            );
        }
        if order.len() >= ORDER_CAP && last.is_none() {
            order.clear();
        }
        order.insert(topic.into(), at);
        let restart = step == Next::Restart;
        self.publish_sequenced(topic, at.seq, text, payload, restart, last.map(|l| l.seq));
    }

    /// What a topic's log held of the positions this node missed: deliver them, then the
    /// messages held back meanwhile, in order. A full read that stops short is followed by
    /// the next.
    fn log_read(&mut self, bp: &mut Backplane<N::Stream>, topic: &str, entries: Vec<LogEntry>) {
        let Some(held) = bp.filling.remove(topic) else {
            return;
        };
        let epoch = held[0].0.epoch;
        let full = entries.len() == bp.range_count();
        for (seq, text, payload) in entries {
            let at = Position { seq, epoch };
            self.deliver_in_order(&mut bp.order, topic, at, text, &payload);
        }
        let first = held[0].0;
        let last = bp.order.get(topic).copied();
        if let Some(l) = last.filter(|l| full && l.epoch == epoch && l.seq + 1 < first.seq) {
            if bp.read_log(topic, l.seq + 1, first.seq - 1, FILL) {
                bp.filling.insert(topic.into(), held);
                return;
            }
        }
        for (at, text, payload) in held {
            self.deliver_in_order(&mut bp.order, topic, at, text, &payload);
        }
    }

    /// Worker 0: read back what `topic`'s log holds after `after`, for the resumes waiting
    /// on it (on any worker); one read at a time per topic. Without a link up, the resumes
    /// are answered from what this node kept.
    pub(super) fn read_back(&mut self, topic: &str, after: u64) {
        let Role::Owner(bp) = &mut self.redis else {
            return;
        };
        if bp.backfills.contains_key(topic) {
            return;
        }
        if bp.read_log(topic, after + 1, u64::MAX, BACKFILL) {
            bp.backfills.insert(topic.into(), Vec::new());
        } else {
            self.history_read(topic, Vec::new());
        }
    }

    /// A read of a log for resumes came back (`lost`: or was lost with the connection):
    /// read on while full reads stop short of `--history-len`, then hand it all over.
    fn backfill_read(
        &mut self,
        bp: &mut Backplane<N::Stream>,
        topic: &str,
        entries: Vec<LogEntry>,
        lost: bool,
    ) {
        let full = entries.len() == bp.range_count();
        let Some(got) = bp.backfills.get_mut(topic) else {
            return;
        };
        got.extend(entries);
        let more = full && !lost && got.len() < self.cfg.pubsub.history_len;
        if let Some(&(last, ..)) = got.last().filter(|_| more) {
            if bp.read_log(topic, last + 1, u64::MAX, BACKFILL) {
                return;
            }
        }
        let got = bp.backfills.remove(topic).unwrap_or_default();
        self.history_read(topic, got);
    }

    /// Act on the links' time-driven decisions, write what they queued, store their
    /// numbers, keep a cluster's map current, and keep the wheel entry at or before the
    /// next deadline.
    fn redis_drive(&mut self) {
        let Some(mut bp) = self.take_backplane() else {
            return;
        };
        let now = self.now;
        let mut total = Stats::default();
        let mut worst = LinkState::Up;
        let mut want: Option<Tick> = None;
        let mut acks: Vec<(u64, Option<u64>)> = Vec::new();
        let mut lost: Vec<(Box<str>, u32)> = Vec::new();
        let mut redirects = Vec::new();
        let mut stale = false;
        let mut slots = None;
        for sh in bp.shards.iter_mut().flatten() {
            while let Some(action) = sh.link.poll_action(now) {
                match action {
                    Action::Connect => sh.connect(&mut self.net, bp.tls.as_ref(), now),
                    Action::Disconnect(why) => sh.close(&mut self.net, why),
                }
            }
            sh.flush(&mut self.net, now);
            let state = sh.link.state();
            if state == LinkState::Up && !sh.up_logged {
                (sh.up_logged, sh.down_logged) = (true, false);
                log::info!(
                    "redis: link to {} up, {} topic(s) subscribed",
                    sh.addr,
                    sh.link.topic_count()
                );
            }
            worst = match (worst, state) {
                (_, LinkState::Down) | (LinkState::Down, _) => LinkState::Down,
                (_, LinkState::Connecting) | (LinkState::Connecting, _) => LinkState::Connecting,
                _ => LinkState::Up,
            };
            // A master unreachable: its replica may be taking over; the map says.
            stale |= state == LinkState::Down || sh.link.take_stale();
            let st = sh.link.stats();
            total.reconnects += st.reconnects;
            total.dropped += st.dropped;
            total.published += st.published;
            total.received += st.received;
            total.channels += st.channels;
            want = match (want, sh.link.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            acks.extend(sh.link.take_acks());
            lost.extend(sh.link.take_lost_reads());
            redirects.extend(sh.link.take_redirects());
            slots = sh.link.take_slots().or(slots);
        }
        if let Some(c) = bp.cluster.as_mut() {
            c.stale |= stale;
            if slots.is_some() {
                c.asked = None;
            }
            if c.map.is_none() && worst == LinkState::Up {
                worst = LinkState::Connecting;
            }
            let due = c.stale || now >= c.last_read + MAP_AT_LEAST_EVERY;
            if due && c.asked.is_none_or(|at| now >= at + MAP_EVERY) {
                let asked = bp.shards.iter_mut().flatten().any(|sh| sh.link.ask_slots());
                let c = bp.cluster.as_mut().expect("checked");
                if asked {
                    (c.asked, c.stale) = (Some(now), false);
                } else if bp
                    .shards
                    .iter()
                    .flatten()
                    .all(|sh| sh.link.state() == LinkState::Down)
                {
                    // No node of the map answers: try the seeds again.
                    let seeds = c.seeds.clone();
                    c.asked = Some(now);
                    for addr in seeds {
                        bp.add_shard(&self.cfg, addr, now);
                    }
                }
            }
            want = Some(want.map_or(now + MAP_EVERY, |w| w.min(now + MAP_EVERY)));
        }
        if let Some(ranges) = slots {
            let map = SlotMap::new(&ranges);
            if map.masters.is_empty() {
                log::warn!("redis: the cluster serves no slots yet");
            } else {
                self.redis_remap(&mut bp, map, &mut acks, &mut lost);
            }
        }
        // Publishes another node serves: sent on to it (its link), or refused.
        for r in redirects {
            let i = bp.shard_at(r.to.addr);
            if let (Some(c), false) = (bp.cluster.as_mut(), r.to.ask) {
                if let Some(m) = c.map.as_mut() {
                    m.moved(r.to.slot, r.to.addr);
                }
            }
            match i.and_then(|i| bp.shards[i].as_mut()) {
                Some(sh) => {
                    sh.link.resend(r);
                    acks.extend(sh.link.take_acks());
                    sh.flush(&mut self.net, now);
                }
                None => acks.extend(r.waiter().map(|w| (w, None))),
            }
        }
        let m = &self.metrics.all().redis;
        m.state.set(match worst {
            LinkState::Down => 1,
            LinkState::Connecting => 2,
            LinkState::Up => 3,
        });
        m.reconnects.set(total.reconnects as i64);
        m.dropped.set(total.dropped as i64);
        m.published.set(total.published as i64);
        m.received.set(total.received as i64);
        m.channels.set(total.channels);
        let armed = self.wheel.deadline(REDIS_TIMER);
        if let Some(d) = want.filter(|&d| armed.is_none_or(|at| at > d)) {
            self.wheel.insert(REDIS_TIMER, d);
        }
        // Redis's answers to held HTTP publishes (or their loss with the connection).
        for (waiter, position) in acks {
            self.publish_answered(ConnId(waiter), position);
        }
        // Reads of logs lost with the connection: what was held back goes out now, after a
        // jump (the history before it is dropped).
        for (topic, tag) in lost {
            match tag {
                FILL => self.log_read(&mut bp, &topic, Vec::new()),
                _ => self.backfill_read(&mut bp, &topic, Vec::new(), true),
            }
        }
        self.redis = Role::Owner(bp);
    }

    /// A cluster's new map: a link for each master not yet linked, links to nodes that are
    /// no longer masters closed (what they owed their publishers and readers settled), and
    /// each topic moved to the link of the master that serves its slot.
    fn redis_remap(
        &mut self,
        bp: &mut Backplane<N::Stream>,
        map: SlotMap,
        acks: &mut Vec<(u64, Option<u64>)>,
        lost: &mut Vec<(Box<str>, u32)>,
    ) {
        let now = self.now;
        if !map.covers_all() {
            log::warn!("redis: the cluster map leaves slots without a master");
        }
        for &addr in &map.masters {
            if bp.shard_at(addr).is_none() {
                bp.add_shard(&self.cfg, addr, now);
            }
        }
        let c = bp.cluster.as_mut().expect("a map is a cluster's");
        c.last_read = now;
        c.map = Some(map);
        let mut moving = Vec::new();
        for i in 0..bp.shards.len() {
            let Some(sh) = bp.shards[i].as_mut() else {
                continue;
            };
            let addr = sh.addr;
            let stays = c.map.as_ref().is_some_and(|m| m.masters.contains(&addr));
            if !stays {
                log::info!("redis: {addr} is no longer a master of the cluster");
                let mut sh = bp.shards[i].take().expect("checked");
                sh.link.on_closed(now);
                acks.extend(sh.link.take_acks());
                lost.extend(sh.link.take_lost_reads());
                let topics: Vec<Box<str>> = sh.link.topics().map(Box::from).collect();
                for t in topics {
                    moving.extend(sh.link.release(&t).map(|h| (t, h)));
                }
                sh.close_socket(&mut self.net);
                continue;
            }
            let topics: Vec<Box<str>> = sh.link.topics().map(Box::from).collect();
            for t in topics {
                let slot = sh.link.slot_of(&t);
                let owner = c.map.as_ref().and_then(|m| m.master(slot));
                if owner.is_some_and(|o| o != addr) {
                    moving.extend(sh.link.release(&t).map(|h| (t, h)));
                }
            }
        }
        for (t, holders) in moving {
            let i = bp.route(&t);
            if let Some(sh) = bp.shards[i].as_mut() {
                sh.link.adopt(&t, holders);
            }
        }
        for sh in bp.shards.iter_mut().flatten() {
            sh.link.resubscribe();
            sh.flush(&mut self.net, now);
        }
    }
}

impl<S: Read + Write> Backplane<S> {
    /// A link to `addr` at the first free place (none past `REDIS_LINKS`: logged).
    fn add_shard(&mut self, cfg: &Config, addr: SocketAddr, now: Tick) {
        if self.shard_at(addr).is_some() {
            return;
        }
        let i = match self.shards.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.shards.len() < REDIS_LINKS => {
                self.shards.push(None);
                self.shards.len() - 1
            }
            None => {
                log::error!("redis: more than {REDIS_LINKS} masters; {addr} is not linked");
                return;
            }
        };
        let link =
            Link::new(&cfg.redis, self.node, self.max_message, now).keeping(cfg.pubsub.history_len);
        self.shards[i] = Some(Shard {
            link,
            addr,
            token: token::redis(i),
            sock: None,
            connected: false,
            up_logged: false,
            down_logged: false,
        });
    }

    /// The link to `addr`, if there is one.
    fn shard_at(&self, addr: SocketAddr) -> Option<usize> {
        self.shards
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.addr == addr))
    }

    /// The link a topic's commands go on: the one Redis, or the master serving its slot
    /// (before the map is known, or for a slot nobody serves, the first link: a `MOVED`
    /// then says where).
    fn route(&self, topic: &str) -> usize {
        let first = || self.shards.iter().position(Option::is_some).unwrap_or(0);
        let Some(map) = self.cluster.as_ref().and_then(|c| c.map.as_ref()) else {
            return first();
        };
        let Some(sh) = self.shards.iter().flatten().next() else {
            return 0;
        };
        map.master(sh.link.slot_of(topic))
            .and_then(|a| self.shard_at(a))
            .unwrap_or_else(first)
    }

    /// The link holding `topic`'s subscription, if one does.
    fn holder(&self, topic: &str) -> Option<usize> {
        self.shards
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.link.holds(topic)))
    }

    /// Most entries one read of a log brings (the same on every link).
    fn range_count(&self) -> usize {
        self.shards
            .iter()
            .flatten()
            .next()
            .map_or(1, |s| s.link.range_count())
    }

    /// `Link::read_log` on the link serving `topic`: the one its messages arrive on, if one
    /// holds its subscription (while a failover settles, the map may already name a master
    /// this node has no link to yet, and `route` would fall back to another shard's link,
    /// where the read cannot succeed), else the map's.
    fn read_log(&mut self, topic: &str, from: u64, to: u64, tag: u32) -> bool {
        let i = self.holder(topic).unwrap_or_else(|| self.route(topic));
        self.shards[i]
            .as_mut()
            .is_some_and(|sh| sh.link.read_log(topic, from, to, tag))
    }

    fn interest(&mut self, topic: &str, on: bool, now: Tick) {
        if on {
            let i = self.holder(topic).unwrap_or_else(|| self.route(topic));
            if let Some(sh) = self.shards[i].as_mut() {
                sh.link.want(topic);
            }
        } else if let Some(i) = self.holder(topic) {
            if let Some(sh) = self.shards[i].as_mut() {
                sh.link.unwant(topic, now);
            }
        }
    }
}

impl<S: Read + Write> Shard<S> {
    /// Start a non-blocking connect (and the TLS session, whose handshake runs as bytes
    /// move); it completes (or fails) on a later WRITABLE.
    fn connect<N: Net<Stream = S>>(&mut self, net: &mut N, tls: Option<&Tls>, now: Tick) {
        self.close_socket(net);
        let interest = Interest::READABLE | Interest::WRITABLE;
        let sock = net
            .connect(self.addr, self.token, interest)
            .and_then(|sock| match tls {
                None => Ok(ClientStream::plain(sock)),
                Some(t) => ClientStream::tls(sock, &t.cfg, t.name.clone()),
            });
        match sock {
            Ok(sock) => self.sock = Some(sock),
            Err(e) => self.lost(net, now, &format!("connect: {e}")),
        }
    }

    /// WRITABLE (or an error) on a connecting socket: connected, or failed.
    fn finish_connect<N: Net<Stream = S>>(&mut self, net: &mut N, now: Tick) {
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        match net.connected(&mut sock.sock) {
            Ok(true) => self.connected = true,
            // Not connected yet (a spurious wake-up): wait for the next event.
            Ok(false) => {}
            Err(e) => self.lost(net, now, &format!("connect: {e}")),
        }
    }

    /// Write what the link queued, until `WouldBlock` (WRITABLE is always registered, so the
    /// next edge resumes it).
    fn flush<N: Net<Stream = S>>(&mut self, net: &mut N, now: Tick) {
        self.link.seal();
        while self.connected && !self.link.tx().is_empty() {
            let Some(sock) = self.sock.as_mut() else {
                return;
            };
            match sock.write(self.link.tx()) {
                Ok(n) => self.link.consume_tx(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.lost(net, now, &format!("write: {e}")),
            }
        }
        // TLS records the session still holds (a handshake message, the tail of a write).
        if let Some(sock) = self.sock.as_mut().filter(|_| self.connected) {
            if let Err(e) = sock.flush() {
                self.lost(net, now, &format!("write: {e}"));
            }
        }
    }

    /// The socket failed: tell the link (which schedules the retry) and close it.
    fn lost<N: Net<Stream = S>>(&mut self, net: &mut N, now: Tick, why: &str) {
        self.link.on_closed(now);
        self.close(net, why);
    }

    /// Close the socket because the link gave up on it.
    fn close<N: Net<Stream = S>>(&mut self, net: &mut N, why: &str) {
        self.up_logged = false;
        if !std::mem::replace(&mut self.down_logged, true) {
            log::warn!(
                "redis: {}: {why}; link down, cross-node publishes are dropped until it is back",
                self.addr
            );
        } else {
            log::debug!("redis: {}: {why}", self.addr);
        }
        self.close_socket(net);
    }

    fn close_socket<N: Net<Stream = S>>(&mut self, net: &mut N) {
        if let Some(mut sock) = self.sock.take() {
            net.deregister(&mut sock.sock);
            // Dropping the socket closes it.
        }
        self.connected = false;
    }
}

#[cfg(test)]
impl<N: Net> Reactor<N> {
    /// The id this node's publishes carry, while it owns the link (tests).
    pub(super) fn redis_node(&self) -> Option<u64> {
        match &self.redis {
            Role::Owner(bp) => Some(bp.node),
            _ => None,
        }
    }
}
