//! Owns `Decoder`: turns the bytes in a connection's rx ring into frame pieces, in place. It
//! parses each header (spilling one that straddles the ring's wrap into a 14-byte stack
//! array), enforces the frame-level rules of RFC 6455 §5.2–§5.5, unmasks payload bytes where
//! they lie (§5.3) and lends them out. Sans-IO; it never allocates.
//! Must not: allocate, copy a payload, or let a frame past its limits before its payload is
//! read.

use super::frame::{self, FrameHeader, OpCode, MAX_HEADER_LEN};
use super::mask::apply_mask;
use super::ProtocolError;
use crate::buf::Ring;

/// What the decoder needs to know about the connection (negotiated state and limits).
#[derive(Debug, Clone, Copy)]
pub struct DecodeRules {
    /// Largest frame payload accepted; checked on the header, before any payload is read.
    pub max_frame_size: u64,
    /// RSV bits an extension has claimed (bit 2 = RSV1 for permessage-deflate); others must
    /// be 0 (§5.2).
    pub allowed_rsv: u8,
}

/// A run of payload bytes from one frame, already unmasked, lent from the rx ring.
///
/// A control frame arrives as exactly one piece (it is at most 125 bytes, so the decoder
/// waits for all of it). A data frame arrives as one piece right after its header (possibly
/// empty, so limits are checked before the payload is read), then as many pieces as reads
/// bring. `a` then `b` hold the bytes in order; `b` is non-empty only across the ring's wrap.
#[derive(Debug)]
pub struct Piece<'a> {
    pub opcode: OpCode,
    /// FIN bit of the frame.
    pub fin: bool,
    /// RSV bits of the frame.
    pub rsv: u8,
    /// First piece of this frame.
    pub first: bool,
    /// Last piece of this frame: the payload is complete.
    pub last: bool,
    /// Declared payload length of the whole frame (on the first piece; 0 on later ones).
    pub frame_len: u64,
    pub a: &'a mut [u8],
    pub b: &'a mut [u8],
}

impl Piece<'_> {
    pub fn len(&self) -> usize {
        self.a.len() + self.b.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a frame header.
    Header,
    /// Inside a frame's payload.
    Payload {
        opcode: OpCode,
        fin: bool,
        rsv: u8,
        key: [u8; 4],
        remaining: u64,
        mask_pos: u8,
        started: bool,
    },
}

/// Frame decoder state for one connection: 24 bytes, no heap.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    phase: Phase,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub const fn new() -> Decoder {
        Decoder {
            phase: Phase::Header,
        }
    }

    /// True between frames (no header or payload half-read).
    pub fn at_frame_boundary(&self) -> bool {
        matches!(self.phase, Phase::Header)
    }

    /// The next piece of payload from `rx`, `Ok(None)` when more bytes are needed.
    ///
    /// Errors are final: the connection must be failed with `err.close_code()`.
    pub fn next<'r>(
        &mut self,
        rx: &'r mut Ring,
        rules: &DecodeRules,
    ) -> Result<Option<Piece<'r>>, ProtocolError> {
        if let Phase::Header = self.phase {
            match read_header(rx)? {
                None => return Ok(None),
                Some((h, n)) => {
                    check_header(&h, rules)?;
                    rx.consume(n);
                    // The usual small message: the whole frame is already in the ring's first
                    // slice. Lent at once as a first-and-last piece, with no payload phase.
                    if h.payload_len <= rx.as_slices().0.len() as u64 {
                        let (a, b) = rx.take(h.payload_len as usize);
                        apply_mask(a, h.mask.unwrap_or([0; 4]), 0);
                        return Ok(Some(Piece {
                            opcode: h.opcode,
                            fin: h.fin,
                            rsv: h.rsv,
                            first: true,
                            last: true,
                            frame_len: h.payload_len,
                            a,
                            b,
                        }));
                    }
                    self.phase = Phase::Payload {
                        opcode: h.opcode,
                        fin: h.fin,
                        rsv: h.rsv,
                        key: h.mask.unwrap_or([0; 4]),
                        remaining: h.payload_len,
                        mask_pos: 0,
                        started: false,
                    };
                }
            }
        }
        let Phase::Payload {
            opcode,
            fin,
            rsv,
            key,
            remaining,
            mask_pos,
            started,
        } = &mut self.phase
        else {
            unreachable!("bug: header phase handled above");
        };
        let available = rx.len() as u64;
        let opcode_is_control = opcode.is_control();
        let n = if opcode_is_control {
            // Control payloads are ≤ 125 bytes (checked by parse_header): wait for all of it
            // so the connection can act on the whole frame at once.
            if available < *remaining {
                return Ok(None);
            }
            *remaining
        } else {
            let n = available.min(*remaining);
            // A data frame reports its header at once (an empty first piece) so message
            // limits apply before its payload is read; later pieces need bytes.
            if n == 0 && *started && *remaining > 0 {
                return Ok(None);
            }
            n
        };
        let first = !*started;
        let frame_len = if first { *remaining } else { 0 };
        *started = true;
        *remaining -= n;
        let last = *remaining == 0;
        let piece = Piece {
            opcode: *opcode,
            fin: *fin,
            rsv: *rsv,
            first,
            last,
            frame_len,
            a: &mut [],
            b: &mut [],
        };
        let key = *key;
        let pos = *mask_pos as usize;
        if opcode_is_control && rx.as_slices().0.len() < n as usize {
            // A control payload that straddles the wrap is made contiguous (≤ 125 bytes
            // moved, rarely) so the connection can treat it as one slice.
            rx.make_contiguous();
        }
        let (a, b) = rx.take(n as usize);
        let pos = apply_mask(a, key, pos);
        let pos = apply_mask(b, key, pos);
        if let Phase::Payload { mask_pos, .. } = &mut self.phase {
            *mask_pos = pos as u8;
        }
        if last {
            self.phase = Phase::Header;
        }
        Ok(Some(Piece { a, b, ..piece }))
    }
}

/// Parse the header at the front of `rx` without consuming it, copying it out first when it
/// straddles the wrap (the only copy a header ever costs).
fn read_header(rx: &Ring) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let (a, _) = rx.as_slices();
    if a.len() >= MAX_HEADER_LEN || a.len() == rx.len() {
        return frame::parse_header(a);
    }
    let mut spill = [0u8; MAX_HEADER_LEN];
    let n = rx.peek_into(&mut spill);
    frame::parse_header(&spill[..n])
}

/// The checks that depend on the connection rather than on the header alone.
fn check_header(h: &FrameHeader, rules: &DecodeRules) -> Result<(), ProtocolError> {
    // §5.2: RSV bits must be 0 unless a negotiated extension defines them.
    if h.rsv & !rules.allowed_rsv != 0 {
        return Err(ProtocolError::ReservedBits(h.rsv));
    }
    // RFC 7692 §6: RSV1 marks a compressed *message*, so only its first data frame has it.
    if h.rsv != 0 && (h.opcode.is_control() || h.opcode == OpCode::Continuation) {
        return Err(ProtocolError::ReservedBits(h.rsv));
    }
    // §5.1: "a client MUST mask all frames that it sends to the server"; the server MUST
    // close the connection on an unmasked frame.
    if h.mask.is_none() {
        return Err(ProtocolError::UnmaskedFrame);
    }
    // Refuse an oversized frame from its header, before reading or allocating anything.
    if h.payload_len > rules.max_frame_size {
        return Err(ProtocolError::FrameTooLarge {
            size: h.payload_len,
            max: rules.max_frame_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: DecodeRules = DecodeRules {
        max_frame_size: 1 << 20,
        allowed_rsv: 0,
    };

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(if fin { 0x80 } else { 0 } | opcode);
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len < 65536 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    /// Feed `input` into a ring of `cap` bytes whose head starts at `offset`, in chunks
    /// split at `splits`, collecting (opcode, fin, payload) for each completed frame.
    pub(crate) fn decode_all(
        input: &[u8],
        cap: usize,
        offset: usize,
        splits: &[usize],
    ) -> Result<Vec<(OpCode, bool, Vec<u8>)>, ProtocolError> {
        let mut rx = Ring::with_capacity(cap);
        rx.clear_at(offset);
        let mut d = Decoder::new();
        let (mut out, mut cur) = (Vec::new(), Vec::new());
        let mut bounds: Vec<usize> = splits.to_vec();
        bounds.push(input.len());
        let mut pos = 0;
        for end in bounds {
            while pos < end {
                let n = rx.free().min(end - pos);
                rx.push(&input[pos..pos + n]);
                pos += n;
                while let Some(p) = d.next(&mut rx, &RULES)? {
                    cur.extend_from_slice(p.a);
                    cur.extend_from_slice(p.b);
                    if p.last {
                        out.push((p.opcode, p.fin, std::mem::take(&mut cur)));
                    }
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn rfc_5_7_masked_hello_at_every_split_and_offset() {
        // RFC 6455 §5.7: "A single-frame masked text message".
        let input = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        for offset in 0..16 {
            for split in 0..=input.len() {
                let got = decode_all(&input, 16, offset, &[split]).unwrap();
                assert_eq!(
                    got,
                    vec![(OpCode::Text, true, b"Hello".to_vec())],
                    "off {offset} split {split}"
                );
            }
        }
    }

    #[test]
    fn fragments_and_interleaved_control_at_every_split() {
        let k = [1, 2, 3, 4];
        let mut input = frame(false, 1, b"Hel", k);
        input.extend(frame(true, 9, b"ping!", k));
        input.extend(frame(true, 0, b"lo", k));
        let want = vec![
            (OpCode::Text, false, b"Hel".to_vec()),
            (OpCode::Ping, true, b"ping!".to_vec()),
            (OpCode::Continuation, true, b"lo".to_vec()),
        ];
        for offset in [0, 5, 31, 60] {
            for a in 0..=input.len() {
                for b in a..=input.len() {
                    let got = decode_all(&input, 64, offset, &[a, b]).unwrap();
                    assert_eq!(got, want, "offset {offset} splits {a},{b}");
                }
            }
        }
    }

    #[test]
    fn all_length_forms_through_a_small_ring() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let input = frame(true, 2, &payload, [9, 8, 7, 6]);
            let splits: Vec<usize> = (1..input.len()).step_by(997).collect();
            let got = decode_all(&input, 1024, 100, &splits).unwrap();
            assert_eq!(got, vec![(OpCode::Binary, true, payload)], "len {len}");
        }
    }

    #[test]
    fn connection_level_violations() {
        let mut unmasked = frame(true, 1, b"hi", [0; 4]);
        unmasked[1] &= 0x7f;
        unmasked.truncate(2);
        unmasked.extend_from_slice(b"hi");
        assert_eq!(
            decode_all(&unmasked, 64, 0, &[]),
            Err(ProtocolError::UnmaskedFrame)
        );
        let mut rsv = frame(true, 1, b"hi", [1; 4]);
        rsv[0] |= 0x40;
        assert_eq!(
            decode_all(&rsv, 64, 0, &[]),
            Err(ProtocolError::ReservedBits(4))
        );
        let big = [0x82, 0xFF, 0, 0, 0, 0, 0x10, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(
            decode_all(&big, 64, 0, &[]),
            Err(ProtocolError::FrameTooLarge {
                size: 0x1000_0000,
                max: 1 << 20
            })
        );
    }
}
