//! The upgrade over real sockets: malformed requests get their exact status with
//! `Connection: close` and the server closes; bytes right after a good request are frames.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use client::{frame, Client, UPGRADE};
use server::Server;

fn status_of(srv: &Server, raw: &[u8]) -> (u16, String) {
    let mut c = Client::connect(srv.addr());
    c.send_raw(raw);
    let head = c.read_head();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // A rejected upgrade ends the connection (plain HTTP requests, without `Upgrade`, may
    // keep theirs alive): the server sends FIN after the response.
    let upgrade = String::from_utf8_lossy(raw).contains("Upgrade: websocket");
    if status != 101 && upgrade {
        let rest = c.read_to_end();
        assert!(head.contains("Connection: close"), "{head}");
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert_eq!(rest.len(), body_len, "nothing after the response body");
    }
    (status, head)
}

fn with(header_line: &str, without: &str) -> String {
    UPGRADE
        .replace(without, "")
        .replace("\r\n\r\n", &format!("\r\n{header_line}\r\n\r\n"))
}

#[test]
fn malformed_upgrades_get_their_exact_status() {
    let srv = Server::start(&["--allowed-origin", "https://ok.example"]);
    let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    let many_headers: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let big_head = format!(
        "{}X-Big: {}\r\n\r\n",
        &UPGRADE[..UPGRADE.len() - 2],
        "b".repeat(17000)
    );
    let ok_origin = with("Origin: https://ok.example", "");
    let cases: Vec<(&str, String, u16)> = vec![
        ("good request, allowed origin", ok_origin.clone(), 101),
        ("no origin with an allow-list", UPGRADE.to_string(), 403),
        (
            "other origin",
            with("Origin: https://evil.example", ""),
            403,
        ),
        ("POST", ok_origin.replacen("GET", "POST", 1), 405),
        (
            "HTTP/1.0",
            ok_origin.replacen("HTTP/1.1", "HTTP/1.0", 1),
            505,
        ),
        ("no Host", ok_origin.replace("Host: t\r\n", ""), 400),
        (
            "no Upgrade",
            ok_origin.replace("Upgrade: websocket\r\n", ""),
            426,
        ),
        (
            "version 8",
            ok_origin.replace("Version: 13", "Version: 8"),
            426,
        ),
        (
            "short key",
            ok_origin.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="),
            400,
        ),
        (
            "no Connection: upgrade",
            ok_origin.replace("Connection: Upgrade\r\n", ""),
            400,
        ),
        ("garbage", "HELLO\r\n\r\n".to_string(), 400),
        ("request line over 8 KiB", long_line, 414),
        (
            "101 headers",
            format!("GET /echo HTTP/1.1\r\n{many_headers}\r\n"),
            431,
        ),
        ("head over 16 KiB", big_head, 431),
        ("unknown path", ok_origin.replacen("/echo", "/nope", 1), 404),
        (
            "plain GET of a ws endpoint",
            "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            426,
        ),
    ];
    for (name, raw, want) in cases {
        let (got, head) = status_of(&srv, raw.as_bytes());
        assert_eq!(got, want, "{name}: {head}");
    }
}

#[test]
fn bytes_after_the_request_are_the_first_frames() {
    let srv = Server::start(&[]);
    let mut c = Client::connect(srv.addr());
    c.send_raw(&[UPGRADE.as_bytes(), &frame(0x81, b"early bird")].concat());
    assert!(c.read_head().starts_with("HTTP/1.1 101 "));
    assert_eq!(c.read_frame(), Some((0x81, b"early bird".to_vec())));
}

#[test]
fn a_clean_close_handshake_ends_with_the_servers_fin() {
    let srv = Server::start(&[]);
    let mut c = Client::open(srv.addr());
    c.echo("hi");
    c.send_frame(0x88, &[0x03, 0xE8, b'o', b'k']);
    assert_eq!(c.read_frame(), Some((0x88, vec![0x03, 0xE8])));
    assert_eq!(c.read_to_end(), b"", "FIN follows the close echo");
}
