//! A short soak in the default test run: `scripts/soak --duration 20s --conns 300` against this
//! build's server — churning echo clients, slow readers and slowloris peers — must pass (no
//! well-behaved connection error, bad peers cut, no RSS or fd growth after warm-up, fds back
//! to idle once the clients leave). The 30-minute run is `scripts/soak` by hand
//! (docs/benchmarks-soak.md).

// A test is a client of the server: it uses processes and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_20_second_soak_with_300_connections_passes() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("python3")
        .arg(format!("{root}/scripts/soak"))
        .args(["--duration", "20s", "--conns", "300", "--seed", "1"])
        .args(["--server-bin", env!("CARGO_BIN_EXE_wsloop")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 scripts/soak");
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    // 20 s of load, the slow readers' last check and the fd check: well under two minutes.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill(); // the soak's children die with it (PR_SET_PDEATHSIG)
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = reader.join().expect("reader");
    let status = status.unwrap_or_else(|| panic!("soak did not finish in 120 s:\n{out}"));
    assert!(status.success(), "soak failed ({status}):\n{out}");
    assert!(out.contains("soak: PASS"), "{out}");
    // It really ran: echoes flowed, bad peers were cut.
    let totals = out
        .lines()
        .find(|l| l.starts_with("soak: totals: "))
        .unwrap_or_else(|| panic!("no totals line:\n{out}"));
    for key in ["\"slow_cut\": 0", "\"loris_cut\": 0", "\"echoes\": 0"] {
        assert!(!totals.contains(key), "{totals}");
    }
}
