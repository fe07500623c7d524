//! State that every instance of a plugin and every worker thread shares:
//! atomic counters, token buckets and small values, each with expiry.
//!
//! One store per process, split into shards by key hash so that unrelated
//! keys do not contend. Every operation holds one shard lock for a few
//! instructions, which is what makes a rate limit exact across threads.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// Most keys the store holds; beyond it, writes of new keys fail.
pub const MAX_KEYS: usize = 1_000_000;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most value bytes the store holds in all; without it, [`MAX_KEYS`]
/// values of [`MAX_VALUE_BYTES`] would be 64 GiB.
pub const MAX_TOTAL_VALUE_BYTES: usize = 256 << 20;

/// Why a shared-state operation was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SharedStateError {
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("key longer than {MAX_KEY_BYTES} bytes")]
    KeyTooLong,
    /// The value is larger than [`MAX_VALUE_BYTES`].
    #[error("value larger than {MAX_VALUE_BYTES} bytes")]
    ValueTooLarge,
    /// The store holds [`MAX_KEYS`] keys already.
    #[error("shared state is full ({MAX_KEYS} keys)")]
    Full,
    /// The store holds [`MAX_TOTAL_VALUE_BYTES`] of values already.
    #[error("shared state is full ({MAX_TOTAL_VALUE_BYTES} bytes of values)")]
    NoSpace,
    /// The key holds another kind of entry.
    #[error("key holds a {0}, not a {1}")]
    WrongKind(&'static str, &'static str),
    /// Rate, burst or cost out of range.
    #[error("invalid bucket parameters: {0}")]
    InvalidBucket(&'static str),
}

/// The outcome of [`SharedState::take_tokens`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenDecision {
    /// Whether the tokens were taken.
    pub allowed: bool,
    /// Whole tokens left.
    pub remaining: u64,
    /// When refused: time until enough tokens are back.
    pub retry_after: Duration,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

enum Entry {
    Counter {
        value: i64,
        expires: Option<Instant>,
    },
    Bucket {
        tokens: f64,
        updated: Instant,
        full_at: Instant,
    },
    Value {
        bytes: Vec<u8>,
        expires: Option<Instant>,
    },
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Counter { .. } => "counter",
            Entry::Bucket { .. } => "token bucket",
            Entry::Value { .. } => "value",
        }
    }

    /// Bytes of value data the entry holds.
    fn value_bytes(&self) -> usize {
        match self {
            Entry::Value { bytes, .. } => bytes.len(),
            _ => 0,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        match self {
            Entry::Counter { expires, .. } | Entry::Value { expires, .. } => {
                expires.is_some_and(|at| at <= now)
            }
            // A bucket that has refilled is the same as a missing one.
            Entry::Bucket { full_at, .. } => *full_at <= now,
        }
    }
}

/// The process-wide shared state.
pub struct SharedState {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    hasher: RandomState,
    len: std::sync::atomic::AtomicUsize,
    value_bytes: std::sync::atomic::AtomicUsize,
}

impl Default for SharedState {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            len: 0.into(),
            value_bytes: 0.into(),
        }
    }
}

fn ttl_deadline(now: Instant, ttl_ms: u64) -> Option<Instant> {
    (ttl_ms > 0).then(|| now + Duration::from_millis(ttl_ms))
}

impl SharedState {
    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A panic while holding a shard lock cannot leave an entry half
        // written (every update is a single assignment), so poison is benign.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn check_key(key: &str) -> Result<(), SharedStateError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(SharedStateError::KeyTooLong);
        }
        Ok(())
    }

    /// Makes room for one new key, or says the store is full.
    fn admit_new_key(&self) -> Result<(), SharedStateError> {
        use std::sync::atomic::Ordering;
        let mut current = self.len.load(Ordering::Relaxed);
        loop {
            if current >= MAX_KEYS {
                return Err(SharedStateError::Full);
            }
            match self.len.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    fn forget_key(&self) {
        self.len.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reserves `bytes` of value space, or says the store has none left.
    fn admit_value_bytes(&self, bytes: usize) -> Result<(), SharedStateError> {
        use std::sync::atomic::Ordering;
        let mut current = self.value_bytes.load(Ordering::Relaxed);
        loop {
            if current.saturating_add(bytes) > MAX_TOTAL_VALUE_BYTES {
                return Err(SharedStateError::NoSpace);
            }
            match self.value_bytes.compare_exchange_weak(
                current,
                current + bytes,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    fn release_value_bytes(&self, bytes: usize) {
        if bytes > 0 {
            self.value_bytes
                .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Adds `delta` to a counter and returns the new value. A new counter
    /// expires `ttl_ms` after its creation (0: never).
    pub fn counter_add(&self, key: &str, delta: i64, ttl_ms: u64) -> Result<i64, SharedStateError> {
        Self::check_key(key)?;
        let now = Instant::now();
        let mut shard = self.shard(key);
        match shard.get_mut(key) {
            Some(entry) if !entry.expired(now) => match entry {
                Entry::Counter { value, .. } => {
                    *value = value.saturating_add(delta);
                    Ok(*value)
                }
                other => Err(SharedStateError::WrongKind(other.kind(), "counter")),
            },
            Some(entry) => {
                self.release_value_bytes(entry.value_bytes());
                *entry = Entry::Counter {
                    value: delta,
                    expires: ttl_deadline(now, ttl_ms),
                };
                Ok(delta)
            }
            None => {
                self.admit_new_key()?;
                shard.insert(
                    key.to_owned(),
                    Entry::Counter {
                        value: delta,
                        expires: ttl_deadline(now, ttl_ms),
                    },
                );
                Ok(delta)
            }
        }
    }

    /// The value of a live counter.
    pub fn counter_get(&self, key: &str) -> Option<i64> {
        let now = Instant::now();
        match self.shard(key).get(key) {
            Some(Entry::Counter { value, expires }) if !expires.is_some_and(|at| at <= now) => {
                Some(*value)
            }
            _ => None,
        }
    }

    /// Takes `cost` tokens from a bucket of size `burst` that refills at
    /// `rate_per_second`. A new (or forgotten) bucket starts full.
    pub fn take_tokens(
        &self,
        key: &str,
        rate_per_second: f64,
        burst: u64,
        cost: u64,
    ) -> Result<TokenDecision, SharedStateError> {
        Self::check_key(key)?;
        if !(rate_per_second.is_finite() && rate_per_second > 0.0) {
            return Err(SharedStateError::InvalidBucket(
                "rate must be a positive number",
            ));
        }
        if burst == 0 {
            return Err(SharedStateError::InvalidBucket("burst must be at least 1"));
        }
        let now = Instant::now();
        let burst_f = burst as f64;
        let cost_f = cost as f64;
        let mut shard = self.shard(key);
        let tokens = match shard.get(key) {
            Some(Entry::Bucket {
                tokens, updated, ..
            }) => {
                let refill =
                    now.saturating_duration_since(*updated).as_secs_f64() * rate_per_second;
                (tokens + refill).min(burst_f)
            }
            Some(entry) if !entry.expired(now) => {
                return Err(SharedStateError::WrongKind(entry.kind(), "token bucket"));
            }
            Some(entry) => {
                self.release_value_bytes(entry.value_bytes());
                burst_f
            }
            None => {
                self.admit_new_key()?;
                burst_f
            }
        };
        let allowed = cost_f <= tokens;
        let left = if allowed { tokens - cost_f } else { tokens };
        let seconds_to_full = (burst_f - left) / rate_per_second;
        let retry_after = if allowed || cost_f > burst_f {
            // A cost above the burst can never be met; say so by the reset.
            Duration::ZERO
        } else {
            Duration::from_secs_f64((cost_f - left) / rate_per_second)
        };
        let reset = Duration::from_secs_f64(seconds_to_full);
        shard.insert(
            key.to_owned(),
            Entry::Bucket {
                tokens: left,
                updated: now,
                full_at: now + reset,
            },
        );
        Ok(TokenDecision {
            allowed,
            remaining: left.floor() as u64,
            retry_after,
            reset,
        })
    }

    /// A live value.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        match self.shard(key).get(key) {
            Some(Entry::Value { bytes, expires }) if !expires.is_some_and(|at| at <= now) => {
                Some(bytes.clone())
            }
            _ => None,
        }
    }

    /// Stores a value that expires after `ttl_ms` (0: never).
    pub fn set(&self, key: &str, value: Vec<u8>, ttl_ms: u64) -> Result<(), SharedStateError> {
        Self::check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(SharedStateError::ValueTooLarge);
        }
        let now = Instant::now();
        let mut shard = self.shard(key);
        let old = shard.get(key).map(Entry::value_bytes);
        let old_bytes = old.unwrap_or(0);
        // Only growth needs room: a replacement reuses the old value's.
        if value.len() > old_bytes {
            self.admit_value_bytes(value.len() - old_bytes)?;
        }
        if old.is_none()
            && let Err(full) = self.admit_new_key()
        {
            self.release_value_bytes(value.len());
            return Err(full);
        }
        self.release_value_bytes(old_bytes.saturating_sub(value.len()));
        shard.insert(
            key.to_owned(),
            Entry::Value {
                bytes: value,
                expires: ttl_deadline(now, ttl_ms),
            },
        );
        Ok(())
    }

    /// Removes a key of any kind.
    pub fn delete(&self, key: &str) {
        if let Some(entry) = self.shard(key).remove(key) {
            self.release_value_bytes(entry.value_bytes());
            self.forget_key();
        }
    }

    /// Drops expired entries; run now and then so idle keys do not pile up.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|poison| poison.into_inner());
            let before = shard.len();
            let mut freed = 0;
            shard.retain(|_, entry| {
                let keep = !entry.expired(now);
                if !keep {
                    freed += entry.value_bytes();
                }
                keep
            });
            self.release_value_bytes(freed);
            removed += before - shard.len();
        }
        for _ in 0..removed {
            self.forget_key();
        }
        removed
    }

    /// How many keys are held, expired ones included until the next sweep.
    pub fn len(&self) -> usize {
        self.len.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_exactly_burst_then_refuses_with_retry_after() {
        let state = SharedState::default();
        let allowed = (0..15)
            .filter(|_| state.take_tokens("k", 1.0, 10, 1).unwrap().allowed)
            .count();
        assert_eq!(allowed, 10);
        let refused = state.take_tokens("k", 1.0, 10, 1).unwrap();
        assert!(!refused.allowed);
        assert!(refused.retry_after > Duration::from_millis(900));
        assert!(refused.retry_after <= Duration::from_secs(1));
    }

    #[test]
    fn counters_expire_and_restart() {
        let state = SharedState::default();
        assert_eq!(state.counter_add("c", 2, 20).unwrap(), 2);
        assert_eq!(state.counter_add("c", 3, 20).unwrap(), 5);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(state.counter_get("c"), None);
        assert_eq!(state.counter_add("c", 1, 20).unwrap(), 1);
    }

    #[test]
    fn value_bytes_are_capped_in_all_and_freed_again() {
        let state = SharedState::default();
        let chunk = vec![0u8; MAX_VALUE_BYTES];
        let fit = MAX_TOTAL_VALUE_BYTES / MAX_VALUE_BYTES;
        for i in 0..fit {
            state.set(&format!("k{i}"), chunk.clone(), 0).unwrap();
        }
        assert_eq!(
            state.set("one-more", chunk.clone(), 0),
            Err(SharedStateError::NoSpace)
        );
        assert_eq!(state.len(), fit, "the refused key was not counted");
        // Replacing a value reuses its space; deleting frees it.
        state.set("k0", chunk.clone(), 0).unwrap();
        state.delete("k1");
        state.set("one-more", chunk, 0).unwrap();
    }

    #[test]
    fn kinds_do_not_mix_and_sweep_frees_keys() {
        let state = SharedState::default();
        state.set("v", b"x".to_vec(), 10).unwrap();
        assert!(matches!(
            state.counter_add("v", 1, 0),
            Err(SharedStateError::WrongKind(..))
        ));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(state.sweep(), 1);
        assert!(state.is_empty());
    }
}
