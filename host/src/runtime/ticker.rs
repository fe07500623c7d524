//! The epoch ticker: advances the engine's epoch every [`EPOCH_TICK`] while
//! a guest may be running, and sleeps while none can be.
//!
//! The epoch is what stops a busy guest (at its deadline) and what makes a
//! long call yield its thread (at every tick), so it must advance whenever
//! guest code may run. Ticking a thousand times a second in an idle sidecar,
//! though, costs about 1.5 % of a core in every pod for nothing. So every
//! call says, before it starts, until when it may run: its deadline plus
//! [`BLOCKED_CALL_GRACE`], after which a call is either stopped by a tick
//! or abandoned by its backstop. The ticker runs until the latest such time
//! has passed, then parks until the next call wakes it.
//!
//! A call that asks for no more than the ticker already runs for costs one
//! atomic load. To keep it that way under load, each extension adds
//! [`AWAKE_SLACK`], so the shared value is written about once per slack
//! period, not once per call.
//!
//! [`BLOCKED_CALL_GRACE`]: super::plugin::BLOCKED_CALL_GRACE

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How often the epoch advances; hook deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How much longer than asked the ticker keeps running when a call extends
/// it.
pub const AWAKE_SLACK: Duration = Duration::from_secs(1);

/// What calls and the ticker thread share.
struct Shared {
    /// Nanoseconds from `base` until which the epoch must advance.
    awake_until: AtomicU64,
    /// The ticker thread is parked (or about to park) and must be woken.
    asleep: AtomicBool,
    stop: AtomicBool,
    /// Ticks so far.
    ticks: AtomicU64,
    base: Instant,
    /// [`AWAKE_SLACK`] (or a test's), in nanoseconds.
    slack_nanos: u64,
}

impl Shared {
    fn nanos_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base)
            .as_nanos()
            .try_into()
            .unwrap_or(u64::MAX)
    }
}

/// The handle that calls use to keep the epoch advancing while they run.
#[derive(Clone)]
pub struct TicksNeeded {
    shared: Arc<Shared>,
    thread: Thread,
}

impl TicksNeeded {
    /// Keeps the epoch advancing until at least `until`, waking the ticker
    /// if it sleeps. Called before guest code runs.
    pub fn until(&self, until: Instant) {
        let shared = &*self.shared;
        let needed = shared.nanos_at(until);
        if needed <= shared.awake_until.load(Ordering::Acquire) {
            return;
        }
        let extended = needed.saturating_add(shared.slack_nanos);
        shared.awake_until.fetch_max(extended, Ordering::SeqCst);
        // Paired with the ticker's store of `asleep` and load of
        // `awake_until` (both SeqCst): either it sees the new time and does
        // not park, or this sees it asleep and wakes it.
        if shared.asleep.load(Ordering::SeqCst) && shared.asleep.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
    }
}

/// Advances the engine's epoch while calls need it, until dropped.
pub struct EpochTicker {
    needed: TicksNeeded,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread, asleep until the first call.
    pub fn start(engine: &Engine) -> Self {
        Self::with_slack(engine, AWAKE_SLACK)
    }

    /// Like [`EpochTicker::start`], running `slack` longer than asked.
    pub fn with_slack(engine: &Engine, slack: Duration) -> Self {
        let shared = Arc::new(Shared {
            awake_until: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            base: Instant::now(),
            slack_nanos: slack.as_nanos().try_into().unwrap_or(u64::MAX),
        });
        // A weak engine would be nicer, but the engine outlives every store
        // anyway; the thread ends when the ticker is dropped.
        let engine = engine.clone();
        let ticking = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tandem-epoch".into())
            .spawn(move || tick(&engine, &ticking))
            .expect("spawning the epoch thread");
        Self {
            needed: TicksNeeded {
                shared,
                thread: thread.thread().clone(),
            },
            thread: Some(thread),
        }
    }

    /// The handle calls use to keep the epoch advancing.
    pub fn needed(&self) -> TicksNeeded {
        self.needed.clone()
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.needed.shared.ticks.load(Ordering::Relaxed)
    }
}

/// The ticker thread: tick while needed, park while not, until stopped.
fn tick(engine: &Engine, shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        let now = shared.nanos_at(Instant::now());
        if now >= shared.awake_until.load(Ordering::SeqCst) {
            shared.asleep.store(true, Ordering::SeqCst);
            // A call may have extended the time after the load above; it
            // either shows here or has seen `asleep` and will unpark.
            if now >= shared.awake_until.load(Ordering::SeqCst) {
                while shared.asleep.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
                    std::thread::park();
                }
            }
            shared.asleep.store(false, Ordering::SeqCst);
            continue;
        }
        std::thread::sleep(EPOCH_TICK);
        engine.increment_epoch();
        shared.ticks.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.needed.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `done` every millisecond for up to `limit`.
    fn within(limit: Duration, done: impl Fn() -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        done()
    }

    #[test]
    fn ticks_only_while_a_call_may_run() {
        let engine = Engine::default();
        let ticker = EpochTicker::with_slack(&engine, Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ticker.ticks(), 0, "asleep before any call");

        // A call that may run for 300 ms wakes it at once.
        let asked = Instant::now();
        ticker.needed().until(asked + Duration::from_millis(300));
        assert!(within(Duration::from_secs(5), || ticker.ticks() >= 3));

        // It ticks through the call's time, then sleeps again.
        assert!(
            within(Duration::from_secs(5), || {
                let before = ticker.ticks();
                std::thread::sleep(Duration::from_millis(50));
                ticker.ticks() == before
            }),
            "asleep again after the call's time"
        );
        assert!(
            asked.elapsed() >= Duration::from_millis(300),
            "ticked for the whole of the call's time"
        );

        // And wakes for the next call.
        let before = ticker.ticks();
        ticker
            .needed()
            .until(Instant::now() + Duration::from_millis(50));
        assert!(within(Duration::from_secs(5), || ticker.ticks() > before));
    }

    #[test]
    fn a_call_within_the_time_already_asked_for_changes_nothing() {
        let engine = Engine::default();
        let ticker = EpochTicker::with_slack(&engine, Duration::from_secs(60));
        let needed = ticker.needed();
        needed.until(Instant::now() + Duration::from_millis(10));
        let asked = needed.shared.awake_until.load(Ordering::Relaxed);
        needed.until(Instant::now() + Duration::from_millis(20));
        assert_eq!(needed.shared.awake_until.load(Ordering::Relaxed), asked);
    }

    #[test]
    fn dropping_a_sleeping_ticker_stops_its_thread() {
        let engine = Engine::default();
        let ticker = EpochTicker::start(&engine);
        std::thread::sleep(Duration::from_millis(10));
        // Joins the thread: this returns only if the parked thread woke.
        drop(ticker);
    }
}
