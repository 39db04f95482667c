//! Owns the Server-Sent Events encoding (WHATWG HTML §9.2 "Server-sent events"): events with
//! `id:`, `event:` and `data:` fields, the `retry:` field and comment lines. Multi-line data is
//! split at every CR, LF or CRLF into several `data:` lines, so no payload can inject a field
//! or end an event early. Sans-IO: it appends bytes to a buffer.
//! Must not: emit a payload byte that could start a field or end an event (CR, LF), or touch a
//! socket.

/// Append one event. `data` is the message text; binary messages are sent base64-encoded with
/// `event: binary` (SSE is a text format).
pub fn push_event(out: &mut Vec<u8>, id: u64, event: Option<&str>, data: &str) {
    out.extend_from_slice(format!("id: {id}\n").as_bytes());
    if let Some(event) = event {
        push_field(out, "event", event);
    }
    for line in split_lines(data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n'); // a blank line dispatches the event
}

/// A single-line field; CR and LF are removed (a field value cannot span lines).
fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend(value.bytes().filter(|&b| b != b'\r' && b != b'\n'));
    out.push(b'\n');
}

/// `retry: ms` tells the client how long to wait before reconnecting.
pub fn push_retry(out: &mut Vec<u8>, ms: u64) {
    out.extend_from_slice(format!("retry: {ms}\n\n").as_bytes());
}

/// A comment line: ignored by clients, keeps proxies from timing out an idle stream.
pub fn push_comment(out: &mut Vec<u8>, text: &str) {
    push_field(out, "", text);
}

/// The lines of `data` as the SSE parser will see them: split at CRLF, CR or LF. An empty
/// payload is one empty `data:` line (the event still carries an empty message).
fn split_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, ev: Option<&str>, data: &str) -> String {
        let mut out = Vec::new();
        push_event(&mut out, id, ev, data);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn events_byte_for_byte() {
        assert_eq!(event(1, None, "hello"), "id: 1\ndata: hello\n\n");
        assert_eq!(event(2, Some("tick"), ""), "id: 2\nevent: tick\ndata: \n\n");
        assert_eq!(
            event(3, None, "a\nb\r\nc\rd"),
            "id: 3\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn no_injection() {
        // A payload trying to end the event and start another gets no new fields.
        let s = event(4, Some("x\nid: 99"), "ok\n\nid: 99\ndata: forged");
        assert_eq!(
            s,
            "id: 4\nevent: xid: 99\ndata: ok\ndata: \ndata: id: 99\ndata: data: forged\n\n"
        );
        let blank_lines = s.matches("\n\n").count();
        assert_eq!(blank_lines, 1, "exactly one event");
    }

    #[test]
    fn retry_and_comments() {
        let mut out = Vec::new();
        push_retry(&mut out, 3000);
        push_comment(&mut out, "keep-alive");
        assert_eq!(out, b"retry: 3000\n\n: keep-alive\n");
    }
}
