//! Request limits the proxy enforces itself: the body size for a path
//! (413) and the time a client gets to send the whole request (408); a
//! body the client breaks off or garbles is the client's error too (400).
//!
//! A declared `Content-Length` over the limit is refused before any plugin
//! runs. A chunked body is counted as it streams to the upstream and cut
//! off at the limit, so the upstream never receives more than the limit.
//! Before the 413 goes out, a bounded rest of the body is read and dropped:
//! closing a socket with unread input makes the kernel send a reset, and
//! the reset can destroy the 413 before the client reads it.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::connection::RequestGuard;
use super::errors::ProxyError;

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More bytes than the limit.
    #[error("request body over the {0}-byte limit")]
    TooLarge(u64),
    /// Not received in time.
    #[error("request body not received in time")]
    TimedOut,
    /// The client connection failed.
    #[error(transparent)]
    Client(#[from] hyper::Error),
}

/// Most of an oversized body read and dropped before the 413.
const DRAIN_MAX_BYTES: u64 = 1 << 20;
/// Longest time spent reading and dropping it.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(1);

// 0: no limit was hit.
const VERDICT_TOO_LARGE: u8 = 1;
const VERDICT_TIMED_OUT: u8 = 2;
const VERDICT_CLIENT_FAILED: u8 = 3;

#[derive(Default)]
struct VerdictState {
    verdict: AtomicU8,
    /// The client's body, left here when the size limit cut it off.
    rest: Mutex<Option<Incoming>>,
}

/// What the body limits decided, readable after the body was handed on.
/// A request without a body (the own reader's) has nothing to decide, and
/// keeps no shared state for it: `None`, one allocation fewer.
#[derive(Clone)]
pub struct BodyVerdict(Option<Arc<VerdictState>>);

impl Default for BodyVerdict {
    fn default() -> Self {
        Self(Some(Arc::default()))
    }
}

impl BodyVerdict {
    /// The verdict on `body`: one that can be decided if there is a body.
    pub fn for_body(body: &InboundBody) -> Self {
        match body {
            Some(_) => Self::default(),
            None => Self(None),
        }
    }

    /// The error to answer with, if a limit cut the body off.
    pub fn error(&self, limit: u64) -> Option<ProxyError> {
        match self.0.as_ref()?.verdict.load(Ordering::Relaxed) {
            VERDICT_TOO_LARGE => Some(ProxyError::BodyTooLarge { limit }),
            VERDICT_TIMED_OUT => Some(ProxyError::RequestTimeout),
            VERDICT_CLIENT_FAILED => Some(ProxyError::BadRequestBody),
            _ => None,
        }
    }

    fn set(&self, verdict: u8) {
        // Only a body is cut off, and a body's verdict has its state.
        if let Some(state) = &self.0 {
            state.verdict.store(verdict, Ordering::Relaxed);
        }
    }

    /// Keeps what is left of a body cut off at the size limit, for
    /// [`drain_rest`](Self::drain_rest).
    fn keep_rest(&self, rest: Option<Incoming>) {
        if let Some(state) = &self.0 {
            *state.rest.lock().unwrap_or_else(|p| p.into_inner()) = rest;
        }
    }

    /// Reads and drops what is left of a body cut off at the size limit,
    /// within [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`], so the answer
    /// reaches a client that is still sending.
    pub async fn drain_rest(&self) {
        let Some(state) = &self.0 else { return };
        let rest = state.rest.lock().unwrap_or_else(|p| p.into_inner()).take();
        drain(rest).await;
    }
}

/// A client's request body as it arrives: hyper's, or `None` for a
/// request without one that Tandem's own HTTP/1.1 reader served. Such a
/// request is HTTP/1.1 and has none of the headers that reader hands to
/// hyper (`Content-Length`, `Transfer-Encoding`, `Expect`, `Upgrade`,
/// `TE`), so the proxy skips the checks that look for them.
pub type InboundBody = Option<Incoming>;

/// Reads and drops up to [`DRAIN_MAX_BYTES`] of a body that will not be
/// used, for at most [`DRAIN_MAX_TIME`].
pub async fn drain(body: InboundBody) {
    let Some(mut body) = body else { return };
    let drain = async {
        let mut drained = 0u64;
        while drained <= DRAIN_MAX_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    drained += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
}

/// Whether the client waits for `100 Continue` before it sends the body;
/// then there is nothing to drain, and reading would invite the body.
pub fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Whether the request declares a body larger than `limit`.
pub fn declared_over(headers: &HeaderMap, limit: u64) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|length| length > limit)
}

/// A client's request body with a size limit and a deadline.
pub struct LimitedBody {
    /// None if there is none, or once the size limit cut it off (it is
    /// then in the verdict).
    inner: Option<Incoming>,
    limit: u64,
    read: u64,
    deadline: Instant,
    /// Armed the first time the body has to wait: most requests have no
    /// body, or one that is in with the head, and never need the timer.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    verdict: BodyVerdict,
    /// Keeps the client connection counted as busy while the body is on
    /// its way, which may be after the response has gone out.
    _busy: Option<RequestGuard>,
}

impl LimitedBody {
    /// Limits `inner` to `limit` bytes, all received by `deadline`.
    pub fn new(inner: InboundBody, limit: u64, deadline: Instant, verdict: BodyVerdict) -> Self {
        Self {
            inner,
            limit,
            read: 0,
            deadline,
            timer: None,
            verdict,
            _busy: None,
        }
    }

    /// Holds `busy` until the body is dropped (sent in full, or given up).
    pub fn keeping(mut self, busy: Option<RequestGuard>) -> Self {
        self._busy = busy;
        self
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Some(Err(BodyError::TooLarge(self.limit))));
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.read += data.len() as u64;
                    if self.read > self.limit {
                        self.verdict.set(VERDICT_TOO_LARGE);
                        let rest = self.inner.take();
                        self.verdict.keep_rest(rest);
                        return Poll::Ready(Some(Err(BodyError::TooLarge(self.limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.verdict.set(VERDICT_CLIENT_FAILED);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = self.deadline;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                if timer.as_mut().poll(cx).is_ready() {
                    self.verdict.set(VERDICT_TIMED_OUT);
                    return Poll::Ready(Some(Err(BodyError::TimedOut)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(SizeHint::default, Incoming::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_length_is_compared_and_garbage_is_not_over() {
        let mut headers = HeaderMap::new();
        assert!(!declared_over(&headers, 10));
        headers.insert(http::header::CONTENT_LENGTH, "11".parse().unwrap());
        assert!(declared_over(&headers, 10));
        assert!(!declared_over(&headers, 11));
        headers.insert(http::header::CONTENT_LENGTH, "x".parse().unwrap());
        assert!(
            !declared_over(&headers, 10),
            "hyper rejects a bad length itself"
        );
        let verdict = BodyVerdict::default();
        assert!(verdict.error(1).is_none());
        verdict.set(VERDICT_TOO_LARGE);
        assert!(matches!(
            verdict.error(1),
            Some(ProxyError::BodyTooLarge { limit: 1 })
        ));
    }
}
