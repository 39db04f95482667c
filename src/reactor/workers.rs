//! Owns "one reactor per core": N threads, each a complete single-threaded reactor with its
//! own SO_REUSEPORT listener (the kernel spreads connections), and the `Bus` that carries a
//! publish from the worker where it happened to every other worker — the payload crosses as
//! an `Arc` and each worker encodes it once for all its subscribers. Sequence numbers come
//! from one process-wide sequencer so every worker numbers a topic's messages alike; it
//! remembers a bounded number of topic names (`SeqBook`), so inventing names grows nothing.
//! Must not: share a connection or a hub between threads; only the bus and the sequencer cross.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use mio::{Interest, Poll, Waker};

use super::{listener, token, MioNet, Reactor};
use crate::app::Router;
use crate::backplane::LogEntry;
use crate::config::Config;
use crate::conn::ConnId;
use crate::metrics::Metrics;
use crate::pubsub::SeqBook;

/// A publish travelling between workers.
#[derive(Debug)]
pub struct Envelope {
    pub topic: Arc<str>,
    pub seq: u64,
    pub text: bool,
    pub payload: Arc<[u8]>,
    /// For worker 0, which sends it to Redis: the HTTP publisher waiting for Redis's answer
    /// (`Reactor::publish_answered`).
    pub ack: Option<ConnId>,
}

/// What travels between workers.
#[derive(Debug)]
pub enum Mail {
    Publish(Envelope),
    /// To the worker that owns the Redis link (worker 0): the sender's hub gained its first
    /// subscriber of `topic` (`on`) or lost its last (`reactor/redis.rs`).
    Interest {
        topic: Arc<str>,
        on: bool,
    },
    /// From worker 0 to the worker of `conn`: Redis took its publish at `position`, or it is
    /// lost (None).
    Acked {
        conn: ConnId,
        position: Option<u64>,
    },
    /// To worker 0, with `--redis`: a publish made on this worker, to be sequenced by Redis
    /// (it is delivered everywhere when Redis publishes it back).
    Sequence(Envelope),
    /// From worker 0: the topic's history here cannot be shown to continue into what comes
    /// next (a new epoch, messages missed): drop it, so a resume across is told of the gap;
    /// `gap`: live subscribers followed the topic to position `.0` and it goes on at `.1`
    /// (they are told too: `Reactor::deliver_gap`).
    Forget {
        topic: Arc<str>,
        gap: Option<(u64, u64)>,
    },
    /// To worker 0: a resume on this worker needs `topic`'s log after `after` read back.
    ReadBack {
        topic: Arc<str>,
        after: u64,
    },
    /// From worker 0: what `topic`'s log held (position, text, payload), for the history
    /// and the resumes waiting on it.
    History {
        topic: Arc<str>,
        entries: Arc<[LogEntry]>,
    },
}

/// What all workers share: a sender and a waker per worker, and the sequencer.
pub struct Bus {
    peers: Vec<(Mutex<Sender<Mail>>, Waker)>,
    seqs: Mutex<SeqBook>,
}

/// One worker's end of the bus.
pub struct BusEnd {
    pub me: usize,
    pub bus: Arc<Bus>,
    pub inbox: Receiver<Mail>,
}

impl Bus {
    /// The next sequence number of `topic`, process-wide (never below one it returned).
    pub fn next_seq(&self, topic: &str) -> u64 {
        let mut seqs = self.seqs.lock().unwrap_or_else(|p| p.into_inner());
        seqs.next(topic)
    }

    /// Hand a publish to every worker but `from`.
    pub fn broadcast(
        &self,
        from: usize,
        topic: &str,
        seq: u64,
        text: bool,
        payload: &[u8],
        ack: Option<ConnId>,
    ) {
        let (topic, payload): (Arc<str>, Arc<[u8]>) = (topic.into(), payload.into());
        for (i, (tx, waker)) in self.peers.iter().enumerate() {
            if i == from {
                continue;
            }
            let env = Envelope {
                topic: topic.clone(),
                seq,
                text,
                payload: payload.clone(),
                ack: ack.filter(|_| i == 0),
            };
            let sent = tx
                .lock()
                .map(|tx| tx.send(Mail::Publish(env)).is_ok())
                .unwrap_or(false);
            if sent {
                let _ = waker.wake();
            }
        }
    }

    /// Hand `mail` to worker `to` alone.
    /// How many workers share the bus.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn tell(&self, to: usize, mail: Mail) {
        let Some((tx, waker)) = self.peers.get(to) else {
            return;
        };
        if tx.lock().map(|tx| tx.send(mail).is_ok()).unwrap_or(false) {
            let _ = waker.wake();
        }
    }
}

/// Run `n` reactors on `cfg.listen`; `make_router` builds each worker's handlers (handlers
/// are per worker: no locks on the hot path). `on_bound` learns the address once all are
/// listening. Returns when every worker has stopped.
pub fn run(
    cfg: Config,
    n: usize,
    make_router: impl Fn() -> Router + Send + Sync + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> io::Result<()> {
    let n = n.max(1);
    let mut shared = super::Shared::new(&cfg)?;
    // Alone (no Redis to number topics), this process's numbers start at its start time in
    // microseconds: above every number an earlier run gave, so a client resuming across a
    // restart is told of the gap instead of being handed a reused number (docs/protocol.md).
    if cfg.redis.url.is_none() {
        shared.epoch = super::clock::unix_nanos() / 1000;
    }
    if shared.auth.is_open() && !cfg.listen.ip().is_loopback() {
        log::warn!(
            "{}: reachable beyond this machine with no access control: anyone may subscribe \
             and publish to any topic (docs/protocol.md, \"Access tokens\")",
            cfg.listen
        );
    }
    // Resolved once, before any loop runs: name resolution blocks, the loop must not.
    let redis = super::redis::resolve(&cfg)?;
    // Several workers share the port with SO_REUSEPORT: claim it first, so that a port
    // another process listens on fails here ("address in use") instead of being shared.
    let claim = (n > 1).then(|| listener::claim(cfg.listen)).transpose()?;
    let listen = match &claim {
        Some(c) => c.local_addr()?.as_socket().unwrap_or(cfg.listen),
        None => cfg.listen,
    };
    // The first listener fixes the port (cfg.listen may say :0); the others share it.
    let first = listener::bind(listen, n > 1)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..n {
        listeners.push(listener::bind(addr, true)?);
    }
    drop(claim);
    let mut polls = Vec::new();
    let mut peers = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..n {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), token::WAKER)?;
        let (tx, rx) = channel();
        polls.push(poll);
        peers.push((Mutex::new(tx), waker));
        inboxes.push(rx);
    }
    // As many names as all the hubs can hold at once; past that, the floor.
    let bus = Arc::new(Bus {
        peers,
        seqs: Mutex::new(SeqBook::starting_at(
            cfg.pubsub.max_topics.saturating_mul(n),
            shared.epoch,
        )),
    });
    let make_router = Arc::new(make_router);
    // One registry, a slot per worker: any worker can render the sum (metrics/mod.rs).
    let metrics = Arc::new(Metrics::new(n));
    let mut threads = Vec::new();
    // Each worker reports once its signal handler is installed; the server is announced only
    // after all have, so a SIGTERM right after start-up reaches every worker.
    let (ready_tx, ready_rx) = channel::<()>();
    let parts = polls.into_iter().zip(listeners).zip(inboxes).enumerate();
    for (me, ((poll, mut listener), inbox)) in parts {
        poll.registry()
            .register(&mut listener, token::LISTENER, Interest::READABLE)?;
        let (cfg, bus, make_router, shared) = (
            cfg.clone(),
            bus.clone(),
            make_router.clone(),
            shared.clone(),
        );
        let end = (n > 1).then_some(BusEnd { me, bus, inbox });
        let redis = redis.clone();
        let ready = ready_tx.clone();
        let slot = metrics.handle(me);
        let spawned = thread::Builder::new()
            .name(format!("wsloop-{me}"))
            .spawn(move || {
                let net = MioNet::new(poll, listener)?;
                let mut reactor = Reactor::from_parts(cfg, make_router(), net, end, shared, slot);
                // One Redis link per process, on worker 0; the others tell it what they need.
                if let Some(plan) = &redis {
                    reactor.join_redis((me == 0).then(|| plan.clone()));
                }
                reactor.handle_signals()?;
                let _ = ready.send(());
                reactor.run()
            });
        threads.push(spawned?);
    }
    drop(ready_tx);
    // A worker that failed before it was ready drops its sender: stop waiting then.
    let readied = ready_rx.iter().take(n).count();
    if readied == n {
        on_bound(addr);
    }
    let mut result = Ok(());
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(io::Error::other("a worker panicked")),
        }
    }
    result
}
