//! Owns moving a connection's bytes: reading into its rx ring and running its state machine,
//! the peer's FIN and I/O errors, and the flush — writing what it queued, FIN once it has
//! said everything, WRITABLE only while bytes remain, resuming reads stopped by
//! backpressure. Every byte goes through `transport::Transport` (plain or TLS alike).
//! Must not: block, parse protocol bytes, or let one connection's error touch another.

use std::collections::HashMap;
use std::io::ErrorKind;

use mio::Interest;

use super::transport::Transport;
use super::{token, Net, Reactor, DIRTY, FREEING, PEER_DONE, READ_BLOCKED, TLS, VIA_PROXY};
use crate::bits::Bits;
use crate::conn::{Close, Received, Sent, State};
use crate::tls::Session;

/// The TLS session of slab slot `idx`, if its flags say it has one, with the scratch it
/// works in.
pub(super) fn session<'a>(
    sessions: &'a mut HashMap<usize, Box<Session>>,
    scratch: &'a mut [u8],
    flags: Bits,
    idx: usize,
) -> Option<(&'a mut Session, &'a mut [u8])> {
    if !flags.has(TLS) {
        return None;
    }
    sessions.get_mut(&idx).map(|s| (&mut **s, scratch))
}

impl<N: Net> Reactor<N> {
    /// Read until WouldBlock, a short read, or backpressure; run the state machine after
    /// every read so the rx ring keeps room.
    pub(super) fn read(&mut self, idx: usize) {
        // Reading again supersedes an earlier stop (set again below if it stops the same way),
        // so `flush` does not schedule one more read for it.
        self.conns[idx].flags.set(READ_BLOCKED, false);
        // Bytes already buffered (pipelined requests behind one just answered) go first.
        let mut wants = self.conns[idx].conn.interest(&self.cfg, &mut self.res);
        if wants.input {
            self.process(idx);
            wants = self.conns[idx].conn.interest(&self.cfg, &mut self.res);
        }
        loop {
            let e = &mut self.conns[idx];
            if !wants.read {
                let state = e.conn.status().state;
                e.flags.set(
                    READ_BLOCKED,
                    !matches!(state, State::Closing | State::Closed),
                );
                break;
            }
            let peer_done = e.flags.has(PEER_DONE);
            let mut t = Transport::new(
                &mut e.sock,
                session(&mut self.sessions, &mut self.tls_scratch, e.flags, idx),
            );
            // A short read drains the socket, unless it is TLS (`short_means_drained`) or
            // the peer's FIN waits behind the data (RDHUP): then read until WouldBlock or EOF.
            let drains = t.short_means_drained() && !peer_done;
            match e.conn.read_from(self.now, &mut self.res, &mut t) {
                Ok(Received::Eof { report }) => {
                    if let Some(code) = report {
                        self.told_closed(idx, code, "");
                    }
                    break;
                }
                Ok(Received::Bytes { n, filled }) => {
                    self.metrics.bytes_in.add(n as u64);
                    self.process(idx);
                    // Asking also gives back the rx buffers the processed input no longer
                    // needs (the large read ring first of all).
                    wants = self.conns[idx].conn.interest(&self.cfg, &mut self.res);
                    // A short read drained the socket: epoll will report the next bytes.
                    if !filled && drains {
                        break;
                    }
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => {
                    log::debug!("read: {err}");
                    self.abort(idx);
                    wants.write = false; // nothing queued can reach the peer now
                    break;
                }
            }
        }
        // The reply to what was just read leaves now, while its bytes are in cache, rather
        // than after every other ready connection has been read: there is one write per
        // connection either way, and holding it back means one tx ring per ready connection
        // in use at once (more CPU per message at many connections: docs/perf-history.md,
        // "recv/send instead of readv/writev") and its peer idle meanwhile. Frames that
        // publishes queue for *other* connections still wait for the end of the iteration
        // (`mark_dirty`), so a subscriber's broadcasts of one iteration leave in one write.
        // An echo from the large read ring leaves here too, so the ring is back for the next
        // connection's read.
        // (The peer's FIN and WouldBlock change nothing queued: `wants` is still true.)
        if wants.write && !self.conns[idx].flags.has(FREEING) {
            self.flush(idx);
            return;
        }
        self.mark_dirty(idx);
    }

    /// An I/O error: drop the connection now. Nothing queued can reach the peer any more,
    /// so its buffers go back at once and no write follows the error; the caller's flush
    /// (or the one it marks dirty) finds it done and frees it.
    pub(super) fn abort(&mut self, idx: usize) {
        let code = self.conns[idx]
            .conn
            .close(&self.cfg, &mut self.res, Close::Abort);
        if let Some(code) = code {
            self.told_closed(idx, code, "");
        }
    }

    pub(super) fn mark_dirty(&mut self, idx: usize) {
        if let Some(e) = self.conns.get_mut(idx) {
            if !e.flags.has(DIRTY) {
                e.flags.set(DIRTY, true);
                self.dirty.push(idx);
            }
        }
    }

    /// Write what every dirty connection queued (Redis's beforeSleep / handleClients-
    /// WithPendingWrites): most replies leave in this one syscall, and WRITABLE is asked
    /// for only when the socket could not take everything.
    pub(super) fn flush_dirty(&mut self) {
        while let Some(idx) = self.dirty.pop() {
            if let Some(e) = self.conns.get_mut(idx) {
                e.flags.set(DIRTY, false);
                self.flush(idx);
            }
        }
    }

    pub(super) fn flush(&mut self, idx: usize) {
        self.track(idx);
        let e = &mut self.conns[idx];
        // Behind a proxy, a connection waiting for its next request counts for nobody: nginx
        // keeps idle ones in its `keepalive` pool and reuses them for any client. Every state
        // change is followed by a flush, so this sees each return to waiting (a response,
        // a held poll answered by a publish or by its deadline).
        if e.flags.has(VIA_PROXY) && e.conn.status().state == State::Handshake {
            if let Some(id) = e.client.take() {
                self.clients.release(id);
            }
        }
        let mut t = Transport::new(
            &mut e.sock,
            session(&mut self.sessions, &mut self.tls_scratch, e.flags, idx),
        );
        let mut failed = false;
        loop {
            match e.conn.write_to(&mut self.res, &mut t) {
                Ok(Sent::Nothing) => break,
                Ok(Sent::Wrote { n, short }) => {
                    self.metrics.bytes_out.add(n as u64);
                    // A short plain write means the send buffer is full (WRITABLE will tell
                    // us); under TLS it only means the session's buffer was, and that has
                    // been flushed: go on until WouldBlock.
                    if n == 0 || (short && t.short_means_drained()) {
                        break;
                    }
                    // Everything queued is out (the usual case): no second call to learn it.
                    if !short && e.conn.tx_len() == 0 {
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
        // TLS records the socket could not take yet (the plaintext left tx already).
        let tls_pending = !failed
            && match t.flush() {
                Ok(done) => !done,
                Err(err) => {
                    log::debug!("tls write: {err}");
                    failed = true;
                    false
                }
            };
        if failed {
            self.abort(idx);
        }
        let e = &mut self.conns[idx];
        if !tls_pending && e.conn.take_shutdown() {
            // Our FIN tells the peer we are done (RFC 6455 §7.1.1: the server closes the TCP
            // connection first); reading on until its FIN avoids a reset that could destroy
            // the last bytes we sent. (After the peer's FIN there is nothing to wait for:
            // `take_shutdown` closed it.)
            Transport::new(
                &mut e.sock,
                session(&mut self.sessions, &mut self.tls_scratch, e.flags, idx),
            )
            .close_notify();
            let _ = self.net.shutdown_write(&mut e.sock);
            self.resume.push(idx);
        }
        if e.conn.status().state == State::Closed {
            if !e.flags.has(FREEING) {
                e.flags.set(FREEING, true);
                self.closing.push(idx);
            }
            return;
        }
        let wants = e.conn.interest(&self.cfg, &mut self.res);
        let want = if wants.write || tls_pending {
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
        if e.flags.has(READ_BLOCKED) && wants.read {
            e.flags.set(READ_BLOCKED, false);
            self.resume.push(idx);
        }
        self.arm(idx);
    }
}
