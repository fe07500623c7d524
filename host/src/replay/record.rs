//! The recorded-request format that `tandem replay` reads: JSON lines, one
//! exchange a line.
//!
//! ```text
//! {"method":"GET","target":"/api/orders?id=7","headers":[["x-tenant","acme"]],"client":"10.0.0.7:51234"}
//! {"target":"/health","status":503,"response_headers":{"retry-after":"5"},"response_bytes":12}
//! ```
//!
//! Only `target` is required. Headers are a list of `[name, value]` pairs (to
//! keep order and repeats) or an object. Blank lines and lines starting with
//! `#` are skipped. The fields after `client` describe the upstream's answer
//! and the finished exchange, for `on-response` and `on-log`; without them
//! the upstream answers 200 with no headers and no body.

use std::net::SocketAddr;
use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use serde::{Deserialize, Serialize};

use crate::runtime::exchange::{RequestHead, ResponseHead};

/// Headers as `[[name, value], ...]` or `{name: value, ...}`.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(untagged)]
pub enum HeaderList {
    /// Ordered pairs; a name may repeat.
    Pairs(Vec<(String, String)>),
    /// One value per name.
    Map(std::collections::BTreeMap<String, String>),
    /// No headers.
    #[default]
    #[serde(skip)]
    None,
}

impl HeaderList {
    /// The headers as pairs, in order.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        match self {
            HeaderList::Pairs(pairs) => pairs
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect(),
            HeaderList::Map(map) => map.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect(),
            HeaderList::None => Vec::new(),
        }
    }

    fn to_header_map(&self, what: &str) -> Result<HeaderMap, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in self.pairs() {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{what}: {name:?} is not a valid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("{what}: the value of {name} is not a valid header value"))?;
            headers.append(name, value);
        }
        Ok(headers)
    }

    fn is_empty(&self) -> bool {
        self.pairs().is_empty()
    }
}

fn default_method() -> String {
    "GET".into()
}

fn default_client() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

fn default_scheme() -> String {
    "http".into()
}

/// One recorded exchange.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The method; `GET` when absent.
    #[serde(default = "default_method")]
    pub method: String,
    /// The origin-form target: path and optional query, e.g. `/a?b=1`.
    pub target: String,
    /// The request headers.
    #[serde(default, skip_serializing_if = "HeaderList::is_empty")]
    pub headers: HeaderList,
    /// The client's address; `127.0.0.1:40000` when absent.
    #[serde(default = "default_client")]
    pub client: SocketAddr,
    /// `http` or `https`; `http` when absent.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// The upstream's status, when the request reaches it; 200 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The upstream's response headers.
    #[serde(default, skip_serializing_if = "HeaderList::is_empty")]
    pub response_headers: HeaderList,
    /// Request body bytes, for `on-log`.
    #[serde(default)]
    pub request_bytes: u64,
    /// Response body bytes, for `on-log`; a plugin's reply counts its own.
    #[serde(default)]
    pub response_bytes: u64,
    /// Whole-exchange duration, for `on-log`; the hooks' own time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// Upstream duration, for `on-log`, when the upstream was called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_duration_us: Option<u64>,
}

impl Record {
    /// The request head a plugin sees, or why this record cannot be one.
    pub fn request_head(&self) -> Result<RequestHead, String> {
        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|_| format!("method {:?} is not valid", self.method))?;
        if !self.target.starts_with('/') {
            return Err(format!(
                "target {:?} is not origin-form (it must start with `/`)",
                self.target
            ));
        }
        let uri: http::Uri = self
            .target
            .parse()
            .map_err(|e| format!("target {:?} is not valid: {e}", self.target))?;
        let scheme = match self.scheme.as_str() {
            "http" => "http",
            "https" => "https",
            other => return Err(format!("scheme {other:?} is not http or https")),
        };
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = self.headers.to_header_map("headers")?;
        Ok(RequestHead::new(
            request.into_parts().0,
            self.client,
            scheme,
        ))
    }

    /// The response head of the upstream, or why it cannot be one.
    pub fn response_head(&self) -> Result<ResponseHead, String> {
        let status = self.status.unwrap_or(200);
        let status = crate::runtime::exchange::final_status(status)
            .ok_or_else(|| format!("status {status} is not 200 to 599"))?;
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.headers_mut() = self.response_headers.to_header_map("response_headers")?;
        Ok(ResponseHead {
            parts: response.into_parts().0,
        })
    }
}

/// A record with the line it came from.
#[derive(Debug, Clone)]
pub struct Numbered {
    /// 1-based line number in the file.
    pub line: usize,
    /// The record.
    pub record: Record,
}

/// Parses a whole file; the first bad line stops it, with its number.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Numbered>, String> {
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = |message: String| format!("{}:{line_number}: {message}", path.display());
        let record: Record = serde_json::from_str(trimmed).map_err(|e| at(e.to_string()))?;
        // Check now so that a bad record fails before any hook runs.
        record.request_head().map_err(at)?;
        record.response_head().map_err(at)?;
        records.push(Numbered {
            line: line_number,
            record,
        });
    }
    Ok(records)
}

/// Reads and parses a file.
pub fn load(path: &Path) -> Result<Vec<Numbered>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_both_header_forms() {
        let text = "# comment\n\n{\"target\":\"/a?b=1\",\"headers\":[[\"x-a\",\"1\"],[\"x-a\",\"2\"]]}\n{\"method\":\"POST\",\"target\":\"/b\",\"headers\":{\"x-b\":\"3\"},\"client\":\"10.0.0.7:1234\",\"status\":503}\n";
        let records = parse(Path::new("r.jsonl"), text).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].line, 3);
        let head = records[0].record.request_head().unwrap();
        assert_eq!(head.parts.method, Method::GET);
        assert_eq!(head.parts.uri.query(), Some("b=1"));
        assert_eq!(head.parts.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(records[0].record.response_head().unwrap().parts.status, 200);
        let head = records[1].record.request_head().unwrap();
        assert_eq!(head.parts.method, Method::POST);
        assert_eq!(head.client_addr.to_string(), "10.0.0.7:1234");
        assert_eq!(head.parts.headers["x-b"], "3");
        assert_eq!(records[1].record.response_head().unwrap().parts.status, 503);
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, expected) in [
            (
                "{\"target\":\"/a\"}\n{\"targt\":\"/a\"}\n",
                "r.jsonl:2: unknown field `targt`",
            ),
            (
                "{\"target\":\"a\"}\n",
                "r.jsonl:1: target \"a\" is not origin-form",
            ),
            (
                "{\"target\":\"/a\",\"status\":42}\n",
                "r.jsonl:1: status 42 is not 200 to 599",
            ),
            (
                "{\"target\":\"/a\",\"headers\":[[\"bad name\",\"x\"]]}\n",
                "r.jsonl:1: headers: \"bad name\" is not a valid header name",
            ),
            ("not json\n", "r.jsonl:1: expected ident"),
        ] {
            let error = parse(Path::new("r.jsonl"), text).unwrap_err();
            assert!(error.starts_with(expected), "{error}");
        }
    }
}
