//! Owns the permessage-deflate negotiation (RFC 7692 §5, §7.1): the scanner over the client's
//! `Sec-WebSocket-Extensions` values, the parameter rules of an offer, and the `Agreement`
//! answered in the 101.
//! Must not: fail on any header value (an unparseable element is one more declined offer), take
//! more than linear time in the header's length, or compress or inflate anything.

use std::cell::Cell;
use std::fmt;

use super::NAME;
use crate::config::CompressionMode;

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
