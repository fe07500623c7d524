//! The demo application's routes. Every answer except `/healthz` and
//! `/echo` is JSON, so it reads well through `curl` and parses in tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

/// The body of every response: either built here or the request's own body
/// streamed back (`/echo`).
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The longest `/slow` will wait, so a typo cannot park a connection for days.
const MAX_SLOW: Duration = Duration::from_secs(300);
/// How long `/slow` waits when no `ms` is given.
const DEFAULT_SLOW_MS: u64 = 1000;
/// The largest log record `/logs` accepts.
const MAX_LOG_BYTES: usize = 1 << 20;

/// Answers one request. `peer` is the address of whoever connected, which
/// behind Tandem is Tandem itself; the client is in `x-forwarded-for`.
pub async fn route(request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => describe(&request, peer),
        (&Method::POST, "/echo") => echo(request),
        (&Method::GET, "/slow") => slow(&request).await,
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::POST, "/logs") => logs(request).await,
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "error": "not_found",
                "method": request.method().as_str(),
                "path": request.uri().path(),
                "routes": ["GET /", "POST /echo", "GET /slow?ms=N", "GET /healthz", "POST /logs"],
            }),
        ),
    }
}

/// `GET /`: what the application received, so a user can see what Tandem
/// forwarded (the `x-forwarded-*` headers, a rewritten path, ...).
fn describe(request: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let mut headers: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    json_response(
        StatusCode::OK,
        &json!({
            "method": request.method().as_str(),
            "path": request.uri().path(),
            "query": request.uri().query(),
            "version": format!("{:?}", request.version()),
            "peer": peer.to_string(),
            "headers": headers,
        }),
    )
}

/// `POST /echo`: the request body, streamed back as it arrives, with the
/// request's content type.
fn echo(request: Request<Incoming>) -> Response<Body> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    let mut response = Response::new(request.into_body().map_err(Into::into).boxed());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

/// `GET /slow?ms=N`: waits N milliseconds (default 1000), then answers. For
/// trying timeouts and graceful shutdown.
async fn slow(request: &Request<Incoming>) -> Response<Body> {
    let ms = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="));
    let ms = match ms.map(str::parse::<u64>) {
        None => DEFAULT_SLOW_MS,
        Some(Ok(ms)) if Duration::from_millis(ms) <= MAX_SLOW => ms,
        Some(_) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({
                    "error": "bad_request",
                    "message": format!("ms must be a whole number of milliseconds up to {}", MAX_SLOW.as_millis()),
                }),
            );
        }
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    json_response(StatusCode::OK, &json!({ "slept_ms": ms }))
}

/// `POST /logs`: one JSON log record, as the seed's `SidecarLogger` sends
/// it, printed on stdout as one line.
async fn logs(request: Request<Incoming>) -> Response<Body> {
    let bytes = match Limited::new(request.into_body(), MAX_LOG_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({ "error": "body_unreadable", "message": error.to_string() }),
            );
        }
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(record) => {
            println!("demo-app log: {record}");
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Err(error) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "bad_json", "message": error.to_string() }),
        ),
    }
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut body = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    body.push('\n');
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
