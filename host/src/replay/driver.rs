//! Runs one plugin's hooks over recorded exchanges, the way the proxy runs a
//! chain of one: `on-request`, then `on-response` with the upstream's (or the
//! plugin's) response, then `on-log`, with the same failure policy, reply
//! checks and instance pool as `tandem run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use http_body_util::BodyExt;
use serde::Serialize;

use super::capture::{self, LogCapture, LogRecord, MetricChange, RecordDrop};
use super::record::Record;
use crate::metrics::Metrics;
use crate::plugin_settings::{FailurePolicy, PluginSettings};
use crate::proxy::errors::ProxyError;
use crate::proxy::headers;
use crate::records::Records;
use crate::runtime::Runtime;
use crate::runtime::bindings::Exchange;
use crate::runtime::exchange::{RequestHead, ResponseHead};
use crate::runtime::loader::valid_plugin_name;
use crate::runtime::plugin::{
    Hook, HookFailure, HookOutcome, PluginReply, PluginVersion, compile, sha256_hex,
};
use crate::shared_state::SharedState;

/// A plugin loaded for replay, with its own metrics registry and state.
pub struct Replayer {
    // In an `Arc` as in a chain: a quarantined plugin's calls are moved to
    // another thread.
    plugin: Arc<PluginVersion>,
    metrics: Arc<Metrics>,
    /// The replay's record pipeline, never started: emitted records wait
    /// here until the report takes them.
    records: Arc<Records>,
    capture: Option<LogCapture>,
    /// Facts about loading it.
    pub loaded: Loaded,
    // Declared last: the runtime (and its epoch ticker) outlives the plugin.
    _runtime: Runtime,
}

/// Facts about the loaded plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    /// The plugin's name.
    pub name: String,
    /// The component file.
    pub file: PathBuf,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// The hooks it asked for in `init`.
    pub hooks: Vec<&'static str>,
    /// Time to compile the component.
    pub compile_ms: f64,
    /// Time to instantiate it and run `init`.
    pub init_ms: f64,
    /// `closed` or `open`.
    pub failure: String,
    /// `reuse` or `fresh`.
    pub instances: String,
}

/// What one hook did.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// It returned `continue`.
    Continued,
    /// It answered with this response.
    Responded {
        /// Status.
        status: u16,
        /// Headers, in order.
        headers: Vec<(String, String)>,
        /// Body, as text (invalid UTF-8 replaced).
        body: String,
    },
    /// `on-log` returned.
    Done,
    /// It failed; the policy decided what happened next.
    Failed {
        /// `trap`, `timeout`, `error`, `invalid` or `unavailable`.
        kind: String,
        /// The failure as the host logs it.
        error: String,
        /// What the failure policy did: `request failed` or `skipped`.
        policy: String,
    },
}

/// A change to a header, the target, the status or a property.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    /// `header`, `response-header`, `target`, `status` or `property`.
    pub what: &'static str,
    /// The header or property name (empty for target and status).
    pub name: String,
    /// The values before the call.
    pub before: Vec<String>,
    /// The values after.
    pub after: Vec<String>,
}

/// One hook call.
#[derive(Debug, Clone, Serialize)]
pub struct HookReport {
    /// `on-request`, `on-response` or `on-log`.
    pub hook: &'static str,
    /// Wall time of the call, in microseconds, including taking an instance
    /// from the pool.
    pub micros: f64,
    /// What it decided.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What it changed on the request or response.
    pub changes: Vec<Change>,
    /// What it logged.
    pub logs: Vec<LogRecord>,
    /// What it counted.
    pub metrics: Vec<MetricChange>,
    /// The records it emitted (`records.emit`), each as compact JSON, cut
    /// to [`capture::MAX_RECORD_SHOWN_BYTES`].
    pub records: Vec<String>,
    /// Records it emitted that the pipeline refused, by reason.
    pub records_dropped: Vec<RecordDrop>,
}

/// What one hook call did besides its result.
#[derive(Default)]
struct Observed {
    logs: Vec<LogRecord>,
    metrics: Vec<MetricChange>,
    records: Vec<String>,
    records_dropped: Vec<RecordDrop>,
}

/// The readings taken before a call, to compare with after it.
struct Readings {
    series: BTreeMap<String, f64>,
    dropped: BTreeMap<String, f64>,
}

/// One replayed exchange.
#[derive(Debug, Clone, Serialize)]
pub struct RecordReport {
    /// The line of the record in its file.
    pub line: usize,
    /// The method.
    pub method: String,
    /// The target as recorded.
    pub target: String,
    /// The hooks called, in order.
    pub hooks: Vec<HookReport>,
    /// Whether the request would have reached the upstream.
    pub upstream_called: bool,
    /// The status the client would have received.
    pub status: u16,
    /// Who answered: the plugin's name, `tandem` (an error) or `upstream`.
    pub answered_by: String,
}

impl RecordReport {
    /// The time spent in the plugin's hooks for this exchange.
    pub fn plugin_micros(&self) -> f64 {
        self.hooks.iter().map(|h| h.micros).sum()
    }
}

/// The request as a plugin can change it.
struct RequestView {
    target: String,
    headers: HeaderMap,
    properties: Vec<(String, String)>,
}

impl RequestView {
    fn of(head: &RequestHead) -> Self {
        Self {
            target: head
                .parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            headers: head.parts.headers.clone(),
            properties: head
                .properties
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

fn values(headers: &HeaderMap, name: &http::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Header changes, in the order names appear before then after.
fn header_changes(what: &'static str, before: &HeaderMap, after: &HeaderMap) -> Vec<Change> {
    let mut names: Vec<&http::HeaderName> = before.keys().collect();
    names.extend(after.keys().filter(|n| !before.contains_key(*n)));
    names
        .into_iter()
        .filter_map(|name| {
            let (old, new) = (values(before, name), values(after, name));
            (old != new).then(|| Change {
                what,
                name: name.as_str().to_owned(),
                before: old,
                after: new,
            })
        })
        .collect()
}

fn request_changes(before: &RequestView, after: &RequestView) -> Vec<Change> {
    let mut changes = Vec::new();
    if before.target != after.target {
        changes.push(Change {
            what: "target",
            name: String::new(),
            before: vec![before.target.clone()],
            after: vec![after.target.clone()],
        });
    }
    changes.extend(header_changes("header", &before.headers, &after.headers));
    for (key, value) in &after.properties {
        let old = before
            .properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone());
        if old.as_ref() != Some(value) {
            changes.push(Change {
                what: "property",
                name: key.clone(),
                before: old.into_iter().collect(),
                after: vec![value.clone()],
            });
        }
    }
    changes
}

fn response_changes(before: &ResponseHead, after: &ResponseHead) -> Vec<Change> {
    let mut changes = Vec::new();
    if before.parts.status != after.parts.status {
        changes.push(Change {
            what: "status",
            name: String::new(),
            before: vec![before.parts.status.as_u16().to_string()],
            after: vec![after.parts.status.as_u16().to_string()],
        });
    }
    changes.extend(header_changes(
        "response-header",
        &before.parts.headers,
        &after.parts.headers,
    ));
    changes
}

fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn responded(reply: &PluginReply) -> Outcome {
    Outcome::Responded {
        status: reply.status.as_u16(),
        headers: pairs(&reply.headers),
        body: String::from_utf8_lossy(&reply.body).into_owned(),
    }
}

fn failed(failure: &HookFailure, policy: FailurePolicy) -> Outcome {
    Outcome::Failed {
        kind: failure.kind().to_owned(),
        error: failure.to_string(),
        policy: match policy {
            FailurePolicy::Closed => "request failed".to_owned(),
            FailurePolicy::Open => "skipped".to_owned(),
        },
    }
}

fn micros(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e6
}

/// The response the proxy sends when a `closed` plugin fails.
async fn failure_response(plugin: &str) -> (ResponseHead, u64) {
    let response = ProxyError::PluginFailed {
        plugin: plugin.to_owned(),
    }
    .to_response(None);
    let (parts, body) = response.into_parts();
    let length = match body.collect().await {
        Ok(collected) => collected.to_bytes().len() as u64,
        Err(_) => 0,
    };
    (ResponseHead { parts }, length)
}

fn reply_head(reply: &PluginReply) -> ResponseHead {
    let mut response = http::Response::new(());
    *response.status_mut() = reply.status;
    *response.headers_mut() = reply.headers.clone();
    ResponseHead {
        parts: response.into_parts().0,
    }
}

/// Loads settings for replay: `config` if given, else `NAME.toml` beside the
/// component if it exists, else the defaults.
pub fn load_settings(wasm: &Path, config: Option<&Path>) -> Result<PluginSettings, String> {
    let path = config.map_or_else(|| wasm.with_extension("toml"), Path::to_owned);
    if config.is_some() && !path.exists() {
        return Err(format!("cannot read {}: no such file", path.display()));
    }
    PluginSettings::load(&path).map_err(|e| e.to_string())
}

/// The plugin name for a component file: its stem, if that is a valid name.
pub fn default_name(wasm: &Path) -> Result<String, String> {
    let stem = wasm
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if valid_plugin_name(stem) {
        Ok(stem.to_owned())
    } else {
        Err(format!(
            "{} does not make a plugin name (1 to 64 of [A-Za-z0-9_-]): pass --name",
            wasm.display()
        ))
    }
}

impl Replayer {
    /// Compiles and initialises the plugin with its own runtime, metrics and
    /// shared state. With `capture`, reports include what each call logged,
    /// counted and emitted.
    pub async fn load(
        wasm: &Path,
        name: &str,
        settings: PluginSettings,
        capture: Option<LogCapture>,
    ) -> Result<Self, String> {
        let metrics = Arc::new(Metrics::new());
        // Records a plugin emits stay in the (never started) buffer, from
        // where each report takes those of its calls.
        let records = Arc::new(
            crate::records::Records::new(
                &crate::records::config::RecordsConfig::default(),
                &metrics,
            )
            .map_err(|e| format!("{e:#}"))?,
        );
        let runtime = Runtime::new(
            metrics.clone(),
            Arc::new(SharedState::default()),
            records.clone(),
        )
        .map_err(|e| format!("{e:#}"))?;
        let bytes =
            std::fs::read(wasm).map_err(|e| format!("cannot read {}: {e}", wasm.display()))?;
        let size_bytes = bytes.len() as u64;
        let sha256 = sha256_hex(&bytes);
        let engine = runtime.engine.clone();
        let started = Instant::now();
        let component = tokio::task::spawn_blocking(move || compile(&engine, &bytes))
            .await
            .map_err(|e| format!("compiler task failed: {e}"))?
            .map_err(|e| format!("{}: {e}", wasm.display()))?;
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let failure = format!("{:?}", settings.failure).to_lowercase();
        let instances = format!("{:?}", settings.instances).to_lowercase();
        let started = Instant::now();
        let plugin = PluginVersion::load(
            &runtime,
            name,
            wasm.to_owned(),
            sha256.clone(),
            &component,
            settings,
        )
        .await
        .map_err(|e| format!("{name}: {e}"))?;
        let init_ms = started.elapsed().as_secs_f64() * 1e3;
        if let Some(capture) = &capture {
            // Whatever init logged is not part of the first request.
            capture.drain();
        }
        // Nor what it emitted.
        records.take_queued();
        let loaded = Loaded {
            name: name.to_owned(),
            file: wasm.to_owned(),
            size_bytes,
            sha256,
            hooks: plugin.hooks.names(),
            compile_ms,
            init_ms,
            failure,
            instances,
        };
        Ok(Self {
            plugin: Arc::new(plugin),
            metrics,
            records,
            capture,
            loaded,
            _runtime: runtime,
        })
    }

    /// The loaded plugin.
    pub fn plugin(&self) -> &PluginVersion {
        &self.plugin
    }

    fn observe_start(&self, observe: bool) -> Option<Readings> {
        let capture = self.capture.as_ref().filter(|_| observe)?;
        capture.drain();
        Some(Readings {
            series: capture::plugin_series(&self.metrics),
            dropped: capture::records_dropped(&self.metrics),
        })
    }

    fn observe_end(&self, before: Option<Readings>) -> Observed {
        // Taken even when not observing, so that a long `--repeat` cannot
        // fill the buffer and change what `records.emit` returns.
        let records = self.records.take_queued();
        match (&self.capture, before) {
            (Some(capture), Some(before)) => Observed {
                logs: capture.drain(),
                metrics: capture::changes(&before.series, &capture::plugin_series(&self.metrics)),
                records: records.iter().map(|r| capture::shown_record(r)).collect(),
                records_dropped: capture::drops(
                    &before.dropped,
                    &capture::records_dropped(&self.metrics),
                ),
            },
            _ => Observed::default(),
        }
    }

    /// Runs one recorded exchange through the plugin's hooks. With
    /// `observe` (and a capture given to [`Replayer::load`]), the report
    /// says what each hook logged, counted and emitted; without, only the hooks'
    /// own cost is timed.
    pub async fn replay(
        &self,
        line: usize,
        record: &Record,
        observe: bool,
    ) -> Result<RecordReport, String> {
        let plugin = &self.plugin;
        let name = &*plugin.name;
        let policy = plugin.settings.failure;
        let mut head = record.request_head()?;
        let mut hooks = Vec::new();
        let mut answered_by = None;
        let mut error = None;
        let mut replied: Option<(ResponseHead, u64)> = None;

        if plugin.hooks.on_request {
            let before_view = RequestView::of(&head);
            let observed = self.observe_start(observe);
            let started = Instant::now();
            let (back, result) = plugin.on_request(head).await;
            let took = started.elapsed();
            head = back;
            let observed = self.observe_end(observed);
            let outcome = match result {
                Ok(HookOutcome::Continue) => Outcome::Continued,
                Ok(HookOutcome::Respond(reply)) => {
                    answered_by = Some(name.to_owned());
                    let outcome = responded(&reply);
                    replied = Some((reply_head(&reply), reply.body.len() as u64));
                    outcome
                }
                Err(failure) => {
                    if policy == FailurePolicy::Closed {
                        error = Some(format!("plugin {name} failed in on-request: {failure}"));
                        answered_by = Some("tandem".to_owned());
                        replied = Some(failure_response(name).await);
                    }
                    failed(&failure, policy)
                }
            };
            hooks.push(HookReport {
                hook: Hook::OnRequest.name(),
                micros: micros(took),
                outcome,
                changes: request_changes(&before_view, &RequestView::of(&head)),
                logs: observed.logs,
                metrics: observed.metrics,
                records: observed.records,
                records_dropped: observed.records_dropped,
            });
        }

        let upstream_called = replied.is_none();
        let (mut response, mut body_bytes) = match replied {
            Some(replied) => replied,
            None => (record.response_head()?, record.response_bytes),
        };

        if plugin.hooks.on_response {
            let before_view = RequestView::of(&head);
            let before_response = ResponseHead {
                parts: copy_response_parts(&response.parts),
            };
            let observed = self.observe_start(observe);
            let started = Instant::now();
            let (req_back, resp_back, result) = plugin.on_response(head, response).await;
            let took = started.elapsed();
            head = req_back;
            response = resp_back;
            let observed = self.observe_end(observed);
            let mut changes = request_changes(&before_view, &RequestView::of(&head));
            changes.extend(response_changes(&before_response, &response));
            let outcome = match result {
                Ok(HookOutcome::Continue) => Outcome::Continued,
                Ok(HookOutcome::Respond(reply)) => {
                    answered_by = Some(name.to_owned());
                    let outcome = responded(&reply);
                    body_bytes = reply.body.len() as u64;
                    response = reply_head(&reply);
                    outcome
                }
                Err(failure) => {
                    if policy == FailurePolicy::Closed {
                        error = Some(format!("plugin {name} failed in on-response: {failure}"));
                        answered_by = Some("tandem".to_owned());
                        (response, body_bytes) = failure_response(name).await;
                    }
                    failed(&failure, policy)
                }
            };
            hooks.push(HookReport {
                hook: Hook::OnResponse.name(),
                micros: micros(took),
                outcome,
                changes,
                logs: observed.logs,
                metrics: observed.metrics,
                records: observed.records,
                records_dropped: observed.records_dropped,
            });
        }
        headers::remove_hop_by_hop(&mut response.parts.headers);
        let status = response.parts.status.as_u16();

        if plugin.hooks.on_log {
            let hook_time: f64 = hooks.iter().map(|h: &HookReport| h.micros).sum();
            let exchange = Exchange {
                status,
                request_bytes: record.request_bytes,
                response_bytes: body_bytes,
                duration_us: record.duration_us.unwrap_or(hook_time as u64),
                upstream_duration_us: if upstream_called {
                    Some(record.upstream_duration_us.unwrap_or(0))
                } else {
                    None
                },
                responded_by: answered_by.clone().filter(|by| by != "tandem"),
                error,
            };
            let observed = self.observe_start(observe);
            let started = Instant::now();
            let (_, _, result) = plugin.on_log(head, response, &exchange).await;
            let took = started.elapsed();
            let observed = self.observe_end(observed);
            let outcome = match result {
                Ok(()) => Outcome::Done,
                // A failed on-log changes nothing for the client.
                Err(failure) => failed(&failure, FailurePolicy::Open),
            };
            hooks.push(HookReport {
                hook: Hook::OnLog.name(),
                micros: micros(took),
                outcome,
                changes: Vec::new(),
                logs: observed.logs,
                metrics: observed.metrics,
                records: observed.records,
                records_dropped: observed.records_dropped,
            });
        }

        Ok(RecordReport {
            line,
            method: record.method.clone(),
            target: record.target.clone(),
            hooks,
            upstream_called,
            status,
            answered_by: answered_by.unwrap_or_else(|| "upstream".to_owned()),
        })
    }
}

fn copy_response_parts(parts: &http::response::Parts) -> http::response::Parts {
    let mut copy = http::Response::new(());
    *copy.status_mut() = parts.status;
    *copy.headers_mut() = parts.headers.clone();
    copy.into_parts().0
}
