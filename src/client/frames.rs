//! Owns client frames (RFC 6455 §5): encoding a masked frame to send (§5.3, the client MUST
//! mask) and reading the unmasked frames a server sends, streaming, without buffering
//! payloads (beyond a 16-byte prefix of each data frame, where a load generator puts its
//! sequence number and timestamp). Headers are parsed by `ws::frame::parse_header`, masks applied by
//! `ws::mask::apply_mask`; nothing here re-implements the wire format. Sans-IO.
//! Must not: send an unmasked frame (RFC 6455 §5.1) or touch a socket.

use std::fmt;

use crate::ws::close::encode_close_payload;
use crate::ws::frame::MAX_HEADER_LEN;
use crate::ws::frame::{encode_header, header_len, parse_header, FrameHeader, OpCode};
use crate::ws::mask::apply_mask;
use crate::ws::ProtocolError;

/// Largest control payload (§5.5).
const MAX_CONTROL: usize = 125;
/// Bytes of each data frame's payload kept and reported (`Prefix`).
pub const PREFIX: usize = 16;

/// The first bytes (up to `PREFIX`) of a data frame's payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prefix {
    bytes: [u8; PREFIX],
    len: u8,
}

impl Prefix {
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Keep the part of `chunk` that falls in the first `PREFIX` bytes of the payload.
    fn keep(&mut self, chunk: &[u8]) {
        let have = usize::from(self.len);
        let take = (PREFIX - have).min(chunk.len());
        self.bytes[have..have + take].copy_from_slice(&chunk[..take]);
        self.len += take as u8;
    }
}

/// Append one complete, final, masked frame carrying `payload` to `out`.
pub fn encode_masked(opcode: OpCode, payload: &[u8], key: [u8; 4], out: &mut Vec<u8>) {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(key),
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&header, &mut head);
    out.reserve(n + payload.len());
    out.extend_from_slice(&head[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
}

/// A masked close frame with `code` and no reason (§5.5.1).
pub fn close_frame(code: u16, key: [u8; 4]) -> Vec<u8> {
    let mut payload = [0u8; MAX_CONTROL];
    let n = encode_close_payload(code, "", &mut payload);
    let mut out = Vec::with_capacity(6 + n);
    encode_masked(OpCode::Close, &payload[..n], key, &mut out);
    out
}

/// A frame from the server, reported once it has been read completely.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    /// A data frame (text, binary or continuation) whose `len` payload bytes were skipped,
    /// but for the first ones (`head`).
    Data {
        opcode: OpCode,
        fin: bool,
        len: u64,
        head: Prefix,
    },
    /// A control frame and its payload (at most 125 bytes).
    Control { opcode: OpCode, payload: &'a [u8] },
}

/// Why the server's frames cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The header breaks RFC 6455 (as judged by `ws::frame::parse_header`).
    Protocol(ProtocolError),
    /// §5.1: "A server MUST NOT mask any frames that it sends to the client."
    MaskedServerFrame,
    /// RSV bits set without a negotiated extension (§5.2).
    ReservedBits(u8),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Protocol(e) => write!(f, "server frame: {e}"),
            ReadError::MaskedServerFrame => f.write_str("server sent a masked frame"),
            ReadError::ReservedBits(b) => write!(f, "server frame with RSV bits {b:#05b}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<ProtocolError> for ReadError {
    fn from(e: ProtocolError) -> Self {
        ReadError::Protocol(e)
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Header,
    /// Skipping the rest of a data frame's payload (keeping its first bytes).
    Payload {
        opcode: OpCode,
        fin: bool,
        len: u64,
        remaining: u64,
        head: Prefix,
    },
}

/// Reads server frames from a byte stream fed in arbitrary pieces. Data payloads are counted
/// and skipped (a load generator needs their length, not their bytes); a header or control
/// frame split across reads is carried in a 139-byte array, so it never allocates.
#[derive(Debug, Clone)]
pub struct FrameReader {
    carry: [u8; MAX_HEADER_LEN + MAX_CONTROL],
    have: usize,
    phase: Phase,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

/// What a complete header means for the bytes that follow it.
enum Next {
    /// The frame is complete with this many bytes (control: header + payload).
    Whole(usize),
    /// A data frame with a payload still to skip; the header is this long.
    Payload(usize),
}

impl FrameReader {
    pub const fn new() -> FrameReader {
        FrameReader {
            carry: [0; MAX_HEADER_LEN + MAX_CONTROL],
            have: 0,
            phase: Phase::Header,
        }
    }

    /// True between frames.
    pub fn at_frame_boundary(&self) -> bool {
        matches!(self.phase, Phase::Header) && self.have == 0
    }

    /// Consume bytes from the front of `input`: returns how many were used and the frame
    /// they completed, if any. Call again with the rest until it is empty. Errors are final.
    pub fn feed<'s>(
        &'s mut self,
        input: &'s [u8],
    ) -> Result<(usize, Option<ServerFrame<'s>>), ReadError> {
        if let Phase::Payload {
            opcode,
            fin,
            len,
            remaining,
            head,
        } = &mut self.phase
        {
            let n = (*remaining).min(input.len() as u64);
            *remaining -= n;
            let n = n as usize;
            head.keep(&input[..n]);
            if *remaining > 0 {
                return Ok((n, None));
            }
            let frame = ServerFrame::Data {
                opcode: *opcode,
                fin: *fin,
                len: *len,
                head: *head,
            };
            self.phase = Phase::Header;
            return Ok((n, Some(frame)));
        }
        if self.have == 0 {
            // Common case: the whole header (and control payload) is in this read.
            match examine(input)? {
                Some((h, Next::Whole(n))) if n <= input.len() => {
                    return Ok((n, Some(complete_frame(h, &input[..n]))));
                }
                Some((h, Next::Payload(n))) => {
                    self.start(h);
                    return Ok((n, None));
                }
                _ => {}
            }
        }
        // Slow path: gather into `carry` exactly the bytes the header (and control payload)
        // needs, so nothing after them is consumed.
        let mut used = 0;
        loop {
            let need = match examine(&self.carry[..self.have])? {
                Some((_, Next::Whole(n) | Next::Payload(n))) => n,
                None if self.have < 2 => 2,
                None => header_len(self.carry[0], self.carry[1]),
            };
            if self.have >= need {
                break;
            }
            let take = (need - self.have).min(input.len() - used);
            if take == 0 {
                return Ok((used, None));
            }
            self.carry[self.have..self.have + take].copy_from_slice(&input[used..used + take]);
            self.have += take;
            used += take;
        }
        let have = std::mem::take(&mut self.have);
        match examine(&self.carry[..have])? {
            Some((h, Next::Whole(_))) => Ok((used, Some(complete_frame(h, &self.carry[..have])))),
            Some((h, Next::Payload(_))) => {
                self.start(h);
                Ok((used, None))
            }
            // `need` was met, so the header is complete.
            None => Ok((used, None)),
        }
    }

    /// A data frame's header: skip its payload next; the frame is reported at its end.
    fn start(&mut self, h: FrameHeader) {
        self.phase = Phase::Payload {
            opcode: h.opcode,
            fin: h.fin,
            len: h.payload_len,
            remaining: h.payload_len,
            head: Prefix::default(),
        };
    }
}

fn complete_frame(h: FrameHeader, bytes: &[u8]) -> ServerFrame<'_> {
    let hl = bytes.len() - h.payload_len as usize;
    if h.opcode.is_control() {
        ServerFrame::Control {
            opcode: h.opcode,
            payload: &bytes[hl..],
        }
    } else {
        // Only an empty data frame is reported whole.
        ServerFrame::Data {
            opcode: h.opcode,
            fin: h.fin,
            len: h.payload_len,
            head: Prefix::default(),
        }
    }
}

/// Parse and check the header at the front of `buf` and say how many bytes its frame needs.
fn examine(buf: &[u8]) -> Result<Option<(FrameHeader, Next)>, ReadError> {
    let Some((h, hl)) = parse_header(buf)? else {
        return Ok(None);
    };
    if h.mask.is_some() {
        return Err(ReadError::MaskedServerFrame);
    }
    if h.rsv != 0 {
        return Err(ReadError::ReservedBits(h.rsv));
    }
    // parse_header caps control payloads at 125 bytes; an empty data frame is also whole.
    let next = if h.opcode.is_control() || h.payload_len == 0 {
        Next::Whole(hl + h.payload_len as usize)
    } else {
        Next::Payload(hl)
    };
    Ok(Some((h, next)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Ring;
    use crate::ws::close::parse_close_payload;
    use crate::ws::decode::{DecodeRules, Decoder};

    /// Decode client frames the way the server does: (opcode, fin, unmasked payload).
    fn server_decode(input: &[u8]) -> Vec<(OpCode, bool, Vec<u8>)> {
        let mut rx = Ring::with_capacity(input.len());
        rx.push(input);
        let rules = DecodeRules {
            max_frame_size: 1 << 20,
            allowed_rsv: 0,
        };
        let mut d = Decoder::new();
        let (mut out, mut cur) = (Vec::new(), Vec::new());
        while let Some(p) = d.next(&mut rx, &rules).unwrap() {
            cur.extend_from_slice(p.a);
            cur.extend_from_slice(p.b);
            if p.last {
                out.push((p.opcode, p.fin, std::mem::take(&mut cur)));
            }
        }
        out
    }

    /// An unmasked server frame, built with the project's header encoder.
    fn server_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let h = FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&h, &mut head);
        let mut out = head[..n].to_vec();
        out.extend_from_slice(payload);
        out
    }

    /// Feed `input` in pieces cut at `splits`; collect frames as owned descriptions.
    fn read_all(input: &[u8], splits: &[usize]) -> Result<Vec<String>, ReadError> {
        let mut r = FrameReader::new();
        let mut out = Vec::new();
        let mut bounds = splits.to_vec();
        bounds.push(input.len());
        let mut pos = 0;
        for end in bounds {
            let mut piece = &input[pos..end];
            pos = end;
            while !piece.is_empty() {
                let (n, frame) = r.feed(piece)?;
                assert!(n > 0 || frame.is_some(), "no progress");
                match frame {
                    Some(ServerFrame::Data {
                        opcode,
                        fin,
                        len,
                        head,
                    }) => out.push(format!("{opcode:?} {fin} {len} {:?}", head.as_slice())),
                    Some(ServerFrame::Control { opcode, payload }) => {
                        out.push(format!("{opcode:?} {payload:?}"))
                    }
                    None => {}
                }
                piece = &piece[n..];
            }
        }
        assert!(r.at_frame_boundary());
        Ok(out)
    }

    #[test]
    fn every_split_of_a_mixed_stream() {
        let mut input = server_frame(OpCode::Text, true, b"hello");
        input.extend(server_frame(OpCode::Ping, true, b"abc"));
        let counting: Vec<u8> = (0..=255).chain(0..44).collect();
        input.extend(server_frame(OpCode::Binary, false, &counting));
        input.extend(server_frame(OpCode::Continuation, true, &[]));
        input.extend(server_frame(OpCode::Close, true, &[0x03, 0xe8]));
        // Data frames report their first 16 payload bytes, however the stream is cut.
        let want = vec![
            "Text true 5 [104, 101, 108, 108, 111]".to_string(),
            "Ping [97, 98, 99]".to_string(),
            format!("Binary false 300 {:?}", (0..16).collect::<Vec<u8>>()),
            "Continuation true 0 []".to_string(),
            "Close [3, 232]".to_string(),
        ];
        for a in 0..=input.len() {
            for b in (a..=input.len()).step_by(7) {
                assert_eq!(read_all(&input, &[a, b]).unwrap(), want, "{a} {b}");
            }
        }
    }

    #[test]
    fn large_lengths() {
        for len in [125usize, 126, 65535, 65536, 1 << 20] {
            let input = server_frame(OpCode::Binary, true, &vec![1; len]);
            let splits: Vec<usize> = (1..input.len()).step_by(4093).collect();
            assert_eq!(
                read_all(&input, &splits).unwrap(),
                vec![format!("Binary true {len} {:?}", [1u8; PREFIX])]
            );
        }
    }

    #[test]
    fn refuses_masked_and_broken_server_frames() {
        let mut masked = Vec::new();
        encode_masked(OpCode::Text, b"x", [1, 2, 3, 4], &mut masked);
        assert_eq!(read_all(&masked, &[]), Err(ReadError::MaskedServerFrame));
        assert_eq!(
            read_all(&[0x83, 0x00], &[]),
            Err(ReadError::Protocol(ProtocolError::ReservedOpcode(3)))
        );
        assert_eq!(
            read_all(&[0xC1, 0x00], &[1]),
            Err(ReadError::ReservedBits(0b100))
        );
    }

    #[test]
    fn masked_frames_decode_on_the_server_side() {
        let mut input = Vec::new();
        encode_masked(OpCode::Binary, &[0xAB; 1000], [9, 8, 7, 6], &mut input);
        encode_masked(OpCode::Text, "héllo".as_bytes(), [1, 2, 3, 4], &mut input);
        input.extend(close_frame(1000, [5, 5, 5, 5]));
        let got = server_decode(&input);
        assert_eq!(got[0], (OpCode::Binary, true, vec![0xAB; 1000]));
        assert_eq!(got[1], (OpCode::Text, true, "héllo".as_bytes().to_vec()));
        assert_eq!(got[2].0, OpCode::Close);
        assert_eq!(parse_close_payload(&got[2].2), Ok(Some((1000, ""))));
    }
}
