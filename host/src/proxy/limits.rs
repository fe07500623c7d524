//! Request limits the proxy enforces itself: the body size for a path
//! (413) and the time a client gets to send the whole request (408); a
//! body the client breaks off or garbles is the client's error too (400).
//!
//! A declared `Content-Length` over the limit is refused before any plugin
//! runs. A chunked body is counted as it streams to the upstream and cut
//! off at the limit, so the upstream never receives more than the limit.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

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

// 0: no limit was hit.
const VERDICT_TOO_LARGE: u8 = 1;
const VERDICT_TIMED_OUT: u8 = 2;
const VERDICT_CLIENT_FAILED: u8 = 3;

/// What the body limits decided, readable after the body was handed on.
#[derive(Clone, Default)]
pub struct BodyVerdict(Arc<AtomicU8>);

impl BodyVerdict {
    /// The error to answer with, if a limit cut the body off.
    pub fn error(&self, limit: u64) -> Option<ProxyError> {
        match self.0.load(Ordering::Relaxed) {
            VERDICT_TOO_LARGE => Some(ProxyError::BodyTooLarge { limit }),
            VERDICT_TIMED_OUT => Some(ProxyError::RequestTimeout),
            VERDICT_CLIENT_FAILED => Some(ProxyError::BadRequestBody),
            _ => None,
        }
    }

    fn set(&self, verdict: u8) {
        self.0.store(verdict, Ordering::Relaxed);
    }
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
    inner: Incoming,
    limit: u64,
    read: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    verdict: BodyVerdict,
}

impl LimitedBody {
    /// Limits `inner` to `limit` bytes, all received by `deadline`.
    pub fn new(inner: Incoming, limit: u64, deadline: Instant, verdict: BodyVerdict) -> Self {
        Self {
            inner,
            limit,
            read: 0,
            deadline: Box::pin(tokio::time::sleep_until(deadline.into())),
            verdict,
        }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.read += data.len() as u64;
                    if self.read > self.limit {
                        self.verdict.set(VERDICT_TOO_LARGE);
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
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.verdict.set(VERDICT_TIMED_OUT);
                    return Poll::Ready(Some(Err(BodyError::TimedOut)));
                }
                Poll::Pending
            }
        }
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
