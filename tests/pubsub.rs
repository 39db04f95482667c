//! Topics over loopback: chat rooms deliver every message to every member in order, the clock
//! ticks each second, one publish reaches 10,000 subscribers, a subscriber that stops reading
//! is closed at the hard limit while the others miss nothing, and publishes cross workers.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::time::{Duration, Instant};

use client::Client;
use server::Server;

#[test]
fn three_chat_members_see_every_message_in_order() {
    let srv = Server::start(&["--workers", "1"]);
    let mut members: Vec<Client> = Vec::new();
    for _ in 0..3 {
        members.push(Client::open_path(srv.addr(), "/chat/lobby"));
        // Each member first sees its own join notice (and nothing from before it joined).
        let join = members.last_mut().unwrap().next_text();
        assert!(join.starts_with(r#"{"type":"join""#), "{join}");
    }
    // Earlier members also see the later joins.
    assert!(members[0].next_text().contains("join"));
    assert!(members[0].next_text().contains("join"));
    assert!(members[1].next_text().contains("join"));
    let mut other_room = Client::open_path(srv.addr(), "/chat/elsewhere");
    other_room.next_text();
    for round in 0..10 {
        for (i, m) in members.iter_mut().enumerate() {
            m.send_frame(0x81, format!("m{round}-{i}").as_bytes());
        }
    }
    for (who, m) in members.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in 0..30 {
            got.push(m.next_text());
        }
        for round in 0..10 {
            for i in 0..3 {
                let want = format!(r#""text":"m{round}-{i}""#);
                let pos = got.iter().position(|t| t.contains(&want));
                assert!(pos.is_some(), "member {who} missed {want}: {got:?}");
            }
        }
        // Each sender's own messages arrive in the order it sent them.
        for i in 0..3 {
            let order: Vec<usize> = (0..10)
                .map(|r| {
                    got.iter()
                        .position(|t| t.contains(&format!("m{r}-{i}\"")))
                        .unwrap()
                })
                .collect();
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "member {who}, sender {i}"
            );
        }
    }
    // Leaving is announced; the other room heard nothing of this one.
    drop(members.pop());
    assert!(members[0].next_text().contains(r#""type":"leave""#));
    other_room.send_frame(0x81, b"hi");
    assert!(other_room.next_text().contains(r#""text":"hi""#));
}

#[test]
fn the_clock_ticks_every_second() {
    let srv = Server::start(&[]);
    let mut c = Client::open_path(srv.addr(), "/clock");
    let start = Instant::now();
    let mut ticks = Vec::new();
    while ticks.len() < 3 {
        ticks.push(c.next_text());
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500),
        "3 ticks took {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(4500),
        "3 ticks took {elapsed:?}"
    );
    for t in &ticks {
        assert!(t.starts_with(r#"{"type":"tick","time":"20"#), "{t}");
    }
    assert_ne!(ticks[0], ticks[1]);
}

#[test]
fn one_publish_reaches_ten_thousand_subscribers() {
    let srv = Server::start(&["--workers", "2"]);
    let mut subs: Vec<Client> = (0..10_000)
        .map(|_| Client::open_path(srv.addr(), "/topic/fanout"))
        .collect();
    let mut publisher = Client::open_path(srv.addr(), "/topic/fanout");
    publisher.send_frame(0x81, b"to everyone");
    assert_eq!(
        publisher.next_text(),
        "to everyone",
        "the publisher subscribes too"
    );
    for (i, s) in subs.iter_mut().enumerate() {
        assert_eq!(s.next_text(), "to everyone", "subscriber {i}");
    }
}

#[test]
fn a_stalled_subscriber_is_closed_and_the_others_miss_nothing() {
    let srv = Server::start(&[
        "--workers",
        "1",
        "--slow-hard-limit",
        "262144",
        "--close-linger",
        "500ms",
    ]);
    let stalled = Client::open_path(srv.addr(), "/topic/firehose");
    stalled.sock.set_nonblocking(false).unwrap();
    let mut reader = Client::open_path(srv.addr(), "/topic/firehose");
    let mut publisher = Client::open_path(srv.addr(), "/topic/firehose");
    let payload = "x".repeat(4000);
    // 20 MB in all: past what loopback socket buffers absorb, and far past the 256 KiB limit.
    let n = 5000;
    for _ in 0..n {
        publisher.send_frame(0x81, payload.as_bytes());
        // Both keep up (the publisher subscribes to its own topic too).
        assert_eq!(reader.next_text().len(), 4000);
        assert_eq!(publisher.next_text().len(), 4000);
    }
    // The stalled client's socket fills, its queue passes the hard limit, and the server
    // closes it (1008) then drops it after the linger; reading now finds the end.
    let mut stalled = stalled;
    let mut saw_close = None;
    let mut count = 0;
    while let Some((op, p)) = stalled.read_frame() {
        match op {
            0x81 => count += 1,
            0x88 => saw_close = Some(u16::from_be_bytes([p[0], p[1]])),
            _ => {}
        }
    }
    assert!(
        count < n,
        "the stalled client was cut off, not fed everything"
    );
    assert!(
        matches!(saw_close, Some(1008) | None),
        "closed with {saw_close:?}"
    );
}

#[test]
fn publishes_cross_workers() {
    // With 20 subscribers spread by SO_REUSEPORT over 2 workers, the chance that all share
    // the publisher's worker is 2^-20: some delivery must cross the bus.
    let srv = Server::start(&["--workers", "2"]);
    let mut subs: Vec<Client> = (0..20)
        .map(|_| Client::open_path(srv.addr(), "/topic/across"))
        .collect();
    let mut publisher = Client::open_path(srv.addr(), "/topic/across");
    for i in 0..5 {
        publisher.send_frame(0x81, format!("msg {i}").as_bytes());
    }
    for s in subs.iter_mut() {
        for i in 0..5 {
            assert_eq!(s.next_text(), format!("msg {i}"));
        }
    }
}
