//! Owns the `http_request` property: the request head scanned as it arrives in chunks whose
//! sizes come from the input (`find_head_end` resuming where it stopped, `check_partial_since`
//! on every incomplete prefix, agreeing with the stateless `check_partial`, as `conn::RxSide::handshake` calls them), then `parse`, `validate`
//! and the response writers. Scanning work stays linear in the bytes received however they are
//! chunked, the head end is the same at every chunking, every verdict is a documented status,
//! and every response written is a well-formed HTTP/1.1 response.
//! Must not: use real sockets or time.

use super::{chunk_at, Input};
use crate::config::HttpLimits;
use crate::http::request::{self, check_partial_since, find_head_end_counted, PartialHead};
use crate::http::upgrade::{self, accept_key};

/// `[limits][origins][chunk plan][bytes]`.
pub fn http_request(data: &[u8]) {
    let mut input = Input::new(data);
    let l = input.byte();
    let flags = input.byte();
    let plan = input.chunks(32);
    let stream = input.rest();
    let limits = HttpLimits {
        max_header_bytes: [64, 512, 4096, 16384][usize::from(l & 3)],
        max_headers: [1, 4, 16, 100][usize::from((l >> 2) & 3)],
        max_request_line: [16, 128, 1024, 8192][usize::from((l >> 4) & 3)],
        ..HttpLimits::default()
    };
    let origins: Vec<String> = if flags & 1 != 0 {
        vec!["http://a.example".into()]
    } else {
        Vec::new()
    };

    let whole = request::find_head_end(stream, 0);
    let (mut scanned, mut end, mut calls) = (0, 0, 0usize);
    let (mut head_work, mut partial_work) = (0usize, 0usize);
    let mut partial = PartialHead::default();
    let mut found = None;
    while end < stream.len() || calls == 0 {
        end = (end + chunk_at(&plan, calls, stream.len())).min(stream.len());
        calls += 1;
        let prefix = &stream[..end];
        if let Some(n) = find_head_end_counted(prefix, scanned, &mut head_work) {
            assert_eq!(Some(n), whole, "head end depends on chunking {plan:?}");
            assert!(n <= end);
            found = Some(n);
            break;
        }
        assert!(
            whole.is_none_or(|w| w > end),
            "terminator within {end} bytes missed"
        );
        scanned = end;
        let verdict = check_partial_since(prefix, &mut partial, &limits, &mut partial_work);
        // Linear: every byte is examined at most once, however the head is chunked.
        assert!(
            partial_work <= end,
            "check_partial_since examined {partial_work} bytes of {end} in {calls} calls"
        );
        assert_eq!(
            verdict.is_err(),
            request::check_partial(prefix, &limits).is_err(),
            "the incremental check disagrees with the whole one at {end} bytes"
        );
        if let Err(e) = verdict {
            assert!(matches!(e.status(), 414 | 431), "{e:?}");
            response_is_well_formed(e.status(), e.reason());
            return;
        }
        if end == stream.len() {
            break;
        }
    }
    // Linear: the first call examines what it got, every later one the new bytes plus the
    // three it re-checks for a split terminator.
    assert!(
        head_work <= end + 3 * calls,
        "find_head_end examined {head_work} bytes for {end} in {calls} calls"
    );

    let Some(n) = found else { return };
    let head = &stream[..n];
    let req = match request::parse(head, &limits) {
        Ok(req) => req,
        Err(e) => {
            assert!(matches!(e.status(), 400 | 414 | 431 | 505), "{e:?}");
            response_is_well_formed(e.status(), e.reason());
            return;
        }
    };
    assert!(head.len() <= limits.max_header_bytes);
    assert!(req.headers.len() <= limits.max_headers);
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    assert!(
        line.len() <= limits.max_request_line,
        "request line over the limit accepted"
    );
    assert!(!req.method.is_empty() && req.version <= 1);
    match req.query {
        Some(q) => assert_eq!(format!("{}?{}", req.path, q), req.target),
        None => assert_eq!(req.path, req.target),
    }
    assert!(!head.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));

    match upgrade::validate(&req, &origins) {
        Ok(up) => {
            assert!(upgrade::wants_websocket(&req));
            assert_eq!(req.method, "GET");
            assert_eq!(up.key.len(), 24);
            if !origins.is_empty() {
                assert_eq!(
                    up.origin.map(str::to_ascii_lowercase).as_deref(),
                    Some("http://a.example")
                );
            }
            let accept = accept_key(up.key);
            assert!(accept
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)));
            let supported = ["chat".to_string(), "superchat".to_string()];
            let protocol = upgrade::select_protocol(&up.protocols, &supported);
            assert!(protocol.is_none_or(|p| up.protocols.contains(&p)));
            let mut out = Vec::new();
            upgrade::write_accept(up.key, protocol, None, &mut out);
            let (status, _) = parse_response(&out);
            assert_eq!(status, 101);
        }
        Err(rej) => {
            assert!(matches!(rej.status, 400 | 403 | 405 | 426 | 505), "{rej:?}");
            let mut out = Vec::new();
            upgrade::write_rejection(&rej, &mut out);
            let (status, body) = parse_response(&out);
            assert_eq!(status, rej.status);
            assert_eq!(body, format!("{}\n", rej.reason).as_bytes());
        }
    }
}

fn response_is_well_formed(status: u16, reason: &str) {
    let mut out = Vec::new();
    upgrade::write_status(status, reason, &mut out);
    let (got, _) = parse_response(&out);
    assert_eq!(got, status);
}

/// Parse a complete response we wrote: (status, body). Panics if it is malformed or its
/// `Content-Length` does not match the body.
fn parse_response(bytes: &[u8]) -> (u16, &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "malformed response {other:?}: {:?}",
            String::from_utf8_lossy(bytes)
        ),
    };
    let body = &bytes[n..];
    let length = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).unwrap_or("?").parse::<usize>());
    match length {
        Some(Ok(len)) => assert_eq!(len, body.len(), "Content-Length"),
        Some(Err(e)) => panic!("bad Content-Length: {e}"),
        None => assert!(body.is_empty(), "a body without Content-Length"),
    }
    (resp.code.unwrap_or(0), body)
}
