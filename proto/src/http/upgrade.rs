//! Owns the server side of the WebSocket opening handshake (RFC 6455 §4.2): deciding whether a
//! parsed request is a valid upgrade, choosing a subprotocol, computing `Sec-WebSocket-Accept`,
//! and writing the 101 or error response bytes. Sans-IO: requests in, bytes appended to a `Vec`.
//! Must not: accept an upgrade that breaks RFC 6455 §4.2.1, or write to a socket.

use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

use super::request::Request;

/// The GUID RFC 6455 §1.3 appends to the client's key before hashing.
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a valid upgrade request asked for, borrowed from the request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUpgrade<'a> {
    /// `Sec-WebSocket-Key`, trimmed.
    pub key: &'a str,
    /// Offered subprotocols, in order, from all `Sec-WebSocket-Protocol` headers (comma lists,
    /// trimmed, empty items dropped; non-UTF-8 header values ignored).
    pub protocols: Vec<&'a str>,
    /// Raw `Sec-WebSocket-Extensions` values, trimmed, in order (non-UTF-8 values ignored: a
    /// server may always decline an extension offer, RFC 6455 §9.1).
    pub extensions: Vec<&'a str>,
    /// `Origin` (RFC 6455 §4.2.1 item 7, RFC 6454), if present and UTF-8.
    pub origin: Option<&'a str>,
}

/// Why an upgrade was refused: the status to answer with and a short body text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

const fn reject(status: u16, reason: &'static str) -> Rejection {
    Rejection { status, reason }
}

/// Optional whitespace around list items and field values (RFC 9110 §5.6.3).
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Items of a comma-separated list (RFC 9110 §5.6.1), trimmed, empty items dropped.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

fn has_token(value: &[u8], token: &str) -> bool {
    list_items(value).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// True if the request asks for a WebSocket upgrade at all (an `Upgrade` header containing the
/// token `websocket`), to tell plain HTTP requests from upgrades.
pub fn wants_websocket(req: &Request) -> bool {
    req.headers_named("upgrade")
        .any(|v| has_token(v, "websocket"))
}

/// Validate an upgrade request against RFC 6455 §4.2.1. Checks run in a fixed order and the first
/// failure wins, so a given request always gets the same status.
pub fn validate<'a>(
    req: &Request<'a>,
    allowed_origins: &[String],
) -> Result<WsUpgrade<'a>, Rejection> {
    // §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
    if req.method != "GET" {
        return Err(reject(405, "WebSocket upgrade requires GET"));
    }
    if req.version != 1 {
        return Err(reject(505, "WebSocket upgrade requires HTTP/1.1"));
    }

    // Item 2: Host; RFC 9112 §3.2 makes a missing or repeated Host a 400.
    if req.header_count("host") != 1 {
        return Err(reject(400, "exactly one Host header is required"));
    }

    // Item 3: Upgrade containing "websocket". RFC 9110 §15.5.22: 426 when the client must
    // upgrade; write_rejection adds `Upgrade: websocket`.
    let upgrade = match req.header_count("upgrade") {
        0 => return Err(reject(426, "Upgrade: websocket header is required")),
        1 => req.header("upgrade").unwrap_or_default(),
        _ => return Err(reject(400, "duplicate Upgrade header")),
    };
    if !has_token(upgrade, "websocket") {
        return Err(reject(400, "Upgrade header must contain websocket"));
    }

    // Item 4: Connection including the token "Upgrade", case-insensitive, possibly among others
    // and across several Connection fields (RFC 9110 §7.6.1).
    if !req
        .headers_named("connection")
        .any(|v| has_token(v, "upgrade"))
    {
        return Err(reject(400, "Connection header must contain Upgrade"));
    }

    // Item 6 and §4.4: a version other than 13 gets 426 with `Sec-WebSocket-Version: 13`.
    let version = match req.header_count("sec-websocket-version") {
        0 => return Err(reject(426, "Sec-WebSocket-Version: 13 is required")),
        1 => req.header("sec-websocket-version").unwrap_or_default(),
        _ => return Err(reject(400, "duplicate Sec-WebSocket-Version header")),
    };
    if trim_ows(version) != b"13" {
        return Err(reject(426, "unsupported Sec-WebSocket-Version"));
    }

    // Item 5: the key is base64 of a 16-byte nonce (§4.1 item 7).
    let key = match req.header_count("sec-websocket-key") {
        1 => trim_ows(req.header("sec-websocket-key").unwrap_or_default()),
        0 => return Err(reject(400, "Sec-WebSocket-Key header is required")),
        _ => return Err(reject(400, "duplicate Sec-WebSocket-Key header")),
    };
    let key = std::str::from_utf8(key).map_err(|_| reject(400, "invalid Sec-WebSocket-Key"))?;
    if !key_is_valid(key) {
        return Err(reject(400, "invalid Sec-WebSocket-Key"));
    }

    // A GET upgrade carries no body (RFC 9110 §9.3.1); a body would be misread as frames, so
    // refuse rather than guess its framing (RFC 9112 §6.3).
    if req.header_count("transfer-encoding") > 0
        || req
            .headers_named("content-length")
            .any(|v| trim_ows(v) != b"0")
    {
        return Err(reject(400, "upgrade request must not have a body"));
    }

    // §4.2.2 item 1 / §10.2: the server may refuse origins it does not trust with 403. A
    // repeated Origin is ambiguous, so it cannot match the allow-list.
    let origin = req
        .header("origin")
        .and_then(|v| std::str::from_utf8(trim_ows(v)).ok());
    if !allowed_origins.is_empty() {
        let ok = req.header_count("origin") == 1
            && origin.is_some_and(|o| allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !ok {
            return Err(reject(403, "origin not allowed"));
        }
    }

    // §4.1 item 10: subprotocols are a comma list, possibly over several headers.
    let protocols = req
        .headers_named("sec-websocket-protocol")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(',').map(|p| p.trim_matches([' ', '\t'])))
        .filter(|p| !p.is_empty())
        .collect();
    let extensions = req
        .headers_named("sec-websocket-extensions")
        .filter_map(|v| std::str::from_utf8(trim_ows(v)).ok())
        .filter(|v| !v.is_empty())
        .collect();

    Ok(WsUpgrade {
        key,
        protocols,
        extensions,
        origin,
    })
}

/// A key is valid if it is canonical padded base64 (RFC 4648 §4) of exactly 16 bytes, which is
/// always 24 characters ending in `==`.
fn key_is_valid(key: &str) -> bool {
    if key.len() != 24 {
        return false;
    }
    let mut raw = [0u8; 18];
    matches!(STANDARD.decode_slice(key, &mut raw), Ok(16))
}

/// Choose the first protocol in the server's preference order that the client offered (RFC 6455
/// §4.2.2 item 4: the server must pick one of the client's values, or none).
pub fn select_protocol<'a>(offered: &[&'a str], supported: &[String]) -> Option<&'a str> {
    supported
        .iter()
        .find_map(|s| offered.iter().copied().find(|o| *o == s.as_str()))
}

/// `base64(SHA-1(key + WS_GUID))` — RFC 6455 §4.2.2 step 5 item 4.
pub fn accept_key(key: &str) -> [u8; 28] {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(WS_GUID.as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 28];
    // 20 bytes always encode to exactly 28 characters, so this cannot fail.
    let _ = STANDARD.encode_slice(digest, &mut out);
    out
}

/// Append the `101 Switching Protocols` response (RFC 6455 §4.2.2 step 5).
/// `extensions` is the full `Sec-WebSocket-Extensions` value the server agreed to.
pub fn write_accept(
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&accept_key(key));
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(e) = extensions {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        out.extend_from_slice(e.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Append a complete error response for a rejected upgrade; the body is the reason.
pub fn write_rejection(rej: &Rejection, out: &mut Vec<u8>) {
    write_status(rej.status, rej.reason, out);
}

/// Append a complete response for `status` with `body` + "\n" as a plain-text body (the reason
/// phrase if `body` is empty). The connection is always closed afterwards (RFC 9112 §9.6), and
/// the headers some statuses require are added: 405 `Allow` (RFC 9110 §15.5.6), 401
/// `WWW-Authenticate` (RFC 6750 §3), 426 `Upgrade`
/// (RFC 9110 §15.5.22) and `Sec-WebSocket-Version` (RFC 6455 §4.4).
pub fn write_status(status: u16, body: &str, out: &mut Vec<u8>) {
    let body = if body.is_empty() {
        reason_phrase(status)
    } else {
        body
    };
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        reason_phrase(status),
        body.len() + 1
    );
    match status {
        405 => out.extend_from_slice(b"Allow: GET\r\n"),
        // RFC 6750 §3: a refused or missing bearer token.
        401 => out.extend_from_slice(b"WWW-Authenticate: Bearer error=\"invalid_token\"\r\n"),
        426 => out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out.push(b'\n');
}

/// Standard reason phrase (RFC 9110 §15, RFC 6585 for 428/429/431).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        304 => "Not Modified",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpLimits;
    use crate::http::request::{check_partial, find_head_end, parse};

    /// Run the reactor's pipeline over `raw` arriving in 1 KiB reads: find_head_end, else
    /// check_partial; then parse and validate. Returns the response status, 101 on success, or 0
    /// if the head never ended (the reactor would time out).
    fn status_of(raw: &[u8], origins: &[String]) -> u16 {
        let limits = HttpLimits::default();
        let mut scanned = 0;
        let mut end = 0;
        loop {
            end = (end + 1024).min(raw.len());
            let buf = &raw[..end];
            if let Some(n) = find_head_end(buf, scanned) {
                return match parse(&buf[..n], &limits) {
                    Err(e) => e.status(),
                    Ok(req) => match validate(&req, origins) {
                        Ok(_) => 101,
                        Err(r) => r.status,
                    },
                };
            }
            if let Err(e) = check_partial(buf, &limits) {
                return e.status();
            }
            scanned = end;
            if end == raw.len() {
                return 0;
            }
        }
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// A valid request with `line` as the request line and `extra` headers replacing the
    /// defaults named in `drop`.
    fn req(line: &str, drop: &[&str], extra: &str) -> Vec<u8> {
        let defaults = [
            ("Host", "server.example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ];
        let mut s = format!("{line}\r\n");
        for (n, v) in defaults {
            if !drop.contains(&n) {
                s.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        s.push_str(extra);
        s.push_str("\r\n");
        s.into_bytes()
    }

    fn ok(extra: &str) -> Vec<u8> {
        req("GET /chat HTTP/1.1", &[], extra)
    }

    #[test]
    fn rfc6455_accept_vector() {
        assert_eq!(&accept_key(KEY), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn upgrade_table() {
        let none: Vec<String> = vec![];
        let allow = vec!["https://good.example".to_string()];
        let long_line = format!("GET /{} HTTP/1.1", "a".repeat(9 * 1024));
        let big_head = ok(&format!("X-Big: {}\r\n", "b".repeat(17 * 1024)));
        let many = ok(&"X-H: 1\r\n".repeat(101));
        let mut nul = ok("X-Nul: a\r\n");
        let at = nul.len() - 4;
        nul.insert(at, 0);
        let mut dribble_garbage = vec![b'\x16'; 100];
        dribble_garbage.extend_from_slice(b"\r\n\r\n");

        #[rustfmt::skip]
        let table: Vec<(&str, Vec<u8>, &[String], u16)> = vec![
            ("valid", ok(""), &none, 101),
            ("POST", req("POST /chat HTTP/1.1", &[], ""), &none, 405),
            ("PUT", req("PUT /chat HTTP/1.1", &[], ""), &none, 405),
            ("lower-case get", req("get /chat HTTP/1.1", &[], ""), &none, 405),
            ("HTTP/1.0", req("GET /chat HTTP/1.0", &[], ""), &none, 505),
            ("HTTP/2.0", req("GET /chat HTTP/2.0", &[], ""), &none, 505),
            ("HTTP/1.2", req("GET /chat HTTP/1.2", &[], ""), &none, 505),
            ("missing Host", req("GET / HTTP/1.1", &["Host"], ""), &none, 400),
            ("two Host", ok("Host: other\r\n"), &none, 400),
            ("missing Upgrade", req("GET / HTTP/1.1", &["Upgrade"], ""), &none, 426),
            ("Upgrade h2c", req("GET / HTTP/1.1", &["Upgrade"], "Upgrade: h2c\r\n"), &none, 400),
            ("two Upgrade", ok("Upgrade: websocket\r\n"), &none, 400),
            ("Upgrade list", req("GET / HTTP/1.1", &["Upgrade"], "Upgrade: h2c, WebSocket\r\n"), &none, 101),
            ("missing Connection", req("GET / HTTP/1.1", &["Connection"], ""), &none, 400),
            ("Connection keep-alive", req("GET / HTTP/1.1", &["Connection"], "Connection: keep-alive\r\n"), &none, 400),
            ("Connection keep-alive, Upgrade", req("GET / HTTP/1.1", &["Connection"], "Connection: keep-alive, Upgrade\r\n"), &none, 101),
            ("Connection split over headers", req("GET / HTTP/1.1", &["Connection"], "Connection: keep-alive\r\nConnection: upgrade\r\n"), &none, 101),
            ("lower-case tokens", req("GET / HTTP/1.1", &["Connection", "Upgrade"], "upgrade: WEBSOCKET\r\nconnection: upgrade\r\n"), &none, 101),
            ("Connection: Upgrades", req("GET / HTTP/1.1", &["Connection"], "Connection: Upgrades\r\n"), &none, 400),
            ("version 8", req("GET / HTTP/1.1", &["Sec-WebSocket-Version"], "Sec-WebSocket-Version: 8\r\n"), &none, 426),
            ("version missing", req("GET / HTTP/1.1", &["Sec-WebSocket-Version"], ""), &none, 426),
            ("version 13, 8", req("GET / HTTP/1.1", &["Sec-WebSocket-Version"], "Sec-WebSocket-Version: 13, 8\r\n"), &none, 426),
            ("two versions", ok("Sec-WebSocket-Version: 13\r\n"), &none, 400),
            ("key missing", req("GET / HTTP/1.1", &["Sec-WebSocket-Key"], ""), &none, 400),
            ("key 15 bytes", req("GET / HTTP/1.1", &["Sec-WebSocket-Key"], "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n"), &none, 400),
            ("key 17 bytes", req("GET / HTTP/1.1", &["Sec-WebSocket-Key"], "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n"), &none, 400),
            ("key not base64", req("GET / HTTP/1.1", &["Sec-WebSocket-Key"], "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!A==\r\n"), &none, 400),
            ("key unpadded", req("GET / HTTP/1.1", &["Sec-WebSocket-Key"], "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n"), &none, 400),
            ("key non-canonical", req("GET / HTTP/1.1", &["Sec-WebSocket-Key"], "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n"), &none, 400),
            ("key non-UTF-8", req("GET / HTTP/1.1", &["Sec-WebSocket-Key"], "Sec-WebSocket-Key: \u{e9}GhlIHNhbXBsZSBub25jZQ==\r\n"), &none, 400),
            ("two keys", ok(&format!("Sec-WebSocket-Key: {KEY}\r\n")), &none, 400),
            ("Content-Length 5", ok("Content-Length: 5\r\n"), &none, 400),
            ("Content-Length 0", ok("Content-Length: 0\r\n"), &none, 101),
            ("Transfer-Encoding", ok("Transfer-Encoding: chunked\r\n"), &none, 400),
            ("Origin not allowed", ok("Origin: https://evil.example\r\n"), &allow, 403),
            ("Origin missing with allow-list", ok(""), &allow, 403),
            ("Origin allowed", ok("Origin: https://GOOD.example\r\n"), &allow, 101),
            ("two Origins", ok("Origin: https://good.example\r\nOrigin: https://evil.example\r\n"), &allow, 403),
            ("any Origin without allow-list", ok("Origin: https://evil.example\r\n"), &none, 101),
            ("request line > 8 KiB", req(&long_line, &[], ""), &none, 414),
            ("request line > 8 KiB, no CRLF yet", format!("GET /{}", "a".repeat(9000)).into_bytes(), &none, 414),
            ("head > 16 KiB", big_head, &none, 431),
            ("head > 16 KiB unterminated", [b"GET / HTTP/1.1\r\n".as_slice(), &[b'a'; 17000]].concat(), &none, 431),
            ("101 headers", many, &none, 431),
            ("garbage bytes", dribble_garbage, &none, 400),
            ("bad request line", b"HELLO\r\n\r\n".to_vec(), &none, 400),
            ("no version", req("GET /chat", &[], ""), &none, 400),
            ("lower-case version", req("GET /chat http/1.1", &[], ""), &none, 400),
            ("header name with space", ok("Bad Name: x\r\n"), &none, 400),
            ("space before colon", ok("Host : x\r\n"), &none, 400),
            ("bare LF line endings", b"GET / HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n".to_vec(), &none, 400),
            ("NUL in header value", nul, &none, 400),
            ("obs-fold", ok("X-Fold: a\r\n b\r\n"), &none, 400),
            ("incomplete head", b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec(), &none, 0),
        ];
        assert!(table.len() >= 30);
        for (name, raw, origins, want) in &table {
            assert_eq!(status_of(raw, origins), *want, "case {name:?}");
        }
    }

    #[test]
    fn validate_extracts_fields() {
        let raw = ok("Sec-WebSocket-Protocol: chat, , superchat\r\nSec-WebSocket-Protocol:  v2 \r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nSec-WebSocket-Extensions: x-foo\r\nOrigin: http://example.com\r\n");
        let n = find_head_end(&raw, 0).unwrap();
        let r = parse(&raw[..n], &HttpLimits::default()).unwrap();
        assert!(wants_websocket(&r));
        let u = validate(&r, &[]).unwrap();
        assert_eq!(u.key, KEY);
        assert_eq!(u.protocols, vec!["chat", "superchat", "v2"]);
        assert_eq!(
            u.extensions,
            vec!["permessage-deflate; client_max_window_bits", "x-foo"]
        );
        assert_eq!(u.origin, Some("http://example.com"));
    }

    #[test]
    fn plain_http_is_not_websocket() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let r = parse(raw, &HttpLimits::default()).unwrap();
        assert!(!wants_websocket(&r));
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n";
        let r = parse(raw, &HttpLimits::default()).unwrap();
        assert!(!wants_websocket(&r));
    }

    #[test]
    fn select_protocol_only_offered() {
        let sup = vec!["b".to_string(), "a".to_string()];
        assert_eq!(select_protocol(&["a", "b"], &sup), Some("b"));
        assert_eq!(select_protocol(&["a"], &sup), Some("a"));
        assert_eq!(select_protocol(&["c", "B"], &sup), None);
        assert_eq!(select_protocol(&[], &sup), None);
        assert_eq!(select_protocol(&["a"], &[]), None);
        let offered = ["x", "y", "a"];
        for s in [&sup[..], &["y".to_string()], &["zz".to_string()]] {
            if let Some(p) = select_protocol(&offered, s) {
                assert!(offered.contains(&p));
                assert!(s.iter().any(|x| x == p));
            }
        }
    }

    #[test]
    fn accept_response_bytes() {
        let mut out = Vec::new();
        write_accept(KEY, None, None, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        let mut out = b"prefix".to_vec();
        write_accept(KEY, Some("chat"), Some("permessage-deflate"), &mut out);
        assert_eq!(
            out,
            b"prefixHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        );
    }

    #[test]
    fn rejection_426_bytes() {
        let mut out = Vec::new();
        write_rejection(&reject(426, "unsupported Sec-WebSocket-Version"), &mut out);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 34\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\nunsupported Sec-WebSocket-Version\n"
        );
    }

    #[test]
    fn rejection_405_and_status() {
        let mut out = Vec::new();
        write_rejection(&reject(405, "WebSocket upgrade requires GET"), &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(s.contains("\r\nAllow: GET\r\n"));
        assert!(s.contains("\r\nConnection: close\r\n"));

        let mut out = Vec::new();
        write_status(404, "", &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.ends_with("\r\nContent-Length: 10\r\n\r\nNot Found\n"));
        for st in [400, 403, 404, 408, 413, 414, 426, 431, 503, 505] {
            assert_ne!(reason_phrase(st), "Unknown", "{st}");
        }
    }
}
