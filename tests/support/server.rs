//! tests/support/server.rs: spawns the wsloop binary for integration tests and kills it on drop.
//!
//! Include from a test file with `#[path = "support/server.rs"] mod server;`.
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

/// A running `wsloop --listen 127.0.0.1:0 ARGS...` (or at the `--listen` in ARGS); killed
/// (and reaped) when dropped.
pub struct Server {
    pub port: u16,
    child: Child,
}

impl Server {
    /// Starts the server with the extra command-line `args` (e.g. `["--max-message-size", "1024"]`)
    /// and waits for its startup line to learn the port. Panics if it does not come up.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(args, |_| {})
    }

    /// Like `start`, with the open-file limit (RLIMIT_NOFILE, soft and hard: wsloop raises its
    /// soft limit to the hard one) set to `nofile` in the child before it runs.
    pub fn start_with_nofile(args: &[&str], nofile: u64) -> Server {
        Server::start_with_nofile_and(args, nofile, |_| {})
    }

    /// `start_with_nofile`, letting `configure` adjust the command too.
    pub fn start_with_nofile_and(
        args: &[&str],
        nofile: u64,
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        use std::os::unix::process::CommandExt;
        Server::start_with(args, move |cmd| {
            configure(cmd);
            let lim = libc::rlimit {
                rlim_cur: nofile as libc::rlim_t,
                rlim_max: nofile as libc::rlim_t,
            };
            // SAFETY: setrlimit is async-signal-safe and only reads `lim`; between fork and
            // exec nothing else runs in the child.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        })
    }

    /// Like `start`, letting `configure` adjust the command before it is spawned.
    pub fn start_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> Server {
        let bin = env!("CARGO_BIN_EXE_wsloop");
        let mut cmd = Command::new(bin);
        // An address of the caller's (a restart on the same port), else any free port.
        if !args.contains(&"--listen") {
            cmd.arg("--listen").arg("127.0.0.1:0");
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        configure(&mut cmd);
        let mut child = cmd
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

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the server process, in KiB (Linux /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Open file descriptors of the server process (Linux /proc).
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// CPU time (user + system) the server has used, in clock ticks (/proc/PID/stat fields
    /// 14 and 15; see `ticks_per_second`).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The command name (field 2) may contain spaces; fields are counted after its ')'.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        // `after` starts at field 3, so fields 14 and 15 are at indices 11 and 12.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Wait up to `timeout` for the fd count to drop to `want` or below; returns the last count.
    pub fn wait_fds_at_most(&self, want: usize, timeout: Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let n = self.fd_count();
            if n <= want || std::time::Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`, for raw TCP tests.
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

impl Server {
    /// Where this server's topic numbers start: a topic it has never seen is numbered from
    /// one above it (its start time in µs when it runs alone: docs/protocol.md, "Positions"),
    /// learned by publishing once to a topic of its own.
    pub fn epoch(&self) -> u64 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr()).expect("connect");
        s.write_all(
            b"POST /publish/epoch-probe HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let at = resp
            .find(r#""position":""#)
            .unwrap_or_else(|| panic!("{resp}"))
            + 12;
        let p: u64 = resp[at..].split('"').next().unwrap().parse().unwrap();
        p - 1
    }
}

/// `text` with every `{N}` (decimal digits in braces) replaced by `base + N`: expectations
/// written with positions relative to a server's epoch (`Server::epoch`).
pub fn at(base: u64, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with('}') {
            let n: u64 = after[..digits].parse().unwrap();
            out.push_str(&rest[..open]);
            out.push_str(&(base + n).to_string());
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..=open]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
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
