//! Owns the application API: the `Handler` trait users implement, the `Ctx` through which a
//! handler acts, and the `Router` that mounts handlers on path patterns. Layer L3: no sockets,
//! no clock. A handler's sends land in its own connection's outbox at once; what reaches
//! other connections (publish, subscribe) is recorded as a `Command` and applied by the
//! reactor after the handler returns.
//! Must not: let a handler touch another connection directly or see a socket; handlers act only
//! through `Ctx`.

mod bye;
mod chat;
mod clock;
mod echo;
pub mod http;
mod topic;

pub use chat::Chat;
pub use clock::Clock;
pub use echo::Echo;
pub use topic::TopicApp;

use std::time::Duration;

use crate::conn::Outbox;
use crate::http::request::Request;
use crate::http::upgrade::WsUpgrade;
use crate::ws::Message;

pub use crate::conn::ConnId;

/// A handler's answer to an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accept, optionally choosing one of the subprotocols the client offered.
    Accept { protocol: Option<String> },
    /// Refuse with an HTTP status (e.g. 403) and a short reason for the body.
    Reject { status: u16, reason: &'static str },
}

/// What a handler recorded for the reactor to apply after it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Subscribe {
        conn: ConnId,
        topic: String,
    },
    Unsubscribe {
        conn: ConnId,
        topic: String,
    },
    /// Publish to every subscriber of `topic` (on every worker), encoded once; `from`: the
    /// WebSocket whose message it is, if any (told with close 1013 when the broker cannot
    /// take it).
    Publish {
        topic: String,
        text: bool,
        payload: Vec<u8>,
        from: Option<ConnId>,
    },
    /// `Publish`, for a publisher (`conn`, a held `POST /publish`) answered once the
    /// broker has the message (202) or cannot take it (503); `origin` is its CORS origin.
    PublishForAck {
        conn: ConnId,
        topic: String,
        text: bool,
        payload: Vec<u8>,
        origin: Option<String>,
    },
    /// A resume (`conn`, held) from a position this node's history cannot vouch for, with
    /// `--redis`: answered once the topic's log has been read back from Redis.
    Resume(Resume),
}

/// A held resume request: who, on what topic, after which position, by which transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub conn: ConnId,
    pub topic: String,
    pub after: u64,
    pub kind: ResumeKind,
    /// The CORS origin to answer with, if any.
    pub origin: Option<String>,
}

/// How a held resume is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeKind {
    /// An SSE stream (`Last-Event-ID`); `hello`: it asked for the `hello` event.
    Sse { hello: bool },
    /// A streaming response (`after=`).
    Stream,
    /// A poll (`after=`); `wait`: hold on as a long poll when nothing is there.
    Poll { wait: bool },
    /// An open WebSocket (`?since=`): what it missed is sent before anything live.
    WebSocket,
}

/// A matched route: the request, its WebSocket headers and the path parameters.
pub struct Upgrade<'r, 'a> {
    pub req: &'r Request<'a>,
    pub ws: &'r WsUpgrade<'a>,
    pub params: &'r Params<'a>,
    /// The verified access token the client brought (`sub`, its other claims), if any.
    /// None in `Handler::access`, which is asked before the token is checked.
    pub identity: Option<&'r crate::auth::Grant>,
}

/// Path parameters captured by `{name}` segments of a route pattern.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params<'a> {
    pairs: Vec<(&'static str, &'a str)>,
}

impl<'a> Params<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

/// What a handler may do while handling an event.
pub struct Ctx<'o, 'a> {
    id: Option<ConnId>,
    out: Option<&'o mut Outbox<'a>>,
    cmds: &'o mut Vec<Command>,
    unix_ms: Option<u64>,
}

impl<'o, 'a> Ctx<'o, 'a> {
    /// A context for a connection's event.
    pub fn new(id: ConnId, out: &'o mut Outbox<'a>, cmds: &'o mut Vec<Command>) -> Self {
        Ctx {
            id: Some(id),
            out: Some(out),
            cmds,
            unix_ms: None,
        }
    }

    /// A context with no connection of its own (a tick, or a connection already closed):
    /// `send` and `close` do nothing; `publish` works.
    pub fn detached(id: Option<ConnId>, cmds: &'o mut Vec<Command>) -> Self {
        Ctx {
            id,
            out: None,
            cmds,
            unix_ms: None,
        }
    }

    /// A context for a tick at wall-clock time `unix_ms` (the reactor reads the clock).
    pub fn tick(unix_ms: u64, cmds: &'o mut Vec<Command>) -> Self {
        Ctx {
            id: None,
            out: None,
            cmds,
            unix_ms: Some(unix_ms),
        }
    }

    /// Wall-clock time of a tick, in milliseconds since the Unix epoch.
    pub fn unix_ms(&self) -> Option<u64> {
        self.unix_ms
    }

    /// The connection this event is about (None for ticks).
    pub fn id(&self) -> Option<ConnId> {
        self.id
    }

    /// Queue a message to this connection (false if there is none or it is not open).
    pub fn send(&mut self, msg: Message<'_>) -> bool {
        self.out.as_mut().is_some_and(|o| o.send(msg))
    }

    pub fn send_text(&mut self, text: &str) -> bool {
        self.send(Message::Text(text))
    }

    pub fn send_binary(&mut self, data: &[u8]) -> bool {
        self.send(Message::Binary(data))
    }

    /// Start the closing handshake with `code` (1000, or 3000–4999 for applications).
    pub fn close(&mut self, code: u16, reason: &str) {
        if let Some(o) = self.out.as_mut() {
            o.close(code, reason);
        }
    }

    /// Bytes queued to this connection and not yet written.
    pub fn queued(&self) -> usize {
        self.out.as_ref().map_or(0, |o| o.queued())
    }

    /// Subscribe this connection to `topic` (applied after the handler returns).
    pub fn subscribe(&mut self, topic: &str) {
        if let Some(conn) = self.id {
            self.cmds.push(Command::Subscribe {
                conn,
                topic: topic.to_string(),
            });
        }
    }

    pub fn unsubscribe(&mut self, topic: &str) {
        if let Some(conn) = self.id {
            self.cmds.push(Command::Unsubscribe {
                conn,
                topic: topic.to_string(),
            });
        }
    }

    /// Publish a message to every subscriber of `topic`, this connection included if it
    /// subscribes.
    pub fn publish(&mut self, topic: &str, msg: Message<'_>) {
        self.cmds.push(Command::Publish {
            topic: topic.to_string(),
            text: msg.is_text(),
            payload: msg.as_bytes().to_vec(),
            from: self.id,
        });
    }
}

/// A WebSocket application. One value serves every connection on its route; per-connection
/// state lives in the handler, keyed by `ConnId`.
pub trait Handler {
    /// Decide on an upgrade request before the 101 is sent. Default: accept, no subprotocol.
    fn on_upgrade(&mut self, up: &Upgrade<'_, '_>) -> Decision {
        let _ = up;
        Decision::Accept { protocol: None }
    }

    /// The WebSocket is open (the 101 is queued): the request and path parameters are
    /// still at hand.
    fn on_open(&mut self, ctx: &mut Ctx<'_, '_>, up: &Upgrade<'_, '_>) {
        let _ = (ctx, up);
    }

    /// A complete message arrived. `msg` borrows the connection's buffers: copy what must
    /// outlive the call.
    fn on_message(&mut self, ctx: &mut Ctx<'_, '_>, msg: Message<'_>);

    /// The connection is finished: the peer's code (1005 none sent, 1006 dropped without a
    /// close frame) or the code the server closed it with. Called once; `ctx` can publish but
    /// not send.
    fn on_close(&mut self, ctx: &mut Ctx<'_, '_>, code: u16, reason: &str) {
        let _ = (ctx, code, reason);
    }

    /// How often `on_tick` runs (one timer per handler, not per connection). Default: never.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// A tick: `ctx` is detached (no connection), for publishing.
    fn on_tick(&mut self, ctx: &mut Ctx<'_, '_>) {
        let _ = ctx;
    }

    /// The topics a connection on this route reads and writes, for the access check before
    /// the upgrade (`--token-…`: reading needs the token's `subscribe`, writing its
    /// `publish`). Default: none, so the route needs no token.
    fn access(&self, up: &Upgrade<'_, '_>) -> Access {
        let _ = up;
        Access::default()
    }

    /// Topics only this handler publishes into (the clock's ticks): nobody else may, token
    /// or not — `POST /publish` gets 403 and a WebSocket that writes them is read-only.
    fn owned_topics(&self) -> &[&str] {
        &[]
    }
}

/// The topics one connection reads and writes (`Handler::access`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub reads: Option<String>,
    pub writes: Option<String>,
}

/// Index of a mounted handler.
pub type RouteId = u16;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(&'static str),
}

/// Handlers mounted on path patterns (`/echo`, `/chat/{room}`); several patterns may share a
/// handler. Patterns are tried in mounting order.
#[derive(Default)]
pub struct Router {
    patterns: Vec<(Vec<Seg>, RouteId)>,
    handlers: Vec<Box<dyn Handler>>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Mount `handler` at `pattern`: literal segments and `{name}` parameters, e.g.
    /// "/chat/{room}". A parameter matches one non-empty segment.
    pub fn mount(mut self, pattern: &'static str, handler: impl Handler + 'static) -> Router {
        let id = self.handlers.len() as RouteId;
        self.handlers.push(Box::new(handler));
        self.patterns.push((parse_pattern(pattern), id));
        self
    }

    /// Serve `pattern` with the handler already mounted at `target` (no-op if none is).
    pub fn alias(mut self, pattern: &'static str, target: &'static str) -> Router {
        let target = parse_pattern(target);
        if let Some(&(_, id)) = self.patterns.iter().find(|(p, _)| *p == target) {
            self.patterns.push((parse_pattern(pattern), id));
        }
        self
    }

    /// The handler for a request path (query already stripped) and its parameters.
    pub fn find<'a>(&self, path: &'a str) -> Option<(RouteId, Params<'a>)> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        'patterns: for (pattern, id) in &self.patterns {
            if pattern.len() != segs.len() {
                continue;
            }
            let mut params = Params::default();
            for (p, s) in pattern.iter().zip(&segs) {
                match p {
                    Seg::Lit(l) if l == s => {}
                    Seg::Param(name) if !s.is_empty() => params.pairs.push((name, s)),
                    _ => continue 'patterns,
                }
            }
            return Some((*id, params));
        }
        None
    }

    pub fn handler(&mut self, id: RouteId) -> &mut dyn Handler {
        self.handlers[id as usize].as_mut()
    }

    /// Every mounted handler with its tick interval, for the reactor's timers.
    /// How many handlers are mounted (route ids are below it).
    pub fn routes(&self) -> usize {
        self.handlers.len()
    }

    /// Does a mounted handler own `topic` (`Handler::owned_topics`)?
    pub fn owns(&self, topic: &str) -> bool {
        self.handlers
            .iter()
            .any(|h| h.owned_topics().contains(&topic))
    }

    pub fn tick_intervals(&self) -> Vec<(RouteId, Duration)> {
        let ticking = self.handlers.iter().enumerate();
        ticking
            .filter_map(|(i, h)| Some((i as RouteId, h.tick_interval()?)))
            .collect()
    }
}

fn parse_pattern(pattern: &'static str) -> Vec<Seg> {
    pattern
        .trim_start_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Seg::Param(name),
                None => Seg::Lit(s.to_string()),
            },
        )
        .collect()
}

/// The demo server's routes: echo on `/echo` and `/`, chat rooms, the clock, generic topics.
pub fn default_routes(subprotocols: Vec<String>) -> Router {
    Router::new()
        .mount("/echo", Echo { subprotocols })
        .alias("/", "/echo")
        .mount("/chat/{room}", Chat::default())
        .mount("/clock", Clock)
        .mount("/topic/{name}", TopicApp::default())
        .mount("/bye", bye::Bye)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl Handler for Nop {
        fn on_message(&mut self, _: &mut Ctx<'_, '_>, _: Message<'_>) {}
    }

    #[test]
    fn patterns_match_segments_and_capture_params() {
        let r = Router::new()
            .mount("/echo", Nop)
            .alias("/", "/echo")
            .mount("/chat/{room}", Nop)
            .mount("/a/{x}/b/{y}", Nop);
        assert_eq!(r.find("/echo").map(|m| m.0), Some(0));
        assert_eq!(r.find("/").map(|m| m.0), Some(0));
        let (id, p) = r.find("/chat/lobby").unwrap();
        assert_eq!((id, p.get("room")), (1, Some("lobby")));
        let (_, p) = r.find("/a/1/b/2").unwrap();
        assert_eq!((p.get("x"), p.get("y")), (Some("1"), Some("2")));
        assert!(r.find("/chat/").is_none(), "a parameter is never empty");
        assert!(r.find("/chat/a/b").is_none());
        assert!(r.find("/nope").is_none());
    }
}
