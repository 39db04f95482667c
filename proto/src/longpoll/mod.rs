//! Owns the long/short-polling batch format: a JSON object with the topic, the last sequence
//! number, and the messages after the client's `after` — text as a JSON string, binary as
//! base64 — so a client resumes exactly where it left off. Sans-IO: it builds a string.
//! Must not: hold requests or know about connections; it formats a batch.

use crate::text::{base64, push_json_string};

/// One message of a batch.
pub struct Item<'a> {
    pub seq: u64,
    pub text: bool,
    pub payload: &'a [u8],
}

/// `{"topic":"t","last_seq":7,"gap":false,"messages":[{"seq":6,"text":"hi"},{"seq":7,"binary":"AAE="}]}`
///
/// `gap` is true when messages after `after` were already dropped from the history.
pub fn batch<'a>(
    topic: &str,
    last_seq: u64,
    gap: bool,
    items: impl Iterator<Item = Item<'a>>,
) -> String {
    let mut out = String::from("{\"topic\":");
    push_json_string(&mut out, topic);
    out.push_str(&format!(
        ",\"last_seq\":{last_seq},\"gap\":{gap},\"messages\":["
    ));
    for (i, it) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"seq\":{},", it.seq));
        match (it.text, std::str::from_utf8(it.payload)) {
            (true, Ok(s)) => {
                out.push_str("\"text\":");
                push_json_string(&mut out, s);
            }
            _ => {
                out.push_str("\"binary\":\"");
                out.push_str(&base64(it.payload));
                out.push('"');
            }
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_format() {
        let items = vec![
            Item {
                seq: 6,
                text: true,
                payload: b"say \"hi\"",
            },
            Item {
                seq: 7,
                text: false,
                payload: &[0, 1],
            },
        ];
        assert_eq!(
            batch("t", 7, false, items.into_iter()),
            r#"{"topic":"t","last_seq":7,"gap":false,"messages":[{"seq":6,"text":"say \"hi\""},{"seq":7,"binary":"AAE="}]}"#
        );
        assert_eq!(
            batch("e", 0, true, std::iter::empty()),
            r#"{"topic":"e","last_seq":0,"gap":true,"messages":[]}"#
        );
    }
}
