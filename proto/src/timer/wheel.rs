//! Hierarchical hashed timing wheel that owns every pending timer of the reactor; it never reads
//! the clock — time is an abstract [`Tick`] handed in by the caller.
//! Must not: read a clock, or fire a timer before its deadline.
//!
//! # Design
//!
//! Varghese & Lauck scheme 6/7 (hierarchical hashed wheels), in the "bit-aligned" form: the
//! wheel keeps `elapsed` (the time it has processed up to, [`Wheel::now`]). A timer with deadline
//! `d` lives at the level given by the highest bit in which `d` and `elapsed` differ, 6 bits per
//! level, and in the slot given by `d`'s 6 bits for that level. Because `d` and `elapsed` agree on
//! every higher bit, each occupied slot is at or after `elapsed`'s own slot on that level, so a
//! level never wraps: the next occupied slot is `trailing_zeros` of the level's `u64` bitmap, and
//! the lowest non-empty level always holds the earliest slot.
//!
//! | level | slot width (ticks) | level span (ticks) | at 1 ms/tick: slot / span |
//! |-------|--------------------|--------------------|---------------------------|
//! | 0     | 1                  | 64                 | 1 ms / 64 ms              |
//! | 1     | 64                 | 4 096              | 64 ms / 4.1 s             |
//! | 2     | 4 096              | 262 144            | 4.1 s / 4.4 min           |
//! | 3     | 262 144            | 16 777 216         | 4.4 min / 4.7 h           |
//! | 4     | 16 777 216         | 2^30               | 4.7 h / 12.4 days         |
//! | 5     | 2^30               | 2^36               | 12.4 days / 2.2 years     |
//! | 6     | 2^36               | 2^42               | 2.2 years / 139 years     |
//!
//! Deadlines that do not share `elapsed`'s upper 22 bits (beyond the top level, ≥ 139 years at
//! 1 ms/tick) are clamped into one extra "farthest slot", the overflow list, whose wake-up time is
//! a lower bound of its deadlines. When time reaches that bound, or crosses into the next 2^42
//! block, the list is re-inserted; entries that still do not fit go back to it. They are never
//! fired early: only level-0 entries fire, and a level-0 entry's deadline is exactly its slot.
//!
//! When a level-k slot (k > 0) comes due, `elapsed` moves to the slot's start and its entries are
//! re-inserted ("cascaded"); they land on strictly lower levels. So each entry is touched at most
//! once per level over its life, and idle timers far away cost nothing per tick.
//!
//! Timers are named by the caller's [`TimerId`]s, small dense integers that index the node
//! array (the reactor gives a connection its slab index), and are chained in intrusive
//! doubly-linked lists, one per slot. A node is 16 bytes — deadline and two links — because
//! it needs no value, key or generation (the id says whose it is; the caller cancels an id
//! before reusing it) and no level or slot (a node's place is a function of `elapsed` and its
//! deadline, see `Wheel::place_of`). Every idle connection keeps one (docs/architecture.md §9).
//!
//! # Ordering
//!
//! A timer's position depends only on `(elapsed, deadline)`, lists are FIFO and cascades keep list
//! order, so timers fire in non-decreasing deadline order and, for equal deadlines, in insertion
//! order. A deadline already in the past is stored as [`Wheel::now`] ("due now"); that effective
//! deadline is what [`Wheel::deadline`] and [`Wheel::poll`] report.
//!
//! # Complexity (L = 7 levels)
//!
//! - `insert`, `cancel`, `deadline`: O(1).
//! - `next_expiration`: O(L) bitmap scan, no per-entry work.
//! - `poll` / `advance`: O(L) per empty stretch of time skipped (whatever its length) plus O(1)
//!   per fired timer and per cascade step; each timer cascades at most L times. Overflow
//!   re-insertion is O(overflow length) and happens at most once per 2^42 ticks or per due
//!   overflow deadline.
//!
//! # Lazy re-arm (the caller's policy)
//!
//! A busy connection should not touch the wheel on every frame. As with nginx's
//! `NGX_TIMER_LAZY_DELAY`, the connection stores its current deadline itself and keeps its one
//! wheel timer as is when the deadline moves later. When the timer fires, the caller compares the
//! fired tick with the stored deadline: if the stored deadline is later, it re-inserts for that
//! deadline (a cheap O(1) insert) instead of acting. Only a deadline that moves *earlier* needs a
//! `cancel` + `insert`. The wheel therefore only provides cheap insert/cancel/poll.

use std::fmt;

/// Abstract time unit (the reactor uses 1 ms); the wheel never relates it to wall time.
pub type Tick = u64;

/// The caller's name for a timer: a small dense integer (the reactor uses a connection's slab
/// index, so a connection needs no key of its own). Ids index the wheel's node array, which
/// grows to the largest id used.
pub type TimerId = u32;

/// Bits of the deadline consumed per level (64 slots).
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// 7 levels cover 2^42 ticks, 139 years at 1 ms/tick; anything further goes to the overflow list.
const LEVELS: usize = 7;
const WHEEL_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// Null link.
const NIL: u32 = u32::MAX;
/// `Node::prev` of a node in no list (not armed). Ids stay below it.
const DETACHED: u32 = u32::MAX - 1;

/// Head and tail of one intrusive list (a slot, or the overflow list).
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };

    fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

/// One timer: 16 bytes, and one per connection (docs/architecture.md §9). It stores no level
/// or slot: a linked node's place is a function of `(elapsed, deadline)` (`Wheel::place_of`).
#[derive(Clone, Copy)]
struct Node {
    /// Effective deadline (never earlier than `elapsed` at insert time).
    deadline: Tick,
    /// Previous in the list, `NIL` for the head, `DETACHED` when not armed.
    prev: u32,
    /// Next in the list.
    next: u32,
}

impl Node {
    const DETACHED: Node = Node {
        deadline: 0,
        prev: DETACHED,
        next: NIL,
    };

    fn is_armed(&self) -> bool {
        self.prev != DETACHED
    }
}

/// What comes due next.
#[derive(Clone, Copy)]
enum Due {
    Slot { level: usize, slot: usize, at: Tick },
    Overflow { at: Tick },
}

impl Due {
    fn at(self) -> Tick {
        match self {
            Due::Slot { at, .. } | Due::Overflow { at } => at,
        }
    }
}

/// Where a linked node is: a slot, or the overflow list.
enum Place {
    Slot(usize, usize),
    Overflow,
}

/// A hierarchical timing wheel of timers named by [`TimerId`]s. See the module docs.
pub struct Wheel {
    /// Time processed so far: every timer with deadline < `elapsed` has fired.
    elapsed: Tick,
    occupied: [u64; LEVELS],
    /// `LEVELS * SLOTS` lists, level-major. Boxed so that moving a `Wheel` stays cheap.
    slots: Box<[List]>,
    overflow: List,
    /// Lower bound of the overflow deadlines (exact after each re-insertion; cancels may leave it
    /// early, which only costs one spurious wake-up).
    overflow_min: Tick,
    /// Indexed by id.
    nodes: Vec<Node>,
    len: usize,
}

fn level_for(elapsed: Tick, deadline: Tick) -> usize {
    // `| SLOT_MASK` maps "equal" and "differs only in bits 0..6" to level 0.
    let masked = (elapsed ^ deadline) | SLOT_MASK;
    ((63 - masked.leading_zeros()) / SLOT_BITS) as usize
}

fn slot_for(deadline: Tick, level: usize) -> usize {
    ((deadline >> (level as u32 * SLOT_BITS)) & SLOT_MASK) as usize
}

/// First tick covered by `slot` of `level`, within `elapsed`'s block of the level above.
fn slot_start(elapsed: Tick, level: usize, slot: usize) -> Tick {
    let shift = level as u32 * SLOT_BITS;
    // shift + SLOT_BITS <= WHEEL_BITS = 42, so this never overflows.
    let upper = elapsed & !((1u64 << (shift + SLOT_BITS)) - 1);
    upper | ((slot as u64) << shift)
}

fn push_back(nodes: &mut [Node], list: &mut List, idx: u32) {
    let node = &mut nodes[idx as usize];
    node.prev = list.tail;
    node.next = NIL;
    if list.tail == NIL {
        list.head = idx;
    } else {
        nodes[list.tail as usize].next = idx;
    }
    list.tail = idx;
}

/// Take node `idx` out of `list`; it is left detached.
fn unlink(nodes: &mut [Node], list: &mut List, idx: u32) {
    let (prev, next) = {
        let node = &nodes[idx as usize];
        (node.prev, node.next)
    };
    if prev == NIL {
        list.head = next;
    } else {
        nodes[prev as usize].next = next;
    }
    if next == NIL {
        list.tail = prev;
    } else {
        nodes[next as usize].prev = prev;
    }
    nodes[idx as usize] = Node::DETACHED;
}

impl Wheel {
    /// A wheel whose current time is `now`.
    pub fn new(now: Tick) -> Self {
        Self::with_capacity(now, 0)
    }

    /// A wheel whose current time is `now`, with room for ids below `capacity` before the node
    /// array reallocates.
    pub fn with_capacity(now: Tick, capacity: usize) -> Self {
        Wheel {
            elapsed: now,
            occupied: [0; LEVELS],
            slots: vec![List::EMPTY; LEVELS * SLOTS].into_boxed_slice(),
            overflow: List::EMPTY,
            overflow_min: Tick::MAX,
            nodes: Vec::with_capacity(capacity),
            len: 0,
        }
    }

    /// Arm timer `id` at `deadline`, moving it if it was armed. A deadline <= the wheel's
    /// current time is stored as [`now`](Self::now) and fires on the next `poll`/`advance`.
    ///
    /// # Panics
    /// If `id` is `u32::MAX - 1` or above.
    pub fn insert(&mut self, id: TimerId, deadline: Tick) {
        assert!(id < DETACHED, "timer id out of range");
        let i = id as usize;
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, Node::DETACHED);
        } else if self.nodes[i].is_armed() {
            self.detach(id);
            self.len -= 1;
        }
        self.nodes[i].deadline = deadline.max(self.elapsed);
        self.len += 1;
        self.place(id);
    }

    /// Disarm timer `id`; false if it was not armed (already fired, cancelled, or never set).
    pub fn cancel(&mut self, id: TimerId) -> bool {
        if self.deadline(id).is_none() {
            return false;
        }
        self.detach(id);
        self.len -= 1;
        true
    }

    /// The (effective) deadline of timer `id`; `None` when it is not armed.
    pub fn deadline(&self, id: TimerId) -> Option<Tick> {
        self.nodes
            .get(id as usize)
            .filter(|n| n.is_armed())
            .map(|n| n.deadline)
    }

    /// Disarm and return one timer with deadline <= `now`, earliest first, as `(id, deadline)`;
    /// `None` when no timer is due, and then [`now`](Self::now) is `now`. While timers are being
    /// returned, [`now`](Self::now) is the deadline of the last one returned.
    ///
    /// Call it in a loop; between calls the caller may freely insert and cancel timers. A timer
    /// inserted between calls with a deadline <= `now` is returned by a later call of the same
    /// loop, in deadline order (so re-arming "at now" in a loop does not terminate).
    ///
    /// `now` must not go backwards (debug assertion; in release builds an earlier `now` is
    /// treated as the current time).
    pub fn poll(&mut self, now: Tick) -> Option<(TimerId, Tick)> {
        debug_assert!(
            now >= self.elapsed,
            "timer wheel time went backwards: {now} < {}",
            self.elapsed
        );
        let now = now.max(self.elapsed);
        loop {
            match self.next_due() {
                Some(Due::Slot { level, slot, at }) if at <= now => {
                    // Slots on the wheel are all inside elapsed's 2^42 block: no crossing here.
                    self.elapsed = at;
                    if level == 0 {
                        return Some(self.pop_level0(slot));
                    }
                    self.cascade(level, slot);
                }
                Some(Due::Overflow { at }) if at <= now => {
                    // Only chosen when the wheel is empty, so jumping time forward is safe.
                    self.elapsed = at;
                    self.reinsert_overflow();
                }
                _ => {
                    self.set_elapsed(now);
                    return None;
                }
            }
        }
    }

    /// Convenience: move time to `now`, appending every due timer to `fired` as
    /// `(id, deadline)` in non-decreasing deadline order; returns how many were appended.
    /// The caller handles them after this returns, so timers it inserts then are never fired by
    /// this call. Use [`poll`](Self::poll) to handle timers one at a time.
    pub fn advance(&mut self, now: Tick, fired: &mut Vec<(TimerId, Tick)>) -> usize {
        let before = fired.len();
        while let Some(timer) = self.poll(now) {
            fired.push(timer);
        }
        fired.len() - before
    }

    /// Earliest tick at which a timer may be due: exact or earlier (never later) than the true
    /// minimum deadline; `None` when empty. Costs a scan of at most 7 bitmaps. Polling at the
    /// returned tick always makes progress; at most 8 such wake-ups precede any deadline.
    pub fn next_expiration(&self) -> Option<Tick> {
        self.next_due().map(Due::at)
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The wheel's current time: every timer with an earlier deadline has been returned.
    pub fn now(&self) -> Tick {
        self.elapsed
    }

    /// Where linked node `idx` is. Its level is the highest 6-bit group in which its deadline
    /// and `elapsed` differ, the same as when it was placed: until its slot comes due (and it
    /// is cascaded or fired) `elapsed` stays below the slot's start, in the same block of the
    /// level above; an overflow node's deadline stays outside `elapsed`'s 2^42 block until the
    /// crossing that re-inserts the list (`set_elapsed`). So a node needs no level or slot field.
    fn place_of(&self, idx: u32) -> Place {
        let deadline = self.nodes[idx as usize].deadline;
        match level_for(self.elapsed, deadline) {
            level if level >= LEVELS => Place::Overflow,
            level => Place::Slot(level, slot_for(deadline, level)),
        }
    }

    /// Unlink armed node `idx` from its list.
    fn detach(&mut self, idx: u32) {
        match self.place_of(idx) {
            Place::Overflow => {
                unlink(&mut self.nodes, &mut self.overflow, idx);
                if self.overflow.is_empty() {
                    self.overflow_min = Tick::MAX;
                }
            }
            Place::Slot(level, slot) => {
                let list = &mut self.slots[level * SLOTS + slot];
                unlink(&mut self.nodes, list, idx);
                if list.is_empty() {
                    self.occupied[level] &= !(1u64 << slot);
                }
            }
        }
    }

    /// Link node `idx` (detached, deadline >= elapsed) where its deadline belongs relative to
    /// `elapsed`.
    fn place(&mut self, idx: u32) {
        let deadline = self.nodes[idx as usize].deadline;
        debug_assert!(deadline >= self.elapsed);
        match self.place_of(idx) {
            Place::Overflow => {
                self.overflow_min = self.overflow_min.min(deadline);
                push_back(&mut self.nodes, &mut self.overflow, idx);
            }
            Place::Slot(level, slot) => {
                push_back(&mut self.nodes, &mut self.slots[level * SLOTS + slot], idx);
                self.occupied[level] |= 1u64 << slot;
            }
        }
    }

    fn next_due(&self) -> Option<Due> {
        // Lower levels hold strictly earlier slots than higher ones (module docs), and every
        // occupied slot is at or after elapsed's slot, so the first set bit of the lowest
        // non-empty level is the next slot.
        for (level, &bits) in self.occupied.iter().enumerate() {
            if bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                let at = slot_start(self.elapsed, level, slot);
                debug_assert!(at > self.elapsed || (level == 0 && at == self.elapsed));
                return Some(Due::Slot { level, slot, at });
            }
        }
        if self.overflow.is_empty() {
            None
        } else {
            Some(Due::Overflow {
                at: self.overflow_min,
            })
        }
    }

    fn pop_level0(&mut self, slot: usize) -> (TimerId, Tick) {
        let list = &mut self.slots[slot];
        let idx = list.head;
        let deadline = self.nodes[idx as usize].deadline;
        debug_assert_eq!(deadline, self.elapsed);
        unlink(&mut self.nodes, list, idx);
        if list.is_empty() {
            self.occupied[0] &= !(1u64 << slot);
        }
        self.len -= 1;
        (idx, deadline)
    }

    /// Re-insert every entry of a higher-level slot that has come due (elapsed = its start);
    /// they all land on lower levels. List order is kept so equal deadlines stay FIFO.
    fn cascade(&mut self, level: usize, slot: usize) {
        let list = std::mem::replace(&mut self.slots[level * SLOTS + slot], List::EMPTY);
        self.occupied[level] &= !(1u64 << slot);
        self.relink(list);
    }

    /// Re-insert the overflow list relative to the current `elapsed`; entries still beyond the
    /// top level go back to it, and `overflow_min` becomes exact.
    fn reinsert_overflow(&mut self) {
        let list = std::mem::replace(&mut self.overflow, List::EMPTY);
        self.overflow_min = Tick::MAX;
        self.relink(list);
    }

    /// Place every node of a list already taken out of the wheel, in order.
    fn relink(&mut self, list: List) {
        let mut idx = list.head;
        while idx != NIL {
            let next = self.nodes[idx as usize].next;
            self.place(idx);
            idx = next;
        }
    }

    /// Move time forward to `t`, which must not pass any occupied slot. Crossing into another
    /// 2^42 block re-inserts the overflow list so that a timer's position stays a function of
    /// `(elapsed, deadline)` (which keeps equal deadlines FIFO, and is what `place_of` relies on).
    fn set_elapsed(&mut self, t: Tick) {
        let crossed = (t ^ self.elapsed) >> WHEEL_BITS != 0;
        self.elapsed = t;
        if crossed && !self.overflow.is_empty() {
            self.reinsert_overflow();
        }
    }
}

impl fmt::Debug for Wheel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("now", &self.elapsed)
            .field("len", &self.len)
            .field("next_expiration", &self.next_expiration())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn a_node_is_16_bytes() {
        // Every connection keeps one node (docs/architecture.md §9).
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }

    /// Reference model: pending timers ordered by (effective deadline, insertion sequence).
    #[derive(Default)]
    struct Model {
        now: Tick,
        pending: BTreeMap<(Tick, u64), u64>,
        by_id: HashMap<u64, (Tick, u64)>,
        next_id: u64,
    }

    /// The wheel under test, the model, and every key ever issued (live or stale).
    struct Harness {
        wheel: Wheel,
        model: Model,
        keys: Vec<(TimerId, u64)>,
    }

    impl Harness {
        fn new(start: Tick) -> Self {
            Harness {
                wheel: Wheel::new(start),
                model: Model {
                    now: start,
                    ..Model::default()
                },
                keys: Vec::new(),
            }
        }

        fn insert(&mut self, deadline: Tick) {
            let id = self.model.next_id;
            self.model.next_id += 1;
            let eff = deadline.max(self.model.now);
            self.model.pending.insert((eff, id), id);
            self.model.by_id.insert(id, (eff, id));
            // A fresh id per timer: the model's ids double as the wheel's.
            let key = id as TimerId;
            self.wheel.insert(key, deadline);
            self.keys.push((key, id));
        }

        fn cancel(&mut self, i: usize) {
            if self.keys.is_empty() {
                return;
            }
            let (key, id) = self.keys[i % self.keys.len()];
            let expected = self.model.by_id.remove(&id).map(|k| {
                self.model.pending.remove(&k);
                id
            });
            assert_eq!(self.wheel.cancel(key), expected.is_some());
        }

        /// Poll the wheel up to `now`, checking each fired timer against the model. With
        /// `reinsert`, each of the first few fired timers schedules a new one `offset` later,
        /// inserted between `poll` calls as a reactor would.
        fn advance(&mut self, now: Tick, reinsert: Option<u64>) {
            let now = now.max(self.model.now);
            let mut reinserted = 0;
            while let Some((key, tick)) = self.wheel.poll(now) {
                let id = u64::from(key);
                let (&(eff, seq), &mid) = self
                    .model
                    .pending
                    .iter()
                    .next()
                    .expect("wheel fired a timer the model does not have");
                assert!(eff <= now, "fired early: deadline {eff} > now {now}");
                assert_eq!((tick, id), (eff, mid), "wrong timer or order");
                assert_eq!(self.wheel.now(), tick);
                assert_eq!(self.wheel.deadline(key), None);
                self.model.pending.remove(&(eff, seq));
                self.model.by_id.remove(&mid);
                self.model.now = tick;
                if let Some(offset) = reinsert {
                    if reinserted < 20 {
                        reinserted += 1;
                        self.insert(tick.saturating_add(offset));
                    }
                }
            }
            if let Some((&(eff, _), _)) = self.model.pending.iter().next() {
                assert!(eff > now, "timer with deadline {eff} not fired by {now}");
            }
            self.model.now = now;
            assert_eq!(self.wheel.now(), now);
        }

        /// Advance to `next_expiration()` repeatedly; the earliest timer must fire within
        /// LEVELS + 1 wake-ups.
        fn wake_to_next(&mut self) {
            let Some((&(target, seq), _)) = self.model.pending.iter().next() else {
                assert_eq!(self.wheel.next_expiration(), None);
                return;
            };
            let mut steps = 0;
            // Not `now < target`: a timer inserted in the past is due at exactly `now`.
            while self.model.pending.contains_key(&(target, seq)) {
                let next = self.wheel.next_expiration().expect("wheel lost a timer");
                assert!(next <= target);
                assert!(next >= self.wheel.now());
                self.advance(next, None);
                steps += 1;
                assert!(steps <= LEVELS + 1, "{steps} wake-ups to reach {target}");
            }
        }

        fn check(&self) {
            assert_eq!(self.wheel.len(), self.model.pending.len());
            assert_eq!(self.wheel.is_empty(), self.model.pending.is_empty());
            match self.model.pending.keys().next() {
                None => assert_eq!(self.wheel.next_expiration(), None),
                Some(&(min, _)) => {
                    let next = self.wheel.next_expiration().expect("non-empty wheel");
                    assert!(next <= min, "next_expiration {next} later than {min}");
                    assert!(next >= self.wheel.now());
                }
            }
            for &(key, id) in &self.keys {
                let expected = self.model.by_id.get(&id).map(|&(eff, _)| eff);
                assert_eq!(self.wheel.deadline(key), expected);
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Deadline relative to now.
        InsertIn(u64),
        InsertPast(u64),
        InsertAt(Tick),
        Cancel(usize),
        Advance(u64),
        AdvanceReinsert(u64, u64),
        WakeToNext,
    }

    fn offset() -> impl Strategy<Value = u64> {
        prop_oneof![
            0..130u64,
            0..(1u64 << 13),
            0..(1u64 << 30),
            (1u64 << 41)..(1u64 << 43),
            (1u64 << 42)..(1u64 << 47),
        ]
    }

    fn step() -> impl Strategy<Value = u64> {
        prop_oneof![
            0..70u64,
            0..5_000u64,
            0..(1u64 << 31),
            (1u64 << 40)..(1u64 << 47),
            Just(u64::MAX),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => offset().prop_map(Op::InsertIn),
            1 => (1..1_000u64).prop_map(Op::InsertPast),
            1 => prop_oneof![any::<u64>(), (u64::MAX - 200)..=u64::MAX].prop_map(Op::InsertAt),
            3 => any::<usize>().prop_map(Op::Cancel),
            3 => step().prop_map(Op::Advance),
            1 => (step(), 1..200u64).prop_map(|(s, o)| Op::AdvanceReinsert(s, o)),
            1 => Just(Op::WakeToNext),
        ]
    }

    fn start() -> impl Strategy<Value = Tick> {
        prop_oneof![
            Just(0u64),
            Just((1u64 << 42) - 40),
            any::<u64>(),
            (u64::MAX - (1u64 << 44))..=u64::MAX,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        #[test]
        fn matches_reference_model(start in start(), ops in prop::collection::vec(op(), 1..200)) {
            let mut h = Harness::new(start);
            for op in ops {
                let now = h.model.now;
                match op {
                    Op::InsertIn(off) => h.insert(now.saturating_add(off)),
                    Op::InsertPast(back) => h.insert(now.saturating_sub(back)),
                    Op::InsertAt(t) => h.insert(t),
                    Op::Cancel(i) => h.cancel(i),
                    Op::Advance(s) => h.advance(now.saturating_add(s), None),
                    Op::AdvanceReinsert(s, o) => h.advance(now.saturating_add(s), Some(o)),
                    Op::WakeToNext => h.wake_to_next(),
                }
                h.check();
            }
            // Drain everything by waking only when told to: nothing is lost or stuck.
            while !h.model.pending.is_empty() {
                h.wake_to_next();
                h.check();
            }
        }
    }

    fn drain(wheel: &mut Wheel, now: Tick) -> Vec<(Tick, u64)> {
        let mut out = Vec::new();
        while let Some((id, t)) = wheel.poll(now) {
            out.push((t, u64::from(id)));
        }
        out
    }

    #[test]
    fn level0_wraparound() {
        for start in [0u64, 1, 37, 63, 64, 4095, 4096 * 64 - 1, (1 << 42) - 1] {
            let mut w = Wheel::new(start);
            let offsets = [63u64, 64, 65, 0, 1, 127, 128];
            for (i, off) in offsets.iter().enumerate() {
                w.insert(i as TimerId, start + off);
            }
            for t in start..=start + 130 {
                let fired = drain(&mut w, t);
                let expected: Vec<(Tick, u64)> = offsets
                    .iter()
                    .enumerate()
                    .filter(|&(_, &off)| start + off == t)
                    .map(|(i, _)| (t, i as u64))
                    .collect();
                assert_eq!(fired, expected, "start {start} t {t}");
            }
            assert!(w.is_empty());
        }
    }

    #[test]
    fn near_max_ticks_do_not_overflow() {
        let max = u64::MAX;
        let mut w = Wheel::new(max - 100);
        w.insert(0, max);
        w.insert(1, max - 1);
        w.insert(2, max - 100);
        w.insert(3, 5); // in the past: due now
        assert_eq!(w.next_expiration(), Some(max - 100));
        assert_eq!(
            drain(&mut w, max - 100),
            vec![(max - 100, 2), (max - 100, 3)]
        );
        assert_eq!(drain(&mut w, max), vec![(max - 1, 1), (max, 0)]);
        assert_eq!(w.next_expiration(), None);
        // Time can sit at u64::MAX; inserts there are due immediately.
        w.insert(4, max);
        assert_eq!(drain(&mut w, max), vec![(max, 4)]);
        assert_eq!(drain(&mut w, max), vec![]);

        // From 0, u64::MAX is far beyond the top level (clamped to the overflow slot).
        let mut w = Wheel::new(0);
        w.insert(0, max);
        w.insert(1, 1 << 50);
        assert!(w.next_expiration().unwrap() <= 1 << 50);
        assert_eq!(drain(&mut w, (1 << 50) - 1), vec![]);
        assert_eq!(drain(&mut w, 1 << 50), vec![(1 << 50, 1)]);
        assert!(w.next_expiration().unwrap() <= max);
        assert_eq!(drain(&mut w, max - 1), vec![]);
        assert_eq!(w.deadline(0), Some(max));
        assert_eq!(drain(&mut w, max), vec![(max, 0)]);
        assert!(w.is_empty());
    }

    #[test]
    fn clamped_timer_is_never_fired_early() {
        let deadline = 5 + (3u64 << 42) + 7;
        let mut w = Wheel::new(5);
        let key = 9;
        w.insert(key, deadline);
        let mut now = 5;
        // Huge steps across several 2^42 blocks, stopping just short of the deadline.
        for _ in 0..3 {
            now += (1u64 << 42) - 1;
            assert_eq!(drain(&mut w, now), vec![]);
            assert!(w.next_expiration().unwrap() <= deadline);
            assert_eq!(w.deadline(key), Some(deadline));
        }
        assert_eq!(drain(&mut w, deadline - 1), vec![]);
        assert_eq!(w.next_expiration(), Some(deadline));
        assert_eq!(drain(&mut w, deadline), vec![(deadline, 9)]);
    }

    #[test]
    fn an_id_is_armed_once_moved_by_insert_and_cancelled_harmlessly() {
        let mut w = Wheel::new(10);
        assert!(!w.cancel(7), "never armed");
        assert_eq!(w.deadline(7), None);
        w.insert(1, 20);
        assert_eq!(w.deadline(1), Some(20));
        assert!(w.cancel(1));
        assert!(!w.cancel(1));
        assert_eq!(w.deadline(1), None);
        // Inserting an armed id moves it: one timer, at the new deadline (earlier or later).
        w.insert(2, 300);
        w.insert(2, 30);
        assert_eq!((w.len(), w.deadline(2)), (1, Some(30)));
        w.insert(2, 5000);
        assert_eq!((w.len(), w.deadline(2)), (1, Some(5000)));
        w.insert(3, 30);
        let fired: Vec<_> = std::iter::from_fn(|| w.poll(6000)).collect();
        assert_eq!(fired, vec![(3, 30), (2, 5000)]);
        assert!(!w.cancel(2), "fired");
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadline_is_due_now_and_ordered() {
        let mut w = Wheel::new(100);
        w.insert(1, 7);
        assert_eq!(w.deadline(1), Some(100));
        w.insert(2, 100);
        w.insert(3, 3);
        assert_eq!(w.next_expiration(), Some(100));
        assert_eq!(drain(&mut w, 100), vec![(100, 1), (100, 2), (100, 3)]);
    }

    #[test]
    fn advance_collects_and_allows_reinsert() {
        let mut w = Wheel::new(0);
        w.insert(1, 5);
        w.insert(2, 3);
        let mut fired = Vec::new();
        assert_eq!(w.advance(10, &mut fired), 2);
        assert_eq!(fired, vec![(2, 3), (1, 5)]);
        // Re-arming at "now" after the call is not fired by it, only by the next one.
        w.insert(3, 10);
        fired.clear();
        assert_eq!(w.advance(10, &mut fired), 1);
    }

    #[test]
    fn hundred_thousand_insert_cancel_half_fire_half() {
        let mut w = Wheel::with_capacity(0, 100_000);
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut keys = Vec::with_capacity(100_000);
        for i in 0..100_000u64 {
            // xorshift64: deterministic spread of deadlines over 120 s of 1 ms ticks.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let deadline = 1 + rng % 120_000;
            w.insert(i as TimerId, deadline);
            keys.push((i as TimerId, deadline));
        }
        assert_eq!(w.len(), 100_000);
        for (i, &(key, _)) in keys.iter().enumerate().step_by(2) {
            assert!(w.cancel(key), "{i}");
        }
        assert_eq!(w.len(), 50_000);
        let mut fired = Vec::new();
        w.advance(120_000, &mut fired);
        assert!(w.is_empty());
        assert_eq!(fired.len(), 50_000);
        assert!(fired.windows(2).all(|p| p[0].1 <= p[1].1));
        let mut ids: Vec<u64> = fired
            .iter()
            .map(|&(key, t)| {
                assert_eq!((key, t), keys[key as usize]);
                u64::from(key)
            })
            .collect();
        ids.sort_unstable();
        assert!(ids.iter().copied().eq((1..100_000u64).step_by(2)));
    }
}
