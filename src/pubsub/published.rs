//! Owns `Published`: one message as every transport sends it — the WebSocket frame encoded
//! once at publish time, the SSE event and the stream chunk encoded on first use — shared by
//! every subscriber's queue and the topic's history. Pure encoding (layer L3): no sockets,
//! no clock.

use std::cell::OnceCell;

use crate::conn::SharedFrame;
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
}

impl Published {
    /// Encode `payload` once as an unmasked, unfragmented server frame (RFC 6455 §5.2).
    pub fn encode(seq: u64, text: bool, payload: &[u8]) -> Published {
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        let h = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&h, &mut head);
        // One allocation, one copy: a chain of slice iterators has an exact length.
        let frame: SharedFrame = head[..n].iter().chain(payload).copied().collect();
        Published {
            seq,
            text,
            frame,
            header_len: n as u8,
            sse: OnceCell::new(),
            chunk: OnceCell::new(),
        }
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
    /// overhead. The SSE and stream forms, encoded on first use when such subscribers exist,
    /// are not charged (they are at most about 1.4× the payload each, base64 for binary).
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
