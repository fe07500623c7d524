//! Serving a small hyper service (the admin endpoints, the app-log
//! listener) on every connection a listener accepts. The proxy has its
//! own accept loop (`proxy::server`), with connection limits and a drain.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Pause after a failed accept (e.g. out of file descriptors), so that a
/// lasting failure does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Answers every request on every connection of `listener` with `handle`
/// (HTTP/1 or h2c), until the task is dropped. `what` names the listener
/// in the log line of a failed accept.
pub async fn serve<H, F>(listener: TcpListener, what: &'static str, handle: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "{what} accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let handle = handle.clone();
        let service = service_fn(move |request| {
            let response = handle(request);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
