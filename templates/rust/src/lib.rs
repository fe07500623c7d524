//! {{name}}: a Tandem plugin. Adds `x-hello: {{name}}` to every request,
//! logs its path, and counts exchanges by status. Change it to taste.

use tandem_sdk::metrics::{self, Kind};
use tandem_sdk::{Action, Config, Exchange, Plugin, Request, Response, log};

const REQUESTS: &str = "{{metric}}_requests_total";

struct Hello;

impl Plugin for Hello {
    /// Phase `init`: once per instance, with `[config]` as JSON. Parse it
    /// here (`config.parse::<YourSettings>()?`) and return an error that
    /// names the key at fault.
    fn init(_config: Config) -> Result<Self, String> {
        metrics::describe(REQUESTS, Kind::Counter, "Exchanges seen by {{name}}.", &["status"], &[])?;
        Ok(Hello)
    }

    /// Phase `on-request`: before the upstream; may change the request or
    /// answer the client.
    fn on_request(&self, req: &Request) -> Result<Action, String> {
        let path = req.path();
        log::info("hello", &[("path", path.as_str())]);
        req.set_header("x-hello", "{{name}}")
            .map_err(|e| format!("cannot set x-hello: {e}"))?;
        Ok(Action::Continue)
    }

    /// Phase `on-response`: with the response head; may change it or
    /// replace the response.
    fn on_response(&self, _req: &Request, _resp: &Response) -> Result<Action, String> {
        Ok(Action::Continue)
    }

    /// Phase `on-log`: after the response was sent; observe only.
    fn on_log(&self, _req: &Request, _resp: &Response, info: &Exchange) {
        let status = info.status.to_string();
        let _ = metrics::counter_add(REQUESTS, &[("status", status.as_str())], 1);
    }
}

tandem_sdk::export_plugin!(Hello, hooks: [on_request, on_response, on_log]);
