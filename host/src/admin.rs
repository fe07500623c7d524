//! The admin listener (loopback by default): `/healthz`, `/readyz`,
//! `/plugins`, `/metrics`, `POST /reload`, and `POST /logs` for the
//! application's logs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;

use crate::app::App;
use crate::reload::report::Outcome;
use crate::reload::status::PluginState;

/// How long `/readyz` waits for the upstream to accept a connection.
const UPSTREAM_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    crate::listener::serve(listener, "admin", move |request| {
        let app = app.clone();
        async move { route(&app, request).await }
    })
    .await
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

/// A 405 naming the methods that are allowed, as RFC 9110 section 15.5.6
/// requires.
fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain",
        format!("use {allow}\n"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

async fn route(app: &Arc<App>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() == "/reload" {
        return match *request.method() {
            Method::POST => reload(app).await,
            _ => method_not_allowed("POST"),
        };
    }
    if request.uri().path() == "/logs" {
        return crate::records::app_logs::handle(app, request).await;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return method_not_allowed("GET, HEAD");
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
            "not found: try /healthz, /readyz, /plugins, /metrics, POST /reload, POST /logs\n",
        ),
    }
}

/// Reloads now and answers with what changed, or why nothing did: 200 if
/// everything applied (or nothing had changed), 422 if something failed.
async fn reload(app: &Arc<App>) -> Response<Full<Bytes>> {
    let report = crate::reload::reload(app, crate::reload::Trigger::Admin).await;
    let status = match report.outcome {
        Outcome::Ok | Outcome::Unchanged => StatusCode::OK,
        Outcome::Partial | Outcome::Error => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let body = serde_json::to_string_pretty(&*report).unwrap_or_default() + "\n";
    text(status, "application/json", body)
}

/// Ready once plugins are loaded (they are, or the app would not exist) and
/// the upstream accepts connections, until shutdown begins: from then on
/// the proxy accepts no new connections, so a load balancer must stop
/// sending any.
async fn readiness(app: &App) -> Response<Full<Bytes>> {
    if app.is_draining() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining: shutting down\n",
        );
    }
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

/// The chain, each plugin's load history, and plugins that failed to load,
/// as JSON.
pub fn plugins_json(app: &App) -> serde_json::Value {
    let chain = app.chain.load();
    let book = app.reloader.book();
    let rfc3339 = |time| humantime::format_rfc3339_seconds(time).to_string();
    let mut plugins: Vec<serde_json::Value> = chain
        .plugins()
        .iter()
        .map(|p| {
            let record = book.get(&p.name);
            let state = book.state(&p.name, true).unwrap_or(PluginState::Serving);
            json!({
                "name": &*p.name,
                "file": p.file.display().to_string(),
                "sha256": p.sha256,
                "order": p.settings.order,
                "hooks": p.hooks.names(),
                "failure": p.settings.failure,
                "instances": p.settings.instances,
                "loaded_at": rfc3339(p.loaded_at),
                "versions_loaded": record.map_or(1, |r| r.versions_loaded),
                // A tripped or quarantined plugin says more than "serving".
                "state": match p.state_name() {
                    "serving" => state.as_str(),
                    tripped => tripped,
                },
                "load_error": record.and_then(|r| r.load_error.clone()),
                "load_error_at": record.and_then(|r| r.failed_at).map(rfc3339),
                "failures": p.failures.load(std::sync::atomic::Ordering::Relaxed),
                "consecutive_failures": p.breaker.consecutive_failures(),
                "trips": p.breaker.trips(),
                "quarantines": p.quarantine.entries(),
                "quarantine_remaining_ms": p.quarantine.remaining().map(|r| r.as_millis() as u64),
                "last_failure": *p.last_failure.lock().unwrap_or_else(|e| e.into_inner()),
                "idle_instances": p.idle_instances(),
                "calls": p.mode().name(),
            })
        })
        .collect();
    let serving: Vec<&str> = chain.plugins().iter().map(|p| &*p.name).collect();
    plugins.extend(book.failed_without_version(&serving).map(|(name, record)| {
        json!({
            "name": name,
            "file": record.file.display().to_string(),
            "state": PluginState::Failed.as_str(),
            "versions_loaded": record.versions_loaded,
            "load_error": record.load_error,
            "load_error_at": record.failed_at.map(rfc3339),
        })
    }));
    json!({
        "allocator": app.runtime.allocator.to_string(),
        "plugin_dir": app.reloader.plugin_dir().borrow().display().to_string(),
        "artifact_cache": app.reloader.cache().map(|c| c.dir().display().to_string()),
        "plugins": plugins,
    })
}
