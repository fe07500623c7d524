//! HTTP/1.1 as spoken to the upstream: the request head written out, the
//! response head parsed (with `httparse`, hyper's own parser) and the
//! framing of both bodies.
//!
//! The upstream leg is the proxy's narrowest: one method of framing out
//! (what the inbound server already checked), a response from the
//! application beside it. Doing it here rather than through hyper's
//! client lets a request, its upstream connection and its response run in
//! the request's own task: no connection task, no channel to it and back,
//! no read of an idle socket after every response.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use super::header_spans::{BadHeader, HeaderSpans, MAX_HEADERS, PlainLines};
use super::headers::lists;
use super::received_headers::ReceivedHeaders;
use super::request_lines::OutgoingLines;
use super::response_encoder::can_have_content_length;

/// Longest response head, and longest trailer section, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest chunk-size line (size and extensions), in bytes.
const MAX_CHUNK_LINE_BYTES: usize = 4096;

/// What is wrong with what the upstream sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The head is not HTTP/1.x.
    #[error("the application sent a malformed response head: {0}")]
    MalformedHead(String),
    /// The head did not end within [`MAX_HEAD_BYTES`].
    #[error("the application's response head is over {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// A transfer coding other than `chunked`.
    #[error("the application sent a transfer coding other than chunked")]
    UnsupportedCoding,
    /// `Content-Length` is not a number, or two of them differ.
    #[error("the application sent an invalid Content-Length")]
    BadContentLength,
    /// The chunked body does not follow the chunked coding.
    #[error("the application sent a malformed chunked body: {0}")]
    MalformedChunk(&'static str),
}

/// How a body's end is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// There is none.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked coding.
    Chunked,
    /// Everything until the connection closes (responses only).
    UntilClose,
}

/// Writes a request head: request line in origin form, then the headers.
/// A bodiless POST, PUT or PATCH without framing headers gets
/// `content-length: 0`, as RFC 9110 asks of a sender.
///
/// Returns the body's framing as the headers (set by the proxy) declare
/// it, noted while they are written rather than looked up again.
pub fn encode_request_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    out: &mut BytesMut,
) -> Framing {
    let size = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>();
    put_request_line(method, target, size, out);
    let mut chunked = false;
    let mut length = None;
    for (name, value) in headers {
        if name == TRANSFER_ENCODING {
            chunked = true;
        } else if name == CONTENT_LENGTH && length.is_none() {
            length = Some(value);
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !chunked && length.is_none() {
        end_bodiless_head(method, out);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    if chunked {
        return Framing::Chunked;
    }
    match length
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
    {
        Some(0) | None => Framing::Empty,
        Some(length) => Framing::Length(length),
    }
}

/// Writes the request line, with room reserved for `header_bytes` more.
fn put_request_line(method: &Method, target: &str, header_bytes: usize, out: &mut BytesMut) {
    out.reserve(method.as_str().len() + target.len() + header_bytes + 32);
    out.extend_from_slice(method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// Ends the head of a request without framing headers: a bodiless POST,
/// PUT or PATCH says its length is zero, as RFC 9110 asks of a sender.
fn end_bodiless_head(method: &Method, out: &mut BytesMut) {
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a request head whose header lines go as the client sent them
/// (see `RequestLines`), then the proxy's `X-Forwarded-For` and
/// `X-Forwarded-Proto`: what [`encode_request_head`] writes for the same
/// request from its header map. Such a request has no body.
pub fn encode_request_lines(
    method: &Method,
    target: &str,
    outgoing: OutgoingLines<'_>,
    out: &mut BytesMut,
) -> Framing {
    let forwarded_for = outgoing.forwarded_for.as_bytes();
    put_request_line(
        method,
        target,
        outgoing.lines.len() + forwarded_for.len() + outgoing.scheme.len() + 40,
        out,
    );
    out.extend_from_slice(outgoing.lines);
    out.extend_from_slice(b"x-forwarded-for: ");
    out.extend_from_slice(forwarded_for);
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(outgoing.scheme.as_bytes());
    out.extend_from_slice(b"\r\n");
    end_bodiless_head(method, out);
    Framing::Empty
}

/// Writes one data chunk of a chunked request body.
pub fn encode_chunk(data: &[u8], out: &mut BytesMut) {
    out.reserve(data.len() + 20);
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Writes the end of a chunked request body, with its trailers.
pub fn encode_last_chunk(trailers: Option<&HeaderMap>, out: &mut BytesMut) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head and what it says about the body and the
/// connection.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status, version and headers.
    pub parts: http::response::Parts,
    /// How the body ends.
    pub framing: Framing,
    /// Whether the connection may take another request after this
    /// response (its body read to the end).
    pub keep_alive: bool,
    /// The header lines as they came, when they were kept so (then
    /// `parts.headers` is empty).
    pub received: Option<Box<ReceivedHeaders>>,
}

/// Parses a response head from the front of `buffer`, taking it out, or
/// returns `None` if the head is not all there yet. `method` is the
/// request's: the answer to a HEAD has no body whatever it declares.
/// With `keep_received`, a head whose header lines can go to the client as
/// they are (see [`HeaderSpans::plain_lines`]) keeps them so, and gets no
/// header map.
pub fn parse_response_head(
    buffer: &mut BytesMut,
    method: &Method,
    keep_received: bool,
) -> Result<Option<ResponseHead>, ResponseError> {
    // Left uninitialised: zeroing this many slots for every response
    // would cost more than parsing a short head.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buffer,
        &mut slots,
    );
    let length = match parsed {
        // A head that came whole in one read is held to the limit too.
        Ok(httparse::Status::Complete(length)) if length > MAX_HEAD_BYTES => {
            return Err(ResponseError::HeadTooLarge);
        }
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() > MAX_HEAD_BYTES => {
            return Err(ResponseError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ResponseError::MalformedHead(format!(
                "more than {MAX_HEADERS} headers"
            )));
        }
        Err(error) => return Err(ResponseError::MalformedHead(error.to_string())),
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .ok()
        .filter(|_| (100..=599).contains(&code))
        .ok_or_else(|| ResponseError::MalformedHead(format!("status {code}")))?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let spans = HeaderSpans::record(response.headers, buffer.as_ptr());
    let mut head = buffer.split_to(length);
    // Only answers with a body of a declared length: the framing rules for
    // the others (HEAD, 1xx, 204, 304) are the map path's to apply.
    let plain = (keep_received && *method != Method::HEAD && can_have_content_length(status))
        .then(|| spans.plain_lines(&mut head))
        .flatten();
    if let Some(plain) = plain {
        // Cut to the lines before it is frozen: no count of owners to
        // change, as slicing the frozen head would.
        head.truncate(plain.range.end);
        head.advance(plain.range.start);
        return Ok(Some(received_head(head.freeze(), &plain, status, version)));
    }
    let head = head.freeze();
    let (mut headers, seen) = spans.to_header_map(&head, 0).map_err(|bad| {
        ResponseError::MalformedHead(match bad {
            BadHeader::Name(name) => format!("header name {name:?}"),
            BadHeader::Value(name) => format!("the value of header {name}"),
        })
    })?;
    let mut keep_alive = match version {
        Version::HTTP_10 => seen.connection && has_token(&headers, CONNECTION, "keep-alive"),
        _ => !(seen.connection && has_token(&headers, CONNECTION, "close")),
    };
    let bodiless = *method == Method::HEAD || !can_have_content_length(status);
    // Checked on every answer that declares one, with or without a body:
    // the client frames the answer to its GET by the same header it sees
    // on the answer to a HEAD.
    let chunked = seen.transfer_encoding;
    let declared = if chunked || !seen.content_length {
        None
    } else {
        content_length(&headers)?
    };
    if let Some(Declared {
        length,
        repeated: true,
    }) = declared
    {
        // `5, 5` or two equal headers go on as one plain length.
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    let declared = declared.map(|declared| declared.length);
    let framing = if bodiless {
        Framing::Empty
    } else if chunked {
        // A Content-Length beside it is ignored and must not travel on;
        // the two together, or Transfer-Encoding in HTTP/1.0, are a sign
        // that sender and receiver may disagree on where the message ends,
        // so the connection is not used again (RFC 9112, 6.1 and 6.3).
        if headers.remove(CONTENT_LENGTH).is_some() || version == Version::HTTP_10 {
            keep_alive = false;
        }
        // Any other coding would reach the client undone and unlabelled
        // (Transfer-Encoding is hop-by-hop), so it is refused, as nginx
        // refuses it.
        if !only_chunked(&headers) {
            return Err(ResponseError::UnsupportedCoding);
        }
        Framing::Chunked
    } else if let Some(length) = declared {
        match length {
            0 => Framing::Empty,
            length => Framing::Length(length),
        }
    } else {
        Framing::UntilClose
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    // The client gets the proxy's own version (an HTTP/1.0 upstream must
    // not turn the client's keep-alive connection into a closing one).
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    Ok(Some(ResponseHead {
        parts,
        framing,
        keep_alive,
        received: None,
    }))
}

/// The head of a response whose header `lines` (as `plain` describes
/// them) go on as they came. They have one plain `Content-Length` and
/// nothing that concerns the connection, so an HTTP/1.1 upstream keeps it
/// open and an HTTP/1.0 one closes it.
fn received_head(
    lines: Bytes,
    plain: &PlainLines,
    status: StatusCode,
    version: Version,
) -> ResponseHead {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = Version::HTTP_11;
    ResponseHead {
        parts,
        framing: match plain.content_length {
            0 => Framing::Empty,
            length => Framing::Length(length),
        },
        keep_alive: version == Version::HTTP_11,
        // Boxed: the response that carries it is moved several times on
        // its way to the client, and a pointer is smaller to move.
        received: Some(Box::new(ReceivedHeaders {
            lines,
            content_length: plain.content_length,
            has_date: plain.has_date,
        })),
    }
}

/// True if a comma-separated header `name` lists `token` (any case).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|value| lists(value.as_bytes(), token))
}

/// True if `chunked` is the one transfer coding.
fn only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty());
    codings
        .next()
        .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// A `Content-Length` as declared: the length, and whether it was said
/// more than once (`5, 5`, or two headers that agree).
struct Declared {
    length: u64,
    repeated: bool,
}

/// The response's `Content-Length`, if it has one. Every value must be
/// digits, and all of them the same length.
fn content_length(headers: &HeaderMap) -> Result<Option<Declared>, ResponseError> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let mut second = values.next();
    // The common case, one plain number, without splitting lists.
    let digits = first.as_bytes();
    if second.is_none() && !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
        let length = first
            .to_str()
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or(ResponseError::BadContentLength)?;
        return Ok(Some(Declared {
            length,
            repeated: false,
        }));
    }
    let mut agreed = None;
    let mut items = 0;
    for value in std::iter::once(first).chain(second.take()).chain(values) {
        let text = value
            .to_str()
            .map_err(|_| ResponseError::BadContentLength)?;
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ResponseError::BadContentLength);
            }
            let length: u64 = item.parse().map_err(|_| ResponseError::BadContentLength)?;
            if agreed.is_some_and(|seen| seen != length) {
                return Err(ResponseError::BadContentLength);
            }
            agreed = Some(length);
            items += 1;
        }
    }
    let length = agreed.ok_or(ResponseError::BadContentLength)?;
    Ok(Some(Declared {
        length,
        repeated: items > 1,
    }))
}

/// What a body decoder found in the buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The body ended, with these trailers (chunked only).
    End(Option<HeaderMap>),
    /// More bytes are needed from the connection.
    NeedMore,
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data, with this much left.
    Data(u64),
    /// At the line end after a chunk's data.
    DataEnd,
    /// In the trailer section.
    Trailers,
}

/// Takes a response body out of the connection's read buffer as it
/// arrives, by its framing.
#[derive(Debug)]
pub struct BodyDecoder {
    framing: Framing,
    /// Bytes left for [`Framing::Length`].
    remaining: u64,
    chunk: Chunk,
    /// How far the trailer section has been looked through.
    trailers_scanned: usize,
    ended: bool,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let remaining = match framing {
            Framing::Length(length) => length,
            _ => 0,
        };
        Self {
            framing,
            remaining,
            chunk: Chunk::Size,
            trailers_scanned: 0,
            ended: framing == Framing::Empty,
        }
    }

    /// True once the whole body has been taken.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Bytes still to come, if that is known.
    pub fn remaining(&self) -> Option<u64> {
        match self.framing {
            Framing::Empty => Some(0),
            Framing::Length(_) => Some(self.remaining),
            Framing::Chunked | Framing::UntilClose => None,
        }
    }

    /// True if the body ends when the connection closes.
    pub fn ends_at_close(&self) -> bool {
        self.framing == Framing::UntilClose
    }

    /// Takes what it can of the body from the front of `buffer`.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Decoded, ResponseError> {
        if self.ended {
            return Ok(Decoded::End(None));
        }
        match self.framing {
            Framing::Empty => Ok(Decoded::End(None)),
            Framing::UntilClose if buffer.is_empty() => Ok(Decoded::NeedMore),
            Framing::UntilClose => Ok(Decoded::Data(buffer.split().freeze())),
            Framing::Length(_) if buffer.is_empty() => Ok(Decoded::NeedMore),
            Framing::Length(_) => {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                self.remaining -= take as u64;
                self.ended = self.remaining == 0;
                Ok(Decoded::Data(buffer.split_to(take).freeze()))
            }
            Framing::Chunked => self.decode_chunked(buffer),
        }
    }

    fn decode_chunked(&mut self, buffer: &mut BytesMut) -> Result<Decoded, ResponseError> {
        loop {
            match self.chunk {
                Chunk::Size => {
                    let Some(line) = take_line(buffer, MAX_CHUNK_LINE_BYTES)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.chunk = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(_) if buffer.is_empty() => return Ok(Decoded::NeedMore),
                Chunk::Data(left) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(buffer.len());
                    let left = left - take as u64;
                    self.chunk = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                    return Ok(Decoded::Data(buffer.split_to(take).freeze()));
                }
                Chunk::DataEnd => {
                    let Some(line) = take_line(buffer, 2)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if !line.is_empty() {
                        return Err(ResponseError::MalformedChunk("data longer than its size"));
                    }
                    self.chunk = Chunk::Size;
                }
                Chunk::Trailers => return self.decode_trailers(buffer),
            }
        }
    }

    /// The trailer section is taken whole once its closing empty line is
    /// in, so that a partial one is never handed on.
    fn decode_trailers(&mut self, buffer: &mut BytesMut) -> Result<Decoded, ResponseError> {
        let Some(end) = trailer_section_end(buffer, &mut self.trailers_scanned)? else {
            return Ok(Decoded::NeedMore);
        };
        let section = buffer.split_to(end).freeze();
        let mut trailers = HeaderMap::new();
        for line in section.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(ResponseError::MalformedChunk(
                    "a trailer line without a colon",
                ));
            };
            let name = HeaderName::from_bytes(&line[..colon])
                .map_err(|_| ResponseError::MalformedChunk("a bad trailer name"))?;
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
                .map_err(|_| ResponseError::MalformedChunk("a bad trailer value"))?;
            if trailers.len() == MAX_HEADERS {
                return Err(ResponseError::MalformedChunk("too many trailers"));
            }
            trailers.append(name, value);
        }
        self.ended = true;
        Ok(Decoded::End((!trailers.is_empty()).then_some(trailers)))
    }
}

/// Takes one line (without its line end; a bare LF is accepted) off the
/// front of `buffer`, or `None` if it has not all arrived.
fn take_line(buffer: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, ResponseError> {
    let Some(newline) = buffer.iter().take(max + 1).position(|&b| b == b'\n') else {
        return if buffer.len() > max {
            Err(ResponseError::MalformedChunk("a chunk line too long"))
        } else {
            Ok(None)
        };
    };
    let mut line = buffer.split_to(newline + 1);
    line.truncate(newline);
    if line.last() == Some(&b'\r') {
        line.truncate(newline - 1);
    }
    Ok(Some(line))
}

/// The size of a chunk-size line: hex digits, then nothing, whitespace or
/// extensions (which are ignored).
fn chunk_size(line: &[u8]) -> Result<u64, ResponseError> {
    let not_hex = ResponseError::MalformedChunk("a chunk size that is not hex");
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || !matches!(line.get(digits), None | Some(b';' | b' ' | b'\t')) {
        return Err(not_hex);
    }
    // Leading zeros say nothing; more than 15 digits after them would be
    // more than any body.
    let zeros = line[..digits - 1]
        .iter()
        .take_while(|&&b| b == b'0')
        .count();
    let significant = &line[zeros..digits];
    if significant.len() > 15 {
        return Err(ResponseError::MalformedChunk("a chunk size too large"));
    }
    let text = std::str::from_utf8(significant).unwrap_or("0");
    u64::from_str_radix(text, 16).map_err(|_| ResponseError::MalformedChunk("a bad chunk size"))
}

/// Where the trailer section (ended by an empty line) ends in `buffer`,
/// counting that line. `scanned` is where the last call stopped (the start
/// of a line not yet complete), so bytes that trickle in are looked at
/// once.
fn trailer_section_end(
    buffer: &BytesMut,
    scanned: &mut usize,
) -> Result<Option<usize>, ResponseError> {
    let mut start = *scanned;
    let found = loop {
        let Some(offset) = buffer[start..].iter().position(|&b| b == b'\n') else {
            break None;
        };
        let line = &buffer[start..start + offset];
        start += offset + 1;
        if line.is_empty() || line == b"\r" {
            break Some(start);
        }
    };
    *scanned = start;
    if found.unwrap_or(buffer.len()) > MAX_HEAD_BYTES {
        return Err(ResponseError::MalformedChunk("a trailer section too long"));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, method: &Method) -> Result<Option<ResponseHead>, ResponseError> {
        parse_response_head(&mut BytesMut::from(text), method, false)
    }

    fn framing_of(text: &str) -> (Framing, bool) {
        let parsed = head(text, &Method::GET).expect("valid").expect("complete");
        (parsed.framing, parsed.keep_alive)
    }

    #[test]
    fn only_answers_with_a_declared_body_keep_their_lines_as_received() {
        let kept = |text: &str, method: &Method| {
            parse_response_head(&mut BytesMut::from(text), method, true)
                .unwrap()
                .unwrap()
                .received
                .is_some()
        };
        let plain = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        assert!(kept(plain, &Method::GET));
        assert!(!kept(plain, &Method::HEAD));
        for status in [
            "204 No Content",
            "304 Not Modified",
            "101 Switching Protocols",
        ] {
            let text = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            assert!(!kept(&text, &Method::GET), "{status}");
        }
        let kept_head = parse_response_head(&mut BytesMut::from(plain), &Method::GET, true)
            .unwrap()
            .unwrap();
        assert_eq!(kept_head.framing, Framing::Length(2));
        assert!(kept_head.keep_alive);
        let old = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n";
        let old_head = parse_response_head(&mut BytesMut::from(old), &Method::GET, true)
            .unwrap()
            .unwrap();
        assert!(old_head.received.is_some());
        assert!(!old_head.keep_alive, "an HTTP/1.0 upstream closes");
    }

    #[test]
    fn a_request_head_is_written_in_origin_form() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("app"));
        headers.append("x-many", HeaderValue::from_static("1"));
        headers.append("x-many", HeaderValue::from_static("2"));
        let mut out = BytesMut::new();
        let framing = encode_request_head(&Method::GET, "/a?b=c", &headers, &mut out);
        assert_eq!(
            &out[..],
            b"GET /a?b=c HTTP/1.1\r\nhost: app\r\nx-many: 1\r\nx-many: 2\r\n\r\n"
        );
        assert_eq!(framing, Framing::Empty);
    }

    #[test]
    fn a_bodiless_post_says_its_length_is_zero() {
        let mut out = BytesMut::new();
        let framing = encode_request_head(&Method::POST, "/", &HeaderMap::new(), &mut out);
        assert_eq!(&out[..], b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(framing, Framing::Empty);
    }

    #[test]
    fn lines_as_received_go_first_and_the_proxys_two_after_them() {
        let forwarded_for = HeaderValue::from_static("192.0.2.7");
        let outgoing = OutgoingLines {
            lines: b"host: app\r\naccept: */*\r\n",
            forwarded_for: &forwarded_for,
            scheme: "http",
        };
        for (method, ending) in [
            (Method::GET, "\r\n"),
            (Method::POST, "content-length: 0\r\n\r\n"),
        ] {
            let mut out = BytesMut::new();
            let framing = encode_request_lines(&method, "/a?b", outgoing, &mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!(
                    "{method} /a?b HTTP/1.1\r\nhost: app\r\naccept: */*\r\n\
                     x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n{ending}"
                )
            );
            assert_eq!(framing, Framing::Empty);
        }
    }

    #[test]
    fn the_request_framing_is_what_the_headers_declare() {
        let framing_of = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(*name, HeaderValue::from_static(value));
            }
            encode_request_head(&Method::PUT, "/", &headers, &mut BytesMut::new())
        };
        assert_eq!(framing_of(&[("content-length", "12")]), Framing::Length(12));
        assert_eq!(framing_of(&[("content-length", " 0 ")]), Framing::Empty);
        assert_eq!(
            framing_of(&[("transfer-encoding", "chunked")]),
            Framing::Chunked
        );
        assert_eq!(
            framing_of(&[("content-length", "5"), ("transfer-encoding", "chunked")]),
            Framing::Chunked
        );
        // The first of two lengths, as a lookup would have found it.
        assert_eq!(
            framing_of(&[("content-length", "7"), ("content-length", "9")]),
            Framing::Length(7)
        );
        assert_eq!(framing_of(&[("x-other", "1")]), Framing::Empty);
    }

    #[test]
    fn chunks_are_written_in_hex_with_trailers_at_the_end() {
        let mut out = BytesMut::new();
        encode_chunk(&[b'x'; 26], &mut out);
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", HeaderValue::from_static("9"));
        encode_last_chunk(Some(&trailers), &mut out);
        let expected = format!("1a\r\n{}\r\n0\r\nx-sum: 9\r\n\r\n", "x".repeat(26));
        assert_eq!(&out[..], expected.as_bytes());
    }

    #[test]
    fn a_partial_head_asks_for_more_and_a_whole_one_is_taken_out() {
        assert!(
            head("HTTP/1.1 200 OK\r\ncontent-le", &Method::GET)
                .expect("valid so far")
                .is_none()
        );
        let mut buffer =
            BytesMut::from("HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: b\r\n\r\nokNEXT");
        let parsed = parse_response_head(&mut buffer, &Method::GET, false)
            .expect("valid")
            .expect("complete");
        assert_eq!(parsed.parts.status, StatusCode::CREATED);
        assert_eq!(parsed.parts.headers["x-a"], "b");
        assert_eq!(parsed.framing, Framing::Length(2));
        assert!(parsed.keep_alive);
        assert_eq!(&buffer[..], b"okNEXT");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n"),
            (Framing::Chunked, true)
        );
        assert_eq!(
            framing_of(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n"
            ),
            (Framing::Chunked, false),
            "the two together are not trusted with another request"
        );
        for coded in ["gzip", "gzip, chunked", "chunked, gzip", "chunked, chunked"] {
            let text = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: {coded}\r\n\r\n");
            assert_eq!(
                head(&text, &Method::GET).expect_err(coded),
                ResponseError::UnsupportedCoding
            );
        }
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\n\r\n"),
            (Framing::UntilClose, false)
        );
        assert_eq!(
            framing_of("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n"),
            (Framing::Empty, true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n"),
            (Framing::Length(3), true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"),
            (Framing::Length(3), false)
        );
        assert_eq!(
            framing_of("HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\n"),
            (Framing::Length(3), false)
        );
        assert_eq!(
            framing_of("HTTP/1.0 200 OK\r\ncontent-length: 3\r\nconnection: keep-alive\r\n\r\n"),
            (Framing::Length(3), true)
        );
        let to_head = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n",
            &Method::HEAD,
        )
        .expect("valid")
        .expect("complete");
        assert_eq!(to_head.framing, Framing::Empty);
        // No body follows, but a length that contradicts itself is still
        // refused.
        let conflicting = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(
            head(conflicting, &Method::HEAD).expect_err("conflicting"),
            ResponseError::BadContentLength
        );
    }

    #[test]
    fn a_content_length_beside_transfer_encoding_does_not_travel_on() {
        let parsed = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            &Method::GET,
        )
        .expect("valid")
        .expect("complete");
        assert!(!parsed.parts.headers.contains_key(CONTENT_LENGTH));
    }

    #[test]
    fn bad_heads_and_lengths_are_errors() {
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\n",
        ] {
            assert_eq!(
                head(bad, &Method::GET).expect_err(bad),
                ResponseError::BadContentLength
            );
        }
        for status in ["2x0", "600", "099"] {
            let text = format!("HTTP/1.1 {status} X\r\n\r\n");
            assert!(
                matches!(
                    head(&text, &Method::GET),
                    Err(ResponseError::MalformedHead(_))
                ),
                "{status}"
            );
        }
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            head(&huge, &Method::GET).expect_err("too large"),
            ResponseError::HeadTooLarge
        );
        // Whole, in one read, it is just as large.
        let whole = format!("{huge}\r\n\r\n");
        assert_eq!(
            head(&whole, &Method::GET).expect_err("too large"),
            ResponseError::HeadTooLarge
        );
    }

    #[test]
    fn a_repeated_length_goes_on_as_one_and_the_version_is_the_proxys() {
        for text in [
            "HTTP/1.0 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
            "HTTP/1.0 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
        ] {
            let parsed = head(text, &Method::GET).expect("valid").expect("complete");
            let lengths: Vec<_> = parsed
                .parts
                .headers
                .get_all(CONTENT_LENGTH)
                .iter()
                .collect();
            assert_eq!(lengths, ["5"], "{text:?}");
            assert_eq!(parsed.parts.version, Version::HTTP_11);
            assert!(!parsed.keep_alive, "an HTTP/1.0 answer without keep-alive");
        }
    }

    /// Feeds `wire` to a chunked decoder `step` bytes at a time.
    fn decode_chunked_by(
        wire: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>), ResponseError> {
        let mut decoder = BodyDecoder::new(Framing::Chunked);
        let mut buffer = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buffer)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::End(trailers) => return Ok((body, trailers)),
                Decoded::NeedMore => {
                    assert!(
                        fed < wire.len(),
                        "the decoder wants more than the whole body"
                    );
                    let next = (fed + step).min(wire.len());
                    buffer.extend_from_slice(&wire[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_however_they_are_split() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-sum: 12\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let (body, trailers) = decode_chunked_by(wire, step).expect("valid");
            assert_eq!(body, b"hello, world", "step {step}");
            assert_eq!(trailers.expect("trailers")["x-sum"], "12");
        }
        let (body, trailers) = decode_chunked_by(b"3\nabc\n0\n\n", 1).expect("bare LFs");
        assert_eq!(body, b"abc");
        assert!(trailers.is_none());
    }

    #[test]
    fn leading_zeros_in_a_chunk_size_do_not_count() {
        let wire = b"00000000000000000000003\r\nabc\r\n0\r\n\r\n";
        let (body, _) = decode_chunked_by(wire, 5).expect("valid");
        assert_eq!(body, b"abc");
    }

    #[test]
    fn trailer_sections_are_bounded_in_size_and_count() {
        // Arriving whole, in one read, does not get past the size limit.
        let mut wire = b"0\r\n".to_vec();
        let mut index = 0;
        while wire.len() <= MAX_HEAD_BYTES + 16 {
            wire.extend_from_slice(format!("t{index}: v\r\n").as_bytes());
            index += 1;
        }
        wire.extend_from_slice(b"\r\n");
        assert_eq!(
            decode_chunked_by(&wire, wire.len()).expect_err("too long"),
            ResponseError::MalformedChunk("a trailer section too long")
        );
        let mut wire = b"0\r\n".to_vec();
        for index in 0..=MAX_HEADERS {
            wire.extend_from_slice(format!("t{index}: v\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        assert_eq!(
            decode_chunked_by(&wire, 7).expect_err("too many"),
            ResponseError::MalformedChunk("too many trailers")
        );
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"3\r\nabcd\r\n",
            b"ffffffffffffffff\r\n",
            b"3x\r\n",
        ] {
            assert!(
                matches!(
                    decode_chunked_by(bad, 64),
                    Err(ResponseError::MalformedChunk(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        let mut decoder = BodyDecoder::new(Framing::Length(3));
        let mut buffer = BytesMut::from("abcdef");
        assert_eq!(
            decoder.decode(&mut buffer).expect("valid"),
            Decoded::Data(Bytes::from_static(b"abc"))
        );
        assert!(decoder.is_ended());
        assert_eq!(&buffer[..], b"def");
    }
}
