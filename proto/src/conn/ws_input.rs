//! Owns a connection's WebSocket input (RFC 6455): decoding frames from the rx ring,
//! answering control frames (§5.5: ping → pong, close → echo and finish) and failing the
//! connection on a protocol error (§7.1.7); data frames become messages through the
//! `Assembler`.
//! Must not: hand the application a control frame, deliver data after our close (§7.1.2), or
//! send a second close frame.

use super::{Event, Outbox, Outcome, Parser, RxSide, State, Step};
use crate::config::Config;
use crate::timer::Tick;
use crate::ws::close::parse_close_payload;
use crate::ws::decode::{DecodeRules, Decoder, Piece};
use crate::ws::deflate::{self, RSV1};
use crate::ws::frame::OpCode;
use crate::ws::ProtocolError;

impl RxSide {
    /// Decode frames: control frames are answered here, data frames become messages.
    pub(super) fn frames<'s>(
        &'s mut self,
        cfg: &Config,
        out: &mut Outbox<'_>,
        now: Tick,
    ) -> Step<'s> {
        let Some(ring) = self.ring.as_mut() else {
            return Step::Idle;
        };
        if out.state() != State::Open && self.asm.in_message() {
            self.asm.clear();
        }
        if let Parser::Http(head) = &self.parser {
            // The request head stayed in place while the caller looked at it; bytes that
            // followed it are the first frames (tungstenite's `tail`).
            ring.consume(head.len as usize);
            self.parser = Parser::Ws(Decoder::new());
        }
        let Parser::Ws(decoder) = &mut self.parser else {
            unreachable!("bug: parser switched to frames above");
        };
        // RFC 7692 §6: permessage-deflate claims RSV1 (first frames of data messages only; the
        // decoder refuses it on control and continuation frames), and a compressed frame may
        // be a little larger than the data it carries.
        let rules = match out.deflate() {
            None => DecodeRules {
                max_frame_size: cfg.ws.max_frame_size,
                allowed_rsv: 0,
            },
            Some(_) => DecodeRules {
                max_frame_size: deflate::compressed_bound(cfg.ws.max_frame_size),
                allowed_rsv: RSV1,
            },
        };
        let piece = match decoder.next(ring, &rules) {
            Ok(Some(p)) => p,
            Ok(None) => return Step::Idle,
            Err(e) => return fail(e, out),
        };
        if piece.opcode.is_control() {
            return control(piece, out);
        }
        if out.state() != State::Open {
            // §7.1.2 / §1.4: after our close, data frames are read and discarded.
            return Step::Again;
        }
        match self.asm.feed(piece, &cfg.ws, now, out.deflate().as_mut()) {
            Ok(Some(msg)) => Step::Event(Event::Message(msg)),
            Ok(None) => Step::Again,
            // The partial message is freed on the next step (state is no longer Open).
            Err(e) => fail(e, out),
        }
    }
}

/// Fail the WebSocket connection (§7.1.7): send a close with the error's code and report it.
fn fail<'s>(e: ProtocolError, out: &mut Outbox<'_>) -> Step<'s> {
    log::debug!("protocol error: {e}");
    if out.state() == State::Open {
        out.fail(e.close_code(), e.reason());
        Step::Event(Event::Closed {
            code: e.close_code(),
            reason: e.reason(),
        })
    } else {
        // Already closing: the peer gets no second close frame.
        out.set_state(State::Closing);
        Step::Again
    }
}

/// Answer a control frame (§5.5): ping → pong, pong → nothing, close → echo and finish.
/// The decoder lends control payloads as one contiguous slice.
fn control<'s>(p: Piece<'s>, out: &mut Outbox<'_>) -> Step<'s> {
    debug_assert!(p.b.is_empty(), "bug: control payload split");
    match p.opcode {
        OpCode::Ping => {
            if out.state() == State::Open {
                out.pong(p.a);
            }
            Step::Again
        }
        OpCode::Close => close_received(p.a, out),
        _ => Step::Again, // unsolicited pongs are allowed (§5.5.3) and ignored
    }
}

/// The peer's close frame (§5.5.1, §7.1.2): validate it, echo it, and finish.
fn close_received<'s>(payload: &'s [u8], out: &mut Outbox<'_>) -> Step<'s> {
    let was_open = out.state() == State::Open;
    match parse_close_payload(payload) {
        Err(e) => {
            let told = out.report(e.close_code(), e.reason());
            out.fail(e.close_code(), e.reason());
            if was_open {
                told
            } else {
                Step::Again
            }
        }
        Ok(status) => {
            let (code, reason) = status.unwrap_or((1005, ""));
            out.record(Outcome::CloseReceived(code));
            if was_open {
                // Echo the status code (§5.5.1); a close without one is echoed without one,
                // since 1005 must never appear on the wire (§7.4.1).
                out.close_frame(status.map(|(c, _)| c), "");
            }
            out.set_state(State::Closing);
            out.report(code, reason)
        }
    }
}
