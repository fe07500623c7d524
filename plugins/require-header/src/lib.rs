//! require-header: rejects requests that lack a required header with a 400
//! and a JSON error body, and counts them; marks the others. The same plugin
//! exists in C, Python and JavaScript under `examples/plugins/`, and the
//! integration tests hold all four to the same assertions. See README.md.

use std::fmt::Write as _;

use serde::Deserialize;
use tandem_sdk::metrics::{self, Kind};
use tandem_sdk::{Action, Config, Exchange, Plugin, Reply, Request, Response, log};

/// Rejections by missing header.
const REJECTIONS: &str = "validator_rejections_total";
/// Requests seen in `on-log`, by outcome.
const REQUESTS: &str = "validator_requests_total";
/// The property that carries the outcome from `on-request` to the later
/// phases (and to later plugins).
const OUTCOME: &str = "validator.outcome";

/// The `[config]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Header names every checked request must carry.
    headers: Vec<String>,
    /// Only requests whose path starts with this are checked.
    #[serde(default = "default_prefix")]
    path_prefix: String,
}

fn default_prefix() -> String {
    "/".to_owned()
}

/// Whether `c` may appear in a header name (an RFC 9110 token).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Checks requests under one prefix for a list of headers.
struct RequireHeader {
    headers: Vec<String>,
    path_prefix: String,
    /// The value of `x-validated` on requests that pass.
    validated: String,
}

/// Counting is best effort: a refused metric must not change a decision.
fn count(metric: &str, label: (&str, &str)) {
    if let Err(error) = metrics::counter_add(metric, &[label], 1) {
        log::warn("cannot count", &[("metric", metric), ("error", &error)]);
    }
}

impl Plugin for RequireHeader {
    fn init(config: Config) -> Result<Self, String> {
        let Settings {
            headers,
            path_prefix,
        } = config.parse()?;
        if headers.is_empty() {
            return Err("config key `headers`: list at least one header name".to_owned());
        }
        let headers: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        if let Some(bad) = headers
            .iter()
            .find(|h| h.is_empty() || !h.chars().all(is_token_char))
        {
            return Err(format!(
                "config key `headers`: `{bad}` is not a valid header name"
            ));
        }
        if !path_prefix.starts_with('/') {
            return Err(format!(
                "config key `path_prefix`: `{path_prefix}` does not start with `/`"
            ));
        }
        for (name, help, label) in [
            (
                REJECTIONS,
                "Requests rejected by require-header, by the missing header.",
                "header",
            ),
            (
                REQUESTS,
                "Requests seen by require-header, by outcome (passed, rejected, skipped).",
                "outcome",
            ),
        ] {
            if let Err(error) = metrics::describe(name, Kind::Counter, help, &[label], &[]) {
                log::warn(
                    "cannot describe metric",
                    &[("metric", name), ("error", &error)],
                );
            }
        }
        let validated = headers.join(",");
        Ok(RequireHeader {
            headers,
            path_prefix,
            validated,
        })
    }

    fn on_request(&self, req: &Request) -> Result<Action, String> {
        let path = req.path();
        if !path.starts_with(&self.path_prefix) {
            return Ok(Action::Continue);
        }
        let missing = self
            .headers
            .iter()
            .find(|name| req.header(name).is_none_or(|value| value.is_empty()));
        if let Some(name) = missing {
            count(REJECTIONS, ("header", name.as_str()));
            log::warn(
                "missing required header",
                &[("header", name.as_str()), ("path", path.as_str())],
            );
            req.set_property(OUTCOME, "rejected")
                .map_err(|e| format!("cannot set {OUTCOME}: {e}"))?;
            // Header names are tokens, which need no escaping in JSON.
            let mut body = String::new();
            let _ = write!(body, r#"{{"error":"missing_header","header":"{name}"}}"#);
            return Ok(Reply::new(400)
                .header("content-type", "application/json")
                .body(body)
                .into());
        }
        req.set_header("x-validated", &self.validated)
            .map_err(|e| format!("cannot set x-validated: {e}"))?;
        req.set_property(OUTCOME, "passed")
            .map_err(|e| format!("cannot set {OUTCOME}: {e}"))?;
        Ok(Action::Continue)
    }

    fn on_response(&self, req: &Request, resp: &Response) -> Result<Action, String> {
        if req.property(OUTCOME).as_deref() == Some("passed") {
            resp.set_header("x-validator", "passed")
                .map_err(|e| format!("cannot set x-validator: {e}"))?;
        }
        Ok(Action::Continue)
    }

    fn on_log(&self, req: &Request, _resp: &Response, _info: &Exchange) {
        let outcome = req.property(OUTCOME);
        count(
            REQUESTS,
            ("outcome", outcome.as_deref().unwrap_or("skipped")),
        );
    }
}

tandem_sdk::export_plugin!(RequireHeader, hooks: [on_request, on_response, on_log]);
