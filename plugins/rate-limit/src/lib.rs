//! rate-limit: token buckets in the host's shared state, so a limit is exact
//! across worker threads and instances. Phase `on-request` takes a token
//! from every matching rule's bucket and answers 429 when one is empty;
//! phase `on-response` adds the remaining quota to the response, as the
//! IETF RateLimit headers draft describes. See README.md for the config.

mod rules;

use serde::Deserialize;
use tandem_sdk::metrics::{self, Kind};
use tandem_sdk::shared::{self, BucketDecision};
use tandem_sdk::{Action, Config, Plugin, Reply, Request, Response, log};

use crate::rules::{Rule, RuleSettings};

/// Decisions by policy and outcome.
const DECISIONS: &str = "rate_limit_decisions_total";
/// Property that carries `RateLimit-Policy` from `on-request` to `on-response`.
const POLICY_PROPERTY: &str = "rate-limit.policy";
/// Property that carries `RateLimit` from `on-request` to `on-response`.
const STATE_PROPERTY: &str = "rate-limit.state";

/// The `[config]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The rules; every matching one applies.
    rules: Vec<RuleSettings>,
    /// Whether allowed responses carry the quota headers.
    #[serde(default = "yes")]
    headers: bool,
}

fn yes() -> bool {
    true
}

/// The plugin, built once per instance.
struct RateLimit {
    rules: Vec<Rule>,
    headers: bool,
}

impl Plugin for RateLimit {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.rules.is_empty() {
            return Err("config key `rules`: list at least one rule".into());
        }
        let rules = settings
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| Rule::new(index, rule))
            .collect::<Result<Vec<_>, _>>()?;
        for (index, rule) in rules.iter().enumerate() {
            if rules[..index].iter().any(|other| other.name == rule.name) {
                return Err(format!(
                    "config key `rules[{index}]`: `name` {:?} is used twice",
                    rule.name
                ));
            }
        }
        if let Err(error) = metrics::describe(
            DECISIONS,
            Kind::Counter,
            "Rate-limit decisions, by policy and outcome (allowed, limited, unkeyed).",
            &["policy", "outcome"],
            &[],
        ) {
            log::warn(
                "cannot describe metric",
                &[("metric", DECISIONS), ("error", &error)],
            );
        }
        Ok(RateLimit {
            rules,
            headers: settings.headers,
        })
    }

    fn on_request(&self, req: &Request) -> Result<Action, String> {
        let method = req.method();
        let path = req.path();
        let mut policies = Vec::new();
        let mut states = Vec::new();
        for rule in self
            .rules
            .iter()
            .filter(|rule| rule.matches(&method, &path))
        {
            let Some(key) = rule.bucket_key(req) else {
                count(&rule.name, "unkeyed");
                continue;
            };
            // A host error goes through the failure policy: the operator
            // decides whether a broken limiter blocks or lets through.
            let decision = shared::take_tokens(&key, rule.rate, rule.burst, 1)
                .map_err(|error| format!("take-tokens for {:?}: {error}", rule.name))?;
            if !decision.allowed {
                count(&rule.name, "limited");
                return Ok(limited(rule, &decision));
            }
            count(&rule.name, "allowed");
            if self.headers {
                policies.push(rule.policy_item());
                states.push(state_item(rule, decision.remaining, decision.reset_ms));
            }
        }
        if !policies.is_empty() {
            req.set_property(POLICY_PROPERTY, &policies.join(", "))?;
            req.set_property(STATE_PROPERTY, &states.join(", "))?;
        }
        Ok(Action::Continue)
    }

    fn on_response(&self, req: &Request, resp: &Response) -> Result<Action, String> {
        // Only set when this request took tokens and was allowed; a 429 of
        // our own already carries its headers.
        if let (Some(policy), Some(state)) =
            (req.property(POLICY_PROPERTY), req.property(STATE_PROPERTY))
        {
            resp.set_header("ratelimit-policy", &policy)?;
            resp.set_header("ratelimit", &state)?;
        }
        Ok(Action::Continue)
    }
}

/// `RateLimit` item: `r` tokens remaining, `t` seconds until the bucket is
/// full again.
fn state_item(rule: &Rule, remaining: u64, reset_ms: u64) -> String {
    format!(
        "\"{}\";r={};t={}",
        rule.name,
        remaining,
        reset_ms.div_ceil(1000)
    )
}

/// The 429 answer.
fn limited(rule: &Rule, decision: &BucketDecision) -> Action {
    // Whole seconds, rounded up, and never 0: "retry now" would be a lie.
    let retry_after = decision.retry_after_ms.div_ceil(1000).max(1);
    let body = serde_json::json!({
        "error": "rate_limited",
        "policy": rule.name,
        "retry_after": retry_after,
    });
    Reply::new(429)
        .header("retry-after", retry_after.to_string())
        .header("ratelimit-policy", rule.policy_item())
        .header(
            "ratelimit",
            format!("\"{}\";r=0;t={retry_after}", rule.name),
        )
        .header("content-type", "application/json")
        .body(body.to_string())
        .into()
}

fn count(policy: &str, outcome: &str) {
    if let Err(error) =
        metrics::counter_add(DECISIONS, &[("policy", policy), ("outcome", outcome)], 1)
    {
        log::warn(
            "cannot count decision",
            &[("metric", DECISIONS), ("error", &error)],
        );
    }
}

tandem_sdk::export_plugin!(RateLimit, hooks: [on_request, on_response]);
