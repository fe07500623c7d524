//! The HTTP/1.1 response head that Tandem's own connection (see `own_http1`)
//! writes, and how the body after it is framed. The rules are hyper's
//! (`hyper::proto::h1::role::Server::encode`), so that a response reads
//! the same whichever of the two served its request: the framing headers
//! are decided by the body, `Connection: close` is added when the
//! connection closes after the response, and `Date` when it is missing.

use std::fmt::Write;

use bytes::{BufMut, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRAILER, TRANSFER_ENCODING};
use http::{HeaderValue, Method, StatusCode};

use super::date_header;
use super::headers::lists;
use super::received_headers::ReceivedHeaders;

/// What is known of the body's length before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// The body is already at its end.
    Empty,
    /// Exactly this many bytes.
    Known(u64),
    /// Not known.
    Unknown,
}

/// How the body goes after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body is written (HEAD, 204, 304, or an empty one).
    Nothing,
    /// Exactly this many bytes, as `Content-Length` says.
    Length(u64),
    /// Chunked coding.
    Chunked,
}

/// A head that was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedHead {
    /// How the body follows.
    pub framing: BodyFraming,
    /// Whether the connection closes after this response.
    pub close: bool,
}

/// Why no head was written (hyper refuses these too, closing the
/// connection without an answer).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// `Content-Length` with an unknown body is not a number, or two differ;
    /// or it comes after `Transfer-Encoding`.
    #[error("the response's framing headers conflict or are invalid")]
    Framing,
}

/// Whether a response to `method` with `status` can have a body.
fn can_have_body(method: &Method, status: StatusCode) -> bool {
    *method != Method::HEAD && can_have_content_length(status)
}

/// Whether a response with `status` may have a body, and so declare its
/// length (not 1xx, 204 or 304).
pub fn can_have_content_length(status: StatusCode) -> bool {
    !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
}

fn content_length_value(value: &HeaderValue) -> Option<u64> {
    let text = value.to_str().ok()?;
    // `5, 5` is one length said twice.
    let mut lengths = text.split(',').map(|item| item.trim().parse::<u64>());
    let first = lengths.next()?.ok()?;
    lengths.all(|length| length == Ok(first)).then_some(first)
}

/// Writes the head of `parts` into `out` for a request with `method`.
/// `keep_alive` is false when the connection closes after this response
/// (the client asked, or the proxy is draining); `parts` then gains
/// `Connection: close` if it lacks it.
pub fn encode(
    parts: &mut http::response::Parts,
    method: &Method,
    keep_alive: bool,
    body: BodyLength,
    out: &mut BytesMut,
) -> Result<EncodedHead, EncodeError> {
    let start = out.len();
    let mut status = parts.status;
    let mut body = body;
    let mut close = !keep_alive;
    if status.is_informational() {
        // A lone 1xx cannot be a whole answer; hyper sends a 500 instead.
        tracing::warn!(%status, "a response with a 1xx status is not supported");
        status = StatusCode::INTERNAL_SERVER_ERROR;
        parts.headers.clear();
        body = BodyLength::Empty;
        close = true;
    }
    if close
        && !parts
            .headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| lists(v.as_bytes(), "close"))
    {
        parts
            .headers
            .append(CONNECTION, HeaderValue::from_static("close"));
    }
    let chunkable = can_have_body(method, status);
    put_status_line(status, out);

    let mut framing = None;
    let mut length_written = None;
    let mut wrote_date = false;
    // Connection, Transfer-Encoding and Trailer values go on one line each.
    let mut connection = Vec::new();
    let mut codings = Vec::new();
    let mut trailer = Vec::new();
    for (name, value) in parts.headers.iter() {
        match *name {
            CONTENT_LENGTH => {
                if framing == Some(BodyFraming::Chunked) {
                    out.truncate(start);
                    return Err(EncodeError::Framing);
                }
                match body {
                    BodyLength::Known(length) => {
                        if length_written.is_none() {
                            put_header(out, b"content-length", value.as_bytes());
                            length_written = Some(length);
                            framing = Some(BodyFraming::Length(length));
                        }
                    }
                    BodyLength::Unknown => {
                        let Some(length) = content_length_value(value) else {
                            out.truncate(start);
                            return Err(EncodeError::Framing);
                        };
                        match length_written {
                            Some(previous) if previous != length => {
                                out.truncate(start);
                                return Err(EncodeError::Framing);
                            }
                            Some(_) => {}
                            None => {
                                put_header(out, b"content-length", value.as_bytes());
                                length_written = Some(length);
                                framing = Some(BodyFraming::Length(length));
                            }
                        }
                    }
                    // The answer to a HEAD says how long the body would be.
                    BodyLength::Empty if *method == Method::HEAD => {
                        put_header(out, b"content-length", value.as_bytes());
                        framing = Some(BodyFraming::Nothing);
                    }
                    BodyLength::Empty => {}
                }
            }
            TRANSFER_ENCODING => {
                if length_written.is_some() {
                    out.truncate(start);
                    return Err(EncodeError::Framing);
                }
                if chunkable {
                    codings.push(value.as_bytes());
                    framing = Some(BodyFraming::Chunked);
                }
            }
            CONNECTION => {
                if lists(value.as_bytes(), "close") {
                    close = true;
                }
                connection.push(value.as_bytes());
            }
            TRAILER => {
                if chunkable {
                    trailer.push(value.as_bytes());
                }
            }
            DATE => {
                wrote_date = true;
                put_header(out, b"date", value.as_bytes());
            }
            _ => put_header(out, name.as_str().as_bytes(), value.as_bytes()),
        }
    }
    if !codings.is_empty() {
        let chunked_last = codings
            .last()
            .and_then(|last| last.rsplit(|&b| b == b',').next())
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if !chunked_last {
            codings.push(b"chunked");
        }
        put_joined(out, b"transfer-encoding", &codings);
    }

    let framing = match framing {
        Some(framing) => framing,
        None => match body {
            BodyLength::Unknown if chunkable => {
                out.put_slice(b"transfer-encoding: chunked\r\n");
                BodyFraming::Chunked
            }
            BodyLength::Unknown => BodyFraming::Nothing,
            BodyLength::Empty | BodyLength::Known(0) => {
                if can_have_content_length(status) && *method != Method::HEAD {
                    out.put_slice(b"content-length: 0\r\n");
                }
                BodyFraming::Nothing
            }
            BodyLength::Known(length) => {
                if can_have_content_length(status) {
                    // Writing into a BytesMut cannot fail.
                    let _ = write!(out, "content-length: {length}\r\n");
                    BodyFraming::Length(length)
                } else {
                    BodyFraming::Nothing
                }
            }
        },
    };
    put_joined(out, b"connection", &connection);
    put_joined(out, b"trailer", &trailer);
    let framing = match framing {
        _ if !chunkable => BodyFraming::Nothing,
        BodyFraming::Length(0) => BodyFraming::Nothing,
        framing => framing,
    };
    if !wrote_date {
        put_date(out);
    }
    out.put_slice(b"\r\n");
    Ok(EncodedHead { framing, close })
}

/// Writes the head of a response whose header lines go on as they came
/// (see `ReceivedHeaders`): its status line and the lines, then
/// `Connection: close` and `Date` where [`encode`] would add them. The
/// lines frame the body by their `Content-Length`, which `body` must
/// match.
pub fn encode_received(
    status: StatusCode,
    received: &ReceivedHeaders,
    keep_alive: bool,
    body: BodyLength,
    out: &mut BytesMut,
) -> Result<EncodedHead, EncodeError> {
    let framing = match (body, received.content_length) {
        (BodyLength::Empty | BodyLength::Known(0), 0) => BodyFraming::Nothing,
        (BodyLength::Known(length), declared) if length == declared => BodyFraming::Length(length),
        _ => return Err(EncodeError::Framing),
    };
    put_status_line(status, out);
    out.put_slice(&received.lines);
    if !keep_alive {
        out.put_slice(b"connection: close\r\n");
    }
    if !received.has_date {
        put_date(out);
    }
    out.put_slice(b"\r\n");
    Ok(EncodedHead {
        framing,
        close: !keep_alive,
    })
}

fn put_status_line(status: StatusCode, out: &mut BytesMut) {
    if status == StatusCode::OK {
        out.put_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(status.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.put_slice(b"\r\n");
    }
}

fn put_date(out: &mut BytesMut) {
    out.put_slice(b"date: ");
    date_header::append_now(out);
    out.put_slice(b"\r\n");
}

fn put_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

fn put_joined(out: &mut BytesMut, name: &[u8], values: &[&[u8]]) {
    let Some((first, rest)) = values.split_first() else {
        return;
    };
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(first);
    for value in rest {
        out.put_slice(b", ");
        out.put_slice(value);
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
        let mut response = http::Response::new(());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        response.into_parts().0
    }

    /// The head written, without its date line, and how the body follows.
    fn written(
        status: u16,
        headers: &[(&str, &str)],
        method: Method,
        keep_alive: bool,
        body: BodyLength,
    ) -> (String, EncodedHead) {
        let mut out = BytesMut::new();
        let head = encode(
            &mut parts(status, headers),
            &method,
            keep_alive,
            body,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out.to_vec()).unwrap();
        let without_date = text
            .lines()
            .filter(|line| !line.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n");
        (without_date, head)
    }

    #[test]
    fn the_body_decides_the_framing_headers() {
        let (text, head) = written(200, &[("x", "1")], Method::GET, true, BodyLength::Known(2));
        assert_eq!(text, "HTTP/1.1 200 OK\nx: 1\ncontent-length: 2\n");
        assert_eq!(head.framing, BodyFraming::Length(2));
        assert!(!head.close);

        let (text, head) = written(404, &[], Method::GET, true, BodyLength::Unknown);
        assert_eq!(text, "HTTP/1.1 404 Not Found\ntransfer-encoding: chunked\n");
        assert_eq!(head.framing, BodyFraming::Chunked);

        let (text, head) = written(200, &[], Method::GET, true, BodyLength::Empty);
        assert_eq!(text, "HTTP/1.1 200 OK\ncontent-length: 0\n");
        assert_eq!(head.framing, BodyFraming::Nothing);

        let (text, head) = written(
            200,
            &[("content-length", "7")],
            Method::GET,
            true,
            BodyLength::Unknown,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\ncontent-length: 7\n");
        assert_eq!(head.framing, BodyFraming::Length(7));
    }

    #[test]
    fn head_204_and_304_carry_no_body() {
        let (text, head) = written(
            200,
            &[("content-length", "1234")],
            Method::HEAD,
            true,
            BodyLength::Empty,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\ncontent-length: 1234\n");
        assert_eq!(head.framing, BodyFraming::Nothing);

        let (text, head) = written(204, &[], Method::GET, true, BodyLength::Unknown);
        assert_eq!(text, "HTTP/1.1 204 No Content\n");
        assert_eq!(head.framing, BodyFraming::Nothing);

        let (text, head) = written(
            304,
            &[("etag", "\"a\"")],
            Method::GET,
            true,
            BodyLength::Known(5),
        );
        assert_eq!(text, "HTTP/1.1 304 Not Modified\netag: \"a\"\n");
        assert_eq!(head.framing, BodyFraming::Nothing);

        let (text, _) = written(200, &[], Method::HEAD, true, BodyLength::Empty);
        assert_eq!(text, "HTTP/1.1 200 OK\n", "no implicit length for HEAD");
    }

    #[test]
    fn a_closing_connection_says_so_once() {
        let (text, head) = written(200, &[], Method::GET, false, BodyLength::Empty);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\ncontent-length: 0\nconnection: close\n"
        );
        assert!(head.close);

        let (text, head) = written(
            200,
            &[("connection", "close")],
            Method::GET,
            false,
            BodyLength::Empty,
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\ncontent-length: 0\nconnection: close\n"
        );
        assert!(head.close);

        let (_, head) = written(
            200,
            &[("connection", "Close")],
            Method::GET,
            true,
            BodyLength::Empty,
        );
        assert!(head.close, "the response may close it too");
    }

    #[test]
    fn a_date_is_added_only_when_missing() {
        let mut out = BytesMut::new();
        encode(
            &mut parts(200, &[]),
            &Method::GET,
            true,
            BodyLength::Empty,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");

        let (text, _) = written(
            200,
            &[("date", "Tue, 01 Jan 2030 00:00:00 GMT")],
            Method::GET,
            true,
            BodyLength::Empty,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\ncontent-length: 0\n");
    }

    #[test]
    fn conflicting_lengths_write_nothing() {
        let mut out = BytesMut::from(&b"kept"[..]);
        let result = encode(
            &mut parts(200, &[("content-length", "1"), ("content-length", "2")]),
            &Method::GET,
            true,
            BodyLength::Unknown,
            &mut out,
        );
        assert_eq!(result, Err(EncodeError::Framing));
        assert_eq!(&out[..], b"kept");
    }

    #[test]
    fn a_lone_informational_status_becomes_a_500_that_closes() {
        let (text, head) = written(
            103,
            &[("link", "</a>")],
            Method::GET,
            true,
            BodyLength::Empty,
        );
        assert_eq!(
            text,
            "HTTP/1.1 500 Internal Server Error\ncontent-length: 0\nconnection: close\n"
        );
        assert!(head.close);
    }

    /// The head written for the upstream head `raw` whose body is `length`
    /// bytes long, by way of the header map and by way of the lines kept
    /// as they came; date lines dropped where the proxy adds them.
    fn both_ways(raw: &str, length: u64, keep_alive: bool) -> (String, String) {
        use super::super::upstream_codec::parse_response_head;
        let body = match length {
            0 => BodyLength::Empty,
            length => BodyLength::Known(length),
        };
        let parse = |keep_received| {
            parse_response_head(&mut BytesMut::from(raw), &Method::GET, keep_received)
                .unwrap()
                .unwrap()
        };
        let own_date = raw.to_ascii_lowercase().contains("\r\ndate: ");
        let text = |out: BytesMut| {
            let text = String::from_utf8(out.to_vec()).unwrap();
            text.split_inclusive("\r\n")
                .filter(|line| own_date || !line.starts_with("date: "))
                .collect::<String>()
        };

        let mut mapped = parse(false);
        assert!(mapped.received.is_none());
        let mut out = BytesMut::new();
        let by_map = encode(&mut mapped.parts, &Method::GET, keep_alive, body, &mut out).unwrap();
        let by_map_text = text(out);

        let kept = parse(true);
        assert!(kept.parts.headers.is_empty(), "no map is built");
        let received = kept.received.expect("kept as received");
        let mut out = BytesMut::new();
        let by_lines = encode_received(kept.parts.status, &received, keep_alive, body, &mut out);
        assert_eq!(by_lines, Ok(by_map));
        (by_map_text, text(out))
    }

    #[test]
    fn lines_kept_as_received_are_written_as_the_map_would_write_them() {
        for (raw, length) in [
            (
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Mixed: Case Kept\r\nContent-Length: 5\r\n\r\n",
                5,
            ),
            (
                "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n",
                2,
            ),
            // A zero length goes last either way only when it came last:
            // the map path writes its own after the other lines.
            (
                "HTTP/1.1 404 Not Found\r\nX: 1\r\nContent-Length: 0\r\n\r\n",
                0,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 3\r\nSet-Cookie: a=1\r\n\r\n",
                3,
            ),
        ] {
            for keep_alive in [true, false] {
                let (by_map, by_lines) = both_ways(raw, length, keep_alive);
                assert_eq!(by_lines, by_map, "{raw:?}, keep-alive {keep_alive}");
            }
        }
        let (_, by_lines) = both_ways(
            "HTTP/1.1 200 OK\r\nX-Mixed: Case Kept\r\nContent-Length: 1\r\n\r\n",
            1,
            false,
        );
        assert_eq!(
            by_lines,
            "HTTP/1.1 200 OK\r\nx-mixed: Case Kept\r\ncontent-length: 1\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn kept_lines_write_nothing_for_a_body_of_another_length() {
        let received = ReceivedHeaders {
            lines: bytes::Bytes::from_static(b"content-length: 5\r\n"),
            content_length: 5,
            has_date: true,
        };
        for body in [BodyLength::Known(4), BodyLength::Empty, BodyLength::Unknown] {
            let mut out = BytesMut::new();
            let written = encode_received(StatusCode::OK, &received, true, body, &mut out);
            assert_eq!(written, Err(EncodeError::Framing), "{body:?}");
        }
    }
}
