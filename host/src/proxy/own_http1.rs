//! Tandem's own HTTP/1.1 connection, for the common request: HTTP/1.1
//! without a body, an upgrade or an expectation (most GET, HEAD and
//! DELETE requests). It reads a head, hands the request to the proxy,
//! writes the response and reads the next head, all in the connection's
//! task, with no dispatcher, channel or per-request timer between them.
//!
//! The first request it does not serve itself (a body, an upgrade,
//! HTTP/1.0, or a malformed or oversized head) hands the connection,
//! with the bytes already read, to hyper, which serves it from then on:
//! so every check and error answer of hyper's still applies, and this
//! reader only ever sees heads that hyper would accept as they are.
//! Responses are framed by hyper's rules (`response_encoder`).
//!
//! Measured with wrk (docs/performance.md), serving these requests here
//! instead of through hyper's server costs about a microsecond less CPU
//! per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{Method, Request, Response};
use http_body::{Body, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::header_map_pool;
use super::inbound_head::{self, InboundHead};
use super::limits::InboundBody;
use super::received_headers::CarriesReceivedHeaders;
use super::request_lines::RequestLines;
use super::response_encoder::{self, BodyFraming, BodyLength};

/// Room made in the read buffer when it runs short.
const READ_CHUNK: usize = 8 * 1024;
/// Least room to read into; less, and the buffer gets more.
const MIN_ROOM: usize = 1024;
/// Body data up to this size is copied behind the head (one write); larger
/// pieces are written from where they are, beside what is buffered.
const COPY_AT_MOST: usize = 8 * 1024;
/// Buffered output is written once it reaches this size.
const WRITE_AT: usize = 64 * 1024;

/// How the connection left this reader.
pub enum Ended {
    /// It is closed, or should be.
    Closed,
    /// A request this reader does not serve came: hyper takes the stream,
    /// reading `unread` (that request's bytes, and any after it) first.
    HandOff {
        /// The client connection.
        stream: TcpStream,
        /// What was read but not served.
        unread: Bytes,
    },
}

/// Limits of a request head, as hyper is given them.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Longest head in bytes.
    pub max_bytes: usize,
    /// Most header lines.
    pub max_headers: usize,
}

/// Serves `stream` until it closes or a request comes that hyper must
/// serve. `service` answers each request, given its header lines as
/// received when `wants_lines` says, as the head comes, that they may be
/// kept (see `RequestLines`). Once `closing` is set, the
/// response in flight (if any) says `Connection: close` and is the last; a
/// connection with nothing in flight is simply dropped by its owner, so
/// the wait for the next head needs no wake-up of its own.
pub async fn serve<S, F, B>(
    mut stream: TcpStream,
    service: S,
    wants_lines: impl Fn() -> bool,
    limits: HeadLimits,
    closing: Arc<AtomicBool>,
) -> Ended
where
    S: Fn(Request<InboundBody>, Option<Box<RequestLines>>) -> F,
    F: Future<Output = Response<B>>,
    B: Body<Data = Bytes> + CarriesReceivedHeaders + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let (request, keep_alive, lines) = loop {
            if !buffer.is_empty() {
                match inbound_head::take(
                    &mut buffer,
                    limits.max_bytes,
                    limits.max_headers,
                    wants_lines(),
                ) {
                    InboundHead::Request {
                        request,
                        keep_alive,
                        lines,
                    } => break (request, keep_alive, lines),
                    InboundHead::HandOff => {
                        return Ended::HandOff {
                            stream,
                            unread: buffer.freeze(),
                        };
                    }
                    InboundHead::Partial => {}
                }
            }
            make_room(&mut buffer);
            match stream.read_buf(&mut buffer).await {
                Ok(0) => return Ended::Closed,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "client connection failed");
                    return Ended::Closed;
                }
            }
        };
        let method = request.method().clone();
        // Pinned where it is made: the future is kilobytes, and a move
        // copies it.
        let answering = std::pin::pin!(service(request.map(|()| None), lines));
        let response = tokio::select! {
            biased;
            response = answering => response,
            // Dropping the request counts it as abandoned, as hyper does.
            () = client_gone(&mut stream, &mut buffer, limits.max_bytes) => return Ended::Closed,
        };
        let keep_alive = keep_alive && !closing.load(Ordering::Relaxed);
        if !respond(&mut stream, response, &method, keep_alive, &mut out).await {
            let _ = stream.shutdown().await;
            return Ended::Closed;
        }
    }
}

/// Makes room to read into. Heads are split off the front of the buffer
/// and share its allocation while their requests last, so a new one is
/// made only when little room is left, not for every request.
fn make_room(buffer: &mut BytesMut) {
    if buffer.capacity() - buffer.len() < MIN_ROOM {
        buffer.reserve(READ_CHUNK);
    }
}

/// Resolves when the client closes or fails while its request is being
/// answered. Bytes it sends meanwhile (pipelined requests) are kept in
/// `buffer`, up to `limit`; past that, nothing more is read.
async fn client_gone(stream: &mut TcpStream, buffer: &mut BytesMut, limit: usize) {
    loop {
        if buffer.len() >= limit {
            return std::future::pending().await;
        }
        make_room(buffer);
        match stream.read_buf(buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// What is known of `body`'s length.
fn length_of<B: Body>(body: &B) -> BodyLength {
    if body.is_end_stream() {
        BodyLength::Empty
    } else {
        body.size_hint()
            .exact()
            .map_or(BodyLength::Unknown, BodyLength::Known)
    }
}

/// Writes `response`. Returns whether the connection can serve another
/// request.
async fn respond<B>(
    stream: &mut TcpStream,
    response: Response<B>,
    method: &Method,
    keep_alive: bool,
    out: &mut BytesMut,
) -> bool
where
    B: Body<Data = Bytes> + CarriesReceivedHeaders + Unpin,
    B::Error: std::fmt::Display,
{
    let (mut parts, mut body) = response.into_parts();
    out.clear();
    let encoded = match body.take_received() {
        Some(received) => {
            // The lines are the headers: nothing may have been added beside
            // them (see `ReceivedHeaders`).
            debug_assert!(parts.headers.is_empty(), "headers beside received lines");
            response_encoder::encode_received(
                parts.status,
                &received,
                keep_alive,
                length_of(&body),
                out,
            )
        }
        None => response_encoder::encode(&mut parts, method, keep_alive, length_of(&body), out),
    };
    // Written out: the map goes back for the next head on this thread.
    header_map_pool::give_back(std::mem::take(&mut parts.headers));
    let head = match encoded {
        Ok(head) => head,
        Err(error) => {
            tracing::warn!(%error, "response not sent");
            return false;
        }
    };
    let sent = match head.framing {
        BodyFraming::Nothing => {
            // Not polled, as hyper does not poll it: dropping a body that
            // is at its end completes it.
            drop(body);
            write_out(stream, out).await
        }
        framing => write_body(stream, body, framing, out).await,
    };
    sent && !head.close
}

/// Writes what `out` holds.
async fn write_out(stream: &mut TcpStream, out: &mut BytesMut) -> bool {
    let written = stream.write_all(out).await;
    out.clear();
    written.is_ok()
}

/// Ends a response that cannot be framed as its head said: what is
/// gathered goes out, and the connection is not used again. Always false.
async fn cut(stream: &mut TcpStream, out: &mut BytesMut) -> bool {
    let _ = write_out(stream, out).await;
    false
}

/// The next frame of `body` if one is ready now; `None` if it is not.
async fn frame_now<B: Body + Unpin>(
    body: &mut B,
) -> Option<Option<Result<Frame<B::Data>, B::Error>>> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(frame) => Some(frame),
            Poll::Pending => None,
        })
    })
    .await
}

/// Writes the body after the head in `out`, framed by `framing`, as it
/// comes: what is ready is gathered and written together. Returns whether
/// all of it went out as framed.
async fn write_body<B>(
    stream: &mut TcpStream,
    mut body: B,
    framing: BodyFraming,
    out: &mut BytesMut,
) -> bool
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut remaining = match framing {
        BodyFraming::Length(length) => length,
        _ => u64::MAX,
    };
    let chunked = framing == BodyFraming::Chunked;
    loop {
        let frame = match frame_now(&mut body).await {
            Some(frame) => frame,
            None => {
                // Nothing more yet: what is gathered goes now.
                if !out.is_empty() && !write_out(stream, out).await {
                    return false;
                }
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => {
                if chunked {
                    out.put_slice(b"0\r\n\r\n");
                } else if remaining != 0 {
                    tracing::debug!(remaining, "response body ended short of its length");
                    return cut(stream, out).await;
                }
                return write_out(stream, out).await;
            }
            Some(Err(error)) => {
                // The connection ends here, cut, as hyper ends it.
                tracing::debug!(%error, "response body failed");
                return cut(stream, out).await;
            }
            // Trailers are not sent: only a client that says `TE: trailers`
            // may get them, and hyper serves those requests.
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if !chunked {
            if data.len() as u64 > remaining {
                tracing::debug!("response body longer than its length");
                return cut(stream, out).await;
            }
            remaining -= data.len() as u64;
        } else {
            let _ = std::fmt::Write::write_fmt(out, format_args!("{:x}\r\n", data.len()));
        }
        if data.len() <= COPY_AT_MOST {
            out.put_slice(&data);
        } else {
            let mut gathered = out.split().freeze().chain(data);
            if stream.write_all_buf(&mut gathered).await.is_err() {
                return false;
            }
        }
        if chunked {
            out.put_slice(b"\r\n");
        }
        if out.len() >= WRITE_AT && !write_out(stream, out).await {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::task::Context;
    use tokio::net::TcpListener;

    /// A body of unknown length that yields `pieces`, each after a pause
    /// (one `Pending`), so that it is never all ready at once.
    struct Pieces {
        pieces: VecDeque<Bytes>,
        paused: bool,
    }

    impl Pieces {
        fn new(pieces: &[&[u8]]) -> Self {
            Self {
                pieces: pieces.iter().map(|p| Bytes::copy_from_slice(p)).collect(),
                paused: false,
            }
        }
    }

    impl CarriesReceivedHeaders for Pieces {}
    impl CarriesReceivedHeaders for http_body_util::Full<Bytes> {}
    impl CarriesReceivedHeaders for http_body_util::Empty<Bytes> {}

    impl Body for Pieces {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.pieces.is_empty() {
                return Poll::Ready(None);
            }
            if !self.paused {
                self.paused = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.paused = false;
            Poll::Ready(self.pieces.pop_front().map(|piece| Ok(Frame::data(piece))))
        }
    }

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 8192,
        max_headers: 100,
    };

    /// Writes `sent` to a connection served with `service`; returns what
    /// the client read until the server closed, and the bytes handed over
    /// to hyper, if it came to that.
    async fn exchange<S, F, B>(sent: &'static [u8], service: S) -> (String, Option<Bytes>)
    where
        S: Fn(Request<InboundBody>, Option<Box<RequestLines>>) -> F,
        F: Future<Output = Response<B>>,
        B: Body<Data = Bytes> + CarriesReceivedHeaders + Unpin,
        B::Error: std::fmt::Display,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client.write_all(sent).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let handed_over = match serve(server, service, || false, LIMITS, Arc::default()).await {
            Ended::Closed => None,
            // Dropping the stream closes it.
            Ended::HandOff { stream, unread } => {
                drop(stream);
                Some(unread)
            }
        };
        let mut received = Vec::new();
        let _ = client.read_to_end(&mut received).await;
        (String::from_utf8_lossy(&received).into_owned(), handed_over)
    }

    fn without_dates(text: &str) -> String {
        text.split("\r\n")
            .filter(|line| !line.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("|")
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_then_closed_as_asked() {
        let service = |request: Request<InboundBody>, _lines| async move {
            Response::new(http_body_util::Full::new(Bytes::from(
                request.uri().path().to_owned(),
            )))
        };
        let (received, handed_over) = exchange(
            b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            service,
        )
        .await;
        assert!(handed_over.is_none());
        assert_eq!(
            without_dates(&received),
            "HTTP/1.1 200 OK|content-length: 4||/one\
             HTTP/1.1 200 OK|content-length: 4|connection: close||/two"
        );
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_is_chunked_and_large_pieces_pass_whole() {
        let large = vec![b'x'; 20_000];
        let service = move |_request: Request<InboundBody>, _lines| {
            let body = Pieces::new(&[b"ab", &large]);
            async move { Response::new(body) }
        };
        let (received, handed_over) = exchange(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            service,
        )
        .await;
        assert!(handed_over.is_none());
        assert!(
            received.contains("transfer-encoding: chunked\r\n"),
            "{received}"
        );
        let tail = format!(
            "\r\n\r\n2\r\nab\r\n4e20\r\n{}\r\n0\r\n\r\n",
            "x".repeat(20_000)
        );
        assert!(received.ends_with(&tail));
    }

    #[tokio::test]
    async fn a_body_shorter_than_its_length_cuts_the_connection() {
        let service = |_request: Request<InboundBody>, _lines| async move {
            let mut response = Response::new(Pieces::new(&[b"abc"]));
            response
                .headers_mut()
                .insert(http::header::CONTENT_LENGTH, "10".parse().unwrap());
            response
        };
        let (received, handed_over) = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", service).await;
        assert!(handed_over.is_none(), "not kept alive");
        assert!(received.contains("content-length: 10\r\n"), "{received}");
        assert!(received.ends_with("\r\n\r\nabc"), "{received}");
    }

    #[tokio::test]
    async fn a_request_with_a_body_hands_the_connection_over_with_its_bytes() {
        let service = |_request: Request<InboundBody>, _lines| async move {
            Response::new(http_body_util::Full::new(Bytes::from_static(b"ok")))
        };
        let (received, handed_over) = exchange(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
            service,
        )
        .await;
        let unread = handed_over.expect("handed over");
        assert_eq!(
            &unread[..],
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        );
        assert_eq!(
            without_dates(&received),
            "HTTP/1.1 200 OK|content-length: 2||ok"
        );
    }

    #[tokio::test]
    async fn a_response_after_closing_began_is_the_last_and_says_so() {
        let closing = Arc::new(AtomicBool::new(false));
        let flag = closing.clone();
        let service = move |_request: Request<InboundBody>, _lines| {
            // Draining begins while this request is answered.
            flag.store(true, Ordering::Relaxed);
            async move { Response::new(http_body_util::Empty::<Bytes>::new()) }
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let ended = serve(server, service, || false, LIMITS, closing).await;
        assert!(matches!(ended, Ended::Closed));
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(
            without_dates(&String::from_utf8_lossy(&received)),
            "HTTP/1.1 200 OK|content-length: 0|connection: close||"
        );
    }
}
