//! Owns `Published`: one message as every transport sends it — the WebSocket frame encoded
//! once at publish time, the SSE event and the stream chunk encoded on first use — shared by
//! every subscriber's queue and the topic's history. Pure encoding (layer L3): no sockets,
//! no clock.
//! Must not: encode a message more than once per form (per window size for compressed frames).

use std::cell::{OnceCell, RefCell};

use crate::conn::SharedFrame;
use crate::ws::deflate::{Compressors, RSV1};
use crate::ws::frame::{encode_header, FrameHeader, OpCode, MAX_HEADER_LEN};

/// One published message: a WebSocket frame encoded once, plus what other transports need.
#[derive(Debug)]
pub struct Published {
    /// The topic's sequence number for this message (1, 2, 3, …).
    pub seq: u64,
    pub text: bool,
    /// The complete server frame (header + payload), shared by every subscriber's queue.
    pub frame: SharedFrame,
    header_len: u8,
    /// The same message as an SSE event, encoded on first use for all SSE subscribers.
    sse: OnceCell<SharedFrame>,
    /// The same message as one chunk of a streaming response.
    chunk: OnceCell<SharedFrame>,
    /// The same message with its position, a JSON text frame (`conn::POSITIONS_PROTOCOL`).
    positioned: OnceCell<SharedFrame>,
    /// The frame compressed, per server window size asked for (`deflated`); `None` where
    /// compressing did not pay.
    deflated: RefCell<Vec<(u8, Option<SharedFrame>)>>,
}

/// One unmasked, unfragmented server frame (RFC 6455 §5.2) with `rsv` bits, and its header
/// length: one allocation, one copy (a chain of slice iterators has an exact length).
fn frame(text: bool, rsv: u8, payload: &[u8]) -> (SharedFrame, usize) {
    let h = FrameHeader {
        fin: true,
        rsv,
        opcode: if text { OpCode::Text } else { OpCode::Binary },
        mask: None,
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&h, &mut head);
    (head[..n].iter().chain(payload).copied().collect(), n)
}

impl Published {
    /// Encode `payload` once as an unmasked, unfragmented server frame (RFC 6455 §5.2).
    pub fn encode(seq: u64, text: bool, payload: &[u8]) -> Published {
        let (frame, header_len) = frame(text, 0, payload);
        Published {
            seq,
            text,
            frame,
            header_len: header_len as u8,
            sse: OnceCell::new(),
            chunk: OnceCell::new(),
            positioned: OnceCell::new(),
            deflated: RefCell::new(Vec::new()),
        }
    }

    /// The frame compressed (RFC 7692 §7.2.1, RSV1 set) from an empty window of `bits`, for
    /// every permessage-deflate subscriber whose server side keeps no context: compressed
    /// once per window size however many receive it. `None` when the message is shorter than
    /// `min_len` or does not shrink — the plain `frame` is sent then.
    pub fn deflated(
        &self,
        compressors: &mut Compressors,
        bits: u8,
        min_len: usize,
    ) -> Option<SharedFrame> {
        if let Some((_, f)) = self.deflated.borrow().iter().find(|(b, _)| *b == bits) {
            return f.clone();
        }
        let frame = compressors
            .compress_fresh(self.payload(), bits, min_len)
            .map(|z| frame(self.text, RSV1, &z).0);
        self.deflated.borrow_mut().push((bits, frame.clone()));
        frame
    }

    pub fn payload(&self) -> &[u8] {
        &self.frame[self.header_len as usize..]
    }

    /// The payload as text for text transports: itself, or base64 for a binary message.
    fn as_text(&self) -> String {
        match (self.text, std::str::from_utf8(self.payload())) {
            (true, Ok(s)) => s.to_string(),
            _ => crate::text::base64(self.payload()),
        }
    }

    /// The message as an SSE event (`id:` = sequence number; binary messages are base64 with
    /// `event: binary`), encoded once however many SSE clients receive it.
    pub fn sse_event(&self) -> SharedFrame {
        self.sse
            .get_or_init(|| {
                let mut out = Vec::new();
                let event = (!self.text).then_some("binary");
                crate::sse::push_event(&mut out, self.seq, event, &self.as_text());
                out.into()
            })
            .clone()
    }

    /// The message as a WebSocket text frame carrying its position:
    /// `{"position":"N","text":"…"}`, or `"binary":"<base64>"` for a binary message; encoded
    /// once for every subscriber that asked for positions.
    pub fn positioned(&self) -> SharedFrame {
        self.positioned
            .get_or_init(|| {
                let kind = if self.text { "text" } else { "binary" };
                let json = format!(
                    r#"{{"position":"{}","{kind}":{}}}"#,
                    self.seq,
                    crate::text::json_string(&self.as_text())
                );
                frame(true, 0, json.as_bytes()).0
            })
            .clone()
    }

    /// The message as one chunk of a streaming response: the text (binary: base64) and a
    /// newline, encoded once.
    pub fn stream_chunk(&self) -> SharedFrame {
        self.chunk
            .get_or_init(|| {
                let mut line = self.as_text().into_bytes();
                line.push(b'\n');
                let mut out = Vec::new();
                crate::http::response::push_chunk(&mut out, &line);
                out.into()
            })
            .clone()
    }
}

/// What one kept message costs beside its frame: the `Published` itself, the `Rc` counts and
/// the history slot.
const KEPT_OVERHEAD: usize = std::mem::size_of::<Published>() + 2 * 8 + 16;

impl Published {
    /// The bytes the history is charged for keeping this message: its frame and fixed
    /// overhead. The SSE and stream forms and the compressed frames, encoded on first use when
    /// such subscribers exist, are not charged (the text forms are at most about 1.4× the
    /// payload each, base64 for binary; a compressed frame is kept only when smaller).
    pub fn kept_cost(&self) -> usize {
        self.frame.len() + KEPT_OVERHEAD
    }

    /// `kept_cost` of a message with a payload of `len` bytes, before it is encoded.
    pub fn cost_for(len: usize) -> usize {
        let header = match len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        header + len + KEPT_OVERHEAD
    }
}
