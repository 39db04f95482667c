//! Owns `Bits`: one byte of named flags, for state that must stay one byte — a connection's
//! small fields fill one word, and the reactor's slab slot is what an idle connection costs.
//! Must not: grow past a byte.

/// A set of up to eight flags, each a `u8` constant with one bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bits(u8);

impl Bits {
    pub const fn new(bits: u8) -> Bits {
        Bits(bits)
    }

    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    pub fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bits;

    #[test]
    fn flags_are_set_and_cleared_one_at_a_time() {
        let mut b = Bits::new(1);
        b.set(4, true);
        assert!(b.has(1) && b.has(4) && !b.has(2));
        b.set(1, false);
        assert!(!b.has(1) && b.has(4));
        assert_eq!(std::mem::size_of::<Bits>(), 1);
    }
}
