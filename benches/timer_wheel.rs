//! Timer wheel cost with 100,000 timers: insert, cancel, firing everything over 120 s of 1 ms
//! ticks, and the per-tick cost of 100,000 idle timers that are far away (should be ~constant).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wsloop::timer::{Tick, TimerId, Wheel};

const N: usize = 100_000;
/// 120 s at 1 ms per tick.
const SPAN: Tick = 120_000;
const STEP: Tick = 10;

/// Deterministic spread of `n` deadlines in `lo..hi` (xorshift64, no RNG dependency).
fn deadlines(n: usize, lo: Tick, hi: Tick) -> Vec<Tick> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lo + x % (hi - lo)
        })
        .collect()
}

fn filled(deadlines: &[Tick]) -> (Wheel, Vec<TimerId>) {
    let mut wheel = Wheel::with_capacity(0, deadlines.len());
    let ids = (0..deadlines.len() as TimerId).collect();
    for (i, &d) in deadlines.iter().enumerate() {
        wheel.insert(i as TimerId, d);
    }
    (wheel, ids)
}

fn bulk(c: &mut Criterion) {
    let dl = deadlines(N, 1, SPAN + 1);
    let mut group = c.benchmark_group("timer_wheel_100k");
    // Throughput in elements makes criterion print timers/s; ns per timer = time / 100,000.
    group.throughput(Throughput::Elements(N as u64));

    group.bench_function("insert", |b| {
        b.iter_batched(
            || Wheel::with_capacity(0, N),
            |mut wheel| {
                for (i, &d) in dl.iter().enumerate() {
                    wheel.insert(black_box(i as TimerId), d);
                }
                wheel
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("cancel", |b| {
        b.iter_batched(
            || filled(&dl),
            |(mut wheel, keys)| {
                for &key in &keys {
                    black_box(wheel.cancel(key));
                }
                wheel
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("advance_120s_in_10ms_steps_fire_all", |b| {
        b.iter_batched(
            || filled(&dl).0,
            |mut wheel| {
                let mut now = 0;
                while now < SPAN {
                    now += STEP;
                    while let Some(fired) = wheel.poll(now) {
                        black_box(fired);
                    }
                }
                assert!(wheel.is_empty());
                wheel
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn idle(c: &mut Criterion) {
    // Far enough (2^39..2^40 ticks) that no iteration count criterion picks reaches them.
    let dl = deadlines(N, 1 << 39, 1 << 40);
    let mut group = c.benchmark_group("timer_wheel_100k_idle");
    group.throughput(Throughput::Elements(1));

    group.bench_function("advance_1_tick", |b| {
        let (mut wheel, _keys) = filled(&dl);
        let mut now = 0;
        b.iter(|| {
            now += 1;
            black_box(wheel.poll(now))
        });
        assert_eq!(wheel.len(), N);
    });

    group.bench_function("next_expiration", |b| {
        let (wheel, _keys) = filled(&dl);
        b.iter(|| black_box(&wheel).next_expiration());
    });
    group.finish();
}

criterion_group!(benches, bulk, idle);
criterion_main!(benches);
