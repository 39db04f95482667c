//! Tests of permessage-deflate: the offer → response table (RFC 7692 §5, §7.1), the codec
//! round trip with and without context takeover at every window size (§7.2), and the bounds
//! on inflation (message limit, corrupt streams, UTF-8).
//! Must not: open a socket or read a clock.

use super::codec::{deflate_message, new_compressor, TAIL};
use super::*;
use crate::config::CompressionMode::{self, Dedicated, Off, Shared};
use crate::ws::utf8::Utf8Validator;
use crate::ws::ProtocolError;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use proptest::prelude::*;

/// The response for `offers` under `mode` (None: the extension is declined).
fn respond(mode: CompressionMode, offers: &[&str]) -> Option<String> {
    negotiate(offers, mode).map(|a| a.response())
}

const BOTH_NCT: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn offers_and_responses() {
    #[rustfmt::skip]
    let table: &[(CompressionMode, &[&str], Option<&str>)] = &[
        // No offer, another extension, or compression off: no extension.
        (Shared, &[], None),
        (Shared, &["x-webkit-deflate-frame"], None),
        (Off, &["permessage-deflate"], None),
        // Shared: both directions without context takeover, whatever was offered.
        (Shared, &["permessage-deflate"], Some(BOTH_NCT)),
        (Shared, &["permessage-deflate; client_max_window_bits"], Some(BOTH_NCT)),
        (Shared, &["permessage-deflate; client_max_window_bits=10"], Some(BOTH_NCT)),
        (Shared, &["permessage-deflate; server_no_context_takeover"], Some(BOTH_NCT)),
        (Shared, &["permessage-deflate; server_max_window_bits=10"],
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10")),
        // Dedicated: what the client asked for, context takeover allowed.
        (Dedicated, &["permessage-deflate"], Some("permessage-deflate")),
        (Dedicated, &["permessage-deflate; client_max_window_bits"], Some("permessage-deflate")),
        (Dedicated, &["permessage-deflate; client_max_window_bits=12"],
            Some("permessage-deflate; client_max_window_bits=12")),
        (Dedicated, &["permessage-deflate; server_no_context_takeover"],
            Some("permessage-deflate; server_no_context_takeover")),
        (Dedicated, &["permessage-deflate; client_no_context_takeover"],
            Some("permessage-deflate; client_no_context_takeover")),
        (Dedicated, &["permessage-deflate; server_max_window_bits=9; client_max_window_bits"],
            Some("permessage-deflate; server_max_window_bits=9")),
        (Dedicated, &["permessage-deflate; server_max_window_bits=8"],
            Some("permessage-deflate; server_max_window_bits=8")),
        (Dedicated, &["permessage-deflate; server_max_window_bits=15"],
            Some("permessage-deflate; server_max_window_bits=15")),
        // Autobahn 13.5: all four parameters.
        (Dedicated, &["permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=9"],
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9")),
        // Quoted values (RFC 6455 §9.1), whitespace, case.
        (Dedicated, &["permessage-deflate;server_max_window_bits=\"10\""],
            Some("permessage-deflate; server_max_window_bits=10")),
        (Dedicated, &["permessage-deflate; server_max_window_bits=\"1\\0\""],
            Some("permessage-deflate; server_max_window_bits=10")),
        (Dedicated, &["  PerMessage-Deflate \t;\tSERVER_NO_CONTEXT_TAKEOVER  "],
            Some("permessage-deflate; server_no_context_takeover")),
        // §7: declined — unknown parameter, invalid value, duplicate parameter.
        (Shared, &["permessage-deflate; foo"], None),
        (Shared, &["permessage-deflate; foo=1"], None),
        (Shared, &["permessage-deflate; server_no_context_takeover=1"], None),
        (Shared, &["permessage-deflate; client_no_context_takeover=\"\""], None),
        (Shared, &["permessage-deflate; server_max_window_bits"], None),
        (Shared, &["permessage-deflate; server_max_window_bits=7"], None),
        (Shared, &["permessage-deflate; server_max_window_bits=16"], None),
        (Shared, &["permessage-deflate; server_max_window_bits=010"], None),
        (Shared, &["permessage-deflate; server_max_window_bits=0"], None),
        (Shared, &["permessage-deflate; server_max_window_bits=-9"], None),
        (Shared, &["permessage-deflate; server_max_window_bits=9.0"], None),
        (Shared, &["permessage-deflate; server_max_window_bits=\"\""], None),
        (Shared, &["permessage-deflate; server_max_window_bits=99999999999999999999"], None),
        (Shared, &["permessage-deflate; client_max_window_bits=7"], None),
        (Shared, &["permessage-deflate; client_max_window_bits=abc"], None),
        (Shared, &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
        (Shared, &["permessage-deflate; client_max_window_bits; client_max_window_bits=10"], None),
        (Shared, &["permessage-deflate; server_max_window_bits=10; SERVER_MAX_WINDOW_BITS=10"], None),
        // Malformed syntax: declined, never an error.
        (Shared, &["permessage-deflate;"], None),
        (Shared, &["permessage-deflate; ; server_no_context_takeover"], None),
        (Shared, &["permessage-deflate; =1"], None),
        (Shared, &["permessage-deflate server_no_context_takeover"], None),
        (Shared, &["permessage-deflate; server_max_window_bits=\"10"], None),
        (Shared, &["permessage-deflate; server_max_window_bits="], None),
        (Shared, &["\"permessage-deflate\""], None),
        (Shared, &[";permessage-deflate"], None),
        // The first acceptable offer wins, across elements and header fields (§5).
        (Dedicated, &["permessage-deflate; foo, permessage-deflate; server_no_context_takeover"],
            Some("permessage-deflate; server_no_context_takeover")),
        (Dedicated, &["x-foo; a=\"b,permessage-deflate\", permessage-deflate; client_max_window_bits=9"],
            Some("permessage-deflate; client_max_window_bits=9")),
        (Dedicated, &["permessage-deflate; server_max_window_bits=10, permessage-deflate"],
            Some("permessage-deflate; server_max_window_bits=10")),
        (Dedicated, &["permessage-deflate; bad", "permessage-deflate"], Some("permessage-deflate")),
        (Dedicated, &[",, ,permessage-deflate,"], Some("permessage-deflate")),
        // Autobahn 13.7: three offers, the first acceptable.
        (Shared, &["permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=9, permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover, permessage-deflate; client_no_context_takeover; client_max_window_bits"],
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9")),
    ];
    for (mode, offers, want) in table {
        assert_eq!(
            respond(*mode, offers).as_deref(),
            *want,
            "{mode:?} {offers:?}"
        );
    }
}

#[test]
fn agreement_fits_in_three_bytes() {
    // It lives in the padding of the connection's tx state.
    assert_eq!(std::mem::size_of::<Option<Agreement>>(), 3);
}

#[test]
fn agreed_parameters() {
    let a = negotiate(&["permessage-deflate"], Shared).unwrap();
    assert!(a.server_no_context_takeover() && a.client_no_context_takeover());
    assert!(!a.keeps_context());
    assert_eq!(
        (a.server_max_window_bits(), a.client_max_window_bits()),
        (15, 15)
    );
    let a = negotiate(
        &["permessage-deflate; server_max_window_bits=11; client_max_window_bits=12"],
        Dedicated,
    )
    .unwrap();
    assert!(!a.server_no_context_takeover() && !a.client_no_context_takeover());
    assert!(a.keeps_context());
    assert_eq!(
        (a.server_max_window_bits(), a.client_max_window_bits()),
        (11, 12)
    );
}

#[test]
fn many_duplicate_or_unknown_parameters_are_declined_in_linear_time() {
    // ~2.6 MB of parameters: a quadratic scan would take minutes.
    let dupes = format!(
        "permessage-deflate{}",
        "; server_no_context_takeover".repeat(100_000)
    );
    let unknown = format!("permessage-deflate{}", "; x=\"a\\\"b\"".repeat(100_000));
    let elements = "permessage-deflate; y, ".repeat(100_000);
    assert_eq!(respond(Shared, &[&dupes, &unknown, &elements]), None);
    let last = format!("{elements}permessage-deflate");
    assert_eq!(respond(Shared, &[&last]).as_deref(), Some(BOTH_NCT));
}

proptest! {
    #[test]
    fn negotiation_never_panics(s in "[ -~\t]{0,200}") {
        let _ = negotiate(&[&s], Dedicated);
        let _ = negotiate(&[&s], Shared);
    }

    #[test]
    fn negotiation_of_near_valid_offers_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("permessage-deflate"), Just(";"), Just(","), Just("="), Just("\""),
                Just("\\"), Just(" "), Just("server_no_context_takeover"),
                Just("client_no_context_takeover"), Just("server_max_window_bits"),
                Just("client_max_window_bits"), Just("8"), Just("15"), Just("16"),
            ],
            0..30,
        )
    ) {
        let s: String = parts.concat();
        if let Some(a) = negotiate(&[&s], Dedicated) {
            // Whatever was accepted can be answered and round-trips through the parser
            // with the same parameters.
            let again = negotiate(&[&a.response()], Dedicated);
            prop_assert_eq!(again.map(|b| b.response()), Some(a.response()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------------------------

/// A peer's compressor: deflate + sync flush − tail (§7.2.1), as every client does it.
fn peer_deflate(c: &mut Compress, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(deflate_message(c, msg, &mut out));
    out
}

/// A peer's decompressor: + tail, inflate (§7.2.2).
fn peer_inflate(d: &mut Decompress, data: &[u8]) -> Vec<u8> {
    let input = [data, &TAIL].concat();
    let mut out = Vec::with_capacity(4 << 20);
    let before = d.total_in();
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("the peer inflates what the server sent");
    assert_eq!(
        d.total_in() - before,
        input.len() as u64,
        "all input consumed"
    );
    out
}

fn agreement(mode: CompressionMode, offer: &str) -> Agreement {
    negotiate(&[offer], mode).unwrap()
}

/// Text that compresses like JSON: repetitive keys, varying values.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(
            format!("{{\"id\":{},\"name\":\"user{}\"}},", x >> 40, x % 97).as_bytes(),
        );
    }
    out.truncate(len);
    out
}

/// Bytes no compressor can shrink (xorshift64).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn inflate_all(codec: &mut Codec<'_>, data: &[u8], max: u64) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::new();
    codec.inflate(data, &mut out, max, None).map(|()| out)
}

#[test]
fn round_trip_without_context_takeover() {
    let a = agreement(Shared, "permessage-deflate");
    for len in [0, 1, 100, 1000, 65536, 1 << 20] {
        let msg = sample(len, len as u64);
        let sent = Codec::new(a, None, &mut Compressors::new()).compress(&msg, 0);
        let mut client = Decompress::new(false);
        if let Some(z) = &sent {
            assert!(z.len() < msg.len() || msg.is_empty(), "len {len}");
            // No context: a fresh peer decompressor per message inflates it.
            assert_eq!(peer_inflate(&mut client, z), msg, "len {len}");
            Compressors::new().recycle(z.clone());
        } else {
            assert!(len < 64, "len {len} sent uncompressed");
        }
        // And the client's messages, each compressed from an empty window.
        let z = peer_deflate(&mut Compress::new(Compression::default(), false), &msg);
        assert_eq!(
            inflate_all(
                &mut Codec::new(a, None, &mut Compressors::new()),
                &z,
                1 << 20
            ),
            Ok(msg)
        );
    }
}

#[test]
fn the_empty_message() {
    let a = agreement(Shared, "permessage-deflate");
    // An empty message compresses to one 0x00 byte (what is left of an empty stored block)...
    let z = Codec::new(a, None, &mut Compressors::new()).compress(b"", 0);
    assert_eq!(z, None, "output no smaller than the input: sent as is");
    let mut out = Vec::new();
    assert!(deflate_message(&mut new_compressor(15), b"", &mut out));
    assert_eq!(out, [0x00]);
    // ...and inflates, like zero bytes, to nothing.
    assert_eq!(
        inflate_all(
            &mut Codec::new(a, None, &mut Compressors::new()),
            &[0x00],
            10
        ),
        Ok(vec![])
    );
    assert_eq!(
        inflate_all(&mut Codec::new(a, None, &mut Compressors::new()), &[], 10),
        Ok(vec![])
    );
}

#[test]
fn small_messages_stay_uncompressed() {
    let a = agreement(Shared, "permessage-deflate");
    let msg = sample(127, 1);
    assert_eq!(
        Codec::new(a, None, &mut Compressors::new()).compress(&msg, 128),
        None
    );
    assert!(Codec::new(a, None, &mut Compressors::new())
        .compress(&sample(128, 1), 128)
        .is_some());
    // Incompressible data is sent as is when no context is kept.
    let noise = noise(4096);
    assert_eq!(
        Codec::new(a, None, &mut Compressors::new()).compress(&noise, 0),
        None
    );
}

#[test]
fn round_trip_with_context_takeover_at_every_window_size() {
    for bits in 8..=15u8 {
        let offer = format!(
            "permessage-deflate; server_max_window_bits={bits}; client_max_window_bits={bits}"
        );
        let a = agreement(Dedicated, &offer);
        assert!(a.keeps_context());
        let mut ours = Streams::default();
        // The client: zlib turns a requested 8 into 9, so it compresses with 9 bits.
        let mut client_tx =
            Compress::new_with_window_bits(Compression::default(), false, bits.max(9));
        let mut client_rx = Decompress::new_with_window_bits(false, bits.max(9));
        let mut sizes = Vec::new();
        for round in 0..3 {
            // Repeats at a distance of 600 bytes: within a 1 KiB window, beyond 512 bytes.
            let msg = [sample(600, 7), sample(600, 7)].concat();
            // Client → server.
            let z = peer_deflate(&mut client_tx, &msg);
            let mut shared = Compressors::new();
            let mut codec = Codec::new(a, Some(&mut ours), &mut shared);
            assert_eq!(
                inflate_all(&mut codec, &z, 1 << 20).as_ref(),
                Ok(&msg),
                "bits {bits} round {round}"
            );
            // Server → client, decoded with the agreed window: a longer reference would fail.
            match codec.compress(&msg, 0) {
                Some(z) => {
                    assert_eq!(
                        peer_inflate(&mut client_rx, &z),
                        msg,
                        "bits {bits} round {round}"
                    );
                    sizes.push(z.len());
                    drop(z);
                }
                None => assert_eq!(bits, 8, "only an 8-bit window disables compression"),
            }
        }
        if bits >= 11 {
            // The same message again: with the window kept, it is nearly free.
            assert!(
                sizes[1..].iter().all(|&n| n * 2 < sizes[0]),
                "bits {bits}: {sizes:?}"
            );
        }
    }
}

#[test]
fn a_shared_decompressor_serves_interleaved_connections() {
    let a = agreement(Shared, "permessage-deflate");
    let m1 = sample(5000, 1);
    let m2 = sample(7000, 2);
    let z1 = peer_deflate(&mut Compress::new(Compression::default(), false), &m1);
    let z2 = peer_deflate(&mut Compress::new(Compression::default(), false), &m2);
    for _ in 0..3 {
        assert_eq!(
            inflate_all(
                &mut Codec::new(a, None, &mut Compressors::new()),
                &z1,
                1 << 20
            )
            .as_ref(),
            Ok(&m1)
        );
        assert_eq!(
            inflate_all(
                &mut Codec::new(a, None, &mut Compressors::new()),
                &z2,
                1 << 20
            )
            .as_ref(),
            Ok(&m2)
        );
    }
    // A failed message leaves nothing behind for the next one.
    assert!(inflate_all(
        &mut Codec::new(a, None, &mut Compressors::new()),
        &[0xff; 40],
        1 << 20
    )
    .is_err());
    assert_eq!(
        inflate_all(
            &mut Codec::new(a, None, &mut Compressors::new()),
            &z1,
            1 << 20
        ),
        Ok(m1)
    );
}

#[test]
fn a_final_block_ends_a_message() {
    // §7.2.3.4: a sender may end a message with BFINAL = 1 instead of a sync flush.
    let msg = sample(3000, 3);
    let mut c = Compress::new(Compression::default(), false);
    let mut z = Vec::with_capacity(8192);
    c.compress_vec(&msg, &mut z, FlushCompress::Finish).unwrap();
    for mode in [Shared, Dedicated] {
        let a = agreement(mode, "permessage-deflate");
        let mut s = Streams::default();
        let mut shared = Compressors::new();
        let mut codec = Codec::new(a, Some(&mut s), &mut shared);
        assert_eq!(inflate_all(&mut codec, &z, 1 << 20).as_ref(), Ok(&msg));
        // Bytes after the final block are not part of any stream.
        let mut junk = z.clone();
        junk.extend_from_slice(b"junk");
        assert_eq!(
            inflate_all(&mut codec, &junk, 1 << 20),
            Err(ProtocolError::BadCompressedData)
        );
    }
}

#[test]
fn inflation_stops_one_byte_past_the_limit() {
    let a = agreement(Shared, "permessage-deflate");
    let msg = sample(10_000, 4);
    let z = peer_deflate(&mut Compress::new(Compression::default(), false), &msg);
    assert_eq!(
        inflate_all(
            &mut Codec::new(a, None, &mut Compressors::new()),
            &z,
            10_000
        )
        .as_ref(),
        Ok(&msg)
    );
    assert_eq!(
        inflate_all(&mut Codec::new(a, None, &mut Compressors::new()), &z, 9_999),
        Err(ProtocolError::MessageTooLarge {
            size: 10_000,
            max: 9_999
        })
    );
    assert_eq!(
        inflate_all(&mut Codec::new(a, None, &mut Compressors::new()), &z, 0),
        Err(ProtocolError::MessageTooLarge { size: 1, max: 0 })
    );
    // No limit at all (u64::MAX) must not overflow the "limit + 1" arithmetic.
    assert_eq!(
        inflate_all(
            &mut Codec::new(a, None, &mut Compressors::new()),
            &z,
            u64::MAX
        )
        .as_ref(),
        Ok(&msg)
    );
}

#[test]
fn a_bomb_is_refused_with_bounded_memory() {
    // 100 MiB of zeros deflate to ~100 KiB (DEFLATE's best ratio is about 1032:1).
    let zeros = vec![0u8; 100 << 20];
    let bomb = peer_deflate(&mut Compress::new(Compression::best(), false), &zeros);
    drop(zeros);
    assert!(bomb.len() < 110 << 10, "{}", bomb.len());
    for a in [
        agreement(Shared, "permessage-deflate"),
        agreement(Dedicated, "permessage-deflate"),
    ] {
        let mut s = Streams::default();
        let mut out = Vec::new();
        let err = Codec::new(a, Some(&mut s), &mut Compressors::new()).inflate(
            &bomb,
            &mut out,
            1 << 20,
            None,
        );
        assert_eq!(
            err,
            Err(ProtocolError::MessageTooLarge {
                size: (1 << 20) + 1,
                max: 1 << 20
            })
        );
        // The buffer never grew past the limit + 1.
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
    }
    // 1 KiB of compressed zeros inflates to about 1 MiB: refused under a 64 KiB limit.
    let small = peer_deflate(
        &mut Compress::new(Compression::best(), false),
        &vec![0u8; 1 << 20],
    );
    assert!(small.len() <= 1100, "{}", small.len());
    let mut out = Vec::new();
    let a = agreement(Shared, "permessage-deflate");
    assert!(matches!(
        Codec::new(a, None, &mut Compressors::new()).inflate(&small, &mut out, 64 << 10, None),
        Err(ProtocolError::MessageTooLarge { .. })
    ));
    assert!(out.capacity() <= (64 << 10) + 1);
}

#[test]
fn corrupt_streams_fail() {
    let a = agreement(Shared, "permessage-deflate");
    for bad in [
        &[0xff; 16][..],                 // reserved block type 11
        &[0x07, 0x00][..],               // BTYPE 11 again
        &[0x00, 0x05, 0x00, 0x00, 0x00], // stored block whose LEN and NLEN disagree
    ] {
        assert_eq!(
            inflate_all(
                &mut Codec::new(a, None, &mut Compressors::new()),
                bad,
                1 << 20
            ),
            Err(ProtocolError::BadCompressedData),
            "{bad:x?}"
        );
    }
    // A reference before the start of the window (distance too far back).
    let z = peer_deflate(
        &mut Compress::new(Compression::default(), false),
        &[sample(2000, 5), sample(2000, 5)].concat(),
    );
    let tail = &z[z.len() / 2..];
    assert!(inflate_all(
        &mut Codec::new(a, None, &mut Compressors::new()),
        tail,
        1 << 20
    )
    .is_err());
}

#[test]
fn inflated_text_is_validated_as_it_comes() {
    let a = agreement(Shared, "permessage-deflate");
    let check = |msg: &[u8]| {
        let z = peer_deflate(&mut Compress::new(Compression::default(), false), msg);
        let mut v = Utf8Validator::new();
        let mut out = Vec::new();
        Codec::new(a, None, &mut Compressors::new())
            .inflate(&z, &mut out, 1 << 20, Some(&mut v))
            .map(|()| out)
    };
    let good = "héllo wörld 🦀 ".repeat(1000);
    assert!(check(good.as_bytes()) == Ok(good.as_bytes().to_vec()));
    let mut bad = good.clone().into_bytes();
    bad[5000] = 0xff;
    assert_eq!(check(&bad), Err(ProtocolError::InvalidUtf8));
    // A message that ends inside a code point.
    assert_eq!(
        check(&good.as_bytes()[..good.len() - 2]),
        Err(ProtocolError::InvalidUtf8)
    );
}
