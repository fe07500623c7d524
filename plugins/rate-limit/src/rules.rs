//! Rate-limit rules: which requests a bucket applies to, its rate and
//! burst, and what the bucket is keyed by.

use std::net::SocketAddr;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tandem_sdk::routes::RouteMatch;
use tandem_sdk::{Request, properties};

/// Key values longer than this are hashed, so a long header cannot push a
/// key past the host's key limit (or make two clients share a truncated key).
const MAX_RAW_KEY_BYTES: usize = 128;

/// One rule as written in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// The policy name in the headers and in the bucket keys.
    #[serde(default)]
    pub name: Option<String>,
    /// Path prefix, starting with `/`.
    #[serde(default = "root")]
    pub prefix: String,
    /// Methods; empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Tokens added per second.
    pub rate: f64,
    /// Bucket size: requests allowed at once after a quiet period.
    pub burst: u64,
    /// What the bucket is keyed by: one source or a list tried in order.
    #[serde(default)]
    pub key: Option<KeySpec>,
}

/// One key source, or several tried in order.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum KeySpec {
    /// One source.
    One(String),
    /// The first source that has a value wins.
    Many(Vec<String>),
}

fn root() -> String {
    "/".to_owned()
}

/// Where a bucket key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The client's IP address (without the port).
    ClientAddr,
    /// A request header.
    Header(String),
    /// The API key id set by the auth plugin (`auth.key-id`).
    ApiKey,
    /// The subject set by the auth plugin (`auth.subject`).
    Subject,
    /// Any property of the request's property bag.
    Property(String),
}

impl Source {
    fn parse(text: &str) -> Option<Source> {
        Some(match text {
            "client-addr" => Source::ClientAddr,
            "api-key" => Source::ApiKey,
            "subject" => Source::Subject,
            _ => match text.split_once(':')? {
                ("header", name) if !name.is_empty() => Source::Header(name.to_ascii_lowercase()),
                ("property", name) if !name.is_empty() => Source::Property(name.to_owned()),
                _ => return None,
            },
        })
    }

    /// The short tag that keeps key spaces of sources apart.
    fn tag(&self) -> &str {
        match self {
            Source::ClientAddr => "ip",
            Source::Header(_) => "h",
            Source::ApiKey => "key",
            Source::Subject => "sub",
            Source::Property(_) => "p",
        }
    }

    fn value(&self, req: &Request) -> Option<String> {
        let value = match self {
            Source::ClientAddr => {
                let addr = req.client_addr();
                Some(match addr.parse::<SocketAddr>() {
                    Ok(socket) => socket.ip().to_string(),
                    Err(_) => addr,
                })
            }
            Source::Header(name) => req.header(name),
            Source::ApiKey => req.property(properties::AUTH_KEY_ID),
            Source::Subject => req.property(properties::AUTH_SUBJECT),
            Source::Property(name) => req.property(name),
        };
        value.filter(|v| !v.is_empty())
    }
}

/// A rule ready to apply.
#[derive(Debug)]
pub struct Rule {
    /// The policy name.
    pub name: String,
    route: RouteMatch,
    /// Tokens per second.
    pub rate: f64,
    /// Bucket size.
    pub burst: u64,
    sources: Vec<Source>,
}

impl Rule {
    /// Builds rule `index`; the error names the rule and the key.
    pub fn new(index: usize, settings: &RuleSettings) -> Result<Rule, String> {
        let at = |message: String| format!("config key `rules[{index}]`: {message}");
        let name = settings
            .name
            .clone()
            .unwrap_or_else(|| format!("rule-{index}"));
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_name {
            return Err(at(format!(
                "`name` {name:?}: use 1 to 64 of A-Z a-z 0-9 - _ ."
            )));
        }
        let route = RouteMatch::new(&settings.prefix, &settings.methods).map_err(at)?;
        if !(settings.rate.is_finite() && settings.rate > 0.0) {
            return Err(at(
                "`rate` must be a positive number of requests per second".into(),
            ));
        }
        if settings.burst == 0 {
            return Err(at("`burst` must be at least 1".into()));
        }
        let texts = match &settings.key {
            None => vec!["client-addr".to_owned()],
            Some(KeySpec::One(text)) => vec![text.clone()],
            Some(KeySpec::Many(texts)) => texts.clone(),
        };
        if texts.is_empty() {
            return Err(at("`key` lists no source".into()));
        }
        let sources = texts
            .iter()
            .map(|text| {
                Source::parse(text).ok_or_else(|| {
                    at(format!(
                        "`key` {text:?}: use client-addr, api-key, subject, header:NAME or property:NAME"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rule {
            name,
            route,
            rate: settings.rate,
            burst: settings.burst,
            sources,
        })
    }

    /// Whether the rule applies to a request.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.route.matches(method, path)
    }

    /// The shared-state key of the request's bucket, from the first source
    /// that has a value; `None` if none has.
    pub fn bucket_key(&self, req: &Request) -> Option<String> {
        self.sources.iter().find_map(|source| {
            let value = source.value(req)?;
            Some(bucket_key(&self.name, source.tag(), &value))
        })
    }

    /// `RateLimit-Policy` item: quota `q` is the burst, window `w` the
    /// seconds an empty bucket takes to fill (at least 1).
    pub fn policy_item(&self) -> String {
        let window = (self.burst as f64 / self.rate).ceil().max(1.0) as u64;
        format!("\"{}\";q={};w={}", self.name, self.burst, window)
    }
}

fn bucket_key(rule: &str, tag: &str, value: &str) -> String {
    if value.len() <= MAX_RAW_KEY_BYTES {
        format!("{rule}\u{1f}{tag}:{value}")
    } else {
        let digest = Sha256::digest(value.as_bytes());
        format!("{rule}\u{1f}{tag}#{}", hex::encode(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(key: Option<KeySpec>) -> RuleSettings {
        RuleSettings {
            name: Some("api".into()),
            prefix: "/api/".into(),
            methods: vec![],
            rate: 10.0,
            burst: 25,
            key,
        }
    }

    #[test]
    fn sources_parse_and_bad_ones_name_the_rule() {
        assert_eq!(
            Source::parse("header:X-Tenant"),
            Some(Source::Header("x-tenant".into()))
        );
        assert_eq!(Source::parse("subject"), Some(Source::Subject));
        assert_eq!(Source::parse("header:"), None);
        let error = Rule::new(2, &settings(Some(KeySpec::One("cookie".into())))).unwrap_err();
        assert!(error.contains("rules[2]"), "{error}");
    }

    #[test]
    fn policy_item_and_keys() {
        let rule = Rule::new(0, &settings(None)).unwrap();
        assert_eq!(rule.policy_item(), "\"api\";q=25;w=3");
        assert_eq!(bucket_key("api", "ip", "1.2.3.4"), "api\u{1f}ip:1.2.3.4");
        let long = "x".repeat(500);
        assert!(bucket_key("api", "h", &long).len() < 100);
        assert!(
            Rule::new(
                0,
                &RuleSettings {
                    rate: 0.0,
                    ..settings(None)
                }
            )
            .is_err()
        );
        assert!(
            Rule::new(
                0,
                &RuleSettings {
                    burst: 0,
                    ..settings(None)
                }
            )
            .is_err()
        );
    }
}
