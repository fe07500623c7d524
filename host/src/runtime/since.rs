//! Nanoseconds since a fixed instant, as a `u64` that fits an atomic: how
//! the breaker and the quarantine keep "until when" without a lock.

use std::time::Instant;

/// A fixed starting instant.
#[derive(Debug, Clone, Copy)]
pub struct Since(Instant);

impl Since {
    /// Starts counting now.
    pub fn now() -> Self {
        Self(Instant::now())
    }

    /// Nanoseconds from the start to now, saturating.
    pub fn nanos(&self) -> u64 {
        self.0.elapsed().as_nanos().try_into().unwrap_or(u64::MAX)
    }
}
