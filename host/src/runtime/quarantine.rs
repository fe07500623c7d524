//! The quarantine of one plugin version. A hook call that runs past its
//! deadline (a failure of kind `timeout`) puts the plugin in quarantine
//! for `quarantine_ms`; while it is there, each of its calls that runs
//! for a whole epoch tick moves from the proxy's workers to the
//! low-priority quarantine lane (see `lane`) to finish there; quick calls
//! stay where they are. Every further timeout starts the cool-down again, so the
//! plugin leaves quarantine once a whole cool-down passes without one; the
//! first call after that runs on the workers again.
//!
//! Unlike the circuit breaker, quarantine never changes what a request
//! gets: the plugin is still called and its answer still counts. It only
//! changes where the call runs, so it is on by default.
//!
//! The request path reads one atomic when the plugin is not quarantined.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::since::Since;

/// Where the next call of the plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the proxy's workers, as usual.
    Workers,
    /// On the workers; a quarantine ended with this call (log it once).
    Released,
    /// Quarantined: on the workers for one epoch tick, then on the
    /// quarantine lane.
    Lane,
}

/// The quarantine state of one plugin version.
pub struct Quarantine {
    cooldown: Duration,
    epoch: Since,
    /// End of the quarantine in nanoseconds since `epoch`; 0 when the
    /// plugin is not (or no longer known to be) quarantined.
    until: AtomicU64,
    entries: AtomicU64,
}

impl Quarantine {
    /// A quarantine of `cooldown` after each timeout; never when zero.
    pub fn new(cooldown: Duration) -> Self {
        Self {
            cooldown,
            epoch: Since::now(),
            until: AtomicU64::new(0),
            entries: AtomicU64::new(0),
        }
    }

    /// Where the next call runs.
    pub fn admit(&self) -> Placement {
        loop {
            let until = self.until.load(Ordering::Relaxed);
            if until == 0 {
                return Placement::Workers;
            }
            if self.epoch.nanos() < until {
                return Placement::Lane;
            }
            // Over: the one call that clears it reports the release. A
            // failed exchange means a timeout just extended it, or another
            // call released it; look again.
            if self
                .until
                .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return Placement::Released;
            }
        }
    }

    /// Records a timeout; returns true if it put the plugin in quarantine
    /// (false if it was already there, which it now stays in for a whole
    /// cool-down from now, or if quarantine is off).
    pub fn timed_out(&self) -> bool {
        if self.cooldown.is_zero() {
            return false;
        }
        let now = self.epoch.nanos();
        let until = now
            .saturating_add(self.cooldown.as_nanos().try_into().unwrap_or(u64::MAX))
            .max(1);
        let before = self.until.swap(until, Ordering::Relaxed);
        // An expired quarantine that no call has released yet counts as
        // over: this timeout starts a new one.
        let entered = before == 0 || before <= now;
        if entered {
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
        entered
    }

    /// Time left in the quarantine, if the plugin is in it.
    pub fn remaining(&self) -> Option<Duration> {
        let until = self.until.load(Ordering::Relaxed);
        let now = self.epoch.nanos();
        (until != 0 && now < until).then(|| Duration::from_nanos(until - now))
    }

    /// How many times the plugin was put in quarantine.
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// The cool-down after a timeout; zero when quarantine is off.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_quarantines_until_a_whole_cooldown_passes_without_one() {
        // Margins of a tenth of a second and more, for a busy machine.
        let quarantine = Quarantine::new(Duration::from_millis(300));
        assert_eq!(quarantine.admit(), Placement::Workers);
        assert!(quarantine.timed_out(), "the first timeout enters");
        assert_eq!(quarantine.admit(), Placement::Lane);
        std::thread::sleep(Duration::from_millis(200));
        assert!(!quarantine.timed_out(), "already in: extended");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            quarantine.admit(),
            Placement::Lane,
            "400 ms after entering, but only 200 ms after the last timeout"
        );
        assert!(quarantine.remaining().is_some());
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(quarantine.remaining(), None);
        assert_eq!(quarantine.admit(), Placement::Released, "reported once");
        assert_eq!(quarantine.admit(), Placement::Workers);
        assert_eq!(quarantine.entries(), 1);
    }

    #[test]
    fn a_timeout_after_an_unreleased_expiry_is_a_new_entry() {
        let quarantine = Quarantine::new(Duration::from_millis(10));
        assert!(quarantine.timed_out());
        std::thread::sleep(Duration::from_millis(20));
        assert!(quarantine.timed_out(), "the old one had ended");
        assert_eq!(quarantine.entries(), 2);
        assert_eq!(quarantine.admit(), Placement::Lane);
    }

    #[test]
    fn zero_is_off() {
        let quarantine = Quarantine::new(Duration::ZERO);
        assert!(!quarantine.timed_out());
        assert_eq!(quarantine.admit(), Placement::Workers);
        assert_eq!(quarantine.entries(), 0);
    }
}
