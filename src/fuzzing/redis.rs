//! Owns the `redis_link` property: the Redis link's decoding path (`backplane::resp` over the
//! `redis-protocol` crate, then `backplane::Link`'s reply matching and message filtering) fed
//! arbitrary bytes as Redis's side of the connection never panics, and gives the same
//! outcome however the bytes are split into reads — the same messages in the same order, and
//! an error exactly when the whole input gives one. Every message delivered names a topic the
//! link holds, and is counted.
//! Must not: open a connection; Redis's side is the input.
//!
//! Input layout: one byte of flags (bit 0: a password, so the handshake differs; bit 1: a
//! database; bits 2–3: how many of the topics `a`, `b`, `news` are held; bit 4: a Redis Cluster
//! link, sharded channels `PREFIX{TOPIC}`), a chunking plan
//! (`Input::chunks`), then the bytes Redis sends.

use super::{chunk_at, Input};
use crate::backplane::{Action, Event, Link, LinkState};
use crate::config::{RedisConfig, RedisUrl};

const NODE: u64 = 0x00c0_ffee_0000_0001;
const TOPICS: [&str; 3] = ["a", "b", "news"];
/// A small message limit, so the size check is reachable.
const MAX_MESSAGE: usize = 2048;

/// What one run of the link produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<(String, bool, Vec<u8>)>,
    failed: bool,
    state: LinkState,
}

pub fn redis_link(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let plan = input.chunks(8);
    let bytes = input.rest();
    let held = &TOPICS[..usize::from(flags >> 2 & 3).min(TOPICS.len())];
    let whole = run(flags, held, bytes, &[]);
    let chunked = run(flags, held, bytes, &plan);
    assert_eq!(
        whole, chunked,
        "the outcome depends on how the bytes were split"
    );
}

fn run(flags: u8, held: &[&str], bytes: &[u8], plan: &[usize]) -> Outcome {
    let cfg = RedisConfig {
        url: Some(RedisUrl {
            host: "127.0.0.1".into(),
            port: 6379,
            username: None,
            password: (flags & 1 != 0).then(|| "pw".into()),
            db: u32::from(flags >> 1 & 1),
            more: Vec::new(),
            tls: false,
        }),
        // Cluster mode (sharded pushes, MOVED/ASK) too.
        cluster: flags & 0x10 != 0,
        ..RedisConfig::default()
    };
    let mut link = Link::new(&cfg, NODE, MAX_MESSAGE, 0);
    for t in held {
        link.want(t);
    }
    assert_eq!(link.poll_action(0), Some(Action::Connect));
    let mut out = Outcome {
        messages: Vec::new(),
        failed: false,
        state: LinkState::Connecting,
    };
    let (mut at, mut i) = (0, 0);
    'feed: while at < bytes.len() {
        let n = chunk_at(plan, i, bytes.len()).min(bytes.len() - at);
        link.feed(&bytes[at..at + n], 1);
        (at, i) = (at + n, i + 1);
        loop {
            match link.poll_event(1) {
                Ok(Some(Event::Message {
                    topic,
                    text,
                    payload,
                    ..
                })) => {
                    assert!(held.contains(&topic), "a message on {topic:?}, not held");
                    out.messages
                        .push((topic.to_string(), text, payload.to_vec()));
                }
                // Only an answer to `read_log`, which this driver never calls.
                Ok(Some(Event::Log { .. })) => panic!("a log read nobody asked for"),
                Ok(None) => break,
                Err(_) => {
                    // The reactor closes the socket: nothing more is read.
                    assert_eq!(link.state(), LinkState::Down);
                    out.failed = true;
                    break 'feed;
                }
            }
        }
    }
    assert!(
        link.stats().received as usize == out.messages.len(),
        "every delivered message counted"
    );
    out.state = link.state();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_seed_delivers_what_another_node_published() {
        let seed = include_bytes!("../../fuzz/corpus/redis_link/session");
        let out = run(seed[0], &TOPICS, &seed[2..], &[]);
        let got: Vec<(&str, bool, &[u8])> = out
            .messages
            .iter()
            .map(|(t, text, p)| (t.as_str(), *text, &p[..]))
            .collect();
        let want: [(&str, bool, &[u8]); 4] = [
            ("news", true, b"from B"),
            ("b", true, b"redis-cli PUBLISH"),
            ("a", true, b"sequenced"),
            ("b", false, b"\xff\x00"),
        ];
        assert_eq!(got, want);
        assert_eq!((out.failed, out.state), (false, LinkState::Up));
        redis_link(seed);
    }
}
