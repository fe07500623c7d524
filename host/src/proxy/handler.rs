//! One request's way through Tandem:
//!
//! ```text
//! client ─▶ on-request (1 → n) ─▶ upstream ─▶ on-response (n → 1) ─▶ client
//!                                                   then on-log (n → 1)
//! ```
//!
//! Bodies stream through; only heads are handed to plugins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use hyper::upgrade::OnUpgrade;

use super::body::{
    BodyBytes, BodyEnd, Completion, CountingBody, ResponseBody, UpstreamResponseBody,
};
use super::connection::RequestGuard;
use super::errors::ProxyError;
use super::headers::{self, ClientAddress, Framing};
use super::limits::{
    BodyVerdict, InboundBody, LimitedBody, declared_over, drain, expects_continue,
};
use super::log_phase::{AbandonWatch, LogCalls, LogJob, micros};
use super::path;
use super::request_lines::{OutgoingLines, RequestLines};
use super::server::ConnectionHold;
use super::upgrade;
use super::upstream_exchange::{self, ExchangeError};
use super::upstream_pool::UpstreamPool;
use crate::chain::{Chain, RequestVerdict, ResponseVerdict};
use crate::config::Limits;
use crate::http_client::error_chain;
use crate::metrics::Metrics;
use crate::replay::recorder::Recording;
use crate::runtime::bindings::Exchange;
use crate::runtime::exchange::{RequestHead, RequestHeadFields, ResponseHead};
use crate::runtime::plugin::PluginReply;

/// The proxy: the current chain, the upstream and a pool of connections to
/// it (one proxy per worker, so one pool per worker).
pub struct Proxy {
    chain: Arc<ArcSwap<Chain>>,
    pool: UpstreamPool,
    upstream: http::uri::Authority,
    upstream_timeout: Duration,
    metrics: Arc<Metrics>,
    limits: Limits,
    log_calls: Arc<LogCalls>,
}

/// The client's request body with the limits that apply to it.
struct ClientBody {
    body: LimitedBody,
    limit: u64,
    verdict: BodyVerdict,
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.in_flight().inc();
        Self(metrics.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight().dec();
    }
}

/// Facts gathered along the way, reported when the exchange finishes.
#[derive(Default)]
struct Trail {
    upstream_duration: Option<Duration>,
    responded_by: Option<String>,
    error: Option<String>,
}

struct ExchangeDone {
    started: Instant,
    status: StatusCode,
    request_bytes: BodyBytes,
    trail: Trail,
    log: Option<LogJob>,
    recording: Option<Recording>,
    _in_flight: InFlight,
}

impl Completion for ExchangeDone {
    fn finish(self: Box<Self>, sent: u64, end: BodyEnd<'_>) {
        let elapsed = self.started.elapsed();
        let metrics = &self._in_flight.0;
        metrics.request_done(self.status.as_u16(), elapsed);
        let mut error = self.trail.error;
        match end {
            BodyEnd::Complete => {}
            BodyEnd::Dropped => {
                error.get_or_insert_with(|| "response body not sent in full".into());
            }
            // The connection was shut down under the response because the
            // client's upload broke: not the application's failure.
            BodyEnd::Failed(failure @ ExchangeError::UploadBroken) => {
                error.get_or_insert_with(|| failure.to_string());
            }
            // The head has gone (or is going) out with its status, so the
            // client sees a cut connection, not a 502: at least the
            // operator hears of it.
            BodyEnd::Failed(failure) => {
                metrics.upstream_failed("response_body");
                tracing::warn!(
                    status = self.status.as_u16(),
                    sent,
                    "the application's response body failed: {}",
                    error_chain(failure)
                );
                error.get_or_insert_with(|| {
                    format!(
                        "upstream response body failed after {sent} bytes: {}",
                        error_chain(failure)
                    )
                });
            }
        }
        if let Some(recording) = self.recording {
            let request_bytes = self.request_bytes.get();
            recording.finish(request_bytes, sent, elapsed, self.trail.upstream_duration);
        }
        let Some(job) = self.log else { return };
        job.start(Exchange {
            status: self.status.as_u16(),
            request_bytes: self.request_bytes.get(),
            response_bytes: sent,
            duration_us: micros(elapsed),
            upstream_duration_us: self.trail.upstream_duration.map(micros),
            responded_by: self.trail.responded_by,
            error,
        });
    }
}

/// How long an upstream connection may sit unused before it is closed.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle upstream connections kept per worker.
const MAX_IDLE_UPSTREAM_CONNECTIONS: usize = 1024;

static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// A copy of a request head for the later phases (the original goes
/// upstream). Extensions are connection plumbing and are not copied.
fn copy_request_head(head: &RequestHead) -> RequestHead {
    let mut copy = Request::new(());
    *copy.method_mut() = head.parts.method.clone();
    *copy.uri_mut() = head.parts.uri.clone();
    *copy.version_mut() = head.parts.version;
    *copy.headers_mut() = head.parts.headers.clone();
    RequestHead::from(RequestHeadFields {
        parts: copy.into_parts().0,
        client_addr: head.client_addr,
        scheme: head.scheme,
        properties: head.properties.clone(),
    })
}

fn copy_response_head(parts: &http::response::Parts) -> ResponseHead {
    let mut copy = Response::new(());
    *copy.status_mut() = parts.status;
    *copy.version_mut() = parts.version;
    *copy.headers_mut() = parts.headers.clone();
    ResponseHead {
        parts: copy.into_parts().0,
    }
}

fn reply_response(reply: PluginReply) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(reply.body));
    *response.status_mut() = reply.status;
    *response.headers_mut() = reply.headers;
    response
}

impl Proxy {
    /// A proxy to `upstream` that runs requests through `chain`.
    pub fn new(
        chain: Arc<ArcSwap<Chain>>,
        upstream: http::uri::Authority,
        upstream_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let pool = UpstreamPool::new(
            upstream.clone(),
            upstream_timeout,
            UPSTREAM_IDLE_TIMEOUT,
            MAX_IDLE_UPSTREAM_CONNECTIONS,
        );
        Self {
            chain,
            pool,
            upstream,
            upstream_timeout,
            metrics,
            limits: Limits::default(),
            log_calls: Arc::default(),
        }
    }

    /// Applies `limits` (body size, request timeout; the listener reads the
    /// connection limits from here too).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        // The rest of an upload that outlives its response gets the time
        // a client has for its whole request.
        self.pool.set_upload_timeout(limits.request_timeout);
        self.limits = limits;
        self
    }

    /// Cuts a response whose upstream sends nothing for `timeout` in the
    /// middle of its body.
    pub fn with_upstream_body_timeout(mut self, timeout: Duration) -> Self {
        self.pool.set_body_timeout(timeout);
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Closes this worker's upstream connections that sat idle too long,
    /// every so often, for as long as the worker's event loop runs.
    pub async fn sweep_upstream_connections(&self) {
        let mut every = tokio::time::interval(self.pool.sweep_every());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let closed = self.pool.close_expired();
            if closed > 0 {
                tracing::debug!(closed, "closed idle upstream connections");
            }
        }
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// This worker's `on-log` calls in progress.
    pub fn log_calls(&self) -> &Arc<LogCalls> {
        &self.log_calls
    }

    /// Answers with `error` before the chain runs, counting the request.
    fn refuse(
        &self,
        error: ProxyError,
        request_id: Option<&HeaderValue>,
        started: Instant,
    ) -> Response<ResponseBody> {
        self.metrics.limit_rejected(error.code());
        self.metrics
            .request_done(error.status().as_u16(), started.elapsed());
        let mut response = error.to_response(request_id);
        // The unread body makes the connection unusable for another request.
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        response
    }

    /// Whether a request's header lines may go upstream as received (see
    /// `RequestLines`): nothing reads heads on the way, no plugin and no
    /// recording. Asked as each head comes in.
    pub fn passes_request_lines(&self) -> bool {
        !heads_are_read(&self.chain.load())
    }

    /// Handles one request from `client`. `body_busy`, if the request has
    /// a body, is held until the body has gone upstream or been dropped.
    /// `lines`, if the own reader kept them, are the request's headers
    /// (its header map is empty).
    pub async fn handle(
        &self,
        request: Request<InboundBody>,
        client: &ClientAddress,
        body_busy: Option<RequestGuard>,
        lines: Option<Box<RequestLines>>,
    ) -> Response<ResponseBody> {
        let client_addr = client.addr();
        let started = Instant::now();
        let in_flight = InFlight::new(&self.metrics);
        let chain = self.chain.load_full();
        let (mut parts, body) = request.into_parts();
        let lines = match lines {
            Some(lines) if heads_are_read(&chain) => {
                // Something came to read heads since this one was taken (a
                // reload): it gets the map.
                let Some(headers) = lines.to_header_map() else {
                    drop(in_flight);
                    return self.refuse(
                        ProxyError::BadRequestHead("a header line that makes no header"),
                        lines.request_id.as_ref(),
                        started,
                    );
                };
                parts.headers = headers;
                None
            }
            lines => lines,
        };
        // The own reader's requests have no body framing and no Upgrade
        // (see `InboundBody`): nothing to look up for them here.
        let own_reader = body.is_none();
        let upgrade = if own_reader {
            None
        } else {
            headers::requested_upgrade(parts.version, &parts.headers)
        };
        // Taken out whether or not the request upgrades, so that a head
        // kept for later phases does not hold the connection's slot.
        let hold = parts.extensions.remove::<Arc<ConnectionHold>>();
        let client_upgrade = match upgrade {
            Some(_) => parts.extensions.remove::<OnUpgrade>().map(|on| (on, hold)),
            None => None,
        };
        let request_id = match &lines {
            Some(lines) => lines.request_id.clone(),
            None => parts.headers.get(&X_REQUEST_ID).cloned(),
        };
        // Lines as received had their Host checked as they were taken, and
        // their target is in origin form.
        if lines.is_none()
            && let Some(error) = headers::request_head_problem(&parts)
        {
            drop(in_flight);
            if !expects_continue(&parts.headers) {
                Box::pin(drain(body)).await;
            }
            tracing::info!(client = %client_addr, "{}", error.public_message());
            return self.refuse(error, request_id.as_ref(), started);
        }
        if lines.is_none() {
            headers::host_from_target(&mut parts);
        }
        if self.limits.normalize_paths {
            normalize_path(&mut parts.uri, self.limits.merge_slashes);
        }
        let limit = self.limits.body_limit_for(parts.uri.path());
        if !own_reader && declared_over(&parts.headers, limit) {
            drop(in_flight);
            if !expects_continue(&parts.headers) {
                Box::pin(drain(body)).await;
            }
            return self.refuse(
                ProxyError::BodyTooLarge { limit },
                request_id.as_ref(),
                started,
            );
        }
        let verdict = BodyVerdict::for_body(&body);
        let body = ClientBody {
            body: LimitedBody::new(
                body,
                limit,
                started + self.limits.request_timeout,
                verdict.clone(),
            )
            .keeping(body_busy),
            limit,
            verdict,
        };
        // Recording was off when the lines were kept, and is never turned
        // off once on.
        let mut recording = match lines {
            Some(_) => None,
            None => Recording::start(&parts, client_addr),
        };
        let head = RequestHead::new(parts, client_addr, "http");
        let request_bytes = BodyBytes::new(!own_reader);
        // From here on a dropped request is counted (and, while it waits
        // for the upstream, logged) as 499.
        let mut watch = AbandonWatch::new(
            &chain,
            &self.log_calls,
            &self.metrics,
            started,
            &request_bytes,
        );

        // The chain's futures are boxed: inline, their size would be part of
        // every request's future, plugins or not, and copied with it.
        let (head, verdict) = if chain.has_on_request() {
            let framing = Framing::of(&head.parts.headers);
            let (mut head, verdict) = Box::pin(chain.on_request(head)).await;
            framing.restore(&mut head.parts.headers);
            (head, verdict)
        } else {
            (head, RequestVerdict::Forward)
        };
        let keep_request = chain.has_on_response() || chain.has_on_log();
        let mut trail = Trail::default();
        let (kept_request, response, reached) = match verdict {
            RequestVerdict::Forward => {
                watch.hold(keep_request.then(|| copy_request_head(&head)));
                // The upstream's header lines go to the client as they came
                // when nothing on the way reads them: no plugin phase, no
                // recording, no switch of protocols; and the own writer
                // answers (hyper writes from a header map).
                let keep_received =
                    own_reader && !keep_request && upgrade.is_none() && recording.is_none();
                let asked = upgrade.clone();
                let forwarded = self
                    .forward(
                        head,
                        client,
                        body,
                        upgrade,
                        &request_bytes,
                        keep_received,
                        lines,
                    )
                    .await
                    .and_then(|(response, took)| {
                        match upstream_response_problem(asked.as_ref(), &response) {
                            Some(problem) => {
                                Err((ProxyError::UpstreamFailed(problem.into()), Some(took)))
                            }
                            None => Ok((response, took)),
                        }
                    });
                let response = match forwarded {
                    Ok((mut response, took)) => {
                        trail.upstream_duration = Some(took);
                        if response.status() == StatusCode::SWITCHING_PROTOCOLS
                            && let (Some((client, hold)), Some(upstream)) =
                                (client_upgrade, response.body_mut().take_tunnel())
                        {
                            upgrade::splice(client, upstream, hold);
                        }
                        response.map(ResponseBody::upstream)
                    }
                    Err((error, took)) => {
                        trail.upstream_duration = took;
                        match &error {
                            ProxyError::BodyTooLarge { .. }
                            | ProxyError::RequestTimeout
                            | ProxyError::BadRequestBody => {
                                self.metrics.limit_rejected(error.code());
                                tracing::info!(client = %client_addr, "{error}");
                            }
                            _ => {
                                self.metrics.upstream_failed(error.code());
                                tracing::warn!(upstream = %self.upstream, "{error}");
                            }
                        }
                        trail.error = Some(error.to_string());
                        error.to_response(request_id.as_ref())
                    }
                };
                (watch.take(), response, chain.plugins().len())
            }
            RequestVerdict::Reply { by, reply } => {
                trail.responded_by = Some(chain.name(by).to_owned());
                (keep_request.then_some(head), reply_response(reply), by + 1)
            }
            RequestVerdict::Failed { by, failure } => {
                let plugin = chain.name(by).to_owned();
                trail.error = Some(format!("plugin {plugin} failed in on-request: {failure}"));
                let response =
                    ProxyError::plugin(plugin, &failure).to_response(request_id.as_ref());
                (keep_request.then_some(head), response, by + 1)
            }
        };

        let (mut parts, mut body) = response.into_parts();
        let mut kept_request = kept_request;
        if chain.has_on_response()
            && let Some(request) = kept_request.take()
        {
            let framing = Framing::of(&parts.headers);
            let (request, head, verdict) =
                Box::pin(chain.on_response(request, ResponseHead { parts }, reached)).await;
            kept_request = Some(request);
            parts = head.parts;
            match verdict {
                ResponseVerdict::Keep => framing.restore(&mut parts.headers),
                ResponseVerdict::Replace {
                    by,
                    body: replacement,
                } => {
                    trail.responded_by = Some(chain.name(by).to_owned());
                    body = ResponseBody::full(replacement);
                }
                ResponseVerdict::Failed { by, failure } => {
                    let plugin = chain.name(by).to_owned();
                    trail.error = Some(format!("plugin {plugin} failed in on-response: {failure}"));
                    let (error_parts, error_body) = ProxyError::plugin(plugin, &failure)
                        .to_response(request_id.as_ref())
                        .into_parts();
                    parts = error_parts;
                    body = error_body;
                }
            }
        }

        let upgraded = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        let upgrade_headers = upgraded.then(|| {
            (
                parts.headers.get(http::header::UPGRADE).cloned(),
                parts.headers.get(http::header::CONNECTION).cloned(),
            )
        });
        headers::remove_hop_by_hop(&mut parts.headers);
        if let Some((upgrade_value, connection)) = upgrade_headers {
            restore_upgrade_headers(&mut parts.headers, upgrade_value, connection);
        }

        let log = match (chain.has_on_log(), kept_request) {
            (true, Some(request)) => Some(LogJob {
                chain: chain.clone(),
                request,
                response: copy_response_head(&parts),
                calls: self.log_calls.clone(),
            }),
            _ => None,
        };
        if let Some(recording) = recording.as_mut() {
            recording.response(&parts);
        }
        watch.disarm();
        let done = ExchangeDone {
            started,
            status: parts.status,
            request_bytes,
            trail,
            log,
            recording,
            _in_flight: in_flight,
        };
        Response::from_parts(parts, body.on_complete(Box::new(done)))
    }

    /// Sends the request to the upstream and waits for its response head.
    /// `lines`, if there are any, go upstream as the request's headers.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        head: RequestHead,
        client: &ClientAddress,
        body: ClientBody,
        upgrade: Option<HeaderValue>,
        request_bytes: &BodyBytes,
        keep_received: bool,
        lines: Option<Box<RequestLines>>,
    ) -> Result<(Response<UpstreamResponseBody>, Duration), (ProxyError, Option<Duration>)> {
        let RequestHeadFields {
            mut parts, scheme, ..
        } = head.into_fields();
        // The request line carries the origin form (path and query); the
        // authority travels in Host.
        let origin_form = match parts.uri.path_and_query() {
            Some(target) => Uri::from(target.clone()),
            None => Uri::from_static("/"),
        };
        // Without a Host and an authority in the target (an HTTP/1.0
        // client may send neither), the upstream's own name: HTTP/1.1
        // requires a Host.
        let outgoing_lines = match &lines {
            Some(lines) => Some(OutgoingLines {
                lines: &lines.lines,
                forwarded_for: client.forwarded_for(),
                scheme,
            }),
            None => {
                let authority = parts.uri.authority().cloned();
                headers::for_upstream(
                    &mut parts.headers,
                    authority.as_ref().unwrap_or(&self.upstream),
                    client,
                    scheme,
                    upgrade,
                );
                None
            }
        };
        // A body of unknown length (chunked) goes chunked, even on a GET or
        // HEAD: the upstream client frames a body by these headers alone.
        // Never beside a Content-Length.
        if !body.body.is_end_stream() && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
            parts.headers.insert(
                http::header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        parts.uri = origin_form;
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        let ClientBody {
            body,
            limit,
            verdict,
        } = body;
        let body = CountingBody::new(body, request_bytes.clone());
        let request = Request::from_parts(parts, body);
        // Written out before anything is awaited, so that neither the
        // request's parts nor its lines take room in this future.
        // It fails only for a body that contradicts its own framing, which
        // no client can send (hyper frames the body by the head): answered
        // as the application's failure, as it was when the pool wrote it.
        let prepared = match upstream_exchange::prepare(request, outgoing_lines) {
            Ok(prepared) => prepared,
            Err(error) => return Err((ProxyError::UpstreamFailed(error_chain(&error)), None)),
        };
        drop(lines);
        let sent = Instant::now();
        // Timed from `sent`, so that arming the timer reads no clock again.
        let deadline = tokio::time::Instant::from_std(sent + self.upstream_timeout);
        match self
            .pool
            .send_until(prepared, deadline, keep_received)
            .await
        {
            Ok(exchanged) => {
                if let Some(resend) = exchanged.resent {
                    self.metrics.upstream_resent(resend.name());
                }
                Ok((exchanged.response, sent.elapsed()))
            }
            Err(error) if error.is_timeout() => {
                Err((ProxyError::UpstreamTimeout, Some(sent.elapsed())))
            }
            Err(error) => {
                // The upstream call failed because the client's body broke a
                // limit: that is the client's error, not the upstream's.
                if let Some(limit_error) = verdict.error(limit) {
                    if let ProxyError::BodyTooLarge { .. } = limit_error {
                        Box::pin(verdict.drain_rest()).await;
                    }
                    return Err((limit_error, Some(sent.elapsed())));
                }
                let detail = error_chain(&error);
                let error = if error.is_connect() {
                    ProxyError::UpstreamUnreachable(detail)
                } else {
                    ProxyError::UpstreamFailed(detail)
                };
                Err((error, Some(sent.elapsed())))
            }
        }
    }
}

/// Whether something reads request heads on their way with `chain`: a
/// plugin's hook, or the recorder.
fn heads_are_read(chain: &Chain) -> bool {
    chain.reads_heads() || Recording::is_on()
}

/// Puts the path of `uri` in its normal form (see `proxy::path`), so that
/// plugins, route limits and the application all read one spelling.
fn normalize_path(uri: &mut Uri, merge_slashes: bool) {
    let Some(normal) = uri
        .path_and_query()
        .and_then(|target| path::normalized(target, merge_slashes))
    else {
        return;
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(normal);
    if let Ok(normalized) = Uri::from_parts(parts) {
        *uri = normalized;
    }
}

/// What is wrong with an upstream response that must not reach the
/// client, if anything: a switch of protocols the client did not ask for
/// (the client would be left with a connection in a state it does not
/// know). What HTTP/1.1 itself forbids, the response parser refuses
/// (`upstream_codec`).
fn upstream_response_problem(
    asked: Option<&HeaderValue>,
    response: &Response<UpstreamResponseBody>,
) -> Option<&'static str> {
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && !headers::switch_was_asked_for(asked, response.headers())
    {
        return Some("the application switched to a protocol the client did not ask for");
    }
    None
}

fn restore_upgrade_headers(
    headers: &mut http::HeaderMap,
    upgrade: Option<HeaderValue>,
    connection: Option<HeaderValue>,
) {
    if let Some(value) = upgrade {
        headers.insert(http::header::UPGRADE, value);
    }
    if let Some(value) = connection {
        headers.insert(http::header::CONNECTION, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future that an async fn taking `Args` returns,
    /// without calling it.
    fn future_size<Args, F: Future>(_: impl FnOnce(Args) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every request in flight holds one of these futures, and hyper moves
    /// each one whole into its slot: a future that grows by kilobytes
    /// (an inline future of a rare path, or a large value bound to a local
    /// across an await) costs memory per request and a copy per request.
    #[test]
    fn a_requests_future_stays_small() {
        let handle = future_size(
            |(proxy, request, client, busy, lines): (
                &Proxy,
                Request<InboundBody>,
                &ClientAddress,
                Option<RequestGuard>,
                Option<Box<RequestLines>>,
            )| proxy.handle(request, client, busy, lines),
        );
        assert!(handle <= 4096, "Proxy::handle's future is {handle} bytes");
    }
}
