//! Tests of `wsloop-load subscribe` (the subscribers of scripts/bench-100k) against the real
//! server: its JSON lines (`up`, one `message` per message once every subscriber has it, `done`)
//! count every connection and delivery across several `--url`s and source addresses, a message
//! it was not told to expect is counted and fails the run, and a URL that is not a topic is
//! refused with exit code 2. Each test runs for about a second.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/server.rs"]
mod server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use server::Server;

const LOAD: &str = env!("CARGO_BIN_EXE_wsloop-load");

/// Start `wsloop-load subscribe` with `args`; its stdout is read line by line.
fn subscribe(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(LOAD)
        .arg("subscribe")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wsloop-load");
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// The next JSON line (the generator bounds its own run with --hold and --connect-timeout).
fn next_line(out: &mut BufReader<std::process::ChildStdout>) -> Value {
    let mut line = String::new();
    assert!(out.read_line(&mut line).unwrap() > 0, "stdout closed early");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// `POST /publish/TOPIC` with a binary body; returns the status code.
fn publish(port: u16, topic: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /publish/{topic} HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn message(seq: u64) -> Vec<u8> {
    let mut b = seq.to_le_bytes().to_vec();
    b.extend_from_slice(&[7u8; 8]);
    b
}

fn wait_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wsloop-load subscribe did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_subscriber_gets_every_message_across_urls_and_sources() {
    let server = Server::start(&["--workers", "2"]);
    let url = server.url("/topic/subs");
    let (mut child, mut out) = subscribe(&[
        "-c",
        "20",
        "--url",
        &url,
        "--url",
        &url,
        "--source-ips",
        "127.0.0.2-127.0.0.3",
        "-m",
        "3",
        "--hold",
        "15s",
        "-q",
    ]);
    let up = next_line(&mut out);
    assert_eq!(up["event"], "up", "{up}");
    assert_eq!(
        (up["up"].as_u64(), up["failed"].as_u64()),
        (Some(20), Some(0)),
        "{up}"
    );
    assert!(
        up["last_up_ns"].as_u64() >= up["first_connect_ns"].as_u64(),
        "{up}"
    );
    for seq in 0..3 {
        assert_eq!(publish(server.port, "subs", &message(seq)), 202);
        let m = next_line(&mut out);
        assert_eq!(
            (m["event"].as_str(), m["seq"].as_u64()),
            (Some("message"), Some(seq))
        );
        assert_eq!(m["subscribers"], 20, "{m}");
        assert!(m["last_ns"].as_u64() >= m["first_ns"].as_u64(), "{m}");
    }
    let done = next_line(&mut out);
    assert_eq!(done["event"], "done", "{done}");
    assert_eq!(done["ok"], true, "{done}");
    assert_eq!(done["complete"], 20, "{done}");
    for key in ["failed", "closed", "missing", "duplicates", "strangers"] {
        assert_eq!(done[key], 0, "{key}: {done}");
    }
    assert_eq!(wait_exit(&mut child), Some(0));
}

#[test]
fn a_message_it_was_not_told_to_expect_fails_the_run() {
    let server = Server::start(&["--workers", "1"]);
    let url = server.url("/topic/odd");
    let (mut child, mut out) =
        subscribe(&["-c", "5", "--url", &url, "-m", "1", "--hold", "15s", "-q"]);
    assert_eq!(next_line(&mut out)["up"], 5);
    assert_eq!(publish(server.port, "odd", &message(9)), 202);
    assert_eq!(publish(server.port, "odd", &message(0)), 202);
    assert_eq!(next_line(&mut out)["event"], "message");
    let done = next_line(&mut out);
    assert_eq!(
        (done["strangers"].as_u64(), done["ok"].as_bool()),
        (Some(5), Some(false)),
        "{done}"
    );
    assert_eq!(wait_exit(&mut child), Some(1));
}

#[test]
fn a_url_that_is_not_a_topic_is_refused() {
    let out = Command::new(LOAD)
        .args(["subscribe", "--url", "ws://127.0.0.1:9/echo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("topic"));
}
