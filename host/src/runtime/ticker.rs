//! The epoch ticker: advances the engine's epoch every [`EPOCH_TICK`] while
//! a guest may be running, and sleeps while none can be.
//!
//! The epoch is what stops a busy guest (at its deadline) and what makes a
//! long call yield its thread (at every tick), so it must advance whenever
//! guest code may run. Ticking a thousand times a second in an idle sidecar,
//! though, costs about 2 % of a core in every pod for nothing.
//!
//! So every call holds a [`CallTicks`] from before guest code first runs
//! until its instance goes back to the pool or is dropped: a count of calls
//! in flight. The ticker parks only once that count has been zero for
//! [`AWAKE_SLACK`] (so that a steady trickle of calls does not park and wake
//! it each time), and the first call after that wakes it. Counting calls,
//! rather than trusting their deadlines, keeps it ticking for a call that
//! outlives its deadline: one whose thread was descheduled, or whose fiber
//! was resumed late, still needs a tick to be stopped.
//!
//! The count is kept in one slot per thread, each on its own cache line,
//! so a call writes a line that no other thread is writing.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How often the epoch advances; hook deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How long the ticker keeps running after the last call ended.
pub const AWAKE_SLACK: Duration = Duration::from_secs(1);

/// Slots of the in-flight count; threads share a slot only past this many.
const SLOTS: usize = 64;

/// One slot of the in-flight count, alone on its cache line.
#[repr(align(128))]
#[derive(Default)]
struct Slot(AtomicUsize);

/// What calls and the ticker thread share.
struct Shared {
    in_flight: [Slot; SLOTS],
    /// The ticker thread is parked (or about to park) and must be woken.
    asleep: AtomicBool,
    stop: AtomicBool,
    /// Ticks so far.
    ticks: AtomicU64,
    slack: Duration,
}

impl Shared {
    fn calls_in_flight(&self) -> bool {
        self.in_flight
            .iter()
            .any(|slot| slot.0.load(Ordering::SeqCst) > 0)
    }
}

thread_local! {
    /// This thread's slot of the in-flight count.
    static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Hands out slots to threads in turn.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

fn this_threads_slot() -> usize {
    SLOT.with(|slot| {
        slot.get().unwrap_or_else(|| {
            let index = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
            slot.set(Some(index));
            index
        })
    })
}

/// The handle that calls use to keep the epoch advancing while they run.
#[derive(Clone)]
pub struct TicksNeeded {
    shared: Arc<Shared>,
    thread: Thread,
}

impl TicksNeeded {
    /// Counts a call as in flight until the returned guard is dropped,
    /// waking the ticker if it sleeps. Taken before guest code runs.
    pub fn call_started(&self) -> CallTicks {
        let slot = this_threads_slot();
        let shared = &*self.shared;
        shared.in_flight[slot].0.fetch_add(1, Ordering::SeqCst);
        // Paired with the ticker's store of `asleep` and its reading of the
        // count (all SeqCst): either it sees this call and does not park,
        // or this sees it asleep and wakes it.
        if shared.asleep.load(Ordering::SeqCst) && shared.asleep.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
        CallTicks {
            shared: self.shared.clone(),
            slot,
        }
    }
}

/// A call in flight, for the ticker; dropping it ends the call. It may be
/// dropped on another thread than the one that took it (a call can move to
/// the quarantine lane): it gives back the slot it took.
pub struct CallTicks {
    shared: Arc<Shared>,
    slot: usize,
}

impl Drop for CallTicks {
    fn drop(&mut self) {
        self.shared.in_flight[self.slot]
            .0
            .fetch_sub(1, Ordering::Release);
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

    /// Like [`EpochTicker::start`], running `slack` after the last call.
    pub fn with_slack(engine: &Engine, slack: Duration) -> Self {
        let shared = Arc::new(Shared {
            in_flight: std::array::from_fn(|_| Slot::default()),
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            slack,
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

/// The ticker thread: tick while calls are in flight and for the slack
/// after them, park otherwise, until stopped.
fn tick(engine: &Engine, shared: &Shared) {
    // Starts asleep: nothing can run before the first call.
    let mut busy_until: Option<Instant> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if shared.calls_in_flight() {
            busy_until = Some(now + shared.slack);
        } else if busy_until.is_none_or(|until| now >= until) {
            shared.asleep.store(true, Ordering::SeqCst);
            // A call may have started after the look above; it either
            // shows here or has seen `asleep` and will unpark.
            if !shared.calls_in_flight() {
                while shared.asleep.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
                    std::thread::park();
                }
            }
            shared.asleep.store(false, Ordering::SeqCst);
            busy_until = Some(Instant::now() + shared.slack);
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

    fn asleep(ticker: &EpochTicker) -> bool {
        ticker.needed.shared.asleep.load(Ordering::SeqCst)
    }

    #[test]
    fn ticks_while_a_call_is_in_flight_however_long_and_sleeps_after() {
        let engine = Engine::default();
        let ticker = EpochTicker::with_slack(&engine, Duration::from_millis(20));
        assert!(within(Duration::from_secs(5), || asleep(&ticker)));
        assert_eq!(ticker.ticks(), 0, "asleep before any call");

        // A call wakes it at once...
        let call = ticker.needed().call_started();
        assert!(within(Duration::from_secs(5), || ticker.ticks() >= 3));
        // ...and it keeps ticking for as long as the call is in flight,
        // well past the slack.
        std::thread::sleep(Duration::from_millis(200));
        assert!(!asleep(&ticker), "awake while a call is in flight");
        let before = ticker.ticks();
        assert!(within(Duration::from_secs(5), || ticker.ticks() > before));

        // Once it ends, the ticker sleeps after the slack.
        drop(call);
        assert!(within(Duration::from_secs(5), || asleep(&ticker)));
        let parked_at = ticker.ticks();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ticker.ticks(), parked_at, "no ticks while asleep");

        // A call ended on another thread than it started on gives its
        // slot back all the same.
        let needed = ticker.needed();
        let call = std::thread::spawn(move || needed.call_started())
            .join()
            .unwrap();
        assert!(within(Duration::from_secs(5), || !asleep(&ticker)));
        drop(call);
        assert!(within(Duration::from_secs(5), || asleep(&ticker)));
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
