//! Owns `BufPool`: the per-reactor free list of rings. Connections take a ring when bytes
//! arrive or must be sent and give it back the moment it drains, so memory follows activity,
//! not the connection count (DESIGN §3). Single-threaded by construction; no locks.

use super::Ring;

/// A free list of equally sized rings.
#[derive(Debug)]
pub struct BufPool {
    size: usize,
    max_free: usize,
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
            lent: 0,
        }
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
        if ring.capacity() == self.size && self.free.len() < self.max_free {
            ring.consume(ring.len());
            self.free.push(ring);
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
}
