//! Bodies that stream through untouched while the proxy counts their bytes,
//! and the response body that reports the finished exchange.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::limits::{BodyError, LimitedBody};
use super::received_headers::{CarriesReceivedHeaders, ReceivedHeaders};
use super::upstream_exchange::{ExchangeError, Tunnel, UpstreamResponse};

/// The upstream's response body, as read from its connection.
pub type UpstreamResponseBody = UpstreamResponse;

/// How many bytes of a request body have been read, shared by the body on
/// its way upstream and what reports the exchange. A request without a
/// body shares nothing (one allocation fewer): its count stays at zero.
#[derive(Clone, Default)]
pub struct BodyBytes(Option<Arc<AtomicU64>>);

impl BodyBytes {
    /// A count for a request that has a body if `has_body`.
    pub fn new(has_body: bool) -> Self {
        Self(has_body.then(Arc::default))
    }

    /// The bytes read so far.
    pub fn get(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |read| read.load(Ordering::Relaxed))
    }

    fn add(&self, bytes: u64) {
        if let Some(read) = &self.0 {
            read.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// A request body on its way upstream, counting the bytes read.
pub struct CountingBody {
    inner: LimitedBody,
    read: BodyBytes,
}

impl CountingBody {
    /// Wraps `inner`; `read` grows as data frames pass.
    pub fn new(inner: LimitedBody, read: BodyBytes) -> Self {
        Self { inner, read }
    }
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.read.add(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a response body ended.
pub enum BodyEnd<'a> {
    /// It reached its end.
    Complete,
    /// It was dropped before its end: the client went away, or the
    /// connection was cut.
    Dropped,
    /// Reading it from the upstream failed.
    Failed(&'a ExchangeError),
}

/// Called once when a response body has been sent in full, failed, or been
/// dropped (the client went away).
pub trait Completion: Send + 'static {
    /// `sent` is the number of body bytes handed to the connection; `end`
    /// how the body ended.
    fn finish(self: Box<Self>, sent: u64, end: BodyEnd<'_>);
}

enum Source {
    Upstream(UpstreamResponseBody),
    Full(Option<Bytes>),
}

/// The body sent to the client: the upstream's, streamed, or a full one
/// built by a plugin or the proxy.
pub struct ResponseBody {
    source: Source,
    sent: u64,
    completion: Option<Box<dyn Completion>>,
}

impl ResponseBody {
    /// Streams the upstream's body.
    pub fn upstream(body: UpstreamResponseBody) -> Self {
        Self {
            source: Source::Upstream(body),
            sent: 0,
            completion: None,
        }
    }

    /// A body held in memory.
    pub fn full(bytes: Bytes) -> Self {
        Self {
            source: Source::Full(Some(bytes).filter(|b| !b.is_empty())),
            sent: 0,
            completion: None,
        }
    }

    /// The upstream connection of a `101 Switching Protocols` answer.
    pub fn take_tunnel(&mut self) -> Option<Tunnel> {
        match &mut self.source {
            Source::Upstream(body) => body.take_tunnel(),
            Source::Full(_) => None,
        }
    }

    /// Runs `completion` when the body is done.
    pub fn on_complete(mut self, completion: Box<dyn Completion>) -> Self {
        self.completion = Some(completion);
        self
    }

    fn finish(&mut self, end: BodyEnd<'_>) {
        if let Some(completion) = self.completion.take() {
            completion.finish(self.sent, end);
        }
    }
}

impl CarriesReceivedHeaders for ResponseBody {
    fn take_received(&mut self) -> Option<Box<ReceivedHeaders>> {
        match &mut self.source {
            Source::Upstream(body) => body.take_received(),
            Source::Full(_) => None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        let polled = match &mut self.source {
            Source::Upstream(body) => Pin::new(body).poll_frame(cx),
            Source::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
                if self.is_end_stream() {
                    self.finish(BodyEnd::Complete);
                }
            }
            Poll::Ready(None) => self.finish(BodyEnd::Complete),
            Poll::Ready(Some(Err(error))) => {
                if let Some(completion) = self.completion.take() {
                    completion.finish(self.sent, BodyEnd::Failed(error));
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Upstream(body) => body.is_end_stream(),
            Source::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Upstream(body) => body.size_hint(),
            Source::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Empty bodies are never polled, so they complete here too.
        let end = if self.is_end_stream() {
            BodyEnd::Complete
        } else {
            BodyEnd::Dropped
        };
        self.finish(end);
    }
}
