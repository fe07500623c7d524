//! State shared by every instance of the plugin and every worker thread of
//! the host (the WIT interface `shared-state`), with atomic operations and
//! expiry. Keys are private to each plugin.
//!
//! A TTL of 0 means the key never expires.
//!
//! ```no_run
//! use tandem_sdk::shared;
//!
//! # fn main() -> Result<(), String> {
//! // A fixed one-minute window: the counter is created with the TTL.
//! let hits = shared::counter_add("hits:203.0.113.7", 1, 60_000)?;
//! let decision = shared::take_tokens("bucket:203.0.113.7", 10.0, 20, 1)?;
//! if !decision.allowed {
//!     // answer 429, with decision.retry_after_ms
//! }
//! # let _ = hits;
//! # Ok(())
//! # }
//! ```

use crate::bindings::tandem::plugin::shared_state as raw;

pub use raw::BucketDecision;

/// Atomically adds `delta` to the counter `key` (created at 0) and returns
/// the new value. A new counter expires `ttl_ms` after it was created, which
/// makes fixed-window counters.
pub fn counter_add(key: &str, delta: i64, ttl_ms: u64) -> Result<i64, String> {
    raw::counter_add(key, delta, ttl_ms)
}

/// The current value of a counter, if it exists and has not expired.
pub fn counter_get(key: &str) -> Option<i64> {
    raw::counter_get(key)
}

/// Atomically takes `cost` tokens from the token bucket `key`, which holds at
/// most `burst` tokens and refills at `rate_per_second`. A new bucket starts
/// full.
pub fn take_tokens(
    key: &str,
    rate_per_second: f64,
    burst: u64,
    cost: u64,
) -> Result<BucketDecision, String> {
    raw::take_tokens(key, rate_per_second, burst, cost)
}

/// Reads a value, if it exists and has not expired.
pub fn get(key: &str) -> Option<Vec<u8>> {
    raw::get(key)
}

/// Stores a value that expires after `ttl_ms`.
pub fn set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), String> {
    raw::set(key, value, ttl_ms)
}

/// Removes a key of any kind.
pub fn delete(key: &str) {
    raw::delete(key)
}
