//! Owns the scripted stand-in for the operating system (tests only): `FakeNet` implements
//! `Net` with a clock that moves only when the test says so, a queue of pending
//! connections (or scripted accept errors), and per connection a script of read and write
//! outcomes the reactor meets one system call at a time — short reads and writes,
//! `WouldBlock`, `EINTR`, `ECONNRESET`, `EPIPE`, EOF. Its `poll` models edge-triggered epoll
//! strictly, so a loop that stops reading or writing before the kernel said "no more" hangs
//! here instead of passing by luck. docs/testing.md §4 describes the model and the tests
//! (`fake_tests.rs`) built on it. Deterministic: no sockets, no threads, no real time.
//! Must not: be compiled into the server (tests only), or be more forgiving than Linux's epoll.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use mio::{Interest, Token};

use super::net::{Net, Ready};
use super::token::LISTENER;
use crate::timer::Tick;

/// More system calls than this on one socket between two polls is a busy loop: fail the
/// test rather than hang it.
const SPIN_LIMIT: usize = 100_000;

/// The outcome of the next `read` on a stream, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadStep {
    /// Bytes that arrived; a read larger than them returns them all (a short read), a
    /// smaller one leaves the rest in front.
    Data(Vec<u8>),
    /// Nothing to read now (EAGAIN).
    WouldBlock,
    /// The read fails with this errno (`EINTR` is retried; any other ends the connection,
    /// and reads after it return 0, as after a reset).
    Err(i32),
    /// The peer's FIN: this read and every later one return 0.
    Eof,
}

/// The outcome of the next `write`, in order; when the script is empty a write takes
/// `min(len, write_cap, room)` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStep {
    /// Take at most this many bytes (a short write when fewer than offered).
    Accept(usize),
    /// The send buffer is full (EAGAIN).
    WouldBlock,
    /// The write fails with this errno.
    Err(i32),
}

/// Where an outbound connection (`Net::connect`) stands, as `Net::connected` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connect {
    /// An accepted connection: there is nothing to complete.
    Inbound,
    /// connect(2) answered EINPROGRESS; the peer has not answered yet.
    Pending,
    Done,
    /// The connect failed with this errno (e.g. ECONNREFUSED).
    Failed(i32),
}

/// System calls one stream received.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    pub reads: usize,
    pub writes: usize,
    /// Of those, the reads and writes made with `readv`/`writev` (several buffers).
    pub vectored: usize,
    /// Writes made after a read or write had failed with a connection error.
    pub writes_after_error: usize,
    pub registers: usize,
    pub reregisters: usize,
    pub deregisters: usize,
    pub shutdowns: usize,
}

/// One connection as the kernel and the peer see it; shared by the reactor's `FakeStream`
/// and the test's `Peer`.
#[derive(Debug)]
struct Wire {
    peer_addr: SocketAddr,
    reads: VecDeque<ReadStep>,
    /// Edge-triggered readiness is armed: bytes arrived, or the reader met WouldBlock or a
    /// short read (what is queued behind came later). Otherwise queued bytes raise nothing:
    /// a reader that stops early is not woken again.
    read_edge: bool,
    /// A connection error was returned: reads return 0, writes fail with EPIPE.
    failed: bool,
    writes: VecDeque<WriteStep>,
    /// Most bytes one write takes when no step is scripted.
    write_cap: usize,
    /// What the peer's window and our send buffer can still take (the peer reading makes
    /// room: `Peer::drain`).
    room: usize,
    /// Armed by a short write or WouldBlock: the next poll with room reports WRITABLE.
    write_edge: bool,
    written: Vec<u8>,
    /// `written.len()` when the reactor sent FIN.
    shut_at: Option<usize>,
    /// The interest registered in the fake epoll (None: not registered).
    interest: Option<Interest>,
    /// Every interest registered, in order (register and each reregister).
    interests: Vec<Interest>,
    token: Token,
    /// Shed at accept, or the reactor dropped (closed) its stream.
    closed: bool,
    calls: Calls,
    /// Reads and writes since the last poll (the busy-loop guard).
    since_poll: usize,
    connect: Connect,
}

impl Wire {
    fn new(peer_addr: SocketAddr) -> Wire {
        Wire {
            peer_addr,
            reads: VecDeque::new(),
            read_edge: true, // EPOLL_CTL_ADD reports what is already queued
            failed: false,
            writes: VecDeque::new(),
            write_cap: usize::MAX,
            room: usize::MAX,
            write_edge: false,
            written: Vec::new(),
            shut_at: None,
            interest: None,
            interests: Vec::new(),
            token: Token(0),
            closed: false,
            calls: Calls::default(),
            since_poll: 0,
            connect: Connect::Inbound,
        }
    }

    fn syscall(&mut self) {
        self.since_poll += 1;
        assert!(
            self.since_poll < SPIN_LIMIT,
            "busy loop: {SPIN_LIMIT} reads/writes on {:?} without a poll",
            self.token
        );
    }

    /// An errno other than EINTR/EAGAIN breaks the connection for good.
    fn fail(&mut self, errno: i32) -> io::Error {
        if errno != libc::EINTR && errno != libc::EAGAIN {
            self.failed = true;
        }
        io::Error::from_raw_os_error(errno)
    }

    fn read(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.calls.reads += 1;
        self.syscall();
        if self.failed {
            return Ok(0);
        }
        let room: usize = bufs.iter().map(|b| b.len()).sum();
        match self.reads.front_mut() {
            None | Some(ReadStep::WouldBlock) => {
                self.reads.pop_front();
                self.read_edge = true;
                Err(io::ErrorKind::WouldBlock.into())
            }
            Some(ReadStep::Eof) => Ok(0),
            Some(&mut ReadStep::Err(errno)) => {
                self.reads.pop_front();
                Err(self.fail(errno))
            }
            Some(ReadStep::Data(data)) => {
                let mut n = 0;
                for buf in bufs.iter_mut() {
                    let take = buf.len().min(data.len() - n);
                    buf[..take].copy_from_slice(&data[n..n + take]);
                    n += take;
                }
                data.drain(..n);
                if data.is_empty() {
                    self.reads.pop_front();
                }
                if n < room {
                    // A short read: the queue was empty; what is queued behind came later.
                    self.read_edge = true;
                }
                Ok(n)
            }
        }
    }

    fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls.writes += 1;
        self.syscall();
        if self.failed {
            self.calls.writes_after_error += 1;
            return Err(io::Error::from_raw_os_error(libc::EPIPE));
        }
        if self.shut_at.is_some() {
            return Err(self.fail(libc::EPIPE));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let limit = match self.writes.pop_front() {
            Some(WriteStep::WouldBlock) => 0,
            Some(WriteStep::Err(errno)) => return Err(self.fail(errno)),
            Some(WriteStep::Accept(n)) => n,
            None => self.write_cap,
        };
        let n = total.min(limit).min(self.room);
        if n == 0 && total > 0 {
            self.write_edge = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut left = n;
        for buf in bufs {
            let take = buf.len().min(left);
            self.written.extend_from_slice(&buf[..take]);
            left -= take;
        }
        self.room -= n;
        if n < total {
            self.write_edge = true;
        }
        Ok(n)
    }

    /// The edge this stream raises at a poll, if any (and disarm it).
    fn edge(&mut self) -> Option<Ready> {
        let interest = self.interest?;
        let readable = interest.is_readable() && self.read_edge && !self.reads.is_empty();
        let writable = interest.is_writable() && self.write_edge && self.room > 0;
        self.read_edge &= !readable;
        self.write_edge &= !writable;
        let queued = |f: fn(&ReadStep) -> bool| readable && self.reads.iter().any(f);
        // A failed connect raises EPOLLOUT | EPOLLERR.
        let refused = writable && matches!(self.connect, Connect::Failed(_));
        (readable || writable).then(|| Ready {
            token: self.token,
            readable,
            writable,
            read_closed: queued(|s| *s == ReadStep::Eof),
            error: refused || queued(|s| matches!(s, ReadStep::Err(e) if *e != libc::EINTR)),
        })
    }
}

/// The reactor's end of a scripted connection. Dropping it closes the "socket".
#[derive(Debug)]
pub struct FakeStream(Rc<RefCell<Wire>>);

impl FakeStream {
    /// The interest registered for it in the fake epoll.
    pub fn registered(&self) -> Option<Interest> {
        self.0.borrow().interest
    }
}

impl Drop for FakeStream {
    fn drop(&mut self) {
        self.0.borrow_mut().closed = true;
    }
}

impl Read for FakeStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(&mut [IoSliceMut::new(buf)])
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.0.borrow_mut().calls.vectored += 1;
        self.0.borrow_mut().read(bufs)
    }
}

impl Write for FakeStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.borrow_mut().calls.vectored += 1;
        self.0.borrow_mut().write(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The test's end of a scripted connection: the peer and the kernel's view of it.
#[derive(Debug, Clone)]
pub struct Peer(Rc<RefCell<Wire>>);

impl Peer {
    /// Bytes arrive (one read step).
    pub fn send(&self, bytes: &[u8]) {
        self.push_read(ReadStep::Data(bytes.to_vec()));
    }

    /// Bytes arrive one per read, each behind a `WouldBlock` when `gaps` is set.
    pub fn send_bytewise(&self, bytes: &[u8], gaps: bool) {
        for &b in bytes {
            self.push_read(ReadStep::Data(vec![b]));
            if gaps {
                self.push_read(ReadStep::WouldBlock);
            }
        }
    }

    /// The next read's outcome. An arrival raises an edge (Linux wakes epoll on every
    /// arrival), so this is seen even if the reactor had not drained the socket.
    pub fn push_read(&self, step: ReadStep) {
        let mut w = self.0.borrow_mut();
        w.reads.push_back(step);
        w.read_edge = true;
    }

    pub fn push_write(&self, step: WriteStep) {
        self.0.borrow_mut().writes.push_back(step);
    }

    /// Most bytes one write takes from now on (when no step is scripted).
    pub fn set_write_cap(&self, n: usize) {
        self.0.borrow_mut().write_cap = n;
    }

    /// How many bytes the socket takes before writes would block (0: the peer stopped
    /// reading).
    pub fn set_room(&self, n: usize) {
        self.0.borrow_mut().room = n;
    }

    /// The peer read `n` bytes: that much room again.
    pub fn drain(&self, n: usize) {
        let mut w = self.0.borrow_mut();
        w.room = w.room.saturating_add(n);
    }

    /// Everything the reactor wrote so far.
    pub fn written(&self) -> Vec<u8> {
        self.0.borrow().written.clone()
    }

    pub fn written_len(&self) -> usize {
        self.0.borrow().written.len()
    }

    /// Take what the reactor wrote so far.
    pub fn take_written(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut().written)
    }

    pub fn calls(&self) -> Calls {
        self.0.borrow().calls
    }

    pub fn interests(&self) -> Vec<Interest> {
        self.0.borrow().interests.clone()
    }

    /// How much had been written when FIN was sent, if it was.
    pub fn shut_at(&self) -> Option<usize> {
        self.0.borrow().shut_at
    }

    /// The reactor closed the socket (or it was shed at accept).
    pub fn closed(&self) -> bool {
        self.0.borrow().closed
    }

    /// Read steps the reactor has not consumed.
    pub fn unread(&self) -> usize {
        self.0.borrow().reads.len()
    }

    pub fn token(&self) -> Token {
        self.0.borrow().token
    }

    /// An outbound connection's peer accepts it: the next poll reports WRITABLE, and
    /// `Net::connected` says yes.
    pub fn complete_connect(&self) {
        let mut w = self.0.borrow_mut();
        w.connect = Connect::Done;
        w.write_edge = true;
    }

    /// An outbound connection fails (e.g. ECONNREFUSED): WRITABLE with an error.
    pub fn refuse_connect(&self, errno: i32) {
        let mut w = self.0.borrow_mut();
        w.connect = Connect::Failed(errno);
        w.write_edge = true;
    }

    /// The address the reactor connected to (an outbound connection) or was connected
    /// from (an accepted one).
    pub fn addr(&self) -> SocketAddr {
        self.0.borrow().peer_addr
    }
}

enum Pending {
    Conn(Rc<RefCell<Wire>>),
    Err(i32),
}

/// A scripted `Net`. Poll never blocks: with nothing to report it returns at once, and
/// records the timeout the loop asked for (`Some(ZERO)` would mean it cannot sleep).
#[derive(Default)]
pub struct FakeNet {
    now: Tick,
    stopped: bool,
    /// The listener's edge is armed (by a new connection, or at WouldBlock).
    accept_edge: bool,
    pending: VecDeque<Pending>,
    /// accept fails with EMFILE (the descriptor table is full) while set.
    emfile: bool,
    streams: Vec<Rc<RefCell<Wire>>>,
    injected: Vec<Ready>,
    poll_errors: VecDeque<i32>,
    signals: usize,
    next_port: u16,
    /// Outbound connections the reactor opened (`Net::connect`), oldest first.
    outbound: VecDeque<Peer>,
    /// The next `Net::connect` calls fail at once with these errnos.
    connect_errors: VecDeque<i32>,
    /// `Net::connect` calls made.
    pub connects: usize,
    /// Connections shed through the reserve descriptor.
    pub shed: usize,
    pub accepts: usize,
    pub polls: usize,
    /// The timeout of the last poll.
    pub last_timeout: Option<Duration>,
}

impl FakeNet {
    pub fn new() -> FakeNet {
        FakeNet::default()
    }

    /// A client connects: it waits in the accept queue.
    pub fn connect(&mut self) -> Peer {
        self.next_port += 1;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000 + self.next_port));
        let wire = Rc::new(RefCell::new(Wire::new(addr)));
        self.pending.push_back(Pending::Conn(wire.clone()));
        self.accept_edge = true; // a new connection wakes the listener
        Peer(wire)
    }

    /// The oldest outbound connection the reactor opened and the test has not taken yet.
    pub fn take_outbound(&mut self) -> Option<Peer> {
        self.outbound.pop_front()
    }

    /// The next `Net::connect` fails at once with `errno` (e.g. ENETUNREACH).
    pub fn fail_connect(&mut self, errno: i32) {
        self.connect_errors.push_back(errno);
    }

    /// The next accept fails with `errno` (e.g. EINTR, ECONNABORTED).
    pub fn fail_accept(&mut self, errno: i32) {
        self.pending.push_back(Pending::Err(errno));
        self.accept_edge = true;
    }

    /// The next poll fails with `errno`.
    pub fn fail_poll(&mut self, errno: i32) {
        self.poll_errors.push_back(errno);
    }

    /// The process is (or no longer is) out of file descriptors.
    pub fn set_emfile(&mut self, on: bool) {
        self.emfile = on;
    }

    /// Report `ev` at the next poll, whatever the scripts say (a spurious or stale event,
    /// a HUP with nothing queued).
    pub fn inject(&mut self, ev: Ready) {
        self.injected.push(ev);
    }

    /// A SIGTERM arrives: the `SIGNALS` token is reported at the next poll.
    pub fn signal(&mut self) {
        self.signals += 1;
        self.inject(Ready {
            token: super::token::SIGNALS,
            readable: true,
            writable: false,
            read_closed: false,
            error: false,
        });
    }

    pub fn advance(&mut self, ms: Tick) {
        self.now += ms;
    }
}

impl Net for FakeNet {
    type Stream = FakeStream;

    fn poll(&mut self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        out.clear();
        self.polls += 1;
        self.last_timeout = timeout;
        if let Some(errno) = self.poll_errors.pop_front() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if !self.stopped && self.accept_edge && !self.pending.is_empty() {
            self.accept_edge = false;
            out.push(Ready {
                token: LISTENER,
                readable: true,
                writable: false,
                read_closed: false,
                error: false,
            });
        }
        for wire in &self.streams {
            let mut w = wire.borrow_mut();
            w.since_poll = 0;
            out.extend(w.edge());
        }
        out.append(&mut self.injected);
        Ok(())
    }

    fn now(&self) -> Tick {
        self.now
    }

    fn nanos(&self) -> u64 {
        self.now * 1_000_000
    }

    /// The fake wall clock runs with the fake monotonic one, from 2026-01-01T00:00:00Z.
    fn unix_ms(&self) -> u64 {
        1_767_225_600_000 + self.now
    }

    fn accept(&mut self) -> io::Result<(FakeStream, SocketAddr)> {
        self.accepts += 1;
        assert!(self.accepts < SPIN_LIMIT, "busy loop on accept");
        if self.stopped {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.emfile {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        match self.pending.pop_front() {
            None => {
                self.accept_edge = true;
                Err(io::ErrorKind::WouldBlock.into())
            }
            Some(Pending::Err(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Some(Pending::Conn(wire)) => {
                let addr = wire.borrow().peer_addr;
                Ok((FakeStream(wire), addr))
            }
        }
    }

    fn shed_one(&mut self) -> bool {
        let first_conn = self
            .pending
            .iter()
            .position(|p| matches!(p, Pending::Conn(_)));
        let Some(Pending::Conn(wire)) = first_conn.and_then(|i| self.pending.remove(i)) else {
            return false;
        };
        wire.borrow_mut().closed = true;
        self.shed += 1;
        true
    }

    fn stop_accepting(&mut self) {
        self.stopped = true;
    }

    fn pending_signals(&mut self) -> usize {
        std::mem::take(&mut self.signals)
    }

    fn register(&mut self, s: &mut FakeStream, token: Token, interest: Interest) -> io::Result<()> {
        let mut w = s.0.borrow_mut();
        w.calls.registers += 1;
        w.token = token;
        w.interest = Some(interest);
        w.interests.push(interest);
        self.streams.push(s.0.clone());
        Ok(())
    }

    fn reregister(
        &mut self,
        s: &mut FakeStream,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let mut w = s.0.borrow_mut();
        w.calls.reregisters += 1;
        w.token = token;
        w.interest = Some(interest);
        w.interests.push(interest);
        Ok(())
    }

    fn deregister(&mut self, s: &mut FakeStream) {
        let mut w = s.0.borrow_mut();
        w.calls.deregisters += 1;
        w.interest = None;
        self.streams.retain(|o| !Rc::ptr_eq(o, &s.0));
    }

    fn peer_addr(&self, s: &FakeStream) -> Option<SocketAddr> {
        Some(s.0.borrow().peer_addr)
    }

    fn shutdown_write(&mut self, s: &mut FakeStream) -> io::Result<()> {
        let mut w = s.0.borrow_mut();
        w.calls.shutdowns += 1;
        if w.shut_at.is_none() {
            w.shut_at = Some(w.written.len());
        }
        Ok(())
    }

    fn connect(
        &mut self,
        addr: SocketAddr,
        token: Token,
        interest: Interest,
    ) -> io::Result<FakeStream> {
        self.connects += 1;
        if let Some(errno) = self.connect_errors.pop_front() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let wire = Rc::new(RefCell::new(Wire::new(addr)));
        wire.borrow_mut().connect = Connect::Pending;
        let mut stream = FakeStream(wire.clone());
        self.register(&mut stream, token, interest)?;
        self.outbound.push_back(Peer(wire));
        Ok(stream)
    }

    fn connected(&mut self, s: &mut FakeStream) -> io::Result<bool> {
        match s.0.borrow().connect {
            Connect::Inbound | Connect::Done => Ok(true),
            Connect::Pending => Ok(false),
            Connect::Failed(errno) => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}
