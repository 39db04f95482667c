//! Owns `Session`: one server-side TLS session over rustls' unbuffered API, the buffers lent by
//! the caller only while bytes move. Records are read and encrypted in the worker's scratch
//! (`SCRATCH` bytes, one per reactor); a session keeps bytes of its own only while they wait —
//! part of a record not yet complete, records the socket has not taken, plaintext the
//! connection's ring had no room for — and frees them once they are gone, so an idle `wss://`
//! connection holds no buffer, like an idle `ws://` one (docs/architecture.md, "TLS").
//! Must not: block, allocate while idle, or let a TLS error go further than its connection.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::ServerConfig;

/// The worker's scratch for one session's records at a time: room for the part of a record
/// a session kept plus a read of whole records behind it (a TLS record is at most 16 KiB of
/// plaintext plus 256 bytes of expansion and its 5-byte header, RFC 8446 §5.2), and for the
/// records one write encrypts.
pub const SCRATCH: usize = 64 * 1024;

/// Plaintext taken per record written: a full record (RFC 8446 §5.1).
const RECORD: usize = 16 * 1024;

/// Bytes a record adds to its plaintext at most (header, tag, content type; TLS 1.2's
/// explicit nonce): room kept free in the scratch per record.
const OVERHEAD: usize = 5 + 256;

/// Most plaintext one `write` encrypts: what it cannot send stays with the session
/// (`pending_out`), so this bounds what a session holds beyond the connection's own queue.
const WRITE_BUDGET: usize = 48 * 1024;

/// One connection's TLS session (`wss://`, `https://`).
pub struct Session {
    conn: UnbufferedServerConnection,
    /// Received bytes rustls has not discarded yet: a record not yet complete (and, while a
    /// handshake message spans records, the records before it). Empty between records.
    pending_in: Vec<u8>,
    /// Records encoded or encrypted that the socket has not taken, from `out_at`.
    pending_out: Vec<u8>,
    out_at: usize,
    /// Plaintext decrypted that the caller had no room for, from `plain_at`.
    pending_plain: Vec<u8>,
    plain_at: usize,
    /// The peer sent close_notify: nothing more will be read.
    peer_closed: bool,
    /// The last run ended writable: nothing was queued behind it (rustls hands out queued
    /// records before it reports `WriteTraffic`), so a write need not run the session first.
    writable: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("pending_in", &self.pending_in.len())
            .field("pending_out", &(self.pending_out.len() - self.out_at))
            .field("pending_plain", &(self.pending_plain.len() - self.plain_at))
            .finish()
    }
}

/// Where running the session over the bytes at hand stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The handshake is done and nothing waits: application data may be written.
    Writable,
    /// Nothing more can happen without more bytes from the peer (a handshake under way).
    NeedsInput,
    /// Both sides closed.
    Closed,
}

impl Session {
    /// A new server-side session.
    pub fn new(cfg: &Arc<ServerConfig>) -> io::Result<Session> {
        let conn = UnbufferedServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
        Ok(Session {
            conn,
            pending_in: Vec::new(),
            pending_out: Vec::new(),
            out_at: 0,
            pending_plain: Vec::new(),
            plain_at: 0,
            peer_closed: false,
            writable: false,
        })
    }

    /// Read plaintext into `a` then `b`. `Ok(0)` is the end (close_notify or the peer's
    /// FIN); `WouldBlock` means no plaintext yet and nothing more on the socket. Handshake
    /// records produced on the way are sent at once.
    pub fn read<S: Read + Write>(
        &mut self,
        sock: &mut S,
        scratch: &mut [u8],
        a: &mut [u8],
        b: &mut [u8],
    ) -> io::Result<usize> {
        loop {
            let n = self.take_plain(a, b);
            if n > 0 {
                return Ok(n);
            }
            if self.peer_closed {
                return Ok(0);
            }
            // What was kept, then what the socket has, in the scratch.
            let kept = self.pending_in.len();
            if kept >= scratch.len() {
                // Only a handshake message spanning records grows this far (rustls bounds
                // them at 64 KiB); a client's never does.
                return Err(invalid("a TLS handshake message larger than the scratch"));
            }
            scratch[..kept].copy_from_slice(&self.pending_in);
            let filled = match sock.read(&mut scratch[kept..]) {
                Ok(0) => return Ok(0),
                Ok(n) => kept + n,
                Err(e) => return Err(e),
            };
            let ran = self.run(&mut scratch[..filled]);
            let used = match ran {
                Ok((used, _)) => used,
                Err(e) => {
                    // Tell the peer why (the alert rustls queued) before the connection goes.
                    let _ = self.flush(sock);
                    return Err(e);
                }
            };
            keep(&mut self.pending_in, &scratch[used..filled]);
            self.flush(sock)?;
        }
    }

    /// Encrypt plaintext from `iov` and send what the socket takes. Returns the plaintext
    /// bytes taken: all it encrypted (what the socket did not take waits in the session);
    /// `WouldBlock` while earlier records wait or before the handshake is done.
    pub fn write<S: Read + Write>(
        &mut self,
        sock: &mut S,
        scratch: &mut [u8],
        iov: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        // Records the session queued (tickets after the handshake) go first, in order.
        if !self.flush(sock)? {
            return Err(ErrorKind::WouldBlock.into());
        }
        if !self.writable && (self.settle()? != Stop::Writable || !self.flush(sock)?) {
            return Err(ErrorKind::WouldBlock.into());
        }
        let Ok(ConnectionState::WriteTraffic(mut w)) =
            self.conn.process_tls_records(&mut self.pending_in).state
        else {
            return Err(ErrorKind::WouldBlock.into());
        };
        let total: usize = iov.iter().map(|s| s.len()).sum();
        let budget = total.min(WRITE_BUDGET);
        // Gather the plaintext into whole records at the scratch's end, encrypt at its start.
        let (out, plain) = scratch.split_at_mut(SCRATCH - RECORD);
        let (mut taken, mut written) = (0, 0);
        let (mut slice, mut offset) = (0, 0);
        while taken < budget {
            let n = (budget - taken).min(RECORD);
            if out.len() - written < n + OVERHEAD {
                break;
            }
            let mut at = 0;
            while at < n {
                let s = &iov[slice][offset..];
                let k = s.len().min(n - at);
                plain[at..at + k].copy_from_slice(&s[..k]);
                at += k;
                offset += k;
                if offset == iov[slice].len() {
                    (slice, offset) = (slice + 1, 0);
                }
            }
            written += match w.encrypt(&plain[..n], &mut out[written..]) {
                Ok(k) => k,
                Err(EncryptError::InsufficientSize(s)) => {
                    return Err(io::Error::other(format!(
                        "a TLS record needs {} bytes of scratch",
                        s.required_size
                    )))
                }
                Err(e) => return Err(io::Error::other(e)),
            };
            taken += n;
        }
        let sent = send(sock, &out[..written])?;
        keep(&mut self.pending_out, &out[sent..written]);
        self.out_at = 0;
        Ok(taken)
    }

    /// Send records still waiting. `Ok(true)` when none remain.
    pub fn flush<S: Write>(&mut self, sock: &mut S) -> io::Result<bool> {
        if self.out_at < self.pending_out.len() {
            self.out_at += send(sock, &self.pending_out[self.out_at..])?;
        }
        if self.out_at == self.pending_out.len() {
            // Sent: give the memory back (an idle session holds none).
            self.pending_out = Vec::new();
            self.out_at = 0;
            return Ok(true);
        }
        Ok(false)
    }

    /// End our side: close_notify (RFC 8446 §6.1), sent as far as the socket takes it. The
    /// caller sends FIN after it.
    pub fn shutdown<S: Read + Write>(&mut self, sock: &mut S) {
        if self.settle().ok() == Some(Stop::Writable) {
            if let Ok(ConnectionState::WriteTraffic(mut w)) =
                self.conn.process_tls_records(&mut self.pending_in).state
            {
                let mut alert = [0u8; 64];
                let n = w.queue_close_notify(&mut alert).unwrap_or(0);
                self.pending_out.extend_from_slice(&alert[..n]);
            }
        }
        let _ = self.flush(sock);
    }

    /// Plaintext kept from an earlier read, into `a` then `b`.
    fn take_plain(&mut self, a: &mut [u8], b: &mut [u8]) -> usize {
        let rest = &self.pending_plain[self.plain_at..];
        if rest.is_empty() {
            return 0;
        }
        let ka = rest.len().min(a.len());
        a[..ka].copy_from_slice(&rest[..ka]);
        let kb = (rest.len() - ka).min(b.len());
        b[..kb].copy_from_slice(&rest[ka..ka + kb]);
        self.plain_at += ka + kb;
        if self.plain_at == self.pending_plain.len() {
            self.pending_plain = Vec::new();
            self.plain_at = 0;
        }
        ka + kb
    }

    /// Run the session with no new bytes (over what it kept).
    fn settle(&mut self) -> io::Result<Stop> {
        let mut kept = std::mem::take(&mut self.pending_in);
        let ran = self.run(&mut kept);
        if let Ok((used, _)) = ran {
            kept.drain(..used);
        }
        self.pending_in = if kept.is_empty() { Vec::new() } else { kept };
        ran.map(|(_, stop)| stop)
    }

    /// Run the session over `incoming` until it stops: plaintext to `pending_plain`, records
    /// to send to `pending_out`. Returns how many bytes at the front rustls is done with.
    /// On an error, the alert rustls queued is in `pending_out`.
    fn run(&mut self, incoming: &mut [u8]) -> io::Result<(usize, Stop)> {
        let mut used = 0;
        loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut incoming[used..]);
            let stop = match state {
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec.map_err(invalid)?;
                        self.pending_plain.extend_from_slice(rec.payload);
                    }
                    None
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    encode(&mut e, &mut self.pending_out)?;
                    None
                }
                // Sent by the caller's flush (or the next one, if the socket is full).
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    None
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    None
                }
                Ok(ConnectionState::WriteTraffic(_)) => Some(Stop::Writable),
                Ok(ConnectionState::BlockedHandshake) => Some(Stop::NeedsInput),
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    Some(Stop::Closed)
                }
                // Early data is not accepted (the config does not enable it); a state this
                // code does not know ends the connection.
                Ok(_) => return Err(invalid("unexpected TLS state")),
                Err(e) => {
                    self.writable = false;
                    self.queue_alert()?;
                    return Err(invalid(e));
                }
            };
            used += discard;
            if let Some(stop) = stop {
                self.writable = stop == Stop::Writable;
                return Ok((used, stop));
            }
        }
    }

    /// After an error: the alert rustls queued, if any, into `pending_out`.
    fn queue_alert(&mut self) -> io::Result<()> {
        if let Ok(ConnectionState::EncodeTlsData(mut e)) =
            self.conn.process_tls_records(&mut []).state
        {
            encode(&mut e, &mut self.pending_out)?;
        }
        Ok(())
    }
}

fn invalid<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

/// Append the handshake record `e` holds to `out`, growing it to the size rustls asks.
fn encode<D>(
    e: &mut rustls::unbuffered::EncodeTlsData<'_, D>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let at = out.len();
    out.resize(at + 4096, 0);
    loop {
        match e.encode(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) => out.resize(at + s.required_size, 0),
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}

/// Write `bytes` until the socket would block; how many it took.
fn send<S: Write>(sock: &mut S, bytes: &[u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < bytes.len() {
        match sock.write(&bytes[at..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// Replace `v` with `rest`, freeing it when `rest` is empty.
fn keep(v: &mut Vec<u8>, rest: &[u8]) {
    if rest.is_empty() {
        *v = Vec::new();
    } else {
        *v = rest.to_vec();
    }
}
