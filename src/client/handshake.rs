//! Owns the client half of the opening handshake (RFC 6455 §4.1): the upgrade request a client
//! sends and the checks on the server's answer (101, `Upgrade`, `Connection`,
//! `Sec-WebSocket-Accept`). Sans-IO: the caller supplies the 16-byte nonce and the bytes read.
//! Must not: accept a 101 without a matching `Sec-WebSocket-Accept` (RFC 6455 §4.1), or touch a
//! socket.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::http::request::find_head_end;
use crate::http::upgrade::accept_key;

/// Most response header fields we parse; a 101 has a handful.
const MAX_RESPONSE_HEADERS: usize = 32;

/// Longest response head we wait for before giving up (a 101 is ~130 bytes).
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Why the server's answer is not a valid WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The head is not valid HTTP/1.1.
    Malformed(String),
    /// A status other than 101; `reason` is its reason phrase and the start of its body.
    Status { code: u16, reason: String },
    /// 101 without `Upgrade: websocket` or `Connection: Upgrade` (§4.1 client step 2–3).
    MissingUpgrade,
    /// `Sec-WebSocket-Accept` absent or not the hash of our key (§4.1 client step 4).
    BadAccept,
    /// No end of head within `MAX_RESPONSE_HEAD` bytes.
    TooLong,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed(why) => write!(f, "malformed handshake response: {why}"),
            HandshakeError::Status { code, reason } => {
                write!(f, "server refused the upgrade: {code} {reason}")
            }
            HandshakeError::MissingUpgrade => {
                f.write_str("101 response lacks Upgrade: websocket / Connection: Upgrade")
            }
            HandshakeError::BadAccept => f.write_str("wrong or missing Sec-WebSocket-Accept"),
            HandshakeError::TooLong => f.write_str("handshake response head too long"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// `Sec-WebSocket-Key` for a 16-byte nonce: its base64 (§4.1 item 7), always 24 characters.
pub fn key_for_nonce(nonce: &[u8; 16]) -> String {
    STANDARD.encode(nonce)
}

/// The upgrade request (§4.1 items 1–9) for `path` on `host` (host[:port]) with `key`.
pub fn request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Check the response gathered so far in `buf` against our `key`. `scanned`: bytes of `buf`
/// examined by an earlier call, so a head that arrives in pieces costs linear work.
///
/// `Ok(None)`: the head is not complete yet. `Ok(Some(n))`: a valid 101 whose head is
/// `buf[..n]`; any bytes after it are already WebSocket frames.
pub fn check_response(
    buf: &[u8],
    scanned: usize,
    key: &str,
) -> Result<Option<usize>, HandshakeError> {
    let Some(head_len) = find_head_end(buf, scanned) else {
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(HandshakeError::TooLong);
        }
        return Ok(None);
    };
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    match resp.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HandshakeError::Malformed("incomplete head".into()))
        }
        Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
    }
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        // A refusal usually explains itself in a short body: show its start.
        let body = String::from_utf8_lossy(&buf[head_len..buf.len().min(head_len + 120)]);
        let reason = format!("{} {}", resp.reason.unwrap_or(""), body.trim());
        return Err(HandshakeError::Status {
            code,
            reason: reason.trim().to_string(),
        });
    }
    let has = |name: &str, token: &str| {
        resp.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    };
    if !has("upgrade", "websocket") || !has("connection", "upgrade") {
        return Err(HandshakeError::MissingUpgrade);
    }
    let expected = accept_key(key);
    let accept_ok = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value.trim_ascii())
        .eq(std::iter::once(&expected[..]));
    if !accept_ok {
        return Err(HandshakeError::BadAccept);
    }
    Ok(Some(head_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpLimits;
    use crate::http::request::parse;
    use crate::http::upgrade::{validate, write_accept, write_status};

    const NONCE: [u8; 16] = *b"the sample nonce";

    #[test]
    fn rfc_sample_key() {
        // RFC 6455 §1.3 / §4.2.2: "the sample nonce" → dGhlIHNhbXBsZSBub25jZQ==.
        assert_eq!(key_for_nonce(&NONCE), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn request_is_accepted_by_the_server_codec() {
        let key = key_for_nonce(&NONCE);
        let req = request("127.0.0.1:9000", "/echo", &key);
        let end = find_head_end(&req, 0).expect("complete head");
        assert_eq!(end, req.len());
        let parsed = parse(&req, &HttpLimits::default()).expect("parses");
        let up = validate(&parsed, &[]).expect("valid upgrade");
        assert_eq!(up.key, key);
        assert_eq!(parsed.path, "/echo");
    }

    #[test]
    fn accepts_the_server_101_at_every_split() {
        let key = key_for_nonce(&NONCE);
        let mut resp = Vec::new();
        write_accept(&key, None, None, &mut resp);
        let head = resp.len();
        resp.extend_from_slice(&[0x81, 0x00]); // a frame right behind the head
        for cut in 0..head {
            assert_eq!(check_response(&resp[..cut], 0, &key), Ok(None), "cut {cut}");
        }
        assert_eq!(check_response(&resp, 0, &key), Ok(Some(head)));
    }

    #[test]
    fn refusals() {
        let key = key_for_nonce(&NONCE);
        let mut resp = Vec::new();
        write_accept("x3JJHMbDL1EzLkh9GBhXDw==", None, None, &mut resp);
        assert_eq!(
            check_response(&resp, 0, &key),
            Err(HandshakeError::BadAccept)
        );

        let mut resp = Vec::new();
        write_status(503, "full", &mut resp);
        match check_response(&resp, 0, &key) {
            Err(HandshakeError::Status { code: 503, reason }) => {
                assert!(reason.contains("full"), "{reason}")
            }
            other => panic!("{other:?}"),
        }

        let bare = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert_eq!(
            check_response(bare, 0, &key),
            Err(HandshakeError::MissingUpgrade)
        );
        assert!(matches!(
            check_response(b"garbage\r\n\r\n", 0, &key),
            Err(HandshakeError::Malformed(_))
        ));
        let long = vec![b'a'; MAX_RESPONSE_HEAD + 1];
        assert_eq!(check_response(&long, 0, &key), Err(HandshakeError::TooLong));
    }
}
