//! Faults over loopback: peers that reset (RST) mid-handshake, mid-frame and mid-write,
//! half-close after their close frame, vanish with a FIN and no close frame, or ignore the
//! server's close (shutdown, protocol error, application close); and the server running out of
//! file descriptors (a prompt 503 at the default cap; past a cap set too high, prompt closes
//! and one log line a second). After each fault the server's descriptor for that peer is gone and a fresh
//! client is still served.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use client::{Client, UPGRADE};
use server::Server;
use socket2::{Domain, SockRef, Socket, Type};

/// Close `sock` with SO_LINGER 0: the kernel sends RST instead of FIN.
fn reset(sock: TcpStream) {
    SockRef::from(&sock)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(sock);
}

/// A one-worker server (so descriptors can be counted) with `args`, and its descriptor count
/// once it is fully up and idle: a first client has been served and has left.
fn start(args: &[&str]) -> (Server, usize) {
    let mut all = vec!["--workers", "1"];
    all.extend_from_slice(args);
    let srv = Server::start(&all);
    let before = srv.fd_count();
    Client::open(srv.addr()).echo("warm-up");
    let idle = srv.wait_fds_at_most(before, Duration::from_secs(5));
    (srv, idle)
}

/// The server still serves a new client, and holds no descriptor for the faulty peer.
fn still_serves(srv: &mut Server, idle_fds: usize) {
    let left = srv.wait_fds_at_most(idle_fds, Duration::from_secs(5));
    assert_eq!(
        left, idle_fds,
        "the faulty peer's descriptor was not released"
    );
    let mut fresh = Client::open(srv.addr());
    fresh.echo("fresh client after the fault");
    srv.assert_running();
}

#[test]
fn reset_mid_handshake() {
    let (mut srv, idle) = start(&[]);
    let mut c = Client::connect(srv.addr());
    c.send_raw(&UPGRADE.as_bytes()[..40]);
    thread::sleep(Duration::from_millis(50)); // the server has read the first half
    reset(c.sock);
    still_serves(&mut srv, idle);
}

#[test]
fn reset_mid_frame() {
    let (mut srv, idle) = start(&[]);
    let mut c = Client::open(srv.addr());
    let f = client::frame(0x82, &[7; 1000]);
    c.send_raw(&f[..500]);
    thread::sleep(Duration::from_millis(50));
    reset(c.sock);
    still_serves(&mut srv, idle);
}

#[test]
fn reset_mid_write_with_a_large_reply_queued() {
    let (mut srv, idle) = start(&[]);
    // A small receive buffer, set before connecting, keeps most of the reply in the server.
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&srv.addr().into()).unwrap();
    let mut c = Client::from_stream(sock.into());
    c.send_raw(UPGRADE.as_bytes());
    assert!(c.read_head().starts_with("HTTP/1.1 101 "));
    // A 1 MiB message (the default limit): its echo is 1 MiB the server must write.
    c.send_raw(&client::frame(0x82, &vec![0x5A; 1 << 20]));
    let mut first = [0u8; 10];
    c.sock.read_exact(&mut first).unwrap();
    assert_eq!(&first[..2], &[0x82, 127], "the echo has started");
    thread::sleep(Duration::from_millis(100));
    reset(c.sock);
    still_serves(&mut srv, idle);
}

#[test]
fn half_close_right_after_a_close_frame_is_answered_then_closed() {
    let (mut srv, idle) = start(&[]);
    let mut c = Client::open(srv.addr());
    c.send_frame(0x88, &1000u16.to_be_bytes());
    c.sock.shutdown(Shutdown::Write).unwrap();
    let (op, payload) = c.read_frame().expect("the server answers the close");
    assert_eq!((op, &payload[..]), (0x88, &1000u16.to_be_bytes()[..]));
    assert_eq!(c.read_frame(), None, "then closes");
    still_serves(&mut srv, idle);
}

/// `{"type":"join","id":N,...}` → N.
fn member_id(notice: &str) -> u64 {
    let rest = notice.split("\"id\":").nth(1).expect("an id");
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_fin_without_a_close_frame_is_a_1006_the_room_hears_about() {
    let (mut srv, idle) = start(&[]);
    let mut gone = Client::open_path(srv.addr(), "/chat/faults");
    let gone_id = member_id(&gone.next_text());
    let mut stays = Client::open_path(srv.addr(), "/chat/faults");
    let stays_id = member_id(&stays.next_text());
    assert_ne!(gone_id, stays_id);
    assert!(gone.next_text().contains("join"));
    gone.sock.shutdown(Shutdown::Write).unwrap(); // FIN, no close frame
    let leave = stays.next_text();
    assert!(
        leave.starts_with(r#"{"type":"leave""#) && member_id(&leave) == gone_id,
        "{leave}"
    );
    assert_eq!(
        gone.read_frame(),
        None,
        "no close frame for a vanished peer, then FIN"
    );
    drop(gone);
    drop(stays);
    still_serves(&mut srv, idle);
}

#[test]
fn a_peer_that_ignores_the_shutdown_close_is_dropped_at_the_drain_deadline() {
    let mut srv = Server::start(&["--drain-timeout", "1s"]);
    let mut stubborn = Client::open(srv.addr());
    stubborn.echo("before");
    let start = Instant::now();
    srv.signal(libc::SIGTERM);
    let (op, payload) = stubborn.read_frame().expect("close 1001");
    assert_eq!((op, &payload[..2]), (0x88, &1001u16.to_be_bytes()[..]));
    // Never answered: the server exits at the drain deadline, not before, not much after.
    let status = srv
        .wait_exit(Duration::from_secs(5))
        .expect("exits by itself");
    let took = start.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "exited after {took:?} with a 1 s drain deadline"
    );
    assert_eq!(stubborn.read_frame(), None, "the connection is gone");
    // The server is gone by design here; a fresh server on the same binary still serves.
    let srv = Server::start(&[]);
    Client::open(srv.addr()).echo("a new server");
}

#[test]
fn a_peer_that_ignores_a_protocol_error_close_is_dropped_after_the_linger() {
    let (mut srv, idle) = start(&["--close-linger", "1s"]);
    let mut c = Client::open(srv.addr());
    c.send_raw(&[0x81, 0x02, b'h', b'i']); // unmasked: fail with 1002
    let sent = Instant::now();
    let (op, payload) = c.read_frame().expect("close 1002");
    assert_eq!((op, &payload[..2]), (0x88, &1002u16.to_be_bytes()[..]));
    assert_eq!(c.read_frame(), None, "§7.1.7: FIN right after the close");
    // We neither answer nor close: the server waits for our FIN until the linger ends.
    thread::sleep(Duration::from_millis(400));
    assert_eq!(srv.fd_count(), idle + 1, "dropped before the linger");
    let left = srv.wait_fds_at_most(idle, Duration::from_secs(4));
    assert_eq!(left, idle, "never dropped");
    let took = sent.elapsed();
    assert!(took >= Duration::from_millis(900), "dropped after {took:?}");
    drop(c);
    still_serves(&mut srv, idle);
}

#[test]
fn a_peer_that_ignores_an_application_close_is_dropped_after_the_linger() {
    let (mut srv, idle) = start(&["--close-linger", "1s"]);
    let mut c = Client::open_path(srv.addr(), "/chat/linger");
    assert!(c.next_text().contains("join"));
    c.send_frame(0x82, b"binary is refused"); // the chat app closes with 1003
    let (op, payload) = c.read_frame().expect("close 1003");
    let sent = Instant::now();
    assert_eq!((op, &payload[..2]), (0x88, &1003u16.to_be_bytes()[..]));
    // The server waits for our close frame; we never send it, so it drops us after the linger.
    assert_eq!(c.read_frame(), None);
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "dropped after {took:?} with a 1 s linger"
    );
    drop(c);
    still_serves(&mut srv, idle);
}

/// Connect and upgrade, giving up after `wait`: Ok with the client, or Err saying how the
/// attempt ended ("closed" when the server closed or reset it, "timeout" when nothing came).
fn try_open(addr: SocketAddr, wait: Duration) -> Result<Client, &'static str> {
    let sock = TcpStream::connect_timeout(&addr, wait).map_err(|_| "connect failed")?;
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut c = Client::from_stream(sock);
    c.sock.set_read_timeout(Some(wait)).unwrap();
    if c.sock.write_all(UPGRADE.as_bytes()).is_err() {
        return Err("closed");
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.sock.read(&mut byte) {
            Ok(0) => return Err("closed"),
            Ok(_) => head.push(byte[0]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err("timeout")
            }
            Err(_) => return Err("closed"),
        }
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    c.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    Ok(c)
}

#[test]
fn out_of_file_descriptors_sheds_the_excess_without_spinning_and_recovers() {
    // A connection cap the operator chose above what the descriptors allow (the default is
    // lowered to fit: the next test), so the server does run out; its log goes to a file to
    // count the shed lines.
    let log = std::env::temp_dir().join(format!("wsloop-emfile-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let args = ["--workers", "1", "--max-connections", "100000"];
    let mut srv = Server::start_with_nofile_and(&args, 64, move |cmd| {
        cmd.stderr(file);
    });
    let addr = srv.addr();
    // Fill every descriptor the server has.
    let mut open = Vec::new();
    let refused = loop {
        assert!(open.len() < 64, "more connections than descriptors");
        let start = Instant::now();
        match try_open(addr, Duration::from_secs(3)) {
            Ok(c) => open.push(c),
            Err(why) => break (why, start.elapsed()),
        }
    };
    assert!(
        open.len() >= 40,
        "only {} connections under 64 fds",
        open.len()
    );
    assert_eq!(refused.0, "closed", "the excess client hung in the backlog");
    assert!(
        refused.1 < Duration::from_secs(1),
        "closed after {:?}",
        refused.1
    );

    // The connections it has keep working.
    for (i, c) in open.iter_mut().enumerate() {
        c.echo(&format!("still here {i}"));
    }

    // Clients keep knocking: each is closed promptly, and the loop does not spin.
    let knocking = Duration::from_millis(1500);
    let knocker = thread::spawn(move || {
        let (mut closed, mut hung) = (0, 0);
        let start = Instant::now();
        while start.elapsed() < knocking {
            match try_open(addr, Duration::from_secs(1)) {
                Ok(_) => panic!("accepted with no descriptor left"),
                Err("timeout") => hung += 1,
                Err(_) => closed += 1,
            }
            thread::sleep(Duration::from_millis(5));
        }
        (closed, hung)
    });
    thread::sleep(Duration::from_millis(250));
    let (t0, cpu0) = (Instant::now(), srv.cpu_ticks());
    thread::sleep(Duration::from_millis(1000));
    let (wall, cpu) = (t0.elapsed(), srv.cpu_ticks() - cpu0);
    let (closed, hung) = knocker.join().unwrap();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let share = cpu as f64 / hz / wall.as_secs_f64();
    eprintln!(
        "{} connections under 64 fds; {closed} knocks closed, {hung} hung; server CPU {:.1}% of a core",
        open.len(),
        share * 100.0
    );
    assert!(
        share < 0.5,
        "the server used {:.0}% of a core",
        share * 100.0
    );
    assert_eq!(hung, 0, "{hung} knocks hung ({closed} closed)");
    assert!(closed >= 20, "only {closed} knocks");
    // One log line a second, each with its count, not one per shed connection.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines = text
        .lines()
        .filter(|l| l.contains("pending connection(s)"))
        .count();
    assert!(
        (1..=4).contains(&lines),
        "{lines} shed lines for {closed} knocks in 1.5 s:\n{text}"
    );

    // Freeing some descriptors lets new clients in again.
    let before = srv.fd_count();
    open.truncate(open.len() - 5);
    let now = srv.wait_fds_at_most(before - 5, Duration::from_secs(5));
    assert_eq!(now, before - 5, "closed connections kept their descriptors");
    for i in 0..3 {
        let mut c = try_open(addr, Duration::from_secs(3)).expect("accepted again");
        c.echo(&format!("new {i}"));
        open.push(c);
    }
    for c in open.iter_mut() {
        c.echo("everyone");
    }
    srv.assert_running();
}

#[test]
fn at_the_default_cap_a_client_gets_503_not_a_hang() {
    // The default connection cap is the open-file limit less the server's own descriptors,
    // so the client past it gets a prompt 503 (and the server never runs out).
    let srv = Server::start_with_nofile(&["--workers", "1"], 64);
    let addr = srv.addr();
    let mut open = Vec::new();
    let refused = loop {
        assert!(open.len() < 64, "more connections than descriptors");
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(UPGRADE.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                other => panic!("connection {} ended with {other:?}", open.len()),
            }
        }
        if !head.starts_with(b"HTTP/1.1 101 ") {
            break String::from_utf8_lossy(&head).into_owned();
        }
        open.push(s);
    };
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(
        open.len() >= 40,
        "only {} connections under 64 fds",
        open.len()
    );
}
