//! Who a request was authenticated as, whatever the credential.

use serde_json::{Map, Value};

/// How a caller proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A JWT bearer token.
    Jwt,
    /// An API key.
    ApiKey,
}

impl Method {
    /// The value of the `auth.method` property.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Jwt => "jwt",
            Method::ApiKey => "api-key",
        }
    }
}

/// A verified caller.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The subject: the token's subject claim, or the API key's id.
    pub subject: String,
    /// The credential used.
    pub method: Method,
    /// The API key's id (API keys only).
    pub key_id: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Every claim of the token (empty for API keys).
    pub claims: Map<String, Value>,
}

impl Identity {
    /// Whether the identity has every one of `required` scopes.
    pub fn has_scopes(&self, required: &[String]) -> bool {
        required.iter().all(|scope| self.scopes.contains(scope))
    }

    /// Whether claim `name` equals one of `accepted`, or (for an array
    /// claim) contains one of them.
    pub fn has_claim(&self, name: &str, accepted: &[Value]) -> bool {
        match self.claims.get(name) {
            Some(Value::Array(values)) => values.iter().any(|v| accepted.contains(v)),
            Some(value) => accepted.contains(value),
            None => false,
        }
    }

    /// Claim `name` as a header value: strings as they are, other values as
    /// compact JSON.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        match self.claims.get(name)? {
            Value::String(text) => Some(text.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// The scopes of a token: the space-separated `scope` claim (RFC 8693) and
/// the `scp` claim, an array or a space-separated string.
pub fn scopes_of(claims: &Map<String, Value>) -> Vec<String> {
    let mut scopes = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(text)) => {
                scopes.extend(text.split_whitespace().map(str::to_owned));
            }
            Some(Value::Array(items)) => {
                scopes.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => {}
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_from_scope_and_scp() {
        let claims = json!({"scope": "a b", "scp": ["c"]});
        assert_eq!(scopes_of(claims.as_object().unwrap()), ["a", "b", "c"]);
    }

    #[test]
    fn claims_match_values_or_array_members() {
        let identity = Identity {
            subject: "s".into(),
            method: Method::Jwt,
            key_id: None,
            scopes: vec![],
            claims: json!({"role": "admin", "groups": ["x", "y"], "level": 3})
                .as_object()
                .unwrap()
                .clone(),
        };
        assert!(identity.has_claim("role", &[json!("admin")]));
        assert!(identity.has_claim("groups", &[json!("z"), json!("y")]));
        assert!(!identity.has_claim("role", &[json!("user")]));
        assert!(!identity.has_claim("missing", &[json!("x")]));
        assert_eq!(identity.claim_text("level").as_deref(), Some("3"));
        assert_eq!(
            identity.claim_text("groups").as_deref(),
            Some(r#"["x","y"]"#)
        );
    }
}
