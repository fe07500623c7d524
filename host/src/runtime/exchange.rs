//! The request and response heads that plugins see through host-owned
//! resources, and the per-request property bag.
//!
//! While a hook runs, the head is moved into the plugin's store (a move, not
//! a copy) and moved back out afterwards, so every plugin in the chain works
//! on the same head without locks.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::bindings::EditError;

/// Marker for the `request` resource: there is one current request per store,
/// so the resource's representation carries no data.
pub struct RequestHandle;

/// Marker for the `response` resource, see [`RequestHandle`].
pub struct ResponseHandle;

/// Most headers a plugin may leave on one request or response.
pub const MAX_HEADERS: usize = 256;
/// Longest header name a plugin may set, in bytes.
pub const MAX_HEADER_NAME_BYTES: usize = 1024;
/// Longest header value a plugin may set, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 16 * 1024;
/// Most entries in one request's property bag.
pub const MAX_PROPERTIES: usize = 128;
/// Longest property key plus value, in bytes.
pub const MAX_PROPERTY_BYTES: usize = 8 * 1024;

/// The request as the chain sees it: boxed, because the head moves into
/// and out of a store at every hook call, through several layers of
/// futures, and a pointer moves for nothing where the fields (some 300
/// bytes) would be copied each time.
pub struct RequestHead(Box<RequestHeadFields>);

/// What [`RequestHead`] holds.
pub struct RequestHeadFields {
    /// Method, target, version and headers.
    pub parts: http::request::Parts,
    /// The peer address of the client connection.
    pub client_addr: SocketAddr,
    /// `http` or `https`, as the client reached Tandem.
    pub scheme: &'static str,
    /// Facts that plugins pass to each other for this request.
    pub properties: Properties,
}

impl RequestHead {
    /// A head with an empty property bag.
    pub fn new(parts: http::request::Parts, client_addr: SocketAddr, scheme: &'static str) -> Self {
        Self::from(RequestHeadFields {
            parts,
            client_addr,
            scheme,
            properties: Properties::default(),
        })
    }

    /// The fields, unboxed.
    pub fn into_fields(self) -> RequestHeadFields {
        *self.0
    }
}

impl From<RequestHeadFields> for RequestHead {
    fn from(fields: RequestHeadFields) -> Self {
        Self(Box::new(fields))
    }
}

impl std::ops::Deref for RequestHead {
    type Target = RequestHeadFields;

    fn deref(&self) -> &RequestHeadFields {
        &self.0
    }
}

impl std::ops::DerefMut for RequestHead {
    fn deref_mut(&mut self) -> &mut RequestHeadFields {
        &mut self.0
    }
}

/// The response head as the chain sees it.
pub struct ResponseHead {
    /// Status, version and headers.
    pub parts: http::response::Parts,
}

/// The per-request property bag: a few small string pairs, so a vector beats
/// a hash map.
#[derive(Default, Clone, Debug)]
pub struct Properties(Vec<(String, String)>);

impl Properties {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key`, within the bag's limits.
    pub fn set(&mut self, key: String, value: String) -> Result<(), EditError> {
        if key.len() + value.len() > MAX_PROPERTY_BYTES {
            return Err(EditError::LimitExceeded);
        }
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
            return Ok(());
        }
        if self.0.len() >= MAX_PROPERTIES {
            return Err(EditError::LimitExceeded);
        }
        self.0.push((key, value));
        Ok(())
    }

    /// All entries, in the order they were first set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The first value of `name`, as text (invalid UTF-8 is replaced).
pub fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Every value of `name`, as text.
pub fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// The distinct header names, in lower case.
pub fn header_names(headers: &HeaderMap) -> Vec<String> {
    headers.keys().map(|k| k.as_str().to_owned()).collect()
}

/// Validates a header a plugin wants to write.
pub fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), EditError> {
    if name.len() > MAX_HEADER_NAME_BYTES {
        return Err(EditError::LimitExceeded);
    }
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| EditError::InvalidName)?;
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(EditError::LimitExceeded);
    }
    let value = HeaderValue::from_str(value).map_err(|_| EditError::InvalidValue)?;
    Ok((name, value))
}

/// Sets or appends a header a plugin asked for, within the count limit.
pub fn write_header(
    headers: &mut HeaderMap,
    name: &str,
    value: &str,
    append: bool,
) -> Result<(), EditError> {
    let (name, value) = parse_header(name, value)?;
    let grows = append || !headers.contains_key(&name);
    if grows && headers.len() >= MAX_HEADERS {
        return Err(EditError::LimitExceeded);
    }
    if append {
        headers.append(name, value);
    } else {
        headers.insert(name, value);
    }
    Ok(())
}

/// Removes every value of a header; invalid names are simply absent.
pub fn remove_header(headers: &mut HeaderMap, name: &str) {
    if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
        headers.remove(name);
    }
}

/// `code` as the status of a final response, if it is one: 200 to 599.
/// RFC 9110 section 15 calls codes outside 100 to 599 invalid, and a 1xx
/// is not final: hyper would send it as if it were, with no response after.
pub fn final_status(code: u16) -> Option<http::StatusCode> {
    (200..=599)
        .contains(&code)
        .then(|| http::StatusCode::from_u16(code).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_statuses_rfc_9110_defines_are_final_statuses() {
        for code in [200, 204, 304, 404, 599] {
            assert_eq!(final_status(code).map(|s| s.as_u16()), Some(code));
        }
        for code in [0, 99, 100, 101, 199, 600, 999, 1000] {
            assert_eq!(final_status(code), None, "{code}");
        }
    }
}
