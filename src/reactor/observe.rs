//! Owns what the reactor tells the metrics beyond one-line counts: which connections gauge
//! counts each connection (`track`, from its state, on every flush), the per-iteration
//! numbers (loop iterations, time blocked in poll, timer and topic gauges), and
//! `Reactor::render_metrics`, the text a `GET /metrics` answers with.
//! Must not: take a lock or allocate per message.

use std::sync::Arc;

use super::clients::Clients;
use super::totals::Totals;
use super::{Net, Reactor};
use crate::conn::{State, Takes};
use crate::metrics::{ConnClass, Metrics, Phase, Transport};

impl<N: Net> Reactor<N> {
    /// The registry this reactor counts into (shared by all workers of a `workers::run`), for
    /// an embedder that exports it another way, and for tests.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.all().clone()
    }

    /// The process's metrics (every worker's slot summed) in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        render(self.metrics.all(), &self.clients, &self.totals)
    }

    /// Right after `poll` returns: count the iteration and the time blocked (`polled_nanos`,
    /// by `Net::nanos`), and refresh the
    /// gauges only this worker can see (cheap: a few relaxed stores per iteration).
    pub(super) fn after_poll(&mut self, polled_nanos: u64) {
        let m = &self.metrics;
        m.loop_iterations.inc();
        m.poll_nanos.add(polled_nanos);
        m.timers.set(self.wheel.len() as i64);
        m.topics.set(self.hub.topic_count() as i64);
        m.history_bytes.set(self.hub.history_bytes() as i64);
        // Counted by the hub, added here (rarely non-zero: no atomic add per iteration).
        let (evicted, refused) = (self.hub.take_evictions(), self.hub.take_refusals());
        if evicted > 0 {
            m.topic_evictions.add(evicted);
        }
        if refused > 0 {
            m.topic_refusals.add(refused);
        }
        m.subscriptions.set(self.hub.subscription_count() as i64);
    }

    /// Move a connection to the gauge of its current (transport, phase). Every state change
    /// is followed by a flush of that connection, so calling this at the start of `flush` (and
    /// at accept) sees them all; a connection freed meanwhile leaves the gauge it was in.
    pub(super) fn track(&mut self, idx: usize) {
        let e = &mut self.conns[idx];
        let was = e.class;
        let status = e.conn.status();
        let now = match status.state {
            State::Handshake | State::Body | State::Upgrading => {
                ConnClass::new(Transport::Http, Phase::Handshake)
            }
            State::Open => ConnClass::new(Transport::WebSocket, Phase::Open),
            State::Held => ConnClass::new(Transport::Poll, Phase::Open),
            State::Streaming => match status.takes {
                Takes::SseEvent => ConnClass::new(Transport::Sse, Phase::Open),
                _ => ConnClass::new(Transport::Stream, Phase::Open),
            },
            // Only a WebSocket sends a close frame and waits for the answer.
            State::CloseSent => ConnClass::new(Transport::WebSocket, Phase::Closing),
            // Otherwise a closing connection keeps the transport it had: a refused request is
            // still "http", a WebSocket finishing its closing handshake still "websocket"
            // (one opened and closed within a single read is counted as "http" meanwhile).
            State::Closing | State::Draining | State::Closed => {
                ConnClass::new(was.transport().unwrap_or(Transport::Http), Phase::Closing)
            }
        };
        if now != was {
            e.class = now;
            self.metrics.move_conn(was, now);
        }
    }
}

/// Render `all` after setting the process-wide gauges only the reactor can read.
pub(super) fn render(all: &Metrics, clients: &Clients, totals: &Totals) -> String {
    all.set_queued_bytes(totals.queued());
    all.set_client_addresses(clients.addresses());
    all.set_deflate_dedicated(totals.dedicated());
    let mut out = String::with_capacity(8 * 1024);
    all.render(&mut out);
    out
}
