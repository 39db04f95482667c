//! tests/metrics_counting.rs: the reactor's counting, end to end over loopback — a reactor run
//! in a thread, real clients, and the rendered metrics checked after each step. One test
//! function, because the process-wide outcomes (upgrade answers, close codes) are shared by
//! every reactor of the process.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use client::{Client, UPGRADE};
use wsloop::app::default_routes;
use wsloop::config::Config;
use wsloop::metrics::Metrics;
use wsloop::reactor::Reactor;

fn start(cfg: Config) -> (SocketAddr, Arc<Metrics>) {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..cfg
    };
    // A reactor is single-threaded (not Send): build it on its thread, which runs it until
    // the test process exits, and send back what the test needs.
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut reactor = Reactor::bind(cfg, default_routes(vec![])).expect("bind");
        let _ = tx.send((reactor.local_addr(), reactor.metrics()));
        reactor.run()
    });
    rx.recv().expect("reactor started")
}

fn render(m: &Metrics) -> String {
    let mut s = String::new();
    m.render(&mut s);
    s
}

/// The value of `series` (name and labels exactly as rendered), 0 if absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

/// Wait until `series` reaches `want` (gauges move when the reactor gets to them).
fn wait_for(m: &Metrics, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = value(&render(m), series);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{series}: {got}, want {want}");
        thread::sleep(Duration::from_millis(10));
    }
}

const WS_OPEN: &str = "wsloop_connections{transport=\"websocket\",state=\"open\"}";
const ACCEPTED: &str = "wsloop_upgrades_total{result=\"accepted\",status=\"101\"}";

#[test]
fn the_reactor_counts_what_happens() {
    let (addr, m) = start(Config::default());
    let before = render(&m);

    // An upgrade and an echo.
    let mut c = Client::open(addr);
    wait_for(&m, WS_OPEN, 1.0);
    c.echo("hello");
    let text = render(&m);
    assert_eq!(value(&text, ACCEPTED) - value(&before, ACCEPTED), 1.0);
    assert_eq!(value(&text, "wsloop_connections_accepted_total"), 1.0);
    assert_eq!(value(&text, "wsloop_messages_received_total"), 1.0);
    assert_eq!(value(&text, "wsloop_messages_sent_total"), 1.0);
    let upgrade_len = UPGRADE.len() as f64;
    // The upgrade request plus a 5-byte masked text frame (2 + 4 + 5).
    assert_eq!(
        value(&text, "wsloop_received_bytes_total"),
        upgrade_len + 11.0
    );
    assert!(value(&text, "wsloop_sent_bytes_total") > 7.0, "{text}");
    assert!(value(&text, "wsloop_loop_iterations_total{worker=\"0\"}") >= 2.0);
    assert!(value(&text, "wsloop_poll_seconds_total{worker=\"0\"}") > 0.0);
    assert!(value(&text, "wsloop_timer_wheel_entries{worker=\"0\"}") >= 1.0);

    // The client closes with 1000: received 1000, echoed 1000; the gauge empties.
    let closes = |t: &str, dir: &str| {
        value(
            t,
            &format!("wsloop_close_frames_{dir}_total{{code=\"1000\"}}"),
        )
    };
    c.send_frame(0x88, &1000u16.to_be_bytes());
    assert_eq!(c.read_frame().map(|f| f.0), Some(0x88));
    drop(c); // our FIN: the server stops waiting for it (draining) and frees the connection
    wait_for(&m, WS_OPEN, 0.0);
    wait_for(
        &m,
        "wsloop_connections{transport=\"websocket\",state=\"closing\"}",
        0.0,
    );
    let text = render(&m);
    assert_eq!(closes(&text, "received") - closes(&before, "received"), 1.0);
    assert_eq!(closes(&text, "sent") - closes(&before, "sent"), 1.0);

    // A refused request is counted by its status.
    let r404 = "wsloop_upgrades_total{result=\"rejected\",status=\"404\"}";
    let mut c = Client::connect(addr);
    c.send_raw(UPGRADE.replacen("/echo", "/nowhere", 1).as_bytes());
    assert!(c.read_head().starts_with("HTTP/1.1 404 "));
    drop(c);
    wait_for(
        &m,
        "wsloop_connections{transport=\"http\",state=\"closing\"}",
        0.0,
    );
    assert_eq!(value(&render(&m), r404) - value(&before, r404), 1.0);

    // A chat client subscribes: the pub/sub gauges see it; leaving empties them.
    let c = Client::open_path(addr, "/chat/lobby");
    wait_for(&m, "wsloop_pubsub_subscriptions", 1.0);
    // The chat room, and the clock's topic once it has ticked (it keeps history).
    assert!(value(&render(&m), "wsloop_pubsub_topics{worker=\"0\"}") >= 1.0);
    drop(c);
    wait_for(&m, "wsloop_pubsub_subscriptions", 0.0);

    // Over max_connections: 503, counted process-wide.
    let r503 = "wsloop_upgrades_total{result=\"rejected\",status=\"503\"}";
    let (full, full_metrics) = start(Config {
        max_connections: 0,
        ..Config::default()
    });
    let mut c = Client::connect(full);
    assert!(c.read_head().starts_with("HTTP/1.1 503 "));
    let text = render(&full_metrics);
    assert_eq!(value(&text, r503) - value(&before, r503), 1.0);
    assert_eq!(value(&text, "wsloop_connections_accepted_total"), 1.0);
    assert_eq!(value(&text, "wsloop_worker_connections{worker=\"0\"}"), 0.0);
}
