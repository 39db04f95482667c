//! Owns the hand-off between connections and applications: running a connection's state
//! machine and giving its events to the handlers, answering upgrade requests, applying the
//! commands handlers record (subscribe, unsubscribe, publish), and delivering a publish —
//! encoded once — to every subscriber, closing the ones that fall too far behind.
//! Must not: block, or let one subscriber's backlog delay the others.

use std::rc::Rc;

use super::accept::TOO_MANY_FROM_YOU;
use super::clients::{ClientId, Clients};
use super::workers::{Envelope, Mail};
use super::{observe, storm, token, Net, Reactor, VIA_PROXY};
use crate::app::http::{self, HttpEnv};
use crate::app::{Command, ConnId, Ctx, Decision, Resume, ResumeKind, Router, Upgrade};
use crate::auth::{self, Gate};
use crate::backplane::LogEntry;
use crate::config::Config;
use crate::conn::{
    Close, Event, Mode, Outbox, Push, Pushed, State, Step, Takes, POSITIONS_PROTOCOL,
    POSITIONS_REFRESH_PROTOCOL,
};
use crate::http::forwarded;
use crate::http::request::Request;
use crate::http::upgrade::WsUpgrade;
use crate::metrics;
use crate::pubsub::fanout::{self, Fanout};
use crate::pubsub::{Published, TopicError};
use crate::timer::Tick;
use crate::ws::Message;
use std::collections::HashMap;
use std::sync::Arc;

impl<N: Net> Reactor<N> {
    pub(super) fn conn_id(&self, idx: usize) -> ConnId {
        ConnId(token::encode(idx, self.conns[idx].generation).0 as u64)
    }

    /// The slab slot of `conn`, if it is still open (not freed, its slot not reused).
    fn slot_of(&self, conn: ConnId) -> Option<usize> {
        let (idx, generation) = token::decode(mio::Token(conn.0 as usize));
        self.conns
            .get(idx)
            .is_some_and(|e| e.generation == generation)
            .then_some(idx)
    }

    /// Run one connection's state machine over its buffered input, dispatching events. What
    /// the handlers recorded is applied after each event, before the next is read: a request
    /// pipelined behind a publish (or a subscription) finds it done — a poll sees the message
    /// its own connection published just before (read-your-writes).
    ///
    /// Its publishes of one topic in a row reach the other subscribers as one run
    /// (`Reactor::deliver`), delivered before anything else is applied and at the end.
    pub(super) fn process(&mut self, idx: usize) {
        debug_assert!(self.gathering.is_none() && self.run.is_empty());
        self.gathering = Some(Some(self.conn_id(idx)));
        while self.step(idx) {
            self.apply_commands();
        }
        // Before the 101 leaves (the caller flushes next): see `sync_dedicated`.
        self.sync_dedicated();
        self.apply_commands();
        while !self.run.is_empty() {
            self.end_run();
            // What closing a subscriber that fell behind made its handler record.
            self.apply_commands();
        }
        self.gathering = None;
    }

    /// One step of a connection's state machine and the handler call for its event, if any.
    /// False once the buffered input is used up (`Step::Idle`).
    fn step(&mut self, idx: usize) -> bool {
        // The read's last message was handled: no state-machine round (and no event set-up)
        // just to learn there is nothing more.
        if self.conns[idx].conn.input_drained() {
            return false;
        }
        let now = self.now;
        let id = self.conn_id(idx);
        let Reactor {
            conns,
            res,
            router,
            cfg,
            cmds,
            hub,
            date,
            metrics,
            clients,
            net,
            totals,
            auth,
            read_only,
            unix_ms,
            token_expiry,
            refreshable,
            token_cache,
            storm,
            ..
        } = self;
        // Built only where tokens are checked: a message (the usual event) needs none.
        macro_rules! gate {
            () => {
                &mut Gate {
                    policy: auth,
                    now: *unix_ms / 1000,
                    cache: token_cache,
                    outcomes: metrics.all().outcomes(),
                }
            };
        }
        let e = &mut conns[idx];
        let via_proxy = e.flags.has(VIA_PROXY);
        let route = e.conn.status().route;
        let (step, mut out) = e.conn.poll_event(cfg, res, now);
        // An access token's expiry joins the connection's deadlines (`Reactor::arm`).
        let mut token_set = false;
        match step {
            Step::Idle => return false,
            Step::Again => {}
            Step::Event(Event::Upgrade(req, up)) => {
                if via_proxy && !count_client(&mut e.client, clients, cfg, &req, &mut out, metrics)
                {
                    return true;
                }
                log::debug!(
                    "{} {} {} (upgrade)",
                    who(clients, e.client, net.peer_addr(&e.sock)),
                    req.method,
                    loggable(req.target)
                );
                // Over the handshake budget: accepted only to be closed with 1013 and when to
                // come back, before tokens are verified or a handler runs.
                if let Some(wait) = storm.admit(now) {
                    metrics.turned_away.inc();
                    // The first subprotocol offered (RFC 6455 §4.2.2): a browser fails a
                    // 101 that selects none when it offered some, and would miss the hint.
                    out.accept(&up, 0, up.protocols.first().copied());
                    let reason = format!("over the handshake budget; {}{wait}", storm::HINT);
                    out.turn_away(1013, &reason);
                    return true;
                }
                let tokens = &mut Tokens {
                    read_only,
                    refreshable,
                };
                let exp = upgrade(router, id, &req, &up, &mut out, cmds, gate!(), tokens);
                if out.is_open() {
                    expires(token_expiry, idx, exp, now, *unix_ms);
                    token_set = true;
                }
            }
            Step::Event(Event::Request(req, body)) => {
                if via_proxy && !count_client(&mut e.client, clients, cfg, &req, &mut out, metrics)
                {
                    return true;
                }
                log::debug!(
                    "{} {} {}",
                    who(clients, e.client, net.peer_addr(&e.sock)),
                    req.method,
                    loggable(req.target)
                );
                // Rendered only when `/metrics` is asked for.
                let render = || observe::render(metrics.all(), clients, totals);
                let broker_down = cfg.redis.url.is_some() && !metrics.all().redis.link_up();
                let env = &mut HttpEnv {
                    router,
                    hub,
                    cfg,
                    cmds,
                    date,
                    metrics: &render,
                    broker_down,
                    sequenced: cfg.redis.url.is_some(),
                    gate: gate!(),
                    granted_until: None,
                };
                http::answer(env, id, &req, body, &mut out);
                if matches!(out.state(), State::Streaming | State::Held) {
                    expires(token_expiry, idx, env.granted_until, now, *unix_ms);
                    token_set = true;
                }
            }
            Step::Event(Event::Message(msg)) => {
                metrics.messages_in.inc();
                let refresh = match (&msg, refreshable.get(&id)) {
                    (Message::Text(text), Some(access)) => {
                        auth::refresh_token(text).map(|t| (t, access.clone()))
                    }
                    _ => None,
                };
                if let Some((token, access)) = refresh {
                    // In-band refresh (`auth::REFRESH_PROTOCOL`): the new token replaces the
                    // old one's expiry and rights, or the connection ends as if it expired.
                    let (reads, writes) = (access.reads.as_deref(), access.writes.as_deref());
                    match gate!().refresh(&token, reads, writes) {
                        Ok(admitted) => {
                            if admitted.may_write && !router.owns(writes.unwrap_or("")) {
                                read_only.remove(&id);
                            } else if writes.is_some() {
                                read_only.insert(id);
                            }
                            expires(token_expiry, idx, admitted.exp, now, *unix_ms);
                            token_set = true;
                            let exp = admitted.exp.unwrap_or(0);
                            out.send_text(&format!(r#"{{"type":"refreshed","exp":{exp}}}"#));
                        }
                        Err(why) => out.close(3000, why),
                    }
                } else if read_only.contains(&id) {
                    // RFC 6455 §7.4.2 / IANA: 3003 "Forbidden".
                    out.close(3003, "this connection may not publish to its topic");
                } else {
                    router
                        .handler(route)
                        .on_message(&mut Ctx::new(id, &mut out, cmds), msg)
                }
            }
            Step::Event(Event::Closed { code, reason }) => {
                let ctx = &mut Ctx::detached(Some(id), cmds);
                router.handler(route).on_close(ctx, code, reason)
            }
        }
        metrics.messages_out.add(out.messages_sent());
        if token_set {
            e.conn.unsettle_deadline();
        }
        true
    }

    /// Tell a connection's handler that it closed (once; the caller checked).
    pub(super) fn told_closed(&mut self, idx: usize, code: u16, reason: &str) {
        let id = self.conn_id(idx);
        let route = self.conns[idx].conn.status().route;
        let ctx = &mut Ctx::detached(Some(id), &mut self.cmds);
        self.router.handler(route).on_close(ctx, code, reason);
    }

    /// Apply what handlers recorded, in order. Called after every event, and most record
    /// nothing (an echo): that check is inlined, the work is not.
    #[inline]
    pub(super) fn apply_commands(&mut self) {
        if !self.cmds.is_empty() {
            self.apply_recorded();
        }
    }

    fn apply_recorded(&mut self) {
        while !self.cmds.is_empty() {
            for cmd in std::mem::take(&mut self.cmds) {
                // Whatever is not a publish may change who subscribes, or queue something
                // behind the publishes before it: the run so far goes out first.
                if !matches!(cmd, Command::Publish { .. } | Command::PublishForAck { .. }) {
                    self.end_run();
                }
                match cmd {
                    Command::Subscribe { conn, topic } => self.subscribe(conn, &topic),
                    Command::Unsubscribe { conn, topic } => self.hub.unsubscribe(conn, &topic),
                    Command::Publish {
                        topic,
                        text,
                        payload,
                        from,
                    } => {
                        self.publish(&topic, text, &payload, None);
                        if let Some(conn) = from.filter(|_| self.broker_unreachable()) {
                            self.try_again_later(conn);
                        }
                    }
                    Command::PublishForAck {
                        conn,
                        topic,
                        text,
                        payload,
                        origin,
                    } => {
                        self.held_publishes
                            .insert(conn, (topic.as_str().into(), origin));
                        self.publish(&topic, text, &payload, Some(conn));
                    }
                    // A WebSocket whose history here vouches for its position replays now,
                    // before anything live (its subscription was applied just before).
                    Command::Resume(r)
                        if r.kind == ResumeKind::WebSocket && !self.ws_must_read_log(&r) =>
                    {
                        self.answer_resume(r)
                    }
                    Command::Resume(r) => {
                        if r.kind == ResumeKind::WebSocket {
                            self.muted.insert(r.conn);
                        }
                        let (topic, after) = (r.topic.as_str().into(), r.after);
                        let waiting = self.resuming.entry(Box::clone(&topic)).or_default();
                        waiting.push(r);
                        if waiting.len() == 1 {
                            if self.owns_link() {
                                self.read_back(&topic, after);
                            } else if let Some(end) = self.bus.as_ref() {
                                let topic = Arc::from(&*topic);
                                end.bus.tell(0, Mail::ReadBack { topic, after });
                            }
                        }
                    }
                }
            }
        }
    }

    /// Publish a client's message. With `--redis`, Redis sequences it (worker 0 sends it,
    /// the other workers mail it there) and it is delivered here, as on every node, when
    /// Redis publishes it back with its position: every subscriber sees a topic in Redis's
    /// order. Without, it is published on this node (`publish_local`), and a publish this
    /// node refuses goes nowhere. `ack`: the held `POST /publish` to answer once Redis has
    /// the message, or at once if it goes nowhere.
    fn publish(&mut self, topic: &str, text: bool, payload: &[u8], ack: Option<ConnId>) {
        if self.sequenced() {
            if self.owns_link() {
                self.redis_publish(topic, text, payload, ack);
            } else if let Some(end) = self.bus.as_ref() {
                let env = Envelope {
                    topic: topic.into(),
                    seq: 0,
                    text,
                    payload: payload.into(),
                    ack,
                };
                end.bus.tell(0, Mail::Sequence(env));
            }
        } else {
            let seq = self.publish_local(topic, text, payload);
            if let Some(conn) = ack {
                self.publish_answered(conn, seq);
            }
        }
    }

    /// With `--redis`, is the link down (so a publish made now is dropped)? Every worker can
    /// tell: the link's state is in the process's metrics.
    fn broker_unreachable(&self) -> bool {
        self.sequenced() && !self.metrics.all().redis.link_up()
    }

    /// A WebSocket published while Redis could not take it: the message is dropped (counted),
    /// and the client is told so it can send it again elsewhere or later — close 1013
    /// (IANA: Try Again Later), behind what is queued.
    fn try_again_later(&mut self, conn: ConnId) {
        let Some(idx) = self.slot_of(conn) else {
            return;
        };
        let reason = "the message broker (Redis) is unreachable: not published";
        let close = Close::Unavailable(reason);
        if let Some(code) = self.conns[idx].conn.close(&self.cfg, &mut self.res, close) {
            self.told_closed(idx, code, reason);
        }
        self.mark_dirty(idx);
    }

    /// Deliver a message Redis sequenced at `seq`: here, and on every other worker with the
    /// same number. `restart`: the topic's history cannot be shown to lead up to it (a new
    /// epoch, or messages missed), so it is dropped first and a resume across is told of
    /// the gap; `missed_after`: the last position delivered before it, when live
    /// subscribers followed the topic there (they are told of the gap before it).
    pub(super) fn publish_sequenced(
        &mut self,
        topic: &str,
        seq: u64,
        text: bool,
        payload: &[u8],
        restart: bool,
        missed_after: Option<u64>,
    ) {
        let gap = missed_after.filter(|_| restart).map(|after| (after, seq));
        if let Some(end) = self.bus.as_ref() {
            if restart {
                for w in (0..end.bus.len()).filter(|&w| w != end.me) {
                    let topic = topic.into();
                    end.bus.tell(w, Mail::Forget { topic, gap });
                }
            }
            end.bus.broadcast(end.me, topic, seq, text, payload, None);
        }
        if restart {
            self.hub.forget_history(topic);
        }
        if let Some((after, first)) = gap {
            self.deliver_gap(topic, after, first);
        }
        let published = Rc::new(Published::encode(seq, text, payload));
        let (published, _) = self.hub.publish_numbered(topic, published);
        self.deliver(topic, published);
    }

    /// Worker 0: what a topic's log held, read back for resumes: to every other worker, and
    /// here.
    pub(super) fn history_read(&mut self, topic: &str, entries: Vec<LogEntry>) {
        let entries: Arc<[LogEntry]> = entries.into();
        if let Some(end) = self.bus.as_ref() {
            for w in (0..end.bus.len()).filter(|&w| w != end.me) {
                let (topic, entries) = (topic.into(), entries.clone());
                end.bus.tell(w, Mail::History { topic, entries });
            }
        }
        self.history_arrived(topic, &entries);
    }

    /// A topic's log, read back: put what joins this worker's history before it, then answer
    /// every resume waiting on the topic from the history as it now is.
    fn history_arrived(&mut self, topic: &str, entries: &[LogEntry]) {
        let msgs = entries
            .iter()
            .map(|(seq, text, p)| Rc::new(Published::encode(*seq, *text, p)))
            .collect();
        self.hub.prepend_history(topic, msgs);
        for r in self.resuming.remove(topic).unwrap_or_default() {
            self.answer_resume(r);
        }
    }

    /// Send a WebSocket what its topic's history holds after `after`, each message in the
    /// form it takes (with positions if it asked for them, behind a gap notice when some are
    /// gone), then let live messages reach it again.
    fn replay(&mut self, conn: ConnId, topic: &str, after: u64) {
        self.muted.remove(&conn);
        let (msgs, gap) = self.hub.history_after(topic, after);
        let Some(idx) = self.slot_of(conn) else {
            return;
        };
        if gap && self.conns[idx].conn.status().takes == Takes::Positioned {
            let first = msgs.first().map_or(self.hub.last_seq(topic) + 1, |p| p.seq);
            let note = format!(
                r#"{{"type":"gap","topic":{},"after":"{after}","resumed_at":"{first}"}}"#,
                crate::text::json_string(topic)
            );
            let frame = Published::encode(0, true, note.as_bytes()).frame;
            let e = &mut self.conns[idx];
            e.conn
                .push(&self.cfg, &mut self.res, self.now, Push::Shared(frame));
        }
        let mut out = 0;
        for p in &msgs {
            out += self.deliver_to(conn, p);
        }
        self.metrics.messages_out.add(out);
        self.mark_dirty(idx);
    }

    /// With `--redis`, must a WebSocket resuming from `r.after` wait for the topic's log?
    /// As for HTTP resumes (`app::http::must_read_log`), counting itself out of the
    /// topic's subscribers.
    fn ws_must_read_log(&self, r: &Resume) -> bool {
        let (topic, after) = (r.topic.as_str(), r.after);
        self.sequenced()
            && (self.hub.subscriber_count(topic) <= 1
                || after > self.hub.last_seq(topic)
                || self.hub.history_after(topic, after).1)
    }

    /// Answer a held resume from the history: the stream's head and what it replays, or the
    /// poll's batch (a long poll with nothing to send waits on as any other).
    fn answer_resume(&mut self, r: Resume) {
        let Some(idx) = self.slot_of(r.conn) else {
            return;
        };
        let mut cors: Vec<(&str, &str)> = Vec::new();
        if let Some(origin) = r.origin.as_deref() {
            cors.extend([("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]);
        }
        let (hub, date, cfg) = (&self.hub, &self.date, &self.cfg);
        let (topic, after) = (r.topic.as_str(), r.after);
        let e = &mut self.conns[idx];
        let pushed = match r.kind {
            ResumeKind::WebSocket => return self.replay(r.conn, topic, after),
            ResumeKind::Sse { hello } => {
                let retry = cfg.sse_retry.as_millis();
                let head = http::SseHead {
                    last: Some(after),
                    cors: &cors,
                    date,
                    retry_ms: retry,
                    hello,
                }
                .render(hub, topic);
                let push = Push::Stream {
                    mode: Mode::Sse,
                    head: &head,
                };
                e.conn.push(cfg, &mut self.res, self.now, push)
            }
            ResumeKind::Stream => {
                let head = http::stream_resume_head(hub, topic, Some(after), &cors, date);
                let push = Push::Stream {
                    mode: Mode::Stream,
                    head: &head,
                };
                e.conn.push(cfg, &mut self.res, self.now, push)
            }
            ResumeKind::Poll { wait } => {
                let (msgs, gap) = hub.history_after(topic, after);
                if msgs.is_empty() && !gap && wait {
                    self.hub.wait(r.conn, topic, after);
                    return;
                }
                let body = http::batch(hub, topic, &msgs, gap);
                let mut hs = cors.clone();
                hs.extend([
                    ("Content-Type", "application/json"),
                    ("Cache-Control", "no-store"),
                ]);
                let mut answer =
                    |ka| crate::http::response::full(200, &hs, body.as_bytes(), date, ka, false);
                e.conn
                    .push(cfg, &mut self.res, self.now, Push::Held(&mut answer))
            }
        };
        if pushed == Pushed::Released {
            self.resume.push(idx); // pipelined requests may wait
        }
        self.mark_dirty(idx);
    }

    /// Redis took the publish of `conn` at `position`, or it is lost (None): answer the held
    /// request, on whichever worker serves it (a connection's id names its worker:
    /// `accept.rs::admit`).
    pub(super) fn publish_answered(&mut self, conn: ConnId, position: Option<u64>) {
        let worker = (conn.0 >> 56) as u32;
        if worker != self.worker {
            if let Some(end) = self.bus.as_ref() {
                end.bus
                    .tell(worker as usize, Mail::Acked { conn, position });
            }
            return;
        }
        let Some((topic, origin)) = self.held_publishes.remove(&conn) else {
            return;
        };
        let Some(idx) = self.slot_of(conn) else {
            return;
        };
        let e = &mut self.conns[idx];
        let date = &self.date;
        let ok = position.map(Some).ok_or(());
        let mut answer =
            |keep_alive| http::publish_answer(&topic, ok, origin.as_deref(), date, keep_alive);
        let pushed = e
            .conn
            .push(&self.cfg, &mut self.res, self.now, Push::Held(&mut answer));
        if pushed == Pushed::Released {
            self.resume.push(idx); // pipelined requests may wait
        }
        self.mark_dirty(idx);
    }

    /// Publish on this node only: here, and through the bus on every other worker with the
    /// same sequence number, which it returns. Refused (dropped, logged and counted; None)
    /// when this worker's hub has no room for a new topic (`Hub::check_room`).
    pub(super) fn publish_local(&mut self, topic: &str, text: bool, payload: &[u8]) -> Option<u64> {
        let Some(end) = self.bus.as_ref() else {
            return match self.hub.publish(topic, text, payload) {
                Ok((published, _)) => {
                    let seq = published.seq;
                    self.deliver(topic, published);
                    Some(seq)
                }
                Err(e) => {
                    self.refused("publish", topic, e);
                    None
                }
            };
        };
        if let Err(e) = self.hub.check_room(topic, payload.len()) {
            self.refused("publish", topic, e);
            return None;
        }
        let seq = end.bus.next_seq(topic);
        end.bus.broadcast(end.me, topic, seq, text, payload, None);
        let published = Rc::new(Published::encode(seq, text, payload));
        let (published, _) = self.hub.publish_numbered(topic, published);
        self.deliver(topic, published);
        Some(seq)
    }

    fn refused(&self, what: &str, topic: &str, e: TopicError) {
        log::debug!("{what} {topic:?} refused: {e}");
    }

    /// Mail from other workers: publishes (encode each once here and deliver) and, on the
    /// worker that owns the Redis link, the other workers' interest in topics.
    pub(super) fn receive_from_workers(&mut self) {
        let Some(end) = self.bus.as_ref() else { return };
        let mails: Vec<_> = end.inbox.try_iter().collect();
        // Publishes of one topic in a row (another worker's burst) go out as one run.
        self.gathering = Some(None);
        for mail in mails {
            if !matches!(mail, Mail::Publish(_)) {
                self.end_run();
            }
            match mail {
                Mail::Publish(env) => {
                    let published = Rc::new(Published::encode(env.seq, env.text, &env.payload));
                    let (published, _) = self.hub.publish_numbered(&env.topic, published);
                    self.deliver(&env.topic, published);
                }
                // Worker 0, with `--redis`: another worker's publish, for Redis to sequence.
                Mail::Sequence(env) => {
                    self.redis_publish(&env.topic, env.text, &env.payload, env.ack)
                }
                Mail::Forget { topic, gap } => {
                    self.hub.forget_history(&topic);
                    if let Some((after, first)) = gap {
                        self.deliver_gap(&topic, after, first);
                    }
                }
                Mail::ReadBack { topic, after } => self.read_back(&topic, after),
                Mail::History { topic, entries } => self.history_arrived(&topic, &entries),
                Mail::Interest { topic, on } => self.redis_interest(&topic, on),
                Mail::Acked { conn, position } => self.publish_answered(conn, position),
            }
        }
        self.end_run();
        self.gathering = None;
    }

    fn subscribe(&mut self, conn: ConnId, topic: &str) {
        if let Err(e) = self.hub.subscribe(conn, topic) {
            self.refused("subscribe", topic, e);
            if let Some(idx) = self.slot_of(conn) {
                // Close 1008 with the reason (cut to the 123 bytes a close frame allows).
                let reason = format!("subscription refused: {e}");
                let policy = Close::Policy(&reason);
                if let Some(code) = self.conns[idx].conn.close(&self.cfg, &mut self.res, policy) {
                    self.told_closed(idx, code, &reason);
                }
                self.mark_dirty(idx);
            }
        }
    }

    /// Queue a published frame on every subscriber of `topic`: a reference each, no copy.
    /// A subscriber that falls too far behind is closed with 1008; the others never wait. A
    /// WebSocket resuming from a position (`muted`) is skipped: the message is in the
    /// history its replay is built from. While a run may grow (`gathering`), the message
    /// joins it and reaches the others with the run (`end_run`); the connection whose
    /// input published it takes it now, in order with what else its input makes it send.
    pub(super) fn deliver(&mut self, topic: &str, published: Rc<Published>) {
        if !self.run.fits(topic, &published) {
            self.end_run();
        }
        if let Some(Some(source)) = self.gathering {
            if self.hub.is_subscribed(source, topic) && !self.muted.contains(&source) {
                let out = self.deliver_to(source, &published);
                self.metrics.messages_out.add(out);
            }
        }
        self.run.push(topic, published);
        if self.gathering.is_none() {
            self.end_run();
        }
    }

    /// Deliver the run gathered so far to every subscriber of its topic but its source,
    /// each in one push: one segment, one slow-consumer check, one write for the run.
    pub(super) fn end_run(&mut self) {
        if self.run.is_empty() {
            return;
        }
        let mut run = std::mem::take(&mut self.run);
        let source = self.gathering.flatten();
        // Counted once per run: an atomic add per delivery is a measurable part of it.
        let mut out = 0;
        for conn in self.hub.subscribers(run.topic()) {
            if Some(conn) == source || (!self.muted.is_empty() && self.muted.contains(&conn)) {
                continue;
            }
            let Some(idx) = self.slot_of(conn) else {
                continue;
            };
            let takes = self.conns[idx].conn.status().takes;
            let threshold = self.cfg.compression.threshold;
            let plan = run.plan(takes, &mut self.res.compressors, threshold);
            out += self.queue_planned(idx, conn, plan, run.msgs());
        }
        self.metrics.messages_out.add(out);
        run.clear();
        self.run = run;
    }

    /// Tell `topic`'s live subscribers that what followed position `after` up to `first` is
    /// gone (Redis lost it, or it fell out of the log while this node was cut off) — in the
    /// form each takes, as a resume is told: SSE an `event: gap`, a `wsloop.positions`
    /// WebSocket a `{"type":"gap",…}` message. A held long poll learns it from its batch
    /// (`"gap": true`); raw WebSockets and streams carry no such notice.
    pub(super) fn deliver_gap(&mut self, topic: &str, after: u64, first: u64) {
        let name = crate::text::json_string(topic);
        let mut sse = Vec::new();
        let note = format!(r#"{{"topic":{name},"after":{after},"resumed_at":{first}}}"#);
        crate::sse::push_event(&mut sse, after, Some("gap"), &note);
        let sse: crate::conn::SharedFrame = sse.into();
        let note =
            format!(r#"{{"type":"gap","topic":{name},"after":"{after}","resumed_at":"{first}"}}"#);
        let positioned = Published::encode(0, true, note.as_bytes()).frame;
        for conn in self.hub.subscribers(topic) {
            // A WebSocket waiting to replay is told by its replay.
            let Some(idx) = self.slot_of(conn).filter(|_| !self.muted.contains(&conn)) else {
                continue;
            };
            let frame = match self.conns[idx].conn.status().takes {
                Takes::SseEvent => sse.clone(),
                Takes::Positioned => positioned.clone(),
                _ => continue,
            };
            let e = &mut self.conns[idx];
            e.conn
                .push(&self.cfg, &mut self.res, self.now, Push::Shared(frame));
            self.mark_dirty(idx);
        }
    }

    /// Queue one published message on one subscriber, in the form it takes. Returns the
    /// messages it queued (0 or 1), for the caller to count.
    fn deliver_to(&mut self, conn: ConnId, published: &Rc<Published>) -> u64 {
        let Some(idx) = self.slot_of(conn) else {
            return 0;
        };
        let takes = self.conns[idx].conn.status().takes;
        let threshold = self.cfg.compression.threshold;
        let plan = fanout::plan(published, takes, &mut self.res.compressors, threshold);
        self.queue_planned(idx, conn, plan, std::slice::from_ref(published))
    }

    /// Queue what `plan` says of `msgs` (one topic's publishes, in order) on the subscriber
    /// in slot `idx`. Returns the messages it queued, for the caller to count.
    fn queue_planned(
        &mut self,
        idx: usize,
        conn: ConnId,
        plan: Fanout,
        msgs: &[Rc<Published>],
    ) -> u64 {
        let e = &mut self.conns[idx];
        let (cfg, now) = (&self.cfg, self.now);
        let taken = |p: Pushed| matches!(p, Pushed::Queued | Pushed::SlowClosed { .. });
        let (pushed, queued) = match plan {
            Fanout::Shared(bytes) => {
                let pushed = e.conn.push(cfg, &mut self.res, now, Push::Shared(bytes));
                (pushed, if taken(pushed) { msgs.len() as u64 } else { 0 })
            }
            Fanout::OwnCompressor => {
                // One compressed frame each: this connection's context runs through them
                // in order, up to the first it does not take or that closes it.
                let (mut pushed, mut queued) = (Pushed::Refused, 0);
                for p in msgs {
                    let (text, data) = (p.text, p.payload());
                    pushed = e
                        .conn
                        .push(cfg, &mut self.res, now, Push::Own { text, data });
                    queued += u64::from(taken(pushed));
                    if pushed != Pushed::Queued {
                        break;
                    }
                }
                (pushed, queued)
            }
            Fanout::ReleasePoll => {
                // A held long poll is answered with the batch and goes back to reading
                // requests; one that is no longer held just stops listening.
                let pushed = match self.hub.take_waiting(conn) {
                    Some((topic, after)) => {
                        let (hub, date) = (&self.hub, &self.date);
                        let mut batch = |keep_alive| {
                            http::poll_release(hub, &topic, after, msgs, date, keep_alive)
                        };
                        e.conn.push(cfg, &mut self.res, now, Push::Held(&mut batch))
                    }
                    None => Pushed::Refused,
                };
                (pushed, 0)
            }
        };
        match pushed {
            Pushed::Released => self.resume.push(idx), // pipelined requests may wait
            Pushed::SlowClosed { reason, report } => {
                log::info!(
                    "closing {conn:?} of {}: {reason}",
                    who(&self.clients, e.client, self.net.peer_addr(&e.sock))
                );
                self.metrics.slow_closes.inc();
                if let Some(code) = report {
                    self.told_closed(idx, code, reason);
                }
            }
            Pushed::Queued | Pushed::Refused => {}
        }
        self.mark_dirty(idx);
        queued
    }
}

/// Behind a trusted proxy, count the connection for the client this request names (the cap
/// applies here, before any upgrade or answer). Returns false if it was refused with 429.
fn count_client(
    client: &mut Option<ClientId>,
    clients: &Clients,
    cfg: &Config,
    req: &Request<'_>,
    out: &mut Outbox<'_>,
    metrics: &metrics::Worker,
) -> bool {
    let Some(ip) = forwarded::client_ip(req, &cfg.trust_proxy) else {
        // No untrusted client named: a request from inside the trusted network, not capped.
        if let Some(id) = client.take() {
            clients.release(id);
        }
        return true;
    };
    match clients.rebind(*client, ip) {
        Ok(id) => {
            *client = Some(id);
            true
        }
        Err(_) => {
            log::debug!("{ip} (via proxy): refused, over max_connections_per_ip");
            metrics.refused_per_ip.inc();
            out.reject(429, TOO_MANY_FROM_YOU);
            false
        }
    }
}

/// The client a connection serves, for log lines: the address it counts for, else the
/// socket peer (a trusted proxy between requests).
pub(super) fn who(
    clients: &Clients,
    client: Option<ClientId>,
    peer: Option<std::net::SocketAddr>,
) -> String {
    match client {
        Some(id) => clients.ip(id).to_string(),
        None => peer.map_or_else(|| "?".into(), |a| format!("{} (proxy)", a.ip())),
    }
}

/// The value of query parameter `name` (no percent-decoding: positions are digits).
fn query_value<'a>(req: &Request<'a>, name: &str) -> Option<&'a str> {
    req.query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// What the reactor remembers of the tokens WebSockets were admitted with, lent to `upgrade`.
struct Tokens<'a> {
    read_only: &'a mut std::collections::HashSet<ConnId>,
    refreshable: &'a mut HashMap<ConnId, crate::app::Access>,
}

/// Note when the token that let connection `idx` in expires (`exp`, seconds since the Unix
/// epoch), as a tick of the reactor's clock: `Reactor::arm` keeps the connection's timer at
/// or before it.
fn expires(at: &mut HashMap<usize, Tick>, idx: usize, exp: Option<u64>, now: Tick, unix_ms: u64) {
    if let Some(exp) = exp {
        at.insert(idx, now + exp.saturating_mul(1000).saturating_sub(unix_ms));
    }
}

/// A request target for the log: the value of a `token` parameter is replaced by `***`
/// (a token never appears in a log line).
fn loggable(target: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return target.into();
    };
    if !query.split('&').any(|kv| kv.starts_with("token=")) {
        return target.into();
    }
    let redacted: Vec<&str> = query
        .split('&')
        .map(|kv| {
            if kv.starts_with("token=") {
                "token=***"
            } else {
                kv
            }
        })
        .collect();
    format!("{path}?{}", redacted.join("&")).into()
}

/// Answer an upgrade request: route it, check the token for the route's topics, let the
/// handler decide, queue the 101 or the error. Returns the admitting token's `exp`.
#[allow(clippy::too_many_arguments)]
fn upgrade(
    router: &mut Router,
    id: ConnId,
    req: &Request<'_>,
    ws: &WsUpgrade<'_>,
    out: &mut Outbox<'_>,
    cmds: &mut Vec<Command>,
    gate: &mut Gate<'_>,
    tokens: &mut Tokens<'_>,
) -> Option<u64> {
    let Some((route, params)) = router.find(req.path) else {
        out.reject(404, "no WebSocket endpoint at this path");
        return None;
    };
    let up = Upgrade {
        req,
        ws,
        params: &params,
        identity: None,
    };
    let access = router.handler(route).access(&up);
    let admitted = match gate.check(req, access.reads.as_deref(), access.writes.as_deref()) {
        Ok(admitted) => admitted,
        Err((status, reason)) => {
            out.reject(status, reason);
            return None;
        }
    };
    let up = Upgrade {
        identity: admitted.identity.as_deref(),
        ..up
    };
    let owned = access.writes.as_deref().is_some_and(|t| router.owns(t));
    // `?since=POSITION`: replay what the topic's history holds after it (docs/protocol.md).
    let since = match query_value(req, "since") {
        None => None,
        Some(v) => match crate::text::decimal(v.as_bytes()) {
            Some(n) if access.reads.is_some() => Some(n),
            _ => {
                out.reject(400, "since must be a position (decimal digits) on a topic");
                return None;
            }
        },
    };
    match router.handler(route).on_upgrade(&up) {
        Decision::Accept { protocol } => {
            // Never answer a subprotocol the client did not offer (§4.2.2 /subprotocol/).
            let mut protocol = protocol.filter(|p| ws.protocols.contains(&p.as_str()));
            // A client that can refresh its token in-band says so with a subprotocol: on its
            // own, or as the refreshing variant of the positions one the route chose.
            let refreshing = match protocol.as_deref() {
                None => Some(auth::REFRESH_PROTOCOL),
                Some(POSITIONS_PROTOCOL) => Some(POSITIONS_REFRESH_PROTOCOL),
                Some(_) => None,
            }
            .filter(|p| admitted.exp.is_some() && ws.protocols.contains(p));
            if let Some(p) = refreshing {
                protocol = Some(p.to_string());
                tokens.refreshable.insert(id, access.clone());
            }
            out.accept(ws, route, protocol.as_deref());
            if access.writes.is_some() && (owned || !admitted.may_write) {
                tokens.read_only.insert(id);
            }
            router
                .handler(route)
                .on_open(&mut Ctx::new(id, out, cmds), &up);
            if let (Some(after), Some(topic)) = (since, access.reads.clone()) {
                cmds.push(Command::Resume(Resume {
                    conn: id,
                    topic,
                    after,
                    kind: ResumeKind::WebSocket,
                    origin: None,
                }));
            }
        }
        Decision::Reject { status, reason } => out.reject(status, reason),
    }
    admitted.exp
}
