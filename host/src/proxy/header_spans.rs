//! Where each header of a head parsed by httparse sits in its buffer, so
//! that once the head is taken out of the buffer (as one shared `Bytes`)
//! the header values can share its bytes instead of being copied one by
//! one. The inbound request reader and the upstream response reader both
//! build their `HeaderMap`s this way, as hyper does.

use std::cell::RefCell;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Most header lines a response head may have (as many as hyper allows by
/// default).
pub const MAX_HEADERS: usize = 100;

/// Longest header name `http` takes (`HeaderName` refuses longer ones, so
/// the map path would refuse the head).
const MAX_NAME_BYTES: usize = (1 << 16) - 1;

/// Where one header's name and value are, as offsets into the head.
#[derive(Clone, Copy)]
struct HeaderSpan {
    name: (u32, u32),
    value: (u32, u32),
}

thread_local! {
    /// The spans of the head being taken apart on this thread. Kept rather
    /// than made per head: an array for the most headers a head may have
    /// would be zeroed and moved for every request and response.
    static SPANS: RefCell<Vec<HeaderSpan>> = const { RefCell::new(Vec::new()) };
}

/// The recorded positions of a head's headers, kept on this thread until
/// [`to_header_map`](Self::to_header_map) (which must follow before the
/// thread parses another head; nothing between the two may wait).
pub struct HeaderSpans(());

/// Which of the headers that frame a message, or say what becomes of its
/// connection, a head has: noted while the map is built, so that the
/// common head, which has few of them, is not looked up for each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramingSeen {
    /// `Connection`.
    pub connection: bool,
    /// `Transfer-Encoding`.
    pub transfer_encoding: bool,
    /// `Content-Length`.
    pub content_length: bool,
}

impl FramingSeen {
    fn note(&mut self, name: &HeaderName) {
        if name == http::header::CONNECTION {
            self.connection = true;
        } else if name == http::header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if name == http::header::CONTENT_LENGTH {
            self.content_length = true;
        }
    }
}

/// Where a head's header lines are, when they can go on as they are (see
/// [`HeaderSpans::plain_lines`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainLines {
    /// The lines, from the first name to the last line's CRLF.
    pub range: std::ops::Range<usize>,
    /// The one `Content-Length`.
    pub content_length: u64,
    /// Whether a `Date` is among them.
    pub has_date: bool,
}

/// Where a request head's header lines are, when they can go upstream as
/// they are (see [`HeaderSpans::plain_request_lines`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRequestLines {
    /// The lines, from the first name to the last line's CRLF.
    pub range: std::ops::Range<usize>,
    /// Where the value of the first `X-Request-ID` is, if there is one.
    pub request_id: Option<std::ops::Range<usize>>,
}

/// A length written as digits alone (at most 19 of them, which always fit).
fn plain_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |length, digit| length * 10 + u64::from(digit - b'0')),
    )
}

/// A header that `http` does not accept, though httparse did.
#[derive(Debug)]
pub enum BadHeader {
    /// The name, as sent.
    Name(String),
    /// The value of the named header.
    Value(HeaderName),
}

/// Offsets of `part`, a slice of the buffer that starts at `base`.
fn offsets(part: &[u8], base: usize) -> (u32, u32) {
    let start = part.as_ptr() as usize - base;
    // A head is at most a few hundred KiB into the buffer.
    (start as u32, (start + part.len()) as u32)
}

fn range((start, end): (u32, u32)) -> std::ops::Range<usize> {
    start as usize..end as usize
}

impl HeaderSpans {
    /// Records where `headers` (parsed from the buffer whose first byte is
    /// at `base`) are.
    pub fn record(headers: &[httparse::Header<'_>], base: *const u8) -> Self {
        let base = base as usize;
        SPANS.with_borrow_mut(|spans| {
            spans.clear();
            spans.extend(headers.iter().map(|header| HeaderSpan {
                name: offsets(header.name.as_bytes(), base),
                value: offsets(header.value, base),
            }));
        });
        Self(())
    }

    /// Walks the header lines in `head` (the buffer the spans were recorded
    /// in) while each is written as the proxy would write it (`name:
    /// value` and CRLF, one line after the other, the value not empty, the
    /// name no longer than `http` takes one),
    /// putting each name in lower case in place (the map path does too)
    /// and handing it to `visit` with its value and where the value is.
    /// Returns where the lines are, or `None` as soon as a line is out of
    /// that form or `visit` refuses it (names up to there are lowercased).
    fn walk_lines(
        &self,
        head: &mut [u8],
        mut visit: impl FnMut(&[u8], &[u8], std::ops::Range<usize>) -> Option<()>,
    ) -> Option<std::ops::Range<usize>> {
        SPANS.with_borrow(|spans| {
            let first = spans.first()?;
            let mut line_start = first.name.0 as usize;
            for span in spans {
                let name = range(span.name);
                let value = range(span.value);
                let in_form = name.start == line_start
                    && name.len() <= MAX_NAME_BYTES
                    && value.start == name.end + 2
                    && value.end > value.start
                    && head.get(name.end..value.start) == Some(b": ".as_slice())
                    && head.get(value.end..value.end + 2) == Some(b"\r\n".as_slice());
                if !in_form {
                    return None;
                }
                head[name.clone()].make_ascii_lowercase();
                line_start = value.end + 2;
                visit(&head[name], &head[value.clone()], value)?;
            }
            Some(first.name.0 as usize..line_start)
        })
    }

    /// The header lines of a response head, if they can go to the client
    /// as they are: in the form [`walk_lines`](Self::walk_lines) asks for,
    /// and none that the proxy must act on (a hop-by-hop header,
    /// `Transfer-Encoding`, or any `Content-Length` but one plain number,
    /// which must be there). `None` leaves the head for
    /// [`to_header_map`](Self::to_header_map).
    pub fn plain_lines(&self, head: &mut [u8]) -> Option<PlainLines> {
        let mut content_length = None;
        let mut has_date = false;
        let range = self.walk_lines(head, |name, value, _| {
            match name {
                b"content-length" if content_length.is_none() => {
                    content_length = Some(plain_length(value)?);
                }
                b"content-length" => return None,
                b"date" => has_date = true,
                name if super::headers::is_hop_by_hop_name(name) => return None,
                _ => {}
            }
            Some(())
        })?;
        Some(PlainLines {
            range,
            content_length: content_length?,
            has_date,
        })
    }

    /// The header lines of a request head, if they can go upstream as they
    /// are, followed only by the proxy's `X-Forwarded-For` and
    /// `X-Forwarded-Proto`: in the form [`walk_lines`](Self::walk_lines)
    /// asks for, one valid `Host` (the checks of
    /// `headers::request_head_problem`), and none that the proxy must act
    /// on (a hop-by-hop header, or an `X-Forwarded-For` or
    /// `X-Forwarded-Proto` of the client's). The reader has already handed
    /// heads with a body or an upgrade to hyper. `None` leaves the head for
    /// [`to_header_map`](Self::to_header_map), whose path answers a bad
    /// `Host` with its 400.
    pub fn plain_request_lines(&self, head: &mut [u8]) -> Option<PlainRequestLines> {
        let mut host = false;
        let mut request_id = None;
        let range = self.walk_lines(head, |name, value, value_range| {
            match name {
                b"host" if host || super::headers::host_problem(value).is_some() => return None,
                b"host" => host = true,
                b"x-request-id" => {
                    request_id.get_or_insert(value_range);
                }
                b"x-forwarded-for" | b"x-forwarded-proto" => return None,
                name if super::headers::is_hop_by_hop_name(name) => return None,
                _ => {}
            }
            Some(())
        })?;
        host.then_some(PlainRequestLines { range, request_id })
    }

    /// The headers, their values sharing `head` (the buffer's bytes from
    /// `base` on, taken out), in a map with room for `room` more; and which
    /// framing headers are among them.
    pub fn to_header_map(
        self,
        head: &Bytes,
        room: usize,
    ) -> Result<(HeaderMap, FramingSeen), BadHeader> {
        SPANS.with_borrow(|spans| {
            let mut headers = super::header_map_pool::take(spans.len() + room);
            let mut seen = FramingSeen::default();
            for span in spans {
                let name_bytes = &head[range(span.name)];
                let name = HeaderName::from_bytes(name_bytes).map_err(|_| {
                    BadHeader::Name(String::from_utf8_lossy(name_bytes).into_owned())
                })?;
                let value = HeaderValue::from_maybe_shared(head.slice(range(span.value)))
                    .map_err(|_| BadHeader::Value(name.clone()))?;
                seen.note(&name);
                headers.append(name, value);
            }
            Ok((headers, seen))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plain_lines` of the header section `raw`, and `raw` after it.
    fn plain(raw: &str) -> (Option<PlainLines>, String) {
        let mut raw = raw.as_bytes().to_vec();
        let mut slots = [httparse::EMPTY_HEADER; 8];
        let httparse::Status::Complete((_, parsed)) =
            httparse::parse_headers(&raw, &mut slots).unwrap()
        else {
            panic!("complete");
        };
        let spans = HeaderSpans::record(parsed, raw.as_ptr());
        let plain = spans.plain_lines(&mut raw);
        (plain, String::from_utf8(raw).unwrap())
    }

    #[test]
    fn lines_in_the_proxys_form_go_on_with_names_in_lower_case() {
        let (found, after) =
            plain("Content-Type: text/plain\r\nX-Mixed: Case Kept\r\nContent-Length: 12\r\n\r\n");
        let lines = "content-type: text/plain\r\nx-mixed: Case Kept\r\ncontent-length: 12\r\n";
        assert_eq!(
            found,
            Some(PlainLines {
                range: 0..lines.len(),
                content_length: 12,
                has_date: false,
            })
        );
        assert_eq!(&after[..lines.len()], lines);
        let (found, _) = plain("Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n");
        assert!(found.is_some_and(|plain| plain.has_date && plain.content_length == 0));
    }

    #[test]
    fn lines_the_proxy_must_read_or_rewrite_take_the_map_path() {
        for raw in [
            // Not in the proxy's form.
            "Content-Length: 2\r\nX:1\r\n\r\n",
            "Content-Length: 2\r\nX:  1\r\n\r\n",
            "Content-Length: 2\r\nX: 1 \r\n\r\n",
            "Content-Length: 2\nX: 1\n\n",
            "Content-Length: 2\r\nX: \r\n\r\n",
            // Hop-by-hop, or the framing the proxy decides.
            "Content-Length: 2\r\nConnection: close\r\n\r\n",
            "Content-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\n",
            "Content-Length: 2\r\nTrailer: x\r\n\r\n",
            "Transfer-Encoding: chunked\r\n\r\n",
            // No length, or not one plain length.
            "X: 1\r\n\r\n",
            "Content-Length: 2\r\nContent-Length: 2\r\n\r\n",
            "Content-Length: 2, 2\r\n\r\n",
            "Content-Length: +2\r\n\r\n",
            "Content-Length: 99999999999999999999\r\n\r\n",
        ] {
            assert_eq!(plain(raw).0, None, "{raw:?}");
        }
    }

    #[test]
    fn values_share_the_head_and_names_are_lowercased() {
        let raw = b"X: 1\r\nContent-Type: text/plain\r\nx: 2\r\nContent-Length: 0\r\n\r\n";
        let mut slots = [httparse::EMPTY_HEADER; 5];
        let httparse::Status::Complete((_, parsed)) =
            httparse::parse_headers(raw, &mut slots).unwrap()
        else {
            panic!("complete");
        };
        let spans = HeaderSpans::record(parsed, raw.as_ptr());
        let head = Bytes::from_static(raw);
        let (headers, seen) = spans.to_header_map(&head, 0).unwrap();
        let only_length = FramingSeen {
            content_length: true,
            ..FramingSeen::default()
        };
        assert_eq!(seen, only_length);
        assert_eq!(headers.get_all("x").iter().count(), 2);
        assert_eq!(headers["content-type"], "text/plain");
        let value = headers["content-type"].as_bytes();
        assert!(
            head.as_ptr_range().contains(&value.as_ptr()),
            "shared, not copied"
        );
    }
}
