//! Owns the bytes a publish carries on a Redis channel. A sequenced publish — what the
//! sequencing script (`sequence.lua`) publishes — is a marker, the type (`T` text, `B`
//! binary), the message's position and its topic's epoch in decimal, each ended by `:`, then
//! the payload unchanged. The older node-tagged form (marker, `t`/`b`, an 8-byte node id) is
//! still read, so that a node can drop its own echoes from a node of an earlier release. A
//! message without the marker came from another kind of publisher (`redis-cli PUBLISH
//! wsloop:news hi`) and is delivered as text if it is UTF-8, else as binary, unsequenced.
//! Sans-IO.
//! Must not: interpret the payload, or trust a node id for anything but dropping our own
//! echoes.

/// `00 'w'`: a NUL first byte never starts text someone typed into `redis-cli`.
const MARKER: [u8; 2] = [0x00, b'w'];

/// Marker, type byte (`t` or `b`), node id (8 bytes, big-endian).
pub const HEADER_LEN: usize = 11;

/// The header of a message `node` publishes.
pub fn header(node: u64, text: bool) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..2].copy_from_slice(&MARKER);
    h[2] = if text { b't' } else { b'b' };
    h[3..].copy_from_slice(&node.to_be_bytes());
    h
}

/// Where a sequenced message stands in its topic: the same on every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Its number: one more than the topic's previous message within an epoch.
    pub seq: u64,
    /// The topic's epoch: the number its history started after. It changes (to a larger
    /// one) whenever the broker lost the topic's history, so numbers never go back.
    pub epoch: u64,
}

/// A message read from a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    /// The publishing node (node-tagged form only).
    pub node: Option<u64>,
    /// Its position (sequenced form only).
    pub position: Option<Position>,
    pub text: bool,
    pub payload: &'a [u8],
}

/// The decimal digits of `bytes` up to the first `:`, and what follows it.
fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let end = bytes.iter().position(|&b| b == b':')?;
    let digits = &bytes[..end];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, &bytes[end + 1..]))
}

/// Read a channel message: sequenced, node-tagged, or anyone else's (all payload).
pub fn open(msg: &[u8]) -> Received<'_> {
    if let Some([b'T' | b'B', rest @ ..]) = msg.strip_prefix(&MARKER[..]) {
        let sequenced = number(rest).and_then(|(seq, r)| Some((seq, number(r)?)));
        if let Some((seq, (epoch, payload))) = sequenced {
            return Received {
                node: None,
                position: Some(Position { seq, epoch }),
                text: msg[2] == b'T',
                payload,
            };
        }
    }
    if let (Some(head), Some(payload)) = (msg.get(..HEADER_LEN), msg.get(HEADER_LEN..)) {
        if head[..2] == MARKER && matches!(head[2], b't' | b'b') {
            let mut node = [0u8; 8];
            node.copy_from_slice(&head[3..]);
            return Received {
                node: Some(u64::from_be_bytes(node)),
                position: None,
                text: head[2] == b't',
                payload,
            };
        }
    }
    Received {
        node: None,
        position: None,
        text: std::str::from_utf8(msg).is_ok(),
        payload: msg,
    }
}

/// What the sequencing script publishes for a message (for tests and the fake harness).
pub fn sequenced(position: Position, text: bool, payload: &[u8]) -> Vec<u8> {
    let kind = if text { 'T' } else { 'B' };
    let mut out = format!("\0w{kind}{}:{}:", position.seq, position.epoch).into_bytes();
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_foreign_messages() {
        let node = 0x0123_4567_89ab_cdef;
        for (text, body) in [
            (true, &b"hello"[..]),
            (false, &[0, 159, 146, 150][..]),
            (true, b""),
        ] {
            let msg = [&header(node, text)[..], body].concat();
            let got = open(&msg);
            assert_eq!(
                got,
                Received {
                    node: Some(node),
                    position: None,
                    text,
                    payload: body
                }
            );
        }
        let typed = open(b"from redis-cli");
        assert_eq!((typed.node, typed.text), (None, true));
        assert_eq!(typed.payload, b"from redis-cli");
        let binary = open(&[0xff, 0x00]);
        assert_eq!((binary.node, binary.text), (None, false));
        // A marker with an unknown type byte, or a short header, is someone else's message.
        assert_eq!(open(b"\x00wx12345678zz").node, None);
        assert_eq!(open(b"\x00wt1234").node, None);
    }

    #[test]
    fn sequenced_messages_carry_their_position() {
        let at = Position {
            seq: 1_765_000_000_000_007,
            epoch: 1_765_000_000_000_000,
        };
        for (text, body) in [
            (true, &b"hi: there"[..]),
            (false, &[0, 1, 2][..]),
            (true, b""),
        ] {
            let msg = sequenced(at, text, body);
            let got = open(&msg);
            assert_eq!(
                (got.position, got.text, got.payload),
                (Some(at), text, body)
            );
        }
        // Not digits, no second colon, or too long: someone else's message, whole.
        for bad in [
            &b"\x00wTx:1:p"[..],
            b"\x00wT12:p",
            b"\x00wT:1:p",
            b"\x00wT123456789012345678901:1:p",
        ] {
            let got = open(bad);
            assert_eq!((got.position, got.payload), (None, bad));
        }
    }
}
