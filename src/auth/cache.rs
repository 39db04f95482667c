//! Owns the verified-token cache of one reactor: a token that verified once is known by its
//! SHA-256 until its `exp`, so a reconnect storm with the same tokens costs a hash each, not a
//! signature check (an RSA or ECDSA verification is far dearer; docs/benchmarks.md). Only the
//! signature, audience and issuer are remembered: time claims are checked on every use.
//! Bounded by `--token-cache` entries; no lock (one per worker).

use std::collections::HashMap;
use std::rc::Rc;

use ring::digest::{digest, SHA256};

use super::verify::Grant;

/// Verified tokens by the SHA-256 of their bytes. A collision-resistant hash, because a hit
/// skips the signature check: a hash that could be collided would let a forged token in.
#[derive(Debug, Default)]
pub struct TokenCache {
    by_hash: HashMap<[u8; 32], Rc<Grant>>,
    capacity: usize,
}

impl TokenCache {
    /// A cache of at most `capacity` grants (0: nothing is cached).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            by_hash: HashMap::new(),
            capacity,
        }
    }

    /// The key of `token`.
    pub fn key(token: &str) -> [u8; 32] {
        Self::key_of(token.as_bytes())
    }

    /// The SHA-256 of `bytes`.
    pub fn key_of(bytes: &[u8]) -> [u8; 32] {
        let d = digest(&SHA256, bytes);
        d.as_ref().try_into().expect("SHA-256 is 32 bytes")
    }

    /// The grant `token` verified to before (its time claims still to be checked).
    pub fn get(&self, key: &[u8; 32]) -> Option<Rc<Grant>> {
        self.by_hash.get(key).cloned()
    }

    /// Remember a verified grant. When full, the expired entries go first; when none has,
    /// everything does (one rebuild per `capacity` new tokens keeps the cost per token O(1)).
    pub fn insert(&mut self, key: [u8; 32], grant: Rc<Grant>, now: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.by_hash.len() >= self.capacity {
            self.by_hash.retain(|_, g| g.exp > now);
            if self.by_hash.len() >= self.capacity {
                self.by_hash.clear();
            }
        }
        self.by_hash.insert(key, grant);
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}
