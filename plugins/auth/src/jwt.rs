//! Bearer tokens: picks the key by the token's `alg` and `kid`, verifies the
//! signature and the registered claims, and turns the claims into an
//! [`Identity`].

use std::collections::HashSet;

use jwt_simple::JWTError;
use jwt_simple::prelude::{Audiences, Duration, Token, VerificationOptions};
use serde_json::Value;

use crate::identity::{Identity, Method, scopes_of};
use crate::keys::{Claims, KeySet, NoKey};
use crate::settings::JwtSettings;

/// Longest token accepted, in bytes; longer ones are refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token checked and accepted.
pub struct Verified {
    /// Who it names.
    pub identity: Identity,
    /// Its `exp` in Unix seconds, if it has one.
    pub expires_at: Option<u64>,
}

/// Checks bearer tokens against the configured keys and rules.
pub struct JwtVerifier {
    keys: KeySet,
    issuers: Option<HashSet<String>>,
    audiences: Option<HashSet<String>>,
    leeway_secs: u64,
    require_exp: bool,
    subject_claim: String,
}

impl JwtVerifier {
    /// Builds the verifier from the `jwt` table; the error names the key.
    pub fn new(settings: &JwtSettings) -> Result<JwtVerifier, String> {
        let mut keys = KeySet::default();
        for (index, key) in settings.keys.iter().enumerate() {
            keys.add_inline(index, key)?;
        }
        if let Some(jwks) = &settings.jwks {
            keys.add_jwks(jwks)?;
        }
        if keys.is_empty() {
            return Err(
                "config key `jwt`: no signing key (add `jwt.keys` or `jwt.jwks`)".to_owned(),
            );
        }
        let set = |values: &[String]| {
            (!values.is_empty()).then(|| values.iter().cloned().collect::<HashSet<_>>())
        };
        Ok(JwtVerifier {
            keys,
            issuers: set(&settings.issuers),
            audiences: set(&settings.audiences),
            leeway_secs: settings.leeway_secs,
            require_exp: settings.require_exp,
            subject_claim: settings.subject_claim.clone(),
        })
    }

    /// The seconds of clock skew allowed.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway_secs
    }

    /// Verifies `token` at Unix time `now`, or says why it is refused (the
    /// reason goes into `error_description`, so it names no secret).
    pub fn verify(&self, token: &str, now: u64) -> Result<Verified, &'static str> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("token too long");
        }
        let metadata = Token::decode_metadata(token).map_err(|_| "malformed token")?;
        let candidates = self
            .keys
            .candidates(metadata.algorithm(), metadata.key_id())
            .map_err(|no_key| match no_key {
                NoKey::Algorithm => "algorithm not accepted",
                NoKey::KeyId => "unknown key id",
            })?;
        let mut reason = "invalid token";
        let mut claims = None;
        for key in candidates {
            match key.verify(token, self.options(now)) {
                Ok(verified) => {
                    claims = Some(verified);
                    break;
                }
                Err(error) => reason = describe(&error),
            }
        }
        let claims = claims.ok_or(reason)?;
        self.identity(claims)
    }

    fn options(&self, now: u64) -> VerificationOptions {
        VerificationOptions {
            allowed_issuers: self.issuers.clone(),
            allowed_audiences: self.audiences.clone(),
            time_tolerance: Some(Duration::from_secs(self.leeway_secs)),
            // The host's wall clock, read once per request.
            artificial_time: Some(Duration::from_secs(now)),
            max_token_length: Some(MAX_TOKEN_BYTES),
            ..VerificationOptions::default()
        }
    }

    fn identity(&self, claims: Claims) -> Result<Verified, &'static str> {
        let expires_at = claims.expires_at.map(|at| at.as_secs());
        if self.require_exp && expires_at.is_none() {
            return Err("token has no expiry");
        }
        let mut all = claims.custom;
        // Registered claims join the others, so rules and forwarded headers
        // can name any claim the same way.
        if let Some(subject) = claims.subject {
            all.insert("sub".into(), Value::String(subject));
        }
        if let Some(issuer) = claims.issuer {
            all.insert("iss".into(), Value::String(issuer));
        }
        match claims.audiences {
            Some(Audiences::AsString(audience)) => {
                all.insert("aud".into(), Value::String(audience));
            }
            Some(Audiences::AsSet(audiences)) => {
                let mut sorted: Vec<String> = audiences.into_iter().collect();
                sorted.sort();
                all.insert("aud".into(), sorted.into());
            }
            None => {}
        }
        if let Some(id) = claims.jwt_id {
            all.insert("jti".into(), Value::String(id));
        }
        let subject = match all.get(&self.subject_claim) {
            Some(Value::String(subject)) if !subject.is_empty() => subject.clone(),
            _ => return Err("token has no subject"),
        };
        Ok(Verified {
            identity: Identity {
                subject,
                method: Method::Jwt,
                key_id: None,
                scopes: scopes_of(&all),
                claims: all,
            },
            expires_at,
        })
    }
}

/// A short, public reason for a refusal.
fn describe(error: &jwt_simple::Error) -> &'static str {
    match error.downcast_ref::<JWTError>() {
        Some(JWTError::TokenHasExpired) => "token expired",
        Some(JWTError::TokenNotValidYet) => "token not valid yet",
        Some(JWTError::ClockDrift) => "token issued in the future",
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => {
            "issuer not accepted"
        }
        Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => {
            "audience not accepted"
        }
        Some(JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag) => {
            "invalid signature"
        }
        Some(JWTError::AlgorithmMismatch) => "algorithm not accepted",
        _ => "invalid token",
    }
}
