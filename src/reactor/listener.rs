//! Owns the listening socket: created with socket2 (SO_REUSEADDR, SO_REUSEPORT so one loop
//! per core can share a port — claimed first so no other process can join it — a deep
//! backlog), and the accept loop's error policy — accept
//! until WouldBlock, and on EMFILE shed the connection through a reserved descriptor instead
//! of spinning on a listener that stays readable.
//! Must not: spin on a listener that stays readable, or block.

use std::fs::File;
use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Bind a non-blocking listener on `addr`.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // The kernel caps this at net.core.somaxconn (4096 on current kernels).
    socket.listen(4096)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// Claim `addr` for this process before its workers share it. SO_REUSEPORT lets any socket
/// of the same user with the option join the port's group, so a second wsloop started on the
/// same port would silently take half the connections. A socket without it cannot bind a
/// port someone is listening on: bound (not listening) first, it fails with "address in use"
/// when another server has the port, and it holds a `:0` port while the workers' listeners
/// bind it. Drop it once they listen.
pub fn claim(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Is this accept error a lack of file descriptors (per process or system wide)?
pub fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// A descriptor held back so that, when the process runs out, one can be freed to accept a
/// pending connection and close it at once (the client sees a prompt close instead of an
/// endless SYN queue, and the loop does not spin on a listener that stays readable).
pub struct ReserveFd(Option<File>);

impl ReserveFd {
    pub fn new() -> ReserveFd {
        ReserveFd(File::open("/dev/null").ok())
    }

    /// Shed one pending connection: free the reserve, accept and drop, take the reserve
    /// back. Returns false when there was nothing to shed or no reserve to free.
    pub fn shed_one(&mut self, listener: &mio::net::TcpListener) -> bool {
        if self.0.take().is_none() {
            self.0 = File::open("/dev/null").ok();
            return false;
        }
        let shed = listener.accept().is_ok();
        self.0 = File::open("/dev/null").ok();
        shed
    }
}

impl Default for ReserveFd {
    fn default() -> Self {
        ReserveFd::new()
    }
}
