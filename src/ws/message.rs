//! Owns `Assembler`: turns data-frame pieces into whole messages (RFC 6455 §5.4
//! fragmentation), enforcing the message-size and fragment-count limits and validating text
//! as UTF-8 as it arrives (§8.1, fail-fast). A message that arrives as one whole frame is
//! handed on in place, with no copy; only fragmented or partly-read messages are copied into
//! a reassembly buffer, allocated then and freed on delivery. Sans-IO.

use super::decode::Piece;
use super::frame::OpCode;
use super::utf8::Utf8Validator;
use super::ProtocolError;
use crate::config::WsLimits;
use crate::timer::Tick;

/// A complete message, borrowed from the rx ring or from the reassembly buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }
}

/// A message in progress: only exists between its first frame and its last.
#[derive(Debug)]
struct Partial {
    /// When its first frame arrived: the message-completion deadline runs from here.
    started: Tick,
    text: bool,
    fragments: u32,
    /// Declared bytes so far (frames are counted whole when their header arrives).
    size: u64,
    utf8: Utf8Validator,
    /// The message was delivered from `buf`; the box is freed on the next call.
    delivered: bool,
    buf: Vec<u8>,
}

/// Per-connection message state: one pointer, null while idle.
#[derive(Debug, Default)]
pub struct Assembler {
    partial: Option<Box<Partial>>,
}

impl Assembler {
    pub const fn new() -> Assembler {
        Assembler { partial: None }
    }

    /// True while a message has started but not finished.
    pub fn in_message(&self) -> bool {
        self.partial.as_ref().is_some_and(|p| !p.delivered)
    }

    /// When the message in progress began, if one is.
    pub fn started_at(&self) -> Option<Tick> {
        self.partial
            .as_ref()
            .filter(|p| !p.delivered)
            .map(|p| p.started)
    }

    /// Free the buffer of a message already delivered (the connection went idle).
    pub fn shed(&mut self) {
        if self.partial.as_ref().is_some_and(|p| p.delivered) {
            self.partial = None;
        }
    }

    /// Free everything (the connection is closing or going idle).
    pub fn clear(&mut self) {
        self.partial = None;
    }

    /// Feed one data-frame piece that arrived at `now`; returns the message when its last
    /// byte has arrived.
    pub fn feed<'a>(
        &'a mut self,
        p: Piece<'a>,
        limits: &WsLimits,
        now: Tick,
    ) -> Result<Option<Message<'a>>, ProtocolError> {
        if self.partial.as_ref().is_some_and(|p| p.delivered) {
            self.partial = None; // the last message's buffer is no longer borrowed
        }
        if p.first {
            self.start_frame(&p, limits)?;
        }
        // Fast path: a whole message in one frame, contiguous in the ring — no copy.
        if p.first && p.last && p.fin && self.partial.is_none() && p.b.is_empty() {
            return match p.opcode {
                OpCode::Text => simdutf8::basic::from_utf8(p.a)
                    .map(|s| Some(Message::Text(s)))
                    .map_err(|_| ProtocolError::InvalidUtf8),
                _ => Ok(Some(Message::Binary(p.a))),
            };
        }
        let partial = self.partial.get_or_insert_with(|| {
            Box::new(Partial {
                started: now,
                text: p.opcode == OpCode::Text,
                fragments: 1,
                size: p.frame_len,
                utf8: Utf8Validator::new(),
                delivered: false,
                // The frame's declared length (already within the limits) is allocated once,
                // not grown by doubling as pieces arrive; untouched pages cost nothing.
                buf: Vec::with_capacity(p.frame_len as usize),
            })
        });
        if partial.text {
            // §8.1 + Autobahn 6.4.x: fail as soon as the bytes cannot become valid UTF-8,
            // even while the rest of the frame is still on its way.
            partial.utf8.feed(p.a)?;
            partial.utf8.feed(p.b)?;
        }
        partial.buf.extend_from_slice(p.a);
        partial.buf.extend_from_slice(p.b);
        if !(p.last && p.fin) {
            return Ok(None);
        }
        if partial.text && !partial.utf8.is_complete() {
            return Err(ProtocolError::InvalidUtf8);
        }
        partial.delivered = true;
        let done = &**partial;
        if done.text {
            // Already validated piece by piece; this last check is the cheap SIMD pass that
            // lets safe code hand out a `&str`.
            simdutf8::basic::from_utf8(&done.buf)
                .map(|s| Some(Message::Text(s)))
                .map_err(|_| ProtocolError::InvalidUtf8)
        } else {
            Ok(Some(Message::Binary(&done.buf)))
        }
    }

    /// Rules checked on a frame's header, before its payload is read (§5.4, limits).
    fn start_frame(&mut self, p: &Piece<'_>, limits: &WsLimits) -> Result<(), ProtocolError> {
        match (p.opcode, &mut self.partial) {
            (OpCode::Continuation, None) => Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(partial)) => {
                partial.fragments += 1;
                if partial.fragments > limits.max_fragments {
                    return Err(ProtocolError::TooManyFragments {
                        max: limits.max_fragments,
                    });
                }
                partial.size += p.frame_len;
                partial.buf.reserve(p.frame_len as usize);
                if partial.size > limits.max_message_size {
                    return Err(ProtocolError::MessageTooLarge {
                        size: partial.size,
                        max: limits.max_message_size,
                    });
                }
                Ok(())
            }
            (_, Some(_)) => Err(ProtocolError::ExpectedContinuation),
            (_, None) => {
                if p.frame_len > limits.max_message_size {
                    return Err(ProtocolError::MessageTooLarge {
                        size: p.frame_len,
                        max: limits.max_message_size,
                    });
                }
                if limits.max_fragments == 0 {
                    return Err(ProtocolError::TooManyFragments { max: 0 });
                }
                Ok(())
            }
        }
    }
}
