//! Time in the reactor over loopback: the handshake deadline cuts a slowloris client while
//! others keep working, the two-step heartbeat pings a silent client and drops it, a client
//! that answers pings stays, and SIGTERM closes every WebSocket with 1001 and exits 0.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::io::Write;
use std::time::{Duration, Instant};

use client::{Client, UPGRADE};
use server::Server;

#[test]
fn slowloris_is_cut_at_the_handshake_deadline_while_others_echo() {
    let srv = Server::start(&["--handshake-timeout", "1s"]);
    let mut good = Client::open(srv.addr());
    let mut slow = Client::connect(srv.addr());
    let start = Instant::now();
    let mut answered = String::new();
    // One byte every 100 ms: the head would take ~17 s to arrive.
    for b in UPGRADE.as_bytes() {
        if slow.sock.write_all(&[*b]).is_err() {
            break;
        }
        good.echo("meanwhile");
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_millis(1500) {
            answered = slow.read_head();
            break;
        }
    }
    assert!(answered.starts_with("HTTP/1.1 408 "), "got {answered:?}");
    assert!(answered.contains("Connection: close"));
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(3), "cut after {elapsed:?}");
    good.echo("after");
}

#[test]
fn a_silent_client_is_pinged_then_dropped() {
    let srv = Server::start(&["--idle-timeout", "2s", "--ping-margin", "1s"]);
    let mut silent = Client::open(srv.addr());
    let start = Instant::now();
    let ping = silent.read_frame();
    let at = start.elapsed();
    assert_eq!(ping.map(|f| f.0), Some(0x89), "a ping first");
    assert!(
        at >= Duration::from_millis(900) && at < Duration::from_millis(1600),
        "ping at {at:?}"
    );
    // No pong: the connection is dropped a margin later.
    assert_eq!(silent.read_frame(), None, "then EOF");
    let at = start.elapsed();
    assert!(
        at >= Duration::from_millis(1900) && at < Duration::from_millis(2800),
        "drop at {at:?}"
    );
}

#[test]
fn a_client_that_answers_pings_stays_past_the_idle_time() {
    let srv = Server::start(&["--idle-timeout", "2s", "--ping-margin", "1s"]);
    let mut alive = Client::open(srv.addr());
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_millis(4500) {
        let (op, payload) = alive.read_frame().expect("still connected");
        assert_eq!(op, 0x89);
        pings += 1;
        alive.send_frame(0x8A, &payload); // pong
    }
    assert!(pings >= 3, "pinged {pings} times in 4.5 s");
    alive.echo("still here");
}

#[test]
fn sigterm_closes_every_websocket_with_1001_and_exits_0() {
    let mut srv = Server::start(&[]);
    let mut clients: Vec<Client> = (0..20).map(|_| Client::open(srv.addr())).collect();
    for c in &mut clients {
        c.echo("hello");
    }
    srv.signal(libc::SIGTERM);
    for (i, c) in clients.iter_mut().enumerate() {
        let (op, payload) = c.read_frame().expect("a close frame");
        assert_eq!(op, 0x88, "client {i}");
        assert_eq!(
            &payload[..2],
            &1001u16.to_be_bytes(),
            "client {i}: going away"
        );
        c.send_frame(0x88, &payload[..2]); // complete the closing handshake
        assert_eq!(c.read_frame(), None, "client {i}: FIN");
    }
    let status = srv
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the drain");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut srv = Server::start(&["--drain-timeout", "60s"]);
    let mut stubborn = Client::open(srv.addr());
    srv.signal(libc::SIGTERM);
    assert_eq!(stubborn.read_frame().map(|f| f.0), Some(0x88));
    // It never answers the close; the drain would take a minute.
    srv.signal(libc::SIGINT);
    let status = srv
        .wait_exit(Duration::from_secs(3))
        .expect("exits at once");
    assert!(status.success(), "exit status {status}");
}
