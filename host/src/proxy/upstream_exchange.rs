//! One request on one upstream connection, run in the request's own task:
//! the head and body written out while the response head is awaited, then
//! the response body read as the client takes it. The connection goes
//! back to its pool the moment the response's last byte is read, if it
//! can take another request.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Instant, Sleep};

use super::head_buffer;
use super::header_map_pool;
use super::received_headers::{CarriesReceivedHeaders, ReceivedHeaders};
use super::request_lines::OutgoingLines;
use super::silence::Silence;
use super::upstream_codec::{
    BodyDecoder, Decoded, Framing, ResponseError, encode_chunk, encode_last_chunk,
    encode_request_head, encode_request_lines, parse_response_head,
};
use super::upstream_pool::IdleConnections;

/// Room kept free in a connection's read buffer before each read.
const READ_ROOM: usize = 4 * 1024;
/// What the read buffer grows by when that room is not there.
const READ_GROWTH: usize = 32 * 1024;
/// Most informational (1xx) responses skipped before the final one.
const MAX_INFORMATIONAL: usize = 32;

/// An open connection to the upstream and what has been read from it but
/// not yet taken.
pub struct UpstreamConnection {
    stream: TcpStream,
    buffer: BytesMut,
    /// Times the wait for each response head. One timer per connection,
    /// set to each request's deadline before its exchange: moving a
    /// registered timer later costs one atomic operation, while a timer
    /// made per request is registered with tokio's timer wheel and removed
    /// again (the wheel re-files this one when its old deadline passes).
    /// It is registered on its first setting, and again after it fires,
    /// which happens only once the connection has sat idle for longer than
    /// the upstream timeout. Between exchanges it still holds the waker of
    /// the request that last waited on it: when it fires in the pool, that
    /// task gets one spurious wake-up (on this worker's thread), and a
    /// finished task's memory is kept until then.
    head_timer: Pin<Box<Sleep>>,
}

impl UpstreamConnection {
    /// A connection over `stream`, nothing read yet.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buffer: BytesMut::new(),
            head_timer: Box::pin(tokio::time::sleep_until(Instant::now())),
        }
    }

    /// True if an idle connection can still take a request: the upstream
    /// has neither closed it nor sent anything unasked. Costs a system
    /// call only when the socket was reported readable.
    pub fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Err(error) => error.kind() == std::io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }

    /// Reads what has arrived into the buffer; `Ok(0)` is the end.
    ///
    /// Through `poll_read`, which takes a read that filled less than the
    /// room offered as the socket drained: the probe in
    /// [`is_open`](Self::is_open) then costs no system call.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        fill(&mut self.stream, &mut self.buffer, cx)
    }
}

/// Reads what has arrived on `io` into `buffer`; `Ok(0)` is the end.
fn fill(
    io: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if buffer.capacity() - buffer.len() < READ_ROOM {
        buffer.reserve(READ_GROWTH);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buffer)
}

/// Why an exchange with the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The connection closed before a byte of the response came.
    #[error("the application closed the connection without answering")]
    Closed,
    /// The connection closed in the middle of the response.
    #[error("the application closed the connection in the middle of its response")]
    Truncated,
    /// Writing the request failed.
    #[error("writing the request to the application")]
    Write(#[source] std::io::Error),
    /// Reading the response failed.
    #[error("reading the application's response")]
    Read(#[source] std::io::Error),
    /// The response broke HTTP/1.1.
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// The request body failed on its way (the client's side).
    #[error("the request body failed")]
    RequestBody(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The request body did not fit its declared framing.
    #[error("the request body did not match its declared length")]
    RequestLength,
    /// The request body broke while the response was coming (the client
    /// left, or its body was bad or late), and the connection was shut
    /// down under the response: the client's doing, not the upstream's.
    #[error("the request body broke on its way, so the exchange was ended")]
    UploadBroken,
    /// The upstream sent nothing for too long in the middle of its body.
    #[error("the application sent nothing for {0:?} in the middle of its response body")]
    Silent(Duration),
    /// The response head did not come by the deadline.
    #[error("no response head from the application in time")]
    TimedOut,
}

impl ExchangeError {
    /// True if the connection was reset or broken under the exchange.
    pub fn is_reset(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        match self {
            ExchangeError::Write(error) | ExchangeError::Read(error) => {
                matches!(
                    error.kind(),
                    ConnectionReset | BrokenPipe | ConnectionAborted
                )
            }
            _ => false,
        }
    }
}

/// An exchange that failed, and whether any of the response had come.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong.
    pub error: ExchangeError,
    /// True if the upstream had sent part of a response.
    pub answered: bool,
}

/// The request body on its way out, framed as its head declares.
struct Outgoing<B> {
    /// `None` once its end has been framed.
    body: Option<B>,
    framing: Framing,
    /// Bytes still allowed by a `Content-Length`.
    remaining: u64,
    /// Boxed: rare, and large beside the rest.
    trailers: Option<Box<HeaderMap>>,
    /// Framed bytes not yet written.
    pending: Bytes,
}

impl<B> Outgoing<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn new(head: Bytes, body: B, framing: Framing) -> Result<Self, ExchangeError> {
        let remaining = match framing {
            Framing::Length(length) => length,
            _ => 0,
        };
        let mut outgoing = Self {
            body: Some(body),
            framing,
            remaining,
            trailers: None,
            pending: head,
        };
        // A body known to be empty is never polled: its end goes out with
        // the head.
        if outgoing.body.as_ref().is_some_and(Body::is_end_stream) {
            outgoing.body = None;
            let end = outgoing.end()?;
            if !end.is_empty() {
                let mut joined = BytesMut::from(&outgoing.pending[..]);
                joined.extend_from_slice(&end);
                outgoing.pending = joined.freeze();
            }
        }
        Ok(outgoing)
    }

    /// Writes what is framed and frames what the body gives, until both
    /// are done or one has to wait.
    fn poll_send(
        &mut self,
        stream: &mut (impl AsyncWrite + Unpin),
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ExchangeError>> {
        loop {
            while !self.pending.is_empty() {
                let written = ready!(Pin::new(&mut *stream).poll_write(cx, &self.pending))
                    .map_err(ExchangeError::Write)?;
                if written == 0 {
                    return Poll::Ready(Err(ExchangeError::Write(
                        std::io::ErrorKind::WriteZero.into(),
                    )));
                }
                self.pending.advance(written);
            }
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.pending = self.frame(data)?,
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.trailers = Some(Box::new(trailers));
                        }
                    }
                },
                Some(Err(error)) => {
                    return Poll::Ready(Err(ExchangeError::RequestBody(error.into())));
                }
                None => {
                    self.body = None;
                    self.pending = self.end()?;
                }
            }
        }
    }

    /// The bytes that carry `data` in the body's framing.
    fn frame(&mut self, data: Bytes) -> Result<Bytes, ExchangeError> {
        if data.is_empty() {
            return Ok(data);
        }
        match self.framing {
            Framing::Length(_) => {
                let length = data.len() as u64;
                if length > self.remaining {
                    return Err(ExchangeError::RequestLength);
                }
                self.remaining -= length;
                Ok(data)
            }
            Framing::Chunked => {
                let mut framed = BytesMut::new();
                encode_chunk(&data, &mut framed);
                Ok(framed.freeze())
            }
            Framing::Empty | Framing::UntilClose => Err(ExchangeError::RequestLength),
        }
    }

    /// The bytes that end the body.
    fn end(&mut self) -> Result<Bytes, ExchangeError> {
        match self.framing {
            Framing::Length(_) if self.remaining > 0 => Err(ExchangeError::RequestLength),
            Framing::Chunked => {
                let mut framed = BytesMut::new();
                encode_last_chunk(self.trailers.as_deref(), &mut framed);
                Ok(framed.freeze())
            }
            _ => Ok(Bytes::new()),
        }
    }
}

/// A request framed for the wire: its head written out and its body
/// ready to follow.
pub struct Prepared<B> {
    method: http::Method,
    outgoing: Outgoing<B>,
    /// The head again, for a request that may be sent twice.
    repeatable: Option<Bytes>,
}

/// What it takes to send a request again: its method and its head.
pub struct Repeat {
    method: Method,
    head: Bytes,
}

impl<B> Prepared<B> {
    /// The means to send the same request again, if it is safe to repeat:
    /// a bodiless request with an idempotent method (RFC 9110, 9.2.2: `GET`,
    /// `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`), all of which is its
    /// head, so the bytes already written out are sent again; nothing is
    /// copied.
    pub fn repeat(&self) -> Option<Repeat> {
        Some(Repeat {
            method: self.method.clone(),
            head: self.repeatable.clone()?,
        })
    }
}

impl Repeat {
    /// The request, prepared again.
    pub fn prepared<B>(self) -> Prepared<B> {
        Prepared {
            method: self.method,
            outgoing: Outgoing {
                body: None,
                framing: Framing::Empty,
                remaining: 0,
                trailers: None,
                pending: self.head.clone(),
            },
            repeatable: Some(self.head),
        }
    }
}

/// Writes out the head of `request` (origin-form target, headers as they
/// go upstream, or `lines` in their place when the request carries its
/// lines as received) and frames its body as the head declares.
pub fn prepare<B>(
    request: Request<B>,
    lines: Option<OutgoingLines<'_>>,
) -> Result<Prepared<B>, ExchangeError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    // Lines as received are only ever a bodiless request's headers.
    debug_assert!(lines.is_none() || body.is_end_stream());
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |target| target.as_str());
    let (head, framing) = head_buffer::write_head(|out| match lines {
        Some(lines) => encode_request_lines(&parts.method, target, lines, out),
        None => encode_request_head(&parts.method, target, &parts.headers, out),
    });
    // Written out: the map goes back for the next head on this thread.
    header_map_pool::give_back(parts.headers);
    let bodiless = framing == Framing::Empty && body.is_end_stream();
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    Ok(Prepared {
        repeatable: (bodiless && idempotent).then(|| head.clone()),
        method: parts.method,
        outgoing: Outgoing::new(head, body, framing)?,
    })
}

/// Sends a prepared request on `connection` and waits for the response
/// head. Informational responses other than `101` are skipped.
///
/// If the head comes before the request body has all gone out (the
/// upstream answered early, or streams its answer as it reads), the rest
/// of the body goes on in a task of its own, for at most `upload_timeout`,
/// whether or not the client reads the response; that connection is not
/// used again. If the request body breaks on the way (the client left), the
/// connection is shut down, which ends the response too.
///
/// With `keep_received`, a response head whose header lines can go to the
/// client as they came keeps them so (see `ReceivedHeaders`).
pub async fn exchange<B>(
    mut connection: UpstreamConnection,
    prepared: Prepared<B>,
    idle: &Arc<IdleConnections>,
    timeouts: Timeouts,
    keep_received: bool,
) -> Result<Response<UpstreamResponse>, Failed>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Prepared {
        method, outgoing, ..
    } = prepared;
    connection.head_timer.as_mut().reset(timeouts.head_deadline);
    let mut outgoing = Some(outgoing);
    let mut write_failed = None;
    let mut answered = false;
    let mut informational = 0;
    let head = poll_fn(|cx| {
        loop {
            if let Some(sending) = outgoing.as_mut() {
                match sending.poll_send(&mut connection.stream, cx) {
                    Poll::Ready(Ok(())) => outgoing = None,
                    // The upstream may have answered before it stopped
                    // reading (a 413, say): its answer is still read.
                    Poll::Ready(Err(ExchangeError::Write(error))) => {
                        write_failed = Some(error);
                        outgoing = None;
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => {}
                }
            }
            // Nothing to parse before the first bytes come.
            let parsed = if connection.buffer.is_empty() {
                None
            } else {
                parse_response_head(&mut connection.buffer, &method, keep_received)?
            };
            match parsed {
                Some(head)
                    if head.parts.status.is_informational()
                        && head.parts.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    informational += 1;
                    if informational > MAX_INFORMATIONAL {
                        return Poll::Ready(Err(ExchangeError::Response(
                            ResponseError::MalformedHead(format!(
                                "more than {MAX_INFORMATIONAL} informational responses"
                            )),
                        )));
                    }
                    continue;
                }
                Some(head) => return Poll::Ready(Ok(head)),
                None => {}
            }
            let filled = match connection.poll_fill(cx) {
                Poll::Ready(filled) => filled,
                Poll::Pending => {
                    // Checked only when the exchange has to wait.
                    if connection.head_timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(ExchangeError::TimedOut));
                    }
                    return Poll::Pending;
                }
            };
            match filled {
                Ok(0) => {
                    return Poll::Ready(Err(match write_failed.take() {
                        Some(error) => ExchangeError::Write(error),
                        None if answered => ExchangeError::Truncated,
                        None => ExchangeError::Closed,
                    }));
                }
                Ok(_) => answered = true,
                Err(error) => return Poll::Ready(Err(ExchangeError::Read(error))),
            }
        }
    })
    .await
    .map_err(|error| Failed { error, answered })?;
    let upgraded = head.parts.status == StatusCode::SWITCHING_PROTOCOLS;
    let mut reusable = head.keep_alive && write_failed.is_none() && !upgraded;
    let reader = match outgoing {
        Some(outgoing) if !upgraded => {
            reusable = false;
            let UpstreamConnection { stream, buffer, .. } = connection;
            let (half, write) = stream.into_split();
            let upload_broken = Arc::new(AtomicBool::new(false));
            finish_upload(outgoing, write, timeouts.upload, upload_broken.clone());
            Reader::Half {
                half,
                buffer,
                upload_broken,
            }
        }
        _ => Reader::Whole(connection),
    };
    let mut body = UpstreamResponse {
        live: Some(Box::new(Live {
            reader,
            reusable,
            decoder: BodyDecoder::new(head.framing),
            idle: idle.clone(),
            silence: Silence::new(timeouts.body_silence),
        })),
        upgraded,
        received: head.received,
    };
    // A bodiless response is never polled: its connection goes back now.
    if !upgraded
        && body.is_end_stream()
        && let Some(live) = body.live.take()
    {
        live.release();
    }
    Ok(Response::from_parts(head.parts, body))
}

/// Sends the rest of a request body through `write`, in a task of its
/// own, for at most `timeout`. If the body breaks, `broken` is set before
/// the connection is shut down.
fn finish_upload<B>(
    mut outgoing: Outgoing<B>,
    mut write: OwnedWriteHalf,
    timeout: Duration,
    broken: Arc<AtomicBool>,
) where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(async move {
        let upload = poll_fn(|cx| outgoing.poll_send(&mut write, cx));
        match tokio::time::timeout(timeout, upload).await {
            Ok(Ok(())) => {}
            Ok(Err(error @ (ExchangeError::RequestBody(_) | ExchangeError::RequestLength))) => {
                // The client left, or its body broke: the upstream waits
                // for the rest of a body that will never come, and may send
                // nothing more until then, and no one would notice. Shut
                // the connection down both ways: the upstream sees the
                // request end short, and the response read from the other
                // half ends (cut, an error) instead of waiting for ever.
                tracing::debug!(%error, "the request body broke after the response began; closing the upstream connection");
                broken.store(true, Ordering::Release);
                let _ = rustix::net::shutdown(write.as_ref(), rustix::net::Shutdown::Both);
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "the rest of a request body did not go upstream")
            }
            Err(_) => tracing::debug!(
                ?timeout,
                "the rest of a request body was not taken upstream in time"
            ),
        }
        // Dropped, the write half would send a FIN, which an application
        // still streaming its answer could take for the client leaving;
        // the socket closes with the read half instead.
        write.forget();
    });
}

/// Where a response body is read from.
enum Reader {
    /// The whole connection, which may go back to the pool.
    Whole(UpstreamConnection),
    /// The read half of a connection whose request body is still going
    /// out through the other half; it is not pooled.
    Half {
        half: OwnedReadHalf,
        buffer: BytesMut,
        /// Set when the upload broke and the connection was shut down.
        upload_broken: Arc<AtomicBool>,
    },
}

impl Reader {
    fn buffer(&mut self) -> &mut BytesMut {
        match self {
            Reader::Whole(connection) => &mut connection.buffer,
            Reader::Half { buffer, .. } => buffer,
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        match self {
            Reader::Whole(connection) => connection.poll_fill(cx),
            Reader::Half { half, buffer, .. } => fill(half, buffer, cx),
        }
    }

    /// What ended a response read short: `seen`, unless the connection
    /// was shut down because the request body broke, which makes it the
    /// client's doing.
    fn cut_by(&self, seen: ExchangeError) -> ExchangeError {
        match self {
            Reader::Half { upload_broken, .. } if upload_broken.load(Ordering::Acquire) => {
                ExchangeError::UploadBroken
            }
            _ => seen,
        }
    }
}

/// A response body still being read from its connection.
struct Live {
    reader: Reader,
    /// False once the connection cannot take another request.
    reusable: bool,
    decoder: BodyDecoder,
    idle: Arc<IdleConnections>,
    silence: Silence,
}

/// The time limits of one exchange.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// When the response head must have come by.
    pub head_deadline: Instant,
    /// For the rest of a request body still going out.
    pub upload: Duration,
    /// For the upstream's silence in the middle of its response body.
    pub body_silence: Duration,
}

/// The upstream's response body, read from the connection as it is
/// polled.
pub struct UpstreamResponse {
    /// `None` once the body has ended or failed. Boxed: the response is
    /// moved several times on its way to the client, and with the
    /// connection inline it was over twice as large (callgrind counted
    /// about 700 fewer instructions per request boxed, the allocation
    /// included).
    live: Option<Box<Live>>,
    upgraded: bool,
    /// The head's header lines, when they go on as they came.
    received: Option<Box<ReceivedHeaders>>,
}

impl CarriesReceivedHeaders for UpstreamResponse {
    fn take_received(&mut self) -> Option<Box<ReceivedHeaders>> {
        self.received.take()
    }
}

/// An upstream connection that switched protocols, and what the upstream
/// sent after its `101` that is already read.
pub struct Tunnel {
    /// The connection.
    pub stream: TcpStream,
    /// Bytes of the new protocol already read.
    pub buffered: Bytes,
}

impl Live {
    /// The response has ended: the connection goes back to the pool if it
    /// can take another request (whole, nothing unasked read, nothing
    /// failed); otherwise it closes.
    fn release(self) {
        if let Reader::Whole(connection) = self.reader
            && self.reusable
            && connection.buffer.is_empty()
        {
            self.idle.checkin(connection);
        }
    }
}

impl UpstreamResponse {
    /// The connection of a `101 Switching Protocols` answer, once.
    pub fn take_tunnel(&mut self) -> Option<Tunnel> {
        if !self.upgraded {
            return None;
        }
        match self.live.take()?.reader {
            Reader::Whole(connection) => Some(Tunnel {
                stream: connection.stream,
                buffered: connection.buffer.freeze(),
            }),
            Reader::Half { .. } => None,
        }
    }
}

impl Body for UpstreamResponse {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        let this = &mut *self;
        let Some(live) = this.live.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            let decoded = match live.decoder.decode(live.reader.buffer()) {
                Ok(decoded) => decoded,
                Err(error) => {
                    this.live = None;
                    return Poll::Ready(Some(Err(error.into())));
                }
            };
            match decoded {
                Decoded::Data(data) => {
                    if live.decoder.is_ended()
                        && let Some(live) = this.live.take()
                    {
                        live.release();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Decoded::End(trailers) => {
                    if let Some(live) = this.live.take() {
                        live.release();
                    }
                    return Poll::Ready(trailers.map(|trailers| Ok(Frame::trailers(trailers))));
                }
                Decoded::NeedMore => {}
            }
            let filled = match live.reader.poll_fill(cx) {
                Poll::Ready(filled) => {
                    live.silence.heard();
                    filled
                }
                Poll::Pending if live.silence.poll_expired(cx) => {
                    let limit = live.silence.limit();
                    this.live = None;
                    return Poll::Ready(Some(Err(ExchangeError::Silent(limit))));
                }
                Poll::Pending => return Poll::Pending,
            };
            let failure = match filled {
                Ok(0) if live.decoder.ends_at_close() => {
                    this.live = None;
                    return Poll::Ready(None);
                }
                Ok(0) => ExchangeError::Truncated,
                Ok(_) => continue,
                Err(error) => ExchangeError::Read(error),
            };
            let error = live.reader.cut_by(failure);
            this.live = None;
            return Poll::Ready(Some(Err(error)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.live
            .as_ref()
            .is_none_or(|live| live.decoder.is_ended())
    }

    fn size_hint(&self) -> SizeHint {
        match self.live.as_ref() {
            None => SizeHint::with_exact(0),
            Some(live) => match live.decoder.remaining() {
                Some(remaining) => SizeHint::with_exact(remaining),
                None => SizeHint::default(),
            },
        }
    }
}

impl std::fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamResponse")
            .field("live", &self.live.is_some())
            .field("upgraded", &self.upgraded)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::{BodyExt, Empty, Full};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::proxy::upstream_pool::{UpstreamError, UpstreamPool};

    /// A request body the test feeds as it goes.
    struct Fed(mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|data| data.map(|data| Ok(Frame::data(data))))
        }
    }

    /// An upstream that takes one connection and runs `script` on it.
    async fn upstream<F, Fut>(script: F) -> std::net::SocketAddr
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            script(stream).await;
        });
        address
    }

    /// Reads from `stream` until what was read ends with `end`.
    async fn read_until(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
        let mut read = Vec::new();
        let mut chunk = [0u8; 4096];
        while !read.ends_with(end) {
            let count = stream.read(&mut chunk).await.expect("read");
            assert!(
                count > 0,
                "closed after {:?}",
                String::from_utf8_lossy(&read)
            );
            read.extend_from_slice(&chunk[..count]);
        }
        read
    }

    /// What an upstream from [`answering`] does after its answer.
    #[derive(Clone, Copy)]
    enum After {
        Close,
        Wait,
    }

    /// An upstream that reads one request head and sends `answer`.
    async fn answering(answer: &'static [u8], after: After) -> std::net::SocketAddr {
        upstream(move |mut stream| async move {
            read_until(&mut stream, b"\r\n\r\n").await;
            stream.write_all(answer).await.expect("answer");
            if let After::Wait = after {
                let _ = stream.read(&mut [0u8; 1]).await;
            }
        })
        .await
    }

    /// A GET through `pool`, which must get a response head.
    async fn get_from(pool: &UpstreamPool) -> Response<UpstreamResponse> {
        pool.send(get()).await.expect("a response").response
    }

    fn pool(address: std::net::SocketAddr) -> UpstreamPool {
        let authority = address.to_string().parse().expect("an authority");
        UpstreamPool::new(
            authority,
            Duration::from_secs(2),
            Duration::from_secs(90),
            8,
        )
    }

    fn get() -> Request<Empty<Bytes>> {
        Request::get("/")
            .header("host", "app")
            .body(Empty::new())
            .expect("a request")
    }

    async fn collect(
        body: UpstreamResponse,
    ) -> Result<http_body_util::Collected<Bytes>, ExchangeError> {
        body.collect().await
    }

    #[tokio::test]
    async fn a_chunked_request_goes_out_chunked_and_a_chunked_answer_is_read_with_trailers() {
        let (seen, received) = tokio::sync::oneshot::channel();
        let address = upstream(|mut stream| async move {
            let request = read_until(&mut stream, b"0\r\nx-sum: 9\r\n\r\n").await;
            let _ = seen.send(request);
            let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-t: 1\r\n\r\n";
            stream.write_all(answer).await.expect("answer");
            let _ = stream.read(&mut [0u8; 1]).await;
        })
        .await;
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("9"));
        let body = Full::new(Bytes::from_static(b"hello"))
            .with_trailers(std::future::ready(Some(Ok(trailers))));
        let request = Request::post("/up")
            .header("host", "app")
            .header("transfer-encoding", "chunked")
            .body(body)
            .expect("a request");
        let pool = pool(address);
        let response = pool.send(request).await.expect("a response").response;
        let collected = collect(response.into_body()).await.expect("a body");
        assert_eq!(collected.trailers().expect("trailers")["x-t"], "1");
        assert_eq!(collected.to_bytes(), "ok");
        let request = received.await.expect("the request");
        assert_eq!(
            String::from_utf8_lossy(&request),
            "POST /up HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\nx-sum: 9\r\n\r\n"
        );
        assert_eq!(pool.idle_len(), 1, "the connection went back");
    }

    #[tokio::test]
    async fn informational_answers_are_skipped() {
        let address = answering(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            After::Wait,
        )
        .await;
        let response = get_from(&pool(address)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = collect(response.into_body()).await.expect("a body");
        assert_eq!(body.to_bytes(), "ok");
    }

    #[tokio::test]
    async fn a_switch_of_protocols_hands_over_the_connection_and_what_came_after_it() {
        let address = upstream(|mut stream| async move {
            read_until(&mut stream, b"\r\n\r\n").await;
            let answer = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\nEARLY";
            stream.write_all(answer).await.expect("answer");
            read_until(&mut stream, b"ping").await;
            stream.write_all(b"pong").await.expect("pong");
        })
        .await;
        let pool = pool(address);
        let mut response = pool.send(get()).await.expect("a response").response;
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let mut tunnel = response.body_mut().take_tunnel().expect("a tunnel");
        assert_eq!(tunnel.buffered, "EARLY");
        tunnel.stream.write_all(b"ping").await.expect("ping");
        assert_eq!(read_until(&mut tunnel.stream, b"pong").await, b"pong");
        assert_eq!(pool.idle_len(), 0, "a tunnel is not pooled");
    }

    /// A chunked POST to `/up` whose body the test feeds.
    fn upload() -> (mpsc::Sender<Bytes>, Request<Fed>) {
        let (feed, fed) = mpsc::channel(4);
        let request = Request::post("/up")
            .header("host", "app")
            .header("transfer-encoding", "chunked")
            .body(Fed(fed))
            .expect("a request");
        (feed, request)
    }

    #[tokio::test]
    async fn an_upload_goes_on_after_an_early_answer_even_while_the_answer_is_unread() {
        let (uploaded, upload_seen) = tokio::sync::oneshot::channel();
        let address = upstream(|mut stream| async move {
            read_until(&mut stream, b"\r\n\r\n").await;
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            stream.write_all(answer).await.expect("answer");
            read_until(&mut stream, b"4\r\nrest\r\n0\r\n\r\n").await;
            let _ = uploaded.send(());
            let _ = stream.read(&mut [0u8; 1]).await;
        })
        .await;
        let pool = pool(address);
        let (feed, request) = upload();
        let response = pool.send(request).await.expect("a response");
        // Nobody reads the answer yet (a client whose window is full, say):
        // the upload still goes on.
        feed.send(Bytes::from_static(b"rest")).await.expect("fed");
        drop(feed);
        tokio::time::timeout(Duration::from_secs(5), upload_seen)
            .await
            .expect("the upload reached the upstream")
            .expect("the upstream ran");
        let body = collect(response.response.into_body()).await;
        assert_eq!(body.expect("a body").to_bytes(), "ok");
        assert_eq!(
            pool.idle_len(),
            0,
            "a connection answered early is not reused"
        );
    }

    #[tokio::test]
    async fn an_upload_the_upstream_stops_taking_is_given_up_after_the_timeout() {
        let address = upstream(|mut stream| async move {
            read_until(&mut stream, b"\r\n\r\n").await;
            let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n";
            stream.write_all(answer).await.expect("answer");
            // Reads no more, and keeps the connection open.
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        let mut pool = pool(address);
        pool.set_upload_timeout(Duration::from_millis(300));
        let (feed, request) = upload();
        let response = pool.send(request).await.expect("a response");
        assert_eq!(response.response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // The feed ends when the upload lets go of the body.
        let fed = tokio::time::timeout(Duration::from_secs(10), async move {
            let chunk = Bytes::from(vec![b'x'; 256 * 1024]);
            while feed.send(chunk.clone()).await.is_ok() {}
        });
        fed.await.expect("the upload was given up");
    }

    #[tokio::test]
    async fn a_body_that_ends_at_close_is_read_to_the_close_and_not_kept() {
        let address = answering(b"HTTP/1.1 200 OK\r\n\r\nall of it", After::Close).await;
        let pool = pool(address);
        let body = collect(get_from(&pool).await.into_body()).await;
        assert_eq!(body.expect("a body").to_bytes(), "all of it");
        assert_eq!(pool.idle_len(), 0);
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort";
        let address = answering(answer, After::Close).await;
        let response = get_from(&pool(address)).await;
        let error = collect(response.into_body()).await.expect_err("cut short");
        assert!(matches!(error, ExchangeError::Truncated), "{error}");
    }

    #[tokio::test]
    async fn a_malformed_answer_is_an_error_and_not_sent_again() {
        let address = answering(b"garbage\r\n\r\n", After::Wait).await;
        let error = pool(address).send(get()).await.expect_err("malformed");
        assert!(
            matches!(
                error,
                UpstreamError::Exchange(ExchangeError::Response(ResponseError::MalformedHead(_)))
            ),
            "{error}"
        );
    }
}
