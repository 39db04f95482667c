//! Owns the `deflate_offer` property: `ws::deflate::negotiate` over arbitrary
//! `Sec-WebSocket-Extensions` values, in every compression mode. It never panics; the bytes its
//! scanner looks at stay linear in the offers' length (`negotiate_counted`); an agreement is
//! one the server can honour — its window sizes are in range, `shared` never keeps context, and
//! a message compressed under it inflates for a client that holds exactly the agreed window and
//! context, while a client compressing under it is inflated by the server — and its response
//! parses, by the rules a client applies (RFC 7692 §7.1), to the same agreement, which the
//! server's own parser reads back unchanged. Structured inputs spell offers out of known
//! parts, so the chosen agreement is also compared with a model of §7.1's rules.
//! Must not: share code with the parser it checks where an independent reading is possible.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::Input;
use crate::config::CompressionMode;
use crate::ws::deflate::{
    negotiate, negotiate_counted, Agreement, Codec, Compressors, Streams, NAME,
};

/// §7.2.1: the end of a sync flush, removed by the sender and appended by the receiver.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Looks per byte `negotiate_counted` may report: each byte is looked at by one scanning loop,
/// plus a constant number of looks per loop, and every loop consumes at least one byte.
const LOOKS_PER_BYTE: usize = 6;

/// `[mode][form][...]`: `mode % 3` picks off, shared or dedicated; `form & 1` = 0 reads the
/// rest as header values separated by `\n` (lossily decoded, as a client may send anything);
/// 1 reads it as a program of offers built from known parts (`structured`).
pub fn deflate_offer(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = [
        CompressionMode::Off,
        CompressionMode::Shared,
        CompressionMode::Dedicated,
    ][usize::from(input.byte() % 3)];
    let form = input.byte();
    let (values, expected) = if form & 1 == 0 {
        let values = input
            .rest()
            .split(|&b| b == b'\n')
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        (values, None)
    } else {
        let (values, model) = structured(&mut input);
        (values, Some(model))
    };
    let offers: Vec<&str> = values.iter().map(String::as_str).collect();

    let mut work = 0;
    let agreed = negotiate_counted(&offers, mode, &mut work);
    let bytes: usize = offers.iter().map(|v| v.len()).sum();
    assert!(
        work <= LOOKS_PER_BYTE * (bytes + offers.len() + 1),
        "negotiate looked {work} times at {bytes} bytes in {} values",
        offers.len()
    );
    assert_eq!(agreed, negotiate(&offers, mode), "not deterministic");

    if let Some(model) = expected {
        let want = match mode {
            CompressionMode::Off => None,
            _ => model.iter().find_map(|o| o.as_ref().map(|o| o.agree(mode))),
        };
        let got = agreed.map(|a| Terms::of(&a));
        assert_eq!(got, want, "{offers:?} under {mode:?}");
    }
    let Some(a) = agreed else { return };
    assert_ne!(
        mode,
        CompressionMode::Off,
        "agreed while compression is off"
    );
    let terms = Terms::of(&a);
    for bits in [terms.server_bits, terms.client_bits] {
        assert!((8..=15).contains(&bits), "window bits {bits}");
    }
    if mode == CompressionMode::Shared {
        // Shared compressors and decompressors hold no state between messages and inflate
        // with 15 bits.
        assert!(terms.snct && terms.cnct && !a.keeps_context(), "{a:?}");
        assert_eq!((terms.client_bits, terms.client_echo), (15, false), "{a:?}");
    }
    assert_eq!(a.keeps_context(), !(terms.snct && terms.cnct));

    // The response, read as a client reads it, says exactly what was agreed...
    let response = a.response();
    let read = Terms::parse_response(&response);
    assert_eq!(read, terms, "{response:?}");
    // ... and only what the client offered: a parameter with a value is echoed only if some
    // offer carried it (§7.1.2.1; §7.1.2.2: never client_max_window_bits unasked).
    let lower = offers.join(",").to_ascii_lowercase();
    if read.server_echo {
        assert!(lower.contains("server_max_window_bits"), "{response:?}");
    }
    if read.client_echo {
        assert!(lower.contains("client_max_window_bits"), "{response:?}");
    }
    // The server's own parser reads the response back to the same agreement.
    let again = negotiate(&[&response], CompressionMode::Dedicated);
    assert_eq!(again, Some(a), "{response:?} re-negotiated differently");

    honoured(a);
}

/// What an agreement says, in the terms of RFC 7692 §7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Terms {
    snct: bool,
    cnct: bool,
    server_bits: u8,
    /// The response names `server_max_window_bits`.
    server_echo: bool,
    client_bits: u8,
    /// The response names `client_max_window_bits`.
    client_echo: bool,
}

impl Terms {
    fn of(a: &Agreement) -> Terms {
        let r = Terms::parse_response(&a.response());
        Terms {
            snct: a.server_no_context_takeover(),
            cnct: a.client_no_context_takeover(),
            server_bits: a.server_max_window_bits(),
            client_bits: a.client_max_window_bits(),
            server_echo: r.server_echo,
            client_echo: r.client_echo,
        }
    }

    /// A `Sec-WebSocket-Extensions` response as a strict client validates it (§7.1, §5):
    /// the extension's name, then known parameters, none twice, the context-takeover ones
    /// without a value, window bits `1*DIGIT` 8..=15 without leading zeros. Panics otherwise.
    fn parse_response(s: &str) -> Terms {
        let mut parts = s.split(';').map(|p| p.trim_matches([' ', '\t']));
        assert_eq!(parts.next(), Some(NAME), "{s:?}");
        let mut t = Terms {
            snct: false,
            cnct: false,
            server_bits: 15,
            server_echo: false,
            client_bits: 15,
            client_echo: false,
        };
        let mut seen = Vec::new();
        for p in parts {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (p, None),
            };
            assert!(!seen.contains(&name), "{name} twice in {s:?}");
            seen.push(name);
            let bits = || {
                let v = value.unwrap_or_else(|| panic!("{name} without a value in {s:?}"));
                assert!(
                    v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0'),
                    "{s:?}"
                );
                let n: u8 = v.parse().unwrap_or_else(|_| panic!("{s:?}"));
                assert!((8..=15).contains(&n), "{s:?}");
                n
            };
            match name {
                "server_no_context_takeover" => {
                    assert!(value.is_none(), "{s:?}");
                    t.snct = true;
                }
                "client_no_context_takeover" => {
                    assert!(value.is_none(), "{s:?}");
                    t.cnct = true;
                }
                "server_max_window_bits" => {
                    t.server_bits = bits();
                    t.server_echo = true;
                }
                "client_max_window_bits" => {
                    t.client_bits = bits();
                    t.client_echo = true;
                }
                _ => panic!("unknown parameter {name:?} in {s:?}"),
            }
        }
        t
    }
}

/// Two messages a compressor can shorten only by reaching back: the first repeats its own
/// start ~1200 bytes later (a window of 2^11 or more), the second repeats the first's start
/// (only with context takeover).
fn messages() -> [Vec<u8>; 2] {
    let mut x: u32 = 0x2545_f491;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect()
    };
    let mut first = noise(1200);
    first.extend_from_within(..300);
    let mut second = first[..400].to_vec();
    second.extend(noise(100));
    [first, second]
}

/// Deflate with a sync flush and drop the tail, as a peer does (§7.2.1).
fn peer_deflate(c: &mut Compress, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    c.compress_vec(msg, &mut out, FlushCompress::Sync)
        .expect("peer compressor");
    assert!(out.ends_with(&TAIL), "sync flush without its tail");
    out.truncate(out.len() - TAIL.len());
    out
}

/// Append the tail and inflate, as a peer does (§7.2.2); panics if the stream is not valid
/// for this decompressor's window and history.
fn peer_inflate(d: &mut Decompress, data: &[u8], what: &str) -> Vec<u8> {
    let input = [data, &TAIL].concat();
    let mut out = Vec::with_capacity(4096);
    let before = d.total_in();
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap_or_else(|e| panic!("{what}: the client cannot inflate it: {e}"));
    assert_eq!(
        d.total_in() - before,
        input.len() as u64,
        "{what}: input left"
    );
    out
}

/// The server keeps its side of agreement `a`, and understands a client that keeps the
/// other: its messages inflate with exactly the agreed window (and no context when it
/// promised none), and a client's messages within the agreed window and context inflate.
fn honoured(a: Agreement) {
    let mut streams = a.keeps_context().then(Streams::default);
    let mut shared = Compressors::new();
    let server_bits = a.server_max_window_bits();
    // zlib cannot inflate with an 8-bit raw window either: a server that never compresses
    // under an 8-bit agreement (ws::deflate module docs) needs no client of that size here.
    let mut client_rx = Decompress::new_with_window_bits(false, server_bits.max(9));
    for (i, msg) in messages().iter().enumerate() {
        let sent = Codec::new(a, streams.as_mut(), &mut shared).compress(msg, 0);
        let Some(sent) = sent else {
            continue; // sent uncompressed: always allowed (§6)
        };
        assert!(server_bits >= 9, "compressed under an 8-bit window: {a:?}");
        let what = format!("server message {i} under {a:?}");
        let got = if a.server_no_context_takeover() {
            peer_inflate(
                &mut Decompress::new_with_window_bits(false, server_bits),
                &sent,
                &what,
            )
        } else {
            peer_inflate(&mut client_rx, &sent, &what)
        };
        assert_eq!(&got, msg, "{what}");
        shared.recycle(sent);
    }
    // A client compresses with the window it may use (zlib's smallest is 9 bits, which an
    // 8-bit agreement's server inflates with: module docs) and keeps context unless told not
    // to.
    let client_bits = a.client_max_window_bits().max(9);
    let mut client_tx = Compress::new_with_window_bits(Compression::new(6), false, client_bits);
    for (i, msg) in messages().iter().enumerate() {
        if a.client_no_context_takeover() {
            client_tx.reset();
        }
        let sent = peer_deflate(&mut client_tx, msg);
        let mut out = Vec::new();
        Codec::new(a, streams.as_mut(), &mut shared)
            .inflate(&sent, &mut out, 1 << 20, None)
            .unwrap_or_else(|e| panic!("client message {i} under {a:?}: {e:?}"));
        assert_eq!(&out, msg, "client message {i} under {a:?}");
    }
}

/// One offer of a structured input as the model sees it: `None` if the server must decline
/// it (another extension, a malformed element, or a parameter §7 makes it decline).
type Modelled = Option<OfferModel>;

#[derive(Debug, Default, Clone, Copy)]
struct OfferModel {
    snct: bool,
    cnct: bool,
    server_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_bits: Option<Option<u8>>,
}

impl OfferModel {
    /// §7.1 as this server applies it (docs/protocol.md, permessage-deflate): `shared` refuses
    /// context takeover both ways and inflates with 15 bits; `dedicated` takes what is
    /// offered; both echo a requested server window and only `dedicated` a client window.
    fn agree(&self, mode: CompressionMode) -> Terms {
        let dedicated = mode == CompressionMode::Dedicated;
        let client = self.client_bits.flatten().filter(|_| dedicated);
        Terms {
            snct: !dedicated || self.snct,
            cnct: !dedicated || self.cnct,
            server_bits: self.server_bits.unwrap_or(15),
            server_echo: self.server_bits.is_some(),
            client_bits: client.unwrap_or(15),
            client_echo: client.is_some(),
        }
    }
}

/// Spellings of the extension name (names are case-insensitive tokens).
const NAMES: [&str; 4] = [
    "permessage-deflate",
    "PERMESSAGE-DEFLATE",
    "PerMessage-Deflate",
    "permessage-deflate",
];

/// Optional whitespace, four ways.
const OWS: [&str; 4] = ["", " ", "\t ", "  "];

/// A structured input: elements `[kind][params]` then `[which][value][spacing]` per
/// parameter. `kind % 8`: 0–3 the extension in some spelling, 4 another extension, 5 a name
/// that only starts like it, 6 junk after the parameters, 7 an empty parameter; `(kind >> 3)
/// & 3` and `(kind >> 5) & 3` the spacing before and after `,`; `kind & 0x80` starts a new
/// header value after this element; `params % 6` parameters follow, each `[which % 6][value
/// % 16][spacing]` (the value table is below; 0 is none). Returns the header values and each
/// element's model.
fn structured(input: &mut Input<'_>) -> (Vec<String>, Vec<Modelled>) {
    let mut values = vec![String::new()];
    let mut model = Vec::new();
    while !input.is_empty() {
        let kind = input.byte();
        let count = input.byte() % 6;
        let mut text = match kind % 8 {
            k @ 0..=3 => NAMES[usize::from(k)].to_string(),
            4 => "x-webkit-deflate-frame".to_string(),
            5 => "permessage-deflate-2".to_string(),
            _ => NAME.to_string(),
        };
        let mut offer = Some(OfferModel::default());
        let mut seen = [false; 5];
        if kind % 8 >= 4 && kind % 8 <= 5 {
            offer = None;
        }
        for _ in 0..count {
            let (which, value, spacing) = (input.byte() % 6, input.byte() % 16, input.byte());
            let (name, slot) = match which {
                0 => ("server_no_context_takeover", 0),
                1 => ("client_no_context_takeover", 1),
                2 => ("server_max_window_bits", 2),
                3 => ("client_max_window_bits", 3),
                4 => ("x_unknown", 4),
                _ => ("Server_No_Context_Takeover", 0),
            };
            let (spelled, bits): (&str, Option<Option<u8>>) = match value {
                0 => ("", None),
                v @ 1..=8 => (
                    ["8", "9", "10", "11", "12", "13", "14", "15"][usize::from(v - 1)],
                    Some(Some(v + 7)),
                ),
                9 => ("\"12\"", Some(Some(12))),
                10 => ("\"1\\3\"", Some(Some(13))),
                11 => ("7", Some(None)),
                12 => ("16", Some(None)),
                13 => ("08", Some(None)),
                14 => ("\"\"", Some(None)),
                _ => ("abc", Some(None)),
            };
            let ows = |shift: u8| OWS[usize::from((spacing >> shift) & 3)];
            text.push_str(&format!("{};{}{name}", ows(0), ows(2)));
            if value != 0 {
                text.push_str(&format!("{}={}{spelled}", ows(4), ows(6)));
            }
            // Bits: `Some(Some(n))` a valid value, `Some(None)` an invalid one, `None` none.
            let Some(o) = offer.as_mut() else { continue };
            let ok = !seen[slot]
                && match (slot, bits) {
                    (0, None) => {
                        o.snct = true;
                        true
                    }
                    (1, None) => {
                        o.cnct = true;
                        true
                    }
                    (2, Some(Some(n))) => {
                        o.server_bits = Some(n);
                        true
                    }
                    (3, None) => {
                        o.client_bits = Some(None);
                        true
                    }
                    (3, Some(Some(n))) => {
                        o.client_bits = Some(Some(n));
                        true
                    }
                    _ => false,
                };
            seen[slot] = true;
            if !ok {
                offer = None;
            }
        }
        match kind % 8 {
            6 => {
                text.push_str(" junk");
                offer = None;
            }
            7 => {
                text.push_str(";;");
                offer = None;
            }
            _ => {}
        }
        let last = values.last_mut().expect("one value at least");
        if !last.is_empty() {
            last.push_str(OWS[usize::from((kind >> 3) & 3)]);
            last.push(',');
            last.push_str(OWS[usize::from((kind >> 5) & 3)]);
        }
        last.push_str(&text);
        model.push(offer);
        if kind & 0x80 != 0 {
            values.push(String::new());
        }
    }
    (values, model)
}
