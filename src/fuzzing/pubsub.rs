//! Owns the `pubsub_registry` property: a `Hub` under random subscribe, unsubscribe,
//! unsubscribe_all, publish, publish_numbered and history_after calls agrees, after every call,
//! with a model made of ordered maps: who subscribes to what (and the limits), every topic's
//! sequence numbers 1, 2, 3, … and its bounded history with the gap flag.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use super::Input;
use crate::app::ConnId;
use crate::config::PubSubLimits;
use crate::pubsub::{Hub, Published, SubscribeError};
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
    seq: BTreeMap<&'static str, u64>,
    /// Per topic: (seq, text, payload), oldest first.
    history: BTreeMap<&'static str, VecDeque<Kept>>,
}

/// The contract as docs/protocol.md states it; in particular a topic's sequence numbers never
/// restart, even when the hub drops a topic nobody uses (the bug of
/// fuzz/regressions/pubsub_registry/seq-restart-*).
pub fn pubsub_registry(data: &[u8]) {
    let mut input = Input::new(data);
    let history_len = usize::from(input.byte() % 4);
    let mut hub = Hub::new(PubSubLimits {
        max_topics_per_conn: MAX_TOPICS_PER_CONN,
        max_topic_len: MAX_TOPIC_LEN,
        history_len,
    });
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
                let got = hub.subscribe(ConnId(conn), topic);
                let mine = m.by_conn.entry(conn).or_default();
                let want = if topic.is_empty() {
                    Err(SubscribeError::EmptyName)
                } else if topic.len() > MAX_TOPIC_LEN {
                    Err(SubscribeError::NameTooLong {
                        len: topic.len(),
                        max: MAX_TOPIC_LEN,
                    })
                } else if !mine.contains(topic) && mine.len() >= MAX_TOPICS_PER_CONN {
                    Err(SubscribeError::TooManyTopics {
                        max: MAX_TOPICS_PER_CONN,
                    })
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
                let len = usize::from(input.byte() % 16);
                let payload = input.take(len).to_vec();
                let seq = m.seq.get(topic).copied().unwrap_or(0) + 1;
                let (p, subs) = if op % 6 == 3 {
                    let (p, subs) = hub.publish(topic, text, &payload);
                    (p, subs.to_vec())
                } else {
                    // A message numbered by another worker, arriving in order.
                    let p = Rc::new(Published::encode(seq, text, &payload));
                    let (p, subs) = hub.publish_numbered(topic, p);
                    (p, subs.to_vec())
                };
                let want_subs = m.subs.get(topic).cloned().unwrap_or_default();
                let got_subs: BTreeSet<u64> = subs.iter().map(|c| c.0).collect();
                assert_eq!(got_subs.len(), subs.len(), "a subscriber listed twice");
                assert_eq!(got_subs, want_subs, "publish({topic:?}) recipients");
                assert_eq!(p.seq, seq, "publish({topic:?}) sequence number");
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
                if history_len > 0 {
                    let hist = m.history.entry(topic).or_default();
                    if hist.len() == history_len {
                        hist.pop_front();
                    }
                    hist.push_back((p.seq, text, payload));
                }
            }
            _ => {
                let last = m.seq.get(topic).copied().unwrap_or(0);
                let after = u64::from(input.byte()) % (last + 3);
                let (msgs, gap) = hub.history_after(topic, after);
                let hist = m.history.get(topic).cloned().unwrap_or_default();
                let want: Vec<Kept> = hist.iter().filter(|h| h.0 > after).cloned().collect();
                let got: Vec<Kept> = msgs
                    .iter()
                    .map(|p| (p.seq, p.text, p.payload().to_vec()))
                    .collect();
                assert_eq!(got, want, "history_after({topic:?}, {after})");
                // A gap: a message numbered after `after` that history no longer holds.
                let kept: BTreeSet<u64> = hist.iter().map(|h| h.0).collect();
                let want_gap = (after + 1..=last).any(|s| !kept.contains(&s));
                assert_eq!(gap, want_gap, "history_after({topic:?}, {after}) gap");
            }
        }
        for &t in TOPICS {
            let want = m.subs.get(t).cloned().unwrap_or_default();
            let list = hub.subscribers(t);
            let got: BTreeSet<u64> = list.iter().map(|c| c.0).collect();
            assert_eq!(got.len(), list.len(), "{t:?}: a subscriber listed twice");
            assert_eq!(got, want, "subscribers({t:?})");
            assert_eq!(hub.subscriber_count(t), want.len());
            let last = m.seq.get(t).copied().unwrap_or(0);
            assert_eq!(hub.last_seq(t), last, "last_seq({t:?})");
        }
        // Topics are kept while someone subscribes or history holds messages (and, with no
        // history, while numbering must continue); never more than the names used.
        assert!(hub.topic_count() <= TOPICS.len());
        let needed = TOPICS
            .iter()
            .filter(|t| m.subs.get(*t).is_some_and(|s| !s.is_empty()))
            .count();
        assert!(hub.topic_count() >= needed);
    }
}
