//! Owns the rendering of the metrics in the Prometheus text exposition format 0.0.4
//! (`Metrics::render`): one `# HELP` and one `# TYPE` per family, then its samples, with label
//! values and HELP text escaped as the format requires.
//! Must not: change a number it renders (it only reads the registry), take a lock, or read a
//! clock.

use std::fmt::{Display, Write as _};

use super::{
    Gauge, Metrics, Phase, RedisMetrics, Transport, WorkerMetrics, STATUS_MAX, STATUS_MIN,
    TOKEN_REFUSALS,
};

impl Metrics {
    /// Append every family in the Prometheus text exposition format 0.0.4: one `# HELP` and
    /// one `# TYPE` per family, then its samples; counters end in `_total`; per-worker values
    /// carry a `worker` label.
    pub fn render(&self, out: &mut String) {
        let w = &self.workers;
        let mut r = Renderer { out };

        r.family(
            "wsloop_workers",
            "gauge",
            "Event-loop workers (reactors) running.",
        );
        r.sample("wsloop_workers", &[], w.len());

        r.family(
            "wsloop_connections",
            "gauge",
            "Open client connections by transport and phase (handshake: request head being \
             read or answered; open: serving; closing: closing handshake or final flush).",
        );
        for t in Transport::ALL {
            for p in Phase::ALL {
                let n: i64 = w.iter().map(|m| m.connections(t, p)).sum();
                let labels = [("transport", t.label()), ("state", p.label())];
                r.sample("wsloop_connections", &labels, n);
            }
        }

        r.family(
            "wsloop_worker_connections",
            "gauge",
            "Open client connections per worker (how evenly SO_REUSEPORT spreads them).",
        );
        for (i, m) in w.iter().enumerate() {
            let worker = i.to_string();
            r.sample(
                "wsloop_worker_connections",
                &[("worker", &worker)],
                m.connections_total(),
            );
        }

        r.family(
            "wsloop_connections_accepted_total",
            "counter",
            "TCP connections accepted (including those refused with 503 at max_connections).",
        );
        r.sample(
            "wsloop_connections_accepted_total",
            &[],
            self.sum(|m| m.accepted.get()),
        );

        r.family(
            "wsloop_connections_refused_total",
            "counter",
            "Connections refused by a limit, by reason: max_connections (503 at accept), \
             per_ip (429: over max_connections_per_ip, at accept, or behind a trusted proxy \
             when a request names a client over its cap).",
        );
        let refused = [
            ("max_connections", self.sum(|m| m.refused_full.get())),
            ("per_ip", self.sum(|m| m.refused_per_ip.get())),
        ];
        for (reason, n) in refused {
            r.sample("wsloop_connections_refused_total", &[("reason", reason)], n);
        }

        r.family(
            "wsloop_client_addresses",
            "gauge",
            "Distinct client addresses with open connections (behind a trusted proxy, the \
             addresses its requests name).",
        );
        r.sample("wsloop_client_addresses", &[], self.client_addresses.get());

        r.family(
            "wsloop_upgrades_total",
            "counter",
            "Requests answered before any WebSocket opened: result=\"accepted\" is the 101 of an \
             upgrade; result=\"rejected\" an error response and close, by status (validation, \
             routing, handler, limits, 408 slow request head, 429 at max_connections_per_ip, \
             503 at max_connections).",
        );
        let accepted = [("result", "accepted"), ("status", "101")];
        r.sample(
            "wsloop_upgrades_total",
            &accepted,
            self.outcomes().answers(101),
        );
        for status in STATUS_MIN..=STATUS_MAX {
            let n = self.outcomes().answers(status);
            if status != 101 && n > 0 {
                let s = status.to_string();
                let labels = [("result", "rejected"), ("status", s.as_str())];
                r.sample("wsloop_upgrades_total", &labels, n);
            }
        }

        let sums: [(&str, &str, u64); 6] = [
            (
                "wsloop_messages_received_total",
                "Complete WebSocket messages received and handed to handlers.",
                self.sum(|m| m.messages_in.get()),
            ),
            (
                "wsloop_messages_sent_total",
                "WebSocket messages queued for sending (handler sends and publish deliveries).",
                self.sum(|m| m.messages_out.get()),
            ),
            (
                "wsloop_received_bytes_total",
                "Bytes read from client sockets (HTTP and WebSocket framing included).",
                self.sum(|m| m.bytes_in.get()),
            ),
            (
                "wsloop_sent_bytes_total",
                "Bytes written to client sockets (HTTP and WebSocket framing included).",
                self.sum(|m| m.bytes_out.get()),
            ),
            (
                "wsloop_slow_consumer_closes_total",
                "Subscribers closed with 1008 for falling behind on publishes.",
                self.sum(|m| m.slow_closes.get()),
            ),
            (
                "wsloop_handshakes_turned_away_total",
                "WebSocket handshakes closed with 1013 and a retry hint over --max-handshake-rate.",
                self.sum(|m| m.turned_away.get()),
            ),
        ];
        for (name, help, n) in sums {
            r.family(name, "counter", help);
            r.sample(name, &[], n);
        }

        let closes = [
            (
                "wsloop_close_frames_sent_total",
                "WebSocket close frames sent, by status code (1005: sent without a code; \
                 3xxx/4xxx: application codes; other: anything else).",
                &self.outcomes().close_sent,
            ),
            (
                "wsloop_close_frames_received_total",
                "Valid WebSocket close frames received, by status code (1005: without a code; \
                 3xxx/4xxx: application codes; other: anything else).",
                &self.outcomes().close_received,
            ),
        ];
        for (name, help, codes) in closes {
            r.family(name, "counter", help);
            for (code, n) in codes.seen() {
                r.sample(name, &[("code", &code)], n);
            }
        }

        r.family(
            "wsloop_token_checks_total",
            "counter",
            "Access tokens accepted: how=\"verified\" had their signature checked, \
             how=\"cached\" were found verified in the worker's cache (--token-cache).",
        );
        let o = self.outcomes();
        let checks = [
            ("verified", &o.tokens_verified),
            ("cached", &o.tokens_cached),
        ];
        for (how, n) in checks {
            r.sample("wsloop_token_checks_total", &[("how", how)], n.get());
        }
        r.family(
            "wsloop_token_refusals_total",
            "counter",
            "Access tokens refused with 401 (or close 3000 on a refresh), by reason: missing, \
             too_large, malformed, signature (or the wrong algorithm), claims (aud, iss, sub, \
             exp absent or wrong), expired, not_yet.",
        );
        for (i, reason) in TOKEN_REFUSALS.iter().enumerate() {
            let labels = [("reason", *reason)];
            r.sample("wsloop_token_refusals_total", &labels, o.token_refusals(i));
        }

        r.family(
            "wsloop_queued_bytes",
            "gauge",
            "Bytes queued for sending on every connection of the process.",
        );
        r.sample("wsloop_queued_bytes", &[], self.queued_bytes.get());

        r.family(
            "wsloop_deflate_dedicated_connections",
            "gauge",
            "Connections owning their own permessage-deflate state (--compression dedicated).",
        );
        let dedicated = self.deflate_dedicated.get();
        r.sample("wsloop_deflate_dedicated_connections", &[], dedicated);

        r.family(
            "wsloop_pubsub_subscriptions",
            "gauge",
            "Subscriptions (connection, topic) over all workers.",
        );
        let subs: i64 = w.iter().map(|m| m.subscriptions.get()).sum();
        r.sample("wsloop_pubsub_subscriptions", &[], subs);

        let per_worker: [PerWorker; 7] = [
            (
                "wsloop_pubsub_topics",
                "gauge",
                "Topics per worker (a topic with subscribers on several workers exists on each).",
                |m| Value::Int(m.topics.get()),
            ),
            (
                "wsloop_pubsub_topics_evicted_total",
                "counter",
                "Idle topics (no subscribers) evicted with their history to make room for new \
                 ones (--max-topics).",
                |m| Value::Int(i64::try_from(m.topic_evictions.get()).unwrap_or(i64::MAX)),
            ),
            (
                "wsloop_pubsub_topics_refused_total",
                "counter",
                "Subscriptions and publishes refused because the worker held --max-topics \
                 topics, all with subscribers.",
                |m| Value::Int(i64::try_from(m.topic_refusals.get()).unwrap_or(i64::MAX)),
            ),
            (
                "wsloop_pubsub_history_bytes",
                "gauge",
                "Bytes of kept messages in each worker's topic histories (--max-history-bytes).",
                |m| Value::Int(m.history_bytes.get()),
            ),
            (
                "wsloop_timer_wheel_entries",
                "gauge",
                "Timers armed in each worker's timer wheel.",
                |m| Value::Int(m.timers.get()),
            ),
            (
                "wsloop_loop_iterations_total",
                "counter",
                "Event-loop iterations per worker.",
                |m| Value::Int(i64::try_from(m.loop_iterations.get()).unwrap_or(i64::MAX)),
            ),
            (
                "wsloop_poll_seconds_total",
                "counter",
                "Seconds each worker spent blocked in epoll_wait (counted when it returns).",
                |m| Value::Float(m.poll_nanos.get() as f64 / 1e9),
            ),
        ];
        for (name, kind, help, get) in per_worker {
            r.family(name, kind, help);
            for (i, m) in w.iter().enumerate() {
                let worker = i.to_string();
                r.sample(name, &[("worker", &worker)], get(m));
            }
        }
        self.render_redis(&mut r);
    }

    fn render_redis(&self, r: &mut Renderer<'_>) {
        let redis = &self.redis;
        r.family(
            "wsloop_redis_link",
            "gauge",
            "State of the Redis backplane link: 1 for the current state (off without --redis; \
             down: waiting to reconnect; connecting: socket or HELLO pending; up).",
        );
        let state = redis.state.get();
        for (i, s) in RedisMetrics::STATES.iter().enumerate() {
            r.sample(
                "wsloop_redis_link",
                &[("state", s)],
                i64::from(state == i as i64),
            );
        }
        let families: [(&str, &str, &str, &Gauge); 5] = [
            (
                "wsloop_redis_reconnects_total",
                "counter",
                "Connection attempts to Redis after the first one.",
                &redis.reconnects,
            ),
            (
                "wsloop_redis_dropped_publishes_total",
                "counter",
                "Publishes not sent to Redis (link not up, too much queued, or refused): other \
                 nodes never see them; local subscribers did.",
                &redis.dropped,
            ),
            (
                "wsloop_redis_published_total",
                "counter",
                "Publishes sent to Redis for the other nodes.",
                &redis.published,
            ),
            (
                "wsloop_redis_received_total",
                "counter",
                "Messages from other nodes received through Redis and delivered here.",
                &redis.received,
            ),
            (
                "wsloop_redis_channels",
                "gauge",
                "Redis channels the link subscribes to, as Redis last confirmed.",
                &redis.channels,
            ),
        ];
        for (name, kind, help, g) in families {
            r.family(name, kind, help);
            r.sample(name, &[], g.get());
        }
    }
}

/// A per-worker family: name, type, help, and how to read the value from a slot.
type PerWorker = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerMetrics) -> Value,
);

/// A sample's value.
enum Value {
    Int(i64),
    Float(f64),
}

impl Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            // Rust prints floats in plain decimal (never an exponent), which Prometheus parses.
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Writes the exposition format into a String (writing to a String cannot fail, hence the
/// ignored `fmt::Result`s).
pub(super) struct Renderer<'a> {
    pub(super) out: &'a mut String,
}

impl Renderer<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub(super) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the format requires: backslash, double quote and newline escaped.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text as the format requires: backslash and newline escaped (quotes stay).
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}
