//! Owns the `sse_encode` property: a stream written by `sse::push_event`, `push_retry`,
//! `push_comment` and `pubsub::Published::sse_event`, in any order and with any text, is read
//! by an EventSource exactly as meant — one event per event written, with its id, its type
//! and its data, and nothing else. The reader is a small parser written here from WHATWG HTML
//! §9.2.6 "Interpreting an event stream", independent of the encoder.
//! Must not: use the encoder's code to read back what it wrote.
//!
//! What the encoder promises (src/sse/mod.rs): the id is a number; an event name loses its CR
//! and LF (a field value cannot span lines); data is split at every CR, LF and CRLF into
//! `data:` lines, which the reader joins with LF — so the data read back is the data written
//! with each line break made an LF, and no text can end an event early or add a field. A
//! comment loses its CR and LF. Binary messages travel as base64 with `event: binary`.

use super::Input;
use crate::pubsub::Published;
use crate::sse::{push_comment, push_event, push_retry};

/// An event as EventSource dispatches it (§9.2.6 "dispatch the event").
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dispatched {
    kind: String,
    data: String,
    last_event_id: String,
}

/// What a reader of the stream observes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Observed {
    events: Vec<Dispatched>,
    /// Every reconnection time set by a `retry:` field, in order.
    retries: Vec<u64>,
}

/// A sequence of ops until the input ends, each `[op % 4]` and then: 0 `retry` ms (8 bytes);
/// 1 a comment (text); 2 an event: id (8 bytes), `[flags]` (bit 0: it has an event name, then
/// the name as text), the data (text); 3 a published message: seq (8 bytes), `[flags]` (bit 0:
/// text), payload (`[len]` bytes; text payloads decoded lossily, as the server only publishes
/// UTF-8 text). Text is `[len]` then `len` bytes, decoded lossily.
pub fn sse_encode(data: &[u8]) {
    let mut input = Input::new(data);
    let mut stream = Vec::new();
    let mut want = Observed::default();
    while !input.is_empty() {
        match input.byte() % 4 {
            0 => {
                let ms = u64_of(&mut input);
                push_retry(&mut stream, ms);
                want.retries.push(ms);
            }
            1 => {
                let text = text_of(&mut input);
                push_comment(&mut stream, &text);
            }
            2 => {
                let id = u64_of(&mut input);
                let event = (input.byte() & 1 != 0).then(|| text_of(&mut input));
                let data = text_of(&mut input);
                push_event(&mut stream, id, event.as_deref(), &data);
                want.events.push(Dispatched {
                    kind: kind_of(event.as_deref()),
                    data: one_line_break(&data),
                    last_event_id: id.to_string(),
                });
            }
            _ => {
                let seq = u64_of(&mut input);
                let text = input.byte() & 1 != 0;
                let len = usize::from(input.byte());
                let raw = input.take(len);
                let payload = if text {
                    String::from_utf8_lossy(raw).into_owned().into_bytes()
                } else {
                    raw.to_vec()
                };
                let p = Published::encode(seq, text, &payload);
                stream.extend_from_slice(&p.sse_event());
                let (kind, data) = if text {
                    let s = std::str::from_utf8(&payload).expect("lossy text is UTF-8");
                    ("message".to_string(), one_line_break(s))
                } else {
                    ("binary".to_string(), base64(&payload))
                };
                want.events.push(Dispatched {
                    kind,
                    data,
                    last_event_id: seq.to_string(),
                });
            }
        }
    }
    let text = std::str::from_utf8(&stream).expect("the event stream is UTF-8 (§9.2.5)");
    let got = read_stream(text);
    assert_eq!(got, want, "stream {text:?}");
}

fn u64_of(input: &mut Input<'_>) -> u64 {
    let mut b = [0u8; 8];
    let got = input.take(8);
    b[..got.len()].copy_from_slice(got);
    u64::from_le_bytes(b)
}

fn text_of(input: &mut Input<'_>) -> String {
    let len = usize::from(input.byte());
    String::from_utf8_lossy(input.take(len)).into_owned()
}

/// The type an event named `name` is dispatched as: the name without CR and LF (the encoder
/// drops them), `message` when that is empty (§9.2.6: "If the event type buffer has a value
/// other than the empty string, change the type of the newly created event to equal [it]").
fn kind_of(name: Option<&str>) -> String {
    let name: String = name
        .unwrap_or("")
        .chars()
        .filter(|&c| c != '\r' && c != '\n')
        .collect();
    if name.is_empty() {
        "message".into()
    } else {
        name
    }
}

/// `text` with every line break (CRLF, CR, LF) made one LF.
fn one_line_break(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// WHATWG HTML §9.2.6, as a reader that has received the whole stream and then the end of it.
fn read_stream(stream: &str) -> Observed {
    let mut seen = Observed::default();
    // "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are present."
    let mut rest = stream.strip_prefix('\u{feff}').unwrap_or(stream);
    let (mut data, mut kind, mut last_id_buffer) = (String::new(), String::new(), String::new());
    // "Lines must be processed, in the order they are received" and end at CRLF, LF or CR;
    // "once the end of the file is reached, any pending data must be discarded".
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
        if line.is_empty() {
            // Dispatch the event.
            let last_event_id = last_id_buffer.clone();
            if data.is_empty() {
                kind.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            seen.events.push(Dispatched {
                kind: if kind.is_empty() {
                    "message".into()
                } else {
                    std::mem::take(&mut kind)
                },
                data: std::mem::take(&mut data),
                last_event_id,
            });
            kind.clear();
            continue;
        }
        if line.starts_with(':') {
            continue; // a comment
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => kind = value.to_string(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            // "If the field value does not contain U+0000 NULL, then set the last event ID
            // buffer to the field value. Otherwise, ignore the field."
            "id" if !value.contains('\0') => last_id_buffer = value.to_string(),
            // "If the field value consists of only ASCII digits, then interpret the field
            // value as an integer in base ten" (the encoder only writes u64s).
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                seen.retries.push(value.parse().expect("digits of a u64"));
            }
            _ => {} // ignored
        }
    }
    seen
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard padded base64 (RFC 4648 §4), written here to check the server's (binary
/// messages travel as `event: binary` with their payload in base64).
fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let v = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(char::from(B64[(v >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
