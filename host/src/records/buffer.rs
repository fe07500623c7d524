//! The bounded record buffer between emitters (plugins, `POST /logs`) and
//! the sink task.
//!
//! The bound counts every record the pipeline holds: those queued and those
//! the sink has taken but not yet written (a batch being retried). So with
//! `capacity` N and a sink that is down, exactly N records are kept and
//! every further one is refused, never more and never fewer.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Why a record was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The buffer holds `capacity` records already.
    Full,
    /// The pipeline has shut down.
    Closed,
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    /// Records taken by the sink and not yet released.
    taken: usize,
    /// Flushing for shutdown: the sink stops waiting for batches to fill.
    flushing: bool,
    closed: bool,
}

/// A FIFO of serialized records with a bound on everything held.
pub struct Buffer {
    state: Mutex<State>,
    capacity: usize,
    changed: Notify,
}

impl Buffer {
    /// An empty buffer that holds at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity,
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent across a panic (every change is one
        // statement), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a record unless the buffer is full or closed.
    pub fn push(&self, record: String) -> Result<(), Refused> {
        {
            let mut state = self.state();
            if state.closed {
                return Err(Refused::Closed);
            }
            if state.queue.len() + state.taken >= self.capacity {
                return Err(Refused::Full);
            }
            state.queue.push_back(record);
        }
        self.changed.notify_one();
        Ok(())
    }

    /// Records held: queued plus taken by the sink.
    pub fn held(&self) -> usize {
        let state = self.state();
        state.queue.len() + state.taken
    }

    /// Records queued and not yet taken.
    pub fn queued(&self) -> usize {
        self.state().queue.len()
    }

    /// Whether a shutdown flush has begun.
    pub fn flushing(&self) -> bool {
        self.state().flushing
    }

    /// Moves up to `max` records, oldest first, into the sink's hands. They
    /// still count against the bound until [`Buffer::release`].
    pub fn take(&self, max: usize) -> Vec<String> {
        let mut state = self.state();
        let n = state.queue.len().min(max);
        let batch: Vec<String> = state.queue.drain(..n).collect();
        state.taken += batch.len();
        batch
    }

    /// The sink is done with `n` taken records (written or dropped).
    pub fn release(&self, n: usize) {
        let mut state = self.state();
        state.taken = state.taken.saturating_sub(n);
    }

    /// Waits until a record is queued or a flush has begun.
    pub async fn wait_for_records(&self) {
        loop {
            // Register before checking, so a push in between is not missed.
            let notified = self.changed.notified();
            {
                let state = self.state();
                if !state.queue.is_empty() || state.flushing {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Waits until at least `want` records are queued, a flush has begun, or
    /// `deadline` passes.
    pub async fn wait_for_batch(&self, want: usize, deadline: tokio::time::Instant) {
        loop {
            let notified = self.changed.notified();
            {
                let state = self.state();
                if state.queue.len() >= want || state.flushing {
                    return;
                }
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Starts the shutdown flush: the sink writes what is queued without
    /// waiting for batches to fill.
    pub fn start_flush(&self) {
        self.state().flushing = true;
        self.changed.notify_waiters();
        self.changed.notify_one();
    }

    /// Refuses every further record and empties the buffer; returns how many
    /// records it still held (they are lost).
    pub fn close(&self) -> usize {
        let mut state = self.state();
        state.closed = true;
        let lost = state.queue.len() + state.taken;
        state.queue.clear();
        state.taken = 0;
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_counts_taken_records_too() {
        let buffer = Buffer::new(3);
        for i in 0..3 {
            buffer.push(i.to_string()).unwrap();
        }
        assert_eq!(buffer.push("x".into()), Err(Refused::Full));
        let batch = buffer.take(2);
        assert_eq!(batch, ["0", "1"]);
        // Taken but not written: still held.
        assert_eq!(buffer.push("x".into()), Err(Refused::Full));
        buffer.release(2);
        buffer.push("3".into()).unwrap();
        buffer.push("4".into()).unwrap();
        assert_eq!(buffer.push("x".into()), Err(Refused::Full));
        assert_eq!(buffer.take(10), ["2", "3", "4"]);
        assert_eq!(buffer.held(), 3);
        assert_eq!(buffer.close(), 3);
        assert_eq!(buffer.push("y".into()), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn waiting_sees_pushes_and_flushes() {
        let buffer = std::sync::Arc::new(Buffer::new(10));
        let waiter = {
            let buffer = buffer.clone();
            tokio::spawn(async move { buffer.wait_for_records().await })
        };
        buffer.push("a".into()).unwrap();
        waiter.await.unwrap();

        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(600);
        let waiter = {
            let buffer = buffer.clone();
            tokio::spawn(async move { buffer.wait_for_batch(5, far).await })
        };
        buffer.start_flush();
        waiter.await.unwrap();
        assert!(buffer.flushing());
    }
}
