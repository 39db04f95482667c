//! One connection's misbehaviour never disturbs the others: protocol errors, garbage,
//! abrupt resets, a client that never reads; and the connection limit answers 503.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use client::Client;
use server::Server;

#[test]
fn bad_peers_do_not_disturb_a_good_one() {
    let mut srv = Server::start(&[]);
    let mut good = Client::open(srv.addr());
    good.echo("before");

    let mut unmasked = Client::open(srv.addr());
    unmasked.send_raw(&[0x81, 0x02, b'h', b'i']);
    let (op, payload) = unmasked.read_frame().expect("close frame");
    assert_eq!((op, &payload[..2]), (0x88, &1002u16.to_be_bytes()[..]));

    let mut garbage = Client::connect(srv.addr());
    garbage.send_raw(&[0xFF; 5000]);

    let mut reset = Client::open(srv.addr());
    reset.send_raw(&client::frame(0x82, &[1; 10])[..8]); // half a frame, then gone
    reset.sock.shutdown(Shutdown::Both).unwrap();
    drop(reset);

    let mut bad_utf8 = Client::open(srv.addr());
    bad_utf8.send_frame(0x81, &[0xC0, 0x80]);
    let (op, payload) = bad_utf8.read_frame().expect("close frame");
    assert_eq!((op, &payload[..2]), (0x88, &1007u16.to_be_bytes()[..]));

    good.echo("after");
    srv.assert_running();
}

#[test]
fn a_client_that_never_reads_is_throttled_not_buffered() {
    // The server stops reading from a connection whose queue is over --max-queued-bytes, so
    // TCP pushes back on the writer instead of the server's memory growing.
    let mut srv = Server::start(&["--max-queued-bytes", "262144"]);
    let rss_before = srv.rss_kib();
    let mut hog = Client::open(srv.addr());
    hog.sock
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let msg = client::frame(0x82, &vec![7u8; 60_000]);
    let mut sent = 0usize;
    while sent < 200 << 20 {
        match hog.sock.write(&msg) {
            Ok(n) => sent += n,
            Err(_) => break, // the write timed out: TCP backpressure reached us
        }
    }
    assert!(
        sent < 200 << 20,
        "the server kept reading 200 MiB it could not send"
    );
    let mut good = Client::open(srv.addr());
    good.echo("still serving");
    let grown = srv.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 16 * 1024,
        "server RSS grew {grown} KiB under a non-reading client"
    );
    srv.assert_running();
}

#[test]
fn the_connection_limit_answers_503() {
    let srv = Server::start(&["--max-connections", "2"]);
    let mut a = Client::open(srv.addr());
    let _b = Client::open(srv.addr());
    let mut c = Client::connect(srv.addr());
    let head = c.read_head();
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    a.echo("a still works");
}

#[test]
fn data_and_fin_in_one_segment_are_both_seen() {
    // A frame immediately followed by the client's FIN: the server must read the frame, then
    // notice the FIN and close, never keep the connection open (13 in 20 leaked before).
    let srv = Server::start(&["--workers", "1"]);
    for _ in 0..20 {
        let mut c = Client::open(srv.addr());
        c.send_raw(&client::frame(0x81, b"bye"));
        c.sock.shutdown(Shutdown::Write).unwrap();
        assert_eq!(c.read_frame(), Some((0x81, b"bye".to_vec())));
        // After our FIN the server ends the connection too (1006 for the app, FIN for us).
        assert_eq!(c.read_to_end(), b"", "the server closed its side");
    }
}
