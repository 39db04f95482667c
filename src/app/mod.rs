//! Owns the application API: the `Handler` trait users implement, the `Ctx` through which a
//! handler acts on its connection, and the `Router` that mounts handlers on paths. Layer L3:
//! no sockets, no clock; a handler's actions land in its connection's outbox and the reactor
//! performs the I/O.

mod echo;

pub use echo::Echo;

use crate::conn::Outbox;
use crate::http::request::Request;
use crate::http::upgrade::WsUpgrade;
use crate::ws::Message;

/// Identifies a connection for the life of the server (slab index and generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// A handler's answer to an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accept, optionally choosing one of the subprotocols the client offered.
    Accept { protocol: Option<String> },
    /// Refuse with an HTTP status (e.g. 403) and a short reason for the body.
    Reject { status: u16, reason: &'static str },
}

/// What a handler may do to its connection while handling an event.
pub struct Ctx<'o, 'a> {
    id: ConnId,
    out: &'o mut Outbox<'a>,
}

impl<'o, 'a> Ctx<'o, 'a> {
    pub fn new(id: ConnId, out: &'o mut Outbox<'a>) -> Ctx<'o, 'a> {
        Ctx { id, out }
    }

    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Queue a message to this connection (false if it is no longer open).
    pub fn send(&mut self, msg: Message<'_>) -> bool {
        self.out.send(msg)
    }

    pub fn send_text(&mut self, text: &str) -> bool {
        self.out.send_text(text)
    }

    pub fn send_binary(&mut self, data: &[u8]) -> bool {
        self.out.send_binary(data)
    }

    /// Start the closing handshake with `code` (1000, or 3000–4999 for applications).
    pub fn close(&mut self, code: u16, reason: &str) {
        self.out.close(code, reason)
    }

    /// Bytes queued to this connection and not yet written.
    pub fn queued(&self) -> usize {
        self.out.queued()
    }
}

/// A WebSocket application. One value serves every connection on its route; per-connection
/// state lives in the handler, keyed by `ConnId`.
pub trait Handler {
    /// Decide on an upgrade request before the 101 is sent. Default: accept, no subprotocol.
    fn on_upgrade(&mut self, req: &Request<'_>, ws: &WsUpgrade<'_>) -> Decision {
        let _ = (req, ws);
        Decision::Accept { protocol: None }
    }

    /// The WebSocket is open (the 101 is queued).
    fn on_open(&mut self, ctx: &mut Ctx<'_, '_>) {
        let _ = ctx;
    }

    /// A complete message arrived. `msg` borrows the connection's buffers: copy what must
    /// outlive the call.
    fn on_message(&mut self, ctx: &mut Ctx<'_, '_>, msg: Message<'_>);

    /// The connection is finished: the peer's code (1005 none sent, 1006 dropped without a
    /// close frame) or the code the server failed it with. Called once.
    fn on_close(&mut self, id: ConnId, code: u16, reason: &str) {
        let _ = (id, code, reason);
    }
}

/// Index of a mounted handler.
pub type RouteId = u16;

/// Handlers mounted on exact paths; several paths may share one handler.
#[derive(Default)]
pub struct Router {
    paths: Vec<(String, RouteId)>,
    handlers: Vec<Box<dyn Handler>>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Mount `handler` at `path` (exact match, e.g. "/echo").
    pub fn mount(mut self, path: &str, handler: impl Handler + 'static) -> Router {
        let id = self.handlers.len() as RouteId;
        self.handlers.push(Box::new(handler));
        self.paths.push((path.to_string(), id));
        self
    }

    /// Serve `path` with the handler already mounted at `target` (no-op if none is).
    pub fn alias(mut self, path: &str, target: &str) -> Router {
        if let Some(id) = self.find(target) {
            self.paths.push((path.to_string(), id));
        }
        self
    }

    /// The handler for a request path (query already stripped).
    pub fn find(&self, path: &str) -> Option<RouteId> {
        self.paths
            .iter()
            .find(|(p, _)| p == path)
            .map(|&(_, id)| id)
    }

    pub fn handler(&mut self, id: RouteId) -> &mut dyn Handler {
        self.handlers[id as usize].as_mut()
    }
}
