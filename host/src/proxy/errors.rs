//! The one place where a failure becomes an HTTP response.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::ResponseBody;
use crate::runtime::plugin::HookFailure;

/// The methods a `405` names: the standard ones Tandem forwards (it
/// forwards extension methods too).
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH";

/// Why the proxy answers with an error instead of the upstream's response.
#[derive(Debug)]
pub enum ProxyError {
    /// The upstream refused the connection or could not be reached.
    UpstreamUnreachable(String),
    /// The upstream did not send a response head in time.
    UpstreamTimeout,
    /// The upstream connection failed after it was made.
    UpstreamFailed(String),
    /// A plugin whose failure policy is `closed` failed.
    PluginFailed {
        /// The plugin's name.
        plugin: String,
    },
    /// A plugin whose failure policy is `closed` is tripped after
    /// consecutive failures, so requests fail fast.
    PluginTripped {
        /// The plugin's name.
        plugin: String,
        /// Time left in its cool-down.
        retry_after: Duration,
    },
    /// The request body is larger than the limit for its path.
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The client did not send the whole request in time.
    RequestTimeout,
    /// The client's request body was malformed or cut off.
    BadRequestBody,
    /// The request head parsed, but no upstream should see it (two `Host`
    /// headers, user information in the authority); says what is wrong.
    BadRequestHead(&'static str),
    /// A `CONNECT` request: a reverse proxy opens no tunnels.
    ConnectNotAllowed,
    /// The request body has a transfer coding other than `chunked`, which
    /// the upstream would get decoded of its chunks but still coded.
    TransferCodingNotImplemented,
}

impl ProxyError {
    /// The status sent to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UpstreamUnreachable(_) | ProxyError::UpstreamFailed(_) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::PluginFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::PluginTripped { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BadRequestBody | ProxyError::BadRequestHead(_) => StatusCode::BAD_REQUEST,
            ProxyError::ConnectNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::TransferCodingNotImplemented => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// The error for a failed plugin whose policy is `closed`.
    pub fn plugin(plugin: String, failure: &HookFailure) -> Self {
        match failure {
            HookFailure::Tripped(retry_after) => ProxyError::PluginTripped {
                plugin,
                retry_after: *retry_after,
            },
            _ => ProxyError::PluginFailed { plugin },
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::UpstreamUnreachable(_) => "upstream_unreachable",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::UpstreamFailed(_) => "upstream_failed",
            ProxyError::PluginFailed { .. } => "plugin_failed",
            ProxyError::PluginTripped { .. } => "plugin_tripped",
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::RequestTimeout => "request_timeout",
            ProxyError::BadRequestBody => "bad_request_body",
            ProxyError::BadRequestHead(_) => "bad_request_head",
            ProxyError::ConnectNotAllowed => "connect_not_allowed",
            ProxyError::TransferCodingNotImplemented => "transfer_coding_not_implemented",
        }
    }

    /// A message safe to show a client: no internal detail beyond names.
    pub fn public_message(&self) -> String {
        match self {
            ProxyError::UpstreamUnreachable(_) => "the application is not reachable".into(),
            ProxyError::UpstreamTimeout => "the application did not answer in time".into(),
            ProxyError::UpstreamFailed(_) => "the application's connection failed".into(),
            ProxyError::PluginFailed { plugin } => format!("plugin {plugin} failed"),
            ProxyError::PluginTripped { plugin, .. } => {
                format!("plugin {plugin} is tripped after repeated failures")
            }
            ProxyError::BodyTooLarge { limit } => {
                format!("the request body is over the {limit}-byte limit")
            }
            ProxyError::RequestTimeout => "the request was not received in time".into(),
            ProxyError::BadRequestBody => "the request body could not be read".into(),
            ProxyError::BadRequestHead(problem) => {
                format!("the request head is malformed: {problem}")
            }
            ProxyError::ConnectNotAllowed => {
                "CONNECT is not served: this is a reverse proxy".into()
            }
            ProxyError::TransferCodingNotImplemented => {
                "the only transfer coding served is chunked".into()
            }
        }
    }

    /// The response for the client. `request_id` is echoed when the client
    /// sent one, so the failure can be found in the logs.
    pub fn to_response(&self, request_id: Option<&HeaderValue>) -> Response<ResponseBody> {
        let mut body = serde_json::json!({
            "error": self.code(),
            "message": self.public_message(),
        });
        if let Some(id) = request_id.and_then(|v| v.to_str().ok()) {
            body["request_id"] = id.into();
        }
        let mut response = Response::new(ResponseBody::full(Bytes::from(body.to_string())));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(id) = request_id {
            response.headers_mut().insert("x-request-id", id.clone());
        }
        if let ProxyError::ConnectNotAllowed = self {
            // A 405 must list what is allowed: every method but CONNECT.
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        if let ProxyError::PluginTripped { retry_after, .. } = self {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::UpstreamUnreachable(detail) | ProxyError::UpstreamFailed(detail) => {
                write!(f, "{}: {detail}", self.code())
            }
            _ => write!(f, "{}", self.code()),
        }
    }
}
