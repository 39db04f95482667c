//! raw-mio-echo: single-threaded raw TCP echo server on mio, a kernel-cost floor for wsloop benchmarks (no WebSocket framing).
//!
//! Usage: `raw-mio-echo --port PORT`
//!
//! Listens on 127.0.0.1:PORT (PORT 0 picks a free port) and writes every byte it reads
//! straight back to the same connection. There is no HTTP handshake and no WebSocket
//! framing, so it measures only what the event loop plus the kernel's TCP path cost;
//! drive it with the load generator's raw mode.
//!
//! Design: one `mio::Poll`, edge-triggered registrations for READABLE | WRITABLE, and
//! per-connection `readable`/`writable` flags that are set by events and cleared only
//! when a syscall returns `WouldBlock`. Bytes that cannot be written immediately are
//! kept in a per-connection output buffer; while that holds more than `MAX_PENDING`
//! the connection is not read (backpressure lands on the client via TCP flow control)
//! and reading resumes once the buffer drains. Each wakeup does a bounded amount of
//! work per connection; connections with work left are revisited before sleeping again.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
/// Stop reading from a connection while more than this much output is pending.
const MAX_PENDING: usize = 1 << 20;
/// Size of the shared scratch buffer used for each `read`.
const READ_CHUNK: usize = 64 << 10;
/// Reads performed for one connection per wakeup before yielding to the others.
const READS_PER_TURN: usize = 16;

fn parse_port() -> u16 {
    let usage = || -> ! {
        eprintln!("usage: raw-mio-echo --port PORT");
        std::process::exit(2);
    };
    let mut args = std::env::args().skip(1);
    let mut port = None;
    while let Some(arg) = args.next() {
        let value = if arg == "--port" {
            args.next().unwrap_or_else(|| usage())
        } else if let Some(v) = arg.strip_prefix("--port=") {
            v.to_owned()
        } else {
            usage()
        };
        port = Some(value.parse::<u16>().unwrap_or_else(|_| usage()));
    }
    port.unwrap_or_else(|| usage())
}

struct Conn {
    stream: TcpStream,
    /// Pending output is `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    /// The kernel may have bytes for us (last read did not return WouldBlock).
    readable: bool,
    /// The kernel may accept bytes (last write did not return WouldBlock).
    writable: bool,
    /// The peer has shut down its sending side (read returned 0).
    eof: bool,
    /// Already queued in `Server::again`.
    queued: bool,
}

impl Conn {
    fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }
}

/// What to do with a connection after driving it.
enum Next {
    /// Wait for the next readiness event.
    Idle,
    /// Work remains (turn budget ran out); revisit before sleeping.
    Again,
    /// Done or failed: deregister and drop.
    Close,
}

/// Write as much of `buf` as the socket takes. Returns bytes written; clears
/// `writable` on WouldBlock.
fn write_some(stream: &mut TcpStream, writable: &mut bool, buf: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match stream.write(&buf[done..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                *writable = false;
                break;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Flush pending output while the socket is writable.
fn flush(c: &mut Conn) -> io::Result<()> {
    if c.pending() > 0 && c.writable {
        let n = write_some(&mut c.stream, &mut c.writable, &c.out[c.out_pos..])?;
        c.out_pos += n;
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
        } else if c.out_pos >= c.out.len() / 2 && c.out_pos >= READ_CHUNK {
            // Compact so the buffer does not creep forward forever.
            c.out.drain(..c.out_pos);
            c.out_pos = 0;
        }
    }
    Ok(())
}

fn drive(c: &mut Conn, scratch: &mut [u8]) -> io::Result<Next> {
    flush(c)?;
    let mut reads = 0;
    while c.readable && !c.eof && c.pending() <= MAX_PENDING {
        if reads == READS_PER_TURN {
            return Ok(Next::Again);
        }
        reads += 1;
        match c.stream.read(scratch) {
            Ok(0) => {
                c.eof = true;
                c.readable = false;
            }
            Ok(n) => {
                let data = &scratch[..n];
                // Fast path: nothing queued, so write straight from the scratch buffer.
                let written = if c.pending() == 0 && c.writable {
                    write_some(&mut c.stream, &mut c.writable, data)?
                } else {
                    0
                };
                c.out.extend_from_slice(&data[written..]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if c.pending() > 0 {
            flush(c)?;
        }
    }
    if c.eof && c.pending() == 0 {
        // Echoed everything the peer sent; finish our side too.
        let _ = c.stream.shutdown(Shutdown::Write);
        return Ok(Next::Close);
    }
    Ok(Next::Idle)
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Connections whose turn budget ran out; driven again before the next sleep.
    again: Vec<usize>,
    /// accept() failed with something other than WouldBlock (e.g. EMFILE); retry soon.
    accept_retry: bool,
    scratch: Vec<u8>,
}

impl Server {
    fn accept_all(&mut self) {
        self.accept_retry = false;
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let idx = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(idx),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        eprintln!("register error: {e}");
                        self.free.push(idx);
                        continue;
                    }
                    self.conns[idx] = Some(Conn {
                        stream,
                        out: Vec::new(),
                        out_pos: 0,
                        readable: false,
                        writable: true,
                        eof: false,
                        queued: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Edge-triggered: the backlog will not be reported again, so poll
                    // with a short timeout and retry.
                    eprintln!("accept error: {e}");
                    self.accept_retry = true;
                    return;
                }
            }
        }
    }

    fn run(&mut self, idx: usize) {
        let Some(Some(c)) = self.conns.get_mut(idx) else { return };
        c.queued = false;
        match drive(c, &mut self.scratch) {
            Ok(Next::Idle) => {}
            Ok(Next::Again) => {
                c.queued = true;
                self.again.push(idx);
            }
            Ok(Next::Close) | Err(_) => self.close(idx),
        }
    }

    fn close(&mut self, idx: usize) {
        if let Some(mut c) = self.conns[idx].take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.free.push(idx);
            // Only `run` closes, after clearing `queued`, so `again` does not name this
            // slot; stale entries elsewhere are filtered by the `queued` check anyway.
        }
    }
}

fn main() -> io::Result<()> {
    let port = parse_port();
    let mut listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    let poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let local = listener.local_addr()?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {local}")?;
        out.flush()?;
    }

    let mut server = Server {
        poll,
        listener,
        conns: Vec::new(),
        free: Vec::new(),
        again: Vec::new(),
        accept_retry: false,
        scratch: vec![0; READ_CHUNK],
    };
    let mut events = Events::with_capacity(1024);

    loop {
        let timeout = if !server.again.is_empty() {
            Some(Duration::ZERO)
        } else if server.accept_retry {
            Some(Duration::from_millis(10))
        } else {
            None
        };
        if let Err(e) = server.poll.poll(&mut events, timeout) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if server.accept_retry {
            server.accept_all();
        }

        for event in events.iter() {
            let token = event.token();
            if token == LISTENER {
                server.accept_all();
                continue;
            }
            let idx = token.0;
            let Some(Some(c)) = server.conns.get_mut(idx) else { continue };
            // Errors and hang-ups surface through the next read/write syscall.
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                c.readable = true;
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                c.writable = true;
            }
            if !c.queued {
                server.run(idx);
            }
        }

        // Give connections that ran out of budget another turn (round-robin).
        let again = std::mem::take(&mut server.again);
        for idx in again {
            if matches!(server.conns.get(idx), Some(Some(c)) if c.queued) {
                server.run(idx);
            }
        }
    }
}
