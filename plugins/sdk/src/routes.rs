//! Matching a request by path prefix and method, the way plugin rules
//! select the requests they apply to.

use std::fmt;

/// A path prefix and an optional set of methods.
///
/// Build it from a rule's config keys with [`RouteMatch::new`], which
/// checks them and names the key at fault, then test requests with
/// [`RouteMatch::matches`].
///
/// Matching is a plain string prefix on the path without the query: `/api`
/// also matches `/apiary`; write `/api/` to match only that subtree. Methods
/// compare case-sensitively after being upper-cased at build time, as HTTP
/// methods are case-sensitive and always sent in upper case in practice.
///
/// ```
/// use tandem_sdk::routes::RouteMatch;
///
/// let rule = RouteMatch::new("/orders/", &["get".to_owned()]).unwrap();
/// assert!(rule.matches("GET", "/orders/7"));
/// assert!(!rule.matches("POST", "/orders/7"));
/// assert!(!rule.matches("GET", "/users"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    prefix: String,
    methods: Vec<String>,
}

impl RouteMatch {
    /// A match on `prefix` (which must start with `/`) and `methods` (empty:
    /// any method). The error names the key (`prefix` or `methods`) and is
    /// meant to be prefixed with the rule's position by the caller.
    pub fn new(prefix: &str, methods: &[String]) -> Result<RouteMatch, String> {
        if !prefix.starts_with('/') {
            return Err(format!("`prefix`: `{prefix}` does not start with `/`"));
        }
        let mut upper = Vec::with_capacity(methods.len());
        for method in methods {
            let valid = !method.is_empty()
                && method
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                return Err(format!("`methods`: `{method}` is not an HTTP method"));
            }
            upper.push(method.to_ascii_uppercase());
        }
        Ok(RouteMatch {
            prefix: prefix.to_owned(),
            methods: upper,
        })
    }

    /// Whether a request with `method` and `path` matches.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        path.starts_with(&self.prefix)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }

    /// The path prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The methods, upper-cased; empty means any.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }
}

impl fmt::Display for RouteMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.methods.is_empty() {
            write!(f, "* {}", self.prefix)
        } else {
            write!(f, "{} {}", self.methods.join(","), self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_methods() {
        let any = RouteMatch::new("/", &[]).unwrap();
        assert!(any.matches("DELETE", "/x"));
        let rule = RouteMatch::new("/a/", &["GET".into(), "head".into()]).unwrap();
        assert!(rule.matches("HEAD", "/a/b"));
        assert!(!rule.matches("GET", "/a"));
        assert_eq!(rule.to_string(), "GET,HEAD /a/");
    }

    #[test]
    fn bad_input_names_the_key() {
        assert!(
            RouteMatch::new("a", &[])
                .unwrap_err()
                .starts_with("`prefix`")
        );
        assert!(
            RouteMatch::new("/", &["GE T".into()])
                .unwrap_err()
                .starts_with("`methods`")
        );
    }
}
