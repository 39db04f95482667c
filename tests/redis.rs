//! The Redis backplane against a real `redis-server` (Debian package `redis-server`, installed
//! by scripts/test) on a free loopback port, with three wsloop nodes: a publish on one node
//! reaches WebSocket, SSE and long-poll subscribers on every node exactly once; Redis killed,
//! paused (SIGSTOP) or dropping the link (output-buffer limit) leaves every node serving its
//! own clients without stalling (an HTTP publish is answered 202 only once Redis has the
//! message, and 503 with Retry-After when it cannot be: never a 202 for a message the other
//! nodes will not see), and each node resubscribes by itself once Redis is back.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/nginx.rs"]
mod nginx;
#[path = "support/redis.rs"]
mod redis;
#[path = "support/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use client::{read_until, Client};
use redis::{http, link_up, metric, open, wait_until, Redis};
use server::Server;

/// A wsloop node on `redis` with short Redis timeouts so faults are noticed quickly.
fn node(redis: &Redis, workers: &str) -> Server {
    Server::start(&[
        "--workers",
        workers,
        "--redis",
        &redis.url(),
        "--redis-timeout",
        "300ms",
        "--redis-backoff-max",
        "400ms",
    ])
}

/// Wait until the node's link is up and Redis confirmed at least `channels` channels.
fn wait_subscribed(srv: &Server, channels: i64) {
    wait_until("link up and subscribed", Duration::from_secs(10), || {
        link_up(srv) && metric(srv, "wsloop_redis_channels") >= channels
    });
}

/// A WebSocket echo round trip on a new connection, which must not wait on Redis.
fn echo_is_prompt(srv: &Server) {
    let start = Instant::now();
    let mut c = Client::open(srv.addr());
    c.echo("still here");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "echo took {took:?}");
}

/// The subscribers of topic `t` on one node: WebSocket, SSE and a held long poll.
struct Subscribers {
    ws: Client,
    sse: TcpStream,
    poll: TcpStream,
}

fn subscribe_all(srv: &Server, t: &str) -> Subscribers {
    let ws = Client::open_path(srv.addr(), &format!("/topic/{t}"));
    let mut sse = open(srv, &format!("GET /sse/{t} HTTP/1.1\r\nHost: t\r\n\r\n"));
    let head = read_until(&mut sse, "\r\n\r\n", 1);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let poll = open(srv, &format!("GET /poll/{t} HTTP/1.1\r\nHost: t\r\n\r\n"));
    wait_until("the long poll is held", Duration::from_secs(5), || {
        metric(srv, "wsloop_connections{transport=\"poll\",state=\"open\"}") == 1
    });
    Subscribers { ws, sse, poll }
}

#[test]
fn a_publish_on_one_node_reaches_every_transport_on_every_node_exactly_once() {
    let redis = Redis::start();
    let a = node(&redis, "1");
    let (b, c) = (node(&redis, "2"), node(&redis, "2"));
    // On A: the publisher (itself a subscriber of its topic) and another subscriber.
    let mut publisher = Client::open_path(a.addr(), "/topic/news");
    let mut on_a = Client::open_path(a.addr(), "/topic/news");
    let mut far: Vec<Subscribers> = [&b, &c].iter().map(|n| subscribe_all(n, "news")).collect();
    for n in [&a, &b, &c] {
        wait_subscribed(n, 1);
    }

    publisher.send_frame(0x81, b"m1");
    for ws in [&mut publisher, &mut on_a] {
        assert_eq!(ws.next_text(), "m1");
    }
    for s in &mut far {
        assert_eq!(s.ws.next_text(), "m1");
        let events = read_until(&mut s.sse, "data: m1\n\n", 1);
        assert!(events.ends_with("data: m1\n\n"), "{events}");
        let batch = read_until(&mut s.poll, "]}", 1);
        assert!(batch.starts_with("HTTP/1.1 200 OK\r\n"), "{batch}");
        assert_eq!(batch.matches(r#""text":"m1""#).count(), 1, "{batch}");
    }

    // Exactly once: the next thing every subscriber sees is the next message.
    publisher.send_frame(0x81, b"m2");
    for ws in [&mut publisher, &mut on_a] {
        assert_eq!(ws.next_text(), "m2");
    }
    for s in &mut far {
        assert_eq!(s.ws.next_text(), "m2");
        let events = read_until(&mut s.sse, "data: m2\n\n", 1);
        assert!(!events.contains("m1"), "m1 twice: {events}");
    }
    // Redis numbered them: every node keeps them under the same positions, one apart, so
    // a poll resumes from any node alike.
    let mut seen = Vec::new();
    for n in [&a, &b, &c] {
        let batch = http(
            n,
            "GET /poll/news?after=0&wait=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        let body = &batch[batch.find("\r\n\r\n").expect("a head") + 4..];
        seen.push(body.to_string());
    }
    assert_eq!(seen[0], seen[1], "A and B keep the same positions");
    assert_eq!(seen[1], seen[2], "B and C keep the same positions");
    let seqs = seqs_of(&seen[0]);
    assert_eq!(seqs.len(), 2, "{}", seen[0]);
    assert_eq!(seqs[1], seqs[0] + 1, "{}", seen[0]);
    assert!(seen[0].contains(r#""text":"m1"},{"seq":"#), "{}", seen[0]);
    assert_eq!(metric(&a, "wsloop_redis_published_total"), 2);
    for n in [&b, &c] {
        assert_eq!(metric(n, "wsloop_redis_published_total"), 0);
    }
    // Every node delivered what Redis published, A's own publishes included, once.
    for n in [&a, &b, &c] {
        assert_eq!(metric(n, "wsloop_redis_received_total"), 2);
    }
}

/// The `"seq":N` numbers of a poll batch, in order.
fn seqs_of(batch: &str) -> Vec<u64> {
    batch
        .split(r#""seq":"#)
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// A publisher and a subscriber on A and a subscriber on B, all on topic `t`, with B's
/// subscription confirmed by Redis.
fn cross_node_pair(redis: &Redis, t: &str) -> (Server, Server, Server, Client, Client, Client) {
    let (a, b, c) = (node(redis, "1"), node(redis, "2"), node(redis, "1"));
    let publisher = Client::open_path(a.addr(), &format!("/topic/{t}"));
    let on_a = Client::open_path(a.addr(), &format!("/topic/{t}"));
    let on_b = Client::open_path(b.addr(), &format!("/topic/{t}"));
    for n in [&a, &b] {
        wait_subscribed(n, 1);
    }
    wait_until("C's link up", Duration::from_secs(10), || link_up(&c));
    (a, b, c, publisher, on_a, on_b)
}

/// `publisher` on A sends `msg`; A's subscribers get it, and B's if `crosses`.
fn publish(publisher: &mut Client, on_a: &mut Client, msg: &str) {
    publisher.send_frame(0x81, msg.as_bytes());
    assert_eq!(publisher.next_text(), msg);
    assert_eq!(on_a.next_text(), msg);
}

#[test]
fn redis_killed_then_restarted_every_node_serves_then_resubscribes_by_itself() {
    let mut redis = Redis::start();
    let (a, b, c, mut publisher, mut on_a, mut on_b) = cross_node_pair(&redis, "k");
    // And one on B that learns positions (subprotocol wsloop.positions).
    let mut positioned = Client::open_with_protocol(b.addr(), "/topic/k", "wsloop.positions");
    publish(&mut publisher, &mut on_a, "before");
    assert_eq!(on_b.next_text(), "before");
    let before = positioned.next_text();
    assert!(before.ends_with(r#","text":"before"}"#), "{before}");

    redis.kill();
    for n in [&a, &b, &c] {
        wait_until("link noticed the loss", Duration::from_secs(5), || {
            !link_up(n)
        });
        echo_is_prompt(n);
    }
    // An HTTP publish is not acknowledged while it cannot reach the other nodes: 503, with
    // when to try again, on every node (worker 0 owns the link; the others ask it).
    let post =
        "POST /publish/k-http HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx";
    for n in [&a, &b, &c] {
        let resp = http(n, post);
        assert!(resp.starts_with("HTTP/1.1 503 "), "{resp}");
        assert!(resp.contains("\r\nRetry-After: 1\r\n"), "{resp}");
    }
    // A WebSocket publish has no place in the topic's order while Redis is away: dropped
    // and counted, on this node as on the others (never delivered out of order), and the
    // publisher is told to try again later: close 1013.
    publisher.send_frame(0x81, b"during");
    expect_close(&mut publisher, 1013);
    wait_until("the drop is counted", Duration::from_secs(5), || {
        metric(&a, "wsloop_redis_dropped_publishes_total") >= 1
    });
    let mut publisher = Client::open_path(a.addr(), "/topic/k");

    redis.spawn(); // same port
    for n in [&a, &b] {
        wait_subscribed(n, 1);
        assert!(metric(n, "wsloop_redis_reconnects_total") >= 1);
    }
    wait_until("C's link back", Duration::from_secs(10), || link_up(&c));
    let resp = http(&c, post);
    assert!(resp.starts_with("HTTP/1.1 202 "), "{resp}");
    publish(&mut publisher, &mut on_a, "after");
    // Nobody saw "during": B's next message is "after" too.
    assert_eq!(on_b.next_text(), "after");
    // Redis lost the topic with its memory: a new epoch. A subscriber that can be told is
    // told, before the message: its positions do not follow on from before.
    let gap = positioned.next_text();
    assert!(
        gap.starts_with(r#"{"type":"gap","topic":"k","after":""#),
        "{gap}"
    );
    let after = positioned.next_text();
    assert!(after.ends_with(r#","text":"after"}"#), "{after}");
}

#[test]
fn redis_paused_with_sigstop_never_stalls_a_node_and_the_link_recovers() {
    let redis = Redis::start();
    let (a, b, c, mut publisher, mut on_a, mut on_b) = cross_node_pair(&redis, "p");
    publish(&mut publisher, &mut on_a, "before");
    assert_eq!(on_b.next_text(), "before");

    // An HTTP publish is answered once Redis has it, on every worker of B (worker 0 owns
    // the link and sends the answer back to the worker that holds the request).
    let post = "POST /publish/p-http HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx";
    for _ in 0..6 {
        let resp = http(&b, post);
        assert!(resp.starts_with("HTTP/1.1 202 "), "{resp}");
        assert!(resp.contains(r#"{"topic":"p-http","position":""#), "{resp}");
    }

    redis.signal(libc::SIGSTOP);
    // Paused, Redis takes the bytes but never answers: the publish is held, then refused
    // when the link gives up on the silence — never acknowledged.
    let started = Instant::now();
    let resp = http(&b, post);
    assert!(resp.starts_with("HTTP/1.1 503 "), "{resp}");
    assert!(resp.contains("\r\nRetry-After: 1\r\n"), "{resp}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held {:?}",
        started.elapsed()
    );
    // The socket stays open and silent: the unanswered PING is what tells the link.
    for n in [&a, &b, &c] {
        echo_is_prompt(n);
        wait_until("the silence is noticed", Duration::from_secs(5), || {
            !link_up(n)
        });
        echo_is_prompt(n);
    }
    // Not sequenced while the link is down: dropped everywhere; the publisher gets 1013.
    publisher.send_frame(0x81, b"paused");
    expect_close(&mut publisher, 1013);
    let mut publisher = Client::open_path(a.addr(), "/topic/p");

    redis.signal(libc::SIGCONT);
    for n in [&a, &b] {
        wait_subscribed(n, 1);
    }
    wait_until("C's link back", Duration::from_secs(10), || link_up(&c));
    publish(&mut publisher, &mut on_a, "resumed");
    assert_eq!(on_b.next_text(), "resumed");
}

#[test]
fn redis_closing_the_link_for_its_output_buffer_limit_is_recovered_like_a_loss() {
    let redis = Redis::start();
    let (a, b, _c, mut publisher, mut on_a, mut on_b) = cross_node_pair(&redis, "o");
    let reply = redis.command(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 1kb 1kb 0",
    ]);
    assert_eq!(reply, "+OK\r\n");
    // Larger than Redis's 16 KiB per-client reply buffer, so it counts against the limit:
    // Redis closes every subscriber it is sent to (A's link and B's).
    let big = "x".repeat(100 * 1024);
    publisher.send_frame(0x81, big.as_bytes());
    wait_until("B's link dropped by Redis", Duration::from_secs(5), || {
        metric(&b, "wsloop_redis_reconnects_total") >= 1
    });
    let reply = redis.command(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 32mb 8mb 60",
    ]);
    assert_eq!(reply, "+OK\r\n");
    for n in [&a, &b] {
        wait_subscribed(n, 1);
    }
    publisher.send_frame(0x81, b"after");
    // The big message may have been written to a link before Redis closed it; "after" is
    // what comes next, or right after it.
    for ws in [&mut publisher, &mut on_a, &mut on_b] {
        let mut next = ws.next_text();
        if next == big {
            next = ws.next_text();
        }
        assert_eq!(next, "after");
    }
}

#[test]
fn a_subscriber_on_another_worker_subscribes_the_channel_and_its_leaving_unsubscribes_it() {
    let redis = Redis::start();
    let a = node(&redis, "1");
    let b = Server::start(&[
        "--workers",
        "2",
        "--redis",
        &redis.url(),
        "--redis-linger",
        "200ms",
    ]);
    wait_until("B's link up", Duration::from_secs(10), || link_up(&b));
    // A subscriber that SO_REUSEPORT gave to worker 1, so only the bus can tell worker 0
    // (which owns the link) that the topic is wanted.
    let topics = |w: &str| metric(&b, &format!("wsloop_pubsub_topics{{worker=\"{w}\"}}"));
    let mut on_b = None;
    for _ in 0..64 {
        let c = Client::open_path(b.addr(), "/topic/w1");
        wait_until("subscribed on a worker", Duration::from_secs(5), || {
            topics("0") + topics("1") == 1
        });
        if topics("1") == 1 {
            on_b = Some(c);
            break;
        }
        drop(c);
        wait_until("worker 0 forgot the topic", Duration::from_secs(5), || {
            topics("0") == 0
        });
    }
    let mut on_b = on_b.expect("no connection landed on worker 1 in 64 tries");
    wait_subscribed(&b, 1);
    let mut publisher = Client::open_path(a.addr(), "/topic/w1");
    wait_subscribed(&a, 1);
    publisher.send_frame(0x81, b"to worker 1");
    assert_eq!(publisher.next_text(), "to worker 1");
    assert_eq!(on_b.next_text(), "to worker 1");
    // The last subscriber leaves: after the linger, B unsubscribes.
    drop(on_b);
    wait_until(
        "B unsubscribed after the linger",
        Duration::from_secs(5),
        || metric(&b, "wsloop_redis_channels") == 0,
    );
    assert!(link_up(&b));
}

#[test]
fn ticks_stay_on_their_node() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "1"), node(&redis, "1"));
    let mut clock = Client::open_path(b.addr(), "/clock");
    wait_subscribed(&b, 1);
    // A's clock subscribes to nothing on B's behalf, but give it a subscriber too: were
    // ticks forwarded, B's client would get A's ticks as well.
    let _on_a = Client::open_path(a.addr(), "/clock");
    wait_subscribed(&a, 1);
    let ms = |tick: String| -> u64 {
        let at = tick.find("\"unix_ms\":").expect("unix_ms") + 10;
        tick[at..].trim_end_matches('}').parse().expect("a number")
    };
    let mut last = ms(clock.next_text());
    for _ in 0..3 {
        let next = ms(clock.next_text());
        assert!(
            next >= last + 500,
            "two ticks {last} and {next}: another node's clock"
        );
        last = next;
    }
    assert_eq!(metric(&b, "wsloop_redis_received_total"), 0);
}

/// The next frame is a close with `code` (pings answered on the way).
fn expect_close(ws: &mut Client, code: u16) {
    loop {
        match ws.read_frame() {
            Some((0x88, p)) => {
                assert_eq!(&p[..2], &code.to_be_bytes(), "{p:?}");
                return;
            }
            Some((0x89, p)) => ws.send_frame(0x8A, &p),
            other => panic!("expected a close {code}, got {other:?}"),
        }
    }
}

/// `POST /publish/{topic}` on `srv`; the position Redis gave the message.
fn post_position(srv: &Server, topic: &str, body: &str) -> u64 {
    let resp = http(
        srv,
        &format!(
            "POST /publish/{topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 202 "), "{resp}");
    let at = resp
        .find(r#""position":""#)
        .unwrap_or_else(|| panic!("{resp}"))
        + 12;
    resp[at..]
        .split('"')
        .next()
        .unwrap()
        .parse()
        .expect("a decimal position")
}

#[test]
fn positions_agree_on_every_node_in_publish_order_and_a_client_resumes_through_any_node() {
    let mut redis = Redis::start();
    let nodes = [node(&redis, "1"), node(&redis, "2"), node(&redis, "1")];
    // Each node follows the topic (a subscriber each); the one on A checks the order.
    let mut watchers: Vec<Client> = nodes
        .iter()
        .map(|n| Client::open_path(n.addr(), "/topic/r"))
        .collect();
    for n in &nodes {
        wait_subscribed(n, 1);
    }
    // Ten publishes, each through the next node, each sent once the previous one was
    // acknowledged: Redis's order is the publish order, one position apart.
    let mut positions = Vec::new();
    for i in 1..=10 {
        positions.push(post_position(&nodes[i % 3], "r", &format!("m{i}")));
    }
    for w in positions.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{positions:?}");
    }
    // Every node delivered them in that order — its own publishes not ahead of the others'.
    for w in &mut watchers {
        for i in 1..=10 {
            assert_eq!(w.next_text(), format!("m{i}"));
        }
    }
    // A client that read m1..m5 through one node resumes through another, and a third, by
    // the position it last saw: exactly what followed, under the same ids.
    let head = format!(
        "GET /sse/r HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {}\r\n\r\n",
        positions[4]
    );
    let mut sse = open(&nodes[1], &head);
    let events = read_until(&mut sse, "data: m10\n\n", 1);
    for (i, p) in positions.iter().enumerate().skip(5) {
        let event = format!("id: {p}\ndata: m{}\n\n", i + 1);
        assert_eq!(events.matches(&event).count(), 1, "{event:?} in {events}");
    }
    assert!(!events.contains("data: m5\n"), "{events}");
    assert!(!events.contains("event: gap"), "{events}");
    let poll = http(
        &nodes[2],
        &format!(
            "GET /poll/r?after={}&wait=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            positions[7]
        ),
    );
    assert_eq!(seqs_of(&poll), positions[8..], "{poll}");
    assert!(poll.contains(r#""text":"m9"},{"seq":"#), "{poll}");

    // A node started after the publishes (it followed nothing) reads the topic's log back
    // from Redis before it answers: the same resume, exact, on every transport.
    let late = node(&redis, "2");
    wait_until("the late node's link up", Duration::from_secs(10), || {
        link_up(&late)
    });
    let mut sse = open(&late, &head);
    let events = read_until(&mut sse, "data: m10\n\n", 1);
    for (i, p) in positions.iter().enumerate().skip(5) {
        let event = format!("id: {p}\ndata: m{}\n\n", i + 1);
        assert_eq!(events.matches(&event).count(), 1, "{event:?} in {events}");
    }
    assert!(!events.contains("event: gap"), "{events}");
    drop(sse);
    let late2 = node(&redis, "1");
    wait_until(
        "the second late node's link up",
        Duration::from_secs(10),
        || link_up(&late2),
    );
    let poll = http(
        &late2,
        &format!(
            "GET /poll/r?after={}&wait=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            positions[7]
        ),
    );
    assert_eq!(seqs_of(&poll), positions[8..], "{poll}");
    let mut s = open(
        &late2,
        &format!(
            "GET /stream/r?after={} HTTP/1.1\r\nHost: t\r\n\r\n",
            positions[8]
        ),
    );
    let chunks = read_until(&mut s, "m10", 1);
    assert!(chunks.contains("m10") && !chunks.contains("m9"), "{chunks}");
    // A WebSocket resumes by position too: from m7, on a node whose history starts at m9,
    // so it waits for the log (nothing live reaches it before its replay), then goes live.
    let since = format!("/topic/r?since={}", positions[6]);
    let mut ws = Client::open_with_protocol(late2.addr(), &since, "wsloop.positions");
    for (i, p) in positions.iter().enumerate().skip(7) {
        let want = format!(r#"{{"position":"{p}","text":"m{}"}}"#, i + 1);
        assert_eq!(ws.next_text(), want);
    }
    drop(s);

    // Redis restarted without persistence: the topic's history is gone, a new epoch starts
    // with larger numbers, and a resume from before is told of the gap, then gets what is
    // new — never an old number reused.
    redis.kill();
    redis.spawn();
    for n in &nodes {
        wait_subscribed(n, 1);
    }
    let fresh = post_position(&nodes[0], "r", "m11");
    assert!(fresh > positions[9] + 1, "{fresh} after {positions:?}");
    for w in &mut watchers {
        assert_eq!(w.next_text(), "m11");
    }
    let head = format!(
        "GET /sse/r HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {}\r\n\r\n",
        positions[9]
    );
    let mut sse = open(&nodes[2], &head);
    let events = read_until(&mut sse, "data: m11\n\n", 1);
    let gap = events
        .find("event: gap")
        .unwrap_or_else(|| panic!("{events}"));
    assert!(gap < events.find("data: m11").unwrap(), "{events}");
    assert!(
        events.contains(&format!("id: {fresh}\ndata: m11\n\n")),
        "{events}"
    );
}

#[test]
fn positions_missed_while_a_link_was_down_are_read_from_the_log_in_order() {
    let redis = Redis::start();
    let (a, c) = (node(&redis, "1"), node(&redis, "1"));
    let mut on_a = Client::open_path(a.addr(), "/topic/g");
    wait_subscribed(&a, 1);
    wait_until("C's link up", Duration::from_secs(10), || link_up(&c));
    post_position(&c, "g", "m0");
    assert_eq!(on_a.next_text(), "m0");
    // Redis now closes any subscriber a large message is pushed to: A's link, again and again
    // while A reconnects, for every message published through C (which subscribes nothing).
    let limit = |v: &str| redis.command(&["CONFIG", "SET", "client-output-buffer-limit", v]);
    assert_eq!(limit("pubsub 1kb 1kb 0"), "+OK\r\n");
    let big = |i: usize| format!("m{i}:{}", "x".repeat(20 * 1024));
    for i in 1..=5 {
        post_position(&c, "g", &big(i));
    }
    wait_until("A's link dropped by Redis", Duration::from_secs(5), || {
        metric(&a, "wsloop_redis_reconnects_total") >= 1
    });
    assert_eq!(limit("pubsub 32mb 8mb 60"), "+OK\r\n");
    wait_subscribed(&a, 1);
    // The next message shows A what it missed; A reads it from the topic's log first.
    post_position(&c, "g", "m6");
    for i in 1..=5 {
        let got = on_a.next_text();
        assert!(got == big(i), "m{i}: got {:?}…", &got[..got.len().min(8)]);
    }
    assert_eq!(on_a.next_text(), "m6");
    // And its history has them all, under Redis's positions: a resume finds no gap.
    let poll = http(
        &a,
        "GET /poll/g?after=0&wait=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let seqs = seqs_of(&poll);
    assert_eq!(seqs.len(), 7, "{}", &poll[..poll.len().min(400)]);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[test]
fn behind_round_robin_nginx_clients_reconnecting_to_another_node_each_time_miss_nothing() {
    let redis = Redis::start();
    let nodes = [node(&redis, "1"), node(&redis, "2"), node(&redis, "1")];
    for n in &nodes {
        wait_until("link up", Duration::from_secs(10), || link_up(n));
    }
    // No sticky sessions: every request and reconnection goes to the next node.
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr()).collect();
    let lb = nginx::Nginx::start_many(&addrs);
    let via = |head: &str| {
        let mut s = TcpStream::connect(lb.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s
    };
    let publish = |body: &str| -> u64 {
        let post = format!(
            "POST /publish/rr HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut resp = String::new();
        via(&post).read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 202 "), "{resp}");
        let at = resp.find(r#""position":""#).unwrap() + 12;
        resp[at..].split('"').next().unwrap().parse().unwrap()
    };
    // Both clients start from just before the first message, then each publish (through the
    // next node) is followed by each client reconnecting (to the next node) from the last
    // position it saw.
    let first = publish("m1");
    let (mut sse_last, mut poll_last) = (first - 1, first - 1);
    let (mut sse_seen, mut poll_seen) = (Vec::new(), Vec::new());
    for i in 1..=12 {
        if i > 1 {
            publish(&format!("m{i}"));
        }
        // A fourth request per round (three nodes), so each client's turn moves on a node.
        let mut ok = String::new();
        let health = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        via(health).read_to_string(&mut ok).unwrap();
        let head = format!("GET /sse/rr HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {sse_last}\r\n\r\n");
        let text = read_until(&mut via(&head), &format!("data: m{i}\n\n"), 1);
        assert!(!text.contains("event: gap"), "{text}");
        for event in text.split("\n\n").filter(|e| e.contains("data: ")) {
            let id: u64 = event
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .unwrap()
                .parse()
                .unwrap();
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap();
            sse_seen.push((id, data.to_string()));
            sse_last = id;
        }
        let get = format!("GET /poll/rr?after={poll_last}&wait=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let mut resp = String::new();
        via(&get).read_to_string(&mut resp).unwrap();
        assert!(!resp.contains(r#""gap":true"#), "{resp}");
        for (seq, text) in seqs_of(&resp).iter().zip(resp.split(r#""text":""#).skip(1)) {
            poll_seen.push((*seq, text.split('"').next().unwrap().to_string()));
            poll_last = *seq;
        }
    }
    // Every message once, in publish order, with consecutive positions, on both clients.
    let want: Vec<String> = (1..=12).map(|i| format!("m{i}")).collect();
    for seen in [&sse_seen, &poll_seen] {
        let texts: Vec<String> = seen.iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(texts, want, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{seen:?}");
    }
    assert_eq!(sse_seen, poll_seen, "the same positions through every node");
}

#[test]
fn a_node_killed_mid_stream_its_clients_resume_on_another_exactly() {
    let redis = Redis::start();
    let (mut a, b, c) = (node(&redis, "1"), node(&redis, "1"), node(&redis, "2"));
    for n in [&a, &b, &c] {
        wait_until("link up", Duration::from_secs(10), || link_up(n));
    }
    let mut sse = open(&a, "GET /sse/k9 HTTP/1.1\r\nHost: t\r\n\r\n");
    read_until(&mut sse, "\r\n\r\n", 1);
    wait_subscribed(&a, 1);
    let mut last = 0;
    for i in 1..=3 {
        last = post_position(&b, "k9", &format!("m{i}"));
    }
    let events = read_until(&mut sse, "data: m3\n\n", 1);
    assert!(
        events.contains(&format!("id: {last}\ndata: m3\n\n")),
        "{events}"
    );
    // A dies with its client mid-stream; publishing goes on through B.
    a.signal(libc::SIGKILL);
    assert!(
        a.wait_exit(Duration::from_secs(5)).is_some(),
        "A did not die"
    );
    let later: Vec<u64> = (4..=6)
        .map(|i| post_position(&b, "k9", &format!("m{i}")))
        .collect();
    // The client reconnects to C with the last id it saw: exactly m4..m6, then live.
    let head = format!("GET /sse/k9 HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {last}\r\n\r\n");
    let mut again = open(&c, &head);
    let events = read_until(&mut again, "data: m6\n\n", 1);
    for (i, p) in later.iter().enumerate() {
        let event = format!("id: {p}\ndata: m{}\n\n", i + 4);
        assert_eq!(events.matches(&event).count(), 1, "{event:?} in {events}");
    }
    assert!(
        !events.contains("data: m3") && !events.contains("event: gap"),
        "{events}"
    );
    let next = post_position(&b, "k9", "m7");
    let live = read_until(&mut again, "data: m7\n\n", 1);
    assert!(
        live.contains(&format!("id: {next}\ndata: m7\n\n")),
        "{live}"
    );
}

/// A CA and a certificate it signed for 127.0.0.1, in `dir`: (ca, cert, key) paths.
fn ca_and_certificate(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn rediss_with_an_acl_user_carries_the_backplane_and_an_untrusted_certificate_never_does() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("wsloop-rediss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = ca_and_certificate(&dir);
    // TLS only (no plain port), and an ACL user limited to wsloop's keys and channels: what
    // a managed Redis asks of its clients.
    let tls_port = port.to_string();
    let mut args: Vec<std::ffi::OsString> = ["--port", "0", "--tls-port", &tls_port]
        .iter()
        .map(Into::into)
        .collect();
    for (flag, file) in [
        ("--tls-cert-file", &cert),
        ("--tls-key-file", &key),
        ("--tls-ca-cert-file", &ca),
    ] {
        args.extend([flag.into(), file.into()]);
    }
    let acl = [
        "--tls-auth-clients",
        "no",
        "--user",
        "default",
        "off",
        "--user",
        "app",
        "on",
        ">s3cret",
        "~wsloop:*",
        "&wsloop:*",
        "+@all",
    ];
    args.extend(acl.iter().map(Into::into));
    let mut redis = redis::redis_server(&args, &dir);
    struct Kill<'a>(&'a mut Child, &'a PathBuf);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(self.1);
        }
    }
    let _guard = Kill(&mut redis, &dir);
    wait_until("redis-server listens", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("rediss://app:s3cret@127.0.0.1:{port}");
    let trusted = |workers: &str| {
        Server::start(&[
            "--workers",
            workers,
            "--redis",
            &url,
            "--redis-tls-ca",
            ca.to_str().unwrap(),
            "--redis-timeout",
            "500ms",
        ])
    };
    let (a, b) = (trusted("2"), trusted("1"));
    let mut on_a = Client::open_path(a.addr(), "/topic/secure");
    for n in [&a, &b] {
        wait_until("link up over TLS", Duration::from_secs(10), || link_up(n));
    }
    wait_subscribed(&a, 1);
    // Large enough to span several TLS records.
    let big = "x".repeat(60_000);
    let first = post_position(&b, "secure", "over tls");
    let second = post_position(&b, "secure", &big);
    assert_eq!(second, first + 1);
    assert_eq!(on_a.next_text(), "over tls");
    assert_eq!(on_a.next_text(), big);
    // A node that trusts only the system's CAs refuses this certificate: its link never
    // comes up, and it says so with 503s rather than acknowledging what no node will see.
    let untrusted = Server::start(&["--redis", &url, "--redis-timeout", "300ms"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!link_up(&untrusted));
    let resp = http(
        &untrusted,
        "POST /publish/secure HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    );
    assert!(resp.starts_with("HTTP/1.1 503 "), "{resp}");
    assert!(metric(&untrusted, "wsloop_redis_reconnects_total") >= 1);
}

#[test]
fn an_abandoned_topic_leaves_redis_after_its_log_ttl_and_comes_back_as_a_new_epoch() {
    let redis = Redis::start();
    let a = Server::start(&[
        "--redis",
        &redis.url(),
        "--redis-log-ttl",
        "400ms",
        "--redis-linger",
        "0s",
    ]);
    wait_until("link up", Duration::from_secs(10), || link_up(&a));
    let first = post_position(&a, "idle", "m1");
    let ttl: i64 = redis.command(&["PTTL", "wsloop:{idle}:log"])[1..]
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 400, "PTTL {ttl}");
    wait_until("the topic's keys expired", Duration::from_secs(5), || {
        redis.command(&["EXISTS", "wsloop:{idle}:meta", "wsloop:{idle}:log"]) == ":0\r\n"
    });
    // Published again: a new epoch, numbered above the old one, and a resume from the old
    // position is told of the gap.
    let again = post_position(&a, "idle", "m2");
    assert!(again > first + 1, "{first} then {again}");
    let resp = http(
        &a,
        &format!(
            "GET /poll/idle?after={first}&wait=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(resp.contains(r#""gap":true"#), "{resp}");
    assert!(resp.contains(r#""text":"m2""#), "{resp}");
}

#[test]
fn with_wait_replicas_and_no_replica_nothing_is_acknowledged() {
    let redis = Redis::start();
    let a = Server::start(&[
        "--redis",
        &redis.url(),
        "--redis-wait-replicas",
        "1",
        "--redis-timeout",
        "400ms",
    ]);
    wait_until("link up", Duration::from_secs(10), || link_up(&a));
    let resp = http(
        &a,
        "POST /publish/w HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    );
    // Redis numbered it, but no replica has it: not promised.
    assert!(resp.starts_with("HTTP/1.1 503 "), "{resp}");
    assert_eq!(redis.command(&["XLEN", "wsloop:{w}:log"]), ":1\r\n");
    assert!(
        link_up(&a),
        "a WAIT short of replicas is not a link failure"
    );
}
