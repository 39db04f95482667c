//! Owns the frame header wire format (RFC 6455 §5.2): opcodes, parsing a header from the front
//! of a byte buffer and encoding one for sending. Sans-IO: pure functions over byte slices; the
//! payload itself is handled by the decoder.
//! Must not: look at payload bytes.

use super::ProtocolError;

/// Frame opcode (§5.2). 0x3–0x7 and 0xB–0xF are reserved and rejected by [`OpCode::from_u8`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    /// §5.5: control frames are those whose opcode has the most significant bit set.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    /// Decode the low 4 bits of the first header byte. §5.2: reserved opcodes must fail the
    /// connection.
    pub fn from_u8(v: u8) -> Result<OpCode, ProtocolError> {
        match v {
            0x0 => Ok(OpCode::Continuation),
            0x1 => Ok(OpCode::Text),
            0x2 => Ok(OpCode::Binary),
            0x8 => Ok(OpCode::Close),
            0x9 => Ok(OpCode::Ping),
            0xA => Ok(OpCode::Pong),
            other => Err(ProtocolError::ReservedOpcode(other)),
        }
    }
}

/// A decoded frame header (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// The three reserved bits as `rsv1 << 2 | rsv2 << 1 | rsv3`.
    pub rsv: u8,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// Longest header: 2 + 8 + 4.
pub const MAX_HEADER_LEN: usize = 14;

const FIN_BIT: u8 = 0x80;
const MASK_BIT: u8 = 0x80;
/// §5.2: 7-bit length values 126 and 127 announce a 16-bit and a 64-bit extended length.
const LEN_16: u8 = 126;
const LEN_64: u8 = 127;
/// §5.5: the largest payload a control frame may carry.
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Parse a header at the start of `buf`. `Ok(None)`: need more bytes.
/// `Ok(Some((header, header_len)))`: the header occupies `buf[..header_len]`.
///
/// Errors it detects by itself: `ReservedOpcode`, `LengthTopBitSet` (64-bit form with the MSB
/// set), `ControlFrameTooLong` (payload > 125), `FragmentedControlFrame` (control with FIN=0).
/// Opcode and fragmentation errors are reported from the first byte alone (fail fast). It does
/// NOT check masking or RSV bits (that depends on role and negotiated extensions) and accepts
/// non-minimal length encodings. Never reads past the header and never panics.
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    let fin = b0 & FIN_BIT != 0;
    let rsv = (b0 >> 4) & 0x7;
    let opcode = OpCode::from_u8(b0 & 0x0F)?;
    // §5.5: "Control frames themselves MUST NOT be fragmented."
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControlFrame);
    }

    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let len = header_len(b0, b1);
    let Some(header) = buf.get(..len) else {
        return Ok(None);
    };

    let len7 = b1 & 0x7F;
    let (payload_len, ext_len) = match len7 {
        LEN_16 => (read_be(header, 2, 2), 2),
        LEN_64 => {
            let n = read_be(header, 2, 8);
            // §5.2: "the most significant bit MUST be 0".
            if n >> 63 != 0 {
                return Err(ProtocolError::LengthTopBitSet);
            }
            (n, 8)
        }
        n => (u64::from(n), 0),
    };

    // §5.5: "All control frames MUST have a payload length of 125 bytes or less."
    if opcode.is_control() && payload_len > MAX_CONTROL_PAYLOAD {
        return Err(ProtocolError::ControlFrameTooLong(payload_len));
    }

    let mask = if b1 & MASK_BIT != 0 {
        let at = 2 + ext_len;
        let mut key = [0u8; 4];
        // `header` is exactly `len` = at + 4 bytes long, so this range is in bounds; the
        // `get` keeps the code panic-free regardless.
        if let Some(k) = header.get(at..at + 4) {
            key.copy_from_slice(k);
        }
        Some(key)
    } else {
        None
    };

    Ok(Some((
        FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        },
        len,
    )))
}

/// Big-endian unsigned integer of `n` (≤ 8) bytes at `buf[at..]`; missing bytes read as 0
/// (callers pass a slice already checked to be long enough).
fn read_be(buf: &[u8], at: usize, n: usize) -> u64 {
    buf.iter()
        .skip(at)
        .take(n)
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Bytes the header occupies given its first two bytes (2, 4 or 10, +4 if masked), so a caller
/// knows how much to gather before calling [`parse_header`].
pub fn header_len(b0: u8, b1: u8) -> usize {
    // The first byte does not affect the length; it is taken so callers can pass both bytes
    // they have without caring which one matters.
    let _ = b0;
    let ext = match b1 & 0x7F {
        LEN_16 => 2,
        LEN_64 => 8,
        _ => 0,
    };
    let mask = if b1 & MASK_BIT != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Encode a header into `out`; returns the number of bytes written. Uses the minimal length
/// form (§5.2: "the minimal number of bytes MUST be used to encode the length").
pub fn encode_header(h: &FrameHeader, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    // §5.2: the 64-bit length must have its top bit clear; a payload that large cannot exist.
    debug_assert!(h.payload_len >> 63 == 0, "payload length with top bit set");
    debug_assert!(h.rsv <= 0x7, "rsv holds three bits");

    let fin = if h.fin { FIN_BIT } else { 0 };
    out[0] = fin | ((h.rsv & 0x7) << 4) | (h.opcode as u8);
    let mask_bit = if h.mask.is_some() { MASK_BIT } else { 0 };

    let mut n = 2;
    if h.payload_len < u64::from(LEN_16) {
        out[1] = mask_bit | h.payload_len as u8;
    } else if let Ok(len16) = u16::try_from(h.payload_len) {
        out[1] = mask_bit | LEN_16;
        out[2..4].copy_from_slice(&len16.to_be_bytes());
        n = 4;
    } else {
        out[1] = mask_bit | LEN_64;
        out[2..10].copy_from_slice(&h.payload_len.to_be_bytes());
        n = 10;
    }

    if let Some(key) = h.mask {
        out[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::mask::apply_mask;
    use proptest::prelude::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn hdr(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload_len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len,
        }
    }

    /// An RFC 6455 §5.7 example: (frame bytes, expected header, expected header length,
    /// expected unmasked payload if it is not a filler pattern).
    type Vector = (Vec<u8>, FrameHeader, usize, Option<&'static [u8]>);

    fn rfc_vectors() -> Vec<Vector> {
        let mut v = vec![
            (
                vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                hdr(true, OpCode::Text, None, 5),
                2,
                Some(&b"Hello"[..]),
            ),
            (
                vec![
                    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                ],
                hdr(true, OpCode::Text, Some(KEY), 5),
                6,
                Some(&b"Hello"[..]),
            ),
            (
                vec![0x01, 0x03, 0x48, 0x65, 0x6c],
                hdr(false, OpCode::Text, None, 3),
                2,
                Some(&b"Hel"[..]),
            ),
            (
                vec![0x80, 0x02, 0x6c, 0x6f],
                hdr(true, OpCode::Continuation, None, 2),
                2,
                Some(&b"lo"[..]),
            ),
            (
                vec![0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                hdr(true, OpCode::Ping, None, 5),
                2,
                Some(&b"Hello"[..]),
            ),
            (
                vec![
                    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                ],
                hdr(true, OpCode::Pong, Some(KEY), 5),
                6,
                Some(&b"Hello"[..]),
            ),
        ];
        let mut f256 = vec![0x82, 0x7E, 0x01, 0x00];
        f256.extend(std::iter::repeat_n(0xAB, 256));
        v.push((f256, hdr(true, OpCode::Binary, None, 256), 4, None));
        let mut f64k = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        f64k.extend(std::iter::repeat_n(0xCD, 65536));
        v.push((f64k, hdr(true, OpCode::Binary, None, 65536), 10, None));
        v
    }

    #[test]
    fn rfc_examples_parse() {
        for (bytes, want, want_len, payload) in rfc_vectors() {
            let (h, n) = parse_header(&bytes).unwrap().unwrap();
            assert_eq!(h, want, "{:02x?}", &bytes[..want_len]);
            assert_eq!(n, want_len);
            assert_eq!(header_len(bytes[0], bytes[1]), want_len);
            let body = &bytes[n..];
            assert_eq!(body.len() as u64, h.payload_len);
            let mut body = body.to_vec();
            if let Some(key) = h.mask {
                apply_mask(&mut body, key, 0);
            }
            match payload {
                Some(p) => assert_eq!(body, p),
                None => assert!(body.iter().all(|&b| b == body[0])),
            }
            // Encoding the parsed header reproduces the wire bytes (all vectors are minimal).
            let mut out = [0u8; MAX_HEADER_LEN];
            let m = encode_header(&h, &mut out);
            assert_eq!(&out[..m], &bytes[..n]);
        }
    }

    #[test]
    fn truncated_headers_need_more() {
        for (bytes, _, want_len, _) in rfc_vectors() {
            for cut in 0..want_len {
                assert_eq!(parse_header(&bytes[..cut]), Ok(None), "cut {cut}");
            }
            assert!(parse_header(&bytes[..want_len]).unwrap().is_some());
        }
    }

    #[test]
    fn round_trip_lengths() {
        let cases = [
            (0u64, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (1 << 32, 10),
            ((1 << 63) - 1, 10),
        ];
        for (len, base) in cases {
            for mask in [None, Some([1, 2, 3, 4])] {
                for (fin, rsv) in [(true, 0), (false, 0b101)] {
                    let h = FrameHeader {
                        fin,
                        rsv,
                        opcode: OpCode::Binary,
                        mask,
                        payload_len: len,
                    };
                    let mut out = [0u8; MAX_HEADER_LEN];
                    let n = encode_header(&h, &mut out);
                    let want = base + if mask.is_some() { 4 } else { 0 };
                    assert_eq!(n, want, "len {len}");
                    assert_eq!(header_len(out[0], out[1]), n);
                    assert_eq!(parse_header(&out[..n]), Ok(Some((h, n))));
                    // Extra bytes after the header are not consumed.
                    assert_eq!(parse_header(&out), Ok(Some((h, n))));
                }
            }
        }
    }

    #[test]
    fn non_minimal_length_accepted() {
        // Length 5 in the 16-bit form and in the 64-bit form.
        let h16 = parse_header(&[0x82, 0x7E, 0x00, 0x05]).unwrap().unwrap();
        assert_eq!((h16.0.payload_len, h16.1), (5, 4));
        let h64 = parse_header(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5])
            .unwrap()
            .unwrap();
        assert_eq!((h64.0.payload_len, h64.1), (5, 10));
    }

    #[test]
    fn rsv_bits_reported_not_rejected() {
        let (h, _) = parse_header(&[0xF1, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b111);
        let (h, _) = parse_header(&[0xC1, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b100);
        let (h, _) = parse_header(&[0x91, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b001);
    }

    #[test]
    fn error_variants() {
        for op in [0x3u8, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                parse_header(&[0x80 | op]),
                Err(ProtocolError::ReservedOpcode(op))
            );
            assert_eq!(OpCode::from_u8(op), Err(ProtocolError::ReservedOpcode(op)));
        }
        assert_eq!(
            parse_header(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthTopBitSet)
        );
        assert_eq!(
            parse_header(&[0x89, 0x7E]),
            Ok(None),
            "extended control length is read before judging it"
        );
        assert_eq!(
            parse_header(&[0x89, 0x7E, 0x00, 0x7E]),
            Err(ProtocolError::ControlFrameTooLong(126))
        );
        assert_eq!(
            parse_header(&[0x88, 0x7F, 0, 0, 0, 0, 0, 0, 0x01, 0x00]),
            Err(ProtocolError::ControlFrameTooLong(256))
        );
        // A control frame of exactly 125 bytes is fine.
        assert!(parse_header(&[0x8A, 0x7D]).unwrap().is_some());
        for op in [0x8u8, 0x9, 0xA] {
            assert_eq!(
                parse_header(&[op]),
                Err(ProtocolError::FragmentedControlFrame)
            );
        }
    }

    #[test]
    fn opcode_classes() {
        for (op, ctl) in [
            (OpCode::Continuation, false),
            (OpCode::Text, false),
            (OpCode::Binary, false),
            (OpCode::Close, true),
            (OpCode::Ping, true),
            (OpCode::Pong, true),
        ] {
            assert_eq!(op.is_control(), ctl);
            assert_eq!(OpCode::from_u8(op as u8), Ok(op));
        }
    }

    fn opcode() -> impl Strategy<Value = OpCode> {
        prop_oneof![
            Just(OpCode::Continuation),
            Just(OpCode::Text),
            Just(OpCode::Binary),
            Just(OpCode::Close),
            Just(OpCode::Ping),
            Just(OpCode::Pong),
        ]
    }

    proptest! {
        #[test]
        fn prop_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            if let Ok(Some((h, n))) = parse_header(&bytes) {
                prop_assert!(n <= bytes.len());
                prop_assert!(n <= MAX_HEADER_LEN);
                prop_assert_eq!(n, header_len(bytes[0], bytes[1]));
                prop_assert!(h.payload_len >> 63 == 0);
            }
        }

        #[test]
        fn prop_encode_parse_round_trip(
            fin in any::<bool>(),
            rsv in 0u8..8,
            op in opcode(),
            mask in proptest::option::of(any::<[u8; 4]>()),
            len in prop_oneof![0u64..300, 60000u64..70000, 0u64..(1 << 63)],
        ) {
            // Control frames must be final and short to be parseable at all.
            let (fin, len) = if op.is_control() { (true, len % 126) } else { (fin, len) };
            let h = FrameHeader { fin, rsv, opcode: op, mask, payload_len: len };
            let mut out = [0u8; MAX_HEADER_LEN];
            let n = encode_header(&h, &mut out);
            prop_assert_eq!(parse_header(&out[..n]), Ok(Some((h, n))));
            for cut in 0..n {
                prop_assert_eq!(parse_header(&out[..cut]), Ok(None));
            }
        }
    }
}
