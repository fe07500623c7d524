//! Access rules: which requests are public, which need any valid
//! credentials, and which need scopes or claims.

use serde_json::Value;
use tandem_sdk::routes::RouteMatch;

use crate::identity::Identity;
use crate::settings::{Access, RuleSettings};

/// What a request needs to pass.
#[derive(Clone, Debug, PartialEq)]
pub enum Requirement {
    /// Nothing.
    Public,
    /// Valid credentials with every scope and claim listed.
    Authenticated {
        /// Scopes the caller must all have.
        scopes: Vec<String>,
        /// Claims the caller must carry, each with its accepted values.
        claims: Vec<(String, Vec<Value>)>,
    },
}

impl Requirement {
    /// Whether `identity` meets the scopes and claims.
    pub fn allows(&self, identity: &Identity) -> bool {
        match self {
            Requirement::Public => true,
            Requirement::Authenticated { scopes, claims } => {
                identity.has_scopes(scopes)
                    && claims
                        .iter()
                        .all(|(name, accepted)| identity.has_claim(name, accepted))
            }
        }
    }

    /// The scopes to name in an `insufficient_scope` challenge.
    pub fn scopes(&self) -> &[String] {
        match self {
            Requirement::Public => &[],
            Requirement::Authenticated { scopes, .. } => scopes,
        }
    }
}

/// The rules in config order, and what applies when none matches.
pub struct Rules {
    rules: Vec<(RouteMatch, Requirement)>,
    default: Requirement,
}

impl Rules {
    /// Builds the rules; the error names the rule and the key.
    pub fn new(rules: &[RuleSettings], default: Access) -> Result<Rules, String> {
        let mut built = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let at = |message: String| format!("config key `rules[{index}]`: {message}");
            let route = RouteMatch::new(&rule.prefix, &rule.methods).map_err(at)?;
            let requirement = match rule.access {
                Access::Public if !rule.scopes.is_empty() || !rule.claims.is_empty() => {
                    return Err(at(
                        "a public rule cannot require `scopes` or `claims`".to_owned()
                    ));
                }
                Access::Public => Requirement::Public,
                Access::Authenticated => Requirement::Authenticated {
                    scopes: rule.scopes.clone(),
                    claims: rule
                        .claims
                        .iter()
                        .map(|(name, value)| {
                            let accepted = match value {
                                Value::Array(values) => values.clone(),
                                value => vec![value.clone()],
                            };
                            (name.clone(), accepted)
                        })
                        .collect(),
                },
            };
            built.push((route, requirement));
        }
        let default = match default {
            Access::Public => Requirement::Public,
            Access::Authenticated => Requirement::Authenticated {
                scopes: Vec::new(),
                claims: Vec::new(),
            },
        };
        Ok(Rules {
            rules: built,
            default,
        })
    }

    /// The requirement of the first matching rule, or the default.
    pub fn requirement(&self, method: &str, path: &str) -> &Requirement {
        self.rules
            .iter()
            .find(|(route, _)| route.matches(method, path))
            .map_or(&self.default, |(_, requirement)| requirement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rule(prefix: &str, access: Access, scopes: &[&str]) -> RuleSettings {
        RuleSettings {
            prefix: prefix.into(),
            methods: vec![],
            access,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            claims: BTreeMap::new(),
        }
    }

    #[test]
    fn first_match_wins_then_the_default() {
        let rules = Rules::new(
            &[
                rule("/health", Access::Public, &[]),
                rule("/admin/", Access::Authenticated, &["admin"]),
            ],
            Access::Authenticated,
        )
        .unwrap();
        assert_eq!(rules.requirement("GET", "/health"), &Requirement::Public);
        assert_eq!(rules.requirement("GET", "/admin/x").scopes(), ["admin"]);
        assert!(matches!(
            rules.requirement("GET", "/other"),
            Requirement::Authenticated { scopes, .. } if scopes.is_empty()
        ));
    }

    #[test]
    fn public_rules_cannot_require_scopes() {
        let error = Rules::new(&[rule("/", Access::Public, &["x"])], Access::Authenticated)
            .err()
            .unwrap();
        assert!(error.contains("rules[0]"), "{error}");
    }
}
