//! auth: checks API keys and JWT bearer tokens in `on-request`, enforces
//! per-route access rules, and forwards the verified subject to the app.
//! See README.md for the config.

mod api_key;
mod cache;
mod challenge;
mod identity;
mod jwt;
mod keys;
mod rules;
mod settings;

use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use tandem_sdk::metrics::{self, Kind};
use tandem_sdk::{Action, Config, Plugin, Request, log, properties};

use crate::api_key::ApiKeys;
use crate::cache::TokenCache;
use crate::challenge::{Refusal, quotable};
use crate::identity::Identity;
use crate::jwt::JwtVerifier;
use crate::rules::{Requirement, Rules};
use crate::settings::Settings;

/// Decisions by outcome.
const DECISIONS: &str = "auth_decisions_total";

/// The plugin, built once per instance from its config.
struct Auth {
    realm: String,
    rules: Rules,
    jwt: Option<JwtVerifier>,
    api_keys: Option<ApiKeys>,
    subject_header: String,
    /// Claim name and the header it is forwarded in.
    claim_headers: Vec<(String, String)>,
    /// Every header a client must not send: the forwarded ones and more.
    strip: Vec<String>,
    cache: TokenCache,
}

impl Plugin for Auth {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if !quotable(&settings.realm) {
            return Err("config key `realm`: use printable ASCII without `\"` or `\\`".into());
        }
        let jwt = settings.jwt.as_ref().map(JwtVerifier::new).transpose()?;
        let api_keys = settings.api_keys.as_ref().map(ApiKeys::new).transpose()?;
        if jwt.is_none() && api_keys.is_none() {
            return Err("config: set `jwt`, `api_keys` or both, or nothing can pass".into());
        }
        for rule in &settings.rules {
            if let Some(bad) = rule
                .scopes
                .iter()
                .find(|s| s.is_empty() || !quotable(s) || s.contains(' '))
            {
                return Err(format!(
                    "config key `rules`: scope {bad:?} is not a scope token"
                ));
            }
        }
        let rules = Rules::new(&settings.rules, settings.default_access)?;
        let lower = |name: &str| name.trim().to_ascii_lowercase();
        let subject_header = lower(&settings.subject_header);
        let claim_headers: Vec<(String, String)> = settings
            .claim_headers
            .iter()
            .map(|(claim, header)| (claim.clone(), lower(header)))
            .collect();
        let mut strip = vec![subject_header.clone()];
        strip.extend(claim_headers.iter().map(|(_, header)| header.clone()));
        strip.extend(settings.strip_headers.iter().map(|h| lower(h)));
        if let Some(bad) = strip.iter().find(|h| !valid_header_name(h)) {
            return Err(format!("config: {bad:?} is not a header name"));
        }
        strip.sort();
        strip.dedup();
        describe_metrics();
        Ok(Auth {
            realm: settings.realm,
            rules,
            jwt,
            api_keys,
            subject_header,
            claim_headers,
            strip,
            cache: TokenCache::new(settings.cache_size),
        })
    }

    fn on_request(&self, req: &Request) -> Result<Action, String> {
        // First, always: a client must never choose what the app trusts.
        for header in &self.strip {
            req.remove_header(header);
        }
        let method = req.method();
        let path = req.path();
        // An API key in the query is a credential too: read here, then taken
        // out of the target, so that the app (and its access log) never
        // sees it, whatever this route requires.
        let query = self
            .api_keys
            .as_ref()
            .filter(|keys| keys.takes_query())
            .and_then(|_| req.query());
        if let (Some(api_keys), Some(query)) = (&self.api_keys, &query)
            && api_keys.in_query(query)
        {
            let target = match api_keys.strip_from_query(query) {
                Some(rest) => format!("{path}?{rest}"),
                None => path.clone(),
            };
            if req.set_path_and_query(&target).is_err() {
                let refusal = Refusal::Invalid("malformed request target");
                return Ok(self.refuse(&refusal, "none", &method, &path));
            }
        }
        let requirement = self.rules.requirement(&method, &path);
        if *requirement == Requirement::Public {
            count("public", "none");
            return Ok(Action::Continue);
        }
        let identity = match self.authenticate(req, query.as_deref()) {
            Ok(identity) => identity,
            Err(refusal) => return Ok(self.refuse(&refusal, "none", &method, &path)),
        };
        if !requirement.allows(&identity) {
            let refusal = Refusal::Insufficient {
                scopes: requirement.scopes().to_vec(),
            };
            return Ok(self.refuse(&refusal, identity.method.as_str(), &method, &path));
        }
        if let Err(reason) = self.forward(req, &identity) {
            let refusal = Refusal::Invalid(reason);
            return Ok(self.refuse(&refusal, identity.method.as_str(), &method, &path));
        }
        count("allowed", identity.method.as_str());
        Ok(Action::Continue)
    }
}

impl Auth {
    /// Finds and checks the request's credentials: a bearer token first,
    /// then an API key.
    fn authenticate(&self, req: &Request, query: Option<&str>) -> Result<Rc<Identity>, Refusal> {
        if let Some(jwt) = &self.jwt
            && let Some(token) = req.header("authorization").and_then(|v| bearer(&v))
        {
            return self.verify_token(jwt, &token);
        }
        if let Some(api_keys) = &self.api_keys {
            let header = api_keys.header().and_then(|name| req.header(name));
            if let Some(presented) = api_keys.presented(header, query) {
                let identity = api_keys
                    .check(&presented.key)
                    .ok_or(Refusal::Invalid("invalid API key"))?;
                return Ok(Rc::new(identity));
            }
        }
        Err(Refusal::Missing)
    }

    fn verify_token(&self, jwt: &JwtVerifier, token: &str) -> Result<Rc<Identity>, Refusal> {
        let now = unix_now();
        let key = TokenCache::key(token);
        if let Some(identity) = self.cache.get(&key, now) {
            return Ok(identity);
        }
        let verified = jwt.verify(token, now).map_err(Refusal::Invalid)?;
        let identity = Rc::new(verified.identity);
        if let Some(expires_at) = verified.expires_at {
            // Accepted up to `exp` plus the leeway, so cached as long.
            let until = expires_at.saturating_add(jwt.leeway_secs());
            self.cache.insert(key, identity.clone(), until, now);
        }
        Ok(identity)
    }

    /// Hands the identity to the app (headers) and to later plugins
    /// (properties). A subject that cannot be a header value is refused.
    fn forward(&self, req: &Request, identity: &Identity) -> Result<(), &'static str> {
        req.set_header(&self.subject_header, &identity.subject)
            .map_err(|_| "subject is not a valid header value")?;
        for (claim, header) in &self.claim_headers {
            if let Some(value) = identity.claim_text(claim)
                && req.set_header(header, &value).is_err()
            {
                // Stripped above, so the app sees no header rather than a
                // forged one.
                log::debug(
                    "claim not forwarded",
                    &[("claim", claim), ("header", header)],
                );
            }
        }
        let mut bag = vec![
            (properties::AUTH_SUBJECT, identity.subject.as_str()),
            (properties::AUTH_METHOD, identity.method.as_str()),
        ];
        if let Some(key_id) = &identity.key_id {
            bag.push((properties::AUTH_KEY_ID, key_id));
        }
        let scopes = identity.scopes.join(" ");
        if !scopes.is_empty() {
            bag.push((properties::AUTH_SCOPES, &scopes));
        }
        for (key, value) in bag {
            req.set_property(key, value)
                .map_err(|_| "identity too large to forward")?;
        }
        Ok(())
    }

    fn refuse(&self, refusal: &Refusal, method: &str, req_method: &str, path: &str) -> Action {
        count(refusal.outcome(), method);
        if log::enabled(log::Level::Debug) {
            let reason = match refusal {
                Refusal::Invalid(reason) => reason,
                Refusal::Missing => "no credentials",
                Refusal::Insufficient { .. } => "insufficient scope",
            };
            log::debug(
                "request refused",
                &[("method", req_method), ("path", path), ("reason", reason)],
            );
        }
        refusal.reply(&self.realm)
    }
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
fn bearer(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The host's wall clock in Unix seconds (0 if it is before 1970, which
/// makes every token with `exp` look expired: safe).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Counting is best effort: a refused metric must not change a decision.
fn describe_metrics() {
    if let Err(error) = metrics::describe(
        DECISIONS,
        Kind::Counter,
        "Auth decisions, by outcome (allowed, public, missing, invalid, forbidden) and credential.",
        &["outcome", "method"],
        &[],
    ) {
        log::warn(
            "cannot describe metric",
            &[("metric", DECISIONS), ("error", &error)],
        );
    }
}

fn count(outcome: &str, method: &str) {
    if let Err(error) =
        metrics::counter_add(DECISIONS, &[("outcome", outcome), ("method", method)], 1)
    {
        log::warn(
            "cannot count decision",
            &[("metric", DECISIONS), ("error", &error)],
        );
    }
}

tandem_sdk::export_plugin!(Auth, hooks: [on_request]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_found_case_insensitively() {
        assert_eq!(bearer("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(bearer("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
