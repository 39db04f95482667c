//! wsloop behind the Debian nginx, configured with deploy/nginx.conf itself: a WebSocket echo,
//! an SSE stream and a held long poll all pass through the proxy. nginx runs with a temporary
//! prefix on a loopback port; scripts/test installs it.

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

use client::Client;
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
