//! Deterministic tests of `Conn`: synthetic bytes in, bytes and events out, no sockets (the
//! quinn `Pair` idea). The reactor is replaced by a loop that echoes every message.
//! Must not: open a socket or read a clock.

use super::*;
use crate::buf::BufPool;
use crate::config::Config;
use crate::timer::Tick;

const UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Message(bool, Vec<u8>),
    Closed(u16, String),
}

struct Harness {
    conn: Conn,
    res: Resources,
    cfg: Config,
    seen: Vec<Seen>,
    /// The fake clock, in milliseconds.
    now: Tick,
}

impl Harness {
    fn new(cfg: Config) -> Harness {
        let res = Resources::new(BufPool::new(cfg.buffer_size, 8));
        Harness {
            conn: Conn::new(0),
            res,
            cfg,
            seen: Vec::new(),
            now: 0,
        }
    }

    /// A connection past its handshake, with the 101 already taken from tx.
    fn open() -> Harness {
        let mut h = Harness::new(Config::default());
        h.feed(UPGRADE);
        let out = h.output();
        assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        assert_eq!(h.conn.state(), State::Open);
        h
    }

    /// Push bytes through rx, running the machine whenever the ring fills, like the reactor.
    fn feed(&mut self, mut bytes: &[u8]) {
        loop {
            let ring = self.conn.rx_ring(&mut self.res);
            let n = ring.free().min(bytes.len());
            ring.push(&bytes[..n]);
            bytes = &bytes[n..];
            self.conn.on_input(self.now);
            self.run();
            if bytes.is_empty() || !self.conn.wants_read(usize::MAX) {
                break;
            }
        }
        self.conn.shed_rx(&mut self.res);
    }

    fn run(&mut self) {
        loop {
            let (step, mut out) = self.conn.poll_event(&self.cfg, &mut self.res, self.now);
            match step {
                Step::Idle => break,
                Step::Again => {}
                Step::Event(Event::Upgrade(_, up)) => out.accept(&up, 0, None),
                Step::Event(Event::Request(..)) => out.reject(404, "not found"),
                Step::Event(Event::Message(m)) => {
                    self.seen
                        .push(Seen::Message(m.is_text(), m.as_bytes().to_vec()));
                    out.send(m);
                }
                Step::Event(Event::Closed { code, reason }) => {
                    self.seen.push(Seen::Closed(code, reason.to_string()))
                }
            }
        }
    }

    fn output(&mut self) -> Vec<u8> {
        let mut iov = [std::io::IoSlice::new(&[]); MAX_IOV];
        let n = self.conn.tx_iov(&mut iov);
        let v: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
        self.conn.consume_tx(v.len(), &mut self.res);
        v
    }

    /// The server's frames: (opcode, payload). Server frames are never masked (§5.1).
    fn frames(&mut self) -> Vec<(u8, Vec<u8>)> {
        let bytes = self.output();
        let mut rest = &bytes[..];
        let mut v = Vec::new();
        while !rest.is_empty() {
            let (h, n) = crate::ws::frame::parse_header(rest).unwrap().unwrap();
            assert!(h.mask.is_none() && h.fin && h.rsv == 0);
            let end = n + h.payload_len as usize;
            v.push((h.opcode as u8, rest[n..end].to_vec()));
            rest = &rest[end..];
        }
        v
    }

    /// The close code the server sent, if its last frame is a close.
    fn close_code(&mut self) -> Option<u16> {
        let frames = self.frames();
        let (op, p) = frames.last()?;
        (*op == 8 && p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]))
    }
}

/// A masked client frame with explicit first byte (FIN/RSV/opcode).
fn raw(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

fn text(fin: bool, s: &[u8]) -> Vec<u8> {
    raw(if fin { 0x81 } else { 0x01 }, s)
}

fn cont(fin: bool, s: &[u8]) -> Vec<u8> {
    raw(if fin { 0x80 } else { 0x00 }, s)
}

fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    raw(0x88, &[&code.to_be_bytes()[..], reason].concat())
}

#[test]
fn frame_level_violations_get_the_exact_close_code() {
    let small = |f: &mut Config| {
        f.ws.max_frame_size = 1000;
        f.ws.max_message_size = 2000;
        f.ws.max_fragments = 4;
    };
    let unmasked: Vec<u8> = vec![0x81, 0x02, b'h', b'i'];
    let top_bit = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4];
    // Five frames where four are allowed; empty fragments count too.
    let mut many = text(false, b"a");
    for _ in 0..3 {
        many.extend(cont(false, b""));
    }
    many.extend(cont(true, b"b"));
    // (name, bytes, expected close code)
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("reserved opcode 0x3", raw(0x83, b""), 1002),
        ("reserved opcode 0x7", raw(0x87, b""), 1002),
        ("reserved opcode 0xB", raw(0x8B, b""), 1002),
        ("reserved opcode 0xF", raw(0x8F, b""), 1002),
        ("RSV1 without extension", raw(0xC1, b"x"), 1002),
        ("RSV2", raw(0xA1, b"x"), 1002),
        ("RSV3", raw(0x91, b"x"), 1002),
        ("unmasked client frame", unmasked, 1002),
        ("ping over 125 bytes", raw(0x89, &[0; 126]), 1002),
        ("pong over 125 bytes", raw(0x8A, &[0; 126]), 1002),
        ("fragmented ping", raw(0x09, b"x"), 1002),
        ("fragmented close", raw(0x08, &[3, 232]), 1002),
        ("continuation without message", cont(true, b"x"), 1002),
        (
            "text inside fragmented text",
            [text(false, b"a"), text(true, b"b")].concat(),
            1002,
        ),
        (
            "binary inside fragmented binary",
            [raw(0x02, b"a"), raw(0x82, b"b")].concat(),
            1002,
        ),
        ("64-bit length with top bit", top_bit, 1002),
        ("close with 1-byte payload", raw(0x88, &[3]), 1002),
        ("close code 0", close(0, b""), 1002),
        ("close code 999", close(999, b""), 1002),
        ("close code 1004", close(1004, b""), 1002),
        ("close code 1005", close(1005, b""), 1002),
        ("close code 1006", close(1006, b""), 1002),
        ("close code 1015", close(1015, b""), 1002),
        ("close code 1016", close(1016, b""), 1002),
        ("close code 2999", close(2999, b""), 1002),
        ("close code 5000", close(5000, b""), 1002),
        ("close reason not UTF-8", close(1000, &[0xC3, 0x28]), 1007),
        ("text not UTF-8", text(true, &[0xFF]), 1007),
        ("surrogate in text", text(true, &[0xED, 0xA0, 0x80]), 1007),
        (
            "invalid UTF-8 in continuation",
            [text(false, b"ok"), cont(true, &[0xC0, 0xAF])].concat(),
            1007,
        ),
        (
            "text ends mid code point",
            [text(false, b"a"), cont(true, &[0xE2, 0x82])].concat(),
            1007,
        ),
        ("frame over the frame limit", raw(0x82, &[0; 1001]), 1009),
        (
            "message over the message limit",
            [
                raw(0x02, &[0; 1000]),
                cont(false, &[0; 1000]),
                cont(true, b"x"),
            ]
            .concat(),
            1009,
        ),
        ("too many fragments", many, 1008),
        (
            "RSV1 on a continuation",
            [text(false, b"a"), raw(0xC0, b"b")].concat(),
            1002,
        ),
    ];
    assert!(cases.len() >= 25);
    for (name, bytes, want) in cases {
        let mut h = Harness::open();
        small(&mut h.cfg);
        h.feed(&bytes);
        assert_eq!(h.close_code(), Some(want), "{name}");
        // §7.1.7: fail = close frame, then close TCP; no waiting on a stream gone bad.
        assert_eq!(h.conn.state(), State::Closing, "{name}");
        assert!(h.conn.wants_shutdown(), "{name}");
        assert!(
            matches!(h.seen.last(), Some(Seen::Closed(c, _)) if *c == want),
            "{name}: app told {:?}",
            h.seen
        );
        // Whatever the peer sends now is discarded; nothing else is sent.
        h.feed(&close(1000, b""));
        h.feed(&text(true, b"more"));
        assert_eq!(h.frames(), vec![], "{name}: no second close");
        assert_eq!(h.seen.len(), 1, "{name}: told once");
    }
}

#[test]
fn utf8_fails_fast_inside_a_frame_still_arriving() {
    // Autobahn 6.4.3: the invalid byte arrives long before the frame's end.
    let mut h = Harness::open();
    let frame = text(
        true,
        &[&b"valid"[..], &[0xF4, 0x90, 0x80, 0x80], &[b'x'; 100]].concat(),
    );
    h.feed(&frame[..6 + 7]);
    assert_eq!(h.close_code(), Some(1007));
}

#[test]
fn valid_close_codes_are_echoed() {
    for code in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
        let mut h = Harness::open();
        h.feed(&close(code, b"bye"));
        assert_eq!(h.close_code(), Some(code));
        assert_eq!(h.seen, vec![Seen::Closed(code, "bye".into())]);
        assert_eq!(h.conn.state(), State::Closing);
        assert!(h.conn.wants_shutdown());
    }
    // An empty close is echoed empty (1005 never goes on the wire) and reported as 1005.
    let mut h = Harness::open();
    h.feed(&raw(0x88, b""));
    assert_eq!(h.frames(), vec![(8, vec![])]);
    assert_eq!(h.seen, vec![Seen::Closed(1005, String::new())]);
}

#[test]
fn echo_every_vector_at_every_split() {
    // RFC 6455 §5.7 examples plus lengths around each encoding boundary, fed at every split.
    let payloads: Vec<Vec<u8>> = vec![b"Hello".to_vec(), vec![7; 125], vec![8; 126], vec![9; 256]];
    for p in payloads {
        let mut stream = raw(0x89, b"Hello"); // a ping first
        stream.extend(raw(0x82, &p));
        stream.extend([text(false, b"Hel"), cont(true, b"lo")].concat());
        for split in 0..stream.len() {
            let mut h = Harness::open();
            h.feed(&stream[..split]);
            h.feed(&stream[split..]);
            let frames = h.frames();
            assert_eq!(
                frames,
                vec![
                    (0xA, b"Hello".to_vec()),
                    (2, p.clone()),
                    (1, b"Hello".to_vec())
                ],
                "split {split}"
            );
        }
    }
}

#[test]
fn frames_across_the_ring_wrap_at_every_offset() {
    let cfg = Config {
        buffer_size: 4096,
        ..Config::default()
    };
    let msg = vec![0x5A; 3000];
    for offset in (0..4096).step_by(97) {
        let mut h = Harness::new(cfg.clone());
        h.feed(UPGRADE);
        h.output();
        // Put the ring's head `offset` bytes past 4 KiB before its end, so the frame wraps.
        let ring = h.conn.rx_ring(&mut h.res);
        let cap = ring.capacity();
        ring.clear_at(cap - 4096 + offset);
        let f = raw(0x82, &msg);
        ring.push(&f[..f.len().min(ring.free())]);
        h.run();
        h.feed(&f[f.len().min(4096)..]);
        assert_eq!(h.frames(), vec![(2, msg.clone())], "offset {offset}");
    }
}

#[test]
fn every_ping_is_answered_while_the_peer_reads() {
    // Autobahn 2.10: ten pings in one write get ten pongs.
    let mut h = Harness::open();
    let pings: Vec<u8> = (0..10u8).flat_map(|i| raw(0x89, &[i])).collect();
    h.feed(&pings);
    let want: Vec<(u8, Vec<u8>)> = (0..10u8).map(|i| (0xA, vec![i])).collect();
    assert_eq!(h.frames(), want);
}

#[test]
fn pings_coalesce_to_the_newest_pong_when_the_peer_does_not_read() {
    let mut h = Harness::open();
    h.cfg.max_queued_bytes = 0; // every queued byte counts as over the limit
    let pings = [raw(0x89, b"one"), raw(0x89, b"two"), raw(0x89, b"three")].concat();
    h.feed(&pings);
    assert_eq!(h.frames(), vec![(0xA, b"three".to_vec())]);
    // A pong already handed to the socket is not replaced.
    h.feed(&raw(0x89, b"four"));
    h.output();
    h.feed(&raw(0x89, b"five"));
    assert_eq!(h.frames(), vec![(0xA, b"five".to_vec())]);
}

#[test]
fn after_our_close_data_is_discarded_and_the_peers_close_finishes() {
    let mut h = Harness::open();
    {
        let (_, mut out) = h.conn.poll_event(&h.cfg, &mut h.res, 0);
        out.close(1000, "done");
    }
    assert_eq!(h.close_code(), Some(1000));
    h.feed(&text(true, b"late"));
    h.feed(&raw(0x89, b"late ping"));
    assert_eq!(h.frames(), vec![], "no data or pong after our close");
    assert!(h.seen.is_empty());
    h.feed(&close(1000, b""));
    assert_eq!(h.seen, vec![Seen::Closed(1000, String::new())]);
    assert!(h.conn.wants_shutdown());
}

#[test]
fn eof_reports_1006_once() {
    let mut h = Harness::open();
    assert_eq!(h.conn.on_eof(), Some(1006));
    assert_eq!(h.conn.on_eof(), None);
    assert!(h.conn.is_done());
}

#[test]
fn bytes_after_the_request_are_decoded_as_frames() {
    let mut h = Harness::new(Config::default());
    h.feed(&[UPGRADE, &text(true, b"early")[..]].concat());
    let out = h.output();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&out[end..], &[0x81, 5, b'e', b'a', b'r', b'l', b'y']);
}

#[test]
fn a_rejected_request_processes_nothing_more() {
    let mut h = Harness::new(Config::default());
    let bad = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";
    h.feed(&[&bad[..], &text(true, b"ignored")].concat());
    let out = h.output();
    assert!(
        out.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(out.windows(17).any(|w| w == b"Connection: close"));
    assert!(h.seen.is_empty());
    assert!(h.conn.wants_shutdown());
}

#[test]
fn idle_connections_hold_no_buffers() {
    let mut h = Harness::open();
    h.feed(&text(true, b"hi"));
    h.output();
    assert_eq!(
        h.res.pool.lent(),
        0,
        "rx and tx rings go back to the pool when drained"
    );
    // A fragmented message's reassembly buffer is freed once the connection is idle.
    h.feed(&[text(false, b"frag"), cont(true, b"mented")].concat());
    h.output();
    assert_eq!(
        format!("{:?}", h.conn.rx.asm),
        "Assembler { partial: None }"
    );
    assert_eq!(h.res.pool.lent(), 0);
}

#[test]
fn per_connection_state_is_small() {
    // docs/architecture.md documents these sizes; keep them honest.
    let (decoder, conn) = (
        std::mem::size_of::<crate::ws::decode::Decoder>(),
        std::mem::size_of::<Conn>(),
    );
    assert!(decoder <= 24, "Decoder is {decoder} bytes");
    assert!(conn <= 88, "Conn is {conn} bytes");
}

#[test]
fn a_head_dribbled_a_byte_per_read_is_served_and_one_too_long_is_refused_by_its_bytes() {
    // The limits are on bytes and time, not on reads: a slow or lossy link may deliver an
    // honest head a byte at a time.
    let mut h = Harness::new(Config::default());
    for b in UPGRADE {
        h.feed(std::slice::from_ref(b));
    }
    let out = h.output();
    assert!(
        out.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // A request line over the limit, dribbled, is refused once its bytes pass it.
    let mut cfg = Config::default();
    cfg.http.max_request_line = 64;
    let mut h = Harness::new(cfg);
    let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100));
    for b in long.as_bytes().iter().take(70) {
        h.feed(std::slice::from_ref(b));
    }
    let out = h.output();
    assert!(
        out.starts_with(b"HTTP/1.1 414 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

impl Harness {
    /// Move the fake clock to `t` ms and fire the connection's timer if it is due, as the
    /// reactor does (lazily: a deadline that moved is simply not due yet).
    fn advance_to(&mut self, t: Tick) -> Option<u16> {
        self.now = t;
        let due = self.conn.deadline(&self.cfg, t)?;
        if due > t {
            return None;
        }
        self.conn.on_timeout(&self.cfg, &mut self.res, t)
    }
}

fn short_timeouts() -> Config {
    let mut cfg = Config::default();
    cfg.timeouts.handshake = std::time::Duration::from_millis(1000);
    cfg.timeouts.idle = std::time::Duration::from_millis(3000);
    cfg.timeouts.ping_margin = std::time::Duration::from_millis(1000);
    cfg.timeouts.close_linger = std::time::Duration::from_millis(500);
    cfg.timeouts.message = std::time::Duration::from_millis(2000);
    cfg
}

#[test]
fn a_dribbled_handshake_gets_408_at_the_deadline() {
    let mut h = Harness::new(short_timeouts());
    for (i, b) in UPGRADE.iter().take(20).enumerate() {
        h.now = i as Tick * 40; // a byte every 40 ms keeps arriving
        h.feed(std::slice::from_ref(b));
    }
    assert_eq!(
        h.conn.deadline(&h.cfg, h.now),
        Some(1000),
        "input does not extend it"
    );
    assert_eq!(h.advance_to(999), None);
    assert_eq!(h.output(), b"");
    h.advance_to(1000);
    assert!(h.output().starts_with(b"HTTP/1.1 408 "));
    assert!(h.conn.wants_shutdown());
}

#[test]
fn silence_brings_a_ping_then_a_drop_with_1006() {
    let mut h = Harness::new(short_timeouts());
    h.feed(UPGRADE);
    h.output();
    assert_eq!(
        h.conn.deadline(&h.cfg, 0),
        Some(2000),
        "ping after idle - margin"
    );
    assert_eq!(h.advance_to(1999), None);
    assert_eq!(h.frames(), vec![]);
    assert_eq!(h.advance_to(2000), None);
    assert_eq!(h.frames(), vec![(9, b"wsloop".to_vec())]);
    assert_eq!(
        h.conn.deadline(&h.cfg, 2000),
        Some(3000),
        "drop after the margin"
    );
    assert_eq!(h.advance_to(3000), Some(1006));
    assert!(h.conn.is_done());
}

#[test]
fn any_inbound_frame_resets_the_heartbeat() {
    let mut h = Harness::new(short_timeouts());
    h.feed(UPGRADE);
    h.output();
    h.advance_to(2000); // ping sent
    h.frames();
    h.now = 2500;
    h.feed(&raw(0x8A, b"wsloop")); // the pong
    assert_eq!(h.conn.deadline(&h.cfg, 2500), Some(4500));
    assert_eq!(h.advance_to(3000), None, "not dropped: it answered");
    assert!(!h.conn.is_done());
    h.now = 4000;
    h.feed(&text(true, b"still here"));
    assert_eq!(h.advance_to(4500), None);
    assert_eq!(
        h.frames(),
        vec![(1, b"still here".to_vec())],
        "no ping: it spoke"
    );
}

#[test]
fn a_trickled_message_is_closed_with_1008() {
    let mut h = Harness::new(short_timeouts());
    h.feed(UPGRADE);
    h.output();
    h.now = 100;
    h.feed(&text(false, b"a"));
    for t in (500..2100).step_by(400) {
        h.now = t;
        h.feed(&cont(false, b"b")); // keeps the heartbeat alive, not the message
    }
    assert_eq!(h.conn.deadline(&h.cfg, h.now), Some(2100));
    assert_eq!(h.advance_to(2100), Some(1008));
    assert_eq!(h.close_code(), Some(1008));
}

#[test]
fn a_peer_that_ignores_our_close_is_dropped_after_the_linger() {
    let mut h = Harness::new(short_timeouts());
    h.feed(UPGRADE);
    h.output();
    h.now = 1000;
    {
        let (_, mut out) = h.conn.poll_event(&h.cfg, &mut h.res, 1000);
        out.close(1000, "bye");
    }
    h.output();
    assert_eq!(h.conn.deadline(&h.cfg, 1000), Some(1500));
    assert_eq!(h.advance_to(1499), None);
    assert_eq!(h.advance_to(1500), Some(1006));
    assert!(h.conn.is_done());
}

mod deflate;

#[test]
fn a_large_frame_is_read_into_the_large_ring_and_leaves_nothing_behind() {
    let mut h = Harness::open();
    let lent = h.res.pool.lent();
    let msg: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let f = raw(0x82, &msg);
    // One read's worth: the whole frame fits the large ring, so one `feed` step takes it.
    let ring = h.conn.rx_ring(&mut h.res);
    assert_eq!(ring.capacity(), crate::buf::pool::LARGE_READ);
    assert!(ring.free() >= f.len());
    ring.push(&f);
    h.run();
    h.conn.shed_rx(&mut h.res);
    assert_eq!(h.frames(), vec![(2, msg)]);
    assert!(h.conn.rx.ring.is_none(), "the large ring went back");
    assert_eq!(h.res.pool.lent(), lent);

    // A split header left behind moves to an ordinary ring; the large one still goes back.
    let next = raw(0x81, b"after");
    let ring = h.conn.rx_ring(&mut h.res);
    ring.push(&[&raw(0x81, b"first")[..], &next[..3]].concat());
    h.run();
    h.conn.shed_rx(&mut h.res);
    let own = h.conn.rx.ring.as_ref().expect("leftover kept");
    assert_eq!((own.capacity(), own.len()), (h.cfg.buffer_size, 3));
    h.feed(&next[3..]);
    assert_eq!(
        h.frames(),
        vec![(1, b"first".to_vec()), (1, b"after".to_vec())]
    );
    assert!(h.conn.rx.ring.is_none());
}

#[test]
fn an_echo_is_sent_from_the_read_ring_and_survives_the_next_read() {
    let mut h = Harness::open();
    let lent = h.res.pool.lent();
    let one: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let two: Vec<u8> = (0..40 * 1024u32).map(|i| (i % 13) as u8).collect();
    let third = raw(0x82, b"third");
    // One read brings two whole messages and the first bytes of a third.
    let ring = h.conn.rx_ring(&mut h.res);
    assert_eq!(ring.capacity(), crate::buf::pool::LARGE_READ);
    ring.push(&[&raw(0x82, &one)[..], &raw(0x82, &two), &third[..4]].concat());
    h.run();
    h.conn.shed_rx(&mut h.res);
    // The first echo was copied (40 KiB more were read behind it, too much to move when tx
    // takes the ring); the second refers to the read ring, which tx now holds; the split
    // header behind it moved to an ordinary rx ring.
    assert!(h.conn.tx_holds_rx());
    let own = h.conn.rx.ring.as_ref().expect("the split header is kept");
    assert_eq!((own.capacity(), own.len()), (h.cfg.buffer_size, 4));
    // No other read can have the large ring while tx writes from it.
    assert!(h.res.pool.take_large().is_none());
    h.feed(&third[4..]);
    assert_eq!(
        h.frames(),
        vec![(2, one), (2, two), (2, b"third".to_vec())],
        "every echo intact and in order"
    );
    assert!(!h.conn.tx_holds_rx());
    assert_eq!(h.res.pool.lent(), lent, "every ring went back");
    assert!(
        h.res.pool.take_large().is_some(),
        "the large ring is in the pool again"
    );
}

#[test]
fn a_partly_written_echo_gives_the_read_ring_back() {
    let mut h = Harness::open();
    let msg: Vec<u8> = (0..100 * 1024u32).map(|i| (i % 241) as u8).collect();
    let ring = h.conn.rx_ring(&mut h.res);
    ring.push(&raw(0x82, &msg));
    h.run();
    h.conn.shed_rx(&mut h.res);
    assert!(h.conn.tx_holds_rx());
    // The socket takes 1,000 bytes; the rest is copied out and the ring returns at once.
    let mut iov = [std::io::IoSlice::new(&[]); MAX_IOV];
    let n = h.conn.tx_iov(&mut iov);
    let mut out: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
    out.truncate(1000);
    h.conn.consume_tx(1000, &mut h.res);
    h.conn.return_rx(&mut h.res);
    assert!(!h.conn.tx_holds_rx());
    let mut next = h.res.pool.take_large().expect("back in the pool");
    next.push(&vec![0xEE; 200 * 1024]); // the next read overwrites it
    out.extend(h.output());
    h.res.pool.give(next);
    let (hd, k) = crate::ws::frame::parse_header(&out).unwrap().unwrap();
    assert_eq!(hd.payload_len as usize, msg.len());
    assert_eq!(&out[k..], &msg[..]);
}

#[test]
fn resources_tally_queued_bytes_and_outcomes() {
    // What replaced process-wide counters: the reactor's `Resources` sees every byte queued
    // and written, and every outcome, as values it then records.
    let mut h = Harness::new(Config::default());
    h.feed(UPGRADE);
    assert_eq!(h.res.queued(), h.conn.tx_len());
    assert!(h.res.queued() > 0, "the 101 is queued");
    let seen: Vec<Outcome> = h.res.take_outcomes().collect();
    assert_eq!(seen, [Outcome::Answered(101)]);
    h.output();
    assert_eq!(h.res.queued(), 0);
    // An echo, a shared frame, a pong: counted in, and out as they are written.
    h.feed(&text(true, b"hello"));
    let shared: SharedFrame = std::rc::Rc::from(&b"0123456789"[..]);
    assert!(h.conn.push_shared(shared, &mut h.res));
    h.feed(&raw(0x89, b"ping"));
    assert_eq!(h.res.queued(), h.conn.tx_len());
    assert_eq!(h.res.queued(), (2 + 5) + 10 + (2 + 4));
    h.conn.consume_tx(3, &mut h.res);
    assert_eq!(h.res.queued(), h.conn.tx_len());
    // The peer's close: its code is counted as received and as sent (the echo).
    h.feed(&close(1000, b""));
    let seen: Vec<Outcome> = h.res.take_outcomes().collect();
    assert_eq!(
        seen,
        [Outcome::CloseReceived(1000), Outcome::CloseSent(1000)]
    );
    // Freed with bytes still queued: they leave the count too.
    assert!(h.res.queued() > 0);
    h.conn.release(&mut h.res);
    assert_eq!(h.res.queued(), 0);
}

#[test]
fn pongs_replaced_at_the_tail_leave_the_queued_count() {
    let mut h = Harness::new(Config {
        max_queued_bytes: 0,
        ..Config::default()
    });
    h.feed(UPGRADE);
    h.output();
    for _ in 0..5 {
        h.feed(&raw(0x89, b"ping"));
    }
    assert_eq!(h.conn.tx_len(), 2 + 4, "one pending pong");
    assert_eq!(h.res.queued(), h.conn.tx_len());
}

/// What the old interface asked of a connection, for the tests written against it.
impl Conn {
    fn is_done(&self) -> bool {
        self.tx.state == State::Closed
    }

    fn tx_holds_rx(&self) -> bool {
        self.tx.queue.holds_rx()
    }

    fn wants_shutdown(&self) -> bool {
        self.tx.state == State::Closing && self.tx.queue.is_empty()
    }

    fn tx_iov<'a>(&'a self, iov: &mut [std::io::IoSlice<'a>; MAX_IOV]) -> usize {
        self.tx.queue.slices(iov)
    }

    fn return_rx(&mut self, res: &mut Resources) {
        self.tx.queue.return_rx(&mut res.pool);
    }
}
