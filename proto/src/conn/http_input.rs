//! Owns a connection's HTTP input: gathering a request head (bounded in size and in the reads
//! it arrives in), parsing it once, waiting for the body that `Content-Length` announces (RFC
//! 9112 §6), and handing the request or the upgrade over as an `Event`.
//! Must not: parse a head before its CRLFCRLF has arrived (the search resumes where it
//! stopped), or take a body of unknown length or over `max_body`.

use super::{Event, Outbox, Parser, RxSide, State, Step};
use crate::config::Config;
use crate::http::request::{self, Request};
use crate::http::upgrade;
use crate::text::decimal;
use crate::ws::deflate;

/// Where the current HTTP request stands.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Head {
    /// Bytes of the request head already searched for CRLFCRLF (linear parsing).
    scanned: u32,
    /// Length of the request head, dropped once the request is answered.
    pub(super) len: u32,
    /// Length of the request body that follows the head.
    body: u32,
    /// What the incomplete head's limit checks have seen (`request::check_partial_since`).
    partial: request::PartialHead,
}

impl RxSide {
    /// Gather the request head; parse it once, when CRLFCRLF has arrived.
    pub(super) fn handshake<'s>(&'s mut self, cfg: &Config, out: &mut Outbox<'_>) -> Step<'s> {
        let (Some(ring), Parser::Http(head)) = (self.ring.as_mut(), &mut self.parser) else {
            return Step::Idle;
        };
        if head.len > 0 {
            // The previous request on this keep-alive connection was answered.
            ring.consume((head.len + head.body) as usize);
            *head = Head::default();
        }
        if ring.is_empty() {
            return Step::Idle;
        }
        let full = ring.is_full();
        let buf = ring.make_contiguous();
        let Some(head_len) = request::find_head_end(buf, head.scanned as usize) else {
            head.scanned = buf.len() as u32;
            // Bounded by bytes (414/431 here) and by time (the handshake deadline, 408), not
            // by how many reads the head takes: an honest client on a slow or lossy link may
            // send it a few bytes at a time.
            if let Err(e) = request::check_partial_since(buf, &mut head.partial, &cfg.http, &mut 0)
            {
                out.reject(e.status(), e.reason());
            } else if full {
                // The head limit is larger than the ring: the ring binds.
                out.reject(431, "request header fields too large");
            }
            return Step::Idle;
        };
        head.len = head_len as u32;
        let head_bytes: &'s [u8] = &buf[..head_len];
        let req = match request::parse(head_bytes, &cfg.http) {
            Ok(req) => req,
            Err(e) => {
                out.reject(e.status(), e.reason());
                return Step::Again;
            }
        };
        if !upgrade::wants_websocket(&req) {
            let body_len = match request_body_len(&req, cfg) {
                Ok(n) => n,
                Err((status, reason)) => {
                    out.reject(status, reason);
                    return Step::Again;
                }
            };
            head.body = body_len as u32;
            if body_len > 0 {
                out.set_state(State::Body);
                return Step::Again;
            }
            out.set_state(State::Upgrading);
            return Step::Event(Event::Request(req, &[]));
        }
        out.set_state(State::Upgrading);
        match upgrade::validate(&req, &cfg.allowed_origins) {
            Ok(up) => {
                // RFC 7692 §5: choose the response now, so `Outbox::accept` can answer it.
                let mode = out.compression_mode(cfg);
                out.set_deflate(deflate::negotiate(&up.extensions, mode));
                Step::Event(Event::Upgrade(req, up))
            }
            Err(rej) => {
                out.reject(rej.status, rej.reason);
                Step::Again
            }
        }
    }

    /// Wait for the whole body (bounded by `max_body`, checked before reading it), then hand
    /// the request over with it.
    pub(super) fn body<'s>(&'s mut self, cfg: &Config, out: &mut Outbox<'_>) -> Step<'s> {
        let (Some(ring), Parser::Http(head)) = (self.ring.as_mut(), &self.parser) else {
            return Step::Idle;
        };
        let (head_len, total) = (head.len as usize, (head.len + head.body) as usize);
        if ring.len() < total {
            if ring.capacity() < total {
                ring.grow(total);
            }
            return Step::Idle;
        }
        let buf: &'s [u8] = ring.make_contiguous();
        match request::parse(&buf[..head_len], &cfg.http) {
            Ok(req) => {
                out.set_state(State::Upgrading);
                Step::Event(Event::Request(req, &buf[head_len..total]))
            }
            Err(e) => {
                out.reject(e.status(), e.reason());
                Step::Again
            }
        }
    }
}

/// The length of a plain request's body (RFC 9112 §6): `Content-Length`, at most
/// `max_body` (413 before reading it); bodies of unknown length are refused with 411.
fn request_body_len(req: &Request<'_>, cfg: &Config) -> Result<usize, (u16, &'static str)> {
    if req.header("transfer-encoding").is_some() {
        return Err((
            411,
            "chunked request bodies are not accepted; send Content-Length",
        ));
    }
    let mut lengths = req.headers_named("content-length");
    let Some(value) = lengths.next() else {
        return match req.method {
            "POST" | "PUT" | "PATCH" => Err((411, "Content-Length required")),
            _ => Ok(0),
        };
    };
    // Digits only (RFC 9110 §8.6), around the field's optional whitespace.
    let parsed = decimal(value.trim_ascii()).and_then(|n| usize::try_from(n).ok());
    // Repeated Content-Length headers must agree (RFC 9112 §6.3); we require a single one.
    match (parsed, lengths.next()) {
        (Some(n), None) if n > cfg.http.max_body => Err((413, "request body too large")),
        (Some(n), None) => Ok(n),
        _ => Err((400, "invalid Content-Length")),
    }
}
