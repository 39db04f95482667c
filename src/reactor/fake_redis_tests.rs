//! The Redis link under the fault harness (docs/testing.md §4): the real `Reactor` owning the
//! backplane (`reactor/redis.rs`) over `fake::FakeNet`, whose outbound connection is a
//! scripted Redis — connect completed or refused, replies whole, split at every byte or one
//! byte per read, the link lost and re-established with every subscription sent again.
//! Each test asserts what the scripted Redis was sent, what a local WebSocket subscriber
//! received, and the link state the metrics show.
//! Must not: open a socket, start a thread or wait on real time.

use std::net::{Ipv4Addr, SocketAddr};

use super::fake::{Peer, ReadStep};
use super::fake_tests::{client, server, Harness};
use super::*;
use crate::backplane::tests::{confirm, log_reply, message, sequenced, tagged, HELLO_REPLY, OTHER};
use crate::metrics::RedisMetrics;
use crate::ws::frame::OpCode;

fn redis_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 6379))
}

/// A harness whose worker owns the Redis link (it has asked to connect).
fn with_redis() -> Harness {
    let mut cfg = Config::default();
    // As `--redis` sets it: the HTTP publish endpoint then waits for Redis's answer.
    cfg.redis.url = Some(crate::config::RedisUrl {
        host: "127.0.0.1".into(),
        port: 6379,
        username: None,
        password: None,
        db: 0,
        more: Vec::new(),
        tls: false,
    });
    let mut h = Harness::with(cfg);
    h.r.join_redis(Some(super::redis::RedisPlan {
        seeds: vec![redis_addr()],
        tls: None,
    }));
    h
}

/// The link's state as the metrics show it (`RedisMetrics::STATES`).
fn link_state(h: &Harness) -> &'static str {
    let m = h.r.metrics.all();
    RedisMetrics::STATES[m.redis.state.get() as usize]
}

/// A message another node published on `channel`, as Redis pushes it.
fn from_other(channel: &str, text: bool, body: &[u8]) -> Vec<u8> {
    message(channel, &tagged(OTHER, text, body))
}

/// Move the clock past the longest reconnection wait (`--redis-backoff-max`).
fn past_backoff(h: &mut Harness) {
    let wait = h.r.cfg.redis.backoff_max.as_millis() as Tick + 1;
    h.net().advance(wait);
}

/// What a WebSocket subscriber receives for these text messages, in order.
fn texts(msgs: &[&[u8]]) -> Vec<u8> {
    msgs.iter().flat_map(|m| server(OpCode::Text, m)).collect()
}

/// Redis pushing text `body` on `wsloop:news` at position `seq` of epoch 1,000,000.
fn on_news(seq: u64, body: &[u8]) -> Vec<u8> {
    message("wsloop:news", &sequenced(seq, 1_000_000, true, body))
}

/// The code of the close frame the server wrote, if what it wrote is one.
fn close_code(written: &[u8]) -> Option<u16> {
    match written {
        [0x88, len, a, b, ..] if *len >= 2 => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The scripted Redis the reactor connected to, once the connect has completed and the
/// handshake pipeline has been written; returns it with what it was sent.
fn accept_link(h: &mut Harness) -> (Peer, Vec<u8>) {
    h.settle();
    let redis = h
        .net()
        .take_outbound()
        .expect("the reactor connects to Redis");
    assert_eq!(redis.addr(), redis_addr());
    assert!(
        redis.written().is_empty(),
        "nothing written before the connect completed"
    );
    redis.complete_connect();
    h.settle();
    let sent = redis.take_written();
    assert!(sent.starts_with(b"*"), "RESP commands: {sent:?}");
    assert!(contains(&sent, b"HELLO"), "the handshake: {sent:?}");
    (redis, sent)
}

#[test]
fn the_link_connects_through_net_and_comes_up_on_the_hello_reply() {
    let mut h = with_redis();
    assert_eq!(h.net().connects, 1);
    assert_eq!(link_state(&h), "connecting");
    let (redis, _) = accept_link(&mut h);
    assert_eq!(link_state(&h), "connecting", "HELLO not answered yet");
    redis.send(HELLO_REPLY);
    h.settle();
    assert_eq!(link_state(&h), "up");
    h.assert_asleep();
}

/// A subscriber of `news` on this node, with the link up and `SUBSCRIBE wsloop:news`
/// confirmed: (the WebSocket peer, Redis).
fn subscribed() -> (Harness, Peer, Peer) {
    let mut h = with_redis();
    let (redis, _) = accept_link(&mut h);
    redis.send(HELLO_REPLY);
    let ws = h.open_at("/topic/news");
    let sent = redis.take_written();
    assert!(
        contains(&sent, b"SUBSCRIBE") && contains(&sent, b"wsloop:news"),
        "the topic's first subscriber subscribes the channel: {:?}",
        String::from_utf8_lossy(&sent)
    );
    redis.send(&confirm(true, "wsloop:news", 1));
    h.settle();
    assert_eq!(link_state(&h), "up");
    (h, ws, redis)
}

#[test]
fn a_message_from_another_node_reaches_a_local_subscriber() {
    let (mut h, ws, redis) = subscribed();
    redis.send(&from_other("wsloop:news", true, b"hello from afar"));
    h.settle();
    assert_eq!(ws.take_written(), server(OpCode::Text, b"hello from afar"));
}

#[test]
fn a_local_publish_is_sequenced_by_redis_and_delivered_in_its_order() {
    let (mut h, ws, redis) = subscribed();
    ws.send(&client(OpCode::Text, b"mine"));
    h.settle();
    assert!(
        ws.take_written().is_empty(),
        "not delivered ahead of Redis's order"
    );
    let sent = redis.take_written();
    assert!(
        contains(&sent, b"EVALSHA") && contains(&sent, b"wsloop:{news}:meta"),
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
    assert!(contains(&sent, b"$4\r\nmine\r\n"), "{sent:?}");
    // Redis numbers it and publishes it back: delivered now, with Redis's number.
    redis.send(b":1000001\r\n");
    redis.send(&on_news(1_000_001, b"mine"));
    h.settle();
    assert_eq!(ws.take_written(), server(OpCode::Text, b"mine"));
    assert_eq!(h.r.hub.last_seq("news"), 1_000_001);
    // The same position again (a duplicate) is not delivered twice; the next one is.
    redis.send(&on_news(1_000_001, b"mine"));
    redis.send(&on_news(1_000_002, b"next"));
    h.settle();
    assert_eq!(ws.take_written(), server(OpCode::Text, b"next"));
    let (kept, gap) = h.r.hub.history_after("news", 1_000_000);
    assert_eq!((kept.len(), gap), (2, false));
    // Positions skipped: read from the topic's log first, what arrives meanwhile held back,
    // then all of it delivered in order — no gap.
    redis.send(&on_news(1_000_005, b"five"));
    h.settle();
    assert!(
        ws.take_written().is_empty(),
        "held until the missed ones are read"
    );
    let sent = redis.take_written();
    assert!(
        contains(&sent, b"XRANGE") && contains(&sent, b"wsloop:{news}:log"),
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
    assert!(
        contains(&sent, b"0-1000003") && contains(&sent, b"0-1000004"),
        "{sent:?}"
    );
    redis.send(&on_news(1_000_006, b"six"));
    redis.send(&log_reply(&[(1_000_003, b"three"), (1_000_004, b"four")]));
    h.settle();
    let want = texts(&[b"three", b"four", b"five", b"six"]);
    assert_eq!(ws.take_written(), want);
    let (kept, gap) = h.r.hub.history_after("news", 1_000_000);
    assert_eq!((kept.len(), gap), (6, false));
    // The log no longer holds what was missed (trimmed): delivered after the jump, and the
    // history before it dropped, so a resume across is told of the gap.
    redis.send(&on_news(1_000_009, b"nine"));
    h.settle();
    assert!(contains(&redis.take_written(), b"XRANGE"));
    redis.send(&log_reply(&[(1_000_008, b"eight")]));
    h.settle();
    let want = texts(&[b"eight", b"nine"]);
    assert_eq!(ws.take_written(), want);
    let (kept, gap) = h.r.hub.history_after("news", 1_000_006);
    assert_eq!((kept.len(), gap), (2, true));
    redis.send(&message(
        "wsloop:news",
        &sequenced(9_000_001, 9_000_000, true, b"epoch"),
    ));
    h.settle();
    assert_eq!(ws.take_written(), server(OpCode::Text, b"epoch"));
    let (kept, gap) = h.r.hub.history_after("news", 1_000_009);
    assert_eq!((kept.len(), gap), (1, true));
    // A node of an earlier release tagging our own id: still dropped as our echo.
    let node = h.r.redis_node().expect("the link's node id");
    redis.send(&message("wsloop:news", &tagged(node, true, b"old echo")));
    h.settle();
    assert!(ws.take_written().is_empty());
}

#[test]
fn replies_split_at_every_byte_are_the_same_replies() {
    // The handshake reply, the subscription's confirmation and a message, in two reads
    // split at every position: the link resumes each partial frame on the next read.
    let mut whole = HELLO_REPLY.to_vec();
    whole.extend(confirm(true, "wsloop:news", 1));
    whole.extend(from_other("wsloop:news", false, &[0, 1, 2, 0xff]));
    for cut in 1..whole.len() {
        let mut h = with_redis();
        let (redis, _) = accept_link(&mut h);
        let ws = h.open_at("/topic/news");
        redis.send(&whole[..cut]);
        h.settle();
        redis.send(&whole[cut..]);
        h.settle();
        assert_eq!(link_state(&h), "up", "cut at {cut}");
        assert_eq!(
            ws.take_written(),
            server(OpCode::Binary, &[0, 1, 2, 0xff]),
            "cut at {cut}"
        );
    }
}

#[test]
fn replies_arriving_one_byte_per_read_are_the_same_replies() {
    let mut h = with_redis();
    let (redis, _) = accept_link(&mut h);
    let ws = h.open_at("/topic/news");
    let mut whole = HELLO_REPLY.to_vec();
    whole.extend(confirm(true, "wsloop:news", 1));
    whole.extend(from_other("wsloop:news", true, b"dribbled"));
    whole.extend(from_other("wsloop:news", true, b"and another"));
    redis.send_bytewise(&whole, true);
    h.settle();
    let want = [
        server(OpCode::Text, b"dribbled"),
        server(OpCode::Text, b"and another"),
    ]
    .concat();
    assert_eq!(ws.take_written(), want);
    assert_eq!(redis.unread(), 0, "every byte was read");
}

#[test]
fn a_lost_link_reconnects_after_the_backoff_and_subscribes_again() {
    let (mut h, ws, redis) = subscribed();
    redis.push_read(super::fake::ReadStep::Eof);
    h.settle();
    assert_eq!(link_state(&h), "down");
    assert!(redis.closed(), "the lost socket is closed");
    // While Redis is away a publish has no place in the topic's order: it is dropped (and
    // counted), not delivered here ahead of the others, and its WebSocket is told to try
    // again later (close 1013); the subscriber is left alone.
    let publisher = h.open_at("/topic/elsewhere");
    publisher.send(&client(OpCode::Text, b"not sequenced"));
    h.settle();
    assert!(ws.take_written().is_empty());
    assert_eq!(h.r.metrics.all().redis.dropped.get(), 1);
    assert_eq!(close_code(&publisher.take_written()), Some(1013));
    assert_eq!(h.net().connects, 1, "no reconnect before the backoff");
    // The backoff is at most `--redis-backoff-max`; the loop sleeps until it, not spins.
    h.assert_asleep();
    past_backoff(&mut h);
    let (redis2, sent) = accept_link(&mut h);
    assert_eq!(h.net().connects, 2);
    assert!(
        contains(&sent, b"SUBSCRIBE") && contains(&sent, b"wsloop:news"),
        "the new connection subscribes every live topic again: {:?}",
        String::from_utf8_lossy(&sent)
    );
    redis2.send(HELLO_REPLY);
    redis2.send(&confirm(true, "wsloop:news", 1));
    redis2.send(&from_other("wsloop:news", true, b"after the outage"));
    h.settle();
    assert_eq!(link_state(&h), "up");
    assert_eq!(ws.take_written(), server(OpCode::Text, b"after the outage"));
}

#[test]
fn a_refused_or_failed_connect_is_retried() {
    let mut h = with_redis();
    h.settle();
    let first = h.net().take_outbound().expect("a connect");
    first.refuse_connect(libc::ECONNREFUSED);
    h.settle();
    assert_eq!(link_state(&h), "down");
    assert!(first.closed());
    let ws = h.open_at("/topic/news");
    ws.send(&client(OpCode::Text, b"local"));
    h.settle();
    assert_eq!(
        close_code(&ws.take_written()),
        Some(1013),
        "dropped: Redis cannot order it, and the publisher is told"
    );
    // The next attempt fails at once (connect(2) itself errs): retried again, later.
    h.net().fail_connect(libc::ENETUNREACH);
    past_backoff(&mut h);
    h.settle();
    assert_eq!(h.net().connects, 2);
    assert_eq!(link_state(&h), "down");
    past_backoff(&mut h);
    let (redis, sent) = accept_link(&mut h);
    assert_eq!(h.net().connects, 3);
    assert!(
        contains(&sent, b"wsloop:news"),
        "the live topic is subscribed"
    );
    redis.send(HELLO_REPLY);
    h.settle();
    assert_eq!(link_state(&h), "up");
}

/// `POST /publish/news` with `body`, on a new connection that stays open.
fn post(h: &mut Harness, body: &str) -> Peer {
    let peer = h.net().connect();
    let req = format!(
        "POST /publish/news HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    peer.send(req.as_bytes());
    h.settle();
    peer
}

fn status(peer: &Peer) -> String {
    String::from_utf8_lossy(&peer.written())
        .chars()
        .skip(9)
        .take(3)
        .collect()
}

#[test]
fn an_http_publish_is_answered_when_redis_has_it_or_cannot_take_it() {
    let (mut h, ws, redis) = subscribed();
    // Held until Redis answers with its position; delivered when Redis publishes it.
    let first = post(&mut h, "one");
    assert!(first.written().is_empty(), "no answer before Redis's");
    assert!(ws.take_written().is_empty());
    assert!(contains(&redis.take_written(), b"EVALSHA"));
    // A request pipelined behind it waits too.
    first.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    h.settle();
    assert!(first.written().is_empty());
    redis.send(b":1000001\r\n");
    redis.send(&on_news(1_000_001, b"one"));
    h.settle();
    assert_eq!(ws.take_written(), server(OpCode::Text, b"one"));
    let out = String::from_utf8_lossy(&first.written()).into_owned();
    assert!(out.starts_with("HTTP/1.1 202 "), "{out}");
    assert!(
        out.contains(r#"{"topic":"news","position":"1000001"}"#),
        "{out}"
    );
    assert!(
        out.contains("HTTP/1.1 200 "),
        "then the pipelined request: {out}"
    );
    // Refused by Redis: 503.
    let refused = post(&mut h, "two");
    redis.send(b"-NOPERM this user has no permissions\r\n");
    h.settle();
    assert_eq!(status(&refused), "503", "{:?}", refused.written());
    // The link lost with the reply outstanding: 503, not a 202 for a message that may be lost.
    let lost = post(&mut h, "three");
    redis.push_read(ReadStep::Eof);
    h.settle();
    assert_eq!(status(&lost), "503");
    // And while it is down: 503 at once, with when to retry.
    let down = post(&mut h, "four");
    let out = String::from_utf8_lossy(&down.written()).into_owned();
    assert!(
        out.starts_with("HTTP/1.1 503 ") && out.contains("Retry-After: 1\r\n"),
        "{out}"
    );
}

#[test]
fn an_http_publish_redis_never_answers_gets_503_at_the_hold_deadline() {
    let (mut h, _ws, redis) = subscribed();
    // A long link timeout: the hold runs out first.
    h.r.cfg.redis.timeout = std::time::Duration::from_secs(3600);
    let peer = post(&mut h, "x");
    assert!(contains(&redis.take_written(), b"EVALSHA"));
    let hold = h.r.cfg.timeouts.poll_hold.as_millis() as Tick;
    h.net().advance(hold + 1);
    h.settle();
    assert_eq!(
        status(&peer),
        "503",
        "{:?}",
        String::from_utf8_lossy(&peer.written())
    );
}

#[test]
fn resumes_on_a_topic_not_followed_here_share_one_read_of_its_log() {
    let mut h = with_redis();
    let (redis, _) = accept_link(&mut h);
    redis.send(HELLO_REPLY);
    h.settle();
    // Five clients resume `news` from position 1000002 at once, on a node that never
    // followed it: held, one XRANGE for all of them.
    let get = "GET /sse/news HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 1000002\r\n\r\n";
    let clients: Vec<Peer> = (0..5)
        .map(|_| {
            let p = h.net().connect();
            p.send(get.as_bytes());
            p
        })
        .collect();
    h.settle();
    for c in &clients {
        let w = String::from_utf8_lossy(&c.written()).into_owned();
        assert!(
            w.is_empty(),
            "held until the log is read: {w} {:?}",
            String::from_utf8_lossy(&redis.written())
        );
    }
    let sent = redis.take_written();
    let reads = sent.windows(6).filter(|w| w == b"XRANGE").count();
    assert_eq!(reads, 1, "{:?}", String::from_utf8_lossy(&sent));
    assert!(
        contains(&sent, b"0-1000003"),
        "from the first position after theirs"
    );
    // Redis answers in command order: the read first, then the subscription.
    redis.send(&log_reply(&[(1_000_003, b"three"), (1_000_004, b"four")]));
    redis.send(&confirm(true, "wsloop:news", 1));
    h.settle();
    for c in &clients {
        let out = String::from_utf8_lossy(&c.written()).into_owned();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            out.contains("id: 1000003\ndata: three\n\nid: 1000004\ndata: four\n\n"),
            "{out}"
        );
        assert!(!out.contains("event: gap"), "{out}");
    }
    // And the stream goes on live, in order, from where the log ended.
    redis.send(&on_news(1_000_005, b"five"));
    h.settle();
    for c in &clients {
        let out = String::from_utf8_lossy(&c.written()).into_owned();
        assert!(out.ends_with("id: 1000005\ndata: five\n\n"), "{out}");
    }
}

#[test]
fn messages_held_back_for_a_slow_read_of_the_log_are_bounded() {
    let (mut h, ws, redis) = subscribed();
    redis.send(&on_news(1_000_001, b"1"));
    h.settle();
    assert_eq!(ws.take_written(), texts(&[b"1"]));
    // A jump: the read of 2..4 goes out, and Redis does not answer it.
    redis.send(&on_news(1_000_005, b"5"));
    h.settle();
    assert!(contains(&redis.take_written(), b"XRANGE"));
    let keep = h.r.cfg.pubsub.history_len as u64;
    let held: Vec<Vec<u8>> = (6..=6 + keep).map(|i| i.to_string().into_bytes()).collect();
    for (i, body) in (6..).zip(&held) {
        redis.send(&on_news(1_000_000 + i, body));
    }
    h.settle();
    // Past a log's worth, what was held goes out in order (after the jump), not more piles up.
    let mut want = vec![b"5".to_vec()];
    want.extend(held.iter().cloned());
    let want: Vec<&[u8]> = want.iter().map(|m| &m[..]).collect();
    assert_eq!(ws.take_written(), texts(&want));
    let (_, gap) = h.r.hub.history_after("news", 1_000_001);
    assert!(gap, "the skipped positions are reported, not hidden");
}

#[test]
fn live_subscribers_are_told_of_positions_the_log_no_longer_holds() {
    let (mut h, ws, redis) = subscribed();
    let sse = h.net().connect();
    sse.send(b"GET /sse/news HTTP/1.1\r\nHost: t\r\n\r\n");
    h.settle();
    assert!(String::from_utf8_lossy(&sse.take_written()).starts_with("HTTP/1.1 200 OK\r\n"));
    redis.send(&on_news(1_000_001, b"1"));
    h.settle();
    assert_eq!(ws.take_written(), texts(&[b"1"]));
    assert!(String::from_utf8_lossy(&sse.take_written()).ends_with("id: 1000001\ndata: 1\n\n"));
    // Further on than the log keeps: nothing to read back, the jump goes out — behind a gap
    // notice for the subscriber that can take one (SSE), never silently.
    let far = 1_000_002 + h.r.cfg.pubsub.history_len as u64 + 5;
    redis.send(&on_news(far, b"far"));
    h.settle();
    assert!(
        !contains(&redis.take_written(), b"XRANGE"),
        "beyond the log: no read"
    );
    let out = String::from_utf8_lossy(&sse.take_written()).into_owned();
    let gap = format!(
        "id: 1000001\nevent: gap\ndata: {{\"topic\":\"news\",\"after\":1000001,\"resumed_at\":{far}}}\n\nid: {far}\ndata: far\n\n"
    );
    assert_eq!(out, gap);
    // A raw WebSocket carries no notice: just the message.
    assert_eq!(ws.take_written(), texts(&[b"far"]));
}
