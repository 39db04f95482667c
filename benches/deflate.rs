//! permessage-deflate cost per message through `ws::deflate::Codec` without context takeover
//! (`--compression shared`): compress (compressor reset + deflate + sync flush) and inflate
//! (reset + inflate) synthetic JSON of 64 B .. 128 KiB. Prints the compressed size of each
//! first; docs/benchmarks-deflate.md has the figures.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wsloop::config::CompressionMode;
use wsloop::ws::deflate::{self, negotiate, Codec};

const SIZES: [usize; 6] = [64, 256, 1024, 4096, 16384, 131072];

/// JSON-like text: repeated keys, varying numbers (xorshift64).
fn json(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let line = format!(
            "{{\"id\":{},\"user\":\"u{}\",\"price\":{}.{:02},\"ok\":true}},",
            x % 100_000,
            x % 977,
            x % 5000,
            x % 100
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

fn codec_bench(c: &mut Criterion) {
    let agreement = negotiate(&["permessage-deflate"], CompressionMode::Shared).unwrap();
    for &n in &SIZES {
        let msg = json(n);
        let z = Codec::new(agreement, None)
            .compress(&msg, 0)
            .unwrap_or_default();
        println!(
            "json {n:>6} B -> {:>6} B ({:.0}%)",
            z.len(),
            100.0 * z.len() as f64 / n as f64
        );
    }
    let mut group = c.benchmark_group("deflate_shared_compress");
    for &n in &SIZES {
        let msg = json(n);
        group.throughput(Throughput::Bytes(n as u64));
        group.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                if let Some(z) = Codec::new(agreement, None).compress(black_box(&msg), 0) {
                    deflate::recycle(z);
                }
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("deflate_shared_inflate");
    for &n in &SIZES {
        let msg = json(n);
        let z = Codec::new(agreement, None).compress(&msg, 0).unwrap();
        let mut out = Vec::with_capacity(n + 1);
        group.throughput(Throughput::Bytes(n as u64));
        group.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                Codec::new(agreement, None)
                    .inflate(black_box(&z), &mut out, 1 << 20, None)
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec_bench);
criterion_main!(benches);
