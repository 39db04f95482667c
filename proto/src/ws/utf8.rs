//! Owns incremental, fail-fast UTF-8 validation of text messages and close reasons (RFC 6455
//! §8.1, §5.6). Sans-IO: it is fed byte chunks as they are unmasked and keeps only the bytes of
//! one incomplete code point between chunks.
//! Must not: buffer more than one incomplete code point, or accept what `std::str::from_utf8`
//! rejects.

use super::ProtocolError;

/// Validates a text message chunk by chunk.
///
/// §8.1: an endpoint that receives invalid UTF-8 in a text message must fail the connection.
/// Autobahn 6.4.x additionally expects the failure as soon as the bytes seen so far cannot be a
/// prefix of valid UTF-8, even in the middle of a frame, so `feed` rejects eagerly rather than
/// at the end of the message.
///
/// State is the (at most 3) bytes of a code point that is a valid prefix but not yet complete.
/// Bytes past `len` are always zero so that derived equality is meaningful.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    pending: [u8; 3],
    len: u8,
}

/// Total length of the code point whose first byte is `b`. Only called on a byte that already
/// began a valid prefix, so the invalid leads (80–C1, F5–FF) never reach it; they map to 1,
/// which simply makes the completion step re-validate and fail.
fn sequence_len(b: u8) -> usize {
    match b {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

impl Utf8Validator {
    pub const fn new() -> Self {
        Utf8Validator {
            pending: [0; 3],
            len: 0,
        }
    }

    /// Feed the next chunk. `Err(ProtocolError::InvalidUtf8)` as soon as the bytes seen so far
    /// cannot be a prefix of valid UTF-8 (e.g. `F4 90` fails at once, a lone `E2 82` is
    /// pending). After an error the state is unspecified; call `reset` before reuse.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        let mut rest = chunk;

        // First finish the code point left incomplete by the previous chunk, in a small
        // stack buffer, so the bulk check below can start on a code point boundary.
        if self.len > 0 {
            let have = usize::from(self.len);
            let need = sequence_len(self.pending[0]).saturating_sub(have);
            let take = need.min(rest.len());
            let (head, tail) = rest.split_at(take);

            let mut joined = [0u8; 4];
            joined[..have].copy_from_slice(&self.pending[..have]);
            joined[have..have + take].copy_from_slice(head);
            match simdutf8::compat::from_utf8(&joined[..have + take]) {
                Ok(_) => {
                    self.reset();
                    rest = tail;
                }
                Err(e) if e.error_len().is_some() => return Err(ProtocolError::InvalidUtf8),
                Err(_) => {
                    // Still a valid but incomplete prefix: the chunk ran out before the code
                    // point did (take == rest.len()).
                    self.store(&joined[..have + take]);
                    return Ok(());
                }
            }
        }

        match simdutf8::compat::from_utf8(rest) {
            Ok(_) => Ok(()),
            // `error_len() == Some(_)`: a byte that no continuation can make valid.
            Err(e) if e.error_len().is_some() => Err(ProtocolError::InvalidUtf8),
            // `None`: the input ends inside a code point that is valid so far; keep it.
            Err(e) => {
                let tail = rest.get(e.valid_up_to()..).unwrap_or(&[]);
                self.store(tail);
                Ok(())
            }
        }
    }

    /// True when no incomplete code point is pending (a message may end here).
    pub fn is_complete(&self) -> bool {
        self.len == 0
    }

    /// `feed` + require completion: for a whole message or close reason given at once.
    pub fn validate_all(bytes: &[u8]) -> Result<(), ProtocolError> {
        // The whole input is available, so the non-incremental check (faster `basic` variant,
        // no error position needed) gives the same answer.
        simdutf8::basic::from_utf8(bytes)
            .map(|_| ())
            .map_err(|_| ProtocolError::InvalidUtf8)
    }

    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Keep an incomplete code point (at most 3 bytes by construction: a 4th byte would either
    /// complete it or be reported invalid).
    fn store(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= 3);
        let n = bytes.len().min(3);
        self.pending = [0; 3];
        self.pending[..n].copy_from_slice(&bytes[..n]);
        self.len = n as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Index of the first byte at which std knows `bytes` cannot be (a prefix of) valid UTF-8,
    /// or None when it is valid or a valid prefix. std's `valid_up_to() + error_len()` points
    /// either at the offending byte itself (a lone continuation or an impossible lead) or just
    /// past it, so the exact position is found as the shortest prefix std rejects outright.
    fn first_bad_byte(bytes: &[u8]) -> Option<usize> {
        let e = std::str::from_utf8(bytes).err()?;
        let n = e.error_len()?;
        let upper = e.valid_up_to() + n;
        (e.valid_up_to()..=upper.min(bytes.len() - 1)).find(|&k| {
            std::str::from_utf8(&bytes[..=k])
                .err()
                .is_some_and(|e| e.error_len().is_some())
        })
    }

    /// Feed `bytes` in the pieces delimited by `cuts` and check the result against std:
    /// accept iff std accepts the whole, and fail no later than the piece holding the first bad
    /// byte.
    fn check_split(bytes: &[u8], cuts: &[usize]) {
        let whole_ok = std::str::from_utf8(bytes).is_ok();
        let bad = first_bad_byte(bytes);
        let mut v = Utf8Validator::new();
        let mut start = 0;
        let mut failed_at_piece_end = None;
        let mut bounds: Vec<usize> = cuts.to_vec();
        bounds.push(bytes.len());
        for &end in &bounds {
            if v.feed(&bytes[start..end]).is_err() {
                failed_at_piece_end = Some(end);
                break;
            }
            start = end;
        }
        match failed_at_piece_end {
            Some(end) => {
                let bad = bad.unwrap_or_else(|| panic!("{bytes:02x?} {cuts:?}: spurious error"));
                // Fail-fast: the failing piece must contain the first bad byte.
                assert!(
                    start <= bad && bad < end,
                    "{bytes:02x?} {cuts:?}: failed in piece {start}..{end}, first bad byte {bad}"
                );
                assert!(!whole_ok);
            }
            None => {
                assert_eq!(
                    bad, None,
                    "{bytes:02x?} {cuts:?}: invalid byte not reported"
                );
                assert_eq!(
                    v.is_complete(),
                    whole_ok,
                    "{bytes:02x?} {cuts:?}: completion disagrees with std"
                );
            }
        }
        assert_eq!(Utf8Validator::validate_all(bytes).is_ok(), whole_ok);
    }

    fn check_all_splits(bytes: &[u8]) {
        check_split(bytes, &[]);
        for i in 0..=bytes.len() {
            check_split(bytes, &[i]);
        }
        // Every single-byte feed: the strictest fail-fast check.
        let singles: Vec<usize> = (1..bytes.len()).collect();
        check_split(bytes, &singles);
        if bytes.len() <= 24 {
            for i in 0..=bytes.len() {
                for j in i..=bytes.len() {
                    check_split(bytes, &[i, j]);
                }
            }
        }
    }

    fn cases() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0\xC3\xA1-UTF-8!!".to_vec(),
            "κόσμε".as_bytes().to_vec(),
            "€ 𝄞 日本語 \u{10FFFF} \u{FFFF} \u{E000} \u{D7FF}"
                .as_bytes()
                .to_vec(),
            // Autobahn 6.3: valid prefix then invalid (ED A0 80 is a surrogate).
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited".to_vec(),
            // Boundary code points, first/last of each length.
            vec![0x00],
            vec![0x7F],
            vec![0xC2, 0x80],
            vec![0xDF, 0xBF],
            vec![0xE0, 0xA0, 0x80],
            vec![0xEF, 0xBF, 0xBF],
            vec![0xF0, 0x90, 0x80, 0x80],
            vec![0xF4, 0x8F, 0xBF, 0xBF],
            // > U+10FFFF.
            vec![0xF4, 0x90, 0x80, 0x80],
            vec![0xF5, 0x80, 0x80, 0x80],
            vec![0xF7, 0xBF, 0xBF, 0xBF],
            // 5- and 6-byte forms.
            vec![0xF8, 0x88, 0x80, 0x80, 0x80],
            vec![0xFB, 0xBF, 0xBF, 0xBF, 0xBF],
            vec![0xFC, 0x84, 0x80, 0x80, 0x80, 0x80],
            vec![0xFD, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF],
            // Lone continuation bytes.
            vec![0x80],
            vec![0xBF],
            vec![0x80, 0xBF, 0x80, 0xBF],
            // Lone start bytes followed by space (Autobahn 6.8/6.9 style).
            vec![0xC0, 0x20, 0xC1, 0x20, 0xDF, 0x20],
            vec![0xE0, 0x20, 0xEF, 0x20],
            vec![0xF0, 0x20, 0xF7, 0x20],
            // Truncated sequences (last continuation missing).
            vec![0xC2],
            vec![0xE0, 0xA0],
            vec![0xE2, 0x82],
            vec![0xF0, 0x90, 0x80],
            vec![0xF4, 0x8F, 0xBF],
            b"abc\xE2\x82".to_vec(),
            // Concatenation of truncated sequences.
            vec![
                0xC0, 0xE0, 0x80, 0xF0, 0x80, 0x80, 0xDF, 0xEF, 0xBF, 0xF7, 0xBF, 0xBF,
            ],
            // FE / FF.
            vec![0xFE],
            vec![0xFF],
            vec![0xFE, 0xFE, 0xFF, 0xFF],
            // Overlongs.
            vec![0xC0, 0xAF],
            vec![0xE0, 0x80, 0xAF],
            vec![0xF0, 0x80, 0x80, 0xAF],
            vec![0xC1, 0xBF],
            vec![0xE0, 0x9F, 0xBF],
            vec![0xF0, 0x8F, 0xBF, 0xBF],
            vec![0xC0, 0x80],
            vec![0xE0, 0x80, 0x80],
            vec![0xF0, 0x80, 0x80, 0x80],
            // UTF-16 surrogates, single and paired.
            vec![0xED, 0xA0, 0x80],
            vec![0xED, 0xAD, 0xBF],
            vec![0xED, 0xAE, 0x80],
            vec![0xED, 0xBF, 0xBF],
            vec![0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80],
            vec![0xED, 0xAF, 0xBF, 0xED, 0xBF, 0xBF],
            // Noncharacters are valid UTF-8.
            vec![0xEF, 0xBF, 0xBE],
            vec![0xF4, 0x8F, 0xBF, 0xBE],
            // Invalid right after a pending code point.
            vec![0xE2, 0x82, 0x41],
            vec![0xF0, 0x90, 0x41],
            vec![0xF0, 0x41],
        ];
        // A long valid text so the bulk path and carry across it are exercised.
        v.push("ab€𝄞ß".repeat(20).into_bytes());
        let mut long_bad = "xyz€".repeat(20).into_bytes();
        long_bad.extend_from_slice(&[0xF4, 0x90, 0x80, 0x80]);
        long_bad.extend_from_slice(b"tail");
        v.push(long_bad);
        v
    }

    #[test]
    fn differential_against_std_at_every_split() {
        for case in cases() {
            check_all_splits(&case);
        }
    }

    #[test]
    fn fails_fast_on_f4_90() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xF4]), Ok(()));
        assert!(!v.is_complete());
        assert_eq!(v.feed(&[0x90]), Err(ProtocolError::InvalidUtf8));

        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xF4, 0x90]), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn pending_then_complete() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xE2, 0x82]), Ok(()));
        assert!(!v.is_complete());
        assert_eq!(v.feed(&[0xAC]), Ok(()));
        assert!(v.is_complete());
        assert_eq!(v, Utf8Validator::new());
        // One byte at a time across a 4-byte code point.
        for b in [0xF0, 0x9D, 0x84] {
            assert_eq!(v.feed(&[b]), Ok(()));
            assert!(!v.is_complete());
        }
        assert_eq!(v.feed(&[0x9E, b'x']), Ok(()));
        assert!(v.is_complete());
        // Empty chunks change nothing.
        assert_eq!(v.feed(&[]), Ok(()));
        assert!(v.is_complete());
    }

    #[test]
    fn reset_clears_pending() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xE2]).unwrap();
        v.reset();
        assert!(v.is_complete());
        assert_eq!(v.feed(b"ok"), Ok(()));
    }

    #[test]
    fn state_is_small() {
        assert!(std::mem::size_of::<Utf8Validator>() <= 8);
    }

    #[test]
    fn validate_all_requires_completion() {
        assert_eq!(Utf8Validator::validate_all("héllo".as_bytes()), Ok(()));
        assert_eq!(
            Utf8Validator::validate_all(&[0xE2, 0x82]),
            Err(ProtocolError::InvalidUtf8)
        );
        assert_eq!(
            Utf8Validator::validate_all(&[0xED, 0xA0, 0x80]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    /// Byte vectors biased towards UTF-8 structure so that multi-byte paths get hit often.
    fn utf8ish() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            3 => 0x00u8..0x80,
            3 => 0x80u8..0xC0,
            1 => 0xC0u8..0xE0,
            1 => 0xE0u8..0xF0,
            1 => 0xF0u8..=0xFF,
        ];
        prop_oneof![
            proptest::collection::vec(byte, 0..40),
            proptest::collection::vec(any::<u8>(), 0..40),
            ".{0,20}".prop_map(|s: String| s.into_bytes()),
        ]
    }

    proptest! {
        #[test]
        fn prop_random_bytes_random_splits(
            bytes in utf8ish(),
            raw_cuts in proptest::collection::vec(any::<usize>(), 0..5),
        ) {
            let mut cuts: Vec<usize> = raw_cuts
                .into_iter()
                .map(|c| c % (bytes.len() + 1))
                .collect();
            cuts.sort_unstable();
            check_split(&bytes, &cuts);
        }
    }
}
