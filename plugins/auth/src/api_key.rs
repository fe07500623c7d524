//! API keys: read from a header or a query parameter, hashed with SHA-256
//! and compared in constant time with the configured hashes.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::identity::{Identity, Method};
use crate::settings::ApiKeySettings;

/// One valid key.
struct Entry {
    id: String,
    sha256: [u8; 32],
    scopes: Vec<String>,
}

/// Where keys are read and which are valid.
pub struct ApiKeys {
    header: Option<String>,
    query: Option<String>,
    entries: Vec<Entry>,
}

/// A key as the client sent it.
pub struct Presented {
    /// The key.
    pub key: String,
}

impl ApiKeys {
    /// Builds the key list from the `api_keys` table; the error names the key.
    pub fn new(settings: &ApiKeySettings) -> Result<ApiKeys, String> {
        let header = match (&settings.header, &settings.query) {
            (None, None) => Some("x-api-key".to_owned()),
            (header, _) => header.as_ref().map(|h| h.to_ascii_lowercase()),
        };
        if settings.keys.is_empty() {
            return Err("config key `api_keys.keys`: list at least one key".to_owned());
        }
        let mut entries = Vec::with_capacity(settings.keys.len());
        for (index, key) in settings.keys.iter().enumerate() {
            let at = |message: &str| format!("config key `api_keys.keys[{index}]`: {message}");
            if key.id.is_empty() {
                return Err(at("`id` is empty"));
            }
            if entries.iter().any(|e: &Entry| e.id == key.id) {
                return Err(at("`id` is used twice"));
            }
            let mut sha256 = [0u8; 32];
            hex::decode_to_slice(key.sha256.trim(), &mut sha256)
                .map_err(|_| at("`sha256` is not 64 hex digits"))?;
            entries.push(Entry {
                id: key.id.clone(),
                sha256,
                scopes: key.scopes.clone(),
            });
        }
        Ok(ApiKeys {
            header,
            query: settings.query.clone(),
            entries,
        })
    }

    /// The header that carries keys, if any.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// True if keys may come in the query string.
    pub fn takes_query(&self) -> bool {
        self.query.is_some()
    }

    /// True if `query` has the key parameter, even empty.
    pub fn in_query(&self, query: &str) -> bool {
        self.query
            .as_deref()
            .is_some_and(|name| form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == name))
    }

    /// The key in the header, else the one in the query string.
    pub fn presented(&self, header: Option<String>, query: Option<&str>) -> Option<Presented> {
        if let Some(key) = header.filter(|k| !k.is_empty()) {
            return Some(Presented { key });
        }
        let name = self.query.as_deref()?;
        form_urlencoded::parse(query?.as_bytes())
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| Presented {
                key: v.into_owned(),
            })
    }

    /// The identity of a valid key. Every configured hash is compared, each
    /// in constant time, so timing tells nothing about which bytes matched.
    pub fn check(&self, key: &str) -> Option<Identity> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            let equal: bool = digest.ct_eq(&entry.sha256).into();
            if equal && found.is_none() {
                found = Some(entry);
            }
        }
        found.map(|entry| Identity {
            subject: entry.id.clone(),
            method: Method::ApiKey,
            key_id: Some(entry.id.clone()),
            scopes: entry.scopes.clone(),
            claims: Default::default(),
        })
    }

    /// `query` without the API key parameter, each other pair byte for byte
    /// as the client sent it; `None` when nothing is left.
    pub fn strip_from_query(&self, query: &str) -> Option<String> {
        let name = self.query.as_deref()?;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let raw_name = pair.split('=').next().unwrap_or_default();
                let decoded = form_urlencoded::parse(raw_name.as_bytes())
                    .next()
                    .map(|(k, _)| k.into_owned())
                    .unwrap_or_default();
                decoded != name
            })
            .collect();
        let joined = kept.join("&");
        (!joined.is_empty()).then_some(joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ApiKeyEntry;

    fn keys() -> ApiKeys {
        ApiKeys::new(&ApiKeySettings {
            header: Some("X-Api-Key".into()),
            query: Some("api_key".into()),
            keys: vec![ApiKeyEntry {
                id: "ci".into(),
                // sha256("secret-1")
                sha256: hex::encode(Sha256::digest(b"secret-1")),
                scopes: vec!["read".into()],
            }],
        })
        .unwrap()
    }

    #[test]
    fn valid_and_invalid_keys() {
        let keys = keys();
        assert_eq!(keys.header(), Some("x-api-key"));
        let identity = keys.check("secret-1").unwrap();
        assert_eq!(identity.subject, "ci");
        assert_eq!(identity.key_id.as_deref(), Some("ci"));
        assert!(keys.check("secret-2").is_none());
        assert!(keys.check("").is_none());
    }

    #[test]
    fn query_keys_are_found_and_removed() {
        let keys = keys();
        let presented = keys.presented(None, Some("a=1&api_key=s%2D1&b=2")).unwrap();
        assert_eq!(presented.key, "s-1");
        assert_eq!(
            keys.strip_from_query("a=%20x&api_key=s&b=2").as_deref(),
            Some("a=%20x&b=2")
        );
        assert_eq!(keys.strip_from_query("api_key=s"), None);
        assert!(keys.in_query("a=1&api_key="));
        assert!(!keys.in_query("a=1&api_keys=x"));
        let header_first = keys.presented(Some("h".into()), Some("api_key=q")).unwrap();
        assert_eq!(header_first.key, "h");
    }

    #[test]
    fn bad_hashes_name_the_key() {
        let error = ApiKeys::new(&ApiKeySettings {
            header: None,
            query: None,
            keys: vec![ApiKeyEntry {
                id: "x".into(),
                sha256: "zz".into(),
                scopes: vec![],
            }],
        })
        .err()
        .unwrap();
        assert!(error.contains("api_keys.keys[0]"), "{error}");
    }
}
