//! Owns the permessage-deflate codec (RFC 7692 §7.2): compressing an outgoing message
//! (§7.2.1) and inflating an incoming one within the message limit (§7.2.2), a connection's
//! own `Streams` and the `Compressors` a reactor shares among its connections.
//! Must not: inflate past the message limit, keep state for a connection that did not negotiate
//! context takeover, or touch a socket.
//!
//! Where the compression state lives (docs/architecture.md "permessage-deflate"):
//! - a direction *without* context takeover keeps no state between messages, so one
//!   compressor per window size and one decompressor, per thread (= per reactor, which is
//!   single-threaded), serve every connection, reset before each message;
//! - a direction *with* context takeover (`--compression dedicated`) keeps its LZ77 window
//!   across messages, so the connection owns a `Streams` box, allocated at the upgrade and
//!   filled lazily on the first compressed message.
//!
//! zlib's 256-byte window: zlib (and zlib-rs, and flate2's API) cannot deflate with an 8-bit
//! window and silently or loudly use 9 bits instead. So an inflater for an agreed 8-bit window
//! is built with 9 bits (it accepts streams made with 8 or 9), and a connection whose client
//! asked for `server_max_window_bits=8` is answered with 8 but never sent a compressed message
//! (RFC 7692 §6: whether to compress is decided per message, so this honours the agreement).

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::Agreement;
use crate::config::CompressionMode;
use crate::ws::utf8::Utf8Validator;
use crate::ws::ProtocolError;

/// zlib compression level for outgoing messages: 1, zlib-rs's fast "quick" strategy, which
/// trades some output size for much less time on JSON (`cargo bench --bench deflate`;
/// figures in docs/benchmarks-deflate.md). The level does not change a compressor's memory.
const LEVEL: u32 = 1;

/// §7.2.1 / §7.2.2: a sync flush ends with these four octets; the sender removes them and the
/// receiver appends them again.
pub(super) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// First allocation for an inflated message; it then doubles, never past the limit + 1.
const INFLATE_FIRST_CHUNK: usize = 16 * 1024;

/// A scratch buffer larger than this is freed after use instead of kept.
const SCRATCH_KEEP: usize = 1 << 20;

/// The most compressed bytes accepted for `max` inflated ones. Compressing incompressible
/// data expands it: stored blocks (§7.2.3.3) cost 5 bytes each, and a zlib compressor with a
/// small `memLevel` emits small blocks (Python `websockets` uses memLevel 5: +0.25%; memLevel
/// 1: +4%). This is zlib's conservative `deflateBound` (n + n/8 + n/64 + 5, about +14%). The
/// inflated size is held to `max` exactly.
pub fn compressed_bound(max: u64) -> u64 {
    max.saturating_add(max.saturating_add(7) >> 3)
        .saturating_add(max.saturating_add(63) >> 6)
        .saturating_add(5)
}

/// A connection's own compressor and decompressor, for the directions that keep context
/// (allocated lazily: a direction that never carries a compressed message costs nothing).
/// The connections that own one are counted by their reactor (`Compressors::dedicated`), for
/// the cap that keeps the client's choice of context takeover from deciding the server's
/// memory.
#[derive(Default)]
pub struct Streams {
    tx: Option<Compress>,
    rx: Option<Decompress>,
}

impl fmt::Debug for Streams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streams")
            .field("tx", &self.tx.is_some())
            .field("rx", &self.rx.is_some())
            .finish()
    }
}

/// The compression state one reactor shares among all its connections, owned by the reactor
/// like its buffer pool and lent to each codec (`Codec::new`): the compressors and the
/// decompressor of directions without context takeover (they keep nothing between messages,
/// so they are reset before each one), the output scratch buffer, and the count of
/// connections that own `Streams`, checked against `--compression-max-dedicated`.
#[derive(Default)]
pub struct Compressors {
    /// One compressor per window size 9..=15 (index `bits - 9`), created on first use.
    deflaters: [Option<Compress>; 7],
    /// A 15-bit decompressor: it inflates any window size.
    inflater: Option<Decompress>,
    /// Reused output buffer of `Codec::compress`.
    scratch: Vec<u8>,
    /// Connections of this reactor that own `Streams`.
    dedicated: usize,
    /// Connections of the rest of the process that own `Streams`, as the reactor last learnt
    /// it (`set_dedicated_elsewhere`).
    elsewhere: usize,
}

impl fmt::Debug for Compressors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressors")
            .field("dedicated", &self.dedicated)
            .field("elsewhere", &self.elsewhere)
            .finish()
    }
}

impl Compressors {
    pub fn new() -> Compressors {
        Compressors::default()
    }

    /// How many of this reactor's connections own compression state now.
    pub fn dedicated(&self) -> usize {
        self.dedicated
    }

    /// What the rest of the process owns (the reactor sums its workers' counts).
    pub fn set_dedicated_elsewhere(&mut self, n: usize) {
        self.elsewhere = n;
    }

    /// A connection took its own `Streams` (at the 101) / gave them up (when freed).
    pub fn streams_created(&mut self) {
        self.dedicated += 1;
    }

    pub fn streams_freed(&mut self) {
        self.dedicated = self.dedicated.saturating_sub(1);
    }

    /// The mode to negotiate a new connection with: `Dedicated` turns into `Shared` once
    /// `max_dedicated` connections own compression state, so past the cap new clients are
    /// answered with `server_no_context_takeover`/`client_no_context_takeover` (RFC 7692
    /// §7.1.1: the server may always ask for them) and cost no per-connection state. This
    /// reactor's count is exact; the rest of the process's is what the others had added when
    /// this reactor last woke (they add a change before its 101 leaves), so only upgrades
    /// decided at the same moment on N workers can pass the cap, by at most N − 1.
    pub fn mode_for_new(&self, mode: CompressionMode, max_dedicated: usize) -> CompressionMode {
        if mode == CompressionMode::Dedicated && self.dedicated + self.elsewhere >= max_dedicated {
            CompressionMode::Shared
        } else {
            mode
        }
    }

    /// A buffer for compressed output: the scratch buffer, taken until `recycle`.
    fn take_scratch(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.scratch)
    }

    /// Give back a buffer from `Codec::compress` for the next message.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= SCRATCH_KEEP {
            buf.clear();
            if self.scratch.capacity() < buf.capacity() {
                self.scratch = buf;
            }
        }
    }

    /// A message compressed for every connection whose agreement lets the server compress
    /// without context takeover, with window `bits`: the compressed payload, or `None` when
    /// it is shorter than `min_len`, `bits` is 8 (see the module docs), or compression does
    /// not shrink it.
    pub fn compress_fresh(&mut self, payload: &[u8], bits: u8, min_len: usize) -> Option<Vec<u8>> {
        if payload.len() < min_len || !(9..=15).contains(&bits) {
            return None;
        }
        let mut out = Vec::new();
        self.deflate_fresh(payload, bits, &mut out).then_some(out)
    }

    /// Compress one message with an empty window of `bits` (9..=15) on the shared
    /// compressor. Such a message references nothing sent before it, so any receiver whose
    /// agreed window is at least `bits` can inflate it, with or without its own context
    /// (§7.2.1): this is what lets a broadcast be compressed once for many connections
    /// (`pubsub::Published::deflated`). False when the output would not be smaller.
    fn deflate_fresh(&mut self, payload: &[u8], bits: u8, out: &mut Vec<u8>) -> bool {
        let c = self.deflaters[usize::from(bits - 9)].get_or_insert_with(|| new_compressor(bits));
        c.reset();
        deflate_message(c, payload, out) && out.len() < payload.len()
    }

    /// The shared decompressor, reset for a message that starts with an empty window.
    fn inflater(&mut self) -> &mut Decompress {
        let d = self.inflater.get_or_insert_with(|| new_decompressor(15));
        d.reset(false);
        d
    }
}

pub(super) fn new_compressor(bits: u8) -> Compress {
    // flate2 accepts 9..=15; `compress` never asks for 8 (see the module docs).
    Compress::new_with_window_bits(Compression::new(LEVEL), false, bits.clamp(9, 15))
}

fn new_decompressor(bits: u8) -> Decompress {
    // An agreed 8-bit window is inflated with 9 bits (zlib's 8 → 9, module docs).
    Decompress::new_with_window_bits(false, bits.clamp(9, 15))
}

/// One connection's permessage-deflate, lent for one message: what was agreed, the
/// connection's `Streams` if it has any, and its reactor's shared `Compressors`.
pub struct Codec<'s> {
    agreement: Agreement,
    streams: Option<&'s mut Streams>,
    shared: &'s mut Compressors,
}

impl<'s> Codec<'s> {
    pub fn new(
        agreement: Agreement,
        streams: Option<&'s mut Streams>,
        shared: &'s mut Compressors,
    ) -> Codec<'s> {
        Codec {
            agreement,
            streams,
            shared,
        }
    }

    /// Compress one outgoing message (§7.2.1), or `None` to send it uncompressed: shorter than
    /// `min_len`, an agreed 8-bit window, or (without context takeover) output no smaller
    /// than the input. Hand the buffer back with `Compressors::recycle` once it is queued.
    pub fn compress(&mut self, payload: &[u8], min_len: usize) -> Option<Vec<u8>> {
        let bits = self.agreement.server_max_window_bits();
        if payload.len() < min_len || bits < 9 {
            return None;
        }
        let mut out = self.shared.take_scratch();
        let own = match self.streams.as_deref_mut() {
            Some(s) if !self.agreement.server_no_context_takeover() => Some(s),
            _ => None,
        };
        let done = match own {
            // Context takeover: the window carries over, so once data went into the
            // compressor the message must go out compressed.
            Some(streams) => {
                let c = streams.tx.get_or_insert_with(|| new_compressor(bits));
                let ok = deflate_message(c, payload, &mut out);
                if !ok {
                    // A fresh compressor references nothing the client has not seen.
                    streams.tx = None;
                }
                ok
            }
            // §7.2.1 with server_no_context_takeover: an empty window for every message.
            None => self.shared.deflate_fresh(payload, bits, &mut out),
        };
        if done {
            Some(out)
        } else {
            self.shared.recycle(out);
            None
        }
    }

    /// Inflate one incoming message (§7.2.2) into `out` (cleared first). Output is bounded:
    /// one byte past `max` fails with `MessageTooLarge` (close 1009), and `out` grows in steps
    /// as bytes come, never to the inflated size announced by nobody. A corrupt stream fails
    /// with `BadCompressedData` (close 1007); with `utf8`, the inflated bytes are validated as
    /// they come and must end on a code point boundary (§8.1, close 1007).
    pub fn inflate(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        max: u64,
        utf8: Option<&mut Utf8Validator>,
    ) -> Result<(), ProtocolError> {
        // `max + 1` bytes is how "too large" is detected, so it must not overflow.
        let max = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(usize::MAX - 1);
        let bits = self.agreement.client_max_window_bits();
        let own = match self.streams.as_deref_mut() {
            Some(s) if !self.agreement.client_no_context_takeover() => Some(s),
            _ => None,
        };
        match own {
            Some(streams) => {
                let d = streams.rx.get_or_insert_with(|| new_decompressor(bits));
                inflate_message(d, data, out, max, utf8)
            }
            // §7.2.2 with client_no_context_takeover: every message starts with an empty
            // window, so the reactor's one decompressor serves every connection.
            None => inflate_message(self.shared.inflater(), data, out, max, utf8),
        }
    }
}

/// Deflate `payload` with a sync flush into `out` and drop the flush's trailing `00 00 ff
/// ff` (§7.2.1). False if the compressor reports an error.
pub(super) fn deflate_message(c: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    out.reserve(payload.len() / 2 + 64);
    let start = c.total_in();
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        let consumed = (c.total_in() - start) as usize;
        let input = payload.get(consumed..).unwrap_or_default();
        if c.compress_vec(input, out, FlushCompress::Sync).is_err() {
            return false;
        }
        // The flush is complete once all input is in and the compressor left room unused.
        if (c.total_in() - start) as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
    }
    if !out.ends_with(&TAIL) {
        return false;
    }
    out.truncate(out.len() - TAIL.len());
    true
}

/// Inflate `data` followed by `00 00 ff ff` (§7.2.2) into `out`, at most `max` bytes.
fn inflate_message(
    d: &mut Decompress,
    data: &[u8],
    out: &mut Vec<u8>,
    max: usize,
    mut utf8: Option<&mut Utf8Validator>,
) -> Result<(), ProtocolError> {
    out.clear();
    for (is_tail, input) in [(false, data), (true, &TAIL[..])] {
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                // Grow by doubling, capped at max + 1: reaching max + 1 proves "too large"
                // without ever holding more.
                let cap = out.capacity();
                if cap > max {
                    return Err(too_large(cap, max));
                }
                let want = cap.saturating_mul(2).max(INFLATE_FIRST_CHUNK).min(max + 1);
                out.reserve_exact(want - cap);
            }
            let (in_before, out_before) = (d.total_in(), out.len());
            let status = d
                .decompress_vec(&input[pos..], out, FlushDecompress::Sync)
                .map_err(|_| ProtocolError::BadCompressedData)?;
            let consumed = (d.total_in() - in_before) as usize;
            pos += consumed;
            if let Some(v) = utf8.as_deref_mut() {
                v.feed(&out[out_before..])?;
            }
            if out.len() > max {
                return Err(too_large(out.len(), max));
            }
            if status == Status::StreamEnd {
                // §7.2.3.4 lets a sender end a message with a BFINAL block. Only the tail we
                // appended may follow it; the stream is over, so start afresh next time
                // (context carried past a final block is lost; no known sender does that).
                if !is_tail && pos < input.len() {
                    return Err(ProtocolError::BadCompressedData);
                }
                d.reset(false);
                return finish_utf8(utf8);
            }
            let room = out.len() < out.capacity();
            if pos == input.len() && room {
                break; // all input in, and room was left: nothing more is pending
            }
            if consumed == 0 && out.len() == out_before && room {
                // Input left, room left, and no progress: the stream cannot go on.
                return Err(ProtocolError::BadCompressedData);
            }
        }
    }
    finish_utf8(utf8)
}

fn finish_utf8(utf8: Option<&mut Utf8Validator>) -> Result<(), ProtocolError> {
    match utf8 {
        Some(v) if !v.is_complete() => Err(ProtocolError::InvalidUtf8),
        _ => Ok(()),
    }
}

fn too_large(size: usize, max: usize) -> ProtocolError {
    ProtocolError::MessageTooLarge {
        size: size as u64,
        max: max as u64,
    }
}
