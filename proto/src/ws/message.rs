//! Owns `Assembler`: turns data-frame pieces into whole messages (RFC 6455 §5.4
//! fragmentation), enforcing the message-size and fragment-count limits and validating text
//! as UTF-8 as it arrives (§8.1, fail-fast). A message that arrives as one whole frame is
//! handed on in place, with no copy; only fragmented or partly-read messages are copied into
//! a reassembly buffer, allocated then and freed on delivery. A compressed message (RFC 7692)
//! is inflated once its last frame has arrived, into that buffer. Sans-IO.
//! Must not: hold a buffer between messages, or deliver text that is not UTF-8 (RFC 6455 §8.1).

use super::decode::Piece;
use super::deflate::{self, Codec, RSV1};
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
    /// RSV1 on its first frame (RFC 7692 §6): `buf` collects compressed bytes, inflated
    /// (and only then validated as UTF-8) when the message is complete.
    compressed: bool,
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
    #[inline]
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
    /// byte has arrived. `deflate` is the connection's permessage-deflate codec, if it was
    /// negotiated.
    pub fn feed<'a>(
        &'a mut self,
        p: Piece<'a>,
        limits: &WsLimits,
        now: Tick,
        deflate: Option<&mut Codec<'_>>,
    ) -> Result<Option<Message<'a>>, ProtocolError> {
        if self.partial.as_ref().is_some_and(|p| p.delivered) {
            self.partial = None; // the last message's buffer is no longer borrowed
        }
        if p.first {
            self.start_frame(&p, limits)?;
        }
        // The decoder lets RSV1 through only on a message's first frame, and only when the
        // extension was negotiated (§6).
        let compressed = p.rsv & RSV1 != 0;
        if compressed && deflate.is_none() {
            return Err(ProtocolError::ReservedBits(p.rsv));
        }
        let whole = p.first && p.last && p.fin && self.partial.is_none() && p.b.is_empty();
        if whole && compressed {
            // Inflated straight from the ring: the compressed bytes are never copied.
            let partial = self.partial.insert(Partial::new(&p, true, now));
            inflate(partial, p.a, limits, deflate)?;
            return deliver(partial);
        }
        // Fast path: a whole message in one frame, contiguous in the ring — no copy.
        if whole {
            return match p.opcode {
                OpCode::Text => simdutf8::basic::from_utf8(p.a)
                    .map(|s| Some(Message::Text(s)))
                    .map_err(|_| ProtocolError::InvalidUtf8),
                _ => Ok(Some(Message::Binary(p.a))),
            };
        }
        let partial = self
            .partial
            .get_or_insert_with(|| Partial::new(&p, compressed, now));
        if partial.text && !partial.compressed {
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
        if partial.compressed {
            let data = std::mem::take(&mut partial.buf);
            inflate(partial, &data, limits, deflate)?;
        }
        if partial.text && !partial.utf8.is_complete() {
            return Err(ProtocolError::InvalidUtf8);
        }
        deliver(partial)
    }

    /// Rules checked on a frame's header, before its payload is read (§5.4, limits). A
    /// compressed message is held to them by its compressed size, and to `max_message_size`
    /// again once inflated.
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
                let max = wire_limit(limits, partial.compressed);
                if partial.size > max {
                    return Err(ProtocolError::MessageTooLarge {
                        size: partial.size,
                        max,
                    });
                }
                Ok(())
            }
            (_, Some(_)) => Err(ProtocolError::ExpectedContinuation),
            (_, None) => {
                let max = wire_limit(limits, p.rsv & RSV1 != 0);
                if p.frame_len > max {
                    return Err(ProtocolError::MessageTooLarge {
                        size: p.frame_len,
                        max,
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

impl Partial {
    /// The state of a message starting with the piece `p`.
    fn new(p: &Piece<'_>, compressed: bool, now: Tick) -> Box<Partial> {
        Box::new(Partial {
            started: now,
            text: p.opcode == OpCode::Text,
            fragments: 1,
            size: p.frame_len,
            utf8: Utf8Validator::new(),
            delivered: false,
            compressed,
            // The frame's declared length (already within the limits) is allocated once,
            // not grown by doubling as pieces arrive; untouched pages cost nothing.
            buf: Vec::with_capacity(p.frame_len as usize),
        })
    }
}

/// Inflate a compressed message's bytes into `partial.buf` (RFC 7692 §7.2.2), within the
/// message limit, validating text as it is inflated.
fn inflate(
    partial: &mut Partial,
    data: &[u8],
    limits: &WsLimits,
    deflate: Option<&mut Codec<'_>>,
) -> Result<(), ProtocolError> {
    let codec = deflate.ok_or(ProtocolError::ReservedBits(RSV1))?;
    let utf8 = partial.text.then_some(&mut partial.utf8);
    codec.inflate(data, &mut partial.buf, limits.max_message_size, utf8)
}

/// Hand out a complete message from its reassembly buffer (freed on the next call).
fn deliver(partial: &mut Partial) -> Result<Option<Message<'_>>, ProtocolError> {
    partial.delivered = true;
    let done = &*partial;
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

/// The most bytes a message may occupy on the wire: compressed, it may exceed its inflated
/// size by DEFLATE's worst-case expansion (RFC 7692 §7.2.3.3 stored blocks), checked against
/// the limit again once inflated.
fn wire_limit(limits: &WsLimits, compressed: bool) -> u64 {
    if compressed {
        deflate::compressed_bound(limits.max_message_size)
    } else {
        limits.max_message_size
    }
}
