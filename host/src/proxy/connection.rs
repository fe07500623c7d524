//! One client connection's activity, and the watchdog that closes a
//! connection that sends no request in time or sits idle, whatever the
//! protocol: hyper times the HTTP/1 request head itself, but not the
//! protocol detection before it, nor an idle HTTP/2 connection.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
// tokio's clock, so tests can run it paused.
use tokio::time::Instant;

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No request arrived within the header read timeout.
    NoRequest,
    /// No request in flight for the idle timeout.
    Idle,
}

impl CloseReason {
    /// Label for metrics.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::NoRequest => "no_request",
            CloseReason::Idle => "idle",
        }
    }
}

/// Requests in flight on one connection and when that last changed.
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Nanoseconds from `opened` to the last start or end of a request.
    changed: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            changed: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = self
            .opened
            .elapsed()
            .as_nanos()
            .try_into()
            .unwrap_or(u64::MAX);
        self.changed.store(now, Ordering::Relaxed);
    }

    /// Marks a request as started; it ends when the guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.touch();
        RequestGuard(self.clone())
    }

    /// Resolves when the connection should be closed: no request within
    /// `first_request`, or no request in flight for `idle`.
    pub async fn closed_when_quiet(&self, first_request: Duration, idle: Duration) -> CloseReason {
        loop {
            let (deadline, reason) = if self.requests.load(Ordering::Relaxed) == 0 {
                (self.opened + first_request, CloseReason::NoRequest)
            } else {
                let changed = Duration::from_nanos(self.changed.load(Ordering::Relaxed));
                (self.opened + changed + idle, CloseReason::Idle)
            };
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                // A request is being served; it is bounded by other limits.
                tokio::time::sleep(idle).await;
                continue;
            }
            if Instant::now() >= deadline {
                return reason;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A request in flight; dropping it ends the request.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body that keeps its request in flight until it is sent or
/// dropped.
pub struct TrackedBody<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> TrackedBody<B> {
    /// Ties `guard` to `inner`.
    pub fn new(inner: B, guard: RequestGuard) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn closes_without_a_first_request_and_when_idle_but_not_while_busy() {
        let activity = Arc::new(Activity::default());
        let reason = activity
            .closed_when_quiet(Duration::from_secs(1), Duration::from_secs(5))
            .await;
        assert_eq!(reason, CloseReason::NoRequest);

        let activity = Arc::new(Activity::default());
        let guard = activity.request_started();
        let watcher = {
            let activity = activity.clone();
            tokio::spawn(async move {
                activity
                    .closed_when_quiet(Duration::from_secs(1), Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!watcher.is_finished(), "a busy connection stays open");
        drop(guard);
        let started = Instant::now();
        assert_eq!(watcher.await.unwrap(), CloseReason::Idle);
        assert!(started.elapsed() >= Duration::from_secs(4));
    }
}
