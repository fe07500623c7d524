//! deny-path: answers requests whose path starts with a configured prefix
//! with an error (phase `on-request`), and counts them. See README.md for the
//! config.

use serde::{Deserialize, Serialize};
use tandem_sdk::metrics::{self, Kind};
use tandem_sdk::{Action, Config, Plugin, Reply, Request, log};

/// Rejections by matching prefix.
const REJECTIONS: &str = "deny_path_rejections_total";

/// The `[config]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Path prefixes to reject, e.g. `/admin/`.
    prefixes: Vec<String>,
    /// The status to answer with.
    #[serde(default = "default_status")]
    status: u16,
}

fn default_status() -> u16 {
    403
}

/// The JSON body of a rejection.
#[derive(Serialize)]
struct Rejection<'a> {
    error: &'a str,
    path: &'a str,
}

/// Rejects requests under any of its prefixes.
struct DenyPath {
    prefixes: Vec<String>,
    status: u16,
}

impl Plugin for DenyPath {
    fn init(config: Config) -> Result<Self, String> {
        let Settings { prefixes, status } = config.parse()?;
        if prefixes.is_empty() {
            return Err("config key `prefixes`: list at least one path prefix".to_owned());
        }
        if let Some(bad) = prefixes.iter().find(|prefix| !prefix.starts_with('/')) {
            return Err(format!(
                "config key `prefixes`: `{bad}` does not start with `/`"
            ));
        }
        if !(200..=599).contains(&status) {
            return Err(format!(
                "config key `status`: {status} is not a final HTTP status (200 to 599)"
            ));
        }
        // Counting is best effort: a refused description must not stop the
        // plugin from protecting its paths.
        if let Err(error) = metrics::describe(
            REJECTIONS,
            Kind::Counter,
            "Requests rejected by deny-path, by the prefix they matched.",
            &["prefix"],
            &[],
        ) {
            log::warn(
                "cannot describe metric",
                &[("metric", REJECTIONS), ("error", &error)],
            );
        }
        Ok(DenyPath { prefixes, status })
    }

    fn on_request(&self, req: &Request) -> Result<Action, String> {
        let path = req.path();
        let Some(prefix) = self
            .prefixes
            .iter()
            .find(|prefix| path.starts_with(prefix.as_str()))
        else {
            return Ok(Action::Continue);
        };
        if let Err(error) = metrics::counter_add(REJECTIONS, &[("prefix", prefix)], 1) {
            log::warn(
                "cannot count rejection",
                &[("metric", REJECTIONS), ("error", &error)],
            );
        }
        let body = serde_json::to_vec(&Rejection {
            error: "forbidden",
            path: &path,
        })
        .map_err(|error| format!("cannot encode the rejection: {error}"))?;
        Ok(Reply::new(self.status)
            .header("content-type", "application/json")
            .body(body)
            .into())
    }
}

tandem_sdk::export_plugin!(DenyPath, hooks: [on_request]);
