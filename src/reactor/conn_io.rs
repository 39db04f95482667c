//! Owns moving a connection's bytes: reading into its rx ring and running its state machine,
//! the peer's FIN and I/O errors, and the flush — writing what it queued, FIN once it has
//! said everything, WRITABLE only while bytes remain, resuming reads stopped by
//! backpressure. Every byte goes through `transport::Transport` (plain or TLS alike).
//! Must not: block, parse protocol bytes, or let one connection's error touch another.

use std::collections::HashMap;
use std::io::{ErrorKind, IoSlice};

use mio::Interest;

use super::transport::Transport;
use super::{token, Net, Reactor, DIRTY, EOF, FREEING, PEER_DONE, READ_BLOCKED, TLS, VIA_PROXY};
use crate::conn::{State, MAX_IOV};

/// The TLS session of slab slot `idx`, if its flags say it has one.
pub(super) fn session(
    sessions: &mut HashMap<usize, Box<rustls::ServerConnection>>,
    flags: u8,
    idx: usize,
) -> Option<&mut rustls::ServerConnection> {
    if flags & TLS == 0 {
        return None;
    }
    sessions.get_mut(&idx).map(|s| &mut **s)
}

impl<N: Net> Reactor<N> {
    /// Read until WouldBlock, a short read, or backpressure; run the state machine after
    /// every read so the rx ring keeps room.
    pub(super) fn read(&mut self, idx: usize) {
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
            // (A read ring handed to tx for an echo is queued bytes too: `tx_len` counts it.)
            if e.conn.tx_len() > 0 && !e.has(FREEING) {
                self.flush(idx);
                return;
            }
        }
        self.mark_dirty(idx);
    }

    /// The peer's FIN: report the close to the app if it was not told, then let the flush
    /// finish what is queued and free the connection.
    pub(super) fn peer_closed(&mut self, idx: usize) {
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
    pub(super) fn abort(&mut self, idx: usize) {
        if let Some(code) = self.conns[idx].conn.abort() {
            self.told_closed(idx, code, "");
        }
        self.conns[idx].conn.release(&mut self.res);
    }

    pub(super) fn mark_dirty(&mut self, idx: usize) {
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
    pub(super) fn flush_dirty(&mut self) {
        while let Some(idx) = self.dirty.pop() {
            if let Some(e) = self.conns.get_mut(idx) {
                e.set(DIRTY, false);
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
        if !tls_pending && e.conn.take_shutdown() {
            if e.has(EOF) {
                e.conn.abort();
            } else {
                // Our FIN tells the peer we are done (RFC 6455 §7.1.1: the server closes
                // the TCP connection first); reading on until its FIN avoids a reset that
                // could destroy the last bytes we sent.
                Transport::new(&mut e.sock, session(&mut self.sessions, e.flags, idx))
                    .close_notify();
                let _ = self.net.shutdown_write(&mut e.sock);
                self.resume.push(idx);
            }
        }
        if e.conn.state() == State::Closed {
            if !e.has(FREEING) {
                e.set(FREEING, true);
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
}
