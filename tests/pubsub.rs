//! Topics over loopback: chat rooms deliver every message to every member in order, the clock
//! ticks each second, one publish reaches 10,000 subscribers, a subscriber that stops reading
//! is closed at the hard limit while the others miss nothing, publishes cross workers, chat ids
//! are unique across workers, and the
//! hub stays within its caps on topics and history bytes however many topic names clients use.

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
fn chat_ids_are_distinct_across_workers() {
    // SO_REUSEPORT spreads connections over both workers by their source port; each worker
    // numbers its slots from 0, so ids made of the slot alone collided (the first user of
    // each worker got the same id).
    let srv = Server::start(&["--workers", "2"]);
    let mut members = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..12 {
        let mut m = Client::open_path(srv.addr(), "/chat/ids");
        let join = m.next_text();
        let id = join
            .split(r#""id":"#)
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("a join notice with an id: {join}"))
            .to_string();
        assert!(!ids.contains(&id), "id {id} given twice: {ids:?}");
        ids.push(id);
        members.push(m);
    }
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

/// One HTTP request on its own connection (`Connection: close`); the whole response.
fn http(srv: &Server, method: &str, path: &str, body: &str) -> String {
    let mut c = Client::connect(srv.addr());
    c.send_raw(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    String::from_utf8_lossy(&c.read_to_end()).into_owned()
}

/// The value of one series in `GET /metrics`.
fn metric(srv: &Server, series: &str) -> f64 {
    let text = http(srv, "GET", "/metrics", "");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

#[test]
fn topics_and_history_stay_within_their_caps_and_numbers_never_go_back() {
    let srv = Server::start(&[
        "--workers",
        "1",
        "--max-topics",
        "50",
        "--max-history-bytes",
        "64KiB",
        "--history-len",
        "10",
    ]);
    let kb = "x".repeat(1000);
    for _ in 0..3 {
        assert!(http(&srv, "POST", "/publish/keep", &kb).starts_with("HTTP/1.1 202"));
    }
    // 400 topic names nobody subscribes to, 1 KB each: without the caps, 400 topics and
    // 400 KB of history would stay resident.
    for i in 0..400 {
        let resp = http(&srv, "POST", &format!("/publish/name-{i}"), &kb);
        assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    }
    let topics = metric(&srv, "wsloop_pubsub_topics{worker=\"0\"}");
    let history = metric(&srv, "wsloop_pubsub_history_bytes{worker=\"0\"}");
    let evicted = metric(&srv, "wsloop_pubsub_topics_evicted_total{worker=\"0\"}");
    assert!(topics <= 50.0, "{topics} topics");
    assert!(history <= 65536.0, "{history} bytes of history");
    assert!(evicted >= 350.0, "{evicted} evictions");
    // "keep" was evicted long ago, and so many topics after it that the hub no longer
    // remembers its number exactly: it continues above every number an evicted topic
    // reached (here ≥ 3), and says the messages before are lost.
    let poll = http(&srv, "GET", "/poll/keep?after=0&wait=0", "");
    let last: u64 = poll
        .split("\"last_seq\":")
        .nth(1)
        .and_then(|r| r.split(',').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{poll}"));
    assert!(last >= 3, "{poll}");
    assert!(poll.contains(r#""gap":true,"messages":[]"#), "{poll}");
    http(&srv, "POST", "/publish/keep", "next");
    let poll = http(&srv, "GET", &format!("/poll/keep?after={last}&wait=0"), "");
    let want = format!(r#"[{{"seq":{},"text":"next"}}]"#, last + 1);
    assert!(poll.contains(&want), "{poll}");

    // Fill the hub with topics in use: the idle ones are evicted to make room.
    let mut subs: Vec<Client> = (0..50)
        .map(|i| Client::open_path(srv.addr(), &format!("/topic/busy-{i}")))
        .collect();
    // No room left: a new WebSocket subscriber is closed with 1008 and the reason ...
    let mut refused = Client::open_path(srv.addr(), "/topic/one-too-many");
    let (op, close) = refused.read_frame().expect("a close frame");
    assert_eq!(op, 0x88);
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1008);
    let reason = String::from_utf8_lossy(&close[2..]);
    assert!(reason.contains("limit of 50 topics"), "{reason}");
    // ... a publish to a new topic is refused with 503, and so is an SSE subscription.
    let resp = http(&srv, "POST", "/publish/one-too-many", "hi");
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    let resp = http(&srv, "GET", "/sse/one-too-many", "");
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(metric(&srv, "wsloop_pubsub_topics_refused_total{worker=\"0\"}") >= 2.0);
    // Topics in use still work.
    subs[7].send_frame(0x81, b"still here");
    assert_eq!(subs[7].next_text(), "still here");
    // One subscriber leaves: its topic (no history) is dropped, and there is room again.
    drop(subs.remove(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&srv, "wsloop_pubsub_topics{worker=\"0\"}") > 49.0 {
        assert!(
            Instant::now() < deadline,
            "the topic of a closed subscriber stays"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut late = Client::open_path(srv.addr(), "/topic/one-too-many");
    late.send_frame(0x81, b"room again");
    assert_eq!(late.next_text(), "room again");
}

#[test]
fn a_websocket_that_asks_for_positions_gets_them_and_resumes_by_one() {
    let srv = Server::start(&["--workers", "1"]);
    let mut plain = Client::open_path(srv.addr(), "/topic/pos");
    let mut with = Client::open_with_protocol(srv.addr(), "/topic/pos", "wsloop.positions");
    for m in ["one", "two", "three"] {
        plain.send_frame(0x81, m.as_bytes());
        assert_eq!(plain.next_text(), m, "plain /topic stays raw");
    }
    let mut positions = Vec::new();
    for m in ["one", "two", "three"] {
        let got = with.next_text();
        let want_end = format!(r#"","text":"{m}"}}"#);
        assert!(
            got.starts_with(r#"{"position":""#) && got.ends_with(&want_end),
            "{got}"
        );
        positions.push(got[13..got.len() - want_end.len()].parse::<u64>().unwrap());
    }
    assert_eq!(positions[1], positions[0] + 1);
    plain.send_frame(0x82, &[0, 1, 2]);
    assert_eq!(
        with.next_text(),
        format!(r#"{{"position":"{}","binary":"AAEC"}}"#, positions[2] + 1)
    );
    // Reconnecting with the position it last saw: what followed, then live.
    let path = format!("/topic/pos?since={}", positions[0]);
    let mut back = Client::open_with_protocol(srv.addr(), &path, "wsloop.positions");
    assert!(back.next_text().ends_with(r#","text":"two"}"#));
    assert!(back.next_text().ends_with(r#","text":"three"}"#));
    assert!(back.next_text().ends_with(r#","binary":"AAEC"}"#));
    plain.send_frame(0x81, b"four");
    assert!(back.next_text().ends_with(r#","text":"four"}"#));
    // A plain client may resume too (raw messages); a bad position is refused before 101.
    let mut raw = Client::open_path(srv.addr(), &format!("/topic/pos?since={}", positions[1]));
    assert_eq!(raw.next_text(), "three");
    let mut c = Client::connect(srv.addr());
    c.send_raw(
        client::UPGRADE
            .replacen("/echo", "/topic/pos?since=x1", 1)
            .as_bytes(),
    );
    let head = c.read_head();
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
}
