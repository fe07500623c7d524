//! The inbound listener: HTTP/1.1 and h2c on one port, upgrades allowed,
//! the connection and request-head limits of `[limits]`, and a graceful
//! drain on shutdown.
//!
//! A slow or hostile client costs one task and one connection slot until a
//! timeout closes it: at most `max_connections` connections are served at
//! once (the rest wait in the kernel's accept queue), a connection must
//! send a request within `header_read_timeout_ms` and is closed after
//! `idle_timeout_ms` without one, and an oversized head gets a 431 from
//! hyper.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::Proxy;
use super::body::ResponseBody;
use super::connection::{Activity, TrackedBody};
use super::headers::ClientAddress;
use super::limits::InboundBody;
use super::own_http1::{self, Ended, HeadLimits};
use super::protocol::{self, Protocol};
use super::request_lines::RequestLines;
use super::rewind::Rewound;
use crate::config::Limits;

/// How long a connection closed for being quiet gets to finish closing.
const QUIET_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// hyper's HTTP/1 and HTTP/2 connection settings, built from the limits
/// once per worker.
struct HttpSettings {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl HttpSettings {
    fn new(limits: &Limits) -> Self {
        // No `header_read_timeout`: the connection's watchdog times request
        // heads (see `connection`).
        let mut http1 = http1::Builder::new();
        http1
            // A head over the limit gets a 431. The buffer bound alone is
            // not enough: hyper checks it only while a head is incomplete,
            // so a larger head that arrives in one read would pass.
            .max_header_size(limits.max_request_header_bytes)
            .max_buf_size(limits.max_request_header_bytes)
            .max_headers(limits.max_request_headers)
            // One buffer, one write(2): a response's head and body copied
            // together cost less user CPU than a writev(2) of the pieces
            // (docs/performance.md).
            .writev(false);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new()).max_header_list_size(
            limits
                .max_request_header_bytes
                .try_into()
                .unwrap_or(u32::MAX),
        );
        Self { http1, http2 }
    }
}

/// What a client connection holds while it is open: its slots and its
/// place in the open-connection gauge. A connection that switches protocols
/// (WebSocket) hands a share of it to the tunnel, so that it counts until
/// the tunnel closes rather than until hyper lets go of it.
pub struct ConnectionHold {
    _slot: Slot,
    _open: OpenConnection,
    phase: watch::Receiver<Phase>,
}

impl ConnectionHold {
    /// Resolves when the worker cuts its last connections at the end of
    /// the shutdown grace.
    pub async fn cut(&self) {
        let mut phase = self.phase.clone();
        let _ = phase.wait_for(|phase| *phase == Phase::Cut).await;
    }
}

/// Counts a connection as open until dropped.
struct OpenConnection(Arc<Proxy>);

impl OpenConnection {
    fn new(proxy: &Arc<Proxy>) -> Self {
        proxy.metrics().connections_open().inc();
        Self(proxy.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics().connections_open().dec();
    }
}

/// Serves one connection until it ends, goes quiet, or shutdown drains it.
async fn serve_connection(
    settings: Arc<HttpSettings>,
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    slot: Slot,
    mut stop: watch::Receiver<Phase>,
) {
    let hold = Arc::new(ConnectionHold {
        _slot: slot,
        _open: OpenConnection::new(&proxy),
        phase: stop.clone(),
    });
    let limits = proxy.limits().clone();
    let activity = Arc::new(Activity::default());
    let answerer = Answerer {
        proxy: proxy.clone(),
        activity: activity.clone(),
        hold,
        client: Arc::new(ClientAddress::new(peer)),
        phase: stop.clone(),
    };
    let protocol = tokio::select! {
        detected = protocol::detect(&stream) => match detected {
            Ok(Some(protocol)) => protocol,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%peer, %error, "connection ended before its first request");
                return;
            }
        },
        reason = activity.closed_when_quiet(limits.header_read_timeout, limits.idle_timeout) => {
            proxy.metrics().connection_closed(reason.name());
            tracing::debug!(%peer, reason = reason.name(), "closing a quiet connection");
            return;
        }
        _ = stop.wait_for(|phase| *phase != Phase::Serving) => return,
    };
    let mut watch = Watch {
        activity: activity.clone(),
        head_timeout: limits.header_read_timeout,
        idle_timeout: limits.idle_timeout,
        proxy: proxy.clone(),
        peer,
        stop,
    };
    match protocol {
        Protocol::Http1 => {
            // Tandem's own reader serves the common requests; the first
            // other one hands the connection to hyper (see `own_http1`).
            let closing = Arc::new(AtomicBool::new(false));
            let head_limits = HeadLimits {
                max_bytes: limits.max_request_header_bytes,
                max_headers: limits.max_request_headers,
            };
            let own_answerer = answerer.clone();
            let lines_proxy = proxy.clone();
            let own = own_http1::serve(
                stream,
                move |request, lines| own_answerer.answer(request, lines),
                move || lines_proxy.passes_request_lines(),
                head_limits,
                closing.clone(),
            );
            // A connection with a request in flight finishes it; one
            // without is dropped at once.
            let ask_to_close = |_: Pin<&mut _>| {
                closing.store(true, Ordering::Relaxed);
                activity.is_idle()
            };
            let ended = watch.serve(own, ask_to_close).await;
            let Some(Ended::HandOff { stream, unread }) = ended else {
                return;
            };
            let io = TokioIo::new(Rewound::new(stream, unread));
            let connection = settings
                .http1
                .serve_connection(io, hyper_service(answerer))
                .with_upgrades();
            let ended = watch
                .serve(connection, |connection| {
                    connection.graceful_shutdown();
                    false
                })
                .await;
            log_error(peer, ended);
        }
        Protocol::Http2 => {
            let io = TokioIo::new(stream);
            let connection = settings.http2.serve_connection(io, hyper_service(answerer));
            let ended = watch
                .serve(connection, |connection| {
                    connection.graceful_shutdown();
                    false
                })
                .await;
            log_error(peer, ended);
        }
    }
}

/// How a connection answers a request: the proxy's answer, with the
/// connection's bookkeeping around it (its activity for the watchdog, its
/// hold for a protocol switch, the cut of HTTP/2 streams at the end of the
/// shutdown grace). HTTP/2 runs each stream's future in a task of its own,
/// so the futures own what they use.
#[derive(Clone)]
struct Answerer {
    proxy: Arc<Proxy>,
    activity: Arc<Activity>,
    hold: Arc<ConnectionHold>,
    client: Arc<ClientAddress>,
    phase: watch::Receiver<Phase>,
}

impl Answerer {
    fn answer(
        &self,
        mut request: hyper::Request<InboundBody>,
        lines: Option<Box<RequestLines>>,
    ) -> impl Future<Output = hyper::Response<TrackedBody<ResponseBody>>> + Send + use<> {
        let guard = self.activity.request_started(request.version());
        let body_busy = request
            .body()
            .as_ref()
            .is_some_and(|body| !http_body::Body::is_end_stream(body))
            .then(|| self.activity.busy());
        let proxy = self.proxy.clone();
        let client = self.client.clone();
        // Only a request that may switch protocols carries the hold (an
        // extension costs an allocation). The own reader's requests (no
        // body) never have an Upgrade header: see `InboundBody`.
        if request.body().is_some() && request.headers().contains_key(http::header::UPGRADE) {
            request.extensions_mut().insert(self.hold.clone());
        }
        // HTTP/2 streams run in tasks of their own, which outlive their
        // connection's; at the end of the shutdown grace they are cut here.
        let cut = (request.version() == http::Version::HTTP_2).then(|| self.phase.clone());
        async move {
            // Awaited where it is made when it can be: the future is
            // kilobytes, and each move copies it.
            let response = match cut {
                None => proxy.handle(request, &client, body_busy, lines).await,
                Some(mut phase) => tokio::select! {
                    response = proxy.handle(request, &client, body_busy, lines) => response,
                    _ = phase.wait_for(|phase| *phase == Phase::Cut) => cut_response(),
                },
            };
            response.map(|body| TrackedBody::new(body, guard))
        }
    }
}

/// `answerer` as a hyper service.
fn hyper_service(
    answerer: Answerer,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<TrackedBody<ResponseBody>>,
    Error = Infallible,
    Future = impl Future<Output = Result<hyper::Response<TrackedBody<ResponseBody>>, Infallible>> + Send,
> + Clone {
    service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let answering = answerer.answer(request.map(Some), None);
        async move { Ok::<_, Infallible>(answering.await) }
    })
}

/// Logs how hyper's connection ended, if it ended with an error.
fn log_error(peer: SocketAddr, ended: Option<hyper::Result<()>>) {
    if let Some(Err(error)) = ended {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// What watches a connection while it is served.
struct Watch {
    activity: Arc<Activity>,
    head_timeout: Duration,
    idle_timeout: Duration,
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    stop: watch::Receiver<Phase>,
}

impl Watch {
    /// Drives `connection` until it ends, goes quiet, or shutdown drains
    /// it; `graceful_shutdown` asks it to finish what is in flight, and
    /// returns true if nothing is, so that it can be dropped at once.
    /// Returns the connection's own end, if it ended before it was asked to.
    async fn serve<C: Future>(
        &mut self,
        connection: C,
        graceful_shutdown: impl FnOnce(Pin<&mut C>) -> bool,
    ) -> Option<C::Output> {
        let peer = self.peer;
        tokio::pin!(connection);
        let draining = tokio::select! {
            // In this order: the connection is what wakes the task most.
            biased;
            ended = connection.as_mut() => return Some(ended),
            reason = self.activity.closed_when_quiet(self.head_timeout, self.idle_timeout) => {
                self.proxy.metrics().connection_closed(reason.name());
                tracing::debug!(%peer, reason = reason.name(), "closing a quiet connection");
                false
            }
            _ = self.stop.wait_for(|phase| *phase != Phase::Serving) => true,
        };
        if graceful_shutdown(connection.as_mut()) {
            return None;
        }
        if draining {
            // Shutdown: in-flight requests finish, until the grace is over
            // and the worker cuts what is left. Dropping the connection
            // drops its requests, which are still logged (as 499).
            // The watchdog still applies, so a client that never finishes
            // its request head does not hold the drain open to its end.
            tokio::select! {
                _ = connection => {}
                _ = self.stop.wait_for(|phase| *phase == Phase::Cut) => {
                    tracing::debug!(%peer, "cut at the end of the shutdown grace");
                }
                reason = self.activity.closed_when_quiet(self.head_timeout, self.idle_timeout) => {
                    self.proxy.metrics().connection_closed(reason.name());
                    tracing::debug!(%peer, reason = reason.name(), "closing a quiet connection while draining");
                }
            }
        } else {
            // Nothing is in flight: a client that does not close is cut off.
            let _ = tokio::time::timeout(QUIET_CLOSE_GRACE, connection).await;
        }
        None
    }
}

/// Where a worker's connections are in shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Serving as usual.
    Serving,
    /// Finishing what is in flight, taking no new request.
    Draining,
    /// The grace is over: end now.
    Cut,
}

/// What a cut HTTP/2 stream answers; its connection is gone, so nobody
/// reads it.
fn cut_response() -> hyper::Response<ResponseBody> {
    let mut response = hyper::Response::new(ResponseBody::full(bytes::Bytes::new()));
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// How long cut connections get to end.
const CUT_SETTLE: Duration = Duration::from_secs(1);
/// How long shutdown waits for on-log calls still running.
const LOG_SETTLE: Duration = Duration::from_secs(2);

/// The connection slots of the whole process: `[limits] max_connections`,
/// shared by every worker.
pub fn connection_slots(limits: &Limits) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(limits.max_connections as usize))
}

/// A connection's hold on a process-wide slot and on its worker's count.
struct Slot {
    _process: OwnedSemaphorePermit,
    _worker: OwnedSemaphorePermit,
}

/// Serves `listener` until `shutdown` completes, then stops accepting and
/// gives in-flight requests up to `grace` to finish, or until `cut_early`
/// completes. Connections take their slots from `slots`, which other
/// workers may share. Returns whether every connection of this worker
/// drained in time.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    slots: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    cut_early: impl Future<Output = ()>,
) -> bool {
    let limits = proxy.limits().clone();
    let settings = Arc::new(HttpSettings::new(&limits));
    // This worker's own connections, so that the drain waits for them and
    // not for other workers'. Never the tighter bound: each connection
    // holds a process-wide slot too.
    let mine = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stop, stopped) = watch::channel(Phase::Serving);
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting, so that excess connections
        // queue in the kernel instead of costing memory here.
        let process = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let permit = Slot {
            _process: process,
            _worker: mine
                .clone()
                .try_acquire_owned()
                .expect("a worker never holds more connections than the process"),
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            settings.clone(),
            stream,
            peer,
            proxy.clone(),
            permit,
            stopped.clone(),
        ));
    }
    drop(listener);
    tracing::info!(grace = ?grace, "draining in-flight requests");
    let _ = stop.send(Phase::Draining);
    // Every connection holds a slot until it ends.
    let all = limits.max_connections;
    let drained = tokio::select! {
        drained = tokio::time::timeout(grace, mine.acquire_many(all)) => drained.is_ok(),
        () = cut_early => false,
    };
    if !drained {
        tracing::warn!("cutting the remaining connections");
        proxy.log_calls().cut_remaining();
        let _ = stop.send(Phase::Cut);
        // Cutting is dropping, which takes one turn of each connection's
        // (and each tunnel's) task.
        let _ = tokio::time::timeout(CUT_SETTLE, mine.acquire_many(all)).await;
    }
    // The last requests' on-log calls (those just cut among them) write
    // their records before the caller flushes the records.
    if !proxy.log_calls().settled(LOG_SETTLE).await {
        tracing::warn!(limit = ?LOG_SETTLE, "on-log calls still running at shutdown");
    }
    drained
}
