//! Owns the `ws_decode` property: the frame decoder and the message assembler, fed through a
//! `Ring` in chunks whose sizes come from the input, never panic, never stall with a full ring,
//! give the same transcript (control frames, messages, the first error, the final state) at
//! every chunking, ring size and wrap offset, and agree with a small whole-buffer model of
//! RFC 6455 §5 written independently of the incremental code.
//! Must not: use the incremental decoder's code in its model.

use super::{chunk_at, Input};
use crate::buf::Ring;
use crate::config::WsLimits;
use crate::ws::decode::{DecodeRules, Decoder};
use crate::ws::message::Assembler;
use crate::ws::ProtocolError;

/// What the decoder and assembler report, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Control(u8, Vec<u8>),
    Message(bool, Vec<u8>),
    Error(ProtocolError),
    /// All input consumed without an error: (between frames, inside a message).
    End(bool, bool),
}

/// `[cfg][rules][chunk plan][stream]`: ring size and wrap offset, limits, chunk sizes, then
/// the client's byte stream.
pub fn ws_decode(data: &[u8]) {
    let mut input = Input::new(data);
    let cfg = input.byte();
    let rules_byte = input.byte();
    let plan = input.chunks(16);
    let stream = input.rest();

    let limits = WsLimits {
        max_frame_size: [0, 125, 1000, 1 << 20][usize::from(rules_byte & 3)],
        max_message_size: [0, 200, 3000, 1 << 20][usize::from((rules_byte >> 2) & 3)],
        max_fragments: [1, 3, 16, 1024][usize::from((rules_byte >> 4) & 3)],
    };
    let rules = DecodeRules {
        max_frame_size: limits.max_frame_size,
        // No extension: RSV1 now means a compressed message (permessage-deflate), which needs
        // the codec and has its own tests (ws::deflate); this target checks the plain path,
        // where any RSV bit is a protocol error.
        allowed_rsv: 0,
    };
    // Control frames (≤ 125 bytes + a 14-byte header) must fit: real rings are ≥ 4 KiB.
    let cap = 256usize << (cfg & 3);
    let offset = usize::from(cfg >> 2) * cap / 64;

    let reference = run(stream, stream.len().max(256), 0, &[], &limits, &rules);
    let chunked = run(stream, cap, offset, &plan, &limits, &rules);
    assert_eq!(
        chunked, reference,
        "chunking {plan:?} cap {cap} offset {offset}"
    );
    let bytewise = run(stream, cap, cap - 1 - offset % cap, &[1], &limits, &rules);
    assert_eq!(bytewise, reference, "one byte at a time");

    let mut want = model(stream, &limits, rules.allowed_rsv);
    let mut got: Vec<Ev> = reference
        .into_iter()
        .filter(|e| !matches!(e, Ev::End(..)))
        .collect();
    // The model says where the first error is, not which of several violations in one frame
    // is named first.
    for e in got.iter_mut().chain(want.iter_mut()) {
        if let Ev::Error(_) = e {
            *e = Ev::Error(ProtocolError::InvalidUtf8);
        }
    }
    assert_eq!(
        got, want,
        "incremental decoder and whole-buffer model disagree"
    );
}

/// Feed `stream` through a ring of `cap` bytes starting at `offset`, in chunks of `plan`.
fn run(
    stream: &[u8],
    cap: usize,
    offset: usize,
    plan: &[usize],
    limits: &WsLimits,
    rules: &DecodeRules,
) -> Vec<Ev> {
    let mut rx = Ring::with_capacity(cap);
    rx.clear_at(offset);
    let mut dec = Decoder::new();
    let mut asm = Assembler::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < stream.len() {
        assert!(
            rx.free() > 0,
            "decoder stalled with a full ring ({cap} bytes)"
        );
        let n = chunk_at(plan, i, stream.len())
            .min(rx.free())
            .min(stream.len() - pos);
        i += 1;
        rx.push(&stream[pos..pos + n]);
        pos += n;
        loop {
            let piece = match dec.next(&mut rx, rules) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    out.push(Ev::Error(e));
                    return out;
                }
            };
            assert!(
                piece.b.is_empty() || !piece.a.is_empty(),
                "empty first slice"
            );
            if piece.opcode.is_control() {
                assert!(piece.first && piece.last && piece.b.is_empty());
                assert_eq!(piece.frame_len, piece.a.len() as u64);
                out.push(Ev::Control(piece.opcode as u8, piece.a.to_vec()));
                continue;
            }
            match asm.feed(piece, limits, 0, None) {
                Ok(Some(m)) => out.push(Ev::Message(m.is_text(), m.as_bytes().to_vec())),
                Ok(None) => {}
                Err(e) => {
                    out.push(Ev::Error(e));
                    return out;
                }
            }
        }
    }
    out.push(Ev::End(dec.at_frame_boundary(), asm.in_message()));
    out
}

/// A message being assembled by the model.
struct Partial {
    text: bool,
    frames: u32,
    size: u64,
    buf: Vec<u8>,
}

/// RFC 6455 §5 over the whole buffer at once, written from the RFC rather than from the
/// incremental code: frame by frame, checking each header as soon as it is complete, then the
/// payload bytes that are present (text fails at the first byte that cannot lead to valid
/// UTF-8, §8.1). Stops at the first error or at the first incomplete frame.
fn model(stream: &[u8], limits: &WsLimits, allowed_rsv: u8) -> Vec<Ev> {
    let fail = ProtocolError::InvalidUtf8; // any error: only its position is compared
    let mut out = Vec::new();
    let mut msg: Option<Partial> = None;
    let mut rest = stream;
    while let Some(&b0) = rest.first() {
        let (fin, rsv, op) = (b0 & 0x80 != 0, (b0 >> 4) & 7, b0 & 0x0F);
        let control = op >= 8;
        if !matches!(op, 0 | 1 | 2 | 8 | 9 | 10) || (control && !fin) {
            out.push(Ev::Error(fail));
            return out;
        }
        let Some(&b1) = rest.get(1) else { break };
        let masked = b1 & 0x80 != 0;
        let ext = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let head_len = 2 + ext + if masked { 4 } else { 0 };
        if rest.len() < head_len {
            break;
        }
        let len = match ext {
            0 => u64::from(b1 & 0x7F),
            _ => rest[2..2 + ext]
                .iter()
                .fold(0u64, |a, &b| (a << 8) | u64::from(b)),
        };
        let bad_header = (ext == 8 && len >> 63 != 0)
            || (control && len > 125)
            || rsv & !allowed_rsv != 0
            || (rsv != 0 && (control || op == 0))
            || !masked
            || len > limits.max_frame_size;
        if bad_header {
            out.push(Ev::Error(fail));
            return out;
        }
        let key = [
            rest[head_len - 4],
            rest[head_len - 3],
            rest[head_len - 2],
            rest[head_len - 1],
        ];
        let body = &rest[head_len..];
        let present = (body.len() as u64).min(len) as usize;
        let unmasked: Vec<u8> = body[..present]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        if control {
            if present as u64 != len {
                break; // a control frame is acted on whole
            }
            out.push(Ev::Control(op, unmasked));
            rest = &body[present..];
            continue;
        }
        // §5.4 and the limits, on the header, before any payload.
        match (op, msg.as_mut()) {
            (0, None) | (1 | 2, Some(_)) => {
                out.push(Ev::Error(fail));
                return out;
            }
            (0, Some(m)) => {
                m.frames += 1;
                m.size += len;
                if m.frames > limits.max_fragments || m.size > limits.max_message_size {
                    out.push(Ev::Error(fail));
                    return out;
                }
            }
            _ => {
                if len > limits.max_message_size || limits.max_fragments == 0 {
                    out.push(Ev::Error(fail));
                    return out;
                }
                msg = Some(Partial {
                    text: op == 1,
                    frames: 1,
                    size: len,
                    buf: Vec::new(),
                });
            }
        }
        let Some(m) = msg.as_mut() else {
            unreachable!("a message was just started or continued")
        };
        m.buf.extend_from_slice(&unmasked);
        if m.text {
            if let Err(e) = std::str::from_utf8(&m.buf) {
                if e.error_len().is_some() {
                    out.push(Ev::Error(fail));
                    return out;
                }
            }
        }
        if present as u64 != len {
            break;
        }
        rest = &body[present..];
        if fin {
            let m = msg.take().unwrap_or_else(|| unreachable!());
            if m.text && std::str::from_utf8(&m.buf).is_err() {
                out.push(Ev::Error(fail));
                return out;
            }
            out.push(Ev::Message(m.text, m.buf));
        }
    }
    out
}
