//! raw-mio-fanout: single-threaded raw TCP fan-out server on mio, the kernel-cost floor for wsloop's fan-out benchmarks (no WebSocket framing).
//!
//! Usage: `raw-mio-fanout --port PORT`
//!
//! Listens on 127.0.0.1:PORT (PORT 0 picks a free port). Every accepted connection is a
//! subscriber; bytes *received* on any connection are written, as they are, to every other
//! connection (a publisher is just a connection that writes). There is no HTTP handshake, no
//! framing and no topic: message boundaries are the clients' business (`wsloop-load fanout
//! --raw` writes fixed-size records from one publisher). Two connections writing at once would
//! interleave at arbitrary byte boundaries. Each accepted connection is first sent one byte,
//! `GREETING`: when a client has it, the server has accepted that connection, so a publisher
//! that waits for every subscriber's greeting cannot overtake one still in the accept queue.
//!
//! Design: one `mio::Poll`, edge-triggered READABLE | WRITABLE registrations, per-connection
//! `readable`/`writable` flags cleared only when a syscall returns `WouldBlock`. A chunk read
//! from one connection is written straight to each other connection whose queue is empty and
//! whose socket takes it; whatever a socket does not take is kept in that connection's output
//! queue and flushed on WRITABLE. Nothing blocks. While any connection holds more than
//! `MAX_PENDING` queued bytes, no connection is read (TCP flow control pushes back on the
//! writers) until it drains. Each connection gets at most `READS_PER_TURN` reads per wakeup;
//! connections with work left are revisited before the loop sleeps again.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
/// The byte every connection gets on accept.
const GREETING: u8 = b'+';
/// Stop reading anything while some connection has more than this much output pending.
const MAX_PENDING: usize = 1 << 20;
/// Size of the shared scratch buffer used for each `read`.
const READ_CHUNK: usize = 64 << 10;
/// Reads performed for one connection per wakeup before yielding to the others.
const READS_PER_TURN: usize = 16;

fn parse_port() -> u16 {
    let usage = || -> ! {
        eprintln!("usage: raw-mio-fanout --port PORT");
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
    /// More than `MAX_PENDING` queued (counted in `Server::over`).
    over: bool,
    /// Already queued in `Server::again`.
    queued: bool,
    /// A write or read failed, or the peer closed: close at the end of this turn.
    dead: bool,
}

impl Conn {
    fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }
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

struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Connections with work left; driven again before the next sleep.
    again: Vec<usize>,
    /// Connections over `MAX_PENDING`; nothing is read while this is not 0.
    over: usize,
    /// Readable connections skipped because `over` was not 0; revisited when it is.
    stalled: Vec<usize>,
    /// Connections marked dead, closed at the end of the current turn.
    dead: Vec<usize>,
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
                        out: vec![GREETING],
                        out_pos: 0,
                        readable: false,
                        writable: true,
                        over: false,
                        queued: false,
                        dead: false,
                    });
                    if let Some(c) = self.conns[idx].as_mut() {
                        if flush(c).is_err() {
                            c.dead = true;
                            self.dead.push(idx);
                        }
                    }
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

    /// Keep `over` in step with connection `idx`'s queue.
    fn account(&mut self, idx: usize) {
        let Some(Some(c)) = self.conns.get_mut(idx) else {
            return;
        };
        let over = c.pending() > MAX_PENDING;
        if over != c.over {
            c.over = over;
            if over {
                self.over += 1;
            } else {
                self.over -= 1;
                if self.over == 0 {
                    // Reading resumes: give the connections skipped meanwhile their turn.
                    let stalled = std::mem::take(&mut self.stalled);
                    for i in stalled {
                        self.requeue(i);
                    }
                }
            }
        }
    }

    fn requeue(&mut self, idx: usize) {
        if let Some(Some(c)) = self.conns.get_mut(idx) {
            if !c.queued {
                c.queued = true;
                self.again.push(idx);
            }
        }
    }

    /// Write `data` (read from connection `from`) to every other connection.
    fn broadcast(&mut self, from: usize, data: &[u8]) {
        for (j, slot) in self.conns.iter_mut().enumerate() {
            let Some(c) = slot else { continue };
            if j == from || c.dead {
                continue;
            }
            // Fast path: nothing queued, so write straight from the read buffer.
            let written = if c.pending() == 0 && c.writable {
                match write_some(&mut c.stream, &mut c.writable, data) {
                    Ok(n) => n,
                    Err(_) => {
                        c.dead = true;
                        self.dead.push(j);
                        continue;
                    }
                }
            } else {
                0
            };
            if written < data.len() {
                c.out.extend_from_slice(&data[written..]);
                if !c.over && c.pending() > MAX_PENDING {
                    c.over = true;
                    self.over += 1;
                }
            }
        }
    }

    /// Flush connection `idx`, then read from it (while nothing is over the limit).
    fn run(&mut self, idx: usize) {
        let Some(Some(c)) = self.conns.get_mut(idx) else {
            return;
        };
        c.queued = false;
        if flush(c).is_err() {
            c.dead = true;
            self.dead.push(idx);
        }
        self.account(idx);
        let mut reads = 0;
        loop {
            let Some(Some(c)) = self.conns.get_mut(idx) else {
                return;
            };
            if c.dead || !c.readable {
                break;
            }
            if self.over > 0 {
                self.stalled.push(idx);
                break;
            }
            if reads == READS_PER_TURN {
                self.requeue(idx);
                break;
            }
            reads += 1;
            let mut scratch = std::mem::take(&mut self.scratch);
            match c.stream.read(&mut scratch) {
                Ok(n) if n > 0 => self.broadcast(idx, &scratch[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EOF or an error: the connection is gone.
                _ => {
                    c.dead = true;
                    self.dead.push(idx);
                }
            }
            self.scratch = scratch;
        }
        self.reap();
    }

    /// Close every connection marked dead.
    fn reap(&mut self) {
        while let Some(idx) = self.dead.pop() {
            self.close(idx);
        }
    }

    fn close(&mut self, idx: usize) {
        if let Some(mut c) = self.conns[idx].take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
            if c.over {
                self.over -= 1;
                if self.over == 0 {
                    let stalled = std::mem::take(&mut self.stalled);
                    for i in stalled {
                        self.requeue(i);
                    }
                }
            }
            self.free.push(idx);
            // Stale entries for this slot in `again`/`stalled` are harmless: `run` on an
            // empty slot returns, and a reused slot merely gets an extra turn.
        }
    }
}

fn main() -> io::Result<()> {
    let port = parse_port();
    let mut listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
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
        over: 0,
        stalled: Vec::new(),
        dead: Vec::new(),
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
            let Some(Some(c)) = server.conns.get_mut(idx) else {
                continue;
            };
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

        // Give connections with work left another turn (round-robin).
        let again = std::mem::take(&mut server.again);
        for idx in again {
            if matches!(server.conns.get(idx), Some(Some(c)) if c.queued) {
                server.run(idx);
            }
        }
    }
}
