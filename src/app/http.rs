//! Owns the plain-HTTP endpoints that share the WebSocket port and its topics: the demo page,
//! Server-Sent Events (`/sse/{topic}`), HTTP streaming (`/stream/{topic}`), long and short
//! polling (`/poll/{topic}`), publishing (`POST /publish/{topic}`), `/healthz`, `/metrics`,
//! and CORS. Layer L3: it decides and formats; the connection's outbox queues the bytes and
//! the reactor delivers later publishes.
//! Must not: write to a socket, block, or hold a request's bytes beyond the outbox; a refused
//! request always gets a status, never silence.

use super::{Command, ConnId, Resume, ResumeKind, Router};
use crate::auth::{Gate, Right};
use crate::config::Config;
use crate::conn::{Mode, Outbox};
use crate::http::request::Request;
use crate::http::response;
use crate::longpoll;
use crate::pubsub::{Hub, Published};
use crate::sse;
use crate::text::decimal;

/// What the endpoints need from the reactor.
pub struct HttpEnv<'e> {
    pub router: &'e Router,
    pub hub: &'e mut Hub,
    pub cfg: &'e Config,
    pub cmds: &'e mut Vec<Command>,
    /// The current `Date` header value.
    pub date: &'e str,
    /// Prometheus text for `/metrics`.
    pub metrics: &'e dyn Fn() -> String,
    /// `--redis` is set and its link is not up: a publish could not reach the other nodes.
    pub broker_down: bool,
    /// `--redis` is set: positions are Redis's, and a topic's log can be read back from it.
    pub sequenced: bool,
    /// Who may read and write which topic (`--token-…`).
    pub gate: &'e mut Gate<'e>,
    /// Set by `answer`: the `exp` of the token a stream opened with (it ends then).
    pub granted_until: Option<u64>,
}

const INDEX_HTML: &str = include_str!("../../web/index.html");
const DEMO_JS: &str = include_str!("../../web/demo.js");
/// The browser client (clients/js), served so a page needs no build step.
const CLIENT_JS: &str = include_str!("../../clients/js/wsloop.js");

/// Answer one plain HTTP request.
pub fn answer(
    env: &mut HttpEnv<'_>,
    id: ConnId,
    req: &Request<'_>,
    body: &[u8],
    out: &mut Outbox<'_>,
) {
    let keep_alive = keep_alive(req);
    let head_only = req.method == "HEAD";
    let cors = cors_origin(env.cfg, req);
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(origin) = cors.as_deref() {
        headers.push(("Access-Control-Allow-Origin", origin));
        headers.push(("Vary", "Origin"));
    }
    let (endpoint, topic) = split_endpoint(req.path);
    let allowed = match endpoint {
        "/" | "/index.html" | "/demo.js" | "/wsloop.js" | "/healthz" | "/metrics" | "sse"
        | "stream" | "poll" => "GET, HEAD",
        "publish" => "POST",
        _ => "",
    };
    let respond = |out: &mut Outbox<'_>, status: u16, hs: &[(&str, &str)], body: &[u8]| {
        let mut all = headers.clone();
        all.extend_from_slice(hs);
        out.respond(
            &response::full(status, &all, body, env.date, keep_alive, head_only),
            keep_alive,
        );
    };
    if req.method == "OPTIONS" && !allowed.is_empty() {
        // A CORS preflight (Fetch standard §3.2): what a cross-origin page may send.
        let hs = [
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            (
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type, Last-Event-ID",
            ),
            ("Access-Control-Max-Age", "600"),
            ("Allow", "GET, HEAD, POST, OPTIONS"),
        ];
        return respond(out, 204, &hs, b"");
    }
    let method_ok = allowed.split(", ").any(|m| m == req.method);
    if !allowed.is_empty() && !method_ok {
        return respond(out, 405, &[("Allow", allowed)], b"method not allowed\n");
    }
    if topic.is_some_and(|t| env.hub.check_name(t).is_err()) {
        return respond(out, 400, &[], b"topic names are 1 to 255 bytes\n");
    }
    if matches!(endpoint, "sse" | "stream" | "poll") {
        if let Some(why) = bad_position(req) {
            return respond(out, 400, &[], format!("{why}\n").as_bytes());
        }
    }
    // Who may do this, before anything opens (RFC 6750: 401 with the challenge, 403).
    if let (Some(topic), Some(right)) = (topic, right_for(endpoint)) {
        if right == Right::Publish && env.router.owns(topic) {
            let why = b"this topic is published by the server only\n";
            return respond(out, 403, &[], why);
        }
        match env.gate.allows(req, right, topic) {
            Ok(exp) => env.granted_until = exp,
            Err((status, why)) => {
                let challenge = [("WWW-Authenticate", "Bearer error=\"invalid_token\"")];
                let hs: &[(&str, &str)] = if status == 401 { &challenge } else { &[] };
                return respond(out, status, hs, format!("{why}\n").as_bytes());
            }
        }
    }
    match (endpoint, topic) {
        ("/" | "/index.html", _) => respond(
            out,
            200,
            &[("Content-Type", "text/html; charset=utf-8")],
            INDEX_HTML.as_bytes(),
        ),
        ("/demo.js", _) => respond(
            out,
            200,
            &[("Content-Type", "text/javascript; charset=utf-8")],
            DEMO_JS.as_bytes(),
        ),
        ("/wsloop.js", _) => respond(
            out,
            200,
            &[("Content-Type", "text/javascript; charset=utf-8")],
            CLIENT_JS.as_bytes(),
        ),
        ("/healthz", _) => respond(out, 200, &[("Content-Type", "text/plain")], b"ok\n"),
        ("/metrics", _) => {
            let text = (env.metrics)();
            respond(
                out,
                200,
                &[("Content-Type", "text/plain; version=0.0.4")],
                text.as_bytes(),
            )
        }
        ("sse", Some(topic)) => sse_start(env, id, req, topic, &headers, out),
        ("stream", Some(topic)) => stream_start(env, id, req, topic, &headers, out),
        ("poll", Some(topic)) => {
            let (status, body) = poll_start(env, id, req, topic, out);
            if let Some(body) = body {
                respond(
                    out,
                    status,
                    &[
                        ("Content-Type", "application/json"),
                        ("Cache-Control", "no-store"),
                    ],
                    body.as_bytes(),
                )
            }
        }
        ("publish", Some(topic)) => {
            let binary = req
                .header("content-type")
                .is_some_and(|v| v.starts_with(b"application/octet-stream"));
            if !binary && std::str::from_utf8(body).is_err() {
                return respond(
                    out,
                    400,
                    &[],
                    b"text bodies must be UTF-8 (or send application/octet-stream)\n",
                );
            }
            // Not acknowledged unless it can reach every node: while the link to Redis is not
            // up, the message would be dropped on its way (RFC 9110 §15.6.4: 503, and when to
            // try again).
            if env.broker_down {
                return respond(
                    out,
                    503,
                    &[("Retry-After", "1")],
                    b"the message broker (Redis) is unreachable: not published\n",
                );
            }
            // One message limit whatever the transport: a WebSocket message over it is closed
            // with 1009, a publish over it refused the same way (RFC 9110 §15.5.14).
            if body.len() > env.cfg.ws.max_message_size as usize {
                let why = format!(
                    "a message is at most {} bytes (--max-message-size)\n",
                    env.cfg.ws.max_message_size
                );
                return respond(out, 413, &[], why.as_bytes());
            }
            // A new topic the hub has no room for: refuse now, the publish would be dropped.
            if let Err(e) = env.hub.check_room(topic, body.len()) {
                return respond(out, e.status(), &[], format!("{e}\n").as_bytes());
            }
            // Acknowledged with its position: with other nodes behind Redis once Redis has
            // it, alone once it is published here — the reactor answers the held request
            // (`publish_answer`) when it knows the number.
            env.cmds.push(Command::PublishForAck {
                conn: id,
                topic: topic.to_string(),
                text: !binary,
                payload: body.to_vec(),
                origin: cors.clone(),
            });
            out.hold_for_ack(keep_alive)
        }
        // A WebSocket endpoint asked for something else: refused like any failed handshake,
        // with `Connection: close` (docs/protocol.md §2). An `Upgrade` to another protocol
        // (h2c, say) is a malformed WebSocket request (400); none at all needs one (426, with
        // `Upgrade: websocket` and `Sec-WebSocket-Version: 13`).
        _ if env.router.find(req.path).is_some() => match req.header("upgrade") {
            Some(_) => out.reject(400, "Upgrade header must contain websocket"),
            None => out.reject(426, "this endpoint speaks WebSocket"),
        },
        _ => respond(out, 404, &[("Content-Type", "text/plain")], b"not found\n"),
    }
}

/// `/sse/x` → ("sse", Some("x")); other paths → (path, None).
fn split_endpoint(path: &str) -> (&str, Option<&str>) {
    for prefix in ["sse", "stream", "poll", "publish"] {
        if let Some(rest) = path.strip_prefix('/').and_then(|p| p.strip_prefix(prefix)) {
            if let Some(topic) = rest.strip_prefix('/') {
                return (prefix, Some(topic));
            }
        }
    }
    (path, None)
}

/// HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0 closes unless
/// `Connection: keep-alive` (RFC 9112 §9.3).
fn keep_alive(req: &Request<'_>) -> bool {
    let has = |token: &str| {
        req.headers_named("connection").any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if req.version == 0 {
        has("keep-alive")
    } else {
        !has("close")
    }
}

/// The `Access-Control-Allow-Origin` value for this request, if CORS allows it.
fn cors_origin(cfg: &Config, req: &Request<'_>) -> Option<String> {
    let origin = std::str::from_utf8(req.header("origin")?).ok()?;
    if cfg.cors_origins.iter().any(|o| o == "*") {
        return Some("*".into());
    }
    cfg.cors_origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin))
        .then(|| origin.to_string())
}

/// A query parameter (no percent-decoding: the values used here are numbers).
fn query<'a>(req: &Request<'a>, name: &str) -> Option<&'a str> {
    req.query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// What an endpoint does to its topic.
fn right_for(endpoint: &str) -> Option<Right> {
    match endpoint {
        "sse" | "stream" | "poll" => Some(Right::Subscribe),
        "publish" => Some(Right::Publish),
        _ => None,
    }
}

/// A position a client sent (`after`, `lastEventId`, `Last-Event-ID`), checked by
/// `bad_position` first: decimal digits only.
fn num(v: Option<&str>) -> Option<u64> {
    v.and_then(|v| decimal(v.as_bytes()))
}

/// Why the positions and the `wait` choice a request carries cannot be read, if they cannot:
/// a malformed value is refused (400), never taken as absent. `after` and `lastEventId` (and
/// the `Last-Event-ID` header; empty means none, as EventSource sends it) are decimal
/// sequence numbers; `wait` is `0` (answer at once) or `1` (hold: the default).
fn bad_position(req: &Request<'_>) -> Option<&'static str> {
    let decimal_or_absent = |v: Option<&[u8]>| v.is_none_or(|v| decimal(v).is_some());
    if !decimal_or_absent(query(req, "after").map(str::as_bytes)) {
        return Some("after must be a sequence number (decimal digits)");
    }
    if !decimal_or_absent(query(req, "lastEventId").map(str::as_bytes)) {
        return Some("lastEventId must be a sequence number (decimal digits)");
    }
    let header = req.header("last-event-id").map(<[u8]>::trim_ascii);
    if !decimal_or_absent(header.filter(|v| !v.is_empty())) {
        return Some("Last-Event-ID must be a sequence number (decimal digits)");
    }
    if !matches!(query(req, "wait"), None | Some("0" | "1")) {
        return Some("wait must be 0 (answer at once) or 1 (hold until a message)");
    }
    None
}

/// `GET /sse/{topic}`: a `text/event-stream` that replays what the client missed (after
/// `Last-Event-ID`, header or `?lastEventId=`) and then carries every new message.
fn sse_start(
    env: &mut HttpEnv<'_>,
    id: ConnId,
    req: &Request<'_>,
    topic: &str,
    cors: &[(&str, &str)],
    out: &mut Outbox<'_>,
) {
    if env.cfg.topics_must_exist && !env.hub.exists(topic) {
        // 204 tells EventSource to stop reconnecting (WHATWG HTML §9.2.3).
        let r = response::full(204, cors, b"", env.date, keep_alive(req), false);
        return out.respond(&r, keep_alive(req));
    }
    let last = req
        .header("last-event-id")
        .map(<[u8]>::trim_ascii)
        .filter(|v| !v.is_empty())
        .and_then(|v| std::str::from_utf8(v).ok());
    let last = num(last.or_else(|| query(req, "lastEventId")));
    let hello = query(req, "hello") == Some("1");
    if last.is_some_and(|after| must_read_log(env, topic, after)) {
        let kind = ResumeKind::Sse { hello };
        return hold_resume(env, id, req, topic, last.unwrap_or(0), kind, out);
    }
    let head = SseHead {
        last,
        cors,
        date: env.date,
        retry_ms: env.cfg.sse_retry.as_millis(),
        hello,
    }
    .render(env.hub, topic);
    open_stream(env, id, req, topic, Mode::Sse, &head, out);
}

/// The head of an SSE response and what it replays.
pub struct SseHead<'a> {
    /// The client's `Last-Event-ID`: the events after it in the history are replayed,
    /// behind a `gap` event if some are gone.
    pub last: Option<u64>,
    pub cors: &'a [(&'a str, &'a str)],
    pub date: &'a str,
    pub retry_ms: u128,
    /// `?hello=1`: an `event: hello` first (no `id:`, so `Last-Event-ID` is untouched), so a
    /// client can tell a stream that works from one a buffering proxy holds back.
    pub hello: bool,
}

impl SseHead<'_> {
    pub fn render(&self, hub: &Hub, topic: &str) -> Vec<u8> {
        let hs = stream_headers(self.cors, "text/event-stream");
        let mut head = response::stream_head(200, &hs, self.date, false);
        sse::push_retry(&mut head, self.retry_ms as u64);
        if self.hello {
            let name = crate::text::json_string(topic);
            head.extend_from_slice(
                format!("event: hello\ndata: {{\"topic\":{name}}}\n\n").as_bytes(),
            );
        }
        sse_replay(&mut head, hub, topic, self.last);
        head
    }
}

/// The events after `last` in the history, behind a `gap` event if some are gone.
fn sse_replay(head: &mut Vec<u8>, hub: &Hub, topic: &str, last: Option<u64>) {
    if let Some(last) = last {
        let (missed, gap) = hub.history_after(topic, last);
        if gap {
            let first = missed.first().map_or(hub.last_seq(topic) + 1, |p| p.seq);
            let note = format!(
                r#"{{"topic":{},"after":{last},"resumed_at":{first}}}"#,
                crate::text::json_string(topic)
            );
            sse::push_event(head, last, Some("gap"), &note);
        }
        for p in missed {
            head.extend_from_slice(&p.sse_event());
        }
    }
}

/// The head of a streaming response on `topic`, with the chunks after `after` it replays.
pub fn stream_resume_head(
    hub: &Hub,
    topic: &str,
    after: Option<u64>,
    cors: &[(&str, &str)],
    date: &str,
) -> Vec<u8> {
    let hs = stream_headers(cors, "text/plain; charset=utf-8");
    let mut head = response::stream_head(200, &hs, date, true);
    if let Some(after) = after {
        for p in hub.history_after(topic, after).0 {
            head.extend_from_slice(&p.stream_chunk());
        }
    }
    head
}

/// With `--redis`, may this node answer a resume from `after` out of its own history? Not
/// when no one here follows the topic (what it kept may be stale), when the client has seen
/// further than this node (it follows the topic only since recently), or when the history
/// does not reach back to `after`: then the topic's log is read back from Redis first.
fn must_read_log(env: &HttpEnv<'_>, topic: &str, after: u64) -> bool {
    env.sequenced
        && (env.hub.subscriber_count(topic) == 0
            || after > env.hub.last_seq(topic)
            || env.hub.history_after(topic, after).1)
}

/// Hold a resume until the topic's log has been read back (`Command::Resume`): subscribed
/// now, so nothing published meanwhile is missed (it lands in the history the answer is
/// built from).
fn hold_resume(
    env: &mut HttpEnv<'_>,
    id: ConnId,
    req: &Request<'_>,
    topic: &str,
    after: u64,
    kind: ResumeKind,
    out: &mut Outbox<'_>,
) {
    if !subscribe_or_refuse(env, id, req, topic, out) {
        return;
    }
    env.cmds.push(Command::Resume(Resume {
        conn: id,
        topic: topic.to_string(),
        after,
        kind,
        origin: cors_origin(env.cfg, req),
    }));
    out.hold(keep_alive(req));
}

/// `GET /stream/{topic}`: a chunked response, one chunk per message (the XHR `readyState 3`
/// technique); `?after=N` replays from the history first.
fn stream_start(
    env: &mut HttpEnv<'_>,
    id: ConnId,
    req: &Request<'_>,
    topic: &str,
    cors: &[(&str, &str)],
    out: &mut Outbox<'_>,
) {
    if env.cfg.topics_must_exist && !env.hub.exists(topic) {
        let r = response::full(
            404,
            cors,
            b"no such topic\n",
            env.date,
            keep_alive(req),
            false,
        );
        return out.respond(&r, keep_alive(req));
    }
    let after = num(query(req, "after"));
    if after.is_some_and(|a| must_read_log(env, topic, a)) {
        let after = after.unwrap_or(0);
        return hold_resume(env, id, req, topic, after, ResumeKind::Stream, out);
    }
    let head = stream_resume_head(env.hub, topic, after, cors, env.date);
    open_stream(env, id, req, topic, Mode::Stream, &head, out);
}

/// The headers of a streaming response: CORS, then `content_type`, no caching, and no proxy
/// buffering (nginx honours `X-Accel-Buffering`).
fn stream_headers<'h>(
    cors: &[(&'h str, &'h str)],
    content_type: &'h str,
) -> Vec<(&'h str, &'h str)> {
    let mut hs = cors.to_vec();
    hs.extend([
        ("Content-Type", content_type),
        ("Cache-Control", "no-store"),
        ("X-Accel-Buffering", "no"),
    ]);
    hs
}

/// Subscribe, then start the stream with `head`. A subscription the hub would refuse is
/// answered with its status instead (not a stream that never delivers); an accepted one is a
/// `Command::Subscribe` like a WebSocket handler's, applied right after this request, before
/// the next is read.
#[allow(clippy::too_many_arguments)]
fn open_stream(
    env: &mut HttpEnv<'_>,
    id: ConnId,
    req: &Request<'_>,
    topic: &str,
    mode: Mode,
    head: &[u8],
    out: &mut Outbox<'_>,
) {
    if subscribe_or_refuse(env, id, req, topic, out) {
        out.start_stream(mode, head)
    }
}

/// Subscribe the request's connection to `topic` (a `Command::Subscribe`), or answer the
/// hub's refusal with its status: false then.
fn subscribe_or_refuse(
    env: &mut HttpEnv<'_>,
    id: ConnId,
    req: &Request<'_>,
    topic: &str,
    out: &mut Outbox<'_>,
) -> bool {
    match env.hub.check_subscribe(id, topic) {
        Ok(()) => {
            subscribe(env, id, topic);
            true
        }
        Err(e) => {
            let body = format!("{e}\n");
            let (status, ka) = (e.status(), keep_alive(req));
            let r = response::full(status, &[], body.as_bytes(), env.date, ka, false);
            out.respond(&r, ka);
            false
        }
    }
}

/// `GET /poll/{topic}?after=N[&wait=0]`: every message after `N` at once if there are any;
/// otherwise (long poll) hold the request until one arrives or `--poll-hold` passes (then
/// 204), or (short poll, `wait=0`) answer an empty batch now. Without `after`, only messages
/// published from now on count. Returns the status and body to send now, or no body when
/// the request is held.
fn poll_start(
    env: &mut HttpEnv<'_>,
    id: ConnId,
    req: &Request<'_>,
    topic: &str,
    out: &mut Outbox<'_>,
) -> (u16, Option<String>) {
    if env.cfg.topics_must_exist && !env.hub.exists(topic) {
        return (404, Some(r#"{"error":"no such topic"}"#.into()));
    }
    let asked = num(query(req, "after"));
    let after = asked.unwrap_or_else(|| env.hub.last_seq(topic));
    let wait = query(req, "wait") != Some("0");
    if asked.is_some_and(|a| must_read_log(env, topic, a)) {
        hold_resume(env, id, req, topic, after, ResumeKind::Poll { wait }, out);
        return (200, None);
    }
    let (msgs, gap) = env.hub.history_after(topic, after);
    if !msgs.is_empty() || gap || !wait {
        return (200, Some(batch(env.hub, topic, &msgs, gap)));
    }
    // A subscription the hub would refuse is answered, not held.
    if let Err(e) = env.hub.check_subscribe(id, topic) {
        let error = crate::text::json_string(&e.to_string());
        return (e.status(), Some(format!("{{\"error\":{error}}}")));
    }
    subscribe(env, id, topic);
    env.hub.wait(id, topic, after);
    out.hold(keep_alive(req));
    (200, None)
}

/// The answer to `POST /publish/{topic}`: 202 with the topic once the message is published
/// (and, with `--redis`, Redis has it), or 503 with `Retry-After` when it could not be.
pub fn publish_answer(
    topic: &str,
    ok: Result<Option<u64>, ()>,
    origin: Option<&str>,
    date: &str,
    keep_alive: bool,
) -> Vec<u8> {
    let mut hs = Vec::new();
    if let Some(origin) = origin {
        hs.extend([("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]);
    }
    if let Ok(position) = ok {
        hs.push(("Content-Type", "application/json"));
        let topic = crate::text::json_string(topic);
        let body = match position {
            Some(p) => format!("{{\"topic\":{topic},\"position\":\"{p}\"}}"),
            None => format!("{{\"topic\":{topic}}}"),
        };
        response::full(202, &hs, body.as_bytes(), date, keep_alive, false)
    } else {
        hs.extend([("Retry-After", "1"), ("Content-Type", "text/plain")]);
        // Alone, the hub had no room for the topic; with `--redis`, Redis did not take it
        // (or, with `--redis-wait-replicas`, too few replicas have it to promise it).
        let body = b"not published: no room for the topic, or the message broker did not take it\n";
        response::full(503, &hs, body, date, keep_alive, false)
    }
}

/// Subscribe the way every transport does: a command, applied after this request (one path
/// for all of them, `Reactor::apply_commands`).
fn subscribe(env: &mut HttpEnv<'_>, id: ConnId, topic: &str) {
    env.cmds.push(Command::Subscribe {
        conn: id,
        topic: topic.to_string(),
    });
}

/// The JSON batch of `msgs`.
pub fn batch(hub: &Hub, topic: &str, msgs: &[std::rc::Rc<Published>], gap: bool) -> String {
    let items = msgs.iter().map(|p| longpoll::Item {
        seq: p.seq,
        text: p.text,
        payload: p.payload(),
    });
    longpoll::batch(topic, hub.last_seq(topic), gap, items)
}

/// The response that completes a held poll when `published` (one topic's publishes in a
/// row) arrive.
pub fn poll_release(
    hub: &Hub,
    topic: &str,
    after: u64,
    published: &[std::rc::Rc<Published>],
    date: &str,
    keep_alive: bool,
) -> Vec<u8> {
    let (mut msgs, gap) = hub.history_after(topic, after);
    if msgs.is_empty() {
        msgs.extend_from_slice(published); // a topic without history still delivers them
    }
    let body = batch(hub, topic, &msgs, gap);
    let hs = [
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
    ];
    response::full(200, &hs, body.as_bytes(), date, keep_alive, false)
}
