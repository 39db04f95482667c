//! Owns the RESP3 bytes of the Redis link: encoding the few commands the link sends (arrays
//! of bulk strings, RESP3 spec "Client requests") and classifying what Redis sends back —
//! pub/sub pushes (`>`), subscription counts, and replies to commands — on top of the
//! `redis-protocol` crate's decoder, which answers "incomplete" for a partial frame so the
//! caller can resume when more bytes arrive. Sans-IO: bytes in, values out.
//! Must not: recurse into a nested reply before its depth is checked, or buffer past the frame
//! limit.

use redis_protocol::resp3::decode::complete::decode_range;
use redis_protocol::resp3::types::RangeFrame;

use super::slots::SlotRange;

/// A RESP3 frame classified for the link. Slices borrow the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `>3 message CHANNEL PAYLOAD`: a message published on a subscribed channel.
    Message {
        channel: &'a [u8],
        payload: &'a [u8],
    },
    /// `>3 subscribe|unsubscribe CHANNEL COUNT`: one confirmation per channel of a
    /// `SUBSCRIBE`/`UNSUBSCRIBE`, with the number of channels the connection now holds. The
    /// sharded kinds (`smessage`, `ssubscribe`, `sunsubscribe`, Redis Cluster) decode alike;
    /// a `sunsubscribe` nobody asked for is a node giving up a slot.
    Subscription {
        subscribed: bool,
        channel: &'a [u8],
        count: i64,
    },
    /// `CLUSTER SLOTS`: each range of slots with its master's address.
    Slots(Vec<SlotRange>),
    /// Any other push (`pmessage`, invalidations): not ours, ignored.
    OtherPush,
    /// A reply to a command, in command order: its error text, or `Ok` with the number if
    /// it is an integer (what the sequencing script answers: the message's position).
    Reply(Result<Option<i64>, &'a [u8]>),
    /// A reply that is an array of stream entries as the sequencing script writes them
    /// (`XRANGE` of a topic's log: id `0-N`, fields `k` t|b and `m` payload), in order.
    Entries(Vec<Entry<'a>>),
}

/// One message read back from a topic's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub seq: u64,
    pub text: bool,
    pub payload: &'a [u8],
}

/// Why bytes from Redis could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// Not RESP3 (the crate's description).
    Syntax(String),
    /// A well-formed frame the link has no use for where it came (e.g. a `message` push
    /// without a payload).
    Unexpected(&'static str),
    /// Aggregates nested deeper than `MAX_DEPTH` (checked before the recursive decoder runs).
    TooDeep,
}

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RespError::Syntax(e) => write!(f, "RESP syntax: {e}"),
            RespError::Unexpected(what) => write!(f, "unexpected RESP frame: {what}"),
            RespError::TooDeep => write!(f, "RESP aggregates nested deeper than {MAX_DEPTH}"),
        }
    }
}

/// Deepest nesting of aggregates accepted. What Redis sends the link is at most 3 deep (the
/// `HELLO` map holds an array of module maps); the crate's decoder recurses once per level,
/// so a deeper frame could only exhaust the stack.
pub const MAX_DEPTH: usize = 8;

/// Decode the first frame of `buf`: `Ok(None)` while it is incomplete (call again with more
/// bytes; nothing is consumed), else the frame and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, RespError> {
    nesting_within(buf, MAX_DEPTH)?;
    let (frame, used) = match decode_range(buf) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(None),
        Err(e) => return Err(RespError::Syntax(e.details().to_string())),
    };
    Ok(Some((classify(buf, &frame)?, used)))
}

fn classify<'a>(buf: &'a [u8], frame: &RangeFrame) -> Result<Frame<'a>, RespError> {
    let bytes = |f: &RangeFrame| match f {
        RangeFrame::BlobString { data, .. } | RangeFrame::SimpleString { data, .. } => {
            buf.get(data.0..data.1)
        }
        _ => None,
    };
    Ok(match frame {
        RangeFrame::Push { data, .. } => match data.first().and_then(bytes) {
            Some(b"message" | b"smessage") => {
                match (data.get(1).and_then(bytes), data.get(2).and_then(bytes)) {
                    (Some(channel), Some(payload)) => Frame::Message { channel, payload },
                    _ => {
                        return Err(RespError::Unexpected(
                            "message push without channel and payload",
                        ))
                    }
                }
            }
            Some(kind @ (b"subscribe" | b"unsubscribe" | b"ssubscribe" | b"sunsubscribe")) => {
                match (data.get(1).and_then(bytes), data.get(2)) {
                    (Some(channel), Some(RangeFrame::Number { data: count, .. })) => {
                        Frame::Subscription {
                            subscribed: matches!(kind, b"subscribe" | b"ssubscribe"),
                            channel,
                            count: *count,
                        }
                    }
                    _ => {
                        return Err(RespError::Unexpected(
                            "subscription push without a channel and a count",
                        ))
                    }
                }
            }
            _ => Frame::OtherPush,
        },
        RangeFrame::SimpleError { data, .. } | RangeFrame::BlobError { data, .. } => {
            Frame::Reply(Err(buf.get(data.0..data.1).unwrap_or_default()))
        }
        RangeFrame::Number { data, .. } => Frame::Reply(Ok(Some(*data))),
        RangeFrame::Array { data, .. } => match data.iter().map(|e| entry(e, &bytes)).collect() {
            Some(entries) => Frame::Entries(entries),
            None => match data.iter().map(|r| slot_range(r, &bytes)).collect() {
                Some(ranges) => Frame::Slots(ranges),
                None => Frame::Reply(Ok(None)),
            },
        },
        _ => Frame::Reply(Ok(None)),
    })
}

/// A stream entry `[ID, [k, t|b, m, PAYLOAD]]` with ID `0-N`, or None if `f` is not one.
fn entry<'a>(
    f: &RangeFrame,
    bytes: &impl Fn(&RangeFrame) -> Option<&'a [u8]>,
) -> Option<Entry<'a>> {
    let RangeFrame::Array { data, .. } = f else {
        return None;
    };
    let [id, RangeFrame::Array { data: fields, .. }] = &data[..] else {
        return None;
    };
    let seq = std::str::from_utf8(bytes(id)?.strip_prefix(b"0-")?).ok()?;
    let seq = seq.parse().ok()?;
    let (mut text, mut payload) = (None, None);
    for pair in fields.chunks(2) {
        match (bytes(&pair[0])?, pair.get(1).and_then(bytes)) {
            (b"k", Some(b"t")) => text = Some(true),
            (b"k", Some(b"b")) => text = Some(false),
            (b"m", Some(p)) => payload = Some(p),
            _ => {}
        }
    }
    Some(Entry {
        seq,
        text: text?,
        payload: payload?,
    })
}

/// A range of `CLUSTER SLOTS`, `[FIRST, LAST, [IP, PORT, …], replicas…]`, or None if `f` is
/// not one (or names its master by something other than an IP address).
fn slot_range<'a>(
    f: &RangeFrame,
    bytes: &impl Fn(&RangeFrame) -> Option<&'a [u8]>,
) -> Option<SlotRange> {
    let RangeFrame::Array { data, .. } = f else {
        return None;
    };
    let [RangeFrame::Number { data: first, .. }, RangeFrame::Number { data: last, .. }, RangeFrame::Array { data: master, .. }, ..] =
        &data[..]
    else {
        return None;
    };
    let [ip, RangeFrame::Number { data: port, .. }, ..] = &master[..] else {
        return None;
    };
    let ip: std::net::IpAddr = std::str::from_utf8(bytes(ip)?).ok()?.parse().ok()?;
    Some(SlotRange {
        first: u16::try_from(*first).ok()?,
        last: u16::try_from(*last).ok()?,
        master: std::net::SocketAddr::new(ip, u16::try_from(*port).ok()?),
    })
}

/// Does the first frame of `buf` nest aggregates at most `max` deep? An iterative walk over
/// type bytes, counts and blob lengths (blob contents are skipped by length, not scanned), so
/// a frame like `*1\r\n*1\r\n…` is refused before the crate's recursive decoder meets it.
/// Syntax is the decoder's to judge: the walk answers true for anything it cannot follow, and
/// when the bytes run out. A streamed (`?`) length is refused here: the link never asks for
/// streamed replies.
fn nesting_within(buf: &[u8], max: usize) -> Result<(), RespError> {
    // Elements still expected at each open level (u64: a hostile count cannot overflow).
    let mut open: Vec<u64> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(&kind) = buf.get(pos) else {
            return Ok(());
        };
        // The line after the type byte (a type byte that is itself `\n` is the decoder's
        // syntax error to report).
        let Some(eol) = buf[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .filter(|&e| e > 0)
        else {
            return Ok(());
        };
        let line = &buf[pos + 1..pos + eol];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += eol + 1;
        if line.first() == Some(&b'?') {
            return Err(RespError::Unexpected("streamed frame"));
        }
        let number = || std::str::from_utf8(line).ok()?.parse::<u64>().ok();
        let children = match kind {
            b'*' | b'~' | b'>' => number(),
            // A map's count is of pairs; an attribute's pairs decorate the frame after them.
            b'%' => number().map(|n| n.saturating_mul(2)),
            b'|' => number().map(|n| n.saturating_mul(2).saturating_add(1)),
            b'$' | b'!' | b'=' => {
                let Some(len) = number() else { return Ok(()) };
                pos = pos.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
                pos = pos.saturating_add(2);
                None
            }
            b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => None,
            _ => return Ok(()),
        };
        match children {
            Some(n) if n > 0 => {
                if open.len() == max {
                    return Err(RespError::TooDeep);
                }
                open.push(n);
                continue;
            }
            // An unreadable count is the decoder's error to report.
            None if matches!(kind, b'*' | b'~' | b'>' | b'%' | b'|') => return Ok(()),
            _ => {}
        }
        // One element finished: close every level it completes.
        loop {
            match open.last_mut() {
                None => return Ok(()),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

/// Append a command as an array of bulk strings. Each argument is given as parts that are
/// concatenated (a channel is prefix + topic, a payload is header + body) so no argument is
/// assembled in a temporary first.
pub fn push_command(out: &mut Vec<u8>, args: &[&[&[u8]]]) {
    push_header(out, b'*', args.len());
    for parts in args {
        push_header(out, b'$', parts.iter().map(|p| p.len()).sum());
        for p in *parts {
            out.extend_from_slice(p);
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn push_header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split of `bytes` into two reads decodes to the same frames as the whole does.
    fn frames_at_every_split(bytes: &[u8]) -> Vec<String> {
        let whole = drain(bytes);
        for cut in 0..bytes.len() {
            let mut buf = bytes[..cut].to_vec();
            let mut got = Vec::new();
            let mut start = 0;
            let mut fed = cut;
            loop {
                match decode(&buf[start..]).expect("valid RESP") {
                    Some((f, n)) => {
                        got.push(format!("{f:?}"));
                        start += n;
                    }
                    None if fed < bytes.len() => {
                        buf.extend_from_slice(&bytes[fed..]);
                        fed = bytes.len();
                    }
                    None => break,
                }
            }
            assert_eq!(got, whole, "split at {cut}");
        }
        whole
    }

    fn drain(bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut start = 0;
        while let Some((f, n)) = decode(&bytes[start..]).expect("valid RESP") {
            out.push(format!("{f:?}"));
            start += n;
        }
        assert_eq!(start, bytes.len(), "trailing bytes");
        out
    }

    #[test]
    fn pushes_and_replies_at_every_split() {
        let stream = b">3\r\n$9\r\nsubscribe\r\n$9\r\nwsloop:ab\r\n:1\r\n\
            >3\r\n$7\r\nmessage\r\n$9\r\nwsloop:ab\r\n$5\r\nhe\r\no\r\n\
            :2\r\n+PONG\r\n-NOAUTH Authentication required.\r\n\
            !11\r\nERR blobbed\r\n\
            >4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\nc\r\n$1\r\nx\r\n\
            >3\r\n$11\r\nunsubscribe\r\n$9\r\nwsloop:ab\r\n:0\r\n\
            %1\r\n$6\r\nserver\r\n$5\r\nredis\r\n";
        let frames = frames_at_every_split(stream);
        let want = [
            Frame::Subscription {
                subscribed: true,
                channel: b"wsloop:ab",
                count: 1,
            },
            Frame::Message {
                channel: b"wsloop:ab",
                payload: b"he\r\no",
            },
            Frame::Reply(Ok(Some(2))),
            Frame::Reply(Ok(None)),
            Frame::Reply(Err(b"NOAUTH Authentication required.")),
            Frame::Reply(Err(b"ERR blobbed")),
            Frame::OtherPush,
            Frame::Subscription {
                subscribed: false,
                channel: b"wsloop:ab",
                count: 0,
            },
            Frame::Reply(Ok(None)),
        ];
        let want: Vec<String> = want.iter().map(|f| format!("{f:?}")).collect();
        assert_eq!(frames, want);
    }

    #[test]
    fn sharded_pushes_and_cluster_slots_decode() {
        // Redis 7.0's own bytes (captured from a three-master cluster over RESP3).
        let stream = b">3\r\n$10\r\nssubscribe\r\n$13\r\nwsloop:{news}\r\n:1\r\n\
            >3\r\n$8\r\nsmessage\r\n$13\r\nwsloop:{news}\r\n$2\r\nhi\r\n\
            >3\r\n$12\r\nsunsubscribe\r\n$13\r\nwsloop:{news}\r\n:0\r\n\
            *2\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7101\r\n$3\r\nabc\r\n%0\r\n\
            *4\r\n:5461\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7102\r\n$1\r\nd\r\n\
            *3\r\n$9\r\n127.0.0.1\r\n:7105\r\n$1\r\ne\r\n";
        let frames = frames_at_every_split(stream);
        let at = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        let want = [
            Frame::Subscription {
                subscribed: true,
                channel: b"wsloop:{news}",
                count: 1,
            },
            Frame::Message {
                channel: b"wsloop:{news}",
                payload: b"hi",
            },
            Frame::Subscription {
                subscribed: false,
                channel: b"wsloop:{news}",
                count: 0,
            },
            Frame::Slots(vec![
                SlotRange {
                    first: 0,
                    last: 5460,
                    master: at(7101),
                },
                SlotRange {
                    first: 5461,
                    last: 16383,
                    master: at(7102),
                },
            ]),
        ];
        let want: Vec<String> = want.iter().map(|f| format!("{f:?}")).collect();
        assert_eq!(frames, want);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(decode(b"?what\r\n"), Err(RespError::Syntax(_))));
        assert!(matches!(
            decode(b">2\r\n$7\r\nmessage\r\n$1\r\nc\r\n"),
            Err(RespError::Unexpected(_))
        ));
        assert!(matches!(
            decode(b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n$1\r\n1\r\n"),
            Err(RespError::Unexpected(_))
        ));
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(decode(&deep), Err(RespError::TooDeep));
        let ok = [b"*1\r\n".repeat(MAX_DEPTH), b":1\r\n".to_vec()].concat();
        assert_eq!(decode(&ok), Ok(Some((Frame::Reply(Ok(None)), ok.len()))));
        // A million-deep frame is refused at once instead of overflowing the stack, also
        // when the depth hides behind siblings, blobs and map pairs.
        assert_eq!(decode(&b"*1\r\n".repeat(1 << 20)), Err(RespError::TooDeep));
        let hidden = [
            b"*2\r\n:1\r\n%1\r\n$4\r\n*1\r\n\r\n".to_vec(),
            b"*1\r\n".repeat(MAX_DEPTH),
        ]
        .concat();
        assert_eq!(decode(&hidden), Err(RespError::TooDeep));
        assert!(matches!(
            decode(b"*?\r\n:1\r\n.\r\n"),
            Err(RespError::Unexpected(_))
        ));
        // A type byte that is a line feed (found by the redis_link fuzz target).
        assert!(matches!(
            decode(b"*1\r\n\n:1\r\n"),
            Err(RespError::Syntax(_))
        ));
        assert!(matches!(
            decode(b"\n"),
            Err(RespError::Syntax(_)) | Ok(None)
        ));
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        push_command(
            &mut out,
            &[&[b"PUBLISH"], &[b"wsloop:", b"news"], &[b"", b"hi"]],
        );
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$11\r\nwsloop:news\r\n$2\r\nhi\r\n".to_vec()
        );
    }
}
