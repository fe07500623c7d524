//! The one place where a failure becomes an HTTP response.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::ResponseBody;

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
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::UpstreamUnreachable(_) => "upstream_unreachable",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::UpstreamFailed(_) => "upstream_failed",
            ProxyError::PluginFailed { .. } => "plugin_failed",
        }
    }

    /// A message safe to show a client: no internal detail beyond names.
    fn public_message(&self) -> String {
        match self {
            ProxyError::UpstreamUnreachable(_) => "the application is not reachable".into(),
            ProxyError::UpstreamTimeout => "the application did not answer in time".into(),
            ProxyError::UpstreamFailed(_) => "the application's connection failed".into(),
            ProxyError::PluginFailed { plugin } => format!("plugin {plugin} failed"),
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
