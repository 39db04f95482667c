//! tests/metrics_format.rs: the /metrics text passes `promtool check metrics` (Prometheus's own
//! parser and linter for the text exposition format). promtool comes from the Debian package
//! `prometheus` (scripts/test installs it); without it this test fails, unless
//! WSLOOP_SKIP_PROMTOOL=1 says to skip it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use wsloop::metrics::{ConnClass, Metrics, Outcomes, Phase, Transport};

/// A registry with a value in every family (and labels on every per-worker family).
fn populated() -> String {
    let outcomes: &'static Outcomes = Box::leak(Box::new(Outcomes::new()));
    let m = Arc::new(Metrics::with_outcomes(2, outcomes));
    for i in 0..2 {
        let w = m.handle(i);
        w.accepted.add(10 + i as u64);
        w.messages_in.add(100);
        w.messages_out.add(250);
        w.bytes_in.add(123_456);
        w.bytes_out.add(654_321);
        w.slow_closes.add(i as u64);
        w.loop_iterations.add(9_999);
        w.poll_nanos.add(1_234_567_891);
        w.topics.set(4);
        w.subscriptions.set(40);
        w.timers.set(12);
        w.refused_per_ip.add(3);
        w.refused_full.inc();
        let hs = ConnClass::new(Transport::Http, Phase::Handshake);
        let open = ConnClass::new(Transport::WebSocket, Phase::Open);
        w.move_conn(ConnClass::NONE, hs);
        w.move_conn(ConnClass::NONE, hs);
        w.move_conn(hs, open);
    }
    for status in [101, 101, 400, 403, 404, 408, 426, 429, 431, 503] {
        outcomes.answered(status);
    }
    for code in [1000, 1001, 1008, 1009, 1011, 1005, 4000] {
        outcomes.close_sent.record(code);
    }
    for code in [1000, 1001, 1005, 3001, 4999, 2000] {
        outcomes.close_received.record(code);
    }
    m.set_queued_bytes(1 << 20);
    m.set_client_addresses(7);
    let redis = &m.redis;
    redis.state.set(3);
    redis.reconnects.set(2);
    redis.dropped.set(7);
    redis.published.set(100);
    redis.received.set(200);
    redis.channels.set(3);
    let mut text = String::new();
    m.render(&mut text);
    text
}

#[test]
fn rendered_metrics_pass_promtool_check_metrics() {
    let text = populated();
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var("WSLOOP_SKIP_PROMTOOL").as_deref() == Ok("1") => {
            eprintln!("skipped: promtool not runnable ({e}) and WSLOOP_SKIP_PROMTOOL=1");
            return;
        }
        Err(e) => panic!(
            "promtool not runnable ({e}): install it (Debian: apt-get install prometheus; \
             scripts/test does) or set WSLOOP_SKIP_PROMTOOL=1 to skip this test"
        ),
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {:?}\n{report}\n--- input ---\n{text}",
        out.status
    );
}

#[test]
fn the_populated_registry_has_every_family() {
    let text = populated();
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(families, 33, "{text}");
    assert!(text.contains("wsloop_connections_refused_total{reason=\"per_ip\"} 6\n"));
    assert!(text.contains("wsloop_client_addresses 7\n"));
    assert!(text.contains("wsloop_redis_link{state=\"up\"} 1\n"));
    assert!(text.contains("wsloop_redis_link{state=\"down\"} 0\n"));
    assert!(text.contains("wsloop_upgrades_total{result=\"rejected\",status=\"431\"} 1\n"));
    assert!(text.contains("wsloop_poll_seconds_total{worker=\"1\"} 1.234567891\n"));
}
