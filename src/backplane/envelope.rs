//! Owns the bytes a publish carries on a Redis channel: an 11-byte header — a marker, the
//! message type (text or binary) and the publishing node's id — then the payload unchanged.
//! The node id lets a node drop its own publishes when Redis echoes them back (it delivered
//! them locally already). A message without the marker came from another kind of publisher
//! (`redis-cli PUBLISH wsloop:news hi`) and is delivered as text if it is UTF-8, else as
//! binary. Sans-IO.
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

/// A message read from a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    /// The publishing node; None for a message from another kind of publisher.
    pub node: Option<u64>,
    pub text: bool,
    pub payload: &'a [u8],
}

/// Read a channel message: ours (header + payload) or anyone else's (all payload).
pub fn open(msg: &[u8]) -> Received<'_> {
    if let (Some(head), Some(payload)) = (msg.get(..HEADER_LEN), msg.get(HEADER_LEN..)) {
        if head[..2] == MARKER && matches!(head[2], b't' | b'b') {
            let mut node = [0u8; 8];
            node.copy_from_slice(&head[3..]);
            return Received {
                node: Some(u64::from_be_bytes(node)),
                text: head[2] == b't',
                payload,
            };
        }
    }
    Received {
        node: None,
        text: std::str::from_utf8(msg).is_ok(),
        payload: msg,
    }
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
}
