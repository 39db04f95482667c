//! Owns HTTP/1.1 response serialization (RFC 9112 §4, §6): the status line, `Date`,
//! `Content-Length` or `Transfer-Encoding: chunked`, `Connection`, the caller's headers, and
//! chunk framing. Sans-IO: it appends bytes to a buffer.
//! Must not: decide status codes or touch a socket; callers choose, it formats.

use super::upgrade::reason_phrase;

/// A complete response with a body of known length. `HEAD` requests get the same headers and
/// no body (`head_only`).
#[allow(clippy::too_many_arguments)]
pub fn full(
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    date: &str,
    keep_alive: bool,
    head_only: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    status_line(&mut out, status, headers, date);
    // 1xx, 204 and 304 never carry a body or Content-Length (RFC 9110 §8.6).
    if !matches!(status, 100..=199 | 204 | 304) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    if !head_only && !matches!(status, 204 | 304) {
        out.extend_from_slice(body);
    }
    out
}

/// The head of a streaming response. `chunked`: the body is chunks (`push_chunk`); otherwise
/// it runs until the connection closes (SSE), so the head says `Connection: close`.
pub fn stream_head(status: u16, headers: &[(&str, &str)], date: &str, chunked: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    status_line(&mut out, status, headers, date);
    out.extend_from_slice(if chunked {
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n".as_slice()
    } else {
        b"Connection: close\r\n\r\n".as_slice()
    });
    out
}

/// Append one chunk (RFC 9112 §7.1). An empty `data` would end the body, so it is skipped.
pub fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn status_line(out: &mut Vec<u8>, status: u16, headers: &[(&str, &str)], date: &str) {
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    out.extend_from_slice(format!("Date: {date}\r\nServer: wsloop\r\n").as_bytes());
    for (name, value) in headers {
        // Values come from the server itself; strip CR/LF anyway so none can split a header.
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn full_response_bytes() {
        let r = full(
            200,
            &[("Content-Type", "text/plain")],
            b"ok",
            DATE,
            true,
            false,
        );
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: wsloop\r\n\
Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
        );
        let r = full(204, &[], b"", DATE, false, false);
        assert!(!String::from_utf8_lossy(&r).contains("Content-Length"));
        let r = full(200, &[], b"body", DATE, true, true);
        assert!(
            r.ends_with(b"Content-Length: 4\r\nConnection: keep-alive\r\n\r\n"),
            "HEAD: no body"
        );
    }

    #[test]
    fn chunks_and_injection() {
        let mut out = Vec::new();
        push_chunk(&mut out, b"hello\n");
        push_chunk(&mut out, b"");
        assert_eq!(out, b"6\r\nhello\n\r\n");
        let h = stream_head(200, &[("X", "a\r\nEvil: 1")], DATE, true);
        assert!(String::from_utf8_lossy(&h).contains("X: aEvil: 1\r\n"));
    }
}
