//! Owns `Transport`: one connection's byte stream as the reactor's read and flush see it —
//! the socket itself, or a TLS session over the socket (`src/tls/`). The reactor moves bytes
//! through it with the same verbs either way (reads and writes as the connection's `conn::Io`), so `Reactor::read` and `Reactor::flush`
//! have no TLS branches; what differs (recv/send or records, what a short read or write
//! means, records still pending, close_notify) is decided here.
//! Must not: block, buffer plaintext of its own, or outlive the call it was made for (it
//! borrows the socket and the session, which live in the slab and `Reactor::sessions`).

use std::io::{self, IoSlice, IoSliceMut, Read, Write};

use crate::conn::Io;
use crate::tls::Session;

/// A view of one connection's stream for the length of one read or flush.
pub(super) struct Transport<'a, S> {
    sock: &'a mut S,
    /// The TLS session and the worker's scratch it works in.
    tls: Option<(&'a mut Session, &'a mut [u8])>,
}

impl<'a, S: Read + Write> Transport<'a, S> {
    pub fn new(sock: &'a mut S, tls: Option<(&'a mut Session, &'a mut [u8])>) -> Transport<'a, S> {
        Transport { sock, tls }
    }

    /// Does a read that filled less than it was offered mean the socket is drained (and a
    /// write that took less, that it is full)? On a plain socket yes; under TLS it says
    /// nothing about the socket (records may still wait there, and a short write only means
    /// the session's buffer was full, which `write` flushed).
    pub fn short_means_drained(&self) -> bool {
        self.tls.is_none()
    }

    /// Send what TLS records are still pending: `Ok(true)` when none remain (always, on a
    /// plain socket).
    pub fn flush(&mut self) -> io::Result<bool> {
        match &mut self.tls {
            None => Ok(true),
            Some((tls, _)) => tls.flush(self.sock),
        }
    }

    /// Our side is done: close_notify under TLS (RFC 8446 §6.1); the caller sends FIN.
    pub fn close_notify(&mut self) {
        if let Some((tls, _)) = &mut self.tls {
            tls.shutdown(self.sock);
        }
    }
}

/// What the connection reads from and writes to (`Conn::read_from`, `Conn::write_to`).
impl<S: Read + Write> Io for Transport<'_, S> {
    /// Read plaintext into `a`, then `b`. `Ok(0)` is the end (the peer's FIN, or its
    /// close_notify under TLS).
    fn read(&mut self, a: &mut [u8], b: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            // One free slice (the usual case) is a plain recv(2): readv(2) costs more in the
            // kernel (the iovec import and the VFS layer around it); measured in
            // docs/perf-history.md, "recv/send instead of readv/writev".
            None if b.is_empty() => self.sock.read(a),
            None => self
                .sock
                .read_vectored(&mut [IoSliceMut::new(a), IoSliceMut::new(b)]),
            Some((tls, scratch)) => tls.read(self.sock, scratch, a, b),
        }
    }

    /// Write plaintext from `iov`; returns how much was taken. One slice is a plain
    /// send(2), several one writev(2).
    fn write(&mut self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.tls {
            None if iov.len() == 1 => self.sock.write(&iov[0]),
            None => self.sock.write_vectored(iov),
            Some((tls, scratch)) => tls.write(self.sock, scratch, iov),
        }
    }
}
