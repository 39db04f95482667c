//! permessage-deflate cost per message through `ws::deflate::Codec` without context takeover
//! (`--compression shared`): compress (compressor reset + deflate + sync flush) and inflate
//! (reset + inflate) synthetic JSON of 64 B .. 128 KiB; and zlib level 1 (what wsloop uses)
//! against level 6 (zlib's default) at 16 and 128 KiB. Prints the compressed sizes first;
//! docs/benchmarks-deflate.md has the figures.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flate2::{Compress, Compression, FlushCompress};
use wsloop::config::CompressionMode;
use wsloop::ws::deflate::{negotiate, Codec, Compressors};

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
        let z = Codec::new(agreement, None, &mut Compressors::new())
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
        let mut shared = Compressors::new();
        group.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                if let Some(z) =
                    Codec::new(agreement, None, &mut shared).compress(black_box(&msg), 0)
                {
                    shared.recycle(z);
                }
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("deflate_shared_inflate");
    for &n in &SIZES {
        let msg = json(n);
        let z = Codec::new(agreement, None, &mut Compressors::new())
            .compress(&msg, 0)
            .unwrap();
        let mut out = Vec::with_capacity(n + 1);
        group.throughput(Throughput::Bytes(n as u64));
        let mut shared = Compressors::new();
        group.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                Codec::new(agreement, None, &mut shared)
                    .inflate(black_box(&z), &mut out, 1 << 20, None)
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// One message through a reset raw-deflate compressor at `level` (15-bit window, sync flush).
fn deflate_at(c: &mut Compress, msg: &[u8], out: &mut Vec<u8>) {
    c.reset();
    out.clear();
    c.compress_vec(msg, out, FlushCompress::Sync).unwrap();
}

fn level_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate_level");
    for n in [16384, 131072] {
        let msg = json(n);
        for level in [1, 6] {
            let mut comp = Compress::new(Compression::new(level), false);
            let mut out = Vec::with_capacity(2 * n + 64);
            deflate_at(&mut comp, &msg, &mut out);
            println!(
                "level {level}: json {n:>6} B -> {:>6} B ({:.1}%)",
                out.len() - 4,
                100.0 * (out.len() - 4) as f64 / n as f64
            );
            group.throughput(Throughput::Bytes(n as u64));
            group.bench_function(format!("level{level}/{n}"), |b| {
                b.iter(|| deflate_at(&mut comp, black_box(&msg), &mut out))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, codec_bench, level_bench);
criterion_main!(benches);
