//! wsloop behind the Debian nginx, configured with deploy/nginx.conf itself: a WebSocket echo,
//! an SSE stream and a held long poll all pass through the proxy, and with `--trust-proxy`
//! clients behind it are counted by their own addresses. nginx runs with a temporary prefix
//! on a loopback port; scripts/test installs it.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use client::{Client, UPGRADE};
use server::Server;

struct Nginx {
    child: Child,
    addr: SocketAddr,
    prefix: PathBuf,
}

impl Nginx {
    fn start(upstream: SocketAddr) -> Nginx {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nginx is not installed: run scripts/test, which installs it");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let prefix =
            std::env::temp_dir().join(format!("wsloop-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&prefix).unwrap();
        // nginx's workers drop to an unprivileged user when started as root.
        let _ = Command::new("chmod").arg("0777").arg(&prefix).status();
        let conf =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
                .unwrap()
                .replace("__PREFIX__", prefix.to_str().unwrap())
                .replace("__UPSTREAM__", &upstream.to_string())
                .replace("__LISTEN__", &addr.to_string());
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg("daemon off;")
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start; see {}/error.log",
                prefix.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            child,
            addr,
            prefix,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its workers (killed outright, it would
        // leave them running).
        // SAFETY: kill(2) on our own child with a valid signal number.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

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
    assert!(events.contains("id: 1\ndata: proxied\n\n"), "{events:?}");
    // A held long poll, released by a publish a moment later.
    let mut poll = send(nginx.addr, "GET /poll/held HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(400));
    publish(nginx.addr, "held", "released");
    let resp = read_until(&mut poll, "]}");
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(
        resp.ends_with(r#""messages":[{"seq":1,"text":"released"}]}"#),
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
