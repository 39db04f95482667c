//! The HTTP push transports over raw HTTP on loopback: SSE framing byte for byte and resume
//! with Last-Event-ID, long polls held then released or timed out, short polls, pipelined
//! keep-alive requests answered in order, a poll pipelined behind a publish seeing it, one publish reaching WebSocket, SSE, streaming and
//! polling subscribers alike, and bad input refused (413, 414, 431, 411, 405) without
//! disturbing anyone.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use client::{read_until, Client};
use server::{at, Server};

/// Send raw bytes on a new connection.
fn send(srv: &Server, raw: &str) -> TcpStream {
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    s
}

fn publish(srv: &Server, topic: &str, body: &str) {
    let mut s = send(
        srv,
        &format!(
            "POST /publish/{topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    let resp = read_until(&mut s, "\r\n\r\n", 1);
    assert!(resp.starts_with("HTTP/1.1 202 Accepted\r\n"), "{resp}");
}

fn body_of(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn sse_framing_byte_for_byte_and_resume_with_last_event_id() {
    let srv = Server::start(&["--workers", "1", "--sse-retry", "2500ms"]);
    let e = srv.epoch();
    let mut sse = send(&srv, "GET /sse/news HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = read_until(&mut sse, "retry: 2500\n\n", 1);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for h in [
        "Content-Type: text/event-stream\r\n",
        "Cache-Control: no-store\r\n",
        "X-Accel-Buffering: no\r\n",
    ] {
        assert!(head.contains(h), "missing {h:?} in {head}");
    }
    assert!(head.ends_with("\r\n\r\nretry: 2500\n\n"), "{head:?}");
    publish(&srv, "news", "one");
    publish(&srv, "news", "two\nlines\r\nhere");
    publish(&srv, "news", "three");
    let events = read_until(&mut sse, "\n\n", 3);
    assert_eq!(
        events,
        at(
            e,
            "id: {1}\ndata: one\n\nid: {2}\ndata: two\ndata: lines\ndata: here\n\nid: {3}\ndata: three\n\n"
        )
    );
    // A client that saw id 1 reconnects: it gets exactly 2 and 3, then new ones.
    let mut again = send(
        &srv,
        &at(
            e,
            "GET /sse/news HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {1}\r\n\r\n",
        ),
    );
    let replay = read_until(&mut again, &at(e, "id: {3}"), 1);
    let body = body_of(&replay);
    assert_eq!(
        body,
        at(
            e,
            "retry: 2500\n\nid: {2}\ndata: two\ndata: lines\ndata: here\n\nid: {3}\ndata: three\n\n"
        )
    );
    publish(&srv, "news", "four");
    assert_eq!(
        read_until(&mut again, "\n\n", 1),
        at(e, "id: {4}\ndata: four\n\n")
    );
    // The same through the query string (EventSource polyfills).
    let mut q = send(
        &srv,
        &at(
            e,
            "GET /sse/news?lastEventId={3} HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
    );
    let four = at(e, "id: {4}\ndata: four\n\n");
    assert!(body_of(&read_until(&mut q, &at(e, "id: {4}"), 1)).ends_with(&four));
}

#[test]
fn a_resume_past_the_history_is_told_about_the_gap() {
    let srv = Server::start(&["--workers", "1", "--history-len", "2"]);
    let e = srv.epoch();
    for i in 1..=5 {
        publish(&srv, "g", &format!("m{i}"));
    }
    let mut sse = send(
        &srv,
        &at(
            e,
            "GET /sse/g HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {1}\r\n\r\n",
        ),
    );
    let got = read_until(&mut sse, "data: m5", 1);
    let gap = at(
        e,
        "event: gap\ndata: {\"topic\":\"g\",\"after\":{1},\"resumed_at\":{4}}\n\n",
    );
    assert!(got.contains(&gap), "{got}");
    let tail = at(e, "id: {4}\ndata: m4\n\nid: {5}\ndata: m5\n\n");
    assert!(got.ends_with(&tail), "{got}");
}

#[test]
fn long_poll_is_held_then_released_by_a_publish() {
    let srv = Server::start(&["--workers", "1"]);
    let e = srv.epoch();
    let start = Instant::now();
    let mut poll = send(&srv, "GET /poll/lp HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    publish(&srv, "lp", "wake up");
    let resp = read_until(&mut poll, "]}", 1);
    assert!(start.elapsed() >= Duration::from_millis(300), "it was held");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert_eq!(
        body_of(&resp),
        at(
            e,
            r#"{"topic":"lp","last_seq":{1},"gap":false,"messages":[{"seq":{1},"text":"wake up"}]}"#
        )
    );
}

#[test]
fn long_poll_times_out_with_204_and_short_poll_answers_at_once() {
    let srv = Server::start(&["--workers", "1", "--poll-hold", "500ms"]);
    let e = srv.epoch();
    let start = Instant::now();
    let from_start = at(
        e,
        "GET /poll/quiet?after={0}&wait=0 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let mut poll = send(
        &srv,
        &at(e, "GET /poll/quiet?after={0} HTTP/1.1\r\nHost: t\r\n\r\n"),
    );
    let resp = read_until(&mut poll, "\r\n\r\n", 1);
    let waited = start.elapsed();
    assert!(resp.starts_with("HTTP/1.1 204 No Content\r\n"), "{resp}");
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Short poll: wait=0 answers now, empty or not.
    poll.write_all(from_start.as_bytes()).unwrap();
    let resp = read_until(&mut poll, "]}", 1);
    assert_eq!(
        body_of(&resp),
        at(
            e,
            r#"{"topic":"quiet","last_seq":{0},"gap":false,"messages":[]}"#
        )
    );
    publish(&srv, "quiet", "now");
    poll.write_all(from_start.as_bytes()).unwrap();
    let resp = read_until(&mut poll, "]}", 1);
    assert!(
        body_of(&resp).contains(&at(e, r#"[{"seq":{1},"text":"now"}]"#)),
        "{resp}"
    );
}

#[test]
fn pipelined_keep_alive_requests_are_answered_in_order() {
    let srv = Server::start(&["--workers", "1"]);
    let e = srv.epoch();
    publish(&srv, "p", "x");
    let mut s = send(
        &srv,
        &at(
            e,
            "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /poll/p?after={0} HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /nope HTTP/1.1\r\nHost: t\r\n\r\n\
         POST /publish/p HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\ny\
         GET /poll/p?after={1} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
    );
    let all = read_until(&mut s, "\r\n\r\n", 99);
    let statuses: Vec<&str> = all
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &all[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, vec!["200", "200", "404", "202", "200"], "{all}");
    assert!(
        all.contains(&at(e, r#""messages":[{"seq":{2},"text":"y"}]"#)),
        "{all}"
    );
}

#[test]
fn a_poll_pipelined_behind_a_publish_sees_it() {
    // Read-your-writes on one keep-alive connection, both requests in one read: the publish
    // is applied before the poll is read, so a short poll (which never waits) finds it.
    let srv = Server::start(&["--workers", "1"]);
    let e = srv.epoch();
    publish(&srv, "ryw", "a");
    let mut s = send(
        &srv,
        &at(
            e,
            "POST /publish/ryw HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nb\
         GET /poll/ryw?after={1}&wait=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
    );
    let all = read_until(&mut s, "\r\n\r\n", 99);
    let statuses: Vec<&str> = all
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &all[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, vec!["202", "200"], "{all}");
    assert!(
        all.contains(&at(e, r#""messages":[{"seq":{2},"text":"b"}]"#)),
        "{all}"
    );
}

#[test]
fn one_publish_reaches_websocket_sse_stream_and_poll_subscribers() {
    let srv = Server::start(&["--workers", "1"]);
    let e = srv.epoch();
    let mut ws = Client::open_path(srv.addr(), "/topic/all");
    let mut sse = send(&srv, "GET /sse/all HTTP/1.1\r\nHost: t\r\n\r\n");
    read_until(&mut sse, "retry:", 1);
    let mut stream = send(&srv, "GET /stream/all HTTP/1.1\r\nHost: t\r\n\r\n");
    read_until(&mut stream, "\r\n\r\n", 1);
    let mut poll = send(&srv, "GET /poll/all HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));
    publish(&srv, "all", "everyone");
    assert_eq!(ws.next_text(), "everyone");
    assert_eq!(
        read_until(&mut sse, "\n\n", 1),
        at(e, "id: {1}\ndata: everyone\n\n")
    );
    assert_eq!(read_until(&mut stream, "\r\n", 2), "9\r\neveryone\n\r\n");
    let batch = at(e, r#"[{"seq":{1},"text":"everyone"}]}"#);
    assert!(read_until(&mut poll, "]}", 1).ends_with(&batch));
    // And a WebSocket publish reaches the HTTP subscribers too.
    ws.send_frame(0x81, b"from ws");
    assert_eq!(
        read_until(&mut sse, "\n\n", 1),
        at(e, "id: {2}\ndata: from ws\n\n")
    );
}

#[test]
fn bad_http_input_is_refused_and_disturbs_no_one() {
    let srv = Server::start(&["--workers", "1", "--max-body", "1000"]);
    let mut ws = Client::open(srv.addr());
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "oversized body, refused before it is read",
            "POST /publish/t HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\n".into(),
            "413",
        ),
        (
            "request line over 8 KiB",
            format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000)),
            "414",
        ),
        (
            "header flood",
            format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(200)),
            "431",
        ),
        (
            "chunked body",
            "POST /publish/t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            "411",
        ),
        (
            "POST without length",
            "POST /publish/t HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            "411",
        ),
        (
            "wrong method",
            "DELETE /sse/t HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            "405",
        ),
        (
            "GET on publish",
            "GET /publish/t HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            "405",
        ),
        (
            "topic name too long",
            format!("GET /poll/{} HTTP/1.1\r\nHost: t\r\n\r\n", "t".repeat(300)),
            "400",
        ),
        ("garbage", "\u{1}\u{2}\u{3} nonsense\r\n\r\n".into(), "400"),
    ];
    for (name, raw, want) in cases {
        let mut s = send(&srv, &raw);
        let resp = read_until(&mut s, "\r\n\r\n", 1);
        assert_eq!(resp.get(9..12), Some(want), "{name}: {resp}");
        ws.echo("still fine");
    }
    srv.pid();
}

#[test]
fn the_demo_page_and_health_are_served() {
    let srv = Server::start(&["--workers", "1"]);
    let mut s = send(
        &srv,
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let page = read_until(&mut s, "</html>", 1);
    assert!(
        page.starts_with("HTTP/1.1 200 OK\r\n") && page.contains("text/html"),
        "{page}"
    );
    let mut s = send(
        &srv,
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(body_of(&read_until(&mut s, "ok\n", 1)) == "ok\n");
}

#[test]
fn a_stalled_sse_client_is_cut_off_and_others_keep_receiving() {
    let srv = Server::start(&[
        "--workers",
        "1",
        "--slow-hard-limit",
        "65536",
        "--close-linger",
        "300ms",
    ]);
    let e = srv.epoch();
    let stalled = send(&srv, "GET /sse/flood HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut reader = send(&srv, "GET /sse/flood HTTP/1.1\r\nHost: t\r\n\r\n");
    read_until(&mut reader, "retry:", 1);
    let mut ws = Client::open_path(srv.addr(), "/topic/flood");
    let payload = "z".repeat(8000);
    for i in 0..2000 {
        ws.send_frame(0x81, payload.as_bytes()); // 16 MB in all
        assert_eq!(ws.next_text().len(), 8000);
        let ev = read_until(&mut reader, "\n\n", 1);
        assert!(
            ev.starts_with(&format!("id: {}\n", e + i + 1)),
            "reader missed {i}"
        );
    }
    // The stalled client's stream ended: reading drains what the kernel held, then EOF.
    let mut stalled = stalled;
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let got = read_until(&mut stalled, "never appears", 1);
    assert!(
        got.matches("\n\n").count() < 2000,
        "it was cut off, not fed everything"
    );
}

#[test]
fn after_a_restart_positions_go_on_above_the_old_ones_and_a_resume_is_told_of_the_gap() {
    // Alone, a server numbers topics from its start time (µs): a restarted one never hands
    // out a position an earlier run gave, so a client resuming across is told of the gap.
    let before = Server::start(&["--workers", "1"]);
    let e1 = before.epoch();
    publish(&before, "r", "old");
    drop(before);
    let after = Server::start(&["--workers", "2"]);
    let e2 = after.epoch();
    assert!(e2 > e1 + 1, "epochs {e1} then {e2}");
    let mut sse = send(
        &after,
        &at(
            e1,
            "GET /sse/r HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {1}\r\n\r\n",
        ),
    );
    let head = read_until(&mut sse, "retry:", 1);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    publish(&after, "r", "new");
    let got = head + &read_until(&mut sse, "data: new\n\n", 1);
    assert!(got.contains("event: gap\n"), "{got}");
    assert!(got.contains(&at(e2, "id: {1}\ndata: new\n\n")), "{got}");
}

/// SIGTERM ends every HTTP transport at once instead of letting them hold the exit to the
/// drain deadline: an SSE stream is told when to reconnect (`retry:`, within the spread)
/// and ends, a chunked stream gets its last chunk, a held long poll is answered 204 with
/// `Connection: close`, and an idle keep-alive connection is closed.
#[test]
fn sigterm_ends_streams_polls_and_keep_alive_connections_at_once() {
    let mut srv = Server::start(&["--workers", "1", "--shutdown-spread", "2s"]);
    let mut sse = send(&srv, "GET /sse/bye HTTP/1.1\r\nHost: t\r\n\r\n");
    read_until(&mut sse, "retry: ", 1);
    let mut stream = send(&srv, "GET /stream/bye HTTP/1.1\r\nHost: t\r\n\r\n");
    read_until(&mut stream, "\r\n\r\n", 1);
    let mut poll = send(&srv, "GET /poll/bye HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut idle = send(&srv, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    read_until(&mut idle, "\r\n\r\n", 1);
    std::thread::sleep(Duration::from_millis(200)); // the poll is held
    let start = Instant::now();
    srv.signal(libc::SIGTERM);
    let rest = |s: &mut TcpStream| {
        let mut all = String::new();
        let _ = std::io::Read::read_to_string(s, &mut all);
        all
    };
    let sse_tail = rest(&mut sse);
    let retry: u64 = sse_tail
        .rsplit("retry: ")
        .next()
        .and_then(|t| t.strip_suffix("\n\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a retry hint, then the end: {sse_tail:?}"));
    assert!(retry <= 2000, "within the spread: {retry}");
    assert!(rest(&mut stream).ends_with("0\r\n\r\n"), "the last chunk");
    let answer = rest(&mut poll);
    assert!(
        answer.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert_eq!(
        rest(&mut idle),
        "",
        "the idle keep-alive connection is closed"
    );
    let status = srv
        .wait_exit(Duration::from_secs(5))
        .expect("exits without waiting for the drain deadline");
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}
