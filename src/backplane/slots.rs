//! Owns Redis Cluster's key space as the backplane sees it, sans-IO: the hash slot of a key
//! (CRC16/XMODEM of its hash tag, modulo 16384 — the Redis Cluster specification, "Keys
//! distribution model" and "Hash tags"), the `MOVED`/`ASK` redirections a node answers with,
//! and the slot map `CLUSTER SLOTS` describes (which master serves which slots).
//! Must not: resolve a host name (the loop never blocks) or trust a slot number Redis sends
//! without bounds-checking it.

use std::net::SocketAddr;

/// Slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

/// The slot of `key`: the CRC16 of its hash tag (the bytes between the first `{` and the
/// first `}` after it, when that is not empty) or of the whole key.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), bitwise: a few hundred nanoseconds per
/// publish is not worth a 512-byte table in the binary.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A node's answer that a key's slot is served elsewhere: `MOVED SLOT ADDR` (for good: the
/// map is stale) or `ASK SLOT ADDR` (for this one command, during a slot migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirect {
    pub ask: bool,
    pub slot: u16,
    pub addr: SocketAddr,
}

impl Redirect {
    /// The redirection an error text names, if it is one with an address (a host name in
    /// it, which would need resolving, is not).
    pub fn parse(error: &str) -> Option<Redirect> {
        let mut words = error.split(' ');
        let ask = match words.next()? {
            "MOVED" => false,
            "ASK" => true,
            _ => return None,
        };
        let slot: u16 = words
            .next()?
            .parse()
            .ok()
            .filter(|&s| (s as usize) < SLOTS)?;
        let addr = words.next()?.parse().ok()?;
        Some(Redirect { ask, slot, addr })
    }
}

/// One range of `CLUSTER SLOTS`: the slots `first..=last` and the address of their master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRange {
    pub first: u16,
    pub last: u16,
    pub master: SocketAddr,
}

/// Which master serves each slot: indexes into `masters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    pub masters: Vec<SocketAddr>,
    owner: Box<[u16]>,
}

/// `owner` of a slot no master serves.
const NOBODY: u16 = u16::MAX;

impl SlotMap {
    /// The map `ranges` describe (ranges out of bounds are skipped; masters in first-seen
    /// order, so the same answer gives the same indexes).
    pub fn new(ranges: &[SlotRange]) -> SlotMap {
        let mut masters: Vec<SocketAddr> = Vec::new();
        let mut owner = vec![NOBODY; SLOTS].into_boxed_slice();
        for r in ranges {
            if r.first > r.last || r.last as usize >= SLOTS {
                continue;
            }
            let i = match masters.iter().position(|&m| m == r.master) {
                Some(i) => i,
                None => {
                    masters.push(r.master);
                    masters.len() - 1
                }
            };
            owner[r.first as usize..=r.last as usize].fill(i as u16);
        }
        SlotMap { masters, owner }
    }

    /// The master serving `slot`, if one does.
    pub fn master(&self, slot: u16) -> Option<SocketAddr> {
        match self.owner.get(slot as usize) {
            Some(&i) if i != NOBODY => self.masters.get(i as usize).copied(),
            _ => None,
        }
    }

    /// Does every slot have a master?
    pub fn covers_all(&self) -> bool {
        !self.owner.contains(&NOBODY)
    }

    /// Note a `MOVED`: `slot` is served by `addr` now (until the next full map).
    pub fn moved(&mut self, slot: u16, addr: SocketAddr) {
        let i = match self.masters.iter().position(|&m| m == addr) {
            Some(i) => i,
            None => {
                self.masters.push(addr);
                self.masters.len() - 1
            }
        };
        if let Some(o) = self.owner.get_mut(slot as usize) {
            *o = i as u16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // The specification's check value, and what `CLUSTER KEYSLOT` answers (Redis 7.0).
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"wsloop:{news}:meta"), 5161);
        assert_eq!(key_slot(b"wsloop:{news}:log"), 5161);
        assert_eq!(key_slot(b"wsloop:{news}"), 5161);
        assert_eq!(key_slot(b"news"), 5161);
        assert_eq!(key_slot(b"foo"), 12182);
        // An empty tag hashes the whole key; only the first `{`…`}` counts.
        assert_eq!(key_slot(b"a{}b"), crc16(b"a{}b") % 16384);
        assert_eq!(key_slot(b"x{news}{other}"), 5161);
        assert_eq!(key_slot(b"x{news"), crc16(b"x{news") % 16384);
    }

    #[test]
    fn redirects_parse_and_junk_does_not() {
        let r = Redirect::parse("MOVED 5161 127.0.0.1:7101").unwrap();
        assert_eq!((r.ask, r.slot, r.addr.port()), (false, 5161, 7101));
        assert!(Redirect::parse("ASK 1 127.0.0.1:7102").unwrap().ask);
        for junk in [
            "MOVED",
            "MOVED 16384 127.0.0.1:1",
            "MOVED x 127.0.0.1:1",
            "MOVED 1 redis-a:7000",
            "ERR MOVED 1 127.0.0.1:1",
        ] {
            assert_eq!(Redirect::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_map_answers_the_master_of_every_slot() {
        let a: SocketAddr = "127.0.0.1:7101".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:7102".parse().unwrap();
        let mut m = SlotMap::new(&[
            SlotRange {
                first: 0,
                last: 8191,
                master: a,
            },
            SlotRange {
                first: 8192,
                last: 16383,
                master: b,
            },
            SlotRange {
                first: 9,
                last: 20_000,
                master: b,
            },
        ]);
        assert!(m.covers_all());
        assert_eq!(
            (m.master(0), m.master(8191), m.master(8192)),
            (Some(a), Some(a), Some(b))
        );
        assert_eq!(m.master(16384), None);
        m.moved(5, b);
        assert_eq!(m.master(5), Some(b));
        assert!(!SlotMap::new(&[]).covers_all());
    }
}
