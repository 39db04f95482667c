//! tests/per_ip_cap.rs: `--max-connections-per-ip` and `--trust-proxy` over loopback. Each
//! client binds its own source address (127.0.0.x) before connecting, so one machine plays
//! several clients, and 127.0.0.1 plays the trusted proxy.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use client::{Client, UPGRADE};
use server::Server;

const PROXY: [u8; 4] = [127, 0, 0, 1];
const ALICE: [u8; 4] = [127, 0, 0, 2];
const BOB: [u8; 4] = [127, 0, 0, 3];
const CAROL: [u8; 4] = [127, 0, 0, 4];

/// The upgrade request on /echo with `extra` header lines (each ending in CRLF).
fn upgrade_request(extra: &str) -> String {
    UPGRADE.replacen("Host: t\r\n", &format!("Host: t\r\n{extra}"), 1)
}

/// Open a WebSocket from `src`, sending `extra` headers: the client, or the response head
/// that refused it ("" if the connection was closed without one).
fn open_from(src: [u8; 4], addr: SocketAddr, extra: &str) -> Result<Client, String> {
    let mut c = Client::connect_from(src, addr);
    // A connection refused at accept may already be closed: the write may fail.
    let _ = c.sock.write_all(upgrade_request(extra).as_bytes());
    let head = c.read_head();
    if head.starts_with("HTTP/1.1 101 ") {
        Ok(c)
    } else {
        Err(head)
    }
}

fn open_ok(src: [u8; 4], addr: SocketAddr, extra: &str) -> Client {
    open_from(src, addr, extra).unwrap_or_else(|head| panic!("{src:?} {extra:?}: {head}"))
}

/// A direct client over its cap is refused at accept, before it says anything: read the
/// answer without sending (sending first could race the server's close into a reset).
fn refused_at_accept(src: [u8; 4], addr: SocketAddr) -> String {
    let mut c = Client::connect_from(src, addr);
    let head = c.read_head();
    assert!(
        c.read_to_end().len() < 100,
        "the connection is closed after the answer"
    );
    head
}

fn assert_429(head: &str) {
    assert!(
        head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{head}"
    );
    assert!(head.contains("Connection: close\r\n"), "{head}");
}

/// Retry opening from `src` until a slot freed by a close is reused (the server frees a
/// connection once it has read the peer's FIN).
fn open_once_freed(src: [u8; 4], addr: SocketAddr, extra: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match open_from(src, addr, extra) {
            Ok(c) => return c,
            Err(head) => assert!(
                Instant::now() < deadline,
                "{src:?} {extra:?} still refused 5 s after a close: {head}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A keep-alive HTTP connection: requests one after another, responses read exactly.
struct Http {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    fn from(src: [u8; 4], addr: SocketAddr) -> Http {
        Http {
            sock: Client::connect_from(src, addr).sock,
            buf: Vec::new(),
        }
    }

    /// `GET path` with `extra` header lines; the response head and body.
    fn get(&mut self, path: &str, extra: &str) -> String {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
        self.sock.write_all(req.as_bytes()).expect("write");
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill();
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.trim().parse().unwrap());
        while self.buf.len() < head_end + len {
            self.fill();
        }
        let resp: Vec<u8> = self.buf.drain(..head_end + len).collect();
        String::from_utf8_lossy(&resp).into_owned()
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16384];
        let n = std::io::Read::read(&mut self.sock, &mut chunk).expect("read");
        assert!(n > 0, "closed before the response ended: {:?}", self.buf);
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

#[test]
fn the_next_connection_over_the_cap_is_refused_and_a_close_frees_its_slot() {
    // Two workers share the port: the cap is process-wide, wherever the kernel puts each
    // connection.
    let srv = Server::start(&["--workers", "2", "--max-connections-per-ip", "2"]);
    let addr = srv.addr();
    let mut a = open_ok(ALICE, addr, "");
    let mut b = open_ok(ALICE, addr, "");
    for _ in 0..3 {
        assert_429(&refused_at_accept(ALICE, addr));
    }
    // Other addresses are not disturbed, nor are Alice's open connections.
    let mut other = open_ok(BOB, addr, "");
    other.echo("bob is not alice");
    a.echo("a still works");
    b.echo("b still works");
    // Alice closes one: a new connection of hers is accepted again, and only one.
    drop(a);
    let mut c = open_once_freed(ALICE, addr, "");
    c.echo("c took a's slot");
    assert_429(&refused_at_accept(ALICE, addr));
    b.echo("b is untouched");
    // Counted as rejections by reason, and as 429 answers (at least the four above; a retry
    // that came before the server freed a's slot was refused too).
    let text = Http::from(CAROL, addr).get("/metrics", "");
    let refused = metric(&text, "wsloop_connections_refused_total{reason=\"per_ip\"}");
    assert!(refused >= 4.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "wsloop_upgrades_total{result=\"rejected\",status=\"429\"}"
        ),
        refused
    );
    // Alice, Bob and Carol.
    assert_eq!(metric(&text, "wsloop_client_addresses"), 3.0);
}

#[test]
fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let srv = Server::start(&[
        "--max-connections-per-ip",
        "1",
        "--trust-proxy",
        "127.0.0.1",
    ]);
    let addr = srv.addr();
    let mut a = open_ok(ALICE, addr, "X-Forwarded-For: 203.0.113.9\r\n");
    // Claiming to be someone else does not get Alice a second connection: she is refused
    // at accept, by her socket address, before any header could be read.
    assert_429(&refused_at_accept(ALICE, addr));
    // Nor can Bob use Alice's claimed address (or any other) to get Alice's slot counted
    // against him: his headers are ignored too, and he is simply Bob.
    let mut b = open_ok(
        BOB,
        addr,
        "X-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 127.0.0.2\r\n",
    );
    a.echo("alice");
    b.echo("bob");
}

#[test]
fn behind_a_trusted_proxy_the_cap_applies_to_each_forwarded_client() {
    let srv = Server::start(&[
        "--max-connections-per-ip",
        "1",
        "--trust-proxy",
        "127.0.0.1,::1",
        "--poll-hold",
        "200ms",
    ]);
    let addr = srv.addr();
    // Every connection comes from the proxy; each request names its client.
    let mut x = open_ok(PROXY, addr, "X-Forwarded-For: 203.0.113.1\r\n");
    let mut y = open_ok(PROXY, addr, "X-Forwarded-For: 203.0.113.2\r\n");
    // 203.0.113.1 again, named four ways: the plain header, a forged left part (the
    // right-most untrusted address counts), two field lines with a trusted hop, X-Real-IP.
    for extra in [
        "X-Forwarded-For: 203.0.113.1\r\n",
        "X-Forwarded-For: 198.51.100.7, 203.0.113.1\r\n",
        "X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-For: 203.0.113.1, 127.0.0.1\r\n",
        "X-Real-IP: 203.0.113.1\r\n",
    ] {
        match open_from(PROXY, addr, extra) {
            Ok(_) => panic!("{extra:?}: a second connection of 203.0.113.1 was accepted"),
            Err(head) => assert_429(&head),
        }
    }
    // The proxy itself is never capped: requests naming no untrusted client pass.
    let mut plain: Vec<Client> = (0..3).map(|_| open_ok(PROXY, addr, "")).collect();
    let mut trusted_hop = open_ok(PROXY, addr, "X-Forwarded-For: 127.0.0.1\r\n");
    // A kept-alive proxy connection counts for the client of its current request: free
    // while it names 203.0.113.3, refused once it names 203.0.113.2 (who has a WebSocket).
    let mut pooled = Http::from(PROXY, addr);
    for _ in 0..2 {
        let ok = pooled.get("/healthz", "X-Forwarded-For: 203.0.113.3\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    }
    // Between requests it counts for nobody: 203.0.113.3 may open a WebSocket now.
    let mut z = open_ok(PROXY, addr, "X-Forwarded-For: 203.0.113.3\r\n");
    assert_429(&pooled.get("/healthz", "X-Forwarded-For: 203.0.113.2\r\n"));
    // A held long poll counts for its client until it is answered (here by the hold
    // deadline, 204), then the kept-alive connection counts for nobody again.
    let mut pooled = Http::from(PROXY, addr);
    let held = pooled.get("/poll/quiet", "X-Forwarded-For: 203.0.113.4\r\n");
    assert!(held.starts_with("HTTP/1.1 204 "), "{held}");
    let mut w = open_ok(PROXY, addr, "X-Forwarded-For: 203.0.113.4\r\n");
    // Closing 203.0.113.1's WebSocket lets it in again.
    drop(x);
    x = open_once_freed(PROXY, addr, "X-Forwarded-For: 203.0.113.1\r\n");
    for c in [&mut x, &mut y, &mut z, &mut w, &mut trusted_hop] {
        c.echo("through the proxy");
    }
    for c in &mut plain {
        c.echo("the proxy itself");
    }
}
