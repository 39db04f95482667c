//! tests/interop.rs: interop of wsloop's echo endpoint with third-party clients (Python websockets, Node ws).
//!
//! Each test starts its own server and runs one client script from tests/interop/ against
//! ws://127.0.0.1:PORT/echo, once per `--compression` mode: both clients offer permessage-deflate
//! (RFC 7692) and check that the server's answer is the one expected. The clients' dependencies are installed by `scripts/test`; if they are
//! missing the tests FAIL (never skip). `WSLOOP_PYTHON` / `WSLOOP_NODE` override the interpreters.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/child.rs"]
mod child;
#[path = "support/server.rs"]
mod server;

use child::run;
use server::Server;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The clients have their own 30 s overall timeout; this is the backstop if one hangs anyway.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

fn python() -> String {
    std::env::var("WSLOOP_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn node() -> String {
    std::env::var("WSLOOP_NODE").unwrap_or_else(|_| "node".to_string())
}

/// Fails the test (with instructions) unless `probe` exits successfully.
fn require(what: &str, probe: Command) {
    let (status, output) = run(probe, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{what} is not installed or not usable. Run `scripts/test` (it installs the interop \
         clients' dependencies from tests/interop/), or install them by hand.\n{output}"
    );
}

fn run_client(name: &str, mut cmd: Command, server: &mut Server) {
    let started = Instant::now();
    cmd.current_dir(interop_dir());
    let (status, output) = run(cmd, CLIENT_TIMEOUT);
    match status {
        Some(s) if s.success() => {
            println!("{name} passed in {:?}\n{output}", started.elapsed());
        }
        Some(s) => panic!(
            "{name} failed ({s}) against {}:\n{output}",
            server.url("/echo")
        ),
        None => panic!("{name} did not finish within {CLIENT_TIMEOUT:?}; killed:\n{output}"),
    }
    server.assert_running();
}

/// The 101's `Sec-WebSocket-Extensions` for the clients' default offers
/// (`permessage-deflate; client_max_window_bits`) under each `--compression` mode.
const SHARED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const DEDICATED: &str = "permessage-deflate";
const OFF: &str = "none";

/// Runs py_client.py against a server started with `server_args`; the client checks that the
/// server answered `extensions`.
fn python_client(server_args: &[&str], extensions: &str) {
    let mut probe = Command::new(python());
    probe.args(["-c", "import websockets.asyncio.client"]);
    require(
        "Python package `websockets` (tests/interop/requirements.txt)",
        probe,
    );

    let mut server = Server::start(server_args);
    let mut cmd = Command::new(python());
    cmd.arg(interop_dir().join("py_client.py"))
        .arg(server.url("/echo"))
        .arg(extensions);
    run_client("py_client.py", cmd, &mut server);
}

/// Runs node_client.js against a server started with `server_args`; the client checks that
/// the server answered `extensions`.
fn node_client(server_args: &[&str], extensions: &str) {
    let mut probe = Command::new(node());
    probe.args([
        "-e",
        "require(require('path').join(process.argv[1], 'node_modules', 'ws'))",
    ]);
    probe.arg(interop_dir());
    require(
        "Node package `ws` in tests/interop/node_modules (npm ci)",
        probe,
    );

    let mut server = Server::start(server_args);
    let mut cmd = Command::new(node());
    cmd.arg(interop_dir().join("node_client.js"))
        .arg(server.url("/echo"))
        .arg(extensions);
    run_client("node_client.js", cmd, &mut server);
}

/// Default server: permessage-deflate without context takeover in either direction.
#[test]
fn python_websockets_client() {
    python_client(&[], SHARED);
}

/// `--compression dedicated`: both directions keep their LZ77 window across messages.
#[test]
fn python_websockets_client_with_context_takeover() {
    python_client(&["--compression", "dedicated"], DEDICATED);
}

#[test]
fn python_websockets_client_without_compression() {
    python_client(&["--compression", "off"], OFF);
}

#[test]
fn node_ws_client() {
    node_client(&[], SHARED);
}

#[test]
fn node_ws_client_with_context_takeover() {
    node_client(&["--compression", "dedicated"], DEDICATED);
}

#[test]
fn node_ws_client_without_compression() {
    node_client(&["--compression", "off"], OFF);
}
