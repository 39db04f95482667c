//! Owns close frame payloads (RFC 6455 §5.5.1, §7.4): which status codes are allowed on the
//! wire, parsing a received close body and building one to send. Sans-IO, no allocation.
//! Must not: accept a close code RFC 6455 §7.4 forbids on the wire, or allocate.

use super::ProtocolError;

/// §5.5.1: a close reason may use what is left of the 125-byte control payload after the
/// 2-byte status code.
const MAX_REASON_LEN: usize = 123;

/// Codes a peer may send (§7.4.1, §7.4.2): 1000–1003, 1007–1014, 3000–4999. Everything else
/// (0–999, 1004–1006, 1015, 1016–2999, ≥5000) is invalid.
///
/// 1004 is reserved, 1005/1006/1015 must never be sent in a close frame (§7.4.1), 1016–2999 are
/// reserved for future RFCs and 0–999 are unused (§7.4.2). 1012–1014 were registered with IANA
/// after RFC 6455 (Service Restart, Try Again Later, Bad Gateway) and are accepted, as Autobahn
/// 7.7.x expects.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parse a received close payload. `Ok(None)`: empty payload (no status; the app sees 1005).
/// Errors: 1 byte → `CloseFrameOneByte`; invalid code → `InvalidCloseCode(code)`; reason not
/// UTF-8 → `InvalidUtf8` (§5.5.1: the body after the code is UTF-8; §8.1 applies to it).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        // §5.5.1: if there is a body, its first two bytes are the status code.
        [_] => Err(ProtocolError::CloseFrameOneByte),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason =
                simdutf8::basic::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// Build a close payload to send: the 2-byte code + `reason` truncated at a char boundary to
/// fit 123 bytes (§5.5: control payloads are at most 125 bytes). Returns the length written into
/// `out`. Never called with 1005/1006/1015, which §7.4.1 forbids on the wire.
pub fn encode_close_payload(code: u16, reason: &str, out: &mut [u8; 125]) -> usize {
    debug_assert!(
        !matches!(code, 1005 | 1006 | 1015),
        "close code {code} must not be sent"
    );
    out[..2].copy_from_slice(&code.to_be_bytes());

    // Cut at the last char boundary not past the limit so the reason stays valid UTF-8 and the
    // peer does not fail us with 1007. Index 0 is always a boundary, so the loop terminates.
    let mut cut = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let bytes = &reason.as_bytes()[..cut];
    out[2..2 + cut].copy_from_slice(bytes);
    2 + cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_codes() {
        let cases = [
            (0u16, false),
            (999, false),
            (1000, true),
            (1001, true),
            (1002, true),
            (1003, true),
            (1004, false),
            (1005, false),
            (1006, false),
            (1007, true),
            (1011, true),
            (1014, true),
            (1015, false),
            (1016, false),
            (2000, false),
            (2999, false),
            (3000, true),
            (4000, true),
            (4999, true),
            (5000, false),
            (65535, false),
        ];
        for (code, valid) in cases {
            assert_eq!(is_valid_close_code(code), valid, "code {code}");
            let payload = code.to_be_bytes();
            let parsed = parse_close_payload(&payload);
            if valid {
                assert_eq!(parsed, Ok(Some((code, ""))), "code {code}");
            } else {
                assert_eq!(
                    parsed,
                    Err(ProtocolError::InvalidCloseCode(code)),
                    "code {code}"
                );
            }
        }
    }

    #[test]
    fn empty_and_one_byte() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(
            parse_close_payload(&[0x03]),
            Err(ProtocolError::CloseFrameOneByte)
        );
    }

    #[test]
    fn reason_parsed() {
        let mut p = vec![0x03, 0xE8];
        p.extend_from_slice("bye ünïcödé".as_bytes());
        assert_eq!(parse_close_payload(&p), Ok(Some((1000, "bye ünïcödé"))));
    }

    #[test]
    fn invalid_utf8_reason() {
        for bad in [&[0xFFu8][..], &[0xED, 0xA0, 0x80], &[b'a', 0xE2, 0x82]] {
            let mut p = vec![0x03, 0xE8];
            p.extend_from_slice(bad);
            assert_eq!(parse_close_payload(&p), Err(ProtocolError::InvalidUtf8));
        }
        // An invalid code is reported before the reason is looked at.
        assert_eq!(
            parse_close_payload(&[0x03, 0xEC, 0xFF]),
            Err(ProtocolError::InvalidCloseCode(1004))
        );
    }

    #[test]
    fn encode_short_reason() {
        let mut out = [0u8; 125];
        let n = encode_close_payload(1001, "going away", &mut out);
        assert_eq!(n, 12);
        assert_eq!(&out[..2], &[0x03, 0xE9]);
        assert_eq!(
            parse_close_payload(&out[..n]),
            Ok(Some((1001, "going away")))
        );
        assert_eq!(encode_close_payload(1000, "", &mut out), 2);
    }

    #[test]
    fn encode_truncates_at_char_boundary() {
        let mut out = [0u8; 125];
        // 122 ASCII bytes then a 3-byte '€': it does not fit in 123, so it is dropped whole.
        let reason = format!("{}€tail", "a".repeat(122));
        let n = encode_close_payload(1011, &reason, &mut out);
        assert_eq!(n, 2 + 122);
        let (code, text) = parse_close_payload(&out[..n]).unwrap().unwrap();
        assert_eq!(code, 1011);
        assert_eq!(text, "a".repeat(122));

        // Exactly 123 bytes fit exactly.
        let reason = format!("{}€", "b".repeat(120));
        assert_eq!(reason.len(), 123);
        let n = encode_close_payload(1000, &reason, &mut out);
        assert_eq!(n, 125);
        assert_eq!(
            parse_close_payload(&out[..n]),
            Ok(Some((1000, reason.as_str())))
        );

        // Long multi-byte text: result is the longest char-boundary prefix ≤ 123 bytes.
        let reason = "𝄞".repeat(40); // 160 bytes, 4 per char
        let n = encode_close_payload(3000, &reason, &mut out);
        assert_eq!(n, 2 + 120);
        let (_, text) = parse_close_payload(&out[..n]).unwrap().unwrap();
        assert_eq!(text, "𝄞".repeat(30));
    }
}
