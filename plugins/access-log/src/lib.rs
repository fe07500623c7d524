//! access-log: one JSON access record per request (phase `on-log`, through
//! the `records` import), request ids generated and forwarded upstream
//! (`on-request`), and enrichment, redaction and level filtering of the
//! application's own log records (`on-app-log`). See README.md.

mod access;
mod app_logs;
mod redact;
mod request_id;
mod sampling;
mod settings;

use std::collections::BTreeMap;

use serde_json::Value;
use tandem_sdk::{Action, AppLog, Config, Exchange, Plugin, Request, Response, log, records};

use access::RecordSettings;
use app_logs::AppLogs;
use settings::{Field, SampleBy, Settings};

/// The plugin, with its settings checked and lists prepared.
struct AccessLog {
    fields: Vec<Field>,
    request_headers: Vec<String>,
    response_headers: Vec<String>,
    redact_headers: Vec<String>,
    redact_query_params: Vec<String>,
    sample_rate: f64,
    sample_by: SampleBy,
    always_log_errors: bool,
    skip_paths: Vec<String>,
    request_id_header: String,
    generate_request_id: bool,
    subject_property: String,
    static_fields: BTreeMap<String, Value>,
    app_logs: AppLogs,
}

impl AccessLog {
    fn skipped(&self, path: &str) -> bool {
        self.skip_paths
            .iter()
            .any(|prefix| path.starts_with(prefix))
    }

    /// Whether this exchange is logged at the sampling rate.
    fn sampled(&self, info: &Exchange, request_id: Option<&str>) -> bool {
        if self.sample_rate >= 1.0 {
            return true;
        }
        if self.always_log_errors && (info.status >= 500 || info.error.is_some()) {
            return true;
        }
        let draw = match (self.sample_by, request_id) {
            (SampleBy::RequestId, Some(id)) => Some(sampling::id_draw(id)),
            _ => sampling::random_draw(),
        };
        // No randomness and no id: log rather than lose the record.
        draw.is_none_or(|draw| sampling::keep(draw, self.sample_rate))
    }
}

impl Plugin for AccessLog {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse::<Settings>()?.check()?;
        let fields = settings.enabled_fields();
        let app_logs = AppLogs::new(settings.app_logs, &settings.static_fields);
        Ok(AccessLog {
            fields,
            request_headers: settings.request_headers,
            response_headers: settings.response_headers,
            redact_headers: settings.redact_headers,
            redact_query_params: settings.redact_query_params,
            sample_rate: settings.sample_rate,
            sample_by: settings.sample_by,
            always_log_errors: settings.always_log_errors,
            skip_paths: settings.skip_paths,
            request_id_header: settings.request_id_header,
            generate_request_id: settings.generate_request_id,
            subject_property: settings.subject_property,
            static_fields: settings.static_fields,
            app_logs,
        })
    }

    /// Makes sure the request carries a usable request id, which the
    /// upstream then receives.
    fn on_request(&self, req: &Request) -> Result<Action, String> {
        if !self.generate_request_id {
            return Ok(Action::Continue);
        }
        let given = req.header(&self.request_id_header);
        if given.as_deref().is_some_and(request_id::acceptable) {
            return Ok(Action::Continue);
        }
        // Never fail a request over its id: without one the record still
        // gets a made-up id in on-log.
        let Some(id) = request_id::generate() else {
            log::warn("no randomness to generate a request id", &[]);
            return Ok(Action::Continue);
        };
        if let Err(error) = req.set_header(&self.request_id_header, &id) {
            let error = error.to_string();
            log::warn(
                "cannot set the request id header",
                &[("header", &self.request_id_header), ("error", &error)],
            );
        }
        Ok(Action::Continue)
    }

    fn on_log(&self, req: &Request, resp: &Response, info: &Exchange) {
        if !self.skip_paths.is_empty() && self.skipped(&req.path()) {
            return;
        }
        // The id the upstream saw. A request answered before this plugin's
        // on-request ran has none; it still gets one for its record.
        let mut request_id = req
            .header(&self.request_id_header)
            .filter(|id| request_id::acceptable(id));
        if request_id.is_none() && self.generate_request_id {
            request_id = request_id::generate();
        }
        if !self.sampled(info, request_id.as_deref()) {
            return;
        }
        let settings = RecordSettings {
            fields: &self.fields,
            request_headers: &self.request_headers,
            response_headers: &self.response_headers,
            redact_headers: &self.redact_headers,
            redact_query_params: &self.redact_query_params,
            subject_property: &self.subject_property,
            static_fields: &self.static_fields,
        };
        let record = access::record(&settings, req, resp, info, request_id.as_deref());
        // A refused record is counted (and logged) by the host already.
        let _ = records::emit(&record);
    }

    fn on_app_log(&self, entry: AppLog) -> Result<Option<AppLog>, String> {
        self.app_logs.process(entry)
    }
}

tandem_sdk::export_plugin!(AccessLog, hooks: [on_request, on_log, on_app_log]);
