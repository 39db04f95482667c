//! Owns the seam between the loop and the operating system: the `Net` trait — everything the
//! reactor asks of the kernel except moving bytes (waiting for readiness, the clock, accept,
//! epoll registration, FIN, signals) — and `MioNet`, its production implementation over mio
//! (epoll), the listening socket, the reserve descriptor, the signal pipe and the monotonic
//! clock. The reactor is generic over it (`Reactor<N: Net = MioNet>`) and monomorphised, so
//! the production loop makes the same calls as before the seam, with no dynamic dispatch.
//! Must not: add work to the production loop beyond the mio calls it wraps (no dynamic
//! dispatch).
//!
//! Bytes move through the stream's own `Read`/`Write`: rustls reads and writes records
//! through them (`read_tls`/`write_tls`), so `src/tls/` works unchanged over any stream, and
//! a scripted stream (`fake.rs`, tests only) drives every I/O path of the loop
//! deterministically (docs/testing.md §4). Nothing here knows about connections.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::clock::Clock;
use super::listener::ReserveFd;
use super::token::SIGNALS;
use crate::timer::Tick;

/// One readiness report: the part of a `mio::event::Event` the loop reads. mio's own type
/// cannot be built outside mio, so a scripted `Net` could not produce it; the accessors
/// keep mio's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub token: Token,
    pub readable: bool,
    pub writable: bool,
    /// RDHUP or HUP: nothing will follow what is queued (mio's `is_read_closed`).
    pub read_closed: bool,
    /// ERR: the next read or write reports the error.
    pub error: bool,
}

impl Ready {
    pub fn token(&self) -> Token {
        self.token
    }

    pub fn is_readable(&self) -> bool {
        self.readable
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    pub fn is_read_closed(&self) -> bool {
        self.read_closed
    }

    pub fn is_error(&self) -> bool {
        self.error
    }
}

impl From<&mio::event::Event> for Ready {
    fn from(ev: &mio::event::Event) -> Ready {
        Ready {
            token: ev.token(),
            readable: ev.is_readable(),
            writable: ev.is_writable(),
            read_closed: ev.is_read_closed(),
            error: ev.is_error(),
        }
    }
}

/// What the reactor asks of the operating system. Every method is one system call (or none)
/// in `MioNet`; the error conventions are the kernel's (`WouldBlock`, `Interrupted`, raw
/// errnos such as EMFILE), so the loop's error policy is the same for every implementation.
pub trait Net {
    /// An accepted connection; bytes move through its own `Read`/`Write`.
    type Stream: Read + Write;

    /// Wait for readiness (edge-triggered) up to `timeout` (`None`: until something
    /// happens) and put it in `out`, cleared first.
    fn poll(&mut self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()>;

    /// Monotonic milliseconds; read once per loop iteration.
    fn now(&self) -> Tick;

    /// Monotonic nanoseconds, for timing (the time blocked in `poll`).
    fn nanos(&self) -> u64;

    /// Milliseconds since the Unix epoch by the wall clock; read once per loop iteration.
    fn unix_ms(&self) -> u64;

    /// Accept one pending connection. `WouldBlock` when none is pending, or when accepting
    /// has stopped (`stop_accepting`).
    fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)>;

    /// Out of descriptors: accept one pending connection and drop it through the reserved
    /// descriptor (`listener.rs::ReserveFd`). False when nothing was shed.
    fn shed_one(&mut self) -> bool;

    /// Stop accepting for good (graceful shutdown): the listener leaves the poller.
    fn stop_accepting(&mut self);

    /// How many SIGTERM/SIGINT arrived since the last call (the `SIGNALS` token).
    fn pending_signals(&mut self) -> usize;

    fn register(
        &mut self,
        s: &mut Self::Stream,
        token: Token,
        interest: Interest,
    ) -> io::Result<()>;

    fn reregister(
        &mut self,
        s: &mut Self::Stream,
        token: Token,
        interest: Interest,
    ) -> io::Result<()>;

    fn deregister(&mut self, s: &mut Self::Stream);

    /// Send FIN (`shutdown(SHUT_WR)`): we will write nothing more.
    fn shutdown_write(&mut self, s: &mut Self::Stream) -> io::Result<()>;

    /// The peer's address (for logs; a syscall, so only when a log line is written).
    fn peer_addr(&self, s: &Self::Stream) -> Option<SocketAddr>;

    /// Open an outbound connection to `addr` without blocking (connect(2) answers
    /// EINPROGRESS) and register it under `token` with `interest`: the Redis link's socket.
    /// It completes, or fails, on a later WRITABLE (`Net::connected`).
    fn connect(
        &mut self,
        addr: SocketAddr,
        token: Token,
        interest: Interest,
    ) -> io::Result<Self::Stream>;

    /// Has `connect`'s socket connected? `Ok(true)` once it has (with TCP_NODELAY set),
    /// `Ok(false)` while it is still in progress (a spurious wake-up), `Err` if it failed.
    fn connected(&mut self, s: &mut Self::Stream) -> io::Result<bool>;
}

/// The production `Net`: one mio `Poll` (epoll), the listener, the signal pipe, the reserve
/// descriptor for EMFILE and the clock.
pub struct MioNet {
    poll: Poll,
    events: Events,
    /// None once shutdown has begun (no more accepts).
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    signals: Option<Signals>,
    reserve: ReserveFd,
    clock: Clock,
}

impl MioNet {
    /// Wrap a poller and a listener already registered in it under `token::LISTENER`.
    pub fn new(poll: Poll, listener: TcpListener) -> io::Result<MioNet> {
        Ok(MioNet {
            poll,
            events: Events::with_capacity(1024),
            local_addr: listener.local_addr()?,
            listener: Some(listener),
            signals: None,
            reserve: ReserveFd::new(),
            clock: Clock::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Deliver SIGTERM and SIGINT as readiness of the `SIGNALS` token.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }
}

impl Net for MioNet {
    type Stream = TcpStream;

    fn poll(&mut self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        out.clear();
        self.poll.poll(&mut self.events, timeout)?;
        out.extend(self.events.iter().map(Ready::from));
        Ok(())
    }

    fn now(&self) -> Tick {
        self.clock.now()
    }

    fn nanos(&self) -> u64 {
        self.clock.nanos()
    }

    fn unix_ms(&self) -> u64 {
        super::clock::unix_ms()
    }

    fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let Some(listener) = self.listener.as_ref() else {
            return Err(ErrorKind::WouldBlock.into());
        };
        let (sock, peer) = listener.accept()?;
        // Frames are batched by the loop itself; Nagle would only add latency.
        let _ = sock.set_nodelay(true);
        Ok((sock, peer))
    }

    fn shed_one(&mut self) -> bool {
        match self.listener.as_ref() {
            Some(listener) => self.reserve.shed_one(listener),
            None => false,
        }
    }

    fn stop_accepting(&mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
    }

    fn pending_signals(&mut self) -> usize {
        self.signals.as_mut().map_or(0, |s| s.pending().count())
    }

    fn register(&mut self, s: &mut TcpStream, token: Token, interest: Interest) -> io::Result<()> {
        self.poll.registry().register(s, token, interest)
    }

    fn reregister(
        &mut self,
        s: &mut TcpStream,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.poll.registry().reregister(s, token, interest)
    }

    fn deregister(&mut self, s: &mut TcpStream) {
        let _ = self.poll.registry().deregister(s);
    }

    fn shutdown_write(&mut self, s: &mut TcpStream) -> io::Result<()> {
        s.shutdown(Shutdown::Write)
    }

    fn peer_addr(&self, s: &TcpStream) -> Option<SocketAddr> {
        s.peer_addr().ok()
    }

    fn connect(
        &mut self,
        addr: SocketAddr,
        token: Token,
        interest: Interest,
    ) -> io::Result<TcpStream> {
        let mut sock = TcpStream::connect(addr)?;
        self.poll.registry().register(&mut sock, token, interest)?;
        Ok(sock)
    }

    fn connected(&mut self, s: &mut TcpStream) -> io::Result<bool> {
        if let Some(e) = s.take_error()? {
            return Err(e);
        }
        match s.peer_addr() {
            Ok(_) => {
                // Commands and publishes are queued in one buffer: no Nagle delay on top.
                let _ = s.set_nodelay(true);
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}
