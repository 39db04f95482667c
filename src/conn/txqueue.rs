//! Owns `TxQueue`: one connection's outbound bytes, in order — bytes encoded for this
//! connection alone (in a pooled ring) interleaved with references to frames encoded once for
//! many subscribers (`SharedFrame`, DESIGN §4). The common case, a connection with only its
//! own bytes, is a bare ring; the segment list exists only while a shared frame is queued.
//! Sans-IO: the reactor asks for the slices to `writev` and reports how much was written.
//! Must not: copy a shared frame per subscriber, or write to a socket.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::buf::{BufPool, Ring};
use crate::timer::Tick;

/// Bytes queued on every connection of the process (all workers): the gauge behind the
/// process-wide slow-consumer cap and the `queued bytes` metric.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

/// Bytes queued on every connection of the process.
pub fn queued_in_process() -> usize {
    QUEUED.load(Ordering::Relaxed)
}

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
}

/// The order of ring bytes and shared frames, once a shared frame is queued.
#[derive(Debug, Default)]
struct Segs {
    list: VecDeque<Seg>,
    /// Unwritten bytes in shared frames.
    shared_len: usize,
    /// Since when the queue has been over the slow-consumer soft limit.
    over_soft_since: Option<Tick>,
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
        let ring = self.ring.get_or_insert_with(|| pool.take());
        if ring.free() < n {
            ring.grow(ring.len() + n);
        }
        for p in parts {
            ring.push(p);
        }
        QUEUED.fetch_add(n, Ordering::Relaxed);
        if let Some(segs) = self.segs.as_mut() {
            match segs.list.back_mut() {
                Some(Seg::Ring(k)) => *k += n,
                _ => segs.list.push_back(Seg::Ring(n)),
            }
        }
    }

    /// Queue a reference to a frame shared with other connections: no copy.
    pub fn push_shared(&mut self, frame: SharedFrame) {
        let ring_len = self.ring.as_ref().map_or(0, |r| r.len());
        let segs = self.segs.get_or_insert_with(|| {
            let mut segs = Segs::default();
            if ring_len > 0 {
                segs.list.push_back(Seg::Ring(ring_len)); // what was queued before goes first
            }
            Box::new(segs)
        });
        segs.shared_len += frame.len();
        QUEUED.fetch_add(frame.len(), Ordering::Relaxed);
        segs.list.push_back(Seg::Shared(frame, 0));
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
        QUEUED.fetch_sub(n, Ordering::Relaxed);
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

    /// Fill `iov` with the queued bytes in order; returns how many slices were used.
    pub fn slices<'a>(&'a self, iov: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
        let (a, b) = self
            .ring
            .as_ref()
            .map_or((&[][..], &[][..]), |r| r.as_slices());
        let Some(segs) = self.segs.as_ref() else {
            iov[0] = IoSlice::new(a);
            iov[1] = IoSlice::new(b);
            return 2;
        };
        let mut ring_slices = RingCursor { a, b };
        let mut n = 0;
        for seg in segs.list.iter() {
            if n + 2 > MAX_IOV {
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
            }
        }
        n
    }

    /// `n` bytes were written: drop them; a drained ring goes back to the pool.
    pub fn consume(&mut self, mut n: usize, pool: &mut BufPool) {
        QUEUED.fetch_sub(n.min(self.len()), Ordering::Relaxed);
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
                }
            }
            if segs.list.is_empty() {
                self.segs = None;
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
    pub fn release(&mut self, pool: &mut BufPool) {
        QUEUED.fetch_sub(self.len(), Ordering::Relaxed);
        self.segs = None;
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

    fn drain(q: &mut TxQueue, pool: &mut BufPool, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !q.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = q.slices(&mut iov);
            let all: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
            let take = all.len().min(step);
            out.extend_from_slice(&all[..take]);
            q.consume(take, pool);
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
            q.push_shared(shared.clone());
            q.push(&mut pool, &[b"de"]);
            q.push_shared(shared.clone());
            q.push_shared(shared);
            q.push(&mut pool, &[b"0123456789abcdefghij"]); // grows the ring
            let want = b"abcSHAREDdeSHAREDSHARED0123456789abcdefghij".to_vec();
            assert_eq!(q.len(), want.len());
            assert_eq!(drain(&mut q, &mut pool, step), want, "step {step}");
            assert!(q.segs.is_none() && q.ring.is_none());
            assert_eq!(pool.lent(), 0);
        }
    }

    #[test]
    fn a_tail_pong_can_be_replaced_only_if_nothing_follows_it() {
        let mut pool = BufPool::new(16, 4);
        let mut q = TxQueue::default();
        q.push(&mut pool, &[b"pong"]);
        assert!(q.truncate_back(4));
        q.push(&mut pool, &[b"pong"]);
        q.push_shared(Rc::from(&b"X"[..]));
        assert!(!q.truncate_back(4), "a shared frame follows it");
        assert_eq!(drain(&mut q, &mut pool, 100), b"pongX");
    }
}
