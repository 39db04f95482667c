//! Owns `Ring`: a power-of-two circular byte buffer with two-slice views, so a socket can be
//! read into and written from without copying (one slice, or readv/writev across the wrap) and
//! a frame can be decoded in place. It never touches a socket; callers hand its slices to the kernel.
//! Must not: allocate after construction, touch a socket, or interpret the bytes it holds.

/// A circular byte buffer. Filled bytes start at `head` and run `len` bytes, wrapping at the
/// end of `buf`.
///
/// When the ring empties, `head` snaps back to 0, so the common case (a request or frame that
/// arrives whole into an empty ring) is contiguous and never wraps.
#[derive(Debug)]
pub struct Ring {
    buf: Box<[u8]>,
    head: u32, // index of the first filled byte
    len: u32,  // number of filled bytes
}

impl Ring {
    /// A ring of `capacity` bytes, rounded up to a power of two (at most 2 GiB).
    pub fn with_capacity(capacity: usize) -> Ring {
        let cap = capacity.max(16).next_power_of_two();
        assert!(cap <= 1 << 31, "bug: ring capacity over 2 GiB");
        Ring {
            buf: vec![0u8; cap].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// The addresses of the storage's start and of the end of the filled bytes, when those do
    /// not wrap: how the tx side recognises a payload that still lies in the rx ring it was
    /// read into, and how much was read behind it (`Outbox::frame_rsv`). Compared, never
    /// dereferenced.
    pub fn filled_addrs(&self) -> Option<(usize, usize)> {
        let start = self.buf.as_ptr() as usize;
        let end = self.head as usize + self.len();
        (end <= self.capacity()).then_some((start, start + end))
    }

    /// Storage bytes by absolute position, whatever `head` and `len` say: consumed bytes stay
    /// in place until the ring is written again, which is what lets a read ring handed to the
    /// tx side send an echoed payload from where it was read (`TxQueue::push_rx`).
    pub fn stored(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Bytes that can still be written.
    pub fn free(&self) -> usize {
        self.capacity() - self.len()
    }

    fn mask(&self) -> usize {
        self.capacity() - 1
    }

    /// The filled bytes, oldest first, as two slices (the second is empty unless they wrap).
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        let (head, len, cap) = (self.head as usize, self.len(), self.capacity());
        if head + len <= cap {
            (&self.buf[head..head + len], &[])
        } else {
            let (wrapped, first) = self.buf.split_at(head);
            (first, &wrapped[..head + len - cap])
        }
    }

    /// The free space, in write order, as two slices: hand both to `readv`.
    pub fn free_slices_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        let cap = self.capacity();
        let tail = (self.head as usize + self.len()) & self.mask();
        let free = self.free();
        if free == 0 {
            return (&mut [], &mut []);
        }
        if tail + free <= cap {
            (&mut self.buf[tail..tail + free], &mut [])
        } else {
            let (front, back) = self.buf.split_at_mut(tail);
            (back, &mut front[..tail + free - cap])
        }
    }

    /// Mark `n` bytes written into the free space (after a read into `free_slices_mut`).
    pub fn commit(&mut self, n: usize) {
        assert!(n <= self.free(), "bug: commit past the free space");
        self.len += n as u32;
    }

    /// Drop `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len(), "bug: consume past the filled bytes");
        self.len -= n as u32;
        self.head = if self.len == 0 {
            0
        } else {
            ((self.head as usize + n) & self.mask()) as u32
        };
    }

    /// Remove `n` bytes from the front and lend them out, mutably, as two slices. The bytes
    /// stay valid until the ring is next borrowed, which is what lets the decoder unmask a
    /// payload in place and hand it to the application without a copy.
    pub fn take(&mut self, n: usize) -> (&mut [u8], &mut [u8]) {
        assert!(n <= self.len(), "bug: take past the filled bytes");
        let (head, cap) = (self.head as usize, self.capacity());
        self.len -= n as u32;
        // An emptied ring restarts at 0; the lent bytes are still in place until then.
        self.head = if self.len == 0 {
            0
        } else {
            ((head + n) & self.mask()) as u32
        };
        if head + n <= cap {
            (&mut self.buf[head..head + n], &mut [])
        } else {
            let (front, back) = self.buf.split_at_mut(head);
            (back, &mut front[..head + n - cap])
        }
    }

    /// Copy up to `dst.len()` bytes from the front without consuming them; returns the count.
    pub fn peek_into(&self, dst: &mut [u8]) -> usize {
        let (a, b) = self.as_slices();
        let n1 = a.len().min(dst.len());
        dst[..n1].copy_from_slice(&a[..n1]);
        let n2 = b.len().min(dst.len() - n1);
        dst[n1..n1 + n2].copy_from_slice(&b[..n2]);
        n1 + n2
    }

    /// Append `data`; the caller must have checked `free() >= data.len()`.
    pub fn push(&mut self, data: &[u8]) {
        assert!(data.len() <= self.free(), "bug: push past the free space");
        let (a, b) = self.free_slices_mut();
        let n1 = a.len().min(data.len());
        a[..n1].copy_from_slice(&data[..n1]);
        // Most pushes do not wrap: no second `memcpy` call for nothing (a frame is pushed as
        // header and payload, so that is two calls per small message).
        if n1 < data.len() {
            b[..data.len() - n1].copy_from_slice(&data[n1..]);
        }
        self.len += data.len() as u32;
    }

    /// Append `prefix[..n]` then `data`; the caller must have checked `free() >= n +
    /// data.len()`. When the free space after the tail takes the whole prefix array and the
    /// data, the prefix is copied as its fixed-size array (plain moves, no `memcpy` call; the
    /// bytes past `n` are overwritten by `data` or left in the free space) — a frame header
    /// and its small payload in one pass.
    #[inline]
    pub fn push_prefixed<const K: usize>(&mut self, prefix: &[u8; K], n: usize, data: &[u8]) {
        let total = n + data.len();
        assert!(
            n <= K && total <= self.free(),
            "bug: push past the free space"
        );
        let (a, _) = self.free_slices_mut();
        if a.len() >= K.max(total) {
            a[..K].copy_from_slice(prefix);
            a[n..total].copy_from_slice(data);
            self.len += total as u32;
        } else {
            self.push(&prefix[..n]);
            self.push(data);
        }
    }

    /// Remove `n` bytes from the back (the most recently pushed), e.g. to replace a queued
    /// pong that has not been sent yet.
    pub fn truncate_back(&mut self, n: usize) {
        assert!(n <= self.len(), "bug: truncate past the filled bytes");
        self.len -= n as u32;
        if self.len == 0 {
            self.head = 0;
        }
    }

    /// Rotate the filled bytes to the start of the buffer and return them as one slice.
    /// Rare (a request head that wrapped); O(capacity).
    pub fn make_contiguous(&mut self) -> &mut [u8] {
        let (head, len) = (self.head as usize, self.len());
        if head + len > self.capacity() || head != 0 {
            self.buf.rotate_left(head);
            self.head = 0;
        }
        &mut self.buf[..len]
    }

    /// Empty the ring and start the next write at `head`, so a test can place data across
    /// the wrap at every offset.
    pub fn clear_at(&mut self, head: usize) {
        self.len = 0;
        self.head = (head & self.mask()) as u32;
    }

    /// Grow to at least `min_capacity` (a power of two), keeping the contents in order.
    pub fn grow(&mut self, min_capacity: usize) {
        if min_capacity <= self.capacity() {
            return;
        }
        let mut bigger = Ring::with_capacity(min_capacity);
        let (a, b) = self.as_slices();
        bigger.push(a);
        bigger.push(b);
        *self = bigger;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(r: &Ring) -> Vec<u8> {
        let (a, b) = r.as_slices();
        [a, b].concat()
    }

    #[test]
    fn push_take_wraps_and_keeps_order() {
        let mut r = Ring::with_capacity(16);
        let data: Vec<u8> = (0..13).collect();
        for start in 0..16 {
            r.clear_at(start);
            r.push(&data);
            assert_eq!(contents(&r), data, "start {start}");
            assert_eq!(r.as_slices().1.is_empty(), start + 13 <= 16);
            let (a, b) = r.take(13);
            assert_eq!([&a[..], &b[..]].concat(), data, "start {start}");
            assert!(r.is_empty());
        }
    }

    #[test]
    fn push_prefixed_is_prefix_then_data_wherever_the_tail_is() {
        // A 4-byte prefix array of which 2 bytes count, then 5 bytes, with the tail anywhere
        // (the fast path needs 7 contiguous free bytes; near the end of the buffer the
        // fallback's copies wrap), and with bytes already queued before it.
        let prefix = [0xA1, 0xA2, 0xEE, 0xEE];
        let data = [1, 2, 3, 4, 5];
        for queued in [0usize, 3] {
            for start in 0..16 {
                let mut r = Ring::with_capacity(16);
                r.clear_at(start);
                r.push(&vec![9; queued]);
                r.push_prefixed(&prefix, 2, &data);
                let mut want = vec![9; queued];
                want.extend_from_slice(&[0xA1, 0xA2, 1, 2, 3, 4, 5]);
                assert_eq!(contents(&r), want, "start {start} queued {queued}");
                assert_eq!(r.len(), queued + 7);
            }
        }
        // Exactly full after the push: the fast path may not write the prefix array's unused
        // bytes past the free space, so it falls back to two copies.
        let mut r = Ring::with_capacity(16);
        r.push(&[9; 9]);
        r.push_prefixed(&prefix, 2, &data);
        assert!(r.is_full());
        assert_eq!(&contents(&r)[9..], &[0xA1, 0xA2, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn free_slices_cover_exactly_the_free_space() {
        let mut r = Ring::with_capacity(16);
        r.clear_at(7);
        r.push(&[0; 3]);
        let (a, b) = r.free_slices_mut();
        assert_eq!(a.len() + b.len(), 13);
        a.fill(1);
        b.fill(2);
        r.commit(13);
        assert!(r.is_full());
        let c = contents(&r);
        assert_eq!(&c[..3], &[0, 0, 0]);
        assert!(c[3..].iter().all(|&x| x == 1 || x == 2));
    }

    #[test]
    fn empty_ring_restarts_at_zero() {
        let mut r = Ring::with_capacity(16);
        r.push(&[1, 2, 3]);
        r.consume(3);
        r.push(&[9; 16]);
        assert!(
            r.as_slices().1.is_empty(),
            "a full fresh write must not wrap"
        );
    }

    #[test]
    fn make_contiguous_and_grow_preserve_contents() {
        let mut r = Ring::with_capacity(16);
        r.clear_at(11);
        r.push(&(1..=10).collect::<Vec<u8>>());
        let before = contents(&r);
        assert!(!r.as_slices().1.is_empty(), "test setup: must wrap");
        assert_eq!(r.make_contiguous().to_vec(), before);
        r.consume(5);
        r.push(&[7; 8]);
        let before = contents(&r);
        r.grow(100);
        assert_eq!(r.capacity(), 128);
        assert_eq!(contents(&r), before);
    }

    #[test]
    fn peek_and_truncate_back() {
        let mut r = Ring::with_capacity(16);
        r.clear_at(14);
        r.push(&[1, 2, 3, 4, 5]);
        let mut d = [0u8; 3];
        assert_eq!(r.peek_into(&mut d), 3);
        assert_eq!(d, [1, 2, 3]);
        r.truncate_back(2);
        assert_eq!(contents(&r), vec![1, 2, 3]);
    }
}
