//! Owns the topics of one reactor: who subscribes to what, every topic's sequence number and
//! its bounded history, and the hub's memory bounds — at most `max_topics` topics and
//! `max_history_bytes` of kept messages, however many topic names peers invent. A publish is
//! encoded once into a `SharedFrame`; the hub only answers "who gets it" and remembers it for
//! resumption (SSE `Last-Event-ID`, polling `after=`).
//! Layer L3: no sockets, no clock; the reactor delivers.
//! Must not: copy a payload per subscriber, reuse a sequence number, or grow with the number of
//! names peers invent.
//!
//! Bounds (docs/protocol.md "Topic limits"):
//! - a topic without subscribers is kept only for its history; when a new topic needs a slot
//!   and the hub is full, the idle topic published to least recently is evicted; with none
//!   idle the new topic is refused (`TopicError::HubFull`);
//! - past `max_history_bytes` the oldest kept messages go first, whatever their topic;
//! - a topic's numbers never go backwards: a dropped topic leaves its last number in a
//!   bounded `SeqBook`, and a topic created again continues from it.

pub mod fanout;
mod published;
mod seqs;

pub use published::Published;
pub use seqs::SeqBook;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;

use crate::config::PubSubLimits;
use crate::conn::ConnId;

/// Why a subscription or a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    NameTooLong {
        len: usize,
        max: usize,
    },
    EmptyName,
    /// The connection already subscribes to its limit of topics.
    TooManyTopics {
        max: usize,
    },
    /// The hub holds its limit of topics and every one has subscribers.
    HubFull {
        max: usize,
    },
}

impl TopicError {
    /// The HTTP status that refuses a request for this reason: the client's fault (400), or
    /// the server's capacity (503).
    pub fn status(&self) -> u16 {
        match self {
            TopicError::HubFull { .. } => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::NameTooLong { len, max } => {
                write!(f, "topic name of {len} bytes, limit {max}")
            }
            TopicError::EmptyName => f.write_str("empty topic name"),
            TopicError::TooManyTopics { max } => write!(f, "more than {max} topics"),
            TopicError::HubFull { max } => {
                write!(f, "the server holds its limit of {max} topics, all in use")
            }
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

/// A message in a topic's history, with the hub stamp of its publish (which orders messages
/// across topics, for trimming the oldest first).
#[derive(Debug)]
struct Kept {
    stamp: u64,
    msg: Rc<Published>,
}

#[derive(Debug)]
struct Topic {
    /// The same allocation as the map key, shared with the hub's indexes.
    name: Rc<str>,
    subs: Subscribers,
    /// Sequence number of the last message published (0: none yet).
    seq: u64,
    history: VecDeque<Kept>,
    /// Hub stamp of the last publish, or of creation: idle topics are evicted oldest first.
    stamp: u64,
}

/// Every topic's history, indexed by the stamp of its oldest message, and their total cost.
#[derive(Debug, Default)]
struct Histories {
    /// Stamp of a topic's oldest kept message → the topic (topics with history only).
    oldest: BTreeMap<u64, Rc<str>>,
    /// Sum of `Published::kept_cost` over every kept message.
    bytes: usize,
}

impl Histories {
    fn push(&mut self, t: &mut Topic, k: Kept) {
        if t.history.is_empty() {
            self.oldest.insert(k.stamp, t.name.clone());
        }
        self.bytes += k.msg.kept_cost();
        t.history.push_back(k);
    }

    /// Put an older message before the topic's history (`Hub::prepend_history`).
    fn push_front(&mut self, t: &mut Topic, k: Kept) {
        if let Some(first) = t.history.front() {
            self.oldest.remove(&first.stamp);
        }
        self.oldest.insert(k.stamp, t.name.clone());
        self.bytes += k.msg.kept_cost();
        t.history.push_front(k);
    }

    fn pop_front(&mut self, t: &mut Topic) {
        let Some(k) = t.history.pop_front() else {
            return;
        };
        self.bytes -= k.msg.kept_cost();
        self.oldest.remove(&k.stamp);
        if let Some(next) = t.history.front() {
            self.oldest.insert(next.stamp, t.name.clone());
        }
    }

    /// Forget a topic's whole history (the topic is going away).
    fn forget(&mut self, t: &Topic) {
        if let Some(first) = t.history.front() {
            self.oldest.remove(&first.stamp);
        }
        self.bytes -= t.history.iter().map(|k| k.msg.kept_cost()).sum::<usize>();
    }
}

/// The topics of one reactor.
#[derive(Debug)]
pub struct Hub {
    limits: PubSubLimits,
    topics: HashMap<Rc<str>, Topic>,
    /// Topics without subscribers (kept for their history) by `Topic::stamp`: eviction order.
    idle: BTreeMap<u64, Rc<str>>,
    histories: Histories,
    /// The last sequence numbers of dropped topics: a topic created again continues its
    /// numbering (docs/protocol.md: a number is never reused).
    retired: SeqBook,
    /// Source of stamps (one per publish or topic creation).
    stamps: u64,
    /// Idle topics evicted to make room, since the reactor last asked.
    evictions: u64,
    /// New topics refused for want of room, since the reactor last asked.
    refusals: u64,
    /// The topics each connection subscribes to (for the per-connection limit and cleanup).
    by_conn: HashMap<ConnId, Vec<Rc<str>>>,
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
        Hub::numbered_from(limits, 0)
    }

    /// A hub whose topics are numbered above `epoch` (`SeqBook::starting_at`).
    pub fn numbered_from(limits: PubSubLimits, epoch: u64) -> Hub {
        // As many dropped topics' numbers as live topics: beyond that, the floor.
        let retired = SeqBook::starting_at(limits.max_topics, epoch);
        Hub {
            limits,
            topics: HashMap::new(),
            idle: BTreeMap::new(),
            histories: Histories::default(),
            retired,
            stamps: 0,
            evictions: 0,
            refusals: 0,
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
    pub fn check_name(&self, topic: &str) -> Result<(), TopicError> {
        if topic.is_empty() {
            return Err(TopicError::EmptyName);
        }
        if topic.len() > self.limits.max_topic_len {
            return Err(TopicError::NameTooLong {
                len: topic.len(),
                max: self.limits.max_topic_len,
            });
        }
        Ok(())
    }

    /// Whether `id` may subscribe to `topic` as far as its name and the connection's own
    /// limit go: `Ok(true)` if it already does.
    fn may_subscribe(&self, id: ConnId, topic: &str) -> Result<bool, TopicError> {
        self.check_name(topic)?;
        let mine = self.by_conn.get(&id).map_or(&[][..], |v| &v[..]);
        if mine.iter().any(|t| &**t == topic) {
            return Ok(true);
        }
        if mine.len() >= self.limits.max_topics_per_conn {
            return Err(TopicError::TooManyTopics {
                max: self.limits.max_topics_per_conn,
            });
        }
        Ok(false)
    }

    /// Would `subscribe` succeed now? The HTTP transports ask before they answer, so a
    /// refusal becomes the response's status; the subscription itself is then applied with
    /// every other one (`app::Command::Subscribe`), before anything else can change the hub.
    pub fn check_subscribe(&mut self, id: ConnId, topic: &str) -> Result<(), TopicError> {
        let fits = self.may_subscribe(id, topic)?
            || self.exists(topic)
            || self.topics.len() < self.limits.max_topics
            || !self.idle.is_empty(); // evicted to make room (`topic_mut`)
        if fits {
            Ok(())
        } else {
            Err(self.full())
        }
    }

    pub fn subscribe(&mut self, id: ConnId, topic: &str) -> Result<(), TopicError> {
        if self.may_subscribe(id, topic)? {
            return Ok(());
        }
        let t = self.topic_mut(topic)?;
        let name = t.name.clone();
        if t.subs.insert(id) {
            let first = t.subs.list.len() == 1;
            self.subscriptions += 1;
            if let Some(changes) = self.interest.as_mut().filter(|_| first) {
                changes.push((topic.into(), true));
            }
        }
        self.by_conn.entry(id).or_default().push(name);
        self.settle(topic);
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
        }
        self.settle(topic);
    }

    fn stamp(&mut self) -> u64 {
        self.stamps += 1;
        self.stamps
    }

    /// Refuse a new topic for want of room (and count it).
    fn full(&mut self) -> TopicError {
        self.refusals += 1;
        TopicError::HubFull {
            max: self.limits.max_topics,
        }
    }

    /// The topic named `name`, created if needed — evicting the least recently published
    /// idle topic when the hub is full — and continuing the numbering it had if it was
    /// dropped before. A new topic has no subscribers and no history until the caller gives
    /// it some and calls `settle`.
    fn topic_mut(&mut self, name: &str) -> Result<&mut Topic, TopicError> {
        if !self.topics.contains_key(name) {
            while self.topics.len() >= self.limits.max_topics {
                let Some((_, victim)) = self.idle.pop_first() else {
                    return Err(self.full());
                };
                self.drop_topic(&victim);
                self.evictions += 1;
            }
            let key: Rc<str> = name.into();
            let topic = Topic {
                name: key.clone(),
                subs: Subscribers::default(),
                seq: self.retired.take(name),
                history: VecDeque::new(),
                stamp: self.stamp(),
            };
            self.topics.insert(key, topic);
        }
        Ok(self.topics.get_mut(name).expect("bug: topic just inserted"))
    }

    /// Remove a topic (it has no subscribers), keeping only its number.
    fn drop_topic(&mut self, name: &str) {
        if let Some(t) = self.topics.remove(name) {
            debug_assert!(t.subs.list.is_empty(), "dropping a topic with subscribers");
            self.idle.remove(&t.stamp);
            self.histories.forget(&t);
            self.retired.remember(name, t.seq);
        }
    }

    /// Put a topic where it belongs after a change: with subscribers, out of the idle index;
    /// without, in it — or, with no history either, dropped (it costs only its number).
    fn settle(&mut self, name: &str) {
        let Some(t) = self.topics.get(name) else {
            return;
        };
        if !t.subs.list.is_empty() {
            self.idle.remove(&t.stamp);
        } else if t.history.is_empty() {
            self.drop_topic(name);
        } else {
            self.idle.insert(t.stamp, t.name.clone());
        }
    }

    /// Would a message of this `kept_cost` be kept in a history?
    fn keeps(&self, cost: usize) -> bool {
        self.limits.history_len > 0 && cost <= self.limits.max_history_bytes
    }

    /// Would a publish of `len` bytes to `topic` find room now? (`POST /publish` answers
    /// before the publish is applied.) A refusal is counted.
    pub fn check_room(&mut self, topic: &str, len: usize) -> Result<(), TopicError> {
        let room = self.exists(topic)
            || !self.keeps(Published::cost_for(len))
            || self.topics.len() < self.limits.max_topics
            || !self.idle.is_empty();
        if room {
            Ok(())
        } else {
            Err(self.full())
        }
    }

    /// Publish: number the message, encode it once, remember it, and return it with the
    /// subscribers that must receive it. Refused when the topic is new, the message would be
    /// kept, and the hub is full with no idle topic to evict.
    pub fn publish(
        &mut self,
        topic: &str,
        text: bool,
        payload: &[u8],
    ) -> Result<(Rc<Published>, &[ConnId]), TopicError> {
        if !self.exists(topic) && !self.keeps(Published::cost_for(payload.len())) {
            // Nobody subscribes and nothing is kept: the topic needs only its next number.
            let p = Rc::new(Published::encode(self.retired.next(topic), text, payload));
            return Ok((p, &[]));
        }
        let t = self.topic_mut(topic)?;
        t.seq += 1;
        let p = Rc::new(Published::encode(t.seq, text, payload));
        Ok(self.record(topic, p))
    }

    /// Deliver a message numbered elsewhere (another worker, another node): keeps its
    /// sequence number. A topic this hub has no room for has no subscribers here: the
    /// message is not kept, only its number.
    pub fn publish_numbered(
        &mut self,
        topic: &str,
        p: Rc<Published>,
    ) -> (Rc<Published>, &[ConnId]) {
        if self.exists(topic) || self.keeps(p.kept_cost()) {
            if let Ok(t) = self.topic_mut(topic) {
                t.seq = t.seq.max(p.seq);
                return self.record(topic, p);
            }
        }
        self.retired.remember(topic, p.seq);
        (p, &[])
    }

    /// Keep a just-numbered message in its topic's history (within `history_len` and the
    /// hub's `max_history_bytes`).
    fn record(&mut self, topic: &str, p: Rc<Published>) -> (Rc<Published>, &[ConnId]) {
        let stamp = self.stamp();
        let limit = self.limits.history_len;
        let t = self.topics.get_mut(topic).expect("bug: topic just created");
        // Its stamp, the key of the idle index, changes.
        self.idle.remove(&t.stamp);
        t.stamp = stamp;
        if limit > 0 && p.kept_cost() > self.limits.max_history_bytes {
            // Larger than all history may hold: delivered, not kept (keeping it would empty
            // every other history). The topic's history is emptied, so that it stays a
            // contiguous run ending at `seq` and `history_after` reports the hole as a gap.
            while !t.history.is_empty() {
                self.histories.pop_front(t);
            }
        } else if limit > 0 {
            let kept = Kept {
                stamp,
                msg: p.clone(),
            };
            self.histories.push(t, kept);
            while t.history.len() > limit {
                self.histories.pop_front(t);
            }
        }
        self.settle(topic);
        self.trim_histories();
        let subs = self.topics.get(topic).map_or(&[][..], |t| &t.subs.list);
        (p, subs)
    }

    /// Over `max_history_bytes`: drop the oldest kept messages, whatever their topic (the
    /// ones least likely to be asked for), until under it.
    fn trim_histories(&mut self) {
        while self.histories.bytes > self.limits.max_history_bytes {
            let Some(name) = self.histories.oldest.first_key_value().map(|e| e.1.clone()) else {
                break;
            };
            if let Some(t) = self.topics.get_mut(&name) {
                self.histories.pop_front(t);
            }
            self.settle(&name);
        }
    }

    /// Messages read back from the broker's log, oldest first, to put before what this hub
    /// kept of `topic` (a resume from before it, on a node that did not follow the topic).
    /// Only a run that joins the kept history is taken (ending just before its oldest
    /// message, or — with nothing kept — at or after the topic's last number), so the
    /// history stays one contiguous run; within `history_len` and `max_history_bytes`.
    pub fn prepend_history(&mut self, topic: &str, msgs: Vec<Rc<Published>>) {
        let limit = self.limits.history_len;
        if limit == 0 || msgs.is_empty() || self.topic_mut(topic).is_err() {
            return;
        }
        let stamps: Vec<u64> = msgs.iter().map(|_| self.stamp()).collect();
        let t = self.topics.get_mut(topic).expect("bug: topic just made");
        let take: Vec<(u64, Rc<Published>)> = match t.history.front().map(|k| k.msg.seq) {
            Some(oldest) => {
                let older: Vec<_> = msgs.into_iter().filter(|m| m.seq < oldest).collect();
                if older.last().is_none_or(|m| m.seq + 1 != oldest) {
                    return;
                }
                stamps.into_iter().zip(older).collect()
            }
            None => {
                if msgs.last().is_none_or(|m| m.seq < t.seq) {
                    return;
                }
                t.seq = t.seq.max(msgs.last().map_or(0, |m| m.seq));
                stamps.into_iter().zip(msgs).collect()
            }
        };
        // Oldest last, each pushed in front; the newest `limit` are kept.
        let room = limit.saturating_sub(t.history.len());
        let skip = take.len().saturating_sub(room);
        for (stamp, msg) in take.into_iter().skip(skip).rev() {
            if msg.kept_cost() > self.limits.max_history_bytes {
                break;
            }
            self.histories.push_front(t, Kept { stamp, msg });
        }
        self.settle(topic);
        self.trim_histories();
    }

    /// Drop a topic's kept messages (its number stays): what was kept cannot be shown to
    /// lead up to what comes next, so a resume from before is told of the gap.
    pub fn forget_history(&mut self, topic: &str) {
        let Some(t) = self.topics.get_mut(topic) else {
            return;
        };
        while !t.history.is_empty() {
            self.histories.pop_front(t);
        }
        self.settle(topic);
    }

    /// The messages after `after` still in the topic's history, oldest first, and whether
    /// some were already dropped from it (a gap the client should be told about).
    pub fn history_after(&self, topic: &str, after: u64) -> (Vec<Rc<Published>>, bool) {
        let Some(t) = self.topics.get(topic) else {
            // Dropped or never seen: nothing kept, so everything after `after` is missed.
            return (Vec::new(), after < self.retired.last(topic));
        };
        let oldest = t.history.front().map_or(t.seq + 1, |k| k.msg.seq);
        let gap = after + 1 < oldest && after < t.seq;
        let msgs = t
            .history
            .iter()
            .filter(|k| k.msg.seq > after)
            .map(|k| k.msg.clone())
            .collect();
        (msgs, gap)
    }

    /// The last sequence number of a topic (0 if nothing was published), remembered after
    /// the topic is dropped (see `SeqBook`).
    pub fn last_seq(&self, topic: &str) -> u64 {
        self.topics
            .get(topic)
            .map_or_else(|| self.retired.last(topic), |t| t.seq)
    }

    /// The subscribers of a topic, copied out so the caller can act on connections while it
    /// walks them.
    pub fn subscribers(&self, topic: &str) -> Vec<ConnId> {
        self.topics
            .get(topic)
            .map_or_else(Vec::new, |t| t.subs.list.clone())
    }

    pub fn is_subscribed(&self, id: ConnId, topic: &str) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| t.subs.index.contains_key(&id))
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

    /// What the kept messages of every topic cost (`Published::kept_cost`).
    pub fn history_bytes(&self) -> usize {
        self.histories.bytes
    }

    /// Topics evicted to make room since the last call.
    pub fn take_evictions(&mut self) -> u64 {
        std::mem::take(&mut self.evictions)
    }

    /// New topics refused for want of room since the last call.
    pub fn take_refusals(&mut self) -> u64 {
        std::mem::take(&mut self.refusals)
    }
}

#[cfg(test)]
mod tests;
