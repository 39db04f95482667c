//! Owns the `utf8` and `close_payload` properties. `utf8`: the incremental validator agrees
//! with `std::str::from_utf8` at every split of the input (accepts exactly what std accepts,
//! fails in the very piece that holds the first impossible byte, ends complete exactly when std
//! accepts the whole). `close_payload`: parsing a close body agrees with RFC 6455 §5.5.1/§7.4
//! restated here, and encoding one round-trips, truncated at a char boundary.
//! Must not: use the validator's code as its oracle (std is the oracle).

use crate::ws::close::{encode_close_payload, parse_close_payload};
use crate::ws::utf8::Utf8Validator;
use crate::ws::ProtocolError;

/// Inputs up to this length are checked at every single split and every pair of splits up to a
/// quarter of it; longer ones at every single split only.
const EVERY_PAIR_UP_TO: usize = 64;

pub fn utf8(data: &[u8]) {
    let bytes = data;
    check_split(bytes, &[]);
    for i in 0..=bytes.len() {
        check_split(bytes, &[i]);
    }
    let singles: Vec<usize> = (1..bytes.len()).collect();
    check_split(bytes, &singles);
    if bytes.len() <= EVERY_PAIR_UP_TO {
        for i in 0..=bytes.len() {
            for j in i..=bytes.len().min(i + EVERY_PAIR_UP_TO / 4) {
                check_split(bytes, &[i, j]);
            }
        }
    }
    assert_eq!(
        Utf8Validator::validate_all(bytes).is_ok(),
        std::str::from_utf8(bytes).is_ok()
    );
}

/// Index of the first byte at which `bytes` can no longer be a prefix of valid UTF-8, by std:
/// the shortest prefix std rejects with a definite error (`error_len() == Some`).
fn first_bad_byte(bytes: &[u8]) -> Option<usize> {
    let e = std::str::from_utf8(bytes).err()?;
    e.error_len()?;
    (e.valid_up_to()..bytes.len()).find(|&k| {
        std::str::from_utf8(&bytes[..=k])
            .err()
            .is_some_and(|e| e.error_len().is_some())
    })
}

fn check_split(bytes: &[u8], cuts: &[usize]) {
    let whole_ok = std::str::from_utf8(bytes).is_ok();
    let bad = first_bad_byte(bytes);
    let mut v = Utf8Validator::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([bytes.len()]) {
        if v.feed(&bytes[start..end]).is_err() {
            let bad = bad.unwrap_or_else(|| panic!("{bytes:02x?} cut {cuts:?}: spurious error"));
            assert!(
                start <= bad && bad < end,
                "{bytes:02x?} cut {cuts:?}: failed in {start}..{end}, first bad byte at {bad}"
            );
            return;
        }
        start = end;
    }
    assert_eq!(
        bad, None,
        "{bytes:02x?} cut {cuts:?}: bad byte not reported"
    );
    assert_eq!(
        v.is_complete(),
        whole_ok,
        "{bytes:02x?} cut {cuts:?}: completion differs from std"
    );
}

/// RFC 6455 §7.4.1/§7.4.2 plus the IANA registrations 1012–1014: what may be received.
fn code_allowed(code: u16) -> bool {
    (1000..=1003).contains(&code) || (1007..=1014).contains(&code) || (3000..=4999).contains(&code)
}

pub fn close_payload(data: &[u8]) {
    let want = match data {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseFrameOneByte),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !code_allowed(code) {
                Err(ProtocolError::InvalidCloseCode(code))
            } else {
                std::str::from_utf8(reason)
                    .map(|r| Some((code, r)))
                    .map_err(|_| ProtocolError::InvalidUtf8)
            }
        }
    };
    assert_eq!(parse_close_payload(data), want);

    // Encoding: any sendable code and any reason round-trip, the reason cut at a char boundary
    // to the longest prefix that fits 123 bytes.
    let raw = u16::from_be_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ]);
    let code = match raw % 3 {
        0 => 1000 + raw % 4,
        1 => 1007 + raw % 8,
        _ => 3000 + raw % 2000,
    };
    let reason = String::from_utf8_lossy(data.get(2..).unwrap_or_default());
    let mut out = [0u8; 125];
    let n = encode_close_payload(code, &reason, &mut out);
    assert!((2..=125).contains(&n));
    let Ok(Some((got_code, got_reason))) = parse_close_payload(&out[..n]) else {
        panic!("our own close payload does not parse: {:02x?}", &out[..n]);
    };
    assert_eq!(got_code, code);
    assert!(reason.starts_with(got_reason));
    if reason.len() <= 123 {
        assert_eq!(got_reason.len(), reason.len());
    } else {
        assert!(got_reason.len() > 123 - 4, "cut more than one char short");
    }
}
