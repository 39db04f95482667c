//! wsloop behind the Debian nginx, configured with deploy/nginx.conf itself: a WebSocket echo,
//! an SSE stream and a held long poll all pass through the proxy, and with `--trust-proxy`
//! clients behind it are counted by their own addresses. nginx runs with a temporary prefix
//! on a loopback port; scripts/test installs it.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/nginx.rs"]
mod nginx;
#[path = "support/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use client::{Client, UPGRADE};
use nginx::Nginx;
use server::{at, Server};

fn send(addr: SocketAddr, raw: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    s
}

fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    while !String::from_utf8_lossy(&got).contains(needle) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}; so far: {}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn publish(addr: SocketAddr, topic: &str, body: &str) {
    let mut s = send(
        addr,
        &format!("POST /publish/{topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    );
    assert!(read_until(&mut s, "\r\n\r\n").starts_with("HTTP/1.1 202"));
}

#[test]
fn websocket_sse_and_a_held_long_poll_pass_through_nginx() {
    let srv = Server::start(&["--workers", "1"]);
    let e = srv.epoch();
    let nginx = Nginx::start(srv.addr());
    // WebSocket: the Upgrade/Connection headers survive the proxy.
    let mut ws = Client::open(nginx.addr);
    ws.echo("through nginx");
    ws.send_frame(0x82, &vec![9u8; 100_000]);
    assert_eq!(ws.read_frame(), Some((0x82, vec![9u8; 100_000])));
    // SSE: not buffered by the proxy.
    let mut sse = send(nginx.addr, "GET /sse/via HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = read_until(&mut sse, "retry: 3000\n\n");
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.contains("text/event-stream"),
        "{head}"
    );
    publish(nginx.addr, "via", "proxied");
    // nginx re-frames the stream as chunked for its client; the event itself is intact.
    let events = read_until(&mut sse, "data: proxied\n\n");
    let event = at(e, "id: {1}\ndata: proxied\n\n");
    assert!(events.contains(&event), "{events:?}");
    // A held long poll, released by a publish a moment later.
    let mut poll = send(nginx.addr, "GET /poll/held HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(400));
    publish(nginx.addr, "held", "released");
    let resp = read_until(&mut poll, "]}");
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(
        resp.ends_with(&at(e, r#""messages":[{"seq":{1},"text":"released"}]}"#)),
        "{resp}"
    );
}

/// Ask for a WebSocket on /echo from `src`; the response head, and the client if it opened.
fn upgrade_from(src: [u8; 4], addr: SocketAddr, extra: &str) -> (String, Client) {
    let mut c = Client::connect_from(src, addr);
    c.send_raw(
        UPGRADE
            .replacen("Host: t\r\n", &format!("Host: t\r\n{extra}"), 1)
            .as_bytes(),
    );
    (c.read_head(), c)
}

#[test]
fn behind_nginx_with_trust_proxy_each_client_is_counted_by_its_own_address() {
    // One WebSocket per client address. Without --trust-proxy every connection would come
    // from nginx's address and the second client would be refused.
    let srv = Server::start(&[
        "--workers",
        "1",
        "--trust-proxy",
        "127.0.0.1",
        "--max-connections-per-ip",
        "1",
    ]);
    let nginx = Nginx::start(srv.addr());
    let (head, mut alice) = upgrade_from([127, 0, 0, 2], nginx.addr, "");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // Bob forges X-Forwarded-For with Alice's address: nginx appends his real one, which
    // wsloop reads (the right-most untrusted), so he is Bob and gets his own connection.
    let (head, mut bob) =
        upgrade_from([127, 0, 0, 3], nginx.addr, "X-Forwarded-For: 127.0.0.2\r\n");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // Alice's second WebSocket is over her cap: wsloop's 429 reaches her through nginx.
    let (head, _) = upgrade_from([127, 0, 0, 2], nginx.addr, "");
    assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
    // Nor can she pass as someone else: her forged header is on the left of nginx's entry.
    let (head, _) = upgrade_from(
        [127, 0, 0, 2],
        nginx.addr,
        "X-Forwarded-For: 198.51.100.1\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
    alice.echo("alice through nginx");
    bob.echo("bob through nginx");
}
