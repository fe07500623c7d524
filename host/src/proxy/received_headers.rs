//! An upstream response's header lines carried to the client as they
//! arrived, for the common answer that nothing in the proxy reads or
//! changes: no plugin's `on-response` or `on-log` runs, nothing records
//! it, and it has none of the headers the proxy must act on (hop-by-hop
//! ones, `Transfer-Encoding`, a list or repeat of lengths). Building a
//! header map from such a head, only to write the same lines out again,
//! was the largest single cost of a proxied request.
//!
//! Lines are only kept in the form the map path would write them
//! (`name: value` and CRLF, names in lower case), so the two paths write
//! the same lines, with three differences that mean nothing to a client:
//! repeated names keep the upstream's order (the map groups them), and a
//! zero length stays where and as the upstream wrote it (`00` included;
//! the map path writes its own `0` after the other lines).

use bytes::Bytes;

/// Header lines of a response head, ready to be written out.
#[derive(Debug, Clone)]
pub struct ReceivedHeaders {
    /// The lines, each `name: value\r\n`, names in lower case.
    pub lines: Bytes,
    /// The one `Content-Length` among them.
    pub content_length: u64,
    /// Whether a `Date` is among them.
    pub has_date: bool,
}

/// A response body that may carry its head's header lines as received
/// (then its head's header map is empty, and the lines are the headers).
pub trait CarriesReceivedHeaders {
    /// The lines, once. A body that never carries them keeps this.
    fn take_received(&mut self) -> Option<Box<ReceivedHeaders>> {
        None
    }
}
