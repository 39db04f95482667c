//! Criterion micro-benchmarks of the sans-IO codecs on the hot path of every echoed message:
//! masking (word-at-a-time vs the bytewise reference), frame header parse/encode, the
//! in-place decoder over a ring, UTF-8 validation, and the HTTP upgrade request parse +
//! validation. Run with `cargo bench --bench codec`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

use wsloop::buf::Ring;
use wsloop::config::HttpLimits;
use wsloop::http::request;
use wsloop::http::upgrade;
use wsloop::ws::decode::{DecodeRules, Decoder};
use wsloop::ws::frame::{encode_header, parse_header, FrameHeader, OpCode, MAX_HEADER_LEN};
use wsloop::ws::mask::{apply_mask, apply_mask_bytewise};
use wsloop::ws::utf8::Utf8Validator;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const SIZES: [(usize, &str); 3] = [(16, "16B"), (1024, "1KiB"), (65536, "64KiB")];

/// A masked client frame, as the server receives it.
fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(KEY),
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&h, &mut head);
    let mut out = head[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], KEY, 0);
    out
}

fn mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for (size, name) in SIZES {
        let mut buf = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("apply_mask", name), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), 0))
        });
        g.bench_function(BenchmarkId::new("apply_mask_bytewise", name), |b| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf), black_box(KEY), 0))
        });
    }
    g.finish();
}

fn frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    // 7-bit, 16-bit and 64-bit length forms, all masked (what a server parses).
    for (len, name) in [(16u64, "len7"), (1024, "len16"), (65536, "len64")] {
        let h = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Binary,
            mask: Some(KEY),
            payload_len: len,
        };
        let mut wire = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&h, &mut wire);
        g.bench_function(BenchmarkId::new("parse_header", name), |b| {
            b.iter(|| parse_header(black_box(&wire[..n])))
        });
        // What the server encodes: the same header, unmasked.
        let reply = FrameHeader { mask: None, ..h };
        g.bench_function(BenchmarkId::new("encode_header", name), |b| {
            let mut out = [0u8; MAX_HEADER_LEN];
            b.iter(|| encode_header(black_box(&reply), &mut out))
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let rules = DecodeRules {
        max_frame_size: 1 << 20,
        allowed_rsv: 0,
    };
    let mut g = c.benchmark_group("decoder_next");
    // Many small frames in one read: the per-frame overhead of the decoder.
    let small: Vec<u8> = (0..1000)
        .flat_map(|_| client_frame(OpCode::Binary, &[0x42; 16]))
        .collect();
    // One large frame: unmasking dominates.
    let large = client_frame(OpCode::Binary, &vec![0x42; 65536]);
    for (bytes, frames, name) in [(&small, 1000u64, "1000x16B"), (&large, 1, "1x64KiB")] {
        g.throughput(Throughput::Elements(frames));
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    let mut ring = Ring::with_capacity(bytes.len());
                    ring.push(bytes);
                    ring
                },
                |ring| {
                    let mut d = Decoder::new();
                    let mut payload = 0usize;
                    while let Ok(Some(p)) = d.next(ring, &rules) {
                        payload += p.len();
                    }
                    payload
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8_feed");
    for (size, name) in [(1024usize, "1KiB"), (65536, "64KiB")] {
        let ascii: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        // 2-, 3- and 4-byte sequences, cut to `size` on a character boundary.
        let mut multi = String::new();
        while multi.len() < size {
            multi.push_str("héllo wörld — κόσμε 🌍 ");
        }
        let mut end = size;
        while !multi.is_char_boundary(end) {
            end -= 1;
        }
        let multi = multi.as_bytes()[..end].to_vec();
        g.throughput(Throughput::Bytes(size as u64));
        for (text, kind) in [(&ascii, "ascii"), (&multi, "multibyte")] {
            g.bench_function(BenchmarkId::new(kind, name), |b| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    v.feed(black_box(text)).map(|_| v.is_complete())
                })
            });
        }
    }
    g.finish();
}

fn http_upgrade(c: &mut Criterion) {
    let req = b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: bench/1.0\r\n\
Accept: */*\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Origin: http://127.0.0.1:8080\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    let limits = HttpLimits::default();
    c.bench_function("http_parse_and_validate_upgrade", |b| {
        b.iter(|| {
            let head = black_box(&req[..]);
            let parsed = request::parse(head, &limits).map_err(|_| ())?;
            upgrade::validate(&parsed, &[])
                .map(|up| up.key.len())
                .map_err(|_| ())
        })
    });
}

criterion_group!(benches, mask, frame_header, decode, utf8, http_upgrade);
criterion_main!(benches);
