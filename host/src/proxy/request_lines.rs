//! A request's header lines carried upstream as the client sent them, for
//! the common request that nothing in the proxy reads or changes: no
//! plugin is loaded, nothing records it, and it has none of the headers
//! the proxy must act on (see `HeaderSpans::plain_request_lines`). The
//! proxy only adds its `X-Forwarded-For` and `X-Forwarded-Proto` after
//! them. Building a header map from such a head, looking the same few
//! names up in it, and writing it out again cost more than anything else
//! on the request's way in.
//!
//! Lines are only kept in the form the map path writes them (`name: value`
//! and CRLF, names in lower case), so the two paths write the same head,
//! with one difference that means nothing to an application: repeated
//! names keep the client's order (the map groups them).

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};

use super::header_spans::{HeaderSpans, MAX_HEADERS};

/// Header lines of a request head that Tandem's own reader took, ready to
/// go upstream. The request's header map is empty beside them.
#[derive(Debug, Clone)]
pub struct RequestLines {
    /// The lines, each `name: value\r\n`, names in lower case, one valid
    /// `Host` among them.
    pub lines: Bytes,
    /// The first `X-Request-ID`, which the proxy's own error answers
    /// repeat.
    pub request_id: Option<HeaderValue>,
}

/// What goes upstream in place of the request's header map: its lines as
/// received, then the proxy's own two.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingLines<'a> {
    /// The client's lines.
    pub lines: &'a [u8],
    /// The `X-Forwarded-For` value: the client's address.
    pub forwarded_for: &'a HeaderValue,
    /// The `X-Forwarded-Proto` value.
    pub scheme: &'static str,
}

impl RequestLines {
    /// The lines as a header map, for a request that something came to
    /// read after its head was taken (a plugin loaded meanwhile, say).
    /// `None` if a line does not make a header, which the reader's checks
    /// rule out.
    pub fn to_header_map(&self) -> Option<HeaderMap> {
        // Parsed again as the reader parsed them, with the blank line that
        // ends a header section after them.
        let mut section = BytesMut::with_capacity(self.lines.len() + 2);
        section.extend_from_slice(&self.lines);
        section.extend_from_slice(b"\r\n");
        let section = section.freeze();
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Ok(httparse::Status::Complete((_, parsed))) =
            httparse::parse_headers(&section, &mut slots)
        else {
            return None;
        };
        let spans = HeaderSpans::record(parsed, section.as_ptr());
        spans
            .to_header_map(&section, 0)
            .ok()
            .map(|(headers, _)| headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_the_map_the_map_path_builds() {
        let lines = RequestLines {
            lines: Bytes::from_static(
                b"host: app:8080\r\nx-two: 1\r\naccept: */*\r\nx-two: 2\r\nx-empty-ish: a b\r\n",
            ),
            request_id: None,
        };
        let map = lines.to_header_map().unwrap();
        assert_eq!(map.len(), 5);
        assert_eq!(map["host"], "app:8080");
        assert_eq!(map["accept"], "*/*");
        assert_eq!(map["x-empty-ish"], "a b");
        let twos: Vec<_> = map.get_all("x-two").iter().collect();
        assert_eq!(twos, ["1", "2"]);
    }

    #[test]
    fn a_line_that_makes_no_header_is_refused() {
        for bad in [&b"no colon\r\n"[..], b"host: x", b"bad name: x\r\n"] {
            let lines = RequestLines {
                lines: Bytes::copy_from_slice(bad),
                request_id: None,
            };
            assert!(lines.to_header_map().is_none(), "{bad:?}");
        }
    }
}
