//! How one plugin version's hook calls are made: synchronously, on the
//! worker's own stack, or on a fiber.
//!
//! A synchronous call costs about two thirds of one on a fiber, but it
//! cannot yield: a guest that runs for a whole epoch tick holds its worker
//! until it returns or reaches its deadline, and a wait (a sleep) holds the
//! thread too. So calls start synchronous, and
//!
//! - a call that runs for a whole tick (synchronous or on a fiber) puts the
//!   version's calls on a fiber, where they yield at every tick, until
//!   [`FIBER_COOLDOWN`] passes without another such call;
//! - a call that waits puts them on a fiber for good, with WASI linked
//!   asynchronously, where a wait yields the thread (a plugin that sleeps
//!   once will again).
//!
//! Both are told at the moment they happen (from the epoch callback and
//! from the wait), so that calls starting meanwhile already go on a fiber.
//! The request path reads one atomic while calls are synchronous.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::since::Since;

/// How long a version's calls stay on a fiber after one ran for a whole
/// epoch tick.
pub const FIBER_COOLDOWN: Duration = Duration::from_secs(10);

/// What the next call of a version does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStyle {
    /// A synchronous call on an instance whose WASI never waits on tokio.
    Synchronous,
    /// A call on a fiber; any instance will do.
    Fiber,
    /// A call on a fiber, on an instance whose WASI waits asynchronously.
    FiberWithAsyncWasi,
}

/// `fiber_until` while one synchronous call tries whether the version's
/// calls are quick again: the others stay on a fiber until it ends quickly
/// (`call_ended`) or runs a whole tick (`ran_long`, a new period). Without
/// it, every call that started before the first of them reached a tick
/// would be synchronous, one per worker.
const PROBING: u64 = u64::MAX;

/// The call mode of one plugin version.
pub struct CallMode {
    epoch: Since,
    /// End of the current fiber period in nanoseconds since `epoch`; 0 when
    /// calls are synchronous; [`PROBING`] while the first call after a
    /// period is under way.
    fiber_until: AtomicU64,
    /// A call waited: every call from now on is on a fiber with WASI linked
    /// asynchronously.
    waits: AtomicBool,
}

impl Default for CallMode {
    fn default() -> Self {
        Self {
            epoch: Since::now(),
            fiber_until: AtomicU64::new(0),
            waits: AtomicBool::new(false),
        }
    }
}

impl CallMode {
    /// How the next call is made.
    pub fn style(&self) -> CallStyle {
        if self.waits.load(Ordering::Relaxed) {
            return CallStyle::FiberWithAsyncWasi;
        }
        let until = self.fiber_until.load(Ordering::Relaxed);
        if until == 0 {
            return CallStyle::Synchronous;
        }
        if until == PROBING || self.epoch.nanos() < until {
            return CallStyle::Fiber;
        }
        // Over: this call probes. A failed exchange means another call
        // probes already, or a long call just extended the period; this
        // one goes on a fiber either way.
        match self.fiber_until.compare_exchange(
            until,
            PROBING,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => CallStyle::Synchronous,
            Err(_) => CallStyle::Fiber,
        }
    }

    /// A call ended; if a probe was under way and no call ran a whole tick
    /// meanwhile, calls are synchronous again.
    pub fn call_ended(&self) {
        if self.fiber_until.load(Ordering::Relaxed) == PROBING {
            let _ =
                self.fiber_until
                    .compare_exchange(PROBING, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// A call ran for a whole epoch tick: calls go on a fiber for a
    /// cool-down from now.
    pub fn ran_long(&self) {
        let until = self
            .epoch
            .nanos()
            .saturating_add(FIBER_COOLDOWN.as_nanos().try_into().unwrap_or(u64::MAX))
            .max(1);
        self.fiber_until.store(until, Ordering::Relaxed);
    }

    /// A call waited: calls go on a fiber, with WASI linked asynchronously,
    /// for good.
    pub fn waited(&self) {
        self.waits.store(true, Ordering::Relaxed);
    }

    /// Whether a call waited, so that calls are on a fiber with WASI linked
    /// asynchronously for good.
    pub fn waits_for_good(&self) -> bool {
        self.waits.load(Ordering::Relaxed)
    }

    /// `synchronous`, `fiber` or `fiber-async-wasi`, for `/plugins`.
    pub fn name(&self) -> &'static str {
        if self.waits.load(Ordering::Relaxed) {
            "fiber-async-wasi"
        } else if self.epoch.nanos() < self.fiber_until.load(Ordering::Relaxed) {
            "fiber"
        } else {
            "synchronous"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_start_synchronous_and_a_wait_moves_them_to_a_fiber_for_good() {
        let mode = CallMode::default();
        assert_eq!(mode.style(), CallStyle::Synchronous);
        assert_eq!(mode.name(), "synchronous");
        mode.waited();
        assert_eq!(mode.style(), CallStyle::FiberWithAsyncWasi);
        assert_eq!(mode.name(), "fiber-async-wasi");
    }

    #[test]
    fn a_long_call_moves_calls_to_a_fiber_until_the_cooldown_ends() {
        let mode = CallMode::default();
        mode.ran_long();
        assert_eq!(mode.style(), CallStyle::Fiber);
        assert_eq!(mode.name(), "fiber");
        // End the period by hand rather than waiting ten seconds.
        mode.fiber_until.store(1, Ordering::Relaxed);
        assert_eq!(mode.style(), CallStyle::Synchronous, "the probe");
        assert_eq!(mode.style(), CallStyle::Fiber, "the others wait for it");
        assert_eq!(mode.name(), "fiber");
        mode.call_ended();
        assert_eq!(mode.style(), CallStyle::Synchronous, "quick: back");
        assert_eq!(mode.fiber_until.load(Ordering::Relaxed), 0, "cleared");
        mode.call_ended();
        assert_eq!(mode.style(), CallStyle::Synchronous);
    }

    #[test]
    fn a_probe_that_runs_long_starts_a_new_period() {
        let mode = CallMode::default();
        mode.ran_long();
        mode.fiber_until.store(1, Ordering::Relaxed);
        assert_eq!(mode.style(), CallStyle::Synchronous, "the probe");
        mode.ran_long();
        mode.call_ended();
        assert_eq!(mode.style(), CallStyle::Fiber, "a new period");
    }
}
