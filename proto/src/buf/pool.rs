//! Owns `BufPool`: the per-reactor free list of rings. Connections take a ring when bytes
//! arrive or must be sent and give it back the moment it drains, so memory follows activity,
//! not the connection count (DESIGN §3). It also holds the reactor's one large read ring,
//! lent to a WebSocket for the length of one read (`take_large`): a large message arrives in
//! one `read` and is delivered from it in place (and an echo of it is written from it before
//! it comes back). Single-threaded by construction; no locks.
//! Must not: lend a ring to two holders at once, keep more idle rings than `max_free`, or make
//! a second large ring while the first is out.

use super::Ring;

/// Size of the large read ring: a message up to the default 1 MiB limit fits whole, so it
/// arrives in one read when the peer has sent it all, and is delivered from the ring with no
/// copy. One per reactor; only the pages a read fills are ever touched, and the ring empties
/// (its head snapping back to 0) after every read (docs/architecture.md "Memory").
pub const LARGE_READ: usize = 2 * 1024 * 1024;

/// A free list of equally sized rings, and one large ring for reading.
#[derive(Debug)]
pub struct BufPool {
    size: usize,
    max_free: usize,
    /// The large read ring when no connection holds it (allocated on first use).
    large: Option<Box<Ring>>,
    /// The large ring is lent out (to an rx side, or to a tx queue writing an echo from it).
    large_out: bool,
    // Boxed on purpose: a connection holds its ring as one pointer, and lending a pooled
    // ring out must move that pointer, not the ring.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Ring>>,
    lent: usize,
}

impl BufPool {
    /// A pool of rings of `size` bytes (a power of two) that keeps at most `max_free` idle.
    pub fn new(size: usize, max_free: usize) -> BufPool {
        BufPool {
            size: size.next_power_of_two(),
            max_free,
            free: Vec::new(),
            large: None,
            large_out: false,
            lent: 0,
        }
    }

    /// Capacity of the large read ring (`LARGE_READ`, or the ring size if that is larger).
    pub fn large_size(&self) -> usize {
        LARGE_READ.max(self.size)
    }

    /// Lend the large read ring, empty; give it back with `give` once the read's bytes are
    /// processed (or, when the tx side took it for an echo, once that is written). `None`
    /// while it is out: the caller reads into an ordinary ring instead. A second 2 MiB ring
    /// would cost more (zeroing, page faults) than the copies it saves.
    pub fn take_large(&mut self) -> Option<Box<Ring>> {
        if self.large_out {
            return None;
        }
        self.large_out = true;
        self.lent += 1;
        let size = self.large_size();
        Some(
            self.large
                .take()
                .unwrap_or_else(|| Box::new(Ring::with_capacity(size))),
        )
    }

    /// The capacity of the rings this pool lends.
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    /// Lend an empty ring. Rings travel boxed so a connection's handle is one pointer.
    pub fn take(&mut self) -> Box<Ring> {
        self.lent += 1;
        self.free
            .pop()
            .unwrap_or_else(|| Box::new(Ring::with_capacity(self.size)))
    }

    /// Take a ring back. A ring that grew past the pool size, or one beyond `max_free`, is
    /// freed instead so a burst does not pin memory forever.
    pub fn give(&mut self, mut ring: Box<Ring>) {
        self.lent = self.lent.saturating_sub(1);
        ring.consume(ring.len());
        if ring.capacity() == self.size && self.free.len() < self.max_free {
            self.free.push(ring);
        } else if ring.capacity() == self.large_size() && self.large.is_none() {
            self.large = Some(ring);
            self.large_out = false;
        }
    }

    /// Rings currently lent to connections (a gauge for metrics and leak tests).
    pub fn lent(&self) -> usize {
        self.lent
    }

    /// Rings waiting in the free list.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds_the_free_list() {
        let mut p = BufPool::new(1000, 1);
        assert_eq!(p.buffer_size(), 1024);
        let a = p.take();
        let b = p.take();
        assert_eq!(p.lent(), 2);
        p.give(a);
        p.give(b);
        assert_eq!(p.idle(), 1, "max_free bounds the free list");
        let mut c = p.take();
        c.grow(4096);
        p.give(c);
        assert_eq!(p.idle(), 0, "a grown ring is freed, not pooled");
        assert_eq!(p.lent(), 0);
    }

    #[test]
    fn one_large_ring_is_kept() {
        let mut p = BufPool::new(1024, 4);
        let a = p.take_large().expect("made on first use");
        assert_eq!(a.capacity(), LARGE_READ);
        assert!(
            p.take_large().is_none(),
            "the first is still out: no second"
        );
        assert_eq!(p.lent(), 1);
        let a_ptr: *const Ring = &*a;
        p.give(a);
        assert_eq!(p.idle(), 0, "large rings never join the small free list");
        assert_eq!(p.lent(), 0);
        assert_eq!(
            &*p.take_large().expect("back") as *const Ring,
            a_ptr,
            "the kept one is reused"
        );
    }
}
