//! The `[config]` table of the auth plugin, as written in `NAME.toml`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The whole `[config]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The realm named in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// JWT bearer tokens; absent: bearer tokens are not accepted.
    #[serde(default)]
    pub jwt: Option<JwtSettings>,
    /// API keys; absent: API keys are not accepted.
    #[serde(default)]
    pub api_keys: Option<ApiKeySettings>,
    /// Access rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RuleSettings>,
    /// Access for requests that no rule matches.
    #[serde(default)]
    pub default_access: Access,
    /// The header that carries the verified subject to the app.
    #[serde(default = "default_subject_header")]
    pub subject_header: String,
    /// Claims forwarded to the app: claim name → header name.
    #[serde(default)]
    pub claim_headers: BTreeMap<String, String>,
    /// More headers to remove from every client request.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// Most verified tokens kept per instance (0: no cache).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

/// How bearer tokens are checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// Keys written out one by one.
    #[serde(default)]
    pub keys: Vec<KeySettings>,
    /// A JWKS document: a JSON string, or a table with a `keys` array.
    #[serde(default)]
    pub jwks: Option<Jwks>,
    /// Accepted `iss` values; empty: any.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Accepted `aud` values (one must match); empty: any.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Whether a token without `exp` is refused.
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// The claim that names the subject.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
}

/// A JWKS document, inline.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Jwks {
    /// The JSON text, e.g. pasted from the issuer's `jwks_uri`.
    Text(String),
    /// The same document written as a TOML table.
    Table(Value),
}

/// One key written out in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// Matched against the token's `kid`; a token without `kid` tries every
    /// key of its algorithm.
    #[serde(default)]
    pub kid: Option<String>,
    /// The one algorithm this key verifies, e.g. `RS256`.
    pub alg: String,
    /// HMAC secret as text (HS256/384/512).
    #[serde(default)]
    pub secret: Option<String>,
    /// HMAC secret in base64 or base64url (HS256/384/512).
    #[serde(default)]
    pub secret_base64: Option<String>,
    /// Public key in PEM (RS*, PS*, ES256, ES384, EdDSA).
    #[serde(default)]
    pub public_key_pem: Option<String>,
}

/// Where API keys are read and which are valid.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    /// Request header that carries the key.
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter that carries the key.
    #[serde(default)]
    pub query: Option<String>,
    /// The valid keys.
    pub keys: Vec<ApiKeyEntry>,
}

/// One valid API key, stored as its SHA-256.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Names the key: the subject and `auth.key-id` of its requests.
    pub id: String,
    /// Lower- or upper-case hex SHA-256 of the key.
    pub sha256: String,
    /// Scopes the key grants.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// One access rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// Path prefix, starting with `/`.
    pub prefix: String,
    /// Methods; empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Who may pass.
    #[serde(default)]
    pub access: Access,
    /// Scopes the caller must all have.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims the caller's token must carry: name → accepted value or list
    /// of accepted values.
    #[serde(default)]
    pub claims: BTreeMap<String, Value>,
}

/// Who may pass a rule.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Callers with valid credentials (and the rule's scopes and claims).
    #[default]
    Authenticated,
}

fn default_realm() -> String {
    "tandem".to_owned()
}

fn default_subject_header() -> String {
    "x-auth-subject".to_owned()
}

fn default_cache_size() -> usize {
    1024
}

fn default_leeway() -> u64 {
    30
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}

fn yes() -> bool {
    true
}
