//! Tests of the metrics: workers' counters summed and per-worker ones labelled, the connection
//! gauges, close codes and upgrade outcomes, and the rendered exposition format (one HELP and
//! TYPE per family before its samples, escaping).
//! Must not: open a socket or read a clock.

use super::render::Renderer;
use super::*;

fn fresh(workers: usize) -> Metrics {
    Metrics::with_outcomes(workers, Box::leak(Box::new(Outcomes::new())))
}

fn rendered(m: &Metrics) -> String {
    let mut s = String::new();
    m.render(&mut s);
    s
}

/// The value of the sample written exactly as `series` (name and labels).
fn value(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(String::from))
}

#[test]
fn the_redis_link_state_is_one_series_at_1() {
    let m = fresh(1);
    let up = "wsloop_redis_link{state=\"up\"}";
    let off = "wsloop_redis_link{state=\"off\"}";
    let text = rendered(&m);
    assert_eq!(
        value(&text, off).as_deref(),
        Some("1"),
        "off without --redis"
    );
    assert_eq!(value(&text, up).as_deref(), Some("0"));
    m.redis.state.set(3);
    m.redis.dropped.set(5);
    let text = rendered(&m);
    assert_eq!(value(&text, off).as_deref(), Some("0"));
    assert_eq!(value(&text, up).as_deref(), Some("1"));
    let dropped = "wsloop_redis_dropped_publishes_total";
    assert_eq!(value(&text, dropped).as_deref(), Some("5"));
}

#[test]
fn an_accepted_upgrade_shows_as_1() {
    let m = fresh(1);
    let series = "wsloop_upgrades_total{result=\"accepted\",status=\"101\"}";
    assert_eq!(value(&rendered(&m), series).as_deref(), Some("0"));
    m.outcomes().answered(101);
    assert_eq!(value(&rendered(&m), series).as_deref(), Some("1"));
}

#[test]
fn rejections_appear_by_status_once_seen() {
    let m = fresh(1);
    let series = "wsloop_upgrades_total{result=\"rejected\",status=\"404\"}";
    assert_eq!(value(&rendered(&m), series), None);
    m.outcomes().answered(404);
    m.outcomes().answered(404);
    m.outcomes().answered(503);
    let text = rendered(&m);
    assert_eq!(value(&text, series).as_deref(), Some("2"));
    assert_eq!(
        value(
            &text,
            "wsloop_upgrades_total{result=\"rejected\",status=\"503\"}"
        )
        .as_deref(),
        Some("1")
    );
}

#[test]
fn worker_counters_are_summed_and_per_worker_ones_labelled() {
    let m = Arc::new(fresh(2));
    let (w0, w1) = (m.handle(0), m.handle(1));
    w0.bytes_in.add(10);
    w1.bytes_in.add(5);
    w0.messages_out.inc();
    w1.loop_iterations.add(7);
    w1.poll_nanos.add(1_500_000_000);
    w0.topics.set(3);
    w1.topics.set(2);
    w0.subscriptions.set(4);
    w1.subscriptions.set(1);
    m.set_queued_bytes(12345);
    m.set_deflate_dedicated(6);
    w0.refused_per_ip.add(2);
    w1.refused_per_ip.inc();
    w1.refused_full.inc();
    m.set_client_addresses(6);
    let text = rendered(&m);
    for (series, want) in [
        ("wsloop_connections_refused_total{reason=\"per_ip\"}", "3"),
        (
            "wsloop_connections_refused_total{reason=\"max_connections\"}",
            "1",
        ),
        ("wsloop_client_addresses", "6"),
        ("wsloop_received_bytes_total", "15"),
        ("wsloop_messages_sent_total", "1"),
        ("wsloop_loop_iterations_total{worker=\"0\"}", "0"),
        ("wsloop_loop_iterations_total{worker=\"1\"}", "7"),
        ("wsloop_poll_seconds_total{worker=\"1\"}", "1.5"),
        ("wsloop_pubsub_topics{worker=\"0\"}", "3"),
        ("wsloop_pubsub_subscriptions", "5"),
        ("wsloop_queued_bytes", "12345"),
        ("wsloop_deflate_dedicated_connections", "6"),
        ("wsloop_workers", "2"),
    ] {
        assert_eq!(value(&text, series).as_deref(), Some(want), "{series}");
    }
}

#[test]
fn connection_gauges_follow_moves_and_list_every_transport() {
    let m = Arc::new(fresh(2));
    let w = m.handle(1);
    let hs = ConnClass::new(Transport::Http, Phase::Handshake);
    let open = ConnClass::new(Transport::WebSocket, Phase::Open);
    let closing = ConnClass::new(Transport::WebSocket, Phase::Closing);
    w.move_conn(ConnClass::NONE, hs);
    w.move_conn(ConnClass::NONE, hs);
    w.move_conn(hs, open);
    w.move_conn(open, closing);
    w.move_conn(ConnClass::NONE, hs);
    w.move_conn(hs, open);
    let text = rendered(&m);
    let get = |t: &str, s: &str| {
        let series = format!("wsloop_connections{{transport=\"{t}\",state=\"{s}\"}}");
        value(&text, &series)
    };
    assert_eq!(get("http", "handshake").as_deref(), Some("1"));
    assert_eq!(get("websocket", "open").as_deref(), Some("1"));
    assert_eq!(get("websocket", "closing").as_deref(), Some("1"));
    for t in ["sse", "poll", "stream"] {
        assert_eq!(get(t, "open").as_deref(), Some("0"), "{t} listed with 0");
    }
    assert_eq!(
        value(&text, "wsloop_worker_connections{worker=\"1\"}").as_deref(),
        Some("3")
    );
    w.move_conn(closing, ConnClass::NONE);
    assert_eq!(w.connections_total(), 2);
    assert_eq!(closing.transport(), Some(Transport::WebSocket));
    assert_eq!(ConnClass::NONE.transport(), None);
}

#[test]
fn close_codes_are_exact_for_the_standard_ones_and_bucketed_otherwise() {
    let m = fresh(1);
    let o = m.outcomes();
    o.close_sent.record(1000);
    o.close_sent.record(1000);
    o.close_sent.record(1008);
    o.close_received.record(1005);
    o.close_received.record(4001);
    o.close_received.record(4999);
    o.close_received.record(3000);
    o.close_received.record(2999);
    let text = rendered(&m);
    for (series, want) in [
        ("wsloop_close_frames_sent_total{code=\"1000\"}", "2"),
        ("wsloop_close_frames_sent_total{code=\"1008\"}", "1"),
        ("wsloop_close_frames_received_total{code=\"1005\"}", "1"),
        ("wsloop_close_frames_received_total{code=\"4xxx\"}", "2"),
        ("wsloop_close_frames_received_total{code=\"3xxx\"}", "1"),
        ("wsloop_close_frames_received_total{code=\"other\"}", "1"),
    ] {
        assert_eq!(value(&text, series).as_deref(), Some(want), "{series}");
    }
    assert_eq!(
        value(&text, "wsloop_close_frames_sent_total{code=\"1001\"}"),
        None
    );
}

#[test]
fn every_family_has_one_help_and_type_before_its_samples() {
    let m = fresh(3);
    m.outcomes().answered(400);
    m.outcomes().close_sent.record(1001);
    let text = rendered(&m);
    let mut families: Vec<&str> = Vec::new();
    let mut current = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            assert!(!families.contains(&name), "{name} twice");
            families.push(name);
            current = name;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or(("", ""));
            assert_eq!(name, current);
            assert!(kind == "counter" || kind == "gauge", "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
        } else {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            assert_eq!(name, current, "sample outside its family: {line}");
            let v = line.rsplit(' ').next().unwrap_or("");
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }
    assert_eq!(families.len(), 33, "{families:?}");
}

#[test]
fn label_values_and_help_are_escaped() {
    assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    assert_eq!(escape_help("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
    let mut s = String::new();
    Renderer { out: &mut s }.sample("m", &[("k", "v\"1"), ("j", "2")], 3);
    assert_eq!(s, "m{k=\"v\\\"1\",j=\"2\"} 3\n");
}

#[test]
fn worker_slots_do_not_share_cache_lines() {
    assert_eq!(std::mem::align_of::<WorkerMetrics>(), 128);
    assert_eq!(std::mem::size_of::<WorkerMetrics>() % 128, 0);
}
