//! The pooled HTTP client of the HTTP records sink (to the collector), and
//! how client errors are told, for the sink and the proxy alike. (The proxy
//! keeps its own per-worker pool of upstream connections:
//! `proxy::upstream_pool`.)

use std::time::Duration;

use hyper::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A pooled client whose connections are made without Nagle's delay within
/// `connect_timeout`, keeping up to `max_idle_per_host` idle ones for
/// `idle_timeout`.
pub fn pooled<B>(
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_host: usize,
) -> Client<HttpConnector, B>
where
    B: Body + Send,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle_timeout)
        .pool_max_idle_per_host(max_idle_per_host)
        .build(connector)
}

/// The error and its causes on one line (a client error's own text is
/// often just "client error (Connect)").
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
