//! The link driven by hand: a scripted Redis answers byte for byte, fed in every chunking,
//! with synthetic time — handshake pipeline, subscriptions, own-node echoes, publishes,
//! timeouts, backoff, linger, reconnection and bad input.
//! Must not: open a socket or wait on real time.
//! Its RESP builders (`push`, `confirm`, `message`, `tagged`, `HELLO_REPLY`) also script Redis
//! for the reactor's fake harness (`reactor/fake_redis_tests.rs`).

use std::time::Duration;

use super::envelope;
use super::link::{Action, Event, Link, LinkError, LinkState};
use crate::config::{RedisConfig, RedisUrl};
use crate::timer::Tick;

const NODE: u64 = 0x1111_2222_3333_4444;
pub(crate) const OTHER: u64 = 0x9999_8888_7777_6666;

fn cfg(password: Option<&str>, db: u32) -> RedisConfig {
    RedisConfig {
        url: Some(RedisUrl {
            host: "127.0.0.1".into(),
            port: 6379,
            username: None,
            password: password.map(String::from),
            db,
            more: Vec::new(),
            tls: false,
        }),
        prefix: "p:".into(),
        timeout: Duration::from_millis(1000),
        backoff_max: Duration::from_millis(800),
        linger: Duration::from_millis(500),
        max_queued: 1000,
        cluster: false,
        ca: None,
        log_ttl: Duration::from_secs(60),
        wait_replicas: 0,
    }
}

fn link() -> Link {
    Link::new(&cfg(None, 0), NODE, 1 << 16, 0)
}

#[test]
fn a_link_formatted_for_debugging_never_shows_the_password() {
    // A derived Debug would print the handshake's bytes as numbers: look for those too.
    let as_numbers = format!("{:?}", b"s3cret");
    let as_numbers = as_numbers.trim_matches(|c| c == '[' || c == ']');
    let hides = |shown: &str| !shown.contains("s3cret") && !shown.contains(as_numbers);
    let mut l = Link::new(&cfg(Some("s3cret-pass"), 2), NODE, 1 << 16, 0);
    let shown = format!("{l:?}");
    assert!(shown.contains("Link") && hides(&shown), "{shown}");
    // Also while the handshake waits to be written.
    assert_eq!(l.poll_action(0), Some(Action::Connect));
    assert!(
        l.tx().windows(6).any(|w| w == b"s3cret"),
        "the handshake is queued"
    );
    let shown = format!("{l:?}");
    assert!(hides(&shown), "{shown}");
}

/// RESP of a command, as Redis receives it.
fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub(crate) fn push(kind: &str, channel: &str, last: &[u8]) -> Vec<u8> {
    let mut out = format!(
        ">3\r\n${}\r\n{kind}\r\n${}\r\n{channel}\r\n",
        kind.len(),
        channel.len()
    )
    .into_bytes();
    out.extend_from_slice(last);
    out
}

pub(crate) fn message(channel: &str, payload: &[u8]) -> Vec<u8> {
    let mut blob = format!("${}\r\n", payload.len()).into_bytes();
    blob.extend_from_slice(payload);
    blob.extend_from_slice(b"\r\n");
    push("message", channel, &blob)
}

pub(crate) fn confirm(subscribed: bool, channel: &str, count: u32) -> Vec<u8> {
    let kind = if subscribed {
        "subscribe"
    } else {
        "unsubscribe"
    };
    push(kind, channel, format!(":{count}\r\n").as_bytes())
}

pub(crate) fn tagged(node: u64, text: bool, body: &[u8]) -> Vec<u8> {
    [&envelope::header(node, text)[..], body].concat()
}

/// What Redis answers to the handshake without `SELECT`: `HELLO`'s map, then `SCRIPT LOAD`'s
/// SHA-1 of the sequencing script.
pub(crate) const HELLO_REPLY: &[u8] = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n\
$40\r\n0123456789012345678901234567890123456789\r\n";

/// A message as the sequencing script publishes it.
pub(crate) fn sequenced(seq: u64, epoch: u64, text: bool, body: &[u8]) -> Vec<u8> {
    envelope::sequenced(envelope::Position { seq, epoch }, text, body)
}

/// Redis's answer to an `XRANGE` of a topic's log holding `entries` (position, payload; text).
pub(crate) fn log_reply(entries: &[(u64, &[u8])]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", entries.len()).into_bytes();
    for (seq, payload) in entries {
        let id = format!("0-{seq}");
        out.extend(
            format!(
                "*2\r\n${}\r\n{id}\r\n*4\r\n$1\r\nk\r\n$1\r\nt\r\n$1\r\nm\r\n",
                id.len()
            )
            .bytes(),
        );
        out.extend(format!("${}\r\n", payload.len()).bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The sequencing script's SHA-1, as `EVALSHA` names it.
pub(crate) fn script_sha() -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        super::link::SEQUENCE_SCRIPT.as_bytes(),
    );
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The `EVALSHA` a publish of `body` on `topic` is, with prefix `p:` keeping `keep`.
fn evalsha(topic: &str, text: bool, body: &[u8], keep: usize) -> Vec<u8> {
    let sha = script_sha();
    let meta = format!("p:{{{topic}}}:meta");
    let log = format!("p:{{{topic}}}:log");
    let channel = format!("p:{topic}");
    let keep = keep.to_string();
    let kind: &[u8] = if text { b"t" } else { b"b" };
    cmd(&[
        b"EVALSHA",
        sha.as_bytes(),
        b"2",
        meta.as_bytes(),
        log.as_bytes(),
        channel.as_bytes(),
        kind,
        body,
        keep.as_bytes(),
        b"PUBLISH",
        b"60000",
    ])
}

type Got = Vec<(String, bool, Vec<u8>)>;

/// Feed `chunks` one at a time, draining events after each.
fn feed(l: &mut Link, chunks: &[&[u8]], now: Tick) -> Result<Got, LinkError> {
    let mut got = Vec::new();
    for c in chunks {
        l.feed(c, now);
        while let Some(Event::Message {
            topic,
            text,
            payload,
            ..
        }) = l.poll_event(now)?
        {
            got.push((topic.to_string(), text, payload.to_vec()));
        }
    }
    Ok(got)
}

/// A link connected and up, subscribed to `topics`.
fn up(topics: &[&str]) -> Link {
    let mut l = link();
    for t in topics {
        l.want(t);
    }
    assert_eq!(l.poll_action(0), Some(Action::Connect));
    let n = l.tx().len();
    l.consume_tx(n);
    let mut replies = HELLO_REPLY.to_vec();
    for (i, t) in topics.iter().enumerate() {
        replies.extend(confirm(true, &format!("p:{t}"), i as u32 + 1));
    }
    feed(&mut l, &[&replies], 0).unwrap();
    assert_eq!(l.state(), LinkState::Up);
    l
}

#[test]
fn the_handshake_and_every_live_topic_leave_as_one_pipeline() {
    let mut l = Link::new(&cfg(Some("pw"), 2), NODE, 1 << 16, 0);
    l.want("b");
    l.want("a");
    assert_eq!(l.state(), LinkState::Down);
    assert!(l.tx().is_empty(), "nothing is queued before a connection");
    assert_eq!(l.poll_action(0), Some(Action::Connect));
    assert_eq!(l.state(), LinkState::Connecting);
    let name = format!("wsloop-{NODE:016x}");
    let want = [
        cmd(&[
            b"HELLO",
            b"3",
            b"AUTH",
            b"default",
            b"pw",
            b"SETNAME",
            name.as_bytes(),
        ]),
        cmd(&[b"SELECT", b"2"]),
        cmd(&[b"SCRIPT", b"LOAD", super::link::SEQUENCE_SCRIPT.as_bytes()]),
        cmd(&[b"SUBSCRIBE", b"p:a", b"p:b"]),
    ]
    .concat();
    assert_eq!(l.tx(), &want[..]);
}

#[test]
fn replies_and_messages_decode_alike_in_every_chunking() {
    let server = [
        HELLO_REPLY.to_vec(),
        confirm(true, "p:a", 1),
        message("p:a", &tagged(OTHER, true, b"from B")),
        confirm(true, "p:b", 2),
        // Our own publish echoed back by a node of an earlier release's tagging: dropped.
        message("p:b", &tagged(NODE, true, b"mine")),
        // Sequenced (ours or anyone's): delivered, in Redis's order.
        message("p:b", &sequenced(1_000_001, 1_000_000, true, b"sequenced")),
        // Someone else's channel, and a channel of ours for a topic we do not hold.
        message("q:a", &tagged(OTHER, true, b"other prefix")),
        message("p:zzz", &tagged(OTHER, true, b"not held")),
        // redis-cli PUBLISH p:b hello; and a binary one.
        message("p:b", b"hello"),
        message("p:a", &tagged(OTHER, false, &[0xff, 0])),
    ]
    .concat();
    let want: Got = vec![
        ("a".into(), true, b"from B".to_vec()),
        ("b".into(), true, b"sequenced".to_vec()),
        ("b".into(), true, b"hello".to_vec()),
        ("a".into(), false, vec![0xff, 0]),
    ];
    let start = || {
        let mut l = link();
        l.want("a");
        l.want("b");
        assert_eq!(l.poll_action(0), Some(Action::Connect));
        l
    };
    let mut l = start();
    assert_eq!(feed(&mut l, &[&server], 0).unwrap(), want);
    assert_eq!(l.state(), LinkState::Up);
    assert_eq!(l.stats().channels, 2);
    assert_eq!(l.stats().received, 4);
    for cut in 1..server.len() {
        let mut l = start();
        let got = feed(&mut l, &[&server[..cut], &server[cut..]], 0).unwrap();
        assert_eq!(got, want, "split at {cut}");
    }
    let bytes: Vec<&[u8]> = server.chunks(1).collect();
    assert_eq!(feed(&mut start(), &bytes, 0).unwrap(), want, "byte by byte");
    let threes: Vec<&[u8]> = server.chunks(3).collect();
    assert_eq!(feed(&mut start(), &threes, 0).unwrap(), want, "3 at a time");
}

#[test]
fn publishes_are_sequenced_by_the_script_and_dropped_when_the_link_is_not_up() {
    let mut l = link();
    assert!(!l.publish("a", true, b"early", None));
    assert_eq!(l.poll_action(0), Some(Action::Connect));
    assert!(!l.publish("a", true, b"handshake pending", None));
    assert_eq!(l.stats().dropped, 2);
    let mut l = up(&[]);
    assert!(l.publish("news", true, b"hi", None));
    assert_eq!(l.tx(), &evalsha("news", true, b"hi", 100)[..]);
    feed(&mut l, &[b":1000003\r\n"], 1).unwrap();
    let n = l.tx().len();
    l.consume_tx(n);
    // Redis stops reading: past max_queued (1000 bytes) publishes are dropped, not queued.
    let big = vec![b'x'; 400];
    let sent = (0..5).filter(|_| l.publish("t", false, &big, None)).count();
    assert_eq!(sent, 2, "queued until over 1000 bytes (each about 540)");
    assert_eq!(l.stats().published, 3);
    assert_eq!(l.stats().dropped, 3);
    // A refused publish counts as dropped too.
    let n = l.tx().len();
    l.consume_tx(n);
    feed(&mut l, &[b"-NOPERM no\r\n:1000004\r\n"], 1).unwrap();
    assert_eq!(l.stats().dropped, 4);
    assert_eq!(l.state(), LinkState::Up);
    // The script flushed from Redis: a new connection loads it again.
    assert!(l.publish("t", true, b"x", None));
    let err = feed(&mut l, &[b"-NOSCRIPT No matching script.\r\n"], 2);
    assert!(
        matches!(err, Err(LinkError::Refused("EVALSHA", _))),
        "{err:?}"
    );
    assert_eq!(l.state(), LinkState::Down);
}

#[test]
fn a_waiting_publisher_is_told_once_whether_redis_took_its_message() {
    // Not up: refused at once.
    let mut l = link();
    assert!(!l.publish("a", true, b"early", Some(1)));
    assert_eq!(l.take_acks().collect::<Vec<_>>(), [(1, None)]);
    // Up: Redis's answers, in command order — taken, refused (a PUBLISH error) — and one
    // publisher who does not wait.
    let mut l = up(&[]);
    assert!(l.publish("t", true, b"a", Some(2)));
    assert!(l.publish("t", true, b"b", None));
    assert!(l.publish("t", true, b"c", Some(3)));
    assert!(l.publish("t", true, b"d", Some(4)));
    assert!(
        l.take_acks().next().is_none(),
        "nothing before Redis answers"
    );
    feed(&mut l, &[b":11\r\n:12\r\n-NOPERM no\r\n"], 1).unwrap();
    assert_eq!(
        l.take_acks().collect::<Vec<_>>(),
        [(2, Some(11)), (3, None)],
        "told the position Redis gave, or that it refused"
    );
    // The link fails with 4 unanswered: told it may be lost, once.
    assert_eq!(l.poll_action(2000), None, "a PING after silence");
    assert!(matches!(l.poll_action(4000), Some(Action::Disconnect(_))));
    assert_eq!(l.take_acks().collect::<Vec<_>>(), [(4, None)]);
    assert!(l.take_acks().next().is_none());
}

#[test]
fn connect_deadline_then_jittered_doubling_backoff_capped() {
    let mut l = link();
    let mut now = 0;
    let mut bounds = Vec::new();
    for _ in 0..6 {
        assert_eq!(l.poll_action(now), Some(Action::Connect));
        assert_eq!(l.next_deadline(), Some(now + 1000), "connect deadline");
        assert_eq!(l.poll_action(now + 999), None);
        now += 1000;
        assert!(matches!(l.poll_action(now), Some(Action::Disconnect(_))));
        assert_eq!(l.state(), LinkState::Down);
        let retry = l.next_deadline().unwrap();
        bounds.push(retry - now);
        assert_eq!(l.poll_action(retry - 1), None);
        now = retry;
    }
    let max = [100, 200, 400, 800, 800, 800];
    for (wait, max) in bounds.iter().zip(max) {
        assert!(
            (max / 2..=max).contains(wait),
            "waits {bounds:?} within half to all of {max}"
        );
    }
    assert_eq!(l.stats().reconnects, 5);
    // Success resets the backoff: the next failure waits at most 100 ms again.
    assert_eq!(l.poll_action(now), Some(Action::Connect));
    feed(&mut l, &[HELLO_REPLY], now).unwrap();
    l.on_closed(now);
    assert!(l.next_deadline().unwrap() - now <= 100);
}

#[test]
fn silence_brings_a_ping_and_an_unanswered_ping_drops_the_link() {
    let mut l = up(&[]);
    assert_eq!(l.next_deadline(), Some(1000));
    assert_eq!(l.poll_action(999), None);
    assert!(l.tx().is_empty());
    assert_eq!(l.poll_action(1000), None);
    assert_eq!(l.tx(), &cmd(&[b"PING"])[..]);
    l.consume_tx(14);
    // Answered: the link stays up and the next ping waits for new silence.
    feed(&mut l, &[b"+PONG\r\n"], 1500).unwrap();
    assert_eq!(l.poll_action(2400), None);
    assert!(l.tx().is_empty());
    assert_eq!(l.poll_action(2500), None);
    assert_eq!(l.tx(), &cmd(&[b"PING"])[..]);
    // Unanswered (Redis paused): dropped after another timeout.
    assert_eq!(l.poll_action(3499), None);
    assert!(matches!(l.poll_action(3500), Some(Action::Disconnect(_))));
    assert_eq!(l.state(), LinkState::Down);
}

#[test]
fn a_channel_lingers_after_its_last_holder_then_is_unsubscribed() {
    let mut l = up(&["a", "b"]);
    l.want("a"); // a second worker holds it: no second SUBSCRIBE
    assert!(l.tx().is_empty());
    l.unwant("a", 100);
    l.unwant("b", 100);
    assert_eq!(l.poll_action(599), None);
    assert!(l.tx().is_empty(), "a still held, b lingering");
    // b is held again within its linger: nothing to do, ever.
    l.want("b");
    l.unwant("b", 700);
    assert_eq!(l.poll_action(700), None);
    assert!(l.tx().is_empty());
    l.unwant("a", 800);
    assert_eq!(
        l.next_deadline(),
        Some(1000),
        "the ping, before a's linger ends"
    );
    feed(&mut l, &[b""], 1000).unwrap(); // bytes from Redis: no ping due
    assert_eq!(l.poll_action(1200), None);
    assert_eq!(l.tx(), &cmd(&[b"UNSUBSCRIBE", b"p:b"])[..]);
    let n = l.tx().len();
    l.consume_tx(n);
    assert_eq!(l.poll_action(1300), None);
    assert_eq!(l.tx(), &cmd(&[b"UNSUBSCRIBE", b"p:a"])[..]);
    assert_eq!(l.topic_count(), 0);
    // A message that crossed the UNSUBSCRIBE is not delivered.
    let late = [
        message("p:a", &tagged(OTHER, true, b"late")),
        confirm(false, "p:b", 1),
        confirm(false, "p:a", 0),
    ]
    .concat();
    assert_eq!(feed(&mut l, &[&late], 1300).unwrap(), vec![]);
    assert_eq!(l.stats().channels, 0);
}

#[test]
fn after_a_loss_every_live_topic_is_resubscribed_in_one_pipeline() {
    let mut l = up(&["x", "y"]);
    l.unwant("y", 10); // lingering: still resubscribed
    l.on_closed(20);
    assert_eq!(l.state(), LinkState::Down);
    assert_eq!(l.stats().channels, 0);
    assert!(
        !l.publish("x", true, b"lost", None),
        "at most once while down"
    );
    let retry = l.next_deadline().unwrap();
    assert!((70..=120).contains(&retry), "{retry}");
    l.want("z"); // while down: subscribed with the rest on reconnect
    assert!(l.tx().is_empty());
    assert_eq!(l.poll_action(retry), Some(Action::Connect));
    let tx = l.tx().to_vec();
    let subscribe = cmd(&[b"SUBSCRIBE", b"p:x", b"p:y", b"p:z"]);
    assert!(tx.ends_with(&subscribe), "{}", String::from_utf8_lossy(&tx));
    assert_eq!(l.stats().reconnects, 1);
}

#[test]
fn bad_replies_drop_the_link() {
    // HELLO refused (wrong password, or a Redis older than 6).
    let mut l = link();
    l.poll_action(0);
    let err = feed(
        &mut l,
        &[b"-WRONGPASS invalid username-password pair\r\n"],
        5,
    );
    assert_eq!(
        err,
        Err(LinkError::Refused(
            "HELLO 3",
            "WRONGPASS invalid username-password pair".into()
        ))
    );
    assert_eq!(l.state(), LinkState::Down);
    // A reply nobody asked for.
    let mut l = up(&[]);
    assert_eq!(
        feed(&mut l, &[b"+OK\r\n"], 1),
        Err(LinkError::Unexpected("a reply to no command"))
    );
    // A confirmation nobody asked for.
    let mut l = up(&[]);
    assert!(feed(&mut l, &[&confirm(true, "p:q", 1)], 1).is_err());
    // Not RESP at all.
    let mut l = up(&[]);
    assert!(matches!(
        feed(&mut l, &[b"HTTP/1.1 400 Bad Request\r\n"], 1),
        Err(LinkError::Resp(_))
    ));
    // A frame growing past the message limit (64 KiB + 1 KiB here).
    let mut l = up(&["a"]);
    let huge = format!(">3\r\n$7\r\nmessage\r\n$3\r\np:a\r\n${}\r\n", 1 << 20);
    let mut chunks = vec![huge.into_bytes()];
    chunks.extend(std::iter::repeat_n(vec![b'x'; 16 << 10], 5));
    let chunks: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
    assert!(matches!(
        feed(&mut l, &chunks, 1),
        Err(LinkError::TooLarge { .. })
    ));
    assert_eq!(l.state(), LinkState::Down);
    // The same frame arriving whole is refused alike: the split never decides.
    let mut l = up(&["a"]);
    let whole = message("p:a", &vec![b'x'; 70 << 10]);
    assert!(matches!(
        feed(&mut l, &[&whole], 1),
        Err(LinkError::TooLarge { .. })
    ));
}

#[test]
fn a_read_of_a_log_is_answered_in_order_or_reported_lost() {
    let mut l = link();
    assert!(!l.read_log("t", 5, 9, 0), "not while the link is down");
    let mut l = up(&["t"]);
    assert!(l.read_log("t", 5, 9, 7));
    assert_eq!(
        l.tx(),
        &cmd(&[b"XRANGE", b"p:{t}:log", b"0-5", b"0-9", b"COUNT", b"100"])[..]
    );
    // A message pushed before the answer comes first; the answer is the entries, in order.
    let server = [
        message("p:t", &sequenced(1_000_010, 1_000_000, true, b"live")),
        log_reply(&[(1_000_005, b"five"), (1_000_006, b"six")]),
    ]
    .concat();
    l.feed(&server, 1);
    match l.poll_event(1) {
        Ok(Some(Event::Message { payload, .. })) => assert_eq!(payload, b"live"),
        other => panic!("{other:?}"),
    }
    match l.poll_event(1) {
        Ok(Some(Event::Log {
            topic,
            tag,
            entries,
        })) => {
            assert_eq!((&*topic, tag), ("t", 7));
            let want = vec![
                (1_000_005, true, b"five".to_vec()),
                (1_000_006, true, b"six".to_vec()),
            ];
            assert_eq!(entries, want);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.take_lost_reads().count(), 0);
    // Lost with the connection before Redis answered: reported once.
    assert!(l.read_log("t", 7, 9, 3));
    l.on_closed(2);
    let lost: Vec<(Box<str>, u32)> = l.take_lost_reads().collect();
    assert_eq!(lost, [("t".into(), 3)]);
    assert_eq!(l.take_lost_reads().count(), 0);
}

/// A link to one master of a cluster (prefix `p:`), connected and up, holding nothing.
fn cluster_up() -> Link {
    let mut c = cfg(None, 0);
    c.cluster = true;
    let mut l = Link::new(&c, NODE, 1 << 16, 0);
    assert_eq!(l.poll_action(0), Some(Action::Connect));
    let n = l.tx().len();
    l.consume_tx(n);
    feed(&mut l, &[HELLO_REPLY], 0).unwrap();
    assert_eq!(l.state(), LinkState::Up);
    l
}

fn take_tx(l: &mut Link) -> Vec<u8> {
    let out = l.tx().to_vec();
    l.consume_tx(out.len());
    out
}

#[test]
fn on_a_cluster_channels_are_sharded_subscribed_one_slot_per_command_and_redirects_followed() {
    let mut l = cluster_up();
    // Topics of two slots: one SSUBSCRIBE per slot (a node refuses CROSSSLOT commands).
    // `p:{a}` and `p:{b}` hash apart; `p:{a}` and a topic of the same tag would share one.
    assert_ne!(l.slot_of("a"), l.slot_of("b"));
    assert_eq!(l.slot_of("a"), super::slots::key_slot(b"p:{a}"));
    l.want("a");
    l.want("b");
    assert_eq!(
        take_tx(&mut l),
        [
            cmd(&[b"SSUBSCRIBE", b"p:{a}"]),
            cmd(&[b"SSUBSCRIBE", b"p:{b}"])
        ]
        .concat()
    );
    let mut confirms = push("ssubscribe", "p:{a}", b":1\r\n");
    confirms.extend(push("ssubscribe", "p:{b}", b":2\r\n"));
    // A sharded message names the topic inside the hash tag.
    let body = sequenced(8, 7, true, b"hi");
    let mut blob = format!("${}\r\n", body.len()).into_bytes();
    blob.extend_from_slice(&body);
    blob.extend_from_slice(b"\r\n");
    confirms.extend(push("smessage", "p:{a}", &blob));
    let got = feed(&mut l, &[&confirms], 0).unwrap();
    assert_eq!(got, vec![("a".to_string(), true, b"hi".to_vec())]);
    assert_eq!(l.stats().channels, 2);

    // A publish names the sharded channel and SPUBLISH.
    assert!(l.publish("a", true, b"x", Some(41)));
    let sha = script_sha();
    let sent = take_tx(&mut l);
    assert_eq!(
        sent,
        cmd(&[
            b"EVALSHA",
            sha.as_bytes(),
            b"2",
            b"p:{a}:meta",
            b"p:{a}:log",
            b"p:{a}",
            b"t",
            b"x",
            b"100",
            b"SPUBLISH",
            b"60000"
        ])
    );
    // MOVED: not run here, handed back to be sent on, the map marked stale; the publisher
    // is not answered yet.
    feed(&mut l, &[b"-MOVED 15495 127.0.0.1:7103\r\n"], 0).unwrap();
    assert!(l.take_acks().next().is_none());
    assert!(l.take_stale());
    let r: Vec<_> = l.take_redirects().collect();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].to.slot, r[0].to.ask, r[0].waiter()),
        (15495, false, Some(41))
    );
    // Sent on through an ASK: ASKING first, the same command, answered with a position.
    let mut other = cluster_up();
    let mut r = r.into_iter().next().unwrap();
    r.to.ask = true;
    assert!(other.resend(r));
    assert_eq!(
        take_tx(&mut other),
        [cmd(&[b"ASKING"]), sent.clone()].concat()
    );
    feed(&mut other, &[b"+OK\r\n:9\r\n"], 0).unwrap();
    assert_eq!(other.take_acks().collect::<Vec<_>>(), vec![(41, Some(9))]);
    assert!(!other.take_stale(), "an ASK does not make the map stale");

    // A node giving up a slot unasked: the topic is subscribed again once told.
    feed(&mut l, &[&push("sunsubscribe", "p:{b}", b":1\r\n")], 0).unwrap();
    assert!(l.take_stale());
    l.resubscribe();
    assert_eq!(take_tx(&mut l), cmd(&[b"SSUBSCRIBE", b"p:{b}"]));
    feed(&mut l, &[&push("ssubscribe", "p:{b}", b":2\r\n")], 0).unwrap();

    // Handing a topic to another link: unsubscribed here, its holders carried over.
    let held = l.release("a").unwrap();
    assert_eq!(take_tx(&mut l), cmd(&[b"SUNSUBSCRIBE", b"p:{a}"]));
    other.adopt("a", held);
    assert!(other.holds("a") && !l.holds("a"));
    assert_eq!(take_tx(&mut other), cmd(&[b"SSUBSCRIBE", b"p:{a}"]));

    // The map, asked for and answered.
    assert!(l.ask_slots());
    assert_eq!(take_tx(&mut l), cmd(&[b"CLUSTER", b"SLOTS"]));
    feed(
        &mut l,
        &[
            &push("sunsubscribe", "p:{a}", b":1\r\n"),
            b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:7101\r\n",
        ],
        0,
    )
    .unwrap();
    let slots = l.take_slots().unwrap();
    assert_eq!(
        (slots[0].first, slots[0].last, slots[0].master.port()),
        (0, 16383, 7101)
    );

    // Redirections are followed a bounded number of times, then the publisher is told.
    assert!(l.publish("b", false, b"y", Some(7)));
    take_tx(&mut l);
    let mut sent = 0;
    loop {
        feed(&mut l, &[b"-MOVED 1 127.0.0.1:7101\r\n"], 0).unwrap();
        let r = l.take_redirects().next().unwrap();
        if !l.resend(r) {
            break;
        }
        sent += 1;
        take_tx(&mut l);
    }
    assert_eq!(sent, 4);
    assert_eq!(l.take_acks().collect::<Vec<_>>(), vec![(7, None)]);
}

#[test]
fn with_wait_replicas_a_publisher_is_answered_once_the_replicas_have_its_batch() {
    let mut c = cfg(None, 0);
    c.wait_replicas = 1;
    let mut l = Link::new(&c, NODE, 1 << 16, 0);
    assert_eq!(l.poll_action(0), Some(Action::Connect));
    take_tx(&mut l);
    feed(&mut l, &[HELLO_REPLY], 0).unwrap();
    // Two publishes, one batch: one WAIT after both (timeout: half of redis_timeout).
    assert!(l.publish("a", true, b"1", Some(1)));
    assert!(l.publish("a", true, b"2", Some(2)));
    l.seal();
    l.seal(); // nothing new: no second WAIT
    let sent = take_tx(&mut l);
    let wait = cmd(&[b"WAIT", b"1", b"500"]);
    assert!(
        sent.ends_with(&wait),
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
    assert_eq!(sent.windows(4).filter(|w| w == b"WAIT").count(), 1);
    // Redis numbered them; nobody is answered until the replica has them.
    feed(&mut l, &[b":5\r\n:6\r\n"], 0).unwrap();
    assert!(l.take_acks().next().is_none());
    feed(&mut l, &[b":1\r\n"], 0).unwrap();
    assert_eq!(
        l.take_acks().collect::<Vec<_>>(),
        vec![(1, Some(5)), (2, Some(6))]
    );
    // No replica within the timeout: published, but not promised.
    assert!(l.publish("a", true, b"3", Some(3)));
    l.seal();
    take_tx(&mut l);
    feed(&mut l, &[b":7\r\n:0\r\n"], 0).unwrap();
    assert_eq!(l.take_acks().collect::<Vec<_>>(), vec![(3, None)]);
    // Numbered but the connection lost before the WAIT's answer: not promised either.
    assert!(l.publish("a", true, b"4", Some(4)));
    l.seal();
    take_tx(&mut l);
    feed(&mut l, &[b":8\r\n"], 0).unwrap();
    l.on_closed(0);
    assert_eq!(l.take_acks().collect::<Vec<_>>(), vec![(4, None)]);
}
