//! The `[records]` table of tandem.toml: where records go, how they are
//! batched and buffered, and how application logs are received.
//!
//! Every key is optional; `docs/logging.md` lists them with examples. Keys
//! that only mean something for another sink are errors, not silently
//! ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::config::ConfigError;

/// The `[records]` table as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RecordsSection {
    /// `stdout` (default), `file` or `http`.
    pub sink: Option<SinkKind>,
    /// File sink: the file to append to; relative to the config file.
    pub path: Option<PathBuf>,
    /// HTTP sink: the collector, `http://host[:port]/path`.
    pub url: Option<String>,
    /// HTTP sink: `ndjson` (default) or `json-array`.
    pub format: Option<HttpFormat>,
    /// HTTP sink: extra request headers, e.g. an authorization token.
    pub headers: Option<BTreeMap<String, String>>,
    /// HTTP sink: milliseconds to wait for the collector's response.
    pub request_timeout_ms: Option<u64>,
    /// Most records written or sent at once.
    pub batch_max_records: Option<usize>,
    /// Longest a record waits for its batch to fill, in milliseconds.
    pub batch_max_ms: Option<u64>,
    /// Most records held (queued or being sent) before new ones are dropped.
    pub buffer_records: Option<usize>,
    /// First wait after a failed write, in milliseconds; doubles each time.
    pub retry_initial_ms: Option<u64>,
    /// Longest wait between retries, in milliseconds.
    pub retry_max_ms: Option<u64>,
    /// Time the sink gets on shutdown to write what it holds, in ms.
    pub flush_timeout_ms: Option<u64>,
    /// Longest record, in bytes.
    pub max_record_bytes: Option<usize>,
    /// Largest `POST /logs` body, in bytes.
    pub app_logs_max_bytes: Option<usize>,
    /// A listener of its own for `POST /logs`, besides the admin listener.
    pub app_logs_listen: Option<SocketAddr>,
    /// Fields added to every application log record; `${NAME}` reads the
    /// environment variable NAME at start-up.
    pub app_fields: Option<BTreeMap<String, String>>,
}

/// The sinks.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// JSON lines on stdout, after the `tandem listening` line.
    #[default]
    Stdout,
    /// JSON lines appended to a file.
    File,
    /// Batches POSTed to an HTTP collector.
    Http,
}

/// How the HTTP sink encodes a batch.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HttpFormat {
    /// One JSON object per line, `application/x-ndjson`.
    #[default]
    Ndjson,
    /// One JSON array of objects, `application/json`.
    JsonArray,
}

/// Where records go, resolved.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// Standard output.
    Stdout,
    /// A file, opened for appending.
    File {
        /// The file.
        path: PathBuf,
    },
    /// An HTTP collector.
    Http(HttpSinkConfig),
}

/// The HTTP sink's settings, resolved.
#[derive(Debug, Clone)]
pub struct HttpSinkConfig {
    /// The absolute `http://` URI batches are POSTed to.
    pub url: http::Uri,
    /// The batch encoding.
    pub format: HttpFormat,
    /// Extra request headers.
    pub headers: HeaderMap,
    /// Time to wait for the collector's response.
    pub request_timeout: Duration,
}

/// The records pipeline's settings, after defaults.
#[derive(Debug, Clone)]
pub struct RecordsConfig {
    /// Where records go.
    pub sink: SinkConfig,
    /// Most records per write or request.
    pub batch_max_records: usize,
    /// Longest a record waits for its batch to fill.
    pub batch_max: Duration,
    /// Most records held before new ones are dropped.
    pub buffer_records: usize,
    /// First retry wait.
    pub retry_initial: Duration,
    /// Longest retry wait.
    pub retry_max: Duration,
    /// Time to flush on shutdown.
    pub flush_timeout: Duration,
    /// Longest record in bytes.
    pub max_record_bytes: usize,
    /// Largest `POST /logs` body.
    pub app_logs_max_bytes: usize,
    /// The dedicated application-log listener, if any.
    pub app_logs_listen: Option<SocketAddr>,
    /// Fields added to application log records, environment resolved.
    pub app_fields: BTreeMap<String, String>,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        Self {
            sink: SinkConfig::Stdout,
            batch_max_records: DEFAULT_BATCH_MAX_RECORDS,
            batch_max: Duration::ZERO,
            buffer_records: DEFAULT_BUFFER_RECORDS,
            retry_initial: DEFAULT_RETRY_INITIAL,
            retry_max: DEFAULT_RETRY_MAX,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            app_logs_max_bytes: DEFAULT_APP_LOGS_MAX_BYTES,
            app_logs_listen: None,
            app_fields: BTreeMap::new(),
        }
    }
}

/// Default most records per batch.
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 500;
/// Default batch wait of the HTTP sink (stdout and file write at once).
pub const DEFAULT_HTTP_BATCH_MAX: Duration = Duration::from_secs(1);
/// Default buffer size in records.
pub const DEFAULT_BUFFER_RECORDS: usize = 10_000;
/// Default first retry wait.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(100);
/// Default longest retry wait.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(30);
/// Default HTTP request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default shutdown flush time.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default longest record.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;
/// Default largest `POST /logs` body.
pub const DEFAULT_APP_LOGS_MAX_BYTES: usize = 64 * 1024;

/// Top-level keys of an application log record, which `app_fields` may not
/// replace.
pub const APP_RECORD_KEYS: &[&str] = &["source", "timestamp", "level", "message", "metadata"];

/// Builds a [`ConfigError::Invalid`] for `records.<key>`.
fn invalid(shown: &Path, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: shown.to_owned(),
        key: format!("records.{key}"),
        message: message.into(),
    }
}

/// Parses the collector URL: `http://` only (the sink has no TLS), with a
/// host; the port defaults to 80 and the path to `/`.
fn parse_url(shown: &Path, value: &str) -> Result<http::Uri, ConfigError> {
    let bad = |message: &str| invalid(shown, "url", format!("{value:?}: {message}"));
    let uri: http::Uri = value.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err(bad("only http:// collectors are supported")),
        None => return Err(bad("give the scheme, e.g. http://127.0.0.1:9880/logs")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    if authority.as_str().contains('@') {
        return Err(bad(
            "credentials in the URL are not supported; use `headers`",
        ));
    }
    Ok(uri)
}

/// Replaces a whole `${NAME}` value with the environment variable NAME.
fn expand_env(shown: &Path, key: &str, value: &str) -> Result<String, ConfigError> {
    match value
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        Some(name) => std::env::var(name).map_err(|_| {
            invalid(
                shown,
                &format!("app_fields.{key}"),
                format!("environment variable {name} is not set"),
            )
        }),
        None => Ok(value.to_owned()),
    }
}

fn positive(
    shown: &Path,
    key: &str,
    value: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match value {
        Some(0) => Err(invalid(shown, key, "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

impl RecordsConfig {
    /// Resolves the section: defaults, relative paths (against `base`),
    /// environment references, and keys that do not fit the sink.
    pub fn resolve(
        section: RecordsSection,
        base: &Path,
        shown: &Path,
    ) -> Result<Self, ConfigError> {
        let kind = section.sink.unwrap_or_default();
        let only = |key: &str, given: bool, sink: &str| -> Result<(), ConfigError> {
            if given {
                Err(invalid(
                    shown,
                    key,
                    format!("only used with sink = \"{sink}\""),
                ))
            } else {
                Ok(())
            }
        };
        if kind != SinkKind::File {
            only("path", section.path.is_some(), "file")?;
        }
        if kind != SinkKind::Http {
            only("url", section.url.is_some(), "http")?;
            only("format", section.format.is_some(), "http")?;
            only("headers", section.headers.is_some(), "http")?;
            only(
                "request_timeout_ms",
                section.request_timeout_ms.is_some(),
                "http",
            )?;
        }
        let sink = match kind {
            SinkKind::Stdout => SinkConfig::Stdout,
            SinkKind::File => {
                let path = section.path.ok_or_else(|| {
                    invalid(
                        shown,
                        "path",
                        "required with sink = \"file\", e.g. \"/var/log/tandem/records.jsonl\"",
                    )
                })?;
                SinkConfig::File {
                    path: base.join(path),
                }
            }
            SinkKind::Http => {
                let url = section.url.as_deref().ok_or_else(|| {
                    invalid(
                        shown,
                        "url",
                        "required with sink = \"http\", e.g. \"http://127.0.0.1:9880/logs\"",
                    )
                })?;
                let mut headers = HeaderMap::new();
                for (name, value) in section.headers.unwrap_or_default() {
                    // Quoted in the key, so that the line is found
                    // whatever the name holds.
                    let key = format!("headers.\"{name}\"");
                    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        invalid(shown, &key, format!("{name:?} is not a valid header name"))
                    })?;
                    let value = HeaderValue::from_str(&value)
                        .map_err(|_| invalid(shown, &key, "not a valid header value"))?;
                    headers.insert(name, value);
                }
                SinkConfig::Http(HttpSinkConfig {
                    url: parse_url(shown, url)?,
                    format: section.format.unwrap_or_default(),
                    headers,
                    request_timeout: section
                        .request_timeout_ms
                        .map(Duration::from_millis)
                        .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
                })
            }
        };
        let default_batch_max = match kind {
            SinkKind::Http => DEFAULT_HTTP_BATCH_MAX,
            SinkKind::Stdout | SinkKind::File => Duration::ZERO,
        };
        let retry_initial = section
            .retry_initial_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_RETRY_INITIAL);
        let retry_max = section
            .retry_max_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_RETRY_MAX);
        if retry_initial.is_zero() {
            return Err(invalid(shown, "retry_initial_ms", "must be at least 1"));
        }
        if retry_max < retry_initial {
            return Err(invalid(
                shown,
                "retry_max_ms",
                format!(
                    "must be at least retry_initial_ms ({} ms)",
                    retry_initial.as_millis()
                ),
            ));
        }
        let mut app_fields = BTreeMap::new();
        for (key, value) in section.app_fields.unwrap_or_default() {
            if APP_RECORD_KEYS.contains(&key.as_str()) {
                return Err(invalid(
                    shown,
                    &format!("app_fields.{key}"),
                    format!("`{key}` is a field of every application record; choose another name"),
                ));
            }
            let value = expand_env(shown, &key, &value)?;
            app_fields.insert(key, value);
        }
        Ok(Self {
            sink,
            batch_max_records: positive(
                shown,
                "batch_max_records",
                section.batch_max_records,
                DEFAULT_BATCH_MAX_RECORDS,
            )?,
            batch_max: section
                .batch_max_ms
                .map(Duration::from_millis)
                .unwrap_or(default_batch_max),
            buffer_records: positive(
                shown,
                "buffer_records",
                section.buffer_records,
                DEFAULT_BUFFER_RECORDS,
            )?,
            retry_initial,
            retry_max,
            flush_timeout: crate::config::millis_within(
                section.flush_timeout_ms,
                DEFAULT_FLUSH_TIMEOUT,
                0..=crate::config::MAX_TIMEOUT_MS,
                |message| invalid(shown, "flush_timeout_ms", message),
            )?,
            max_record_bytes: positive(
                shown,
                "max_record_bytes",
                section.max_record_bytes,
                DEFAULT_MAX_RECORD_BYTES,
            )?,
            app_logs_max_bytes: positive(
                shown,
                "app_logs_max_bytes",
                section.app_logs_max_bytes,
                DEFAULT_APP_LOGS_MAX_BYTES,
            )?,
            app_logs_listen: section.app_logs_listen,
            app_fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<RecordsConfig, ConfigError> {
        let section: RecordsSection = crate::config::parse_toml(Path::new("t.toml"), text)?;
        RecordsConfig::resolve(section, Path::new("/etc/tandem"), Path::new("t.toml"))
    }

    #[test]
    fn defaults_write_stdout_at_once() {
        let config = resolve("").unwrap();
        assert!(matches!(config.sink, SinkConfig::Stdout));
        assert_eq!(config.batch_max, Duration::ZERO);
        assert_eq!(config.buffer_records, DEFAULT_BUFFER_RECORDS);
    }

    #[test]
    fn http_sink_needs_an_http_url() {
        let error = resolve("sink = \"http\"\n").unwrap_err().to_string();
        assert!(
            error.contains("records.url") && error.contains("required"),
            "{error}"
        );
        let error = resolve("sink = \"http\"\nurl = \"https://c:443/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("only http://"), "{error}");
        let config =
            resolve("sink = \"http\"\nurl = \"http://c/ingest\"\nformat = \"json-array\"\n")
                .unwrap();
        let SinkConfig::Http(http) = config.sink else {
            panic!("not http")
        };
        assert_eq!(http.url.path(), "/ingest");
        assert_eq!(http.format, HttpFormat::JsonArray);
        assert_eq!(config.batch_max, DEFAULT_HTTP_BATCH_MAX);
    }

    #[test]
    fn keys_of_another_sink_are_errors() {
        let error = resolve("url = \"http://c:1/\"\n").unwrap_err().to_string();
        assert!(
            error.contains("records.url") && error.contains("sink = \"http\""),
            "{error}"
        );
        let error = resolve("sink = \"http\"\nurl = \"http://c:1/\"\npath = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("records.path"), "{error}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let error = resolve("buffer = 5\n").unwrap_err().to_string();
        assert!(error.contains("buffer"), "{error}");
        let error = resolve("buffer_records = 0\n").unwrap_err().to_string();
        assert!(error.contains("records.buffer_records"), "{error}");
        let error = resolve("retry_initial_ms = 500\nretry_max_ms = 100\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("records.retry_max_ms"), "{error}");
        let error = resolve("sink = \"file\"\n").unwrap_err().to_string();
        assert!(error.contains("records.path"), "{error}");
        let error = resolve("flush_timeout_ms = 86400001\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("records.flush_timeout_ms") && error.contains("must be 0 to 86400000"),
            "{error}"
        );
    }

    #[test]
    fn app_fields_read_the_environment_and_keep_reserved_keys() {
        let config = resolve("[app_fields]\nservice = \"orders\"\nhome = \"${HOME}\"\n").unwrap();
        assert_eq!(config.app_fields["service"], "orders");
        assert_eq!(config.app_fields["home"], std::env::var("HOME").unwrap());
        let error = resolve("[app_fields]\nx = \"${TANDEM_TEST_SURELY_UNSET}\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("records.app_fields.x"), "{error}");
        let error = resolve("[app_fields]\nlevel = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("records.app_fields.level"), "{error}");
    }

    #[test]
    fn file_path_is_relative_to_the_config() {
        let config = resolve("sink = \"file\"\npath = \"records.jsonl\"\n").unwrap();
        let SinkConfig::File { path } = config.sink else {
            panic!("not file")
        };
        assert_eq!(path, Path::new("/etc/tandem/records.jsonl"));
    }
}
