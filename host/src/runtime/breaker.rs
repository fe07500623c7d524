//! The circuit breaker of one plugin version: after `trip_after`
//! consecutive failures of one of its hooks (counted per hook, so that an
//! `on-request` that always fails is not excused by the `on-response` that
//! follows it) the plugin is tripped for a cool-down, during which
//! its hooks are not called at all (so a broken plugin stops burning CPU);
//! the failure policy then says what the request gets: `open` skips the
//! plugin, `closed` fails fast with a 503.
//!
//! After the cool-down the next call goes through as a probe: one more
//! failure trips it again at once, a success closes the breaker.
//!
//! The request path only reads two atomics when the breaker is closed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::since::Since;

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call the plugin.
    Call,
    /// Tripped: do not call it; the cool-down ends in this long.
    Tripped(Duration),
}

/// What `/plugins` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Serving,
    /// Calls are skipped or fail fast until the cool-down ends.
    Tripped {
        /// Time left in the cool-down.
        remaining: Duration,
    },
}

/// How many hooks are counted apart: `on-request`, `on-response`, `on-log`
/// and `on-app-log`.
pub const HOOKS: usize = 4;

/// A consecutive-failure circuit breaker.
pub struct Breaker {
    trip_after: u32,
    cooldown: Duration,
    epoch: Since,
    consecutive: [AtomicU32; HOOKS],
    /// End of the cool-down in nanoseconds since `epoch`; 0 when closed.
    open_until: AtomicU64,
    trips: AtomicU64,
}

impl Breaker {
    /// A breaker that trips after `trip_after` consecutive failures (never
    /// when 0) for `cooldown`.
    pub fn new(trip_after: u32, cooldown: Duration) -> Self {
        Self {
            trip_after,
            cooldown,
            epoch: Since::now(),
            consecutive: Default::default(),
            open_until: AtomicU64::new(0),
            trips: AtomicU64::new(0),
        }
    }

    /// Whether to call the plugin now.
    pub fn admit(&self) -> Admission {
        let until = self.open_until.load(Ordering::Relaxed);
        if until == 0 {
            return Admission::Call;
        }
        let now = self.epoch.nanos();
        if now < until {
            Admission::Tripped(Duration::from_nanos(until - now))
        } else {
            Admission::Call
        }
    }

    /// Records a successful call of hook number `hook` (below [`HOOKS`]);
    /// returns true if it closed a tripped breaker (the probe after a
    /// cool-down succeeded).
    pub fn succeeded(&self, hook: usize) -> bool {
        if self.trip_after == 0 {
            return false;
        }
        let consecutive = &self.consecutive[hook % HOOKS];
        // Loads first: the common case writes nothing shared.
        if consecutive.load(Ordering::Relaxed) != 0 {
            consecutive.store(0, Ordering::Relaxed);
        }
        self.open_until.load(Ordering::Relaxed) != 0
            && self.open_until.swap(0, Ordering::Relaxed) != 0
    }

    /// Records a failed call of hook number `hook`; returns true if this
    /// failure tripped it.
    pub fn failed(&self, hook: usize) -> bool {
        if self.trip_after == 0 {
            return false;
        }
        let consecutive = &self.consecutive[hook % HOOKS];
        let count = consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if count < self.trip_after {
            return false;
        }
        // One more failure after the cool-down trips it again at once.
        consecutive.store(self.trip_after - 1, Ordering::Relaxed);
        let until = self
            .epoch
            .nanos()
            .saturating_add(self.cooldown.as_nanos().try_into().unwrap_or(u64::MAX));
        self.open_until.store(until.max(1), Ordering::Relaxed);
        self.trips.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        match self.admit() {
            Admission::Call => BreakerState::Serving,
            Admission::Tripped(remaining) => BreakerState::Tripped { remaining },
        }
    }

    /// How many times it has tripped.
    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Failures in a row so far, of the hook with the longest run.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_n_in_a_row_and_probes_after_the_cooldown() {
        let breaker = Breaker::new(3, Duration::from_millis(30));
        assert!(!breaker.failed(0));
        assert!(!breaker.failed(0));
        assert!(!breaker.succeeded(0), "nothing was tripped");
        assert!(!breaker.failed(0));
        assert!(!breaker.failed(0));
        assert_eq!(
            breaker.admit(),
            Admission::Call,
            "a success reset the count"
        );
        assert!(breaker.failed(0), "third in a row");
        assert!(matches!(breaker.admit(), Admission::Tripped(_)));
        assert_eq!(breaker.trips(), 1);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(
            breaker.admit(),
            Admission::Call,
            "probe after the cool-down"
        );
        assert!(breaker.failed(0), "a failed probe trips it again");
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.succeeded(0), "a good probe closes it");
        assert!(!breaker.succeeded(0), "only once");
        assert_eq!(breaker.state(), BreakerState::Serving);
        assert!(!breaker.failed(0), "a good probe closed it");
    }

    #[test]
    fn hooks_are_counted_apart() {
        let breaker = Breaker::new(2, Duration::from_secs(30));
        assert!(!breaker.failed(0));
        assert!(!breaker.succeeded(1), "another hook's success");
        assert!(breaker.failed(0), "does not reset this hook's run");
    }

    #[test]
    fn zero_never_trips() {
        let breaker = Breaker::new(0, Duration::from_millis(30));
        for _ in 0..100 {
            assert!(!breaker.failed(0));
        }
        assert_eq!(breaker.admit(), Admission::Call);
    }
}
