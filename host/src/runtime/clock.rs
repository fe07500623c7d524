//! The clocks a plugin reads, rounded down to its configured resolution
//! (1 ms by default): enough to measure and to expire things, too coarse to
//! time the host or other requests finely.

use std::time::{Duration, Instant, SystemTime};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// `value` rounded down to a multiple of `step` (both in nanoseconds).
fn floor_to(value: u128, step: u128) -> u128 {
    value - value % step.max(1)
}

/// The wall clock, rounded down to `resolution`.
pub struct CoarseWallClock {
    resolution: Duration,
}

impl CoarseWallClock {
    /// A wall clock that reads in steps of `resolution`.
    pub fn new(resolution: Duration) -> Self {
        Self { resolution }
    }
}

impl HostWallClock for CoarseWallClock {
    fn resolution(&self) -> Duration {
        self.resolution
    }

    fn now(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let nanos = floor_to(now.as_nanos(), self.resolution.as_nanos());
        Duration::new(
            (nanos / 1_000_000_000) as u64,
            (nanos % 1_000_000_000) as u32,
        )
    }
}

/// A monotonic clock from the instance's creation, rounded down to
/// `resolution`.
pub struct CoarseMonotonicClock {
    start: Instant,
    resolution: Duration,
}

impl CoarseMonotonicClock {
    /// A monotonic clock that reads in steps of `resolution`.
    pub fn new(resolution: Duration) -> Self {
        Self {
            start: Instant::now(),
            resolution,
        }
    }
}

impl HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        self.resolution.as_nanos().try_into().unwrap_or(u64::MAX)
    }

    fn now(&self) -> u64 {
        let nanos = floor_to(self.start.elapsed().as_nanos(), self.resolution.as_nanos());
        nanos.try_into().unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_multiples_of_the_resolution() {
        let wall = CoarseWallClock::new(Duration::from_millis(1));
        for _ in 0..100 {
            assert_eq!(wall.now().subsec_nanos() % 1_000_000, 0);
        }
        let mono = CoarseMonotonicClock::new(Duration::from_millis(1));
        let mut last = 0;
        for _ in 0..100 {
            let now = mono.now();
            assert_eq!(now % 1_000_000, 0);
            assert!(now >= last, "monotonic");
            last = now;
        }
        assert_eq!(mono.resolution(), 1_000_000);
    }
}
