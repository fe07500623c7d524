//! The HTTP sink: batches POSTed to a collector (Fluent Bit's `http` input,
//! Vector's `http_server` source, Loki-compatible gateways, ...), as NDJSON
//! or as one JSON array.
//!
//! A 2xx response means the batch was taken. 408, 429, 5xx, connection
//! failures and timeouts are retried (the writer keeps the batch); any
//! other status means the collector will never take these bytes, so the
//! batch is dropped and counted as `rejected`. Delivery is at least once: a
//! batch whose response was lost is sent again.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use super::config::{HttpFormat, HttpSinkConfig};
use super::sink::{SinkError, json_lines};
use crate::http_client::{self, error_chain};

/// Longest part of a refusal's body quoted in the log.
const QUOTED_BODY_BYTES: usize = 256;

/// POSTs batches to the collector.
pub struct HttpSink {
    client: Client<HttpConnector, Full<Bytes>>,
    config: HttpSinkConfig,
}

/// The batch encoded for the collector, with its content type.
pub fn encode(batch: &[String], format: HttpFormat) -> (Vec<u8>, &'static str) {
    match format {
        HttpFormat::Ndjson => (json_lines(batch), "application/x-ndjson"),
        HttpFormat::JsonArray => {
            let len = batch.iter().map(|r| r.len() + 1).sum::<usize>() + 2;
            let mut bytes = Vec::with_capacity(len);
            bytes.push(b'[');
            for (i, record) in batch.iter().enumerate() {
                if i > 0 {
                    bytes.push(b',');
                }
                bytes.extend_from_slice(record.as_bytes());
            }
            bytes.push(b']');
            (bytes, "application/json")
        }
    }
}

/// `Retry-After` in seconds, if the collector sent one.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

impl HttpSink {
    /// A sink for the collector in `config`, with its own connection pool.
    pub fn new(config: HttpSinkConfig) -> Self {
        let client = http_client::pooled(config.request_timeout, Duration::from_secs(30), 2);
        Self { client, config }
    }

    /// POSTs one batch and judges the answer.
    pub async fn write(&mut self, batch: &[String]) -> Result<(), SinkError> {
        let (body, content_type) = encode(batch, self.config.format);
        let mut request = Request::post(self.config.url.clone())
            .header(header::CONTENT_TYPE, content_type)
            .header(
                header::USER_AGENT,
                concat!("tandem/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SinkError::Reject(format!("cannot build the request: {e}")))?;
        request.headers_mut().extend(
            self.config
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let timeout = self.config.request_timeout;
        let url = &self.config.url;
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| SinkError::retry(format!("{url}: no response within {timeout:?}")))?
            .map_err(|e| SinkError::retry(format!("{url}: {}", error_chain(&e))))?;
        let status = response.status();
        let after = retry_after(response.headers());
        // Read the body so the connection can be reused, and to quote it.
        let body = tokio::time::timeout(timeout, response.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let quoted = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BODY_BYTES)])
            .trim()
            .to_owned();
        let reason = format!("{url} answered {status}: {quoted:?}");
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            Err(SinkError::Retry { reason, after })
        } else {
            Err(SinkError::Reject(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_encode_as_ndjson_or_an_array() {
        let batch = ["{\"a\":1}".to_owned(), "{\"b\":2}".to_owned()];
        let (bytes, content_type) = encode(&batch, HttpFormat::Ndjson);
        assert_eq!(bytes, b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(content_type, "application/x-ndjson");
        let (bytes, content_type) = encode(&batch, HttpFormat::JsonArray);
        assert_eq!(bytes, b"[{\"a\":1},{\"b\":2}]");
        assert_eq!(content_type, "application/json");
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 2);
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
    }
}
