//! Keeping secrets out of records: header values, query parameters and
//! application metadata.

use serde_json::Value;

/// What a redacted value is replaced by.
pub const REDACTED: &str = "[REDACTED]";

/// The query with the values of the listed parameters (lower case,
/// compared case-insensitively) replaced by `[REDACTED]`.
pub fn query(query: &str, secret_params: &[String]) -> String {
    query
        .split('&')
        .map(|pair| {
            let (key, value) = match pair.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (pair, None),
            };
            let secret = secret_params.iter().any(|p| p.eq_ignore_ascii_case(key));
            match (secret, value) {
                (true, Some(_)) => format!("{key}={REDACTED}"),
                _ => pair.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether a metadata key contains one of the (lower-case) secret words.
fn secret_key(key: &str, words: &[String]) -> bool {
    let key = key.to_ascii_lowercase();
    words.iter().any(|word| key.contains(word.as_str()))
}

/// Replaces, at any depth, the values of object keys that contain one of
/// the secret words. Returns how many values were redacted.
pub fn metadata(value: &mut Value, words: &[String]) -> usize {
    match value {
        Value::Object(map) => {
            let mut redacted = 0;
            for (key, value) in map.iter_mut() {
                if secret_key(key, words) {
                    *value = Value::from(REDACTED);
                    redacted += 1;
                } else {
                    redacted += metadata(value, words);
                }
            }
            redacted
        }
        Value::Array(items) => items.iter_mut().map(|v| metadata(v, words)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn query_values_of_secret_params_are_hidden() {
        let secret = words(&["token", "api_key"]);
        assert_eq!(
            query("a=1&Token=s3cret&flag&api_key=k", &secret),
            "a=1&Token=[REDACTED]&flag&api_key=[REDACTED]"
        );
        assert_eq!(query("a=1", &secret), "a=1");
    }

    #[test]
    fn metadata_is_redacted_at_any_depth() {
        let mut value = json!({
            "user": "alice",
            "Password": "hunter2",
            "nested": {"accessToken": "t", "ok": 1},
            "list": [{"client_secret": "s"}, 3]
        });
        let n = metadata(&mut value, &words(&["password", "token", "secret"]));
        assert_eq!(n, 3);
        assert_eq!(
            value,
            json!({
                "user": "alice",
                "Password": REDACTED,
                "nested": {"accessToken": REDACTED, "ok": 1},
                "list": [{"client_secret": REDACTED}, 3]
            })
        );
    }
}
