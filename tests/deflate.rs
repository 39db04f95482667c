//! permessage-deflate (RFC 7692) over TCP against the real server: a decompression bomb is
//! refused with 1009 while the server's memory stays bounded, the message limit holds for the
//! inflated size to the byte, and (ignored by default; it prints the figures of
//! docs/benchmarks-deflate.md) the server's RSS over 1,000 connections in each mode.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::net::SocketAddr;

use client::{Client, UPGRADE};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use server::Server;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// Connect and upgrade offering permessage-deflate; returns the client and the 101's
/// extension response (None if the server declined).
fn open_offering(addr: SocketAddr) -> (Client, Option<String>) {
    open_with(addr, "/echo", OFFER)
}

/// Upgrade at `path` with the extension header `offer` (empty: none).
fn open_with(addr: SocketAddr, path: &str, offer: &str) -> (Client, Option<String>) {
    let mut c = Client::connect(addr);
    let request = UPGRADE
        .replacen("/echo", path, 1)
        .replace("\r\n\r\n", &format!("\r\n{offer}\r\n"));
    c.send_raw(request.as_bytes());
    let head = c.read_head();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let ext = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .map(str::to_string);
    (c, ext)
}

/// A client's compressed payload: deflate, sync flush, tail removed (§7.2.1).
fn deflate(level: Compression, msg: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(level, false);
    let mut out = Vec::with_capacity(msg.len() / 2 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        c.compress_vec(&msg[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        if c.total_in() as usize == msg.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A server payload inflated by the client (§7.2.2).
fn inflate(payload: &[u8]) -> Vec<u8> {
    inflate_with(&mut Decompress::new(false), payload)
}

/// A server payload inflated by the client's decompressor `d` (which may keep its window).
fn inflate_with(d: &mut Decompress, payload: &[u8]) -> Vec<u8> {
    let input = [payload, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::with_capacity(4 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

fn close_code(frame: Option<(u8, Vec<u8>)>) -> Option<u16> {
    let (b0, p) = frame?;
    (b0 == 0x88 && p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]))
}

#[test]
fn a_bomb_is_refused_with_1009_and_bounded_memory() {
    // 100 MiB of zeros deflate to ~100 KiB; the default limit is 1 MiB.
    let bomb = deflate(Compression::best(), &vec![0u8; 100 << 20]);
    assert!(bomb.len() < 110 << 10, "{}", bomb.len());
    let mut srv = Server::start(&[]);
    let (mut good, ext) = open_offering(srv.addr());
    assert!(ext.is_some_and(|e| e.starts_with("permessage-deflate")));
    good.echo("before");
    let rss_before = srv.rss_kib();
    for _ in 0..3 {
        let (mut evil, _) = open_offering(srv.addr());
        evil.send_frame(0xC2, &bomb);
        assert_eq!(close_code(evil.read_frame()), Some(1009));
    }
    let grown = srv.rss_kib().saturating_sub(rss_before);
    // Inflation stops at the limit + 1 byte: a few MiB at most, never 100.
    assert!(grown < 8 << 10, "server RSS grew by {grown} KiB");
    good.echo("after");
    srv.assert_running();
}

#[test]
fn a_kilobyte_that_inflates_to_a_megabyte_meets_a_smaller_limit() {
    let small = deflate(Compression::best(), &vec![0u8; 1 << 20]);
    assert!(small.len() <= 1100, "{}", small.len());
    let mut srv = Server::start(&["--max-message-size", "65536"]);
    let (mut c, _) = open_offering(srv.addr());
    c.send_frame(0xC2, &small);
    assert_eq!(close_code(c.read_frame()), Some(1009));
    srv.assert_running();
}

#[test]
fn the_inflated_limit_holds_to_the_byte() {
    let mut srv = Server::start(&["--max-message-size", "65536"]);
    let exact: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let (mut c, _) = open_offering(srv.addr());
    c.send_frame(0xC2, &deflate(Compression::default(), &exact));
    let (b0, payload) = c.read_frame().expect("echo");
    assert_eq!(b0, 0xC2, "echoed compressed (FIN, RSV1, binary)");
    assert_eq!(inflate(&payload), exact);

    let over = [&exact[..], b"!"].concat();
    c.send_frame(0xC2, &deflate(Compression::default(), &over));
    assert_eq!(close_code(c.read_frame()), Some(1009));
    srv.assert_running();
}

/// `cargo test --release --test deflate -- --ignored --nocapture`: the server's RSS growth
/// over 1,000 connections that negotiated permessage-deflate and carried one compressed
/// message each way, per `--compression` mode.
#[test]
#[ignore = "a measurement for docs/benchmarks-deflate.md; run it in release"]
fn rss_per_connection_by_mode() {
    const N: usize = 1000;
    let mut json = String::new();
    for i in 0..200 {
        json.push_str(&format!(
            "{{\"seq\":{i},\"topic\":\"prices\",\"ok\":true}},"
        ));
    }
    let compressed = deflate(Compression::default(), json.as_bytes());
    println!("| --compression | server RSS idle | with {N} connections | per connection |");
    println!("|---|---|---|---|");
    for mode in ["off", "shared", "dedicated"] {
        let srv = Server::start(&["--compression", mode]);
        // Warm up the allocator and the per-reactor state with one connection.
        let warm = exchange(srv.addr(), mode, &json, &compressed);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let before = srv.rss_kib();
        let clients: Vec<Client> = (0..N)
            .map(|_| exchange(srv.addr(), mode, &json, &compressed))
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let after = srv.rss_kib();
        let per = (after.saturating_sub(before) * 1024) as usize / N;
        println!("| {mode} | {before} KiB | {after} KiB | {per} B |");
        drop((warm, clients));
    }
}

/// Open a connection and echo one message (compressed unless `mode` is off).
fn exchange(addr: SocketAddr, mode: &str, json: &str, compressed: &[u8]) -> Client {
    let (mut c, ext) = open_offering(addr);
    assert_eq!(ext.is_some(), mode != "off");
    if mode == "off" {
        c.send_frame(0x81, json.as_bytes());
    } else {
        c.send_frame(0xC1, compressed);
    }
    let (b0, payload) = c.read_frame().expect("echo");
    let got = if b0 & 0x40 != 0 {
        inflate(&payload)
    } else {
        payload
    };
    assert_eq!(got, json.as_bytes());
    c
}

/// RFC 7692 §7.2.1 for a broadcast: a subscriber whose server side keeps no context gets the
/// message compressed from an empty window (the same bytes for every subscriber with that
/// window size — it is compressed once per size), a smaller window gets its own compression,
/// a subscriber without the extension gets it plain, and one with context takeover
/// (`--compression dedicated`) gets it through its own compressor, so its window stays in
/// step over consecutive messages.
#[test]
fn a_broadcast_is_compressed_once_per_window_size() {
    let srv = Server::start(&["--compression", "dedicated"]);
    let addr = srv.addr();
    let path = "/topic/deflated";
    let fresh = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n";
    let small = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                 server_max_window_bits=10\r\n";
    let (mut a, ext_a) = open_with(addr, path, fresh);
    let (mut b, _) = open_with(addr, path, fresh);
    let (mut c, ext_c) = open_with(addr, path, small);
    let (mut own, ext_own) = open_with(addr, path, OFFER);
    let (mut plain, ext_plain) = open_with(addr, path, "");
    assert!(ext_a.unwrap().contains("server_no_context_takeover"));
    assert!(ext_c.unwrap().contains("server_max_window_bits=10"));
    assert!(!ext_own.unwrap().contains("server_no_context_takeover"));
    assert_eq!(ext_plain, None);

    let (mut publisher, _) = open_with(addr, "/topic/deflated", "");
    let mut own_window = Decompress::new(false);
    for round in 0..2 {
        let mut json = String::new();
        for i in 0..300 {
            json.push_str(&format!("{{\"round\":{round},\"seq\":{i},\"ok\":true}},"));
        }
        publisher.send_frame(0x81, json.as_bytes());
        let (b0a, za) = a.read_frame().expect("a");
        let (b0b, zb) = b.read_frame().expect("b");
        let (b0c, zc) = c.read_frame().expect("c");
        assert_eq!((b0a, b0b, b0c), (0xC1, 0xC1, 0xC1), "FIN, RSV1, text");
        assert_eq!(za, zb, "one compression for one window size");
        assert!(za.len() < json.len() / 4, "{} of {}", za.len(), json.len());
        assert_eq!(inflate(&za), json.as_bytes());
        assert_ne!(zc, za, "a 2^10 window is compressed for itself");
        let small_window = &mut Decompress::new_with_window_bits(false, 10);
        assert_eq!(inflate_with(small_window, &zc), json.as_bytes());

        let (b0o, zo) = own.read_frame().expect("own");
        assert_eq!(b0o, 0xC1);
        let kept = inflate_with(&mut own_window, &zo);
        assert_eq!(
            kept,
            json.as_bytes(),
            "round {round} through the kept window"
        );

        assert_eq!(plain.read_frame(), Some((0x81, json.into_bytes())));
        // The publisher subscribes too: it gets its own message back, plain.
        assert_eq!(publisher.read_frame().map(|f| f.0), Some(0x81));
    }
}

/// The client chooses context takeover; `--compression-max-dedicated` keeps that choice from
/// deciding the server's memory: past the cap a new connection is answered with no context
/// takeover (RFC 7692 §7.1.1), and a freed slot is given to the next one.
#[test]
fn dedicated_state_is_capped() {
    let srv = Server::start(&[
        "--compression",
        "dedicated",
        "--compression-max-dedicated",
        "2",
    ]);
    let keeps = |ext: Option<String>| !ext.unwrap().contains("server_no_context_takeover");
    let json = "{\"seq\":1,\"topic\":\"prices\",\"ok\":true},".repeat(20);
    let compressed = deflate(Compression::default(), json.as_bytes());
    let (a, ext) = open_offering(srv.addr());
    assert!(keeps(ext));
    let (_b, ext) = open_offering(srv.addr());
    assert!(keeps(ext));
    // Over the cap: no state, and still a working compressed echo.
    let third = exchange(srv.addr(), "dedicated-capped", &json, &compressed);
    drop(third);
    let (_c, ext) = open_offering(srv.addr());
    assert!(!keeps(ext), "third connection over the cap");
    let gauge = |srv: &Server| {
        let mut c = Client::connect(srv.addr());
        c.send_raw(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let text = String::from_utf8(c.read_to_end()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("wsloop_deflate_dedicated_connections "))
            .map(|v| v.trim().to_string())
    };
    assert_eq!(gauge(&srv).as_deref(), Some("2"));
    drop(a);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gauge(&srv).as_deref() != Some("1") {
        assert!(std::time::Instant::now() < deadline, "slot not freed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (_d, ext) = open_offering(srv.addr());
    assert!(keeps(ext), "a freed slot goes to the next connection");
}
