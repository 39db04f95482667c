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
    let mut c = Client::connect(addr);
    let request = UPGRADE.replace("\r\n\r\n", &format!("\r\n{OFFER}\r\n"));
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
    let input = [payload, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::with_capacity(4 << 20);
    Decompress::new(false)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
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
