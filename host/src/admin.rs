//! The admin listener (loopback by default): `/healthz`, `/readyz`,
//! `/plugins` and `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

use crate::app::App;

/// How long `/readyz` waits for the upstream to accept a connection.
const UPSTREAM_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(route(&app, request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

async fn route(app: &App, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use GET\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => readiness(app).await,
        "/plugins" => text(
            StatusCode::OK,
            "application/json",
            plugins_json(app).to_string(),
        ),
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            app.metrics().render(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /healthz, /readyz, /plugins, /metrics\n",
        ),
    }
}

/// Ready once plugins are loaded (they are, or the app would not exist) and
/// the upstream accepts connections.
async fn readiness(app: &App) -> Response<Full<Bytes>> {
    let upstream = app.config.upstream.as_str().to_owned();
    let probe = tokio::time::timeout(
        UPSTREAM_PROBE_TIMEOUT,
        tokio::net::TcpStream::connect(&upstream),
    )
    .await;
    match probe {
        Ok(Ok(_)) => text(StatusCode::OK, "text/plain", "ready\n"),
        Ok(Err(error)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("upstream {upstream} not reachable: {error}\n"),
        ),
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("upstream {upstream} did not accept within {UPSTREAM_PROBE_TIMEOUT:?}\n"),
        ),
    }
}

/// The chain and any load failures, as JSON.
pub fn plugins_json(app: &App) -> serde_json::Value {
    let chain = app.chain.load();
    let mut plugins: Vec<serde_json::Value> = chain
        .plugins()
        .iter()
        .map(|p| {
            json!({
                "name": &*p.name,
                "file": p.file.display().to_string(),
                "sha256": p.sha256,
                "order": p.settings.order,
                "hooks": p.hooks.names(),
                "failure": p.settings.failure,
                "instances": p.settings.instances,
                "loaded_at": humantime::format_rfc3339_seconds(p.loaded_at).to_string(),
                "state": p.state_name(),
                "failures": p.failures.load(std::sync::atomic::Ordering::Relaxed),
                "consecutive_failures": p.breaker.consecutive_failures(),
                "trips": p.breaker.trips(),
                "last_failure": *p.last_failure.lock().unwrap_or_else(|e| e.into_inner()),
                "idle_instances": p.idle_instances(),
            })
        })
        .collect();
    let failures = app.load_failures.lock().unwrap_or_else(|e| e.into_inner());
    plugins.extend(failures.iter().map(|f| {
        json!({
            "name": f.name,
            "file": f.file.display().to_string(),
            "state": "failed",
            "error": f.error,
        })
    }));
    json!({ "allocator": app.runtime.allocator.to_string(), "plugins": plugins })
}
