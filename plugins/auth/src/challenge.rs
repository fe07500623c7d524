//! The 401 and 403 answers, with the `WWW-Authenticate` challenge of
//! RFC 6750 section 3.

use tandem_sdk::{Action, Reply};

/// Why a request is refused.
pub enum Refusal {
    /// No credentials at all: a bare challenge (RFC 6750 3.1 says no error
    /// code then).
    Missing,
    /// Credentials that failed, with a short public reason.
    Invalid(&'static str),
    /// Valid credentials without the scopes or claims the route needs.
    Insufficient {
        /// The scopes the route needs.
        scopes: Vec<String>,
    },
}

impl Refusal {
    /// The `outcome` label of the plugin's decision counter.
    pub fn outcome(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Invalid(_) => "invalid",
            Refusal::Insufficient { .. } => "forbidden",
        }
    }

    /// The answer for the client.
    pub fn reply(&self, realm: &str) -> Action {
        let (status, challenge, body) = match self {
            Refusal::Missing => (
                401,
                format!("Bearer realm=\"{realm}\""),
                serde_json::json!({"error": "unauthorized", "error_description": "credentials required"}),
            ),
            Refusal::Invalid(reason) => (
                401,
                format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{reason}\""
                ),
                serde_json::json!({"error": "invalid_token", "error_description": reason}),
            ),
            Refusal::Insufficient { scopes } => {
                let mut challenge =
                    format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\"");
                if !scopes.is_empty() {
                    challenge.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
                }
                (
                    403,
                    challenge,
                    serde_json::json!({"error": "insufficient_scope", "scope": scopes.join(" ")}),
                )
            }
        };
        Reply::new(status)
            .header("www-authenticate", challenge)
            .header("content-type", "application/json")
            .header("cache-control", "no-store")
            .body(body.to_string())
            .into()
    }
}

/// Whether `text` can sit inside a quoted-string of a challenge without
/// escaping: printable ASCII other than `"` and `\`.
pub fn quotable(text: &str) -> bool {
    text.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}
