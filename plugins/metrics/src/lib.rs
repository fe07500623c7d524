//! metrics: RED metrics (rate, errors, duration) per method and templated
//! route, plus in-flight requests and body sizes, exposed with the host's
//! own metrics on the admin `/metrics`. Phase `on-request` counts a request
//! in flight and remembers its labels; phase `on-log` records the rest.
//! See README.md for the config.

mod routes;

use serde::Deserialize;
use tandem_sdk::metrics::{self, Kind};
use tandem_sdk::{Action, Config, Exchange, Plugin, Request, Response, log};

use crate::routes::Routes;

/// Methods that get their own label value unless the config says otherwise.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Latency buckets in seconds, from 1 ms to 10 s.
const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Body size buckets in bytes, from 100 B to 100 MB.
const SIZE_BUCKETS: [f64; 7] = [100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];

/// The `[config]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Prefix of every metric name.
    #[serde(default = "default_namespace")]
    namespace: String,
    /// Route templates such as `/orders/{id}`.
    #[serde(default)]
    routes: Vec<String>,
    /// The `route` label of paths that match no template.
    #[serde(default = "default_other")]
    other_route: String,
    /// Methods with their own label value; the rest are `other`.
    #[serde(default)]
    methods: Option<Vec<String>>,
    /// Latency histogram buckets, in seconds.
    #[serde(default)]
    duration_buckets: Option<Vec<f64>>,
    /// Body size histogram buckets, in bytes.
    #[serde(default)]
    size_buckets: Option<Vec<f64>>,
}

fn default_namespace() -> String {
    "http".to_owned()
}

fn default_other() -> String {
    "other".to_owned()
}

/// Metric names, built once from the namespace.
struct Names {
    requests: String,
    duration: String,
    in_flight: String,
    request_size: String,
    response_size: String,
}

/// The plugin, built once per instance.
struct Metrics {
    routes: Routes,
    other_route: String,
    methods: Vec<String>,
    names: Names,
    /// Carries `METHOD ROUTE` from `on-request` to `on-log`.
    property: String,
}

impl Plugin for Metrics {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        let namespace = &settings.namespace;
        let valid = namespace
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !namespace.starts_with("tandem");
        if !valid {
            return Err(format!(
                "config key `namespace`: {namespace:?} must match [a-zA-Z_][a-zA-Z0-9_]* and not start with `tandem`"
            ));
        }
        if settings.other_route.is_empty() {
            return Err("config key `other_route`: must not be empty".into());
        }
        let routes = Routes::new(&settings.routes)?;
        let methods = match settings.methods {
            Some(methods) => methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            None => KNOWN_METHODS.iter().map(|m| (*m).to_owned()).collect(),
        };
        let duration_buckets = buckets(
            "duration_buckets",
            settings.duration_buckets,
            &DURATION_BUCKETS,
        )?;
        let size_buckets = buckets("size_buckets", settings.size_buckets, &SIZE_BUCKETS)?;
        let names = Names {
            requests: format!("{namespace}_requests_total"),
            duration: format!("{namespace}_request_duration_seconds"),
            in_flight: format!("{namespace}_requests_in_flight"),
            request_size: format!("{namespace}_request_size_bytes"),
            response_size: format!("{namespace}_response_size_bytes"),
        };
        // Describing sets help and buckets; a refusal here means the names
        // clash with another plugin's metrics, which the operator must fix.
        let by_route = ["method", "route"];
        metrics::describe(
            &names.requests,
            Kind::Counter,
            "Requests answered, by method, route and status code.",
            &["method", "route", "code"],
            &[],
        )?;
        metrics::describe(
            &names.duration,
            Kind::Histogram,
            "Time from the request head to the last byte of the response, by method and route.",
            &by_route,
            &duration_buckets,
        )?;
        metrics::describe(
            &names.in_flight,
            Kind::Gauge,
            "Requests being handled, by method and route.",
            &by_route,
            &[],
        )?;
        metrics::describe(
            &names.request_size,
            Kind::Histogram,
            "Request body bytes read from the client, by method and route.",
            &by_route,
            &size_buckets,
        )?;
        metrics::describe(
            &names.response_size,
            Kind::Histogram,
            "Response body bytes sent to the client, by method and route.",
            &by_route,
            &size_buckets,
        )?;
        Ok(Metrics {
            routes,
            other_route: settings.other_route,
            methods,
            property: format!("metrics.{namespace}"),
            names,
        })
    }

    fn on_request(&self, req: &Request) -> Result<Action, String> {
        let (method, route) = self.labels(req);
        warn_on_error(
            metrics::gauge_add(
                &self.names.in_flight,
                &[("method", method), ("route", route)],
                1.0,
            ),
            &self.names.in_flight,
        );
        // The labels go along with the request, so `on-log` takes the same
        // request out of flight even if a later plugin rewrites the path.
        req.set_property(&self.property, &format!("{method} {route}"))?;
        Ok(Action::Continue)
    }

    fn on_log(&self, req: &Request, _resp: &Response, info: &Exchange) {
        let remembered = req.property(&self.property);
        let (method, route, in_flight) = match remembered.as_deref().and_then(|p| p.split_once(' '))
        {
            Some((method, route)) => (method, route, true),
            // An earlier plugin answered before our `on-request` ran.
            None => {
                let (method, route) = self.labels(req);
                (method, route, false)
            }
        };
        let labels = [("method", method), ("route", route)];
        if in_flight {
            warn_on_error(
                metrics::gauge_add(&self.names.in_flight, &labels, -1.0),
                &self.names.in_flight,
            );
        }
        let code = info.status.to_string();
        warn_on_error(
            metrics::counter_add(
                &self.names.requests,
                &[("method", method), ("route", route), ("code", &code)],
                1,
            ),
            &self.names.requests,
        );
        warn_on_error(
            metrics::histogram_observe(
                &self.names.duration,
                &labels,
                info.duration_us as f64 / 1e6,
            ),
            &self.names.duration,
        );
        warn_on_error(
            metrics::histogram_observe(
                &self.names.request_size,
                &labels,
                info.request_bytes as f64,
            ),
            &self.names.request_size,
        );
        warn_on_error(
            metrics::histogram_observe(
                &self.names.response_size,
                &labels,
                info.response_bytes as f64,
            ),
            &self.names.response_size,
        );
    }
}

impl Metrics {
    /// The `method` and `route` labels of a request, each from a bounded set.
    fn labels(&self, req: &Request) -> (&str, &str) {
        let method = req.method();
        let method = self
            .methods
            .iter()
            .find(|known| **known == method)
            .map_or("other", String::as_str);
        let route = self.routes.route(&req.path()).unwrap_or(&self.other_route);
        (method, route)
    }
}

/// Checks configured buckets: finite and strictly increasing.
fn buckets(key: &str, configured: Option<Vec<f64>>, default: &[f64]) -> Result<Vec<f64>, String> {
    let buckets = configured.unwrap_or_else(|| default.to_vec());
    let increasing = buckets.windows(2).all(|pair| pair[0] < pair[1]);
    if buckets.is_empty() || !increasing || buckets.iter().any(|b| !b.is_finite()) {
        return Err(format!(
            "config key `{key}`: list finite bounds in increasing order"
        ));
    }
    Ok(buckets)
}

fn warn_on_error(result: Result<(), String>, metric: &str) {
    if let Err(error) = result {
        log::warn(
            "cannot update metric",
            &[("metric", metric), ("error", &error)],
        );
    }
}

tandem_sdk::export_plugin!(Metrics, hooks: [on_request, on_log]);
