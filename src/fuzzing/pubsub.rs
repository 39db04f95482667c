//! Owns the `pubsub_registry` property: a `Hub` under random subscribe, unsubscribe,
//! unsubscribe_all, publish, publish_numbered and history_after calls agrees, after every call,
//! with a model made of ordered maps: who subscribes to what (and the limits), every topic's
//! sequence numbers and its bounded history with the gap flag — and stays within its caps on
//! topics and history bytes.
//! Must not: use the hub's own code as its model.
//!
//! Input: one byte of settings (bits 0–1: history length 0–3; bits 2–4: `max_topics`, 0 for
//! no pressure, else 1–7; bits 5–6: `max_history_bytes`, 0 for unlimited, else that many times
//! the cost of an 8-byte message), then operations. While nothing can be evicted (`max_topics`
//! at least the six names — publish takes any name —, history unlimited) the model is exact: numbers 1, 2, 3, …
//! and histories equal to the model's. Under pressure the hub may evict idle topics and trim
//! histories, so the model checks what still must hold: subscribers exact, refusals exactly
//! when the hub is full of topics with subscribers, numbers never going backwards, each
//! history a suffix of the model's, the caps and the byte accounting.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use super::Input;
use crate::config::PubSubLimits;
use crate::conn::ConnId;
use crate::pubsub::{Hub, Published, TopicError};
use crate::ws::frame::{parse_header, OpCode};

/// Names the ops draw from: the empty one and one over the length limit included.
const TOPICS: &[&str] = &["a", "b", "news", "chat.x", "", "toolong!"];
const MAX_TOPIC_LEN: usize = 6;
const MAX_TOPICS_PER_CONN: usize = 3;

/// A published message as the model keeps it: (seq, text, payload).
type Kept = (u64, bool, Vec<u8>);

#[derive(Default)]
struct Model {
    subs: BTreeMap<&'static str, BTreeSet<u64>>,
    by_conn: BTreeMap<u64, BTreeSet<&'static str>>,
    /// The last number each topic used (exact) or was seen at (under pressure).
    seq: BTreeMap<&'static str, u64>,
    /// Per topic: (seq, text, payload), oldest first, at most `history_len`.
    history: BTreeMap<&'static str, VecDeque<Kept>>,
}

impl Model {
    fn has_subs(&self, t: &str) -> bool {
        self.subs.get(t).is_some_and(|s| !s.is_empty())
    }

    /// Would creating `topic` be refused: not held, the hub full, and every held topic in use?
    fn full_for(&self, hub: &Hub, topic: &str, max_topics: usize) -> bool {
        let idle = TOPICS.iter().any(|t| hub.exists(t) && !self.has_subs(t));
        !hub.exists(topic) && hub.topic_count() >= max_topics && !idle
    }
}

/// The limits an input's first byte chooses (see the module doc).
fn limits(b: u8) -> PubSubLimits {
    let max_topics = match (b >> 2) & 7 {
        0 => 64,
        k => usize::from(k),
    };
    let max_history_bytes = match (b >> 5) & 3 {
        0 => usize::MAX,
        k => usize::from(k) * Published::cost_for(8),
    };
    PubSubLimits {
        max_topics_per_conn: MAX_TOPICS_PER_CONN,
        max_topic_len: MAX_TOPIC_LEN,
        history_len: usize::from(b % 4),
        max_topics,
        max_history_bytes,
    }
}

/// The contract as docs/protocol.md states it; in particular a topic's sequence numbers never
/// go backwards, even when the hub drops a topic nobody uses (the bug of
/// fuzz/regressions/pubsub_registry/seq-restart-*) or evicts one to make room.
pub fn pubsub_registry(data: &[u8]) {
    let mut input = Input::new(data);
    let lim = limits(input.byte());
    let (history_len, max_topics, max_bytes) =
        (lim.history_len, lim.max_topics, lim.max_history_bytes);
    let exact = max_topics >= TOPICS.len() && max_bytes == usize::MAX;
    let mut hub = Hub::new(lim);
    let mut m = Model::default();
    let mut ops = 0;
    while !input.is_empty() && ops < 2000 {
        ops += 1;
        let op = input.byte();
        let arg = input.byte();
        let conn = u64::from(arg & 7);
        let topic = TOPICS[usize::from(arg >> 3) % TOPICS.len()];
        match op % 6 {
            0 => {
                let full = m.full_for(&hub, topic, max_topics);
                let got = hub.subscribe(ConnId(conn), topic);
                let mine = m.by_conn.entry(conn).or_default();
                let want = if topic.is_empty() {
                    Err(TopicError::EmptyName)
                } else if topic.len() > MAX_TOPIC_LEN {
                    Err(TopicError::NameTooLong {
                        len: topic.len(),
                        max: MAX_TOPIC_LEN,
                    })
                } else if mine.contains(topic) {
                    Ok(())
                } else if mine.len() >= MAX_TOPICS_PER_CONN {
                    Err(TopicError::TooManyTopics {
                        max: MAX_TOPICS_PER_CONN,
                    })
                } else if full {
                    Err(TopicError::HubFull { max: max_topics })
                } else {
                    mine.insert(topic);
                    m.subs.entry(topic).or_default().insert(conn);
                    Ok(())
                };
                assert_eq!(got, want, "subscribe({conn}, {topic:?})");
            }
            1 => {
                hub.unsubscribe(ConnId(conn), topic);
                m.by_conn.entry(conn).or_default().remove(topic);
                m.subs.entry(topic).or_default().remove(&conn);
            }
            2 => {
                hub.unsubscribe_all(ConnId(conn));
                for t in m.by_conn.remove(&conn).unwrap_or_default() {
                    m.subs.entry(t).or_default().remove(&conn);
                }
            }
            3 | 4 => {
                let text = arg & 1 != 0;
                let want_len = usize::from(input.byte() % 16);
                let payload = input.take(want_len).to_vec();
                let len = payload.len(); // shorter at the end of the input
                let last = m.seq.get(topic).copied().unwrap_or(0);
                let kept = history_len > 0 && Published::cost_for(len) <= max_bytes;
                let (p, subs) = if op % 6 == 3 {
                    let full = kept && m.full_for(&hub, topic, max_topics);
                    match hub.publish(topic, text, &payload) {
                        Ok((p, subs)) => {
                            assert!(!full, "publish({topic:?}) to a full hub was accepted");
                            (p, subs.to_vec())
                        }
                        Err(e) => {
                            assert!(full, "publish({topic:?}) refused: {e}");
                            assert_eq!(e, TopicError::HubFull { max: max_topics });
                            assert_eq!(hub.check_room(topic, len), Err(e));
                            continue;
                        }
                    }
                } else {
                    // A message numbered by another worker, arriving in order: the bus
                    // numbers after the last number this hub knows of.
                    let seq = hub.last_seq(topic) + 1;
                    let p = Rc::new(Published::encode(seq, text, &payload));
                    let (p, subs) = hub.publish_numbered(topic, p);
                    (p, subs.to_vec())
                };
                let want_subs = m.subs.get(topic).cloned().unwrap_or_default();
                let got_subs: BTreeSet<u64> = subs.iter().map(|c| c.0).collect();
                assert_eq!(got_subs.len(), subs.len(), "a subscriber listed twice");
                assert_eq!(got_subs, want_subs, "publish({topic:?}) recipients");
                if exact {
                    assert_eq!(p.seq, last + 1, "publish({topic:?}) sequence number");
                } else {
                    assert!(p.seq > last, "publish({topic:?}): {} after {last}", p.seq);
                }
                m.seq.insert(topic, p.seq);
                assert_eq!(p.payload(), &payload[..]);
                assert_eq!(p.text, text);
                let Ok(Some((h, n))) = parse_header(&p.frame) else {
                    panic!("published frame does not parse");
                };
                assert!(h.fin && h.mask.is_none() && h.rsv == 0);
                let op = if text { OpCode::Text } else { OpCode::Binary };
                assert_eq!(h.opcode, op);
                assert_eq!(h.payload_len as usize, payload.len());
                assert_eq!(n + payload.len(), p.frame.len());
                assert_eq!(p.kept_cost(), Published::cost_for(len));
                if history_len > 0 {
                    let hist = m.history.entry(topic).or_default();
                    if hist.len() == history_len {
                        hist.pop_front();
                    }
                    hist.push_back((p.seq, text, payload));
                }
            }
            _ => {
                let last = hub.last_seq(topic);
                let after = u64::from(input.byte()) % (last + 3);
                let (msgs, gap) = hub.history_after(topic, after);
                let hist = m.history.get(topic).cloned().unwrap_or_default();
                let want: Vec<Kept> = hist.iter().filter(|h| h.0 > after).cloned().collect();
                let got: Vec<Kept> = msgs
                    .iter()
                    .map(|p| (p.seq, p.text, p.payload().to_vec()))
                    .collect();
                if exact {
                    assert_eq!(got, want, "history_after({topic:?}, {after})");
                    // A gap: a message numbered after `after` that history no longer holds.
                    let kept: BTreeSet<u64> = hist.iter().map(|h| h.0).collect();
                    let want_gap = (after + 1..=last).any(|s| !kept.contains(&s));
                    assert_eq!(gap, want_gap, "history_after({topic:?}, {after}) gap");
                } else {
                    assert!(
                        want.ends_with(&got),
                        "history_after({topic:?}, {after}): {got:?} is not a suffix of {want:?}"
                    );
                    // Evicted or trimmed messages after `after` are never missed silently.
                    let lost = got.len() < want.len();
                    assert!(
                        gap || !lost,
                        "history_after({topic:?}, {after}) lost {want:?}"
                    );
                }
            }
        }
        check_state(&hub, &mut m, exact, max_topics, max_bytes);
    }
}

/// What holds after every call.
fn check_state(hub: &Hub, m: &mut Model, exact: bool, max_topics: usize, max_bytes: usize) {
    let mut bytes = 0;
    for &t in TOPICS {
        let want = m.subs.get(t).cloned().unwrap_or_default();
        let list = hub.subscribers(t);
        let got: BTreeSet<u64> = list.iter().map(|c| c.0).collect();
        assert_eq!(got.len(), list.len(), "{t:?}: a subscriber listed twice");
        assert_eq!(got, want, "subscribers({t:?})");
        assert_eq!(hub.subscriber_count(t), want.len());
        let known = m.seq.get(t).copied().unwrap_or(0);
        let last = hub.last_seq(t);
        if exact {
            assert_eq!(last, known, "last_seq({t:?})");
        } else {
            assert!(
                last >= known,
                "last_seq({t:?}) went from {known} back to {last}"
            );
            m.seq.insert(t, last);
        }
        let (kept, _) = hub.history_after(t, 0);
        bytes += kept.iter().map(|p| p.kept_cost()).sum::<usize>();
        // Held only while subscribed or holding history.
        assert_eq!(
            hub.exists(t),
            !want.is_empty() || !kept.is_empty(),
            "{t:?} held"
        );
    }
    assert_eq!(hub.history_bytes(), bytes, "history byte accounting");
    assert!(
        bytes <= max_bytes,
        "history {bytes} bytes over the cap {max_bytes}"
    );
    assert!(hub.topic_count() <= max_topics.min(TOPICS.len()));
}
