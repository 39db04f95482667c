//! `redis-server` for integration tests: the Debian package (scripts/test installs it) on a
//! free loopback port with a scratch directory, no persistence, killed (and the directory
//! removed) on drop; and what the Redis tests ask of a wsloop node (a request, a metric,
//! whether its link is up).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::Server;

/// A `redis-server` on a loopback port with a scratch directory, killed (and the directory
/// removed) on drop, also when it is stopped.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("wsloop-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let mut r = Redis {
            port,
            dir,
            child: None,
        };
        r.spawn();
        r
    }

    /// Start redis-server on `self.port` (again) and wait until it answers PING.
    pub fn spawn(&mut self) {
        let port = self.port.to_string();
        self.child = Some(redis_server(&["--port", &port], &self.dir));
        wait_until("redis-server answers PING", Duration::from_secs(10), || {
            self.try_command(&["PING"])
                .is_some_and(|r| r == "+PONG\r\n")
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("redis running").id();
        // SAFETY: kill(2) on our own child with a valid signal has no memory effects.
        assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send one command; its first reply line, or None if Redis does not answer within 1 s.
    pub fn try_command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|| panic!("redis {args:?}: no answer"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-server ARGS…` on 127.0.0.1 without persistence, its files in `dir`.
pub fn redis_server<S: AsRef<std::ffi::OsStr>>(args: &[S], dir: &std::path::Path) -> Child {
    Command::new("redis-server")
        .args(args)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run redis-server ({e}); scripts/test installs the Debian package")
        })
}

/// Poll `cond` every 20 ms; panic naming `what` if it is not true within `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request on a fresh connection to `srv`, sent at once (read timeout 10 s).
pub fn open(srv: &Server, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(srv.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s
}

/// One request on a fresh connection; the whole response (the server closes).
pub fn http(srv: &Server, head: &str) -> String {
    let mut s = open(srv, head);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of a metric series of `srv` (name with labels, exactly as rendered).
pub fn metric(srv: &Server, series: &str) -> i64 {
    let text = http(
        srv,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// Is `srv`'s Redis link up (on a cluster: every master linked and the map known)?
pub fn link_up(srv: &Server) -> bool {
    metric(srv, "wsloop_redis_link{state=\"up\"}") == 1
}
