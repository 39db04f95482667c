//! Tests of the load generator `wsloop-load` itself, against the real wsloop server (and a
//! tiny in-test TCP echo for --raw): it counts correctly, opens exactly what it is asked to,
//! reports server errors instead of panicking, checks fan-out deliveries (every message to
//! every subscriber, once, in order, and it notices one it did not publish), and refuses
//! impossible configurations with exit code 2. Each test runs for about a second.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use server::Server;

const LOAD: &str = env!("CARGO_BIN_EXE_wsloop-load");

/// Run the generator with `line` (split on whitespace) to completion (it bounds its own run
/// time; the test bounds it again).
fn load(line: &str) -> Output {
    let args: Vec<&str> = line.split_whitespace().collect();
    let mut child = Command::new(LOAD)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsloop-load");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wsloop-load {args:?} did not finish within 30 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The single JSON line the generator printed with --json.
fn json_line(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "want exactly one JSON line\n{}", text(out));
    assert!(lines[0].starts_with('{') && lines[0].ends_with('}'));
    lines[0].to_string()
}

/// The number after `"key":` in a flat, hand-formatted JSON line.
fn num(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let end = json[at..].find([',', '}']).map_or(json.len(), |e| at + e);
    json[at..end]
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

fn per_conn(json: &str) -> Vec<u64> {
    let at = json.find("\"per_conn\":[").expect("per_conn") + "\"per_conn\":[".len();
    let end = at + json[at..].find(']').expect("]");
    json[at..end]
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("count"))
        .collect()
}

#[test]
fn echo_counts_add_up() {
    let server = Server::start(&[]);
    let url = server.url("/echo");
    // Any live process will do to check the CPU sampling; this test's own is at hand.
    let pid = std::process::id();
    let out = load(&format!(
        "echo --url {url} -c 4 -d 1 -w 0.2 --json --per-conn -q --server-pid {pid}"
    ));
    assert!(out.status.success(), "{}", text(&out));
    let j = json_line(&out);
    let messages = num(&j, "messages") as u64;
    assert!(messages > 0, "{j}");
    let conns = per_conn(&j);
    assert_eq!(conns.len(), 4, "{j}");
    assert_eq!(conns.iter().sum::<u64>(), messages, "{j}");
    assert!(
        conns.iter().all(|&c| c > 0),
        "every connection took part: {j}"
    );
    assert_eq!(num(&j, "up"), 4.0);
    assert_eq!(num(&j, "errors"), 0.0);
    assert_eq!(num(&j, "close_errors"), 0.0, "{j}");
    assert_eq!(
        num(&j, "count"),
        messages as f64,
        "one latency sample per message"
    );
    assert!(num(&j, "completed") >= messages as f64, "{j}");
    assert!(
        num(&j, "server_cpu_s") >= 0.0 && num(&j, "client_cpu_s") > 0.0,
        "{j}"
    );
}

#[test]
fn echo_text_across_processes() {
    let server = Server::start(&[]);
    let url = server.url("/echo");
    let out = load(&format!(
        "echo --url {url} -c 5 --procs 2 -s 1KiB --text -d 1 -w 0 --json --per-conn -q"
    ));
    assert!(out.status.success(), "{}", text(&out));
    let j = json_line(&out);
    let conns = per_conn(&j);
    assert_eq!(conns.len(), 5, "{j}");
    assert_eq!(conns.iter().sum::<u64>(), num(&j, "messages") as u64, "{j}");
    assert!(num(&j, "messages") > 0.0);
    assert_eq!(num(&j, "procs"), 2.0);
    assert!(j.contains("\"kind\":\"text\""), "{j}");
}

#[test]
fn rate_sends_exactly_the_schedule() {
    let server = Server::start(&[]);
    let url = server.url("/echo");
    let out = load(&format!(
        "rate --url {url} -c 4 -r 2000 -d 1 -w 0.2 --json -q"
    ));
    assert!(out.status.success(), "{}", text(&out));
    let j = json_line(&out);
    // 2000/s for 1 s: message j is due at j/2000 s, so the window holds exactly 2000.
    assert_eq!(num(&j, "sent"), 2000.0, "{j}");
    assert_eq!(num(&j, "messages") + num(&j, "unanswered"), 2000.0, "{j}");
    assert_eq!(num(&j, "unanswered"), 0.0, "{j}");
    assert!(
        num(&j, "p50") > 0.0 && num(&j, "max") >= num(&j, "p99"),
        "{j}"
    );
}

#[test]
fn connect_counts_handshakes() {
    let server = Server::start(&[]);
    let url = server.url("/echo");
    let out = load(&format!("connect --url {url} -c 2 -d 1 --json -q"));
    assert!(out.status.success(), "{}", text(&out));
    let j = json_line(&out);
    assert!(num(&j, "messages") > 10.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
}

/// Server-side ESTABLISHED sockets on `port` (local port = the server's), from /proc.
fn established_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[1].rsplit(':').next() == Some(&format!("{port:04X}")[..])
                && f[3] == "01"
        })
        .count()
}

#[test]
fn idle_opens_exactly_n() {
    let server = Server::start(&[]);
    let url = server.url("/echo");
    // Without a duration it holds until stopped: check the server's side while it holds.
    let mut child = Command::new(LOAD)
        .args(["idle", "--url", &url, "-c", "50", "-q", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = thread::spawn(move || {
        // Read until the "all up" line.
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while stderr.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
            got.push(byte[0]);
            if got.ends_with(b"\n") && String::from_utf8_lossy(&got).contains("connections up") {
                break;
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    let line = reader.join().expect("reader");
    let seen = established_on(server.port);
    // SIGTERM ends the hold: the generator closes its connections and still reports.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("wait");
    assert!(line.contains("50/50 connections up"), "{line}");
    assert_eq!(seen, 50, "server-side established connections");
    assert!(term.is_ok_and(|s| s.success()), "kill -TERM");
    assert!(out.status.success(), "{}", text(&out));
    let j = json_line(&out);
    assert_eq!(num(&j, "up"), 50.0, "{j}");
    assert_eq!(num(&j, "close_errors"), 0.0, "{j}");

    // And with a duration it ends by itself and says how many were up.
    let out = load(&format!("idle --url {url} -c 50 -d 0.3 --json -q"));
    assert!(out.status.success(), "{}", text(&out));
    let j = json_line(&out);
    assert_eq!(num(&j, "up"), 50.0, "{j}");
    assert_eq!(num(&j, "connections"), 50.0, "{j}");
}

#[test]
fn raw_mode_echoes_bytes() {
    // A thread-per-connection byte echo stands in for raw-mio-echo.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut sock = sock;
                let mut buf = [0u8; 65536];
                while let Ok(n) = sock.read(&mut buf) {
                    if n == 0 || sock.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let url = format!("tcp://127.0.0.1:{port}");
    let out = load(&format!(
        "echo --raw --url {url} -c 3 -s 100000 -d 0.5 -w 0 --json --per-conn -q"
    ));
    assert!(out.status.success(), "{}", text(&out));
    let j = json_line(&out);
    assert!(num(&j, "messages") > 0.0, "{j}");
    assert_eq!(per_conn(&j).iter().sum::<u64>(), num(&j, "messages") as u64);
    assert!(j.contains("\"kind\":\"raw\""), "{j}");
}

#[test]
fn server_errors_are_reported_not_panicked() {
    // Messages over the server's limit: it closes with 1009 and the generator says so.
    let server = Server::start(&["--max-message-size", "1024"]);
    let url = server.url("/echo");
    let out = load(&format!("echo --url {url} -c 2 -s 4096 -d 0.5 -q"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("1009"), "{all}");
    assert!(!all.contains("panicked"), "{all}");

    // Nobody listening.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("ws://127.0.0.1:{port}/");
    let out = load(&format!("echo --url {url} -c 2 -d 0.5 -q"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("refused"), "{}", text(&out));

    // A path the server does not serve: the 404 is shown.
    let out = load(&format!(
        "idle --url {} -c 1 -d 0.2 -q",
        server.url("/nope")
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("404"), "{}", text(&out));
}

#[test]
fn refuses_impossible_configurations() {
    let cases = [
        ("echo -c 0", "--connections"),
        ("echo -c 1000000", "--procs"),
        ("echo -d 0", "--duration"),
        ("echo -s 65MiB", "64 MiB"),
        ("echo --raw -s 0", "nothing to echo"),
        ("rate -r 0", "--rate"),
        ("echo --url ws://192.0.2.1:80/", "loopback only"),
        ("echo -c 2 --procs 3", "--procs"),
        ("idle --source-ips 10.0.0.1-10.0.0.5", "127.0.0.0/8"),
        ("echo --server-pid 999999999", "no such process"),
        ("fanout -s 15", "at least 16"),
        ("fanout -c 0", "--subscribers"),
        ("fanout -m 0", "--messages"),
        ("fanout -m 10 --warmup-messages 10", "nothing is measured"),
        ("fanout --window 0", "--window"),
        ("fanout -r 0", "--rate"),
        ("fanout --procs 2", "one process"),
        ("fanout -c 25000", "use at most"),
        ("fanout --url ws://127.0.0.1:9/echo", "/topic/NAME"),
    ];
    for (args, want) in cases {
        let out = load(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn fanout_counts_every_delivery_on_one_worker_and_across_two() {
    let server = Server::start(&["--workers", "1"]);
    let pid = server.pid();
    let url = server.url("/topic/fan");
    let out = load(&format!(
        "fanout --url {url} -c 20 -m 50 --window 4 --json -q --server-pid {pid}"
    ));
    assert!(out.status.success(), "{}", text(&out));
    let j = json_line(&out);
    assert_eq!(num(&j, "subscribers"), 20.0, "{j}");
    assert_eq!(num(&j, "published"), 50.0, "{j}");
    assert_eq!(
        num(&j, "deliveries"),
        1000.0,
        "every subscriber, every message: {j}"
    );
    assert_eq!(num(&j, "messages"), 1000.0, "{j}");
    assert_eq!(
        num(&j, "count"),
        50.0,
        "one latency sample per message: {j}"
    );
    for key in [
        "missing",
        "duplicates",
        "incomplete",
        "errors",
        "close_errors",
    ] {
        assert_eq!(num(&j, key), 0.0, "{key}: {j}");
    }
    assert!(num(&j, "deliveries_per_s") > 0.0, "{j}");
    assert!(num(&j, "server_cpu_s") >= 0.0, "{j}");
    // Subscribers spread over two workers, at a rate, with warm-up messages left out.
    let server = Server::start(&["--workers", "2"]);
    let url = server.url("/topic/fan");
    let out = load(&format!(
        "fanout --url {url} -c 30 -m 40 -r 400 --warmup-messages 5 --json -q"
    ));
    assert!(out.status.success(), "{}", text(&out));
    let j = json_line(&out);
    assert_eq!(num(&j, "published"), 40.0, "{j}");
    assert_eq!(
        num(&j, "deliveries"),
        30.0 * 35.0,
        "measured deliveries: {j}"
    );
    assert_eq!(num(&j, "completed"), 30.0 * 40.0, "all deliveries: {j}");
    assert_eq!(num(&j, "count"), 35.0, "{j}");
    assert_eq!(num(&j, "missing") + num(&j, "duplicates"), 0.0, "{j}");
}

#[test]
fn fanout_notices_a_message_it_did_not_publish() {
    let server = Server::start(&["--workers", "1"]);
    let url = server.url("/topic/shared");
    // 40 messages at 20/s: two seconds during which a stranger publishes to the same topic.
    let run =
        thread::spawn(move || load(&format!("fanout --url {url} -c 5 -m 40 -r 20 --json -q")));
    thread::sleep(Duration::from_millis(700));
    let mut stranger = client::Client::open_path(server.addr(), "/topic/shared");
    let mut fake = 0u64.to_le_bytes().to_vec(); // sequence number 0 again...
    fake.extend_from_slice(&1u64.to_le_bytes()); // ...sent at another time
    stranger.send_frame(0x82, &fake);
    let out = run.join().expect("generator thread");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = json_line(&out);
    assert!(j.contains("did not publish"), "{j}");
}
