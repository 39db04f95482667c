//! The browser client (clients/js): its logic under Node's own test runner against a fake
//! server (clients/js/test/), and the server serving it at `GET /wsloop.js` byte for byte.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use server::Server;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/js");

#[test]
fn the_clients_logic_passes_nodes_test_runner() {
    let node = std::env::var("WSLOOP_NODE").unwrap_or_else(|_| "node".into());
    let out = Command::new(&node)
        .args(["--test", "test/"])
        .current_dir(DIR)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {node} ({e}); scripts/test installs nodejs"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node --test failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("# fail 0"), "{text}");
    let passed: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("# pass ")?.trim().parse().ok())
        .unwrap_or(0);
    assert!(passed >= 8, "only {passed} tests ran:\n{text}");
}

#[test]
fn the_server_serves_the_client_at_wsloop_js() {
    let srv = Server::start(&[]);
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.write_all(b"GET /wsloop.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8(resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/javascript; charset=utf-8"),
        "{head}"
    );
    let file = std::fs::read_to_string(format!("{DIR}/wsloop.js")).unwrap();
    assert_eq!(body, file);
}

#[test]
fn an_sse_stream_asked_for_hello_starts_with_it_and_without_does_not() {
    let srv = Server::start(&[]);
    let first_bytes = |path: &str| {
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("retry: ") || got.ends_with(b"retry: ") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended");
            got.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&got).matches("\n\n").count() >= 2 {
                break;
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let with = first_bytes("/sse/t?hello=1");
    let body = with.split_once("\r\n\r\n").unwrap().1;
    assert!(
        body.starts_with("retry: 3000\n\nevent: hello\ndata: {\"topic\":\"t\"}\n\n"),
        "{body:?}"
    );
    let without = first_bytes("/sse/t");
    assert!(!without.contains("hello"), "{without:?}");
}
