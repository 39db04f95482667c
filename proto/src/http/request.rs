//! Owns parsing of the HTTP/1.1 request head that opens a WebSocket connection (RFC 9112 §2–§5,
//! RFC 6455 §4.1): finding where the head ends, enforcing `HttpLimits` on heads still arriving,
//! and turning a complete head into a borrowed `Request`. Sans-IO: byte slices in, values out.
//! Must not: scan a head more than once however it is chunked (linear work), allocate per
//! header, or touch a socket.

use crate::config::HttpLimits;

/// One header field, borrowed from the head. The name keeps the peer's spelling; compare it
/// ASCII case-insensitively (RFC 9110 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

/// A parsed request head, borrowing every field from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Raw request-target (RFC 9112 §3.2).
    pub target: &'a str,
    /// `target` up to the first `?`.
    pub path: &'a str,
    /// What follows the first `?`, without it.
    pub query: Option<&'a str>,
    /// Minor version: 0 = HTTP/1.0, 1 = HTTP/1.1.
    pub version: u8,
    pub headers: Vec<Header<'a>>,
}

impl<'a> Request<'a> {
    /// First header with this name (ASCII case-insensitive, RFC 9110 §5.1).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers_named(name).next()
    }

    /// How many times a header name appears.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers_named(name).count()
    }

    /// All values of a header name, in order.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Why a request head was refused. Each maps to the status the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Request line longer than `max_request_line` (RFC 9112 §3: 414 URI Too Long).
    RequestLineTooLong,
    /// Head longer than `max_header_bytes` (RFC 6585 §5: 431).
    HeadTooLarge,
    /// More than `max_headers` fields (RFC 6585 §5: 431).
    TooManyHeaders,
    /// A well-formed `HTTP/x.y` that is not 1.0 or 1.1 (RFC 9110 §15.6.6: 505).
    UnsupportedVersion,
    /// Anything else that is not a valid HTTP/1.1 head (RFC 9112 §2.2: 400).
    Malformed(&'static str),
}

impl ParseError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::RequestLineTooLong => 414,
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::UnsupportedVersion => 505,
            ParseError::Malformed(_) => 400,
        }
    }

    /// A short human-readable explanation, suitable as a response body.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::RequestLineTooLong => "request line too long",
            ParseError::HeadTooLarge => "request header section too large",
            ParseError::TooManyHeaders => "too many header fields",
            ParseError::UnsupportedVersion => "HTTP version not supported",
            ParseError::Malformed(why) => why,
        }
    }
}

/// Find the end of the request head (`\r\n\r\n`, RFC 9112 §2.1).
///
/// `scanned` is how many bytes of `buf` an earlier call already examined; scanning resumes at
/// `scanned - 3` so a terminator split across reads is still found, and a head dribbled one byte
/// per read costs linear total work (tungstenite's CVE-2023-43669 re-parsed from the start each
/// time, which is quadratic).
///
/// Returns `Some(head_len)`, including the terminator. RFC 9112 §2.2 lets a recipient accept a bare
/// LF as a line terminator; we do not (lenient line endings are a request-smuggling vector), and
/// since such a head would never end in CRLFCRLF we stop at the first bare LF instead of waiting
/// for the timeout: the returned head then fails `parse` with 400.
pub fn find_head_end(buf: &[u8], scanned: usize) -> Option<usize> {
    find_head_end_counted(buf, scanned, &mut 0)
}

/// [`find_head_end`], adding the number of bytes it examined to `work` (the fuzz target and
/// tests check that total work stays linear in the head's length however it is chunked).
#[doc(hidden)]
#[inline]
pub fn find_head_end_counted(buf: &[u8], scanned: usize, work: &mut usize) -> Option<usize> {
    let start = scanned.saturating_sub(3).min(buf.len());
    let mut i = start;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let lf = i + off;
        *work += off + 1;
        if lf == 0 || buf[lf - 1] != b'\r' {
            // Bare LF: the head can never be valid, end it here so `parse` rejects it.
            return Some(lf + 1);
        }
        if lf >= 3 && buf[lf - 3] == b'\r' && buf[lf - 2] == b'\n' {
            return Some(lf + 1);
        }
        i = lf + 1;
    }
    *work += buf.len() - i;
    None
}

/// True if the request line (excluding its CRLF) is, or is bound to become, longer than
/// `max_request_line`. Looks at no more than `max_request_line + 2` bytes, so the cost per call
/// is bounded by the limit rather than by how much has been buffered; adds the bytes it looked
/// at to `work`.
fn request_line_too_long(buf: &[u8], limits: &HttpLimits, work: &mut usize) -> bool {
    let max = limits.max_request_line;
    let w = &buf[..buf.len().min(max.saturating_add(2))];
    let line_len = match w.iter().position(|&b| b == b'\n') {
        Some(lf) => lf,
        // No LF yet: everything so far is request line, except a trailing CR that may
        // start the CRLF.
        None => w.len(),
    };
    *work += (line_len + 1).min(w.len());
    let line = &w[..line_len];
    let len = line_len - usize::from(line.last() == Some(&b'\r'));
    len > max
}

/// Enforce the limits on a head that has NOT ended yet (call after `find_head_end` returned
/// `None`), so a peer cannot make us buffer without bound (RFC 9112 §3: 414, RFC 6585 §5: 431).
/// Stateless: looks at up to `max_request_line + 2` bytes. A connection calls
/// [`check_partial_since`] instead, whose work is linear in the bytes received.
pub fn check_partial(buf: &[u8], limits: &HttpLimits) -> Result<(), ParseError> {
    check_partial_since(buf, &mut PartialHead::default(), limits, &mut 0)
}

/// What [`check_partial_since`] remembers between the calls for one head.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PartialHead {
    /// Bytes already examined.
    pub seen: u32,
    /// The request line has ended (within its limit).
    pub line_done: bool,
}

/// [`check_partial`] for a head arriving piece by piece: only the bytes that came since the
/// last call are examined (a LF ending the request line), so however the head is dribbled
/// — a byte per read — the work stays linear in its length (the CVE-2023-43669 class), and
/// the limits are on bytes (and the caller's deadline on time), never on the number of
/// reads. Adds the bytes it examined to `work`.
#[doc(hidden)]
#[inline]
pub fn check_partial_since(
    buf: &[u8],
    head: &mut PartialHead,
    limits: &HttpLimits,
    work: &mut usize,
) -> Result<(), ParseError> {
    let from = (head.seen as usize).min(buf.len());
    head.seen = buf.len() as u32;
    if !head.line_done {
        let new = &buf[from..];
        let line_len = match new.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                *work += lf + 1;
                head.line_done = true;
                from + lf
            }
            None => {
                *work += new.len();
                buf.len()
            }
        };
        // Excluding its CR (or a trailing CR that may start the CRLF).
        let len = line_len - usize::from(line_len > 0 && buf[line_len - 1] == b'\r');
        if len > limits.max_request_line {
            return Err(ParseError::RequestLineTooLong);
        }
    }
    if buf.len() >= limits.max_header_bytes {
        // The head has not ended, so once it does it will be longer than the limit.
        return Err(ParseError::HeadTooLarge);
    }
    Ok(())
}

/// Map httparse's version error: a syntactically valid `HTTP/DIGIT.DIGIT` (RFC 9112 §2.3) that is
/// not 1.0/1.1 is a 505; anything else in that position is just a malformed request line.
fn version_error(head: &[u8]) -> ParseError {
    let line_end = head
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(head.len());
    let line = &head[..line_end];
    // RFC 9112 §3: method SP request-target SP HTTP-version. A raw space inside the target
    // makes more than two: a malformed request line (400), whatever its last word says.
    if line.iter().filter(|&&b| b == b' ').count() != 2 {
        return ParseError::Malformed("malformed request line");
    }
    let token = line.rsplit(|&b| b == b' ').next().unwrap_or(line);
    match token {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            ParseError::UnsupportedVersion
        }
        _ => ParseError::Malformed("invalid HTTP version"),
    }
}

/// Parse a complete head (`head` = exactly `buf[..head_len]` from `find_head_end`).
///
/// Limits are checked first so an oversized head is refused with the right status before any
/// parsing work (414 for the request line, 431 for the head or header count).
pub fn parse<'a>(head: &'a [u8], limits: &HttpLimits) -> Result<Request<'a>, ParseError> {
    if request_line_too_long(head, limits, &mut 0) {
        return Err(ParseError::RequestLineTooLong);
    }
    if head.len() > limits.max_header_bytes {
        return Err(ParseError::HeadTooLarge);
    }
    // Every LF must be part of a CRLF (RFC 9112 §2.2; we decline the MAY that allows bare LF,
    // which httparse would accept).
    if head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
    {
        return Err(ParseError::Malformed("bare LF line ending"));
    }

    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut slots);
    let n = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(ParseError::Malformed("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(version_error(head)),
        Err(httparse::Error::HeaderName) => {
            return Err(ParseError::Malformed("invalid header name"))
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(ParseError::Malformed("invalid header value"))
        }
        Err(httparse::Error::NewLine) => return Err(ParseError::Malformed("invalid line ending")),
        Err(httparse::Error::Token) | Err(httparse::Error::Status) => {
            return Err(ParseError::Malformed("invalid request line"))
        }
    };
    if n != head.len() {
        // Caller passed more than one head; the rest would be silently dropped.
        return Err(ParseError::Malformed("bytes after end of head"));
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(ParseError::Malformed("incomplete request line"));
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let headers = req
        .headers
        .iter()
        .map(|h| Header {
            name: h.name,
            value: h.value,
        })
        .collect();
    Ok(Request {
        method,
        target,
        path,
        query,
        version,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn head_end_found_at_every_split_point() {
        let full = [REQ, b"\x81\x05hello".as_slice()].concat();
        assert_eq!(find_head_end(&full, 0), Some(REQ.len()));
        for split in 0..=full.len() {
            let mut scanned = 0;
            let mut found = None;
            for end in [split, full.len()] {
                found = find_head_end(&full[..end], scanned);
                if found.is_some() {
                    break;
                }
                scanned = end;
            }
            assert_eq!(found, Some(REQ.len()), "split at {split}");
        }
    }

    #[test]
    fn head_end_growing_prefixes() {
        let mut scanned = 0;
        for end in 0..=REQ.len() {
            let r = find_head_end(&REQ[..end], scanned);
            if end < REQ.len() {
                assert_eq!(r, None, "prefix {end}");
            } else {
                assert_eq!(r, Some(REQ.len()));
            }
            scanned = end;
        }
    }

    #[test]
    fn dribbled_16k_head_is_linear() {
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        while head.len() < 16 * 1024 - 40 {
            head.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let mut work = 0;
        let mut scanned = 0;
        let mut found = None;
        for end in 1..=head.len() {
            found = find_head_end_counted(&head[..end], scanned, &mut work);
            if found.is_some() {
                break;
            }
            scanned = end;
        }
        assert_eq!(found, Some(head.len()));
        // Each call re-examines at most 3 old bytes plus the new one.
        assert!(
            work <= 4 * head.len(),
            "work {work} for {} bytes",
            head.len()
        );
    }

    #[test]
    fn bare_lf_ends_head_early_and_fails_parse() {
        let raw = b"GET / HTTP/1.1\nHost: x\n\n";
        let n = find_head_end(raw, 0).unwrap();
        assert_eq!(n, 15);
        assert_eq!(
            parse(&raw[..n], &HttpLimits::default()),
            Err(ParseError::Malformed("bare LF line ending"))
        );
        // httparse on its own would accept it (RFC 9112 §2.2 MAY); we are stricter.
        let mut h = [httparse::EMPTY_HEADER; 4];
        assert!(httparse::Request::new(&mut h).parse(raw).is_ok());
    }

    #[test]
    fn parses_fields() {
        let r = parse(REQ, &HttpLimits::default()).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/chat?room=1");
        assert_eq!(r.path, "/chat");
        assert_eq!(r.query, Some("room=1"));
        assert_eq!(r.version, 1);
        assert_eq!(r.headers.len(), 5);
        assert_eq!(r.header("host"), Some(b"server.example.com".as_slice()));
        assert_eq!(r.header("UPGRADE"), Some(b"websocket".as_slice()));
        assert_eq!(r.header_count("sec-websocket-version"), 1);
        assert_eq!(r.header("Origin"), None);
    }

    #[test]
    fn repeated_headers_in_order() {
        let raw = b"GET / HTTP/1.0\r\nA: 1\r\nb: 2\r\na: 3\r\n\r\n";
        let r = parse(raw, &HttpLimits::default()).unwrap();
        assert_eq!(r.version, 0);
        assert_eq!(r.header_count("a"), 2);
        let v: Vec<&[u8]> = r.headers_named("A").collect();
        assert_eq!(v, vec![b"1".as_slice(), b"3".as_slice()]);
        assert_eq!(r.query, None);
    }

    #[test]
    fn partial_limits() {
        let l = HttpLimits {
            max_header_bytes: 64,
            max_headers: 4,
            max_request_line: 16,
            ..HttpLimits::default()
        };
        assert_eq!(check_partial(b"GET / HTTP/1.1\r\nHo", &l), Ok(()));
        // 16-byte line plus CRLF is fine; 17 is not.
        assert_eq!(check_partial(b"GET /aaaaaaaaaaa\r\n", &l), Ok(()));
        assert_eq!(
            check_partial(b"GET /aaaaaaaaaaaa\r\n", &l),
            Err(ParseError::RequestLineTooLong)
        );
        assert_eq!(
            check_partial(b"GET /aaaaaaaaaaaa", &l),
            Err(ParseError::RequestLineTooLong)
        );
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        big.resize(64, b'a');
        assert_eq!(check_partial(&big, &l), Err(ParseError::HeadTooLarge));
        assert_eq!(check_partial(&big[..63], &l), Ok(()));
        assert_eq!(check_partial(b"", &l), Ok(()));
    }

    #[test]
    fn parse_limits_and_versions() {
        let l = HttpLimits {
            max_header_bytes: 64,
            max_headers: 2,
            max_request_line: 16,
            ..HttpLimits::default()
        };
        assert_eq!(
            parse(b"GET /aaaaaaaaaaaa\r\n\r\n", &l),
            Err(ParseError::RequestLineTooLong)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &l),
            Err(ParseError::TooManyHeaders)
        );
        let d = HttpLimits::default();
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\n\r\n", &d),
            Err(ParseError::UnsupportedVersion)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.2\r\n\r\n", &d),
            Err(ParseError::UnsupportedVersion)
        );
        assert_eq!(
            parse(b"GET / http/1.1\r\n\r\n", &d).unwrap_err().status(),
            400
        );
        assert_eq!(parse(b"GET /\r\n\r\n", &d).unwrap_err().status(), 400);
        assert_eq!(parse(b"\r\n\r\n", &d).unwrap_err().status(), 400);
        assert_eq!(parse(b"", &d).unwrap_err().status(), 400);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\nextra", &d)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // Cheap deterministic fuzz: xorshift bytes biased towards HTTP punctuation.
        let alphabet = b"GET /HTP1.0\r\n: \x00\xffaz";
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let l = HttpLimits::default();
        for _ in 0..2000 {
            let mut buf = Vec::new();
            for _ in 0..(s % 64) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                buf.push(alphabet[(s % alphabet.len() as u64) as usize]);
            }
            let _ = check_partial(&buf, &l);
            if let Some(n) = find_head_end(&buf, 0) {
                let _ = parse(&buf[..n], &l);
            }
            let _ = parse(&buf, &l);
        }
    }
}
