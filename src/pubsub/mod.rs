//! Owns the topics of one reactor: who subscribes to what, every topic's sequence number and
//! its bounded history. A publish is encoded once into a `SharedFrame`; the hub only answers
//! "who gets it" and remembers it for resumption (SSE `Last-Event-ID`, polling `after=`).
//! Layer L3: no sockets, no clock; the reactor delivers.

use std::cell::OnceCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;

use crate::app::ConnId;
use crate::config::PubSubLimits;
use crate::conn::SharedFrame;
use crate::ws::frame::{encode_header, FrameHeader, OpCode, MAX_HEADER_LEN};

/// One published message: a WebSocket frame encoded once, plus what other transports need.
#[derive(Debug)]
pub struct Published {
    /// The topic's sequence number for this message (1, 2, 3, …).
    pub seq: u64,
    pub text: bool,
    /// The complete server frame (header + payload), shared by every subscriber's queue.
    pub frame: SharedFrame,
    header_len: u8,
    /// The same message as an SSE event, encoded on first use for all SSE subscribers.
    sse: OnceCell<SharedFrame>,
    /// The same message as one chunk of a streaming response.
    chunk: OnceCell<SharedFrame>,
}

impl Published {
    /// Encode `payload` once as an unmasked, unfragmented server frame (RFC 6455 §5.2).
    pub fn encode(seq: u64, text: bool, payload: &[u8]) -> Published {
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        let h = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&h, &mut head);
        // One allocation, one copy: a chain of slice iterators has an exact length.
        let frame: SharedFrame = head[..n].iter().chain(payload).copied().collect();
        Published {
            seq,
            text,
            frame,
            header_len: n as u8,
            sse: OnceCell::new(),
            chunk: OnceCell::new(),
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.frame[self.header_len as usize..]
    }

    /// The payload as text for text transports: itself, or base64 for a binary message.
    fn as_text(&self) -> String {
        match (self.text, std::str::from_utf8(self.payload())) {
            (true, Ok(s)) => s.to_string(),
            _ => crate::text::base64(self.payload()),
        }
    }

    /// The message as an SSE event (`id:` = sequence number; binary messages are base64 with
    /// `event: binary`), encoded once however many SSE clients receive it.
    pub fn sse_event(&self) -> SharedFrame {
        self.sse
            .get_or_init(|| {
                let mut out = Vec::new();
                let event = (!self.text).then_some("binary");
                crate::sse::push_event(&mut out, self.seq, event, &self.as_text());
                out.into()
            })
            .clone()
    }

    /// The message as one chunk of a streaming response: the text (binary: base64) and a
    /// newline, encoded once.
    pub fn stream_chunk(&self) -> SharedFrame {
        self.chunk
            .get_or_init(|| {
                let mut line = self.as_text().into_bytes();
                line.push(b'\n');
                let mut out = Vec::new();
                crate::http::response::push_chunk(&mut out, &line);
                out.into()
            })
            .clone()
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    NameTooLong { len: usize, max: usize },
    EmptyName,
    TooManyTopics { max: usize },
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::NameTooLong { len, max } => {
                write!(f, "topic name of {len} bytes, limit {max}")
            }
            SubscribeError::EmptyName => f.write_str("empty topic name"),
            SubscribeError::TooManyTopics { max } => write!(f, "more than {max} topics"),
        }
    }
}

/// A set of connections with O(1) insert, remove and iteration in a dense array.
#[derive(Debug, Default)]
struct Subscribers {
    list: Vec<ConnId>,
    index: HashMap<ConnId, usize>,
}

impl Subscribers {
    fn insert(&mut self, id: ConnId) -> bool {
        if self.index.contains_key(&id) {
            return false;
        }
        self.index.insert(id, self.list.len());
        self.list.push(id);
        true
    }

    fn remove(&mut self, id: ConnId) -> bool {
        let Some(i) = self.index.remove(&id) else {
            return false;
        };
        self.list.swap_remove(i);
        if let Some(moved) = self.list.get(i) {
            self.index.insert(*moved, i);
        }
        true
    }
}

#[derive(Debug, Default)]
struct Topic {
    subs: Subscribers,
    /// Sequence number of the last message published (0: none yet).
    seq: u64,
    history: VecDeque<Rc<Published>>,
}

/// The topics of one reactor.
#[derive(Debug)]
pub struct Hub {
    limits: PubSubLimits,
    topics: HashMap<Box<str>, Topic>,
    /// The topics each connection subscribes to (for the per-connection limit and cleanup).
    by_conn: HashMap<ConnId, Vec<Box<str>>>,
    /// Held long polls: the topic and the sequence number each waits to see past.
    waiting: HashMap<ConnId, (Box<str>, u64)>,
    /// (connection, topic) pairs, for the subscriptions gauge.
    subscriptions: usize,
    /// Topics whose subscriber set became non-empty (true) or empty (false), in order — the
    /// Redis link subscribes to what this hub needs. None: nobody asked (`track_interest`).
    interest: Option<Vec<(Box<str>, bool)>>,
}

impl Hub {
    pub fn new(limits: PubSubLimits) -> Hub {
        Hub {
            limits,
            topics: HashMap::new(),
            by_conn: HashMap::new(),
            waiting: HashMap::new(),
            subscriptions: 0,
            interest: None,
        }
    }

    /// Start recording when a topic gains its first subscriber or loses its last
    /// (`take_interest`).
    pub fn track_interest(&mut self) {
        self.interest.get_or_insert_with(Vec::new);
    }

    /// The changes of interest since the last call, in order: (topic, now wanted).
    pub fn take_interest(&mut self) -> Vec<(Box<str>, bool)> {
        self.interest
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Remember that `id` holds a long poll on `topic` for messages after `after`.
    pub fn wait(&mut self, id: ConnId, topic: &str, after: u64) {
        self.waiting.insert(id, (topic.into(), after));
    }

    /// Forget a held poll (answered, timed out or gone) and its subscription.
    pub fn take_waiting(&mut self, id: ConnId) -> Option<(Box<str>, u64)> {
        let w = self.waiting.remove(&id)?;
        self.unsubscribe(id, &w.0);
        Some(w)
    }

    /// Does the topic exist (subscribers or history)?
    pub fn exists(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
    }

    /// Check a topic name against the limits.
    pub fn check_name(&self, topic: &str) -> Result<(), SubscribeError> {
        if topic.is_empty() {
            return Err(SubscribeError::EmptyName);
        }
        if topic.len() > self.limits.max_topic_len {
            return Err(SubscribeError::NameTooLong {
                len: topic.len(),
                max: self.limits.max_topic_len,
            });
        }
        Ok(())
    }

    pub fn subscribe(&mut self, id: ConnId, topic: &str) -> Result<(), SubscribeError> {
        self.check_name(topic)?;
        let mine = self.by_conn.entry(id).or_default();
        if mine.iter().any(|t| &**t == topic) {
            return Ok(());
        }
        if mine.len() >= self.limits.max_topics_per_conn {
            return Err(SubscribeError::TooManyTopics {
                max: self.limits.max_topics_per_conn,
            });
        }
        mine.push(topic.into());
        let subs = &mut self.topics.entry(topic.into()).or_default().subs;
        if subs.insert(id) {
            self.subscriptions += 1;
            if subs.list.len() == 1 {
                if let Some(changes) = self.interest.as_mut() {
                    changes.push((topic.into(), true));
                }
            }
        }
        Ok(())
    }

    pub fn unsubscribe(&mut self, id: ConnId, topic: &str) {
        if let Some(mine) = self.by_conn.get_mut(&id) {
            mine.retain(|t| &**t != topic);
            if mine.is_empty() {
                self.by_conn.remove(&id);
            }
        }
        self.leave(id, topic);
    }

    /// Remove a connection from every topic (it closed).
    pub fn unsubscribe_all(&mut self, id: ConnId) {
        self.waiting.remove(&id);
        for topic in self.by_conn.remove(&id).unwrap_or_default() {
            self.leave(id, &topic);
        }
    }

    fn leave(&mut self, id: ConnId, topic: &str) {
        if let Some(t) = self.topics.get_mut(topic) {
            if t.subs.remove(id) {
                self.subscriptions -= 1;
                if t.subs.list.is_empty() {
                    if let Some(changes) = self.interest.as_mut() {
                        changes.push((topic.into(), false));
                    }
                }
            }
            // A topic with no subscribers and no history costs nothing; drop it.
            if t.subs.list.is_empty() && t.history.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    /// Publish: number the message, encode it once, remember it, and return it with the
    /// subscribers that must receive it.
    pub fn publish(
        &mut self,
        topic: &str,
        text: bool,
        payload: &[u8],
    ) -> (Rc<Published>, &[ConnId]) {
        let t = self.topics.entry(topic.into()).or_default();
        t.seq += 1;
        let p = Rc::new(Published::encode(t.seq, text, payload));
        self.record(topic, p)
    }

    /// Deliver a message numbered elsewhere (another worker, another node): keeps its
    /// sequence number.
    pub fn publish_numbered(
        &mut self,
        topic: &str,
        p: Rc<Published>,
    ) -> (Rc<Published>, &[ConnId]) {
        let t = self.topics.entry(topic.into()).or_default();
        t.seq = t.seq.max(p.seq);
        self.record(topic, p)
    }

    fn record(&mut self, topic: &str, p: Rc<Published>) -> (Rc<Published>, &[ConnId]) {
        let limit = self.limits.history_len;
        let t = self.topics.get_mut(topic).expect("bug: topic just created");
        if limit > 0 {
            if t.history.len() == limit {
                t.history.pop_front();
            }
            t.history.push_back(p.clone());
        }
        (p, &t.subs.list)
    }

    /// The messages after `after` still in the topic's history, oldest first, and whether
    /// some were already dropped from it (a gap the client should be told about).
    pub fn history_after(&self, topic: &str, after: u64) -> (Vec<Rc<Published>>, bool) {
        let Some(t) = self.topics.get(topic) else {
            return (Vec::new(), false);
        };
        let oldest = t.history.front().map_or(t.seq + 1, |p| p.seq);
        let gap = after + 1 < oldest && after < t.seq;
        let msgs = t
            .history
            .iter()
            .filter(|p| p.seq > after)
            .cloned()
            .collect();
        (msgs, gap)
    }

    /// The last sequence number of a topic (0 if nothing was published).
    pub fn last_seq(&self, topic: &str) -> u64 {
        self.topics.get(topic).map_or(0, |t| t.seq)
    }

    /// The subscribers of a topic, copied out so the caller can act on connections while it
    /// walks them.
    pub fn subscribers(&self, topic: &str) -> Vec<ConnId> {
        self.topics
            .get(topic)
            .map_or_else(Vec::new, |t| t.subs.list.clone())
    }

    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |t| t.subs.list.len())
    }

    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// (connection, topic) subscriptions over all topics.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new(PubSubLimits {
            max_topics_per_conn: 2,
            max_topic_len: 8,
            history_len: 3,
        })
    }

    #[test]
    fn publish_reaches_exactly_the_subscribers() {
        let mut h = hub();
        for i in 0..5 {
            h.subscribe(ConnId(i), "news").unwrap();
        }
        h.subscribe(ConnId(9), "other").unwrap();
        h.unsubscribe(ConnId(2), "news");
        h.unsubscribe_all(ConnId(4));
        let (p, subs) = h.publish("news", true, b"hello");
        let mut got: Vec<u64> = subs.iter().map(|c| c.0).collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 3]);
        assert_eq!(p.payload(), b"hello");
        assert_eq!(&p.frame[..2], &[0x81, 5], "encoded once as a text frame");
    }

    #[test]
    fn limits_on_names_and_topics_per_connection() {
        let mut h = hub();
        assert_eq!(h.subscribe(ConnId(1), ""), Err(SubscribeError::EmptyName));
        assert_eq!(
            h.subscribe(ConnId(1), "123456789"),
            Err(SubscribeError::NameTooLong { len: 9, max: 8 })
        );
        h.subscribe(ConnId(1), "a").unwrap();
        h.subscribe(ConnId(1), "b").unwrap();
        h.subscribe(ConnId(1), "a").unwrap(); // again: no change
        assert_eq!(
            h.subscribe(ConnId(1), "c"),
            Err(SubscribeError::TooManyTopics { max: 2 })
        );
    }

    #[test]
    fn history_is_bounded_and_reports_gaps() {
        let mut h = hub();
        for i in 1..=5u8 {
            h.publish("t", false, &[i]);
        }
        let (msgs, gap) = h.history_after("t", 3);
        assert_eq!(msgs.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert!(!gap);
        let (msgs, gap) = h.history_after("t", 0);
        assert_eq!(
            msgs.iter().map(|p| p.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(gap, "1 and 2 fell out of the history");
        let (msgs, gap) = h.history_after("t", 5);
        assert!(msgs.is_empty() && !gap);
        assert_eq!(h.last_seq("t"), 5);
    }

    #[test]
    fn interest_changes_are_recorded_once_tracked() {
        let mut h = hub();
        h.subscribe(ConnId(1), "a").unwrap();
        assert!(h.take_interest().is_empty(), "not tracked yet");
        h.track_interest();
        h.subscribe(ConnId(2), "a").unwrap(); // not the first: no change
        h.subscribe(ConnId(2), "b").unwrap();
        h.unsubscribe(ConnId(1), "a");
        h.wait(ConnId(3), "c", 0);
        h.subscribe(ConnId(3), "c").unwrap();
        h.take_waiting(ConnId(3));
        h.unsubscribe_all(ConnId(2));
        let got: Vec<(String, bool)> = h
            .take_interest()
            .into_iter()
            .map(|(t, on)| (t.into(), on))
            .collect();
        let want = [
            ("b", true),
            ("c", true),
            ("c", false),
            ("a", false),
            ("b", false),
        ];
        assert_eq!(got, want.map(|(t, on)| (t.to_string(), on)));
        assert!(h.take_interest().is_empty());
    }

    #[test]
    fn topics_without_subscribers_or_history_are_dropped() {
        let mut h = Hub::new(PubSubLimits {
            history_len: 0,
            ..PubSubLimits::default()
        });
        h.subscribe(ConnId(1), "x").unwrap();
        h.subscribe(ConnId(1), "x").unwrap();
        h.subscribe(ConnId(2), "x").unwrap();
        h.subscribe(ConnId(2), "y").unwrap();
        assert_eq!((h.topic_count(), h.subscription_count()), (2, 3));
        h.unsubscribe(ConnId(2), "y");
        h.unsubscribe(ConnId(2), "nope");
        assert_eq!((h.topic_count(), h.subscription_count()), (1, 2));
        h.unsubscribe_all(ConnId(1));
        h.unsubscribe_all(ConnId(2));
        assert_eq!((h.topic_count(), h.subscription_count()), (0, 0));
    }
}
