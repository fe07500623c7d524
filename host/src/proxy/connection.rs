//! One client connection's activity, and the watchdog that closes a
//! connection that sends no request in time or sits idle, whatever the
//! protocol.
//!
//! The watchdog also times the wait for the next HTTP/1 request head,
//! which hyper could do itself (`header_read_timeout`); but hyper arms a
//! new boxed timer for every request on the connection, and that costs
//! more per request than the rest of the connection's bookkeeping. Here
//! one timer per connection covers every wait.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
// tokio's clock, so tests can run it paused.
use tokio::sync::Notify;
use tokio::time::Instant;

use super::received_headers::{CarriesReceivedHeaders, ReceivedHeaders};

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
    /// Signalled when the last request in flight ends.
    quiet: Notify,
    requests: AtomicU64,
    /// True once a request came over HTTP/2, where an idle connection is
    /// normal between requests and only the idle timeout applies.
    multiplexed: AtomicBool,
    /// Nanoseconds from `opened` to the last end of a request.
    changed: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            quiet: Notify::new(),
            requests: AtomicU64::new(0),
            multiplexed: AtomicBool::new(false),
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

    /// Marks a request that came as `version` as started; it ends when the
    /// guard is dropped.
    pub fn request_started(self: &Arc<Self>, version: http::Version) -> RequestGuard {
        if version == http::Version::HTTP_2 {
            self.multiplexed.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        // No clock read here: the idle wait is measured only while nothing
        // is in flight, so from the end of the last request, which the
        // guard notes when it is dropped.
        RequestGuard(self.clone())
    }

    /// Counts the connection as busy, as a request in flight does, until
    /// the guard is dropped: for a request body still arriving after its
    /// response has gone out (HTTP/1 is full duplex).
    pub fn busy(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// True if no request is in flight (nor a request body arriving).
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Resolves when the connection should be closed: no request within
    /// `request_head`, or no request in flight for `idle`. Between HTTP/1
    /// requests the next head must also come within `request_head`, so the
    /// smaller of the two applies there.
    pub async fn closed_when_quiet(&self, request_head: Duration, idle: Duration) -> CloseReason {
        loop {
            let (deadline, reason) = if self.requests.load(Ordering::Relaxed) == 0 {
                (self.opened + request_head, CloseReason::NoRequest)
            } else {
                let changed = Duration::from_nanos(self.changed.load(Ordering::Relaxed));
                let wait = if self.multiplexed.load(Ordering::Relaxed) {
                    idle
                } else {
                    idle.min(request_head)
                };
                (self.opened + changed + wait, CloseReason::Idle)
            };
            if self.in_flight.load(Ordering::Acquire) > 0 {
                // A request is being served; it is bounded by other limits.
                // The wait starts again when it ends (a request that ends
                // before this waits leaves a permit behind).
                self.quiet.notified().await;
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
        self.0.touch();
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.quiet.notify_one();
        }
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

impl<B: CarriesReceivedHeaders> CarriesReceivedHeaders for TrackedBody<B> {
    fn take_received(&mut self) -> Option<Box<ReceivedHeaders>> {
        self.inner.take_received()
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

    /// Watches `activity` with a 1 s head timeout and a 5 s idle timeout.
    fn watch(activity: &Arc<Activity>) -> tokio::task::JoinHandle<CloseReason> {
        let activity = activity.clone();
        tokio::spawn(async move {
            activity
                .closed_when_quiet(Duration::from_secs(1), Duration::from_secs(5))
                .await
        })
    }

    #[tokio::test(start_paused = true)]
    async fn closes_without_a_first_request_and_when_idle_but_not_while_busy() {
        let activity = Arc::new(Activity::default());
        let reason = activity
            .closed_when_quiet(Duration::from_secs(1), Duration::from_secs(5))
            .await;
        assert_eq!(reason, CloseReason::NoRequest);

        let activity = Arc::new(Activity::default());
        let guard = activity.request_started(http::Version::HTTP_2);
        let watcher = watch(&activity);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!watcher.is_finished(), "a busy connection stays open");
        drop(guard);
        let started = Instant::now();
        assert_eq!(watcher.await.unwrap(), CloseReason::Idle);
        assert!(started.elapsed() >= Duration::from_secs(4));
    }

    /// How long a connection that served one request over `version` stays
    /// open afterwards, with a 1 s head timeout and a 5 s idle timeout.
    async fn open_after_one_request(version: http::Version) -> Duration {
        let activity = Arc::new(Activity::default());
        drop(activity.request_started(version));
        let ended = Instant::now();
        let reason = activity
            .closed_when_quiet(Duration::from_secs(1), Duration::from_secs(5))
            .await;
        assert_eq!(reason, CloseReason::Idle);
        ended.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_the_next_head_starts_when_a_long_request_ends() {
        let activity = Arc::new(Activity::default());
        let guard = activity.request_started(http::Version::HTTP_11);
        let watcher = watch(&activity);
        // Longer than the idle timeout, and not a multiple of it.
        tokio::time::sleep(Duration::from_secs(7)).await;
        drop(guard);
        let ended = Instant::now();
        assert_eq!(watcher.await.unwrap(), CloseReason::Idle);
        let waited = ended.elapsed();
        assert!(
            (Duration::from_secs(1)..Duration::from_secs(2)).contains(&waited),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_body_still_arriving_keeps_the_connection_busy() {
        let activity = Arc::new(Activity::default());
        let body = {
            let _response = activity.request_started(http::Version::HTTP_11);
            activity.busy()
        };
        let watcher = watch(&activity);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!watcher.is_finished(), "busy while the body arrives");
        drop(body);
        assert_eq!(watcher.await.unwrap(), CloseReason::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_http1_head_must_come_in_time_but_http2_may_idle() {
        let http1 = open_after_one_request(http::Version::HTTP_11).await;
        assert!(
            (Duration::from_secs(1)..Duration::from_secs(2)).contains(&http1),
            "{http1:?}"
        );
        let http2 = open_after_one_request(http::Version::HTTP_2).await;
        assert!(
            (Duration::from_secs(5)..Duration::from_secs(6)).contains(&http2),
            "{http2:?}"
        );
    }
}
