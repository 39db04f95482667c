// tests/support/server.rs: spawns the wsloop binary for integration tests and kills it on drop.
//
// Include from a test file with `#[path = "support/server.rs"] mod server;`.
#![allow(dead_code)] // each test crate uses a different subset of these helpers

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// How long the server may take to print its `wsloop listening on ADDR` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const LISTEN_PREFIX: &str = "wsloop listening on ";

/// A running `wsloop --listen 127.0.0.1:0 ARGS...`; killed (and reaped) when dropped.
pub struct Server {
    pub port: u16,
    child: Child,
}

impl Server {
    /// Starts the server with the extra command-line `args` (e.g. `["--max-message-size", "1024"]`)
    /// and waits for its startup line to learn the port. Panics if it does not come up.
    pub fn start(args: &[&str]) -> Server {
        let bin = env!("CARGO_BIN_EXE_wsloop");
        let mut child = Command::new(bin)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {bin}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let first_line = read_first_line(stdout);
        // From here on the guard owns the child: any panic below kills it.
        let mut server = Server { port: 0, child };
        let line = match first_line.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!(
                "wsloop {args:?} exited or closed stdout before printing its listening line ({e}); \
                 status: {:?}",
                server.try_status()
            ),
            Err(_) => panic!(
                "wsloop {args:?} printed no listening line within {STARTUP_TIMEOUT:?}; status: {:?}",
                server.try_status()
            ),
        };
        let addr: SocketAddr = line
            .trim_end()
            .strip_prefix(LISTEN_PREFIX)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                panic!("wsloop's first stdout line is {line:?}, expected \"{LISTEN_PREFIX}127.0.0.1:PORT\"")
            });
        assert!(
            addr.ip().is_loopback() && addr.port() != 0,
            "wsloop reports listening on {addr}, expected 127.0.0.1 and a non-zero port"
        );
        server.port = addr.port();
        server
    }

    /// `ws://127.0.0.1:PORT` + `path` (e.g. `"/echo"`).
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    /// `127.0.0.1:PORT`, for raw TCP tests.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the server process, in KiB (Linux /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Exit status if the server has exited (e.g. crashed), `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on wsloop")
    }

    /// Send a signal (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
        let rc = unsafe { libc::kill(self.pid() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Wait up to `timeout` for the server to exit.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// Panics if the server is no longer running (a crash during the test).
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_status() {
            panic!("wsloop exited during the test: {status}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads stdout on a thread: sends the first line (or an error on EOF) to the returned channel,
/// then keeps draining so that the server can never block on a full stdout pipe.
fn read_first_line(stdout: ChildStdout) -> mpsc::Receiver<Result<String, String>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let first = match reader.read_line(&mut line) {
            Ok(0) => Err("EOF on stdout".to_string()),
            Ok(_) => Ok(line),
            Err(e) => Err(format!("reading stdout: {e}")),
        };
        let _ = tx.send(first);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    rx
}
