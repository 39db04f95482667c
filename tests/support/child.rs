//! tests/support/child.rs: runs a helper program (Node, Python, Chromium's driver) to the end
//! with a deadline, collecting its output without letting a full pipe block it.
//!
//! Include from a test file with `#[path = "support/child.rs"] mod child;`.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Runs `cmd` to completion (killing it after `timeout`); returns its status (None on timeout)
/// and its stdout followed by its stderr.
pub fn run(mut cmd: Command, timeout: Duration) -> (Option<ExitStatus>, String) {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {shown}: {e}; run scripts/test (it installs the test tools)")
        });
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    (
        status,
        format!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}"),
    )
}

/// Reads a pipe to the end on a thread (so that neither pipe can fill up and block the child).
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}
