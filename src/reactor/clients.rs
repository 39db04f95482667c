//! Owns the process-wide count of open connections per client address, which enforces
//! `--max-connections-per-ip`. Workers share one listening port (SO_REUSEPORT), so one
//! client's connections land on every worker and only a shared count can cap them.
//! Must not: be touched per message, or let two addresses share a count.
//!
//! One `Mutex` over a map, not sharded atomics: it is taken only when a connection is
//! accepted or freed (and, behind a trusted proxy, when a request names its client) — never
//! per message — and held for one hash lookup, so even a high accept rate keeps it free
//! almost all the time and contention between workers is negligible; a fixed
//! array of atomic counters indexed by a hash would avoid the lock but let two addresses
//! that collide share a cap, which a per-client limit must not do.
//!
//! A connection keeps a 4-byte `ClientId` (its slot here) in its slab entry rather than the
//! 17-byte `IpAddr`, to stay inside the entry's size budget (docs/architecture.md §9).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;

/// A connection's claim on its client address's count; give it back with `release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientId(NonZeroU32);

impl ClientId {
    fn slot(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// The client already has the most connections allowed.
#[derive(Debug, PartialEq, Eq)]
pub struct OverLimit;

/// Open connections per client address, over all workers.
pub struct Clients {
    /// Most connections per address; 0 = no cap.
    limit: u32,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    by_ip: HashMap<IpAddr, ClientId>,
    /// Unused slots, reused before the vector grows.
    free: Vec<ClientId>,
}

#[derive(Clone, Copy)]
struct Slot {
    ip: IpAddr,
    open: u32,
}

impl Clients {
    pub fn new(limit: usize) -> Clients {
        Clients {
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A worker that panicked while holding the lock left the counts consistent (every
        // update is a single step), so the data is still good.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one more connection of `ip`. `capped` = false counts it without checking the
    /// cap (trusted addresses).
    pub fn acquire(&self, ip: IpAddr, capped: bool) -> Result<ClientId, OverLimit> {
        let mut t = self.lock();
        if let Some(&id) = t.by_ip.get(&ip) {
            let slot = &mut t.slots[id.slot()];
            if capped && self.limit > 0 && slot.open >= self.limit {
                return Err(OverLimit);
            }
            slot.open += 1;
            return Ok(id);
        }
        let slot = Slot { ip, open: 1 };
        let id = match t.free.pop() {
            Some(id) => {
                t.slots[id.slot()] = slot;
                id
            }
            None => {
                t.slots.push(slot);
                let n = u32::try_from(t.slots.len()).expect("more client slots than u32");
                ClientId(NonZeroU32::new(n).expect("slots.len() >= 1"))
            }
        };
        t.by_ip.insert(ip, id);
        Ok(id)
    }

    /// The connection holding `id` closed (or stopped counting for that client).
    pub fn release(&self, id: ClientId) {
        let mut t = self.lock();
        let slot = &mut t.slots[id.slot()];
        debug_assert!(
            slot.open > 0,
            "client slot released more often than acquired"
        );
        slot.open = slot.open.saturating_sub(1);
        if slot.open == 0 {
            let ip = slot.ip;
            t.by_ip.remove(&ip);
            t.free.push(id);
        }
    }

    /// Move a connection's count to `ip` (a request behind a trusted proxy named its client):
    /// keeps `id` when it already counts for `ip`; otherwise counts `ip` (capped) and only
    /// then gives up the old count, so a refused move leaves `id` as it was.
    pub fn rebind(&self, id: Option<ClientId>, ip: IpAddr) -> Result<ClientId, OverLimit> {
        if let Some(id) = id {
            if self.lock().slots[id.slot()].ip == ip {
                return Ok(id);
            }
        }
        let new = self.acquire(ip, true)?;
        if let Some(old) = id {
            self.release(old);
        }
        Ok(new)
    }

    /// The address `id` counts for (for log lines).
    pub fn ip(&self, id: ClientId) -> IpAddr {
        self.lock().slots[id.slot()].ip
    }

    /// Open connections of `ip`.
    #[cfg(test)]
    pub fn open(&self, ip: IpAddr) -> u32 {
        let t = self.lock();
        t.by_ip.get(&ip).map_or(0, |id| t.slots[id.slot()].open)
    }

    /// Distinct addresses with at least one counted connection.
    pub fn addresses(&self) -> usize {
        self.lock().by_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_cap_applies_per_address_and_frees_on_release() {
        let c = Clients::new(2);
        let a1 = c.acquire(ip("192.0.2.1"), true).unwrap();
        let a2 = c.acquire(ip("192.0.2.1"), true).unwrap();
        assert_eq!(a1, a2);
        assert_eq!(c.acquire(ip("192.0.2.1"), true), Err(OverLimit));
        // Another address is not affected.
        let b = c.acquire(ip("2001:db8::1"), true).unwrap();
        assert_ne!(a1, b);
        assert_eq!(c.open(ip("192.0.2.1")), 2);
        assert_eq!(c.addresses(), 2);
        c.release(a1);
        let a3 = c.acquire(ip("192.0.2.1"), true).unwrap();
        assert_eq!(c.ip(a3), ip("192.0.2.1"));
        assert_eq!(c.open(ip("192.0.2.1")), 2);
    }

    #[test]
    fn uncapped_claims_are_counted_but_never_refused() {
        let c = Clients::new(1);
        for _ in 0..5 {
            c.acquire(ip("127.0.0.1"), false).unwrap();
        }
        assert_eq!(c.open(ip("127.0.0.1")), 5);
        assert_eq!(c.acquire(ip("127.0.0.1"), true), Err(OverLimit));
    }

    #[test]
    fn zero_means_no_cap() {
        let c = Clients::new(0);
        for _ in 0..1000 {
            c.acquire(ip("192.0.2.1"), true).unwrap();
        }
        assert_eq!(c.open(ip("192.0.2.1")), 1000);
    }

    #[test]
    fn slots_are_reused_once_an_address_has_no_connection() {
        let c = Clients::new(0);
        let a = c.acquire(ip("192.0.2.1"), true).unwrap();
        c.release(a);
        assert_eq!(c.addresses(), 0);
        assert_eq!(c.open(ip("192.0.2.1")), 0);
        let b = c.acquire(ip("192.0.2.2"), true).unwrap();
        assert_eq!(a, b, "the freed slot serves the next address");
        assert_eq!(c.ip(b), ip("192.0.2.2"));
    }

    #[test]
    fn rebind_moves_a_count_and_a_refused_move_changes_nothing() {
        let c = Clients::new(1);
        let x = c.rebind(None, ip("198.51.100.1")).unwrap();
        assert_eq!(c.rebind(Some(x), ip("198.51.100.1")), Ok(x));
        assert_eq!(c.open(ip("198.51.100.1")), 1);
        let y = c.rebind(Some(x), ip("198.51.100.2")).unwrap();
        assert_eq!(c.open(ip("198.51.100.1")), 0);
        assert_eq!(c.open(ip("198.51.100.2")), 1);
        let z = c.acquire(ip("198.51.100.1"), true).unwrap();
        assert_eq!(c.rebind(Some(y), ip("198.51.100.1")), Err(OverLimit));
        assert_eq!(c.open(ip("198.51.100.2")), 1);
        c.release(z);
        c.release(y);
        assert_eq!(c.addresses(), 0);
    }
}
