//! Owns `SeqBook`: the last sequence number of topics that are not (or no longer) held, in
//! bounded memory, so that a topic's numbers never go backwards for the life of the process —
//! an SSE client resuming with `Last-Event-ID: 7` or a poll with `?after=7` must never be
//! handed a different message numbered 7. It must not grow with the number of topic names a
//! peer invents: past `cap` names the least recently used one is forgotten and its number
//! folded into a `floor` that every forgotten or unknown name starts above.
//! Pure data (layer L3): no sockets, no clock.
//! Must not: hand out a number at or below one it handed out before for the same name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Last sequence numbers by topic name, least recently used forgotten first.
///
/// The guarantee: `last(name)` never decreases for any name, whatever is forgotten, because
/// forgetting `name` raises `floor` to at least its number and an unknown name reads as
/// `floor`. The price of forgetting is a jump: a topic that comes back after being forgotten
/// continues above every number any forgotten topic reached (readers see a gap, never a reuse).
#[derive(Debug)]
pub struct SeqBook {
    cap: usize,
    /// Name → (last sequence number, use stamp).
    entries: HashMap<Arc<str>, (u64, u64)>,
    /// Use stamp → name: the least recently used entry is the first.
    order: BTreeMap<u64, Arc<str>>,
    /// At least the number of every name forgotten; where unknown names start.
    floor: u64,
    /// Source of use stamps (counts uses; never reused).
    uses: u64,
}

impl SeqBook {
    /// A book that remembers up to `cap` names exactly (`cap` 0: only the floor).
    pub fn new(cap: usize) -> SeqBook {
        SeqBook::starting_at(cap, 0)
    }

    /// The same with every name starting above `floor`: a process's epoch (the time it
    /// started, in microseconds), so numbers it hands out are above every number an earlier
    /// process handed out for any name, and a client resuming across a restart sees a gap
    /// rather than a reused number.
    pub fn starting_at(cap: usize, floor: u64) -> SeqBook {
        SeqBook {
            cap,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            floor,
            uses: 0,
        }
    }

    /// The last number of `name`: remembered, or the floor.
    pub fn last(&self, name: &str) -> u64 {
        self.entries.get(name).map_or(self.floor, |e| e.0)
    }

    /// Remember that `name` reached `seq` (never lowering what is known of it), as the most
    /// recently used name; forgets the least recently used beyond `cap`.
    pub fn remember(&mut self, name: &str, seq: u64) {
        if seq <= self.floor && !self.entries.contains_key(name) {
            return; // already what an unknown name reads
        }
        let seq = seq.max(self.last(name));
        let stamp = self.stamp();
        let key: Arc<str> = match self.entries.get_key_value(name) {
            Some((k, &(_, old))) => {
                self.order.remove(&old);
                k.clone()
            }
            None => name.into(),
        };
        self.order.insert(stamp, key.clone());
        self.entries.insert(key, (seq, stamp));
        while self.entries.len() > self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((seq, _)) = self.entries.remove(&oldest) {
                self.floor = self.floor.max(seq);
            }
        }
    }

    /// Take `name` out of the book (a live topic now holds its number): returns `last(name)`.
    pub fn take(&mut self, name: &str) -> u64 {
        match self.entries.remove(name) {
            Some((seq, stamp)) => {
                self.order.remove(&stamp);
                seq
            }
            None => self.floor,
        }
    }

    /// Number the next message of `name` (for a sequencer that holds no topics itself).
    pub fn next(&mut self, name: &str) -> u64 {
        let seq = self.last(name) + 1;
        self.remember(name, seq);
        seq
    }

    /// Names remembered exactly.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn stamp(&mut self) -> u64 {
        self.uses += 1;
        self.uses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_up_to_cap_names_exactly() {
        let mut b = SeqBook::new(2);
        assert_eq!(b.last("a"), 0);
        b.remember("a", 5);
        b.remember("b", 3);
        assert_eq!((b.last("a"), b.last("b"), b.last("c")), (5, 3, 0));
        b.remember("a", 2); // never lowered
        assert_eq!(b.last("a"), 5);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn forgetting_raises_the_floor_so_no_name_goes_backwards() {
        let mut b = SeqBook::new(2);
        b.remember("a", 5);
        b.remember("b", 3);
        b.remember("a", 6); // "a" is now the most recently used: "b" goes first
        b.remember("c", 1);
        assert_eq!(b.len(), 2);
        assert_eq!(
            b.last("b"),
            3,
            "forgotten: reads as the floor, its own number"
        );
        b.remember("d", 2); // at or below the floor, an unknown name needs no entry
        assert_eq!((b.len(), b.last("a")), (2, 6));
        b.remember("d", 4);
        // "a" (6) is forgotten: the floor rises to 6, and every forgotten or new name reads 6.
        assert_eq!((b.last("a"), b.last("b"), b.last("zzz")), (6, 6, 6));
        assert_eq!(b.last("c"), 1, "a remembered name keeps its own number");
        assert_eq!(b.next("a"), 7);
    }

    #[test]
    fn take_hands_the_number_to_a_live_topic() {
        let mut b = SeqBook::new(4);
        b.remember("a", 9);
        assert_eq!(b.take("a"), 9);
        assert!(b.is_empty());
        assert_eq!(b.take("a"), 0, "unknown again: the floor");
    }

    #[test]
    fn a_stream_of_new_names_stays_bounded_and_monotonic() {
        let mut b = SeqBook::new(8);
        let mut last = std::collections::HashMap::new();
        for i in 0..10_000u64 {
            let name = format!("t{}", i % 97);
            let seq = b.next(&name);
            let prev = last.insert(name, seq).unwrap_or(0);
            assert!(seq > prev, "went backwards: {prev} then {seq}");
            assert!(b.len() <= 8);
        }
    }

    #[test]
    fn cap_zero_keeps_only_the_floor() {
        let mut b = SeqBook::new(0);
        assert_eq!(b.next("a"), 1);
        assert_eq!(b.next("b"), 2);
        assert_eq!(b.next("a"), 3);
        assert!(b.is_empty());
    }
}
