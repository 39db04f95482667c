//! Owns `TxQueue`: one connection's outbound bytes, in order — bytes encoded for this
//! connection alone (in a pooled ring) interleaved with references to frames encoded once for
//! many subscribers (`SharedFrame`, DESIGN §4). The common case, a connection with only its
//! own bytes, is a bare ring; the segment list exists only while a shared frame is queued.
//! Sans-IO: the reactor asks for the slices to `writev` and reports how much was written.
//! Must not: copy a shared frame per subscriber, or write to a socket.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;

use crate::buf::{BufPool, Ring};
use crate::timer::Tick;

/// A complete frame (header and payload) encoded once and queued on many connections.
pub type SharedFrame = Rc<[u8]>;

/// Most slices handed to one `writev`.
pub const MAX_IOV: usize = 64;

#[derive(Debug)]
enum Seg {
    /// The next `n` bytes of the ring.
    Ring(usize),
    /// A shared frame, from byte `offset` on.
    Shared(SharedFrame, usize),
    /// Bytes `at..end` of the read ring this connection's payload arrived in: an echo sent
    /// from where it was read (`push_rx`). `None` until the rx side hands the ring over at
    /// the end of the handler's step (`lend`); given back to the pool once written.
    Rx {
        ring: Option<Box<Ring>>,
        at: usize,
        end: usize,
    },
}

/// The order of ring bytes and shared frames, once a shared frame is queued.
#[derive(Debug, Default)]
struct Segs {
    list: VecDeque<Seg>,
    /// Unwritten bytes outside the ring (shared frames and an rx ring's payload).
    shared_len: usize,
    /// `Seg::Rx` entries in `list`, and those still waiting for their ring: counted so the
    /// per-read and per-step checks (`holds_rx`, `awaits_rx`) never walk a long queue of
    /// shared frames (a slow subscriber's).
    rx_segs: u32,
    rx_waiting: u32,
    /// Since when the queue has been over the slow-consumer soft limit.
    over_soft_since: Option<Tick>,
}

/// Segment lists of drained queues, kept for the next connection that queues a shared frame.
/// In a fan-out every subscriber needs one from the publish until its flush, and allocating,
/// growing and freeing it per delivery was the largest cost after the `write` itself
/// (docs/benchmarks.md, "Fan-out"); a connection with nothing queued still holds none.
#[derive(Debug, Default)]
pub struct SegsPool {
    // Boxed on purpose: a queue holds its list as one pointer, moved in and out of here.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Segs>>,
    /// The fewest lists `free` held since the last `trim`: that many sat unused throughout.
    low: usize,
}

/// Most segment lists a pool keeps: what this many subscribers of one burst hold at once.
const SEGS_POOL_MAX: usize = 16 * 1024;

/// Segment lists that grew past this many entries (a slow consumer's) are freed, not kept.
const SEGS_KEEP_CAPACITY: usize = 16;

impl SegsPool {
    fn take(&mut self) -> Box<Segs> {
        let list = self.free.pop();
        self.low = self.low.min(self.free.len());
        list.unwrap_or_else(|| {
            Box::new(Segs {
                list: VecDeque::with_capacity(4),
                ..Segs::default()
            })
        })
    }

    fn give(&mut self, mut segs: Box<Segs>) {
        if self.free.len() < SEGS_POOL_MAX && segs.list.capacity() <= SEGS_KEEP_CAPACITY {
            // Reset in place: building a fresh `Segs` and dropping the old one costs a
            // delivery more than the rest of the hand-back (callgrind, docs/benchmarks.md).
            let Segs {
                list,
                shared_len,
                rx_segs,
                rx_waiting,
                over_soft_since,
            } = &mut *segs;
            list.clear();
            *shared_len = 0;
            *rx_segs = 0;
            *rx_waiting = 0;
            *over_soft_since = None;
            self.free.push(segs);
        }
    }

    /// Lists kept for reuse.
    pub fn idle(&self) -> usize {
        self.free.len()
    }

    /// Free the lists no connection took since the last call (the reactor calls it once a
    /// second): a fan-out that goes on keeps what it uses, and once it stops the memory goes
    /// back within two calls.
    pub fn trim(&mut self) {
        let unused = self.low.min(self.free.len());
        self.free.truncate(self.free.len() - unused);
        self.free.shrink_to(self.free.len().max(64));
        self.low = self.free.len();
    }
}

/// 16 bytes: two pointers, both null while nothing is queued.
#[derive(Debug, Default)]
pub(crate) struct TxQueue {
    ring: Option<Box<Ring>>,
    /// `None` while only ring bytes are queued.
    segs: Option<Box<Segs>>,
}

impl TxQueue {
    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.ring.as_ref().map_or(0, |r| r.len()) + self.segs.as_ref().map_or(0, |s| s.shared_len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append bytes for this connection only, copying them into the ring (grown past the pool
    /// size only for a message larger than a pooled ring; such a ring is freed, not pooled).
    pub fn push(&mut self, pool: &mut BufPool, parts: &[&[u8]]) {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        let ring = self.ring_with_room(pool, n);
        for p in parts {
            ring.push(p);
        }
        self.pushed_to_ring(n);
    }

    /// `push` of a frame: its header (`head[..n]`, from the array it was encoded into) and
    /// its payload (`Ring::push_prefixed`: the usual small frame costs one `memcpy` call).
    pub fn push_frame<const K: usize>(
        &mut self,
        pool: &mut BufPool,
        head: &[u8; K],
        n: usize,
        payload: &[u8],
    ) {
        let len = n + payload.len();
        self.ring_with_room(pool, len)
            .push_prefixed(head, n, payload);
        self.pushed_to_ring(len);
    }

    /// The ring, taken from the pool if there is none, with room for `n` more bytes.
    #[inline]
    fn ring_with_room(&mut self, pool: &mut BufPool, n: usize) -> &mut Ring {
        let ring = self.ring.get_or_insert_with(|| pool.take());
        if ring.free() < n {
            ring.grow(ring.len() + n);
        }
        ring
    }

    /// `n` bytes were appended to the ring: after any shared segment, they are a segment.
    #[inline]
    fn pushed_to_ring(&mut self, n: usize) {
        if let Some(segs) = self.segs.as_mut() {
            match segs.list.back_mut() {
                Some(Seg::Ring(k)) => *k += n,
                _ => segs.list.push_back(Seg::Ring(n)),
            }
        }
    }

    /// Queue a reference to a frame shared with other connections: no copy.
    pub fn push_shared(&mut self, frame: SharedFrame, spare: &mut SegsPool) {
        let len = frame.len();
        self.push_seg(Seg::Shared(frame, 0), len, spare);
    }

    /// Queue bytes `at..at + len` of the rx ring a payload was just read into, to be sent
    /// from there: no copy. The ring itself arrives with `lend` before anything is written.
    pub fn push_rx(&mut self, at: usize, len: usize, spare: &mut SegsPool) {
        let seg = Seg::Rx {
            ring: None,
            at,
            end: at + len,
        };
        self.push_seg(seg, len, spare);
        if let Some(segs) = self.segs.as_mut() {
            segs.rx_segs += 1;
            segs.rx_waiting += 1;
        }
    }

    fn push_seg(&mut self, seg: Seg, len: usize, spare: &mut SegsPool) {
        let ring_len = self.ring.as_ref().map_or(0, |r| r.len());
        let segs = self.segs.get_or_insert_with(|| {
            let mut segs = spare.take();
            if ring_len > 0 {
                segs.list.push_back(Seg::Ring(ring_len)); // what was queued before goes first
            }
            segs
        });
        segs.shared_len += len;
        segs.list.push_back(seg);
    }

    /// Is a `push_rx` waiting for its ring?
    pub fn awaits_rx(&self) -> bool {
        self.segs.as_ref().is_some_and(|s| s.rx_waiting > 0)
    }

    /// Does the queue hold a read ring (to be written soon, so the next read can have it)?
    #[cfg(test)]
    pub fn holds_rx(&self) -> bool {
        self.segs.as_ref().is_some_and(|s| s.rx_segs > 0)
    }

    /// The rx side hands over the ring a `push_rx` refers to (emptied: what it still held for
    /// the decoder was moved out first).
    pub fn lend(&mut self, lent: Box<Ring>, pool: &mut BufPool) {
        let Some(segs) = self.segs.as_mut().filter(|s| s.rx_waiting > 0) else {
            return pool.give(lent);
        };
        // Pushed last, so found from the back.
        let waiting = segs.list.iter_mut().rev().find_map(|seg| match seg {
            Seg::Rx { ring: r @ None, .. } => Some(r),
            _ => None,
        });
        match waiting {
            Some(r) => {
                *r = Some(lent);
                segs.rx_waiting -= 1;
            }
            None => pool.give(lent),
        }
    }

    /// After a write that left part of an rx ring's payload unsent: copy that part into a
    /// frame of its own and give the ring back, so a slow peer never keeps the reactor's large
    /// read ring (the copy the echo saved is paid only when the socket backs up).
    pub fn return_rx(&mut self, pool: &mut BufPool) {
        let Some(segs) = self.segs.as_mut().filter(|s| s.rx_segs > s.rx_waiting) else {
            return;
        };
        for seg in segs.list.iter_mut() {
            if let Seg::Rx { ring, at, end } = seg {
                if let Some(r) = ring.take() {
                    let rest: SharedFrame = Rc::from(r.stored(*at..*end));
                    pool.give(r);
                    *seg = Seg::Shared(rest, 0);
                    segs.rx_segs -= 1;
                }
            }
        }
    }

    /// Remove the last `n` bytes if they are ring bytes queued after everything else.
    pub fn truncate_back(&mut self, n: usize) -> bool {
        let Some(ring) = self.ring.as_mut() else {
            return false;
        };
        match self.segs.as_mut().map(|s| s.list.back_mut()) {
            None => {}
            Some(Some(Seg::Ring(k))) if *k >= n => *k -= n,
            Some(_) => return false,
        }
        ring.truncate_back(n);
        true
    }

    /// Slow-consumer bookkeeping: since when this queue has been over `soft` bytes of
    /// backlog that includes shared frames (a connection's own replies are throttled by
    /// reading less, not by this), or None.
    pub fn over_soft_since(&mut self, soft: usize, now: Tick) -> Option<Tick> {
        let len = self.len();
        let segs = self.segs.as_mut()?;
        if len <= soft {
            segs.over_soft_since = None;
            return None;
        }
        Some(*segs.over_soft_since.get_or_insert(now))
    }

    /// The queued bytes when they are one contiguous run — in the ring (the usual small
    /// reply), or a lone shared frame or echo with nothing else queued (a subscriber's one
    /// delivery): the reactor writes them with send(2) without setting up an iovec array.
    pub fn contiguous(&self) -> Option<&[u8]> {
        let ring = self.ring.as_ref().map(|r| r.as_slices());
        let Some(segs) = self.segs.as_ref() else {
            return match ring {
                Some((a, [])) if !a.is_empty() => Some(a),
                _ => None,
            };
        };
        if segs.list.len() != 1 || ring.is_some_and(|(a, _)| !a.is_empty()) {
            return None;
        }
        match segs.list.front() {
            Some(Seg::Shared(f, off)) => Some(&f[*off..]),
            Some(Seg::Rx {
                ring: Some(r),
                at,
                end,
            }) => Some(r.stored(*at..*end)),
            _ => None,
        }
    }

    /// Entries of the segment list (0 while only ring bytes are queued): each takes at most
    /// two slices of `slices`, so a queue of few entries is written through a small array.
    pub fn segments(&self) -> usize {
        self.segs.as_ref().map_or(0, |s| s.list.len())
    }

    /// Fill `iov` (at least 2 slices) with the queued bytes in order; returns how many
    /// slices were used.
    pub fn slices<'a, const N: usize>(&'a self, iov: &mut [IoSlice<'a>; N]) -> usize {
        let (a, b) = self
            .ring
            .as_ref()
            .map_or((&[][..], &[][..]), |r| r.as_slices());
        let Some(segs) = self.segs.as_ref() else {
            iov[0] = IoSlice::new(a);
            iov[1] = IoSlice::new(b);
            // One slice when the bytes do not wrap, so the reactor can use send(2).
            return if b.is_empty() { 1 } else { 2 };
        };
        let mut ring_slices = RingCursor { a, b };
        let mut n = 0;
        for seg in segs.list.iter() {
            if n + 2 > N {
                break;
            }
            match seg {
                Seg::Ring(k) => {
                    let (x, y) = ring_slices.take(*k);
                    iov[n] = IoSlice::new(x);
                    iov[n + 1] = IoSlice::new(y);
                    n += 2;
                }
                Seg::Shared(f, off) => {
                    iov[n] = IoSlice::new(&f[*off..]);
                    n += 1;
                }
                Seg::Rx {
                    ring: Some(r),
                    at,
                    end,
                } => {
                    iov[n] = IoSlice::new(r.stored(*at..*end));
                    n += 1;
                }
                // Not handed over yet: nothing behind it may go first.
                Seg::Rx { ring: None, .. } => break,
            }
        }
        n
    }

    /// `n` bytes were written: drop them; a drained ring goes back to the pool.
    pub fn consume(&mut self, mut n: usize, pool: &mut BufPool, spare: &mut SegsPool) {
        if let Some(segs) = self.segs.as_mut() {
            while n > 0 {
                let Some(front) = segs.list.front_mut() else {
                    break;
                };
                match front {
                    Seg::Ring(k) => {
                        let m = n.min(*k);
                        if let Some(r) = self.ring.as_mut() {
                            r.consume(m);
                        }
                        *k -= m;
                        n -= m;
                        if *k == 0 {
                            segs.list.pop_front();
                        }
                    }
                    Seg::Shared(f, off) => {
                        let m = n.min(f.len() - *off);
                        *off += m;
                        segs.shared_len -= m;
                        n -= m;
                        if *off == f.len() {
                            segs.list.pop_front();
                        }
                    }
                    Seg::Rx { at, end, .. } => {
                        let m = n.min(*end - *at);
                        *at += m;
                        segs.shared_len -= m;
                        n -= m;
                        if *at == *end {
                            segs.rx_segs -= 1;
                            if let Some(Seg::Rx { ring: Some(r), .. }) = segs.list.pop_front() {
                                pool.give(r);
                            }
                        }
                    }
                }
            }
            if segs.list.is_empty() {
                if let Some(segs) = self.segs.take() {
                    spare.give(segs);
                }
            }
        } else if let Some(r) = self.ring.as_mut() {
            r.consume(n);
        }
        if self.ring.as_ref().is_some_and(|r| r.is_empty()) {
            if let Some(r) = self.ring.take() {
                pool.give(r);
            }
        }
    }

    /// Give every buffer back (the connection is being freed).
    pub fn release(&mut self, pool: &mut BufPool, spare: &mut SegsPool) {
        if let Some(mut segs) = self.segs.take() {
            for seg in segs.list.drain(..) {
                if let Seg::Rx { ring: Some(r), .. } = seg {
                    pool.give(r);
                }
            }
            spare.give(segs);
        }
        if let Some(r) = self.ring.take() {
            pool.give(r);
        }
    }
}

/// Walks the ring's two slices in order, handing out the next `k` bytes.
struct RingCursor<'a> {
    a: &'a [u8],
    b: &'a [u8],
}

impl<'a> RingCursor<'a> {
    fn take(&mut self, k: usize) -> (&'a [u8], &'a [u8]) {
        let from_a = k.min(self.a.len());
        let (x, rest_a) = self.a.split_at(from_a);
        self.a = rest_a;
        let from_b = (k - from_a).min(self.b.len());
        let (y, rest_b) = self.b.split_at(from_b);
        self.b = rest_b;
        (x, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write everything, at most `step` bytes per write.
    fn drain(q: &mut TxQueue, pool: &mut BufPool, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !q.is_empty() {
            out.extend(drain_some(q, pool, step));
        }
        out
    }

    #[test]
    fn own_and_shared_bytes_leave_in_order_at_every_write_size() {
        for step in [1, 2, 3, 5, 7, 64, 1000] {
            let mut pool = BufPool::new(16, 4);
            let mut q = TxQueue::default();
            let shared: SharedFrame = Rc::from(&b"SHARED"[..]);
            q.push(&mut pool, &[b"ab", b"c"]);
            q.push_shared(shared.clone(), &mut SegsPool::default());
            q.push(&mut pool, &[b"de"]);
            q.push_shared(shared.clone(), &mut SegsPool::default());
            q.push_shared(shared, &mut SegsPool::default());
            q.push(&mut pool, &[b"0123456789abcdefghij"]); // grows the ring
            let want = b"abcSHAREDdeSHAREDSHARED0123456789abcdefghij".to_vec();
            assert_eq!(q.len(), want.len());
            assert_eq!(drain(&mut q, &mut pool, step), want, "step {step}");
            assert!(q.segs.is_none() && q.ring.is_none());
            assert_eq!(pool.lent(), 0);
        }
    }

    #[test]
    fn only_one_unwrapped_run_of_own_bytes_is_contiguous() {
        let mut pool = BufPool::new(16, 4);
        let mut q = TxQueue::default();
        assert_eq!(q.contiguous(), None, "empty");
        q.push(&mut pool, &[b"0123456789"]);
        assert_eq!(q.contiguous(), Some(&b"0123456789"[..]));
        // Consume 8, then push 10: the bytes wrap around the 16-byte ring.
        q.consume(8, &mut pool, &mut SegsPool::default());
        q.push(&mut pool, &[b"abcdefghij"]);
        assert_eq!(q.contiguous(), None, "wrapped: two slices");
        assert_eq!(drain(&mut q, &mut pool, 100), b"89abcdefghij");
        q.push(&mut pool, &[b"own"]);
        q.push_shared(Rc::from(&b"SHARED"[..]), &mut SegsPool::default());
        assert_eq!(q.contiguous(), None, "a shared frame follows");
        assert_eq!(drain(&mut q, &mut pool, 100), b"ownSHARED");
        assert_eq!(pool.lent(), 0);
    }

    #[test]
    fn a_lone_shared_frame_is_contiguous_and_so_is_its_unsent_rest() {
        let mut pool = BufPool::new(16, 4);
        let mut spare = SegsPool::default();
        let mut q = TxQueue::default();
        q.push_shared(Rc::from(&b"FRAME"[..]), &mut spare);
        assert_eq!(
            q.contiguous(),
            Some(&b"FRAME"[..]),
            "one subscriber's delivery"
        );
        q.consume(2, &mut pool, &mut spare);
        assert_eq!(q.contiguous(), Some(&b"AME"[..]), "after a short write");
        q.push_shared(Rc::from(&b"NEXT"[..]), &mut spare);
        assert_eq!(q.contiguous(), None, "two frames: two slices");
        assert_eq!(q.segments(), 2);
        assert_eq!(drain(&mut q, &mut pool, 100), b"AMENEXT");
        assert_eq!(q.segments(), 0, "drained: no list");
        q.push(&mut pool, &[b"own"]);
        q.push_shared(Rc::from(&b"X"[..]), &mut spare);
        assert_eq!(q.contiguous(), None, "own bytes go first");
        assert_eq!(drain(&mut q, &mut pool, 100), b"ownX");
        assert_eq!(pool.lent(), 0);
    }

    #[test]
    fn a_tail_pong_can_be_replaced_only_if_nothing_follows_it() {
        let mut pool = BufPool::new(16, 4);
        let mut q = TxQueue::default();
        q.push(&mut pool, &[b"pong"]);
        assert!(q.truncate_back(4));
        q.push(&mut pool, &[b"pong"]);
        q.push_shared(Rc::from(&b"X"[..]), &mut SegsPool::default());
        assert!(!q.truncate_back(4), "a shared frame follows it");
        assert_eq!(drain(&mut q, &mut pool, 100), b"pongX");
    }

    /// A read ring holding `payload` at offset 8, lent from `pool` the way the rx side gets it.
    fn read_ring(pool: &mut BufPool, payload: &[u8]) -> Box<Ring> {
        let mut r = pool.take_large().expect("the large ring is in");
        r.push(&[0u8; 8]);
        r.push(payload);
        r.consume(r.len()); // the decoder took it all; the bytes stay in place
        r
    }

    /// A queue that sends `payload` from a read ring it holds.
    fn echoing(pool: &mut BufPool, payload: &[u8]) -> TxQueue {
        let ring = read_ring(pool, payload);
        let mut q = TxQueue::default();
        q.push_rx(8, payload.len(), &mut SegsPool::default());
        q.lend(ring, pool);
        assert!(q.holds_rx() && !q.awaits_rx());
        q
    }

    #[test]
    fn an_echo_from_the_read_ring_leaves_in_order_and_the_ring_comes_back() {
        for step in [1, 3, 7, 100, 1 << 20] {
            let mut pool = BufPool::new(16, 4);
            let ring = read_ring(&mut pool, b"ECHOED PAYLOAD");
            let mut q = TxQueue::default();
            q.push(&mut pool, &[b"hd"]);
            q.push_rx(8, 14, &mut SegsPool::default());
            assert!(q.awaits_rx());
            // Until the ring is handed over nothing behind the header may be written.
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = q.slices(&mut iov);
            assert_eq!(iov[..n].iter().map(|s| s.len()).sum::<usize>(), 2);
            q.lend(ring, &mut pool);
            assert!(!q.awaits_rx() && q.holds_rx());
            q.push(&mut pool, &[b"tail"]);
            assert_eq!(q.len(), 2 + 14 + 4);
            assert_eq!(
                drain(&mut q, &mut pool, step),
                b"hdECHOED PAYLOADtail",
                "step {step}"
            );
            assert_eq!(pool.lent(), 0, "step {step}");
            assert!(
                pool.take_large().is_some(),
                "the large ring is back in the pool"
            );
        }
    }

    #[test]
    fn an_unsent_rest_is_copied_out_and_the_read_ring_goes_back() {
        let mut pool = BufPool::new(16, 4);
        let mut q = echoing(&mut pool, b"0123456789");
        let mut out = drain_some(&mut q, &mut pool, 4);
        assert!(pool.take_large().is_none(), "still out, writing");
        q.return_rx(&mut pool);
        assert!(!q.holds_rx());
        // The ring is reused (and overwritten) by the next read; the rest must not change.
        let mut next = pool.take_large().expect("returned");
        next.push(&[0xAA; 64]);
        out.extend(drain(&mut q, &mut pool, 3));
        assert_eq!(out, b"0123456789");
        pool.give(next);
        assert_eq!(pool.lent(), 0);
    }

    #[test]
    fn releasing_a_queue_returns_the_read_ring() {
        let mut pool = BufPool::new(16, 4);
        let mut q = echoing(&mut pool, b"abc");
        q.release(&mut pool, &mut SegsPool::default());
        assert_eq!(pool.lent(), 0);
        assert!(pool.take_large().is_some());
    }

    /// One write of at most `n` bytes.
    fn drain_some(q: &mut TxQueue, pool: &mut BufPool, n: usize) -> Vec<u8> {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let used = q.slices(&mut iov);
        let all: Vec<u8> = iov[..used].iter().flat_map(|s| s.iter().copied()).collect();
        let take = all.len().min(n);
        q.consume(take, pool, &mut SegsPool::default());
        all[..take].to_vec()
    }

    #[test]
    fn a_drained_segment_list_is_kept_for_the_next_shared_frame() {
        let mut pool = BufPool::new(16, 4);
        let mut spare = SegsPool::default();
        let mut q = TxQueue::default();
        for round in 0..3 {
            q.push_shared(Rc::from(&b"FRAME"[..]), &mut spare);
            assert_eq!(spare.idle(), 0, "round {round}: taken from the pool");
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = q.slices(&mut iov);
            let len = iov[..n].iter().map(|s| s.len()).sum();
            q.consume(len, &mut pool, &mut spare);
            assert!(q.segs.is_none(), "a drained queue holds nothing");
            assert_eq!(spare.idle(), 1, "round {round}: given back");
        }
        // A list a slow consumer grew past SEGS_KEEP_CAPACITY is freed, not kept.
        for _ in 0..100 {
            q.push_shared(Rc::from(&b"X"[..]), &mut spare);
        }
        q.release(&mut pool, &mut spare);
        assert_eq!(spare.idle(), 0);
    }

    #[test]
    fn lists_left_unused_for_a_whole_interval_are_freed() {
        let mut pool = BufPool::new(16, 4);
        let mut spare = SegsPool::default();
        let mut queues: Vec<TxQueue> = (0..10).map(|_| TxQueue::default()).collect();
        let burst =
            |queues: &mut Vec<TxQueue>, spare: &mut SegsPool, pool: &mut BufPool, n: usize| {
                for q in queues.iter_mut().take(n) {
                    q.push_shared(Rc::from(&b"F"[..]), spare);
                }
                for q in queues.iter_mut().take(n) {
                    q.consume(1, pool, spare);
                }
            };
        burst(&mut queues, &mut spare, &mut pool, 10);
        assert_eq!(spare.idle(), 10);
        spare.trim(); // the first interval: all ten were in use during it
        assert_eq!(spare.idle(), 10);
        burst(&mut queues, &mut spare, &mut pool, 4); // only four are needed now
        spare.trim();
        assert_eq!(spare.idle(), 4, "six sat unused for a whole interval");
        spare.trim(); // nothing at all
        assert_eq!(spare.idle(), 0, "an idle reactor keeps none");
    }
}
