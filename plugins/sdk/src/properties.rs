//! Well-known keys of the per-request property bag, so that plugins which
//! pass facts to each other agree on the names.
//!
//! The bag starts empty for every request: clients cannot set properties,
//! so a property is only as trustworthy as the plugin that set it.
//!
//! | key            | set by | value |
//! |----------------|--------|-------|
//! | `auth.subject` | auth   | the verified subject (token subject or API key id) |
//! | `auth.method`  | auth   | `jwt` or `api-key` |
//! | `auth.key-id`  | auth   | the id of the API key used (API keys only) |
//! | `auth.scopes`  | auth   | granted scopes, space-separated |

/// The verified subject: a token's subject claim, or an API key's id.
pub const AUTH_SUBJECT: &str = "auth.subject";
/// How the caller authenticated: `jwt` or `api-key`.
pub const AUTH_METHOD: &str = "auth.method";
/// The id of the API key the caller used (API keys only).
pub const AUTH_KEY_ID: &str = "auth.key-id";
/// The caller's granted scopes, space-separated.
pub const AUTH_SCOPES: &str = "auth.scopes";
