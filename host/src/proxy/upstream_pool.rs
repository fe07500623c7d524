//! A worker's keep-alive connections to the upstream.
//!
//! Every proxy worker owns one pool, and every connection in it is driven
//! by a task on that worker's own event loop, so a request, its upstream
//! connection and the response never leave the thread that accepted the
//! client. This replaces hyper-util's general-purpose client, whose pool is
//! shared, keyed by host and hands each connection back through a task of
//! its own once a response ends; here a connection goes back as soon as its
//! response head is in, and the next request takes the newest one that is
//! ready again (its previous response body read to the end).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made.
    #[error("connecting to {authority}: {source}")]
    Connect {
        /// Where to.
        authority: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The connection was made but the exchange failed.
    #[error(transparent)]
    Exchange(#[from] hyper::Error),
}

impl UpstreamError {
    /// True if no connection could be made (refused, unreachable, timed out).
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect { .. })
    }
}

/// Why a request went to the upstream a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// A pooled connection had closed before the request was written.
    Unsent,
    /// A pooled connection closed under the request without answering.
    Closed,
    /// A pooled connection was reset under the request.
    Reset,
}

impl Resend {
    /// Label for metrics.
    pub fn name(self) -> &'static str {
        match self {
            Resend::Unsent => "unsent",
            Resend::Closed => "closed",
            Resend::Reset => "reset",
        }
    }
}

/// A response head from the upstream, and whether getting it took a
/// second attempt (the last reason, if it took more).
#[derive(Debug)]
pub struct Exchanged {
    /// The response, its body still on its way.
    pub response: Response<Incoming>,
    /// Why the request was sent again, if it was.
    pub resent: Option<Resend>,
}

/// A connection waiting for its next request.
struct IdleConnection<B> {
    sender: SendRequest<B>,
    since: Instant,
}

/// One worker's connections to one upstream, for requests with bodies of
/// type `B`.
pub struct UpstreamPool<B> {
    authority: http::uri::Authority,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// Newest last. Only this worker's thread touches it, so the lock is
    /// never contended; it is there because hyper's services must be `Send`.
    idle: Mutex<Vec<IdleConnection<B>>>,
}

impl<B> UpstreamPool<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A pool for `authority` that connects within `connect_timeout` and
    /// keeps up to `max_idle` connections for `idle_timeout` each.
    pub fn new(
        authority: http::uri::Authority,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        Self {
            authority,
            connect_timeout,
            idle_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `request` (origin-form target, headers as they go upstream) on
    /// a pooled connection or a new one, and waits for the response head.
    ///
    /// `replay` gives the same request again if it is safe to repeat
    /// (idempotent, no body), or `None`. It is asked at most once: when a
    /// pooled connection took the request and closed or was reset without
    /// a response, which is what an upstream that timed the idle
    /// connection out just as the request arrived does (a reset when the
    /// request reached a socket the upstream had already closed). The copy
    /// then goes on a new connection.
    pub async fn send(
        &self,
        mut request: Request<B>,
        replay: impl FnOnce() -> Option<Request<B>>,
    ) -> Result<Exchanged, UpstreamError> {
        let mut replay = Some(replay);
        let mut fresh_only = false;
        let mut resent = None;
        loop {
            let pooled = if fresh_only { None } else { self.checkout() };
            let reused = pooled.is_some();
            let mut sender = match pooled {
                Some(sender) => sender,
                // Boxed: connecting is the rare case, and inline its future
                // would make every request's future larger (and each
                // request's future is copied as a whole, more than once).
                None => Box::pin(self.connect()).await?,
            };
            let mut failed = match sender.try_send_request(request).await {
                Ok(response) => {
                    self.checkin(sender);
                    return Ok(Exchanged { response, resent });
                }
                Err(failed) => failed,
            };
            // A new connection that fails is an answer.
            if !reused {
                return Err(UpstreamError::Exchange(failed.into_error()));
            }
            // The upstream closed a pooled connection while it sat idle,
            // and the request was never written: it goes again.
            if let Some(unsent) = failed.take_message() {
                request = unsent;
                resent = Some(Resend::Unsent);
                continue;
            }
            let closed_unanswered = if was_reset(failed.error()) {
                Some(Resend::Reset)
            } else if failed.error().is_incomplete_message() {
                Some(Resend::Closed)
            } else {
                None
            };
            let copy = match closed_unanswered {
                Some(_) => replay.take().and_then(|copy| copy()),
                None => None,
            };
            match copy {
                Some(copy) => {
                    tracing::debug!(
                        reason = closed_unanswered.map(Resend::name),
                        "a pooled upstream connection failed under a request; sending it again"
                    );
                    request = copy;
                    resent = closed_unanswered;
                    fresh_only = true;
                }
                None => return Err(UpstreamError::Exchange(failed.into_error())),
            }
        }
    }

    /// The newest idle connection that can take a request now; closed and
    /// expired ones are dropped on the way.
    fn checkout(&self) -> Option<SendRequest<B>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = None;
        let mut index = idle.len();
        while index > 0 {
            index -= 1;
            let entry = &mut idle[index];
            if entry.sender.is_closed() {
                idle.swap_remove(index);
                continue;
            }
            let now = *now.get_or_insert_with(Instant::now);
            // Not ready: its last response body is still on its way, so
            // it is busy, not idle, until now at least.
            if !entry.sender.is_ready() {
                entry.since = now;
                continue;
            }
            if now.duration_since(entry.since) > self.idle_timeout {
                idle.swap_remove(index);
                continue;
            }
            return Some(idle.swap_remove(index).sender);
        }
        None
    }

    /// Closes idle connections past the idle timeout and forgets closed
    /// ones, so that a quiet pool does not hold connections open for ever
    /// (checkout drops them too, but only when requests come). A connection
    /// still receiving a response body is left alone. Returns how many
    /// went.
    pub fn close_expired(&self) -> usize {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let before = idle.len();
        idle.retain_mut(|entry| {
            if entry.sender.is_closed() {
                return false;
            }
            if !entry.sender.is_ready() {
                // Still receiving a body: busy, not idle, until now.
                entry.since = now;
                return true;
            }
            now.duration_since(entry.since) <= self.idle_timeout
        });
        before - idle.len()
    }

    /// How often [`close_expired`](Self::close_expired) should run: a
    /// connection then lives at most a quarter longer than the timeout.
    pub fn sweep_every(&self) -> Duration {
        (self.idle_timeout / 4).max(Duration::from_millis(10))
    }

    /// Puts a connection back once its response head is in; it is taken
    /// again once ready. Beyond `max_idle`, it closes when its response ends.
    fn checkin(&self, sender: SendRequest<B>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(IdleConnection {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// A new connection, driven by a task on this worker's runtime.
    async fn connect(&self) -> Result<SendRequest<B>, UpstreamError> {
        let connect_error = |source| UpstreamError::Connect {
            authority: self.authority.to_string(),
            source,
        };
        // An IPv6 literal comes bracketed in an authority, not in an address.
        let host = self.authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let address = (host, self.authority.port_u16().unwrap_or(80));
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
                Ok(connected) => connected.map_err(connect_error)?,
                Err(_) => {
                    return Err(connect_error(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within {:?}", self.connect_timeout),
                    )));
                }
            };
        // Heads and small bodies go out at once, as from any proxy.
        stream.set_nodelay(true).map_err(connect_error)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// True if the connection under an exchange was reset or broken, rather
/// than the exchange going wrong in HTTP.
fn was_reset(error: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted);
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    type Pool = UpstreamPool<Empty<Bytes>>;

    fn pool(address: std::net::SocketAddr) -> Pool {
        pool_idle_for(address, Duration::from_secs(90))
    }

    /// A pool whose connections expire after `idle`.
    fn pool_idle_for(address: std::net::SocketAddr, idle: Duration) -> Pool {
        let authority = address.to_string().parse().expect("an authority");
        UpstreamPool::new(authority, Duration::from_secs(2), idle, 8)
    }

    fn get(path: &str) -> Request<Empty<Bytes>> {
        Request::get(path)
            .header("host", "upstream")
            .body(Empty::new())
            .expect("a request")
    }

    /// What the test upstream does after its first answer on a connection.
    #[derive(Clone, Copy, PartialEq)]
    enum Then {
        /// Keeps answering.
        KeepAlive,
        /// Closes the connection without saying so (no `connection:
        /// close`), as an upstream whose keep-alive timer fired would.
        Close,
        /// Reads the next request and closes without answering, as an
        /// upstream whose keep-alive timer fired as that request arrived
        /// would.
        DropNext,
        /// Reads the next request and resets the connection, as the kernel
        /// does when a request reaches a socket the upstream closed.
        ResetNext,
    }

    /// An upstream that answers request heads with `body`, and after the
    /// first one on a connection does what `then` says; it counts its
    /// connections.
    async fn upstream(body: &'static [u8], then: Then) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        serve(listener, body, then)
    }

    fn serve(
        listener: TcpListener,
        body: &'static [u8],
        then: Then,
    ) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let address = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 1024];
                    let mut answered = 0;
                    loop {
                        let Ok(read) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if read == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..read]);
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            buffer.drain(..end + 4);
                            if answered > 0 && then == Then::DropNext {
                                return;
                            }
                            if answered > 0 && then == Then::ResetNext {
                                // Closing with unread data and a zero
                                // linger sends a reset.
                                let _ = stream.set_zero_linger();
                                return;
                            }
                            answered += 1;
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            let sent = async {
                                stream.write_all(head.as_bytes()).await?;
                                stream.write_all(body).await
                            };
                            if sent.await.is_err() || then == Then::Close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    async fn body_of(exchanged: Exchanged) -> Bytes {
        exchanged
            .response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes()
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let (address, accepted) = upstream(b"ok", Then::KeepAlive).await;
        let pool = pool(address);
        for _ in 0..5 {
            let response = pool.send(get("/"), || None).await.expect("a response");
            assert_eq!(body_of(response).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_still_receiving_its_body_is_not_given_out() {
        static LARGE: [u8; 4 << 20] = [b'x'; 4 << 20];
        let (address, accepted) = upstream(&LARGE, Then::KeepAlive).await;
        let pool = pool(address);
        let first = pool.send(get("/"), || None).await.expect("a response");
        // The first body is unread and too large to sit in buffers, so its
        // connection is busy receiving it.
        let second = pool.send(get("/"), || None).await.expect("a response");
        assert_eq!(body_of(second).await.len(), LARGE.len());
        assert_eq!(body_of(first).await.len(), LARGE.len());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connections_the_upstream_closed_while_idle_are_replaced_without_an_error() {
        let (address, accepted) = upstream(b"ok", Then::Close).await;
        let pool = pool(address);
        for round in 0..10 {
            let response = pool
                .send(get("/"), || None)
                .await
                .unwrap_or_else(|e| panic!("request {round} failed: {e}"));
            assert_eq!(body_of(response).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 10);
    }

    /// Against an upstream that does `then` to the second request on a
    /// connection: a repeatable request goes again once, on a new
    /// connection; one that may not be repeated gets the error, returned.
    async fn goes_again_once(then: Then, reason: Resend) -> UpstreamError {
        let (address, accepted) = upstream(b"ok", then).await;
        let pool = pool(address);
        let first = pool.send(get("/"), || None).await.expect("a response");
        assert_eq!(first.resent, None);
        assert_eq!(body_of(first).await, "ok");
        let again = pool
            .send(get("/"), || Some(get("/")))
            .await
            .expect("sent again on a new connection");
        assert_eq!(again.resent, Some(reason));
        assert_eq!(body_of(again).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        pool.send(get("/"), || None)
            .await
            .expect_err("not sent again")
    }

    #[tokio::test]
    async fn a_repeatable_request_a_pooled_connection_dropped_goes_again_once() {
        let error = goes_again_once(Then::DropNext, Resend::Closed).await;
        assert!(!error.is_connect(), "{error}");
    }

    #[tokio::test]
    async fn a_repeatable_request_a_pooled_connection_reset_goes_again_once() {
        let error = goes_again_once(Then::ResetNext, Resend::Reset).await;
        assert!(was_reset(&error_of(error)), "the error is the reset");
    }

    fn error_of(error: UpstreamError) -> hyper::Error {
        match error {
            UpstreamError::Exchange(error) => error,
            UpstreamError::Connect { .. } => panic!("a connect error: {error}"),
        }
    }

    #[tokio::test]
    async fn a_sweep_closes_connections_idle_past_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (closed, closed_seen) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut buffer = [0u8; 1024];
            let read = stream.read(&mut buffer).await.expect("a request");
            assert!(read > 0);
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            stream.write_all(answer).await.expect("answer");
            // The next read ends when the pool closes the connection.
            let read = stream.read(&mut buffer).await.unwrap_or(0);
            let _ = closed.send(read);
        });
        let pool = pool_idle_for(address, Duration::from_secs(1));
        let response = pool.send(get("/"), || None).await.expect("a response");
        assert_eq!(body_of(response).await, "ok");
        assert_eq!(pool.close_expired(), 0, "not idle long enough yet");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(pool.close_expired(), 1);
        let read = tokio::time::timeout(Duration::from_secs(5), closed_seen)
            .await
            .expect("the upstream saw the connection close")
            .expect("the upstream task ran");
        assert_eq!(read, 0, "closed without another request");
    }

    #[tokio::test]
    async fn a_connection_busy_with_a_long_body_is_not_swept_when_it_ends() {
        static LARGE: [u8; 4 << 20] = [b'x'; 4 << 20];
        let (address, accepted) = upstream(&LARGE, Then::KeepAlive).await;
        let pool = pool_idle_for(address, Duration::from_secs(1));
        let response = pool.send(get("/"), || None).await.expect("a response");
        // The body, too large for the socket buffers, waits unread for
        // longer than the idle timeout; the sweep sees the connection busy.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(pool.close_expired(), 0, "busy, not idle");
        assert_eq!(body_of(response).await.len(), LARGE.len());
        assert_eq!(pool.close_expired(), 0, "just became idle");
        let again = pool.send(get("/"), || None).await.expect("a response");
        assert_eq!(body_of(again).await.len(), LARGE.len());
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the connection was reused"
        );
    }

    #[tokio::test]
    async fn an_ipv6_loopback_upstream_is_reached() {
        let Ok(listener) = TcpListener::bind("[::1]:0").await else {
            eprintln!("no IPv6 loopback here; nothing to check");
            return;
        };
        let (address, accepted) = serve(listener, b"ok", Then::KeepAlive);
        let response = pool(address)
            .send(get("/"), || None)
            .await
            .expect("a response");
        assert_eq!(body_of(response).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let error = pool(address)
            .send(get("/"), || None)
            .await
            .expect_err("refused");
        assert!(error.is_connect(), "{error}");
    }
}
