//! A worker's keep-alive connections to the upstream.
//!
//! Every proxy worker owns one pool. A connection has no task of its own:
//! the request that takes it writes to it and reads its response head in
//! the request's task, and its response body reads the rest as the client
//! takes it (`upstream_exchange`), so a request, its upstream connection
//! and the response never leave the thread that accepted the client. The
//! connection comes back when the response's last byte is read, and the
//! next request takes the newest one, if the upstream has not closed it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use hyper::body::Body;
use tokio::net::TcpStream;

use super::upstream_exchange::{
    self, ExchangeError, Prepared, UpstreamConnection, UpstreamResponse,
};

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
    Exchange(#[from] ExchangeError),
    /// No response head came by the deadline (the connection may not have
    /// been made either).
    #[error("no response from the application in time")]
    TimedOut,
}

impl UpstreamError {
    /// True if no connection could be made (refused, unreachable, timed out).
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect { .. })
    }

    /// True if the response head did not come by the deadline.
    pub fn is_timeout(&self) -> bool {
        matches!(self, UpstreamError::TimedOut)
    }
}

/// Why a request went to the upstream a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// A pooled connection closed under the request without answering.
    Closed,
    /// A pooled connection was reset under the request.
    Reset,
}

impl Resend {
    /// Label for metrics.
    pub fn name(self) -> &'static str {
        match self {
            Resend::Closed => "closed",
            Resend::Reset => "reset",
        }
    }
}

/// A response head from the upstream, and whether getting it took a
/// second attempt.
#[derive(Debug)]
pub struct Exchanged {
    /// The response, its body still on its way.
    pub response: Response<UpstreamResponse>,
    /// Why the request was sent again, if it was.
    pub resent: Option<Resend>,
}

/// How long [`UpstreamPool::send`] waits for a response head.
#[cfg(test)]
const TEST_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// What [`UpstreamPool::set_upload_timeout`] sets, until it is called.
const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// What [`UpstreamPool::set_body_timeout`] sets, until it is called.
const DEFAULT_BODY_TIMEOUT: Duration = crate::config::DEFAULT_UPSTREAM_BODY_TIMEOUT;

/// A connection waiting for its next request.
struct IdleConnection {
    connection: UpstreamConnection,
    since: Instant,
}

/// A worker's idle upstream connections, newest last. Response bodies put
/// their connection back here when they end.
pub struct IdleConnections {
    /// Only this worker's thread touches it, so the lock is never
    /// contended; it is there because hyper's services must be `Send`.
    list: Mutex<Vec<IdleConnection>>,
    max_idle: usize,
}

impl IdleConnections {
    /// Puts a connection whose response has ended back, to be taken by the
    /// next request; beyond the pool's size it is closed instead.
    pub fn checkin(&self, connection: UpstreamConnection) {
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if list.len() < self.max_idle {
            list.push(IdleConnection {
                connection,
                since: Instant::now(),
            });
        }
    }
}

/// One worker's connections to one upstream.
pub struct UpstreamPool {
    authority: http::uri::Authority,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// How long the rest of a request body may take to go upstream once
    /// the response head has come.
    upload_timeout: Duration,
    /// How long the upstream may send nothing in the middle of a body.
    body_timeout: Duration,
    idle: Arc<IdleConnections>,
}

impl UpstreamPool {
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
            upload_timeout: DEFAULT_UPLOAD_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle: Arc::new(IdleConnections {
                list: Mutex::new(Vec::new()),
                max_idle,
            }),
        }
    }

    /// Gives the rest of a request body at most `timeout` to go upstream
    /// once the response head has come (see `upstream_exchange::exchange`).
    pub fn set_upload_timeout(&mut self, timeout: Duration) {
        self.upload_timeout = timeout;
    }

    /// Cuts a response body once the upstream has sent nothing of it for
    /// `timeout`.
    pub fn set_body_timeout(&mut self, timeout: Duration) {
        self.body_timeout = timeout;
    }

    /// Sends `request` (origin-form target, headers as they go upstream) on
    /// a pooled connection or a new one, and waits for the response head.
    ///
    /// A request that is safe to repeat (bodiless, with an idempotent
    /// method: see `Prepared::repeat`) goes again, once, on a new
    /// connection, if a pooled connection took it and closed or was reset
    /// without a byte of response: that is what an upstream that timed the idle connection
    /// out just as the request arrived does (a reset when the request
    /// reached a socket the upstream had already closed).
    ///
    /// The response head must come by `deadline`, a new connection
    /// included. With `keep_received`, its header lines may be kept as they
    /// came (see `ReceivedHeaders`), for a response that nothing reads
    /// before it goes out.
    ///
    /// The request comes written out (see `upstream_exchange::prepare`),
    /// so that its parts take no room in this future.
    pub async fn send_until<B>(
        &self,
        mut prepared: Prepared<B>,
        deadline: tokio::time::Instant,
        keep_received: bool,
    ) -> Result<Exchanged, UpstreamError>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut fresh_only = false;
        let mut resent = None;
        loop {
            let pooled = if fresh_only { None } else { self.checkout() };
            let reused = pooled.is_some();
            let connection = match pooled {
                Some(connection) => connection,
                // Boxed: connecting is the rare case, and inline its future
                // would make every request's future larger (and each
                // request's future is copied as a whole, more than once).
                None => Box::pin(self.connect_until(deadline)).await?,
            };
            // Only a pooled connection can have gone stale under the
            // request, so only then is a second copy kept (its head's
            // bytes, shared).
            let spare = if reused { prepared.repeat() } else { None };
            let timeouts = upstream_exchange::Timeouts {
                head_deadline: deadline,
                upload: self.upload_timeout,
                body_silence: self.body_timeout,
            };
            let exchanged = upstream_exchange::exchange(
                connection,
                prepared,
                &self.idle,
                timeouts,
                keep_received,
            );
            let failed = match exchanged.await {
                Ok(response) => return Ok(Exchanged { response, resent }),
                Err(failed) => failed,
            };
            // A new connection that fails is an answer, and so is a
            // pooled one that had begun to respond.
            let closed_unanswered = match &failed.error {
                ExchangeError::TimedOut => return Err(UpstreamError::TimedOut),
                _ if !reused || failed.answered => None,
                ExchangeError::Closed => Some(Resend::Closed),
                error if error.is_reset() => Some(Resend::Reset),
                _ => None,
            };
            match (closed_unanswered, spare) {
                (Some(reason), Some(copy)) => {
                    tracing::debug!(
                        reason = reason.name(),
                        "a pooled upstream connection failed under a request; sending it again"
                    );
                    prepared = copy.prepared();
                    resent = Some(reason);
                    fresh_only = true;
                }
                _ => return Err(UpstreamError::Exchange(failed.error)),
            }
        }
    }

    /// [`send_until`](Self::send_until) with a 30 s deadline.
    #[cfg(test)]
    pub async fn send<B>(&self, request: http::Request<B>) -> Result<Exchanged, UpstreamError>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let deadline = tokio::time::Instant::now() + TEST_HEAD_TIMEOUT;
        self.send_until(upstream_exchange::prepare(request, None)?, deadline, false)
            .await
    }

    /// The newest idle connection that is still open and not past the
    /// idle timeout; closed and expired ones are dropped on the way.
    fn checkout(&self) -> Option<UpstreamConnection> {
        let mut list = self.idle.list.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = None;
        while let Some(entry) = list.pop() {
            let now = *now.get_or_insert_with(Instant::now);
            if now.duration_since(entry.since) <= self.idle_timeout && entry.connection.is_open() {
                return Some(entry.connection);
            }
        }
        None
    }

    /// Closes idle connections past the idle timeout and forgets closed
    /// ones, so that a quiet pool does not hold connections open for ever
    /// (checkout drops them too, but only when requests come). Returns how
    /// many went.
    pub fn close_expired(&self) -> usize {
        let now = Instant::now();
        let mut list = self.idle.list.lock().unwrap_or_else(|p| p.into_inner());
        let before = list.len();
        list.retain(|entry| {
            now.duration_since(entry.since) <= self.idle_timeout && entry.connection.is_open()
        });
        before - list.len()
    }

    /// How many connections sit idle now.
    #[cfg(test)]
    pub fn idle_len(&self) -> usize {
        self.idle.list.lock().map_or(0, |list| list.len())
    }

    /// How often [`close_expired`](Self::close_expired) should run: a
    /// connection then lives at most a quarter longer than the timeout.
    pub fn sweep_every(&self) -> Duration {
        (self.idle_timeout / 4).max(Duration::from_millis(10))
    }

    /// A new connection, made by `deadline`.
    async fn connect_until(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<UpstreamConnection, UpstreamError> {
        match tokio::time::timeout_at(deadline, self.connect()).await {
            Ok(connected) => connected,
            Err(_) => Err(UpstreamError::TimedOut),
        }
    }

    /// A new connection.
    async fn connect(&self) -> Result<UpstreamConnection, UpstreamError> {
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
        Ok(UpstreamConnection::new(stream))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http::Request;
    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn pool(address: std::net::SocketAddr) -> UpstreamPool {
        pool_idle_for(address, Duration::from_secs(90))
    }

    /// A pool whose connections expire after `idle`.
    fn pool_idle_for(address: std::net::SocketAddr, idle: Duration) -> UpstreamPool {
        let authority = address.to_string().parse().expect("an authority");
        UpstreamPool::new(authority, Duration::from_secs(2), idle, 8)
    }

    fn get(path: &str) -> Request<Empty<Bytes>> {
        Request::get(path)
            .header("host", "upstream")
            .body(Empty::new())
            .expect("a request")
    }

    fn prepared(request: Request<Empty<Bytes>>) -> upstream_exchange::Prepared<Empty<Bytes>> {
        upstream_exchange::prepare(request, None).unwrap()
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
        /// Reads the next request and never answers it, the connection
        /// left open.
        SilentNext,
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
                            if answered > 0 && then == Then::SilentNext {
                                std::future::pending::<()>().await;
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
            let response = pool.send(get("/")).await.expect("a response");
            assert_eq!(body_of(response).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    /// The connection's head timer is set again for every request: a
    /// pooled connection times its second request by that request's
    /// deadline, not the first's.
    #[tokio::test]
    async fn a_pooled_connection_times_each_request_by_its_own_deadline() {
        let (address, accepted) = upstream(b"ok", Then::SilentNext).await;
        let pool = pool(address);
        let soon = |millis| tokio::time::Instant::now() + Duration::from_millis(millis);
        let first = pool
            .send_until(prepared(get("/")), soon(10_000), false)
            .await;
        assert_eq!(body_of(first.expect("a response")).await, "ok");
        let asked = tokio::time::Instant::now();
        let error = pool
            .send_until(prepared(get("/")), soon(300), false)
            .await
            .expect_err("no answer");
        assert!(error.is_timeout(), "{error}");
        let waited = asked.elapsed();
        assert!(
            (Duration::from_millis(300)..Duration::from_secs(5)).contains(&waited),
            "{waited:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "the pooled one");
    }

    /// Making a new connection counts against the request's deadline: a
    /// connect that hangs ends as a timeout (a 504), not after the longer
    /// connect timeout as a connect failure (a 502).
    #[tokio::test]
    async fn a_connect_that_hangs_ends_at_the_requests_deadline() {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind("127.0.0.1:0".parse().expect("an address"))
            .expect("bind");
        // Never accepts: once its queue is full, a new handshake gets no
        // answer and the connect waits.
        let listener = socket.listen(1).expect("listen");
        let address = listener.local_addr().expect("address");
        let mut queued = Vec::new();
        for _ in 0..8 {
            let connect = TcpStream::connect(address);
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(100), connect).await
            {
                queued.push(stream);
            }
        }
        let pool = pool(address);
        let asked = tokio::time::Instant::now();
        let error = pool
            .send_until(
                prepared(get("/")),
                asked + Duration::from_millis(300),
                false,
            )
            .await
            .expect_err("no connection");
        assert!(error.is_timeout(), "{error}");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
        drop(queued);
    }

    /// A head timer that fired while its connection sat in the pool does
    /// not end the next request on that connection.
    #[tokio::test]
    async fn a_timer_that_fired_in_the_pool_is_set_again() {
        let (address, accepted) = upstream(b"ok", Then::KeepAlive).await;
        let pool = pool(address);
        let soon = |millis| tokio::time::Instant::now() + Duration::from_millis(millis);
        let first = pool.send_until(prepared(get("/")), soon(100), false).await;
        assert_eq!(body_of(first.expect("a response")).await, "ok");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = pool
            .send_until(prepared(get("/")), soon(10_000), false)
            .await;
        assert_eq!(body_of(second.expect("a response")).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "the pooled one");
    }

    #[tokio::test]
    async fn a_connection_still_receiving_its_body_is_not_given_out() {
        static LARGE: [u8; 4 << 20] = [b'x'; 4 << 20];
        let (address, accepted) = upstream(&LARGE, Then::KeepAlive).await;
        let pool = pool(address);
        let first = pool.send(get("/")).await.expect("a response");
        // The first body is unread and too large to sit in buffers, so its
        // connection is busy receiving it.
        let second = pool.send(get("/")).await.expect("a response");
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
                .send(get("/"))
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
        let first = pool.send(get("/")).await.expect("a response");
        assert_eq!(first.resent, None);
        assert_eq!(body_of(first).await, "ok");
        let again = pool
            .send(get("/"))
            .await
            .expect("sent again on a new connection");
        assert_eq!(again.resent, Some(reason));
        assert_eq!(body_of(again).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // A bodiless DELETE is idempotent too: it goes again on a new
        // connection after the pooled one fails it.
        let delete = Request::delete("/item/7")
            .header("host", "upstream")
            .body(Empty::new())
            .expect("a request");
        let again = pool.send(delete).await.expect("sent again");
        assert_eq!(again.resent, Some(reason));
        assert_eq!(body_of(again).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        // A POST may have been acted on: it is not sent again.
        let post = Request::post("/")
            .header("host", "upstream")
            .body(Empty::new())
            .expect("a request");
        let error = pool.send(post).await.expect_err("not sent again");
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "no new connection");
        error
    }

    #[tokio::test]
    async fn a_repeatable_request_a_pooled_connection_dropped_goes_again_once() {
        let error = goes_again_once(Then::DropNext, Resend::Closed).await;
        assert!(!error.is_connect(), "{error}");
    }

    #[tokio::test]
    async fn a_repeatable_request_a_pooled_connection_reset_goes_again_once() {
        let error = goes_again_once(Then::ResetNext, Resend::Reset).await;
        assert!(
            matches!(&error, UpstreamError::Exchange(error) if error.is_reset()),
            "the error is the reset: {error}"
        );
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
        let response = pool.send(get("/")).await.expect("a response");
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
        let response = pool.send(get("/")).await.expect("a response");
        // The body, too large for the socket buffers, waits unread for
        // longer than the idle timeout; its idle time starts when it ends.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(pool.close_expired(), 0, "busy, not idle");
        assert_eq!(body_of(response).await.len(), LARGE.len());
        assert_eq!(pool.close_expired(), 0, "just became idle");
        let again = pool.send(get("/")).await.expect("a response");
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
        let response = pool(address).send(get("/")).await.expect("a response");
        assert_eq!(body_of(response).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let error = pool(address).send(get("/")).await.expect_err("refused");
        assert!(error.is_connect(), "{error}");
    }
}
