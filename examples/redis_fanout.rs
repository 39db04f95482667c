//! Cross-node delivery through the Redis backplane, measured: a WebSocket publisher on one
//! node (`/topic/{name}`), a WebSocket subscriber on another, N messages each carrying its
//! send time; prints how many arrived, the rate, and the latency percentiles (send →
//! receive, one clock: both clients live in this process). Point both at one node for the
//! same-node baseline. docs/benchmarks.md ("Redis backplane") has the commands and results.
//!
//! ```sh
//! cargo run --release --example redis_fanout -- PUBLISH_ADDR SUBSCRIBE_ADDR \
//!     [--messages N] [--rate PER_SECOND|0] [--size BYTES] [--topic NAME]
//! ```
//!
//! `--rate 0` (the default) publishes as fast as the publisher's socket takes it
//! (throughput); a rate paces the publishes (latency without queueing).

// A client tool: it owns sockets and the clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use wsloop::client::frames::encode_masked;
use wsloop::ws::frame::OpCode;

/// Payload prefix of the warm-up messages that wait for the subscription to cross.
const WARMUP: &[u8] = b"warmup";

struct Opts {
    publish: SocketAddr,
    subscribe: SocketAddr,
    messages: u64,
    rate: u64,
    size: usize,
    topic: String,
}

fn main() {
    let opts = parse_args();
    let path = format!("/topic/{}", opts.topic);
    let mut sub = open(opts.subscribe, &path);
    let mut publisher = open(opts.publish, &path);
    // The publisher subscribes to its own topic too: drain what it receives.
    let mut own = publisher.try_clone().expect("clone");
    thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while own.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let start = Instant::now();
    let receiver = {
        let messages = opts.messages;
        thread::spawn(move || receive(&mut sub, start, messages))
    };
    // Until the subscriber sees a warm-up message, its node's Redis subscription may not be
    // confirmed yet.
    while !SEEN.load(Ordering::Relaxed) {
        publisher.write_all(&frame(WARMUP)).expect("send warm-up");
        thread::sleep(Duration::from_millis(20));
        if start.elapsed() > Duration::from_secs(10) {
            eprintln!("no warm-up message crossed within 10 s: is --redis set on both nodes?");
            std::process::exit(1);
        }
    }
    let sent_from = start.elapsed();
    let mut batch = Vec::with_capacity(1 << 16);
    for seq in 0..opts.messages {
        if let Some(gap) = 1_000_000_000u64.checked_div(opts.rate) {
            let due = sent_from + Duration::from_nanos(seq * gap);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                thread::sleep(wait);
            }
        }
        let mut payload = format!("{seq:010} {:020} ", start.elapsed().as_nanos()).into_bytes();
        payload.resize(opts.size.max(payload.len()), b'x');
        batch.extend_from_slice(&frame(&payload));
        // Unpaced, frames go out in batches of ~64 KiB (as a busy client's writes would).
        if opts.rate > 0 || batch.len() >= 1 << 16 || seq + 1 == opts.messages {
            publisher.write_all(&batch).expect("publish");
            batch.clear();
        }
    }
    let sent_until = start.elapsed();
    let r = receiver.join().expect("receiver");
    let secs = (r.last - sent_from).as_secs_f64();
    println!(
        "sent {} x {} B in {:.3} s; received {} ({} lost) in {:.3} s: {:.0} msg/s",
        opts.messages,
        opts.size,
        (sent_until - sent_from).as_secs_f64(),
        r.count,
        opts.messages - r.count,
        secs,
        r.count as f64 / secs
    );
    let h = &r.latency;
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency µs: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1000.0
    );
}

/// What the subscriber saw.
struct Received {
    count: u64,
    last: Duration,
    /// Nanoseconds from send to receive.
    latency: Histogram<u64>,
}

/// Read until message `messages - 1` arrived, or 5 s of silence after the first one.
fn receive(sock: &mut TcpStream, start: Instant, messages: u64) -> Received {
    let mut out = Received {
        count: 0,
        last: Duration::ZERO,
        latency: Histogram::new(3).expect("histogram"),
    };
    let mut buf = Vec::with_capacity(1 << 20);
    let mut at = 0;
    let mut chunk = vec![0u8; 1 << 16];
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    loop {
        let n = match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return out,
            Ok(n) => n,
        };
        let now = start.elapsed();
        buf.extend_from_slice(&chunk[..n]);
        while let Some((opcode, payload, used)) = next_frame(&buf[at..]) {
            at += used;
            if opcode == 0x8 {
                let code = payload
                    .get(..2)
                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                eprintln!("the subscriber was closed by its node: {code} {reason}");
                return out;
            }
            if payload.starts_with(WARMUP) {
                SEEN.store(true, Ordering::Relaxed);
                continue;
            }
            let text = std::str::from_utf8(&payload[..32]).expect("ASCII header");
            let seq: u64 = text[..10].parse().expect("seq");
            let sent: u64 = text[11..31].parse().expect("send time");
            let _ = out
                .latency
                .record((now.as_nanos() as u64).saturating_sub(sent).max(1));
            out.count += 1;
            out.last = now;
            if seq + 1 == messages {
                return out;
            }
        }
        if at == buf.len() {
            buf.clear();
            at = 0;
        } else if at > 1 << 19 {
            buf.drain(..at);
            at = 0;
        }
    }
}

/// The subscriber saw a warm-up message: the subscription works end to end.
static SEEN: AtomicBool = AtomicBool::new(false);

/// One unfragmented server frame at the start of `b`: (opcode, payload, frame length).
fn next_frame(b: &[u8]) -> Option<(u8, &[u8], usize)> {
    let (len, head) = match *b.get(1)? & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    Some((b[0] & 0x0f, b.get(head..head + len)?, head + len))
}

/// A masked text frame with the all-zero key (valid, RFC 6455 §5.3), so no XOR is needed.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    encode_masked(OpCode::Text, payload, [0; 4], &mut out);
    out
}

/// Connect and upgrade on `path`.
fn open(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_nodelay(true).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("101 response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

fn parse_args() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: redis_fanout PUBLISH_ADDR SUBSCRIBE_ADDR [--messages N] [--rate R] \
                 [--size BYTES] [--topic NAME]";
    let addr = |i: usize| -> SocketAddr {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{usage}"))
    };
    let mut o = Opts {
        publish: addr(0),
        subscribe: addr(1),
        messages: 100_000,
        rate: 0,
        size: 64,
        topic: "bench".into(),
    };
    let mut i = 2;
    while i < args.len() {
        let v = args.get(i + 1).unwrap_or_else(|| panic!("{usage}"));
        match args[i].as_str() {
            "--messages" => o.messages = v.parse().expect("--messages N"),
            "--rate" => o.rate = v.parse().expect("--rate R"),
            "--size" => o.size = v.parse().expect("--size BYTES"),
            "--topic" => o.topic = v.clone(),
            _ => panic!("{usage}"),
        }
        i += 2;
    }
    o.size = o.size.max(32);
    o
}
