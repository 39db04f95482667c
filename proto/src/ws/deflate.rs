//! Owns permessage-deflate (RFC 7692): choosing a response to the client's
//! `Sec-WebSocket-Extensions` offers (§5, §7.1) and the codec — compressing an outgoing
//! message (§7.2.1) and inflating an incoming one within the message limit (§7.2.2). Sans-IO:
//! bytes in, bytes out, no sockets and no clock.
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

use std::cell::Cell;
use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::utf8::Utf8Validator;
use super::ProtocolError;
use crate::config::CompressionMode;

/// The "Per-Message Compressed" bit (RFC 7692 §6) as it appears in a frame header's `rsv`
/// (`rsv1 << 2 | rsv2 << 1 | rsv3`).
pub const RSV1: u8 = 0b100;

/// The extension's name (RFC 7692 §7).
pub const NAME: &str = "permessage-deflate";

/// zlib compression level for outgoing messages: 1, zlib-rs's fast "quick" strategy, which
/// trades some output size for much less time on JSON (`cargo bench --bench deflate`;
/// figures in docs/benchmarks-deflate.md). The level does not change a compressor's memory.
const LEVEL: u32 = 1;

/// §7.2.1 / §7.2.2: a sync flush ends with these four octets; the sender removes them and the
/// receiver appends them again.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// First allocation for an inflated message; it then doubles, never past the limit + 1.
const INFLATE_FIRST_CHUNK: usize = 16 * 1024;

/// A scratch buffer larger than this is freed after use instead of kept.
const SCRATCH_KEEP: usize = 1 << 20;

// ------------------------------------------------------------------------------------------
// Negotiation (§5, §7.1)
// ------------------------------------------------------------------------------------------

/// The parameters agreed for one connection, packed into 2 bytes so that it fits in padding of
/// the connection's state.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// Bit set of the `SNCT`, `CNCT`, `ECHO_SERVER_BITS` and `ECHO_CLIENT_BITS` flags.
    flags: u8,
    /// Server window bits (high nibble) and client window bits (low nibble), each 8..=15.
    windows: u8,
}

/// §7.1.1.1 `server_no_context_takeover`.
const SNCT: u8 = 1;
/// §7.1.1.2 `client_no_context_takeover`.
const CNCT: u8 = 2;
/// The response carries `server_max_window_bits` (the offer had it: §7.1.2.1).
const ECHO_SERVER_BITS: u8 = 4;
/// The response carries `client_max_window_bits` (the offer had it with a value: §7.1.2.2).
const ECHO_CLIENT_BITS: u8 = 8;

impl Agreement {
    /// §7.1.1.1: the server resets its compressor before every message.
    pub fn server_no_context_takeover(&self) -> bool {
        self.flags & SNCT != 0
    }

    /// §7.1.1.2: the client resets its compressor before every message.
    pub fn client_no_context_takeover(&self) -> bool {
        self.flags & CNCT != 0
    }

    /// §7.1.2.1: log2 of the LZ77 window the server compresses with (8..=15).
    pub fn server_max_window_bits(&self) -> u8 {
        self.windows >> 4
    }

    /// §7.1.2.2: log2 of the LZ77 window the client compresses with (8..=15).
    pub fn client_max_window_bits(&self) -> u8 {
        self.windows & 0x0f
    }

    /// True if some direction keeps its LZ77 window across messages, so the connection needs
    /// its own `Streams`.
    pub fn keeps_context(&self) -> bool {
        (self.flags & (SNCT | CNCT)) != (SNCT | CNCT)
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub fn response(&self) -> String {
        let mut s = String::from(NAME);
        if self.server_no_context_takeover() {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover() {
            s.push_str("; client_no_context_takeover");
        }
        if self.flags & ECHO_SERVER_BITS != 0 {
            s.push_str("; server_max_window_bits=");
            s.push_str(&self.server_max_window_bits().to_string());
        }
        if self.flags & ECHO_CLIENT_BITS != 0 {
            s.push_str("; client_max_window_bits=");
            s.push_str(&self.client_max_window_bits().to_string());
        }
        s
    }
}

impl fmt::Debug for Agreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Agreement({:?})", self.response())
    }
}

/// One `permessage-deflate` offer, as far as it has been parsed.
#[derive(Debug, Default, Clone, Copy)]
struct Offer {
    /// Bit set of the parameters seen so far (`1 << Param as u8`): a second one is a
    /// duplicate.
    seen: u8,
    /// Set on the first parameter that makes the offer unacceptable; the rest of the element
    /// is still scanned (to find its end) but not evaluated.
    declined: bool,
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    ServerNoContextTakeover,
    ClientNoContextTakeover,
    ServerMaxWindowBits,
    ClientMaxWindowBits,
}

impl Param {
    fn from_name(name: &[u8]) -> Option<Param> {
        const NAMES: [(&str, Param); 4] = [
            ("server_no_context_takeover", Param::ServerNoContextTakeover),
            ("client_no_context_takeover", Param::ClientNoContextTakeover),
            ("server_max_window_bits", Param::ServerMaxWindowBits),
            ("client_max_window_bits", Param::ClientMaxWindowBits),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            .map(|&(_, p)| p)
    }
}

/// A parameter value: a token or the inside of a quoted-string (RFC 6455 §9.1).
#[derive(Debug, Clone, Copy)]
struct Value<'a> {
    raw: &'a [u8],
    quoted: bool,
}

impl Offer {
    /// Record one parameter. §7: "A server MUST decline an extension negotiation offer for
    /// this extension if ... [it] contains an extension parameter not defined for use in an
    /// offer ... with an invalid value ... multiple extension parameters with the same name".
    fn param(&mut self, name: &[u8], value: Option<Value<'_>>) {
        if self.declined {
            return;
        }
        let Some(p) = Param::from_name(name) else {
            self.declined = true;
            return;
        };
        let bit = 1 << p as u8;
        if self.seen & bit != 0 {
            self.declined = true;
            return;
        }
        self.seen |= bit;
        let ok = match (p, value) {
            // §7.1.1.1 / §7.1.1.2: these parameters have no value.
            (Param::ServerNoContextTakeover, None) => {
                self.server_no_context_takeover = true;
                true
            }
            (Param::ClientNoContextTakeover, None) => {
                self.client_no_context_takeover = true;
                true
            }
            // §7.1.2.1: in an offer, server_max_window_bits has a value 8..=15.
            (Param::ServerMaxWindowBits, Some(v)) => {
                self.server_max_window_bits = window_bits(v);
                self.server_max_window_bits.is_some()
            }
            // §7.1.2.2: client_max_window_bits may come without a value.
            (Param::ClientMaxWindowBits, None) => {
                self.client_max_window_bits = Some(None);
                true
            }
            (Param::ClientMaxWindowBits, Some(v)) => {
                self.client_max_window_bits = window_bits(v).map(Some);
                self.client_max_window_bits.is_some()
            }
            _ => false,
        };
        self.declined |= !ok;
    }

    /// The agreement this server makes for an acceptable offer under `mode`.
    fn agree(&self, mode: CompressionMode) -> Option<Agreement> {
        if self.declined {
            return None;
        }
        let mut flags = 0;
        match mode {
            CompressionMode::Off => return None,
            // Refuse context takeover in both directions (a server MAY add either parameter
            // to its response: §7.1.1.1, §7.1.1.2), so no state outlives a message.
            CompressionMode::Shared => flags |= SNCT | CNCT,
            CompressionMode::Dedicated => {
                if self.server_no_context_takeover {
                    flags |= SNCT;
                }
                // §7.1.1.2: the client's hint, echoed so it binds and the server can skip a
                // per-connection decompressor.
                if self.client_no_context_takeover {
                    flags |= CNCT;
                }
            }
        }
        // §7.1.2.1: "A server accepts an extension negotiation offer with this parameter by
        // including the "server_max_window_bits" extension parameter in the extension
        // negotiation response ... with the same or smaller value as the offer."
        let server_bits = match self.server_max_window_bits {
            Some(bits) => {
                flags |= ECHO_SERVER_BITS;
                bits
            }
            None => 15,
        };
        // §7.1.2.2: the client's value is a hint; echoing it lets a dedicated decompressor
        // use the smaller window. A shared decompressor uses 15 bits and needs no limit.
        let client_bits = match (self.client_max_window_bits, mode) {
            (Some(Some(bits)), CompressionMode::Dedicated) => {
                flags |= ECHO_CLIENT_BITS;
                bits
            }
            _ => 15,
        };
        Some(Agreement {
            flags,
            windows: (server_bits << 4) | client_bits,
        })
    }
}

/// A window-bits value: 1*DIGIT without leading zeros, 8..=15 (§7.1.2.1), possibly quoted
/// (RFC 6455 §9.1: a quoted value must be a token once unescaped).
fn window_bits(v: Value<'_>) -> Option<u8> {
    let mut n: u8 = 0;
    let mut digits = 0;
    let mut escaped = false;
    for &b in v.raw {
        if v.quoted && !escaped && b == b'\\' {
            escaped = true;
            continue;
        }
        escaped = false;
        if !b.is_ascii_digit() || (digits == 0 && b == b'0') || digits == 2 {
            return None;
        }
        n = n * 10 + (b - b'0');
        digits += 1;
    }
    (8..=15).contains(&n).then_some(n)
}

/// Choose the response to the client's offers: the first acceptable `permessage-deflate`
/// offer, in the client's order of preference (§5), across every `Sec-WebSocket-Extensions`
/// value. `None`: answer without the extension. Linear in the header's length; never fails
/// (an unparseable element is one more declined offer).
pub fn negotiate(offers: &[&str], mode: CompressionMode) -> Option<Agreement> {
    negotiate_counted(offers, mode, &mut 0)
}

/// [`negotiate`], adding to `work` how many times its scanner looked at a byte (the fuzz
/// target `deflate_offer` checks the total stays linear in the offers' length).
#[doc(hidden)]
pub fn negotiate_counted(
    offers: &[&str],
    mode: CompressionMode,
    work: &mut usize,
) -> Option<Agreement> {
    if mode == CompressionMode::Off {
        return None;
    }
    for value in offers {
        let mut lex = Lexer {
            s: value.as_bytes(),
            i: 0,
            looks: Cell::new(0),
        };
        let agreed = std::iter::from_fn(|| lex.element()).find_map(|(name, offer)| {
            name.filter(|n| n.eq_ignore_ascii_case(NAME.as_bytes()))
                .and_then(|_| offer.agree(mode))
        });
        *work += lex.looks.get();
        if agreed.is_some() {
            return agreed;
        }
    }
    None
}

/// Scanner for `extension-list` (RFC 6455 §9.1):
/// `1#( token *( ";" token [ "=" ( token / quoted-string ) ] ) )`.
struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    /// Bytes looked at so far (`peek` calls): the measure of work `negotiate_counted` reports.
    looks: Cell<usize>,
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        self.looks.set(self.looks.get() + 1);
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| &self.s[start..self.i])
    }

    /// A quoted-string's inside (escapes left in place), the cursor after its closing quote.
    fn quoted(&mut self) -> Option<&'a [u8]> {
        self.i += 1; // the opening quote
        let start = self.i;
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    self.i += 1;
                    return Some(&self.s[start..self.i - 1]);
                }
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
        None
    }

    fn value(&mut self) -> Option<Value<'a>> {
        if self.peek() == Some(b'"') {
            self.quoted().map(|raw| Value { raw, quoted: true })
        } else {
            self.token().map(|raw| Value { raw, quoted: false })
        }
    }

    /// Skip to just past the next `,` outside a quoted-string (or to the end).
    fn skip_element(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b',' => {
                    self.i += 1;
                    return;
                }
                b'"' => {
                    let _ = self.quoted();
                }
                _ => self.i += 1,
            }
        }
    }

    /// The next list element: its name (None if malformed) and its parameters, the cursor
    /// past its `,`. None at the end of the value.
    fn element(&mut self) -> Option<(Option<&'a [u8]>, Offer)> {
        loop {
            self.skip_ows();
            match self.peek()? {
                b',' => self.i += 1, // empty list elements are allowed (RFC 9110 §5.6.1)
                _ => break,
            }
        }
        let mut offer = Offer::default();
        let Some(name) = self.token() else {
            self.skip_element();
            return Some((None, offer));
        };
        loop {
            self.skip_ows();
            match self.peek() {
                None => return Some((Some(name), offer)),
                Some(b',') => {
                    self.i += 1;
                    return Some((Some(name), offer));
                }
                Some(b';') => self.i += 1,
                Some(_) => break,
            }
            self.skip_ows();
            let Some(param) = self.token() else { break };
            self.skip_ows();
            let value = if self.peek() == Some(b'=') {
                self.i += 1;
                self.skip_ows();
                match self.value() {
                    Some(v) => Some(v),
                    None => break,
                }
            } else {
                None
            };
            offer.param(param, value);
        }
        // Malformed: decline this element, go on with the next.
        self.skip_element();
        Some((None, offer))
    }
}

// ------------------------------------------------------------------------------------------
// The codec (§7.2)
// ------------------------------------------------------------------------------------------

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
    /// reactor's count is exact; the rest of the process's is as of the reactor's last loop
    /// iteration, so upgrades on N workers can pass the cap by what the others accept within
    /// one iteration.
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

fn new_compressor(bits: u8) -> Compress {
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
fn deflate_message(c: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> bool {
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

#[cfg(test)]
mod tests;
