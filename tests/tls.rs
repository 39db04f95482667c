//! wss:// and https:// over loopback with a self-signed certificate (rcgen): a Python
//! `websockets` client exchanges messages over TLS, an https SSE client receives a published
//! event, and a client that sends garbage instead of a ClientHello is closed without
//! disturbing the others.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use server::Server;

/// A self-signed certificate for 127.0.0.1/localhost in a fresh directory: (cert, key).
fn certificate(dir: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("wsloop-tls-{dir}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn start(tag: &str) -> (Server, PathBuf) {
    let (cert, key) = certificate(tag);
    let srv = Server::start(&[
        "--workers",
        "1",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    (srv, cert)
}

/// Run a Python snippet with `websockets`/`ssl`; `CA` is the certificate, `PORT` the port.
fn python(script: &str, cert: &PathBuf, port: u16) -> String {
    let python = std::env::var("WSLOOP_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .env("CA", cert)
        .env("PORT", port.to_string())
        .output()
        .expect("python3 (scripts/test installs websockets)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python failed:\n{text}");
    text
}

#[test]
fn a_wss_client_exchanges_messages() {
    let (srv, cert) = start("wss");
    let out = python(
        r#"
import asyncio, os, ssl, websockets
async def main():
    ctx = ssl.create_default_context(cafile=os.environ["CA"])
    url = "wss://127.0.0.1:%s/echo" % os.environ["PORT"]
    async with websockets.connect(url, ssl=ctx, max_size=None, compression=None) as ws:
        for n in (0, 1, 125, 126, 65536, 1 << 20):
            await ws.send(b"x" * n)
            assert await ws.recv() == b"x" * n, n
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.close(1000, "done")
    assert ws.close_code == 1000, ws.close_code
    print("ok", ws.response.headers.get("Upgrade"))
asyncio.run(asyncio.wait_for(main(), 30))
"#,
        &cert,
        srv.port,
    );
    assert!(out.contains("ok websocket"), "{out}");
}

#[test]
fn an_https_sse_client_receives_events() {
    let (srv, cert) = start("sse");
    let out = python(
        r#"
import os, socket, ssl
port = int(os.environ["PORT"])
ctx = ssl.create_default_context(cafile=os.environ["CA"])
ctx.set_alpn_protocols(["http/1.1"])
def tls():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
    assert s.selected_alpn_protocol() == "http/1.1", s.selected_alpn_protocol()
    return s
sse = tls()
sse.sendall(b"GET /sse/secure HTTP/1.1\r\nHost: localhost\r\n\r\n")
got = b""
while b"retry:" not in got:
    got += sse.recv(4096)
pub = tls()
pub.sendall(b"POST /publish/secure HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\n\r\nsecret")
assert pub.recv(4096).startswith(b"HTTP/1.1 202")
while b"data: secret\n\n" not in got:
    got += sse.recv(4096)
print("event:", got.split(b"\r\n\r\n", 1)[1].decode().replace("\n", "|"))
"#,
        &cert,
        srv.port,
    );
    // The first message of a topic on a server alone: numbered from its epoch.
    let event = out.split("event: retry: 3000||id: ").nth(1).unwrap_or("");
    let (id, rest) = event.split_once('|').unwrap_or(("", ""));
    assert!(id.parse::<u64>().is_ok(), "{out}");
    assert!(rest.starts_with("data: secret||"), "{out}");
}

#[test]
fn garbage_instead_of_a_client_hello_closes_only_that_connection() {
    let (mut srv, cert) = start("garbage");
    let mut plain = TcpStream::connect(srv.addr()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    // The server answers with a TLS alert (or nothing) and closes; never with HTTP.
    let _ = plain.read_to_end(&mut buf);
    assert!(!buf.starts_with(b"HTTP/"), "{buf:?}");
    if let Some(first) = buf.first() {
        assert_eq!(*first, 0x15, "a TLS alert record");
    }
    srv.assert_running();
    let out = python(
        r#"
import asyncio, os, ssl, websockets
async def main():
    ctx = ssl.create_default_context(cafile=os.environ["CA"])
    async with websockets.connect("wss://localhost:%s/echo" % os.environ["PORT"], ssl=ctx) as ws:
        await ws.send("still here"); print(await ws.recv())
asyncio.run(asyncio.wait_for(main(), 20))
"#,
        &cert,
        srv.port,
    );
    assert!(out.contains("still here"), "{out}");
}

/// The TLS session lends its buffers (src/tls/session.rs): records the socket cannot take
/// wait in it while a client reads slowly, a TLS 1.2 client works the same way, and every
/// byte arrives in order.
#[test]
fn a_slow_reader_and_a_tls12_client_get_every_byte_in_order() {
    let (srv, cert) = start("slow");
    let out = python(
        r#"
import asyncio, os, ssl, websockets
async def echo_all(ctx, label):
    url = "wss://127.0.0.1:%s/echo" % os.environ["PORT"]
    # max_queue=1: the client stops reading while its queue is full, so the server's writes
    # block and what it encrypted waits in its session.
    async with websockets.connect(url, ssl=ctx, max_size=None, max_queue=1, compression=None) as ws:
        sent = [bytes([i]) * (65536 + i) for i in range(40)]
        for m in sent:
            await ws.send(m)
        await asyncio.sleep(0.5)
        for i, m in enumerate(sent):
            got = await ws.recv()
            assert got == m, (label, i, len(got))
        for i in range(200):
            await ws.send("small %d" % i)
        for i in range(200):
            assert await ws.recv() == "small %d" % i
        version = ws.transport.get_extra_info("ssl_object").version()
        await ws.close(1000, "done")
    assert ws.close_code == 1000, ws.close_code
    print(label, "ok", version)
async def main():
    ctx = ssl.create_default_context(cafile=os.environ["CA"])
    await echo_all(ctx, "tls13")
    old = ssl.create_default_context(cafile=os.environ["CA"])
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    await echo_all(old, "tls12")
asyncio.run(asyncio.wait_for(main(), 60))
"#,
        &cert,
        srv.port,
    );
    assert!(out.contains("tls13 ok TLSv1.3"), "{out}");
    assert!(out.contains("tls12 ok TLSv1.2"), "{out}");
}
