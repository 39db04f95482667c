//! nginx for integration tests: the Debian nginx run with deploy/nginx.conf itself, on a
//! loopback port and a temporary prefix, in front of one wsloop or several (round robin, as
//! the config's `upstream` does with more than one `server`). scripts/test installs nginx.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    prefix: PathBuf,
}

impl Nginx {
    pub fn start(upstream: SocketAddr) -> Nginx {
        Nginx::start_many(&[upstream])
    }

    /// nginx balancing over `upstreams` round robin (nginx's default for an `upstream`).
    pub fn start_many(upstreams: &[SocketAddr]) -> Nginx {
        Nginx::start_edited(upstreams, |conf| conf)
    }

    /// The proxies the field has that break transports: one that does not pass `Upgrade`
    /// (deploy/nginx.conf without its two WebSocket lines), and with `buffering` also one
    /// that buffers responses, ignoring wsloop's `X-Accel-Buffering: no`.
    pub fn start_hostile(upstream: SocketAddr, buffering: bool) -> Nginx {
        Nginx::start_edited(&[upstream], |conf| {
            let mut conf = conf
                .replace("proxy_set_header Upgrade $http_upgrade;", "")
                .replace("proxy_set_header Connection $connection_upgrade;", "");
            if buffering {
                conf = conf.replace(
                    "proxy_buffering off;\n            proxy_cache off;",
                    "proxy_buffering on;\n            proxy_ignore_headers X-Accel-Buffering;\n            proxy_cache off;",
                );
            }
            conf
        })
    }

    /// deploy/nginx.conf as `edit` changes it, in front of `upstreams`.
    pub fn start_edited(upstreams: &[SocketAddr], edit: impl FnOnce(String) -> String) -> Nginx {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nginx is not installed: run scripts/test, which installs it");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let prefix =
            std::env::temp_dir().join(format!("wsloop-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&prefix).unwrap();
        // nginx's workers drop to an unprivileged user when started as root.
        let _ = Command::new("chmod").arg("0777").arg(&prefix).status();
        // `server __UPSTREAM__;` becomes one `server` line per upstream.
        let servers: Vec<String> = upstreams.iter().map(|u| u.to_string()).collect();
        let servers = servers.join("; server ");
        let conf =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
                .unwrap()
                .replace("__PREFIX__", prefix.to_str().unwrap())
                .replace("__UPSTREAM__", &servers)
                .replace("__LISTEN__", &addr.to_string());
        let conf = edit(conf);
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg("daemon off;")
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start; see {}/error.log",
                prefix.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            child,
            addr,
            prefix,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its workers (killed outright, it would
        // leave them running).
        // SAFETY: kill(2) on our own child with a valid signal number.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}
