//! Owns a connection's slot from accept to free: accepting until WouldBlock (and shedding
//! one pending connection when out of descriptors), the process-wide connection limit and the
//! per-address cap, registering the socket and its TLS session, the answer to a connection
//! refused at accept, and the deferred free at the end of the iteration.
//! Must not: read or write a connection's bytes (that is `io.rs`), or free a slot before the
//! iteration's events are all handled.

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use mio::Interest;

use super::clients::Clients;
use super::{listener, token, Entry, Net, Reactor, TLS, VIA_PROXY};
use crate::bits::Bits;
use crate::cidr;
use crate::conn::Close;
use crate::conn::Conn;
use crate::metrics::ConnClass;
use crate::timer::Tick;

/// Open client connections over all workers of the process.
pub(super) static OPEN: AtomicUsize = AtomicUsize::new(0);

/// The body of the 429 that refuses a client over `--max-connections-per-ip`.
pub(super) const TOO_MANY_FROM_YOU: &str = "too many connections from your address";

/// The log line for connections shed when descriptors run out, at most once a second with
/// how many it stands for: a burst sheds hundreds, and a line each would flood the log.
#[derive(Debug, Default)]
pub(super) struct Sheds {
    /// When the last line was written, if ever.
    logged: Option<Tick>,
    /// Shed since then.
    count: u64,
}

impl Sheds {
    fn note(&mut self, now: Tick, shed: bool, e: &std::io::Error) {
        self.count += u64::from(shed);
        if self.logged.is_some_and(|t| now < t + 1000) {
            return;
        }
        log::warn!(
            "accept: {e}; shed {} pending connection(s) since the last such line",
            self.count
        );
        self.logged = Some(now);
        self.count = 0;
    }
}

impl<N: Net> Reactor<N> {
    /// Accept until WouldBlock (edge-triggered: one event may stand for many connections).
    pub(super) fn accept_all(&mut self) {
        loop {
            match self.net.accept() {
                Ok((sock, peer)) => self.admit(sock, peer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if listener::out_of_fds(&e) => {
                    let shed = self.net.shed_one();
                    self.sheds.note(self.now, shed, &e);
                    if !shed {
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

    pub(super) fn admit(&mut self, mut sock: N::Stream, peer: SocketAddr) {
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
        let session = match self.tls.as_ref().map(crate::tls::Session::new) {
            None => None,
            Some(Ok(session)) => Some(Box::new(session)),
            Some(Err(e)) => {
                log::warn!("tls session: {e}");
                undo(&self.clients);
                return;
            }
        };
        // The worker's index in the top byte: a `ConnId` (slot and generation) then names one
        // connection in the whole process, not one per worker (a chat on two workers gave
        // two users the same id).
        self.next_generation = self.next_generation.wrapping_add(1) & 0x00FF_FFFF;
        let generation = self.worker << 24 | self.next_generation;
        let entry = self.conns.vacant_entry();
        let idx = entry.key();
        let token = token::encode(idx, generation);
        if let Err(e) = self.net.register(&mut sock, token, Interest::READABLE) {
            log::warn!("register: {e}");
            undo(&self.clients);
            return;
        }
        entry.insert(Entry {
            sock,
            conn: Conn::new(self.now),
            generation,
            interest: Interest::READABLE,
            flags: Bits::new(
                if via_proxy { VIA_PROXY } else { 0 } | if session.is_some() { TLS } else { 0 },
            ),
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
    pub(super) fn refuse(&mut self, sock: &mut N::Stream, status: u16, body: &str) {
        self.metrics.all().outcomes().answered(status);
        if self.tls.is_none() {
            let mut resp = Vec::with_capacity(160);
            crate::http::upgrade::write_status(status, body, &mut resp);
            let _ = sock.write(&resp);
        }
    }

    /// Deferred close: sockets and slots are released only here, after the whole event
    /// batch, so no event in the batch can refer to a slot reused meanwhile.
    pub(super) fn free_closed(&mut self) {
        for idx in std::mem::take(&mut self.closing) {
            let id = self.conn_id(idx);
            self.hub.unsubscribe_all(id);
            self.held_publishes.remove(&id);
            self.read_only.remove(&id);
            self.token_expiry.remove(&idx);
            self.refreshable.remove(&id);
            self.muted.remove(&id);
            OPEN.fetch_sub(1, Ordering::Relaxed);
            let mut e = self.conns.remove(idx);
            if let Some(id) = e.client {
                self.clients.release(id);
            }
            self.metrics.move_conn(e.class, ConnClass::NONE);
            self.wheel.cancel(self.conn_timer_id(idx));
            self.sessions.remove(&idx);
            self.net.deregister(&mut e.sock);
            // Freed: its buffers and compression state go back (it was told already).
            e.conn.close(&self.cfg, &mut self.res, Close::Abort);
        }
    }
}
