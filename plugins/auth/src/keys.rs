//! Verification keys: each bound to one algorithm, so a token can only be
//! checked with a key of its own algorithm (no `none`, no HMAC-with-an-RSA-key
//! confusion).

use jwt_simple::prelude::*;
use serde_json::{Map, Value};

use crate::settings::{Jwks, KeySettings};

/// The claims of a verified token, with every non-registered claim kept.
pub type Claims = JWTClaims<Map<String, Value>>;

/// The algorithms a key can be bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

const ALL: [Alg; 12] = [
    Alg::Hs256,
    Alg::Hs384,
    Alg::Hs512,
    Alg::Rs256,
    Alg::Rs384,
    Alg::Rs512,
    Alg::Ps256,
    Alg::Ps384,
    Alg::Ps512,
    Alg::Es256,
    Alg::Es384,
    Alg::EdDsa,
];

const RSA_FAMILY: [Alg; 6] = [
    Alg::Rs256,
    Alg::Rs384,
    Alg::Rs512,
    Alg::Ps256,
    Alg::Ps384,
    Alg::Ps512,
];

impl Alg {
    /// The JOSE name, e.g. `RS256`.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The algorithm with this JOSE name; `none` and unknown names have none.
    pub fn parse(name: &str) -> Option<Alg> {
        ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// RFC 7518 3.2: an HMAC key at least as long as the hash output.
    fn min_secret_bytes(self) -> usize {
        match self {
            Alg::Hs384 => 48,
            Alg::Hs512 => 64,
            _ => 32,
        }
    }

    fn is_hmac(self) -> bool {
        matches!(self, Alg::Hs256 | Alg::Hs384 | Alg::Hs512)
    }
}

/// A typed verifying key: the type fixes the algorithm.
enum Verifier {
    Hs256(HS256Key),
    Hs384(HS384Key),
    Hs512(HS512Key),
    Rs256(RS256PublicKey),
    Rs384(RS384PublicKey),
    Rs512(RS512PublicKey),
    Ps256(PS256PublicKey),
    Ps384(PS384PublicKey),
    Ps512(PS512PublicKey),
    Es256(ES256PublicKey),
    Es384(ES384PublicKey),
    EdDsa(Ed25519PublicKey),
}

/// How a public key is written down.
#[derive(Clone, Copy)]
enum Encoding {
    Pem,
    Jwk,
}

impl Verifier {
    fn hmac(alg: Alg, secret: &[u8]) -> Verifier {
        match alg {
            Alg::Hs384 => Verifier::Hs384(HS384Key::from_bytes(secret)),
            Alg::Hs512 => Verifier::Hs512(HS512Key::from_bytes(secret)),
            _ => Verifier::Hs256(HS256Key::from_bytes(secret)),
        }
    }

    /// A public key for `alg`, parsed from `text` written as `encoding`.
    fn public(alg: Alg, encoding: Encoding, text: &str) -> Result<Verifier, jwt_simple::Error> {
        // Every key type has both parsers, but as inherent functions: there
        // is no trait to be generic over.
        macro_rules! parse {
            ($key:ty) => {
                match encoding {
                    Encoding::Pem => <$key>::from_pem(text)?,
                    Encoding::Jwk => <$key>::from_jwk(text)?,
                }
            };
        }
        Ok(match alg {
            Alg::Rs256 => Verifier::Rs256(parse!(RS256PublicKey)),
            Alg::Rs384 => Verifier::Rs384(parse!(RS384PublicKey)),
            Alg::Rs512 => Verifier::Rs512(parse!(RS512PublicKey)),
            Alg::Ps256 => Verifier::Ps256(parse!(PS256PublicKey)),
            Alg::Ps384 => Verifier::Ps384(parse!(PS384PublicKey)),
            Alg::Ps512 => Verifier::Ps512(parse!(PS512PublicKey)),
            Alg::Es256 => Verifier::Es256(parse!(ES256PublicKey)),
            Alg::Es384 => Verifier::Es384(parse!(ES384PublicKey)),
            Alg::EdDsa => Verifier::EdDsa(parse!(Ed25519PublicKey)),
            Alg::Hs256 | Alg::Hs384 | Alg::Hs512 => {
                return Err(jwt_simple::Error::msg(match encoding {
                    Encoding::Pem => "an HMAC key is a secret, not a PEM",
                    Encoding::Jwk => "HMAC keys are `oct` JWKs",
                }));
            }
        })
    }

    fn verify(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<Claims, jwt_simple::Error> {
        let options = Some(options);
        match self {
            Verifier::Hs256(key) => key.verify_token(token, options),
            Verifier::Hs384(key) => key.verify_token(token, options),
            Verifier::Hs512(key) => key.verify_token(token, options),
            Verifier::Rs256(key) => key.verify_token(token, options),
            Verifier::Rs384(key) => key.verify_token(token, options),
            Verifier::Rs512(key) => key.verify_token(token, options),
            Verifier::Ps256(key) => key.verify_token(token, options),
            Verifier::Ps384(key) => key.verify_token(token, options),
            Verifier::Ps512(key) => key.verify_token(token, options),
            Verifier::Es256(key) => key.verify_token(token, options),
            Verifier::Es384(key) => key.verify_token(token, options),
            Verifier::EdDsa(key) => key.verify_token(token, options),
        }
    }
}

/// One key bound to one algorithm.
pub struct Key {
    kid: Option<String>,
    alg: Alg,
    verifier: Verifier,
}

impl Key {
    /// Verifies the token's signature and registered claims with this key.
    pub fn verify(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<Claims, jwt_simple::Error> {
        self.verifier.verify(token, options)
    }
}

/// Every verification key of the plugin.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// Why no key can check a token.
#[derive(Debug, PartialEq, Eq)]
pub enum NoKey {
    /// The token's `alg` is `none`, unknown, or has no key.
    Algorithm,
    /// The token names a `kid` that no key of its algorithm has.
    KeyId,
}

impl KeySet {
    /// The keys written out in the config; the error names the key.
    pub fn add_inline(&mut self, index: usize, key: &KeySettings) -> Result<(), String> {
        let at = |message: String| format!("config key `jwt.keys[{index}]`: {message}");
        let alg = Alg::parse(&key.alg)
            .ok_or_else(|| at(format!("`alg` {:?} is not supported", key.alg)))?;
        let verifier = match (&key.secret, &key.secret_base64, &key.public_key_pem) {
            (Some(secret), None, None) if alg.is_hmac() => Verifier::hmac(alg, secret.as_bytes()),
            (None, Some(encoded), None) if alg.is_hmac() => {
                let secret = decode_base64(encoded)
                    .ok_or_else(|| at("`secret_base64` is not base64".to_owned()))?;
                Verifier::hmac(alg, &secret)
            }
            (None, None, Some(pem)) if !alg.is_hmac() => Verifier::public(alg, Encoding::Pem, pem)
                .map_err(|e| at(format!("`public_key_pem` is not a {} key: {e}", alg.name())))?,
            _ if alg.is_hmac() => {
                return Err(at(format!(
                    "{} needs exactly one of `secret` or `secret_base64`",
                    alg.name()
                )));
            }
            _ => {
                return Err(at(format!("{} needs `public_key_pem` only", alg.name())));
            }
        };
        if let Verifier::Hs256(_) | Verifier::Hs384(_) | Verifier::Hs512(_) = verifier {
            let len = key
                .secret
                .as_ref()
                .map(|s| s.len())
                .or_else(|| {
                    key.secret_base64
                        .as_deref()
                        .and_then(decode_base64)
                        .map(|s| s.len())
                })
                .unwrap_or(0);
            let min = alg.min_secret_bytes();
            if len < min {
                return Err(at(format!(
                    "an {} secret must be at least {min} bytes",
                    alg.name()
                )));
            }
        }
        self.keys.push(Key {
            kid: key.kid.clone(),
            alg,
            verifier,
        });
        Ok(())
    }

    /// Every usable key of a JWKS document. Keys for encryption (`use` other
    /// than `sig`) are skipped; a key that is malformed, or whose `alg` does
    /// not fit its type, is an error.
    pub fn add_jwks(&mut self, jwks: &Jwks) -> Result<usize, String> {
        let at = |message: String| format!("config key `jwt.jwks`: {message}");
        let document: Value = match jwks {
            Jwks::Text(text) => {
                serde_json::from_str(text).map_err(|e| at(format!("not JSON: {e}")))?
            }
            Jwks::Table(value) => value.clone(),
        };
        let keys = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| at("has no `keys` array".to_owned()))?;
        let before = self.keys.len();
        for (index, jwk) in keys.iter().enumerate() {
            let at = |message: String| at(format!("key {index}: {message}"));
            let field = |name: &str| jwk.get(name).and_then(Value::as_str);
            if field("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let kid = field("kid").map(str::to_owned);
            let kty = field("kty").ok_or_else(|| at("no `kty`".to_owned()))?;
            let algs: Vec<Alg> = match field("alg") {
                Some(name) => vec![
                    Alg::parse(name)
                        .ok_or_else(|| at(format!("`alg` {name:?} is not supported")))?,
                ],
                // Without `alg`, the key type decides the family.
                None => match (kty, field("crv")) {
                    ("RSA", _) => RSA_FAMILY.to_vec(),
                    ("EC", Some("P-256")) => vec![Alg::Es256],
                    ("EC", Some("P-384")) => vec![Alg::Es384],
                    ("OKP", Some("Ed25519")) => vec![Alg::EdDsa],
                    ("oct", _) => {
                        return Err(at("an `oct` key needs `alg` (HS256, HS384 or HS512)".into()));
                    }
                    (kty, crv) => {
                        return Err(at(format!("unsupported key type {kty:?} (curve {crv:?})")));
                    }
                },
            };
            let text = jwk.to_string();
            for alg in algs {
                let verifier = if kty == "oct" {
                    if !alg.is_hmac() {
                        return Err(at(format!("an `oct` key cannot be {}", alg.name())));
                    }
                    let secret = field("k")
                        .and_then(decode_base64)
                        .ok_or_else(|| at("`k` is missing or not base64url".to_owned()))?;
                    if secret.len() < alg.min_secret_bytes() {
                        return Err(at(format!(
                            "an {} secret must be at least {} bytes",
                            alg.name(),
                            alg.min_secret_bytes()
                        )));
                    }
                    Verifier::hmac(alg, &secret)
                } else {
                    Verifier::public(alg, Encoding::Jwk, &text)
                        .map_err(|e| at(format!("not a valid {} key: {e}", alg.name())))?
                };
                self.keys.push(Key {
                    kid: kid.clone(),
                    alg,
                    verifier,
                });
            }
        }
        Ok(self.keys.len() - before)
    }

    /// Whether there is no key at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys that may check a token with header `alg` and `kid`: only
    /// keys bound to that very algorithm, and with that `kid` if it has one.
    pub fn candidates(&self, alg: &str, kid: Option<&str>) -> Result<Vec<&Key>, NoKey> {
        let alg = Alg::parse(alg).ok_or(NoKey::Algorithm)?;
        let of_alg: Vec<&Key> = self.keys.iter().filter(|key| key.alg == alg).collect();
        if of_alg.is_empty() {
            return Err(NoKey::Algorithm);
        }
        match kid {
            None => Ok(of_alg),
            Some(kid) => {
                let named: Vec<&Key> = of_alg
                    .into_iter()
                    .filter(|key| key.kid.as_deref() == Some(kid))
                    .collect();
                if named.is_empty() {
                    Err(NoKey::KeyId)
                } else {
                    Ok(named)
                }
            }
        }
    }
}

/// Decodes base64 or base64url, padded or not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim().trim_end_matches('=');
    let normalized: String = trimmed
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    Base64UrlSafeNoPadding::decode_to_vec(normalized, None).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_only_serves_its_own_algorithm() {
        let mut keys = KeySet::default();
        keys.add_inline(
            0,
            &KeySettings {
                kid: Some("h".into()),
                alg: "HS256".into(),
                secret: Some("0123456789abcdef0123456789abcdef".into()),
                secret_base64: None,
                public_key_pem: None,
            },
        )
        .unwrap();
        assert_eq!(keys.candidates("HS256", None).unwrap().len(), 1);
        assert_eq!(keys.candidates("HS384", None).err(), Some(NoKey::Algorithm));
        assert_eq!(keys.candidates("none", None).err(), Some(NoKey::Algorithm));
        assert_eq!(keys.candidates("RS256", None).err(), Some(NoKey::Algorithm));
        assert_eq!(
            keys.candidates("HS256", Some("x")).err(),
            Some(NoKey::KeyId)
        );
    }

    #[test]
    fn short_hmac_secrets_and_wrong_material_are_refused() {
        let mut keys = KeySet::default();
        let short = KeySettings {
            kid: None,
            alg: "HS512".into(),
            secret: Some("short".into()),
            secret_base64: None,
            public_key_pem: None,
        };
        assert!(
            keys.add_inline(3, &short)
                .unwrap_err()
                .contains("jwt.keys[3]")
        );
        let pem_for_hmac = KeySettings {
            kid: None,
            alg: "HS256".into(),
            secret: None,
            secret_base64: None,
            public_key_pem: Some("x".into()),
        };
        assert!(keys.add_inline(0, &pem_for_hmac).is_err());
    }

    #[test]
    fn jwks_oct_keys_need_alg_and_enc_keys_are_skipped() {
        let mut keys = KeySet::default();
        let jwks = Jwks::Text(r#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#.into());
        assert!(keys.add_jwks(&jwks).unwrap_err().contains("needs `alg`"));
        let jwks = Jwks::Text(
            r#"{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},
                        {"kty":"oct","alg":"HS256","kid":"k","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}"#
                .into(),
        );
        assert_eq!(keys.add_jwks(&jwks).unwrap(), 1);
        assert!(keys.candidates("HS256", Some("k")).is_ok());
    }
}
