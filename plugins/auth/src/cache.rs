//! Verified tokens, kept per instance by the SHA-256 of the token until they
//! expire, so a client that sends the same token again costs a hash instead
//! of a signature check.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::identity::Identity;

/// Token hash → identity and the Unix second it stops being valid.
type Entries = HashMap<[u8; 32], (Rc<Identity>, u64)>;

/// A bounded map from token hash to identity and expiry.
pub struct TokenCache {
    capacity: usize,
    entries: RefCell<Entries>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0: caches nothing).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            entries: RefCell::new(HashMap::new()),
        }
    }

    /// The key of a token.
    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The identity of a token seen before that is still valid at `now`.
    pub fn get(&self, key: &[u8; 32], now: u64) -> Option<Rc<Identity>> {
        let mut entries = self.entries.borrow_mut();
        match entries.get(key) {
            Some((identity, until)) if *until > now => Some(identity.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps a verified token until `until` (Unix seconds). When full, the
    /// expired entries go first, then an arbitrary one.
    pub fn insert(&self, key: [u8; 32], identity: Rc<Identity>, until: u64, now: u64) {
        if self.capacity == 0 || until <= now {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, at)| *at > now);
        }
        if entries.len() >= self.capacity
            && let Some(victim) = entries.keys().next().copied()
        {
            entries.remove(&victim);
        }
        entries.insert(key, (identity, until));
    }

    /// How many tokens are cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Method;

    fn identity() -> Rc<Identity> {
        Rc::new(Identity {
            subject: "s".into(),
            method: Method::Jwt,
            key_id: None,
            scopes: vec![],
            claims: Default::default(),
        })
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let cache = TokenCache::new(2);
        let (a, b, c) = (
            TokenCache::key("a"),
            TokenCache::key("b"),
            TokenCache::key("c"),
        );
        cache.insert(a, identity(), 100, 10);
        assert!(cache.get(&a, 99).is_some());
        assert!(cache.get(&a, 100).is_none(), "expired at `until`");
        cache.insert(a, identity(), 100, 10);
        cache.insert(b, identity(), 100, 10);
        cache.insert(c, identity(), 100, 10);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&c, 10).is_some());
        let none = TokenCache::new(0);
        none.insert(a, identity(), 100, 10);
        assert!(none.get(&a, 10).is_none());
    }
}
