//! add-header: sets configured headers on every response (phase
//! `on-response`). See README.md for the config.

use std::collections::BTreeMap;

use serde::Deserialize;
use tandem_sdk::{Action, Config, Plugin, Request, Response};

/// The `[config]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Header name to value.
    headers: BTreeMap<String, String>,
}

/// Sets the same headers on every response.
struct AddHeader {
    headers: Vec<(String, String)>,
}

impl Plugin for AddHeader {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.headers.is_empty() {
            return Err("config key `headers`: name at least one header".to_owned());
        }
        // Check here so that a bad header fails at load, not on every response.
        for (name, value) in &settings.headers {
            if !is_token(name) {
                return Err(format!(
                    "config key `headers`: `{name}` is not a valid header name"
                ));
            }
            if !is_field_value(value) {
                return Err(format!(
                    "config key `headers.{name}`: the value has bytes not allowed in a header"
                ));
            }
        }
        Ok(AddHeader {
            headers: settings.headers.into_iter().collect(),
        })
    }

    fn on_response(&self, _req: &Request, resp: &Response) -> Result<Action, String> {
        for (name, value) in &self.headers {
            resp.set_header(name, value)
                .map_err(|error| format!("cannot set response header `{name}`: {error}"))?;
        }
        Ok(Action::Continue)
    }
}

tandem_sdk::export_plugin!(AddHeader, hooks: [on_response]);

/// An HTTP token (RFC 9110, section 5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible ASCII, spaces and tabs, and no leading or trailing whitespace.
fn is_field_value(value: &str) -> bool {
    value.trim_matches([' ', '\t']) == value
        && value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}
