//! The log phase of a request: `on-log` runs once the response is done, in
//! a task of its own, so that it never holds up the connection.
//!
//! Two things here make sure a request is not missing from the records:
//! - a request dropped before its response (the client hung up, or the
//!   shutdown grace ran out) is still counted, with status 499 as nginx
//!   counts it, and logged if it was waiting for the upstream
//!   ([`AbandonWatch`]);
//! - every `on-log` call a worker starts, and every request that could
//!   still start one that way, is counted ([`LogCalls`]), so that shutdown
//!   waits for the last ones before the records are flushed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Response, StatusCode};
use tokio::sync::Notify;

use super::body::BodyBytes;
use crate::chain::Chain;
use crate::metrics::Metrics;
use crate::runtime::bindings::Exchange;
use crate::runtime::exchange::{RequestHead, ResponseHead};

/// The status logged for a request dropped before its response: nginx's
/// "client closed request".
pub const ABANDONED_STATUS: u16 = 499;

/// Microseconds, saturating.
pub fn micros(duration: Duration) -> u64 {
    duration.as_micros().try_into().unwrap_or(u64::MAX)
}

/// What may still produce a record on one worker: `on-log` calls started
/// and not finished, and requests being watched; and whether the worker is
/// cutting its last connections.
#[derive(Default)]
pub struct LogCalls {
    outstanding: AtomicUsize,
    settled: Notify,
    /// Set once shutdown waits for the count to reach zero: before that,
    /// a request that brings it to zero (every request, at low load) must
    /// not pay for a wake-up nobody waits for (`Notify` takes a lock).
    awaited: AtomicBool,
    cutting: AtomicBool,
}

/// Counts one call as running until dropped (also when its task is
/// dropped unfinished with the event loop, which is then logged: that
/// record is lost).
struct Running {
    calls: Arc<LogCalls>,
    finished: bool,
}

impl Running {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            tracing::warn!(
                "an on-log call was cut short as its worker stopped; its record is lost"
            );
        }
        self.calls.done();
    }
}

impl LogCalls {
    /// Runs `call` in a task of its own on the current event loop.
    fn spawn(self: &Arc<Self>, call: impl Future<Output = ()> + Send + 'static) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime to run on-log on; record dropped");
            return;
        };
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        let running = Running {
            calls: self.clone(),
            finished: false,
        };
        handle.spawn(async move {
            let mut running = running;
            call.await;
            running.finish();
        });
    }

    /// One call or watch fewer.
    fn done(&self) {
        // SeqCst, paired with `settled`: either this sees `awaited`, or the
        // waiter sees the count at zero.
        if self.outstanding.fetch_sub(1, Ordering::SeqCst) == 1
            && self.awaited.load(Ordering::SeqCst)
        {
            self.settled.notify_waiters();
        }
    }

    /// Waits until no call is running and no request is watched, for at
    /// most `limit`; true if so.
    pub async fn settled(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.settled.notified();
                tokio::pin!(notified);
                // Registered before the check, so a last call ending in
                // between is not missed.
                notified.as_mut().enable();
                self.awaited.store(true, Ordering::SeqCst);
                if self.outstanding.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// Marks the connections still open as being cut at the end of the
    /// shutdown grace, for the records of their requests.
    pub fn cut_remaining(&self) {
        self.cutting.store(true, Ordering::Relaxed);
    }
}

/// What the log phase needs once the response is done.
pub struct LogJob {
    /// The chain the request went through.
    pub chain: Arc<Chain>,
    /// A copy of the request head as the chain left it.
    pub request: RequestHead,
    /// A copy of the response head as sent.
    pub response: ResponseHead,
    /// The worker's count of running calls.
    pub calls: Arc<LogCalls>,
}

impl LogJob {
    /// Starts `on-log` for `exchange`, in a task of its own.
    pub fn start(self, exchange: Exchange) {
        let Self {
            chain,
            request,
            response,
            calls,
        } = self;
        calls.spawn(async move { chain.on_log(request, response, &exchange).await });
    }
}

/// Armed from the start of a request's way through the chain until its
/// response is handed over: dropped armed, it counts the request as 499,
/// and logs it if it holds the request head (while the request waits for
/// the upstream; in the hooks the head is with the plugins). It borrows
/// from the request's future, so watching costs one count up and down.
pub struct AbandonWatch<'a> {
    armed: bool,
    /// The head copy kept for the later phases, while the request is with
    /// the upstream.
    request: Option<RequestHead>,
    chain: &'a Arc<Chain>,
    calls: &'a Arc<LogCalls>,
    metrics: &'a Arc<Metrics>,
    started: Instant,
    request_bytes: &'a BodyBytes,
}

impl<'a> AbandonWatch<'a> {
    /// Watches a request that started at `started`.
    pub fn new(
        chain: &'a Arc<Chain>,
        calls: &'a Arc<LogCalls>,
        metrics: &'a Arc<Metrics>,
        started: Instant,
        request_bytes: &'a BodyBytes,
    ) -> Self {
        calls.outstanding.fetch_add(1, Ordering::AcqRel);
        Self {
            armed: true,
            request: None,
            chain,
            calls,
            metrics,
            started,
            request_bytes,
        }
    }

    /// Holds `request`, the head copy kept for the later phases (if any),
    /// while the request is with the upstream.
    pub fn hold(&mut self, request: Option<RequestHead>) {
        self.request = request;
    }

    /// Gives the held head back (the upstream answered).
    pub fn take(&mut self) -> Option<RequestHead> {
        self.request.take()
    }

    /// The response is handed over: from here its body's completion counts
    /// and logs it.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for AbandonWatch<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.abandoned();
        }
        self.calls.done();
    }
}

impl AbandonWatch<'_> {
    fn abandoned(&mut self) {
        let elapsed = self.started.elapsed();
        self.metrics.request_done(ABANDONED_STATUS, elapsed);
        let Some(request) = self.request.take() else {
            return;
        };
        if !self.chain.has_on_log() {
            return;
        }
        let reason = if self.calls.cutting.load(Ordering::Relaxed) {
            "cut at the end of the shutdown grace before the upstream answered"
        } else {
            "the client went away before the upstream answered"
        };
        let mut head = Response::new(());
        *head.status_mut() =
            StatusCode::from_u16(ABANDONED_STATUS).expect("499 is a valid status code");
        let job = LogJob {
            chain: self.chain.clone(),
            request,
            response: ResponseHead {
                parts: head.into_parts().0,
            },
            calls: self.calls.clone(),
        };
        job.start(Exchange {
            status: ABANDONED_STATUS,
            request_bytes: self.request_bytes.get(),
            response_bytes: 0,
            duration_us: micros(elapsed),
            upstream_duration_us: None,
            responded_by: None,
            error: Some(reason.into()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settles_once_the_last_call_ends_and_counts_aborted_ones() {
        let calls = Arc::new(LogCalls::default());
        assert!(calls.settled(Duration::from_millis(10)).await);
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        calls.spawn(async move {
            let _ = finished.await;
        });
        assert!(!calls.settled(Duration::from_millis(50)).await);
        let waiter = {
            let calls = calls.clone();
            tokio::spawn(async move { calls.settled(Duration::from_secs(10)).await })
        };
        finish.send(()).unwrap();
        assert!(waiter.await.unwrap(), "woken by the last call's end");

        // A call whose task is dropped unfinished does not stay counted.
        let calls_on_it = calls.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move { calls_on_it.spawn(std::future::pending()) });
        })
        .join()
        .unwrap();
        assert!(calls.settled(Duration::from_millis(10)).await);
    }
}
