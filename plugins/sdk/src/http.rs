//! The request, the response head and what a hook tells the host to do.

use std::fmt;

use crate::bindings::tandem::plugin::types as raw;

pub use raw::{Action, Exchange, Reply};

/// The header accessors, the same on [`Request`] and [`Response`] (the
/// host offers the same calls on both).
macro_rules! header_accessors {
    () => {
        /// The first value of a header, if present. Names are case-insensitive.
        pub fn header(&self, name: &str) -> Option<String> {
            self.0.header(name)
        }

        /// Every value of a header, in order.
        pub fn header_all(&self, name: &str) -> Vec<String> {
            self.0.header_all(name)
        }

        /// The names of all headers, each once, in lower case.
        pub fn header_names(&self) -> Vec<String> {
            self.0.header_names()
        }

        /// Sets a header, replacing every previous value.
        pub fn set_header(&self, name: &str, value: &str) -> Result<(), EditError> {
            self.0.set_header(name, value).map_err(EditError::from)
        }

        /// Adds a value to a header, keeping the previous ones.
        pub fn append_header(&self, name: &str, value: &str) -> Result<(), EditError> {
            self.0.append_header(name, value).map_err(EditError::from)
        }

        /// Removes every value of a header.
        pub fn remove_header(&self, name: &str) {
            self.0.remove_header(name)
        }
    };
}

/// The request being handled, owned by the host.
///
/// Every accessor asks the host for just what it returns, so reading one
/// header costs one header: read what you need, once.
///
/// Every hook of every plugin sees the same request, with the changes made
/// by earlier plugins. In `on-log` it is the request as sent upstream and
/// changes are ignored.
#[derive(Debug)]
pub struct Request<'a>(&'a raw::Request);

impl<'a> Request<'a> {
    pub(crate) fn from_raw(raw: &'a raw::Request) -> Request<'a> {
        Request(raw)
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> String {
        self.0.method()
    }

    /// The path without the query, e.g. `/orders/7`.
    pub fn path(&self) -> String {
        self.0.path()
    }

    /// The query string without the `?`, if there is one.
    pub fn query(&self) -> Option<String> {
        self.0.query()
    }

    /// Replaces path and query with an origin-form target such as
    /// `/v2/orders?id=7`; the upstream receives the new target.
    pub fn set_path_and_query(&self, target: &str) -> Result<(), EditError> {
        self.0.set_path_and_query(target).map_err(EditError::from)
    }

    /// The authority the client asked for (`:authority` or `Host`).
    pub fn authority(&self) -> Option<String> {
        self.0.authority()
    }

    /// `http` or `https`, as the client reached Tandem.
    pub fn scheme(&self) -> String {
        self.0.scheme()
    }

    /// The client's address as `ip:port`.
    pub fn client_addr(&self) -> String {
        self.0.client_addr()
    }

    header_accessors!();

    /// Reads a property from the per-request property bag, which all plugins
    /// of one request share (e.g. `auth.subject`).
    pub fn property(&self, key: &str) -> Option<String> {
        self.0.property(key)
    }

    /// Sets a property in the per-request property bag.
    pub fn set_property(&self, key: &str, value: &str) -> Result<(), EditError> {
        self.0.set_property(key, value).map_err(EditError::from)
    }
}

/// The response head: from the upstream (or a later plugin's reply) in
/// `on-response`, as sent to the client in `on-log`. The body streams past
/// and is not visible here.
#[derive(Debug)]
pub struct Response<'a>(&'a raw::Response);

impl<'a> Response<'a> {
    pub(crate) fn from_raw(raw: &'a raw::Response) -> Response<'a> {
        Response(raw)
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.0.status()
    }

    /// Replaces the status code (200 to 599, a final response's).
    pub fn set_status(&self, status: u16) -> Result<(), EditError> {
        self.0.set_status(status).map_err(EditError::from)
    }

    header_accessors!();
}

/// Why the host refused a header, property, status or target change.
///
/// Converts into `String`, so `?` works in a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditError {
    /// The header name is not a valid HTTP token.
    InvalidName,
    /// The value has bytes not allowed in a header value, the target is not
    /// a valid origin-form target, or the status is out of range.
    InvalidValue,
    /// A host limit (header count or size) would be exceeded.
    LimitExceeded,
}

impl From<raw::EditError> for EditError {
    fn from(error: raw::EditError) -> EditError {
        match error {
            raw::EditError::InvalidName => EditError::InvalidName,
            raw::EditError::InvalidValue => EditError::InvalidValue,
            raw::EditError::LimitExceeded => EditError::LimitExceeded,
        }
    }
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EditError::InvalidName => "invalid header name",
            EditError::InvalidValue => "invalid value",
            EditError::LimitExceeded => "host limit exceeded",
        })
    }
}

impl std::error::Error for EditError {}

impl From<EditError> for String {
    fn from(error: EditError) -> String {
        error.to_string()
    }
}

impl Action {
    /// Answers the client with `status` and `body` and no headers; see
    /// [`Reply`] to add headers.
    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Action {
        Action::Respond(Reply::new(status).body(body))
    }
}

impl From<Reply> for Action {
    fn from(reply: Reply) -> Action {
        Action::Respond(reply)
    }
}

impl Reply {
    /// A reply with `status` (200 to 599; the host refuses anything else), no headers and an empty body.
    ///
    /// ```
    /// # use tandem_sdk::{Action, Reply};
    /// let action: Action = Reply::new(403)
    ///     .header("content-type", "text/plain")
    ///     .body("forbidden\n")
    ///     .into();
    /// ```
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header; the same name may be added more than once.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }
}
