//! Heap bytes per permessage-deflate connection, counted exactly by a counting global
//! allocator: 1,000 `Conn`s driven in-process (sans-IO, no sockets), each upgraded with the
//! offer Python `websockets` and Node `ws` send and then carrying one compressed 4 KiB message
//! each way, under every `--compression` mode; and what zlib-rs allocates for one compressor
//! and one decompressor at each window size. Prints the tables in docs/benchmarks-deflate.md
//! (`cargo test --release --test deflate_memory -- --nocapture`) and holds the budget: nothing
//! per idle connection unless context takeover is in use.

// The frame builder of the test support uses std sockets; this test opens none.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use wsloop::buf::BufPool;
use wsloop::config::{CompressionMode, Config};
use wsloop::conn::{Close, Conn, Event, Io, Received, Resources, Sent, Step};

/// Live heap bytes of the whole process.
static LIVE: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONNECTIONS: usize = 1000;

const UPGRADE: &str = "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// A text frame of 4 KiB of JSON, compressed (RFC 7692 §7.2.1: sync flush, tail removed) or
/// not.
fn message(compressed: bool) -> Vec<u8> {
    let mut json = String::new();
    for i in 0.. {
        if json.len() >= 4096 {
            break;
        }
        json.push_str(&format!(
            "{{\"seq\":{i},\"topic\":\"prices\",\"ok\":true}},"
        ));
    }
    json.truncate(4096);
    if !compressed {
        return client::frame(0x81, json.as_bytes());
    }
    let mut c = Compress::new(Compression::default(), false);
    let mut z = Vec::with_capacity(8192);
    c.compress_vec(json.as_bytes(), &mut z, FlushCompress::Sync)
        .unwrap();
    z.truncate(z.len() - 4);
    client::frame(0xC1, &z)
}

/// A socket in memory: reads give `bytes` once, writes take everything.
struct Wire<'a> {
    bytes: &'a [u8],
}

impl Io for Wire<'_> {
    fn read(&mut self, a: &mut [u8], _: &mut [u8]) -> std::io::Result<usize> {
        let k = a.len().min(self.bytes.len());
        a[..k].copy_from_slice(&self.bytes[..k]);
        self.bytes = &self.bytes[k..];
        Ok(k)
    }

    fn write(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        Ok(bufs.iter().map(|b| b.len()).sum())
    }
}

/// Feed `bytes` to `conn`, echo every message, drain what it queued.
fn drive(conn: &mut Conn, cfg: &Config, pool: &mut Resources, bytes: &[u8]) -> usize {
    let mut wire = Wire { bytes };
    let got = conn
        .read_from(0, pool, &mut wire)
        .expect("a read from memory");
    assert!(
        matches!(got, Received::Bytes { filled: false, .. }),
        "{got:?}"
    );
    let mut messages = 0;
    loop {
        let (step, mut out) = conn.poll_event(cfg, pool, 0);
        match step {
            Step::Idle => break,
            Step::Again => {}
            Step::Event(Event::Upgrade(_, up)) => out.accept(&up, 0, None),
            Step::Event(Event::Message(m)) => {
                messages += 1;
                out.send(m);
            }
            Step::Event(e) => panic!("unexpected {e:?}"),
        }
    }
    // As the reactor does after processing: rx buffers no longer needed go back.
    conn.interest(cfg, pool);
    while let Ok(Sent::Wrote { .. }) = conn.write_to(pool, &mut wire) {}
    // The reactor counts the outcomes once per iteration; so does this driver.
    pool.take_outcomes().for_each(drop);
    messages
}

/// Live heap bytes held by `CONNECTIONS` idle connections after one compressed message each
/// way, and by the first of them alone (which pays for the per-thread shared codec).
fn measure(mode: CompressionMode) -> (usize, usize) {
    let mut cfg = Config::default();
    cfg.compression.mode = mode;
    // Rings go back to the pool when drained; a pool that keeps none shows what the
    // connections themselves hold.
    let mut pool = Resources::new(BufPool::new(cfg.buffer_size, 0));
    let msg = message(mode != CompressionMode::Off);
    let mut conns: Vec<Conn> = Vec::with_capacity(CONNECTIONS);
    let mut first = 0;
    let start = LIVE.load(Relaxed);
    for i in 0..CONNECTIONS {
        let mut conn = Conn::new(0);
        drive(&mut conn, &cfg, &mut pool, UPGRADE.as_bytes());
        assert_eq!(drive(&mut conn, &cfg, &mut pool, &msg), 1);
        conns.push(conn);
        if i == 0 {
            first = LIVE.load(Relaxed) - start;
        }
    }
    let total = LIVE.load(Relaxed) - start;
    for mut c in conns {
        c.close(&cfg, &mut pool, Close::Abort);
    }
    (first, total)
}

/// Live bytes `f` leaves allocated (it returns what it allocated, to keep it alive).
fn allocated<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Relaxed);
    let value = f();
    (value, LIVE.load(Relaxed) - before)
}

fn zlib_rs_sizes() {
    println!("| window bits | compressor | decompressor |");
    println!("|---|---|---|");
    for bits in 9..=15u8 {
        let (mut c, c_bytes) =
            allocated(|| Compress::new_with_window_bits(Compression::fast(), false, bits));
        let (mut d, d_bytes) = allocated(|| Decompress::new_with_window_bits(false, bits));
        // Use both once: nothing more is allocated on first use.
        let mut z = Vec::with_capacity(1 << 16);
        let mut out = Vec::with_capacity(1 << 16);
        let ((), more) = allocated(|| {
            c.compress_vec(&[7u8; 30000], &mut z, FlushCompress::Sync)
                .unwrap();
            d.decompress_vec(&z, &mut out, FlushDecompress::Sync)
                .unwrap();
        });
        assert_eq!(more, 0);
        println!("| {bits} | {c_bytes} B | {d_bytes} B |");
    }
}

#[test]
fn heap_per_connection_by_mode() {
    zlib_rs_sizes();
    println!();
    println!(
        "| --compression | first connection | each further connection (mean of {CONNECTIONS}) |"
    );
    println!("|---|---|---|");
    let mut per = Vec::new();
    for mode in [
        CompressionMode::Off,
        CompressionMode::Shared,
        CompressionMode::Dedicated,
    ] {
        let (first, total) = measure(mode);
        let each = (total - first) / (CONNECTIONS - 1);
        println!("| {mode:?} | {first} B | {each} B |");
        per.push(each);
    }
    // Off: an idle connection holds no heap at all (its `Conn` lives in the slab). Shared:
    // only the 16-byte box holding the agreement (one pointer in `Conn` instead of inline
    // fields keeps every slab slot within 128 bytes). Dedicated: a compressor and a
    // decompressor of 15-bit windows.
    assert_eq!(per[0], 0, "off");
    assert_eq!(per[1], 16, "shared");
    assert!(
        (300_000..500_000).contains(&per[2]),
        "dedicated: {} B",
        per[2]
    );
}
