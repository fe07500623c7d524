//! The head of a request that Tandem's own HTTP/1.1 connection (see
//! `own_http1`) serves itself: parsed by httparse, the parser hyper uses, with
//! the same settings, and only when it is the common case: an HTTP/1.1
//! request without a body, an upgrade or an expectation. Anything else,
//! including every malformed head, is handed to hyper untouched (but for
//! header names put in lower case when the lines were asked for, which
//! hyper reads the same), so that hyper's checks and error answers apply
//! to it exactly as before.

use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};

use super::header_spans::HeaderSpans;
use super::headers::lists;
use super::request_lines::RequestLines;

/// Most header lines this reader takes; a head with more (when the
/// configured limit allows more) goes to hyper. Browsers send a dozen or
/// two.
const MAX_HEADERS: usize = 64;

/// Headers the proxy adds to a request before it goes upstream
/// (`X-Forwarded-For`, `X-Forwarded-Proto`), made room for at once rather
/// than by growing the map.
const ADDED_HEADERS: usize = 2;

/// What the front of the buffer holds.
// Returned once per request and matched at once: boxing the request would
// cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum InboundHead {
    /// A whole request head, now taken out of the buffer.
    Request {
        /// The request, without a body.
        request: Request<()>,
        /// False if the client asked to close after this request.
        keep_alive: bool,
        /// The header lines as received, when they were asked for and can
        /// go upstream so; the request's header map is empty then.
        lines: Option<Box<RequestLines>>,
    },
    /// The start of a head; more is needed.
    Partial,
    /// A head this reader does not serve (or not a valid one): hyper
    /// serves the connection from here, starting with the same bytes.
    HandOff,
}

/// Header names that take a request off the common path: a body
/// (`content-length`, `transfer-encoding`), an expectation, a protocol
/// switch, or trailers the client accepts.
const HANDED_OFF: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "expect",
    "upgrade",
    "te",
];

/// Takes a request head off the front of `buffer` if it holds a whole one
/// that this reader serves. `max_bytes` and `max_headers` are the limits
/// hyper enforces; a head over them is handed to hyper, which answers 431.
/// With `want_lines`, a head whose header lines can go upstream as they
/// came (see `RequestLines`) keeps them so, and gets no header map.
pub fn take(
    buffer: &mut BytesMut,
    max_bytes: usize,
    max_headers: usize,
    want_lines: bool,
) -> InboundHead {
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let slots = &mut slots[..max_headers.min(MAX_HEADERS)];
    let mut parsed = httparse::Request::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buffer,
        slots,
    ) {
        Ok(httparse::Status::Complete(length)) if length <= max_bytes => length,
        Ok(httparse::Status::Partial) if buffer.len() < max_bytes => return InboundHead::Partial,
        // Over a limit, too many headers, or malformed.
        _ => return InboundHead::HandOff,
    };
    if parsed.version != Some(1) {
        return InboundHead::HandOff;
    }
    let Some(method) = parsed
        .method
        .and_then(|method| Method::from_bytes(method.as_bytes()).ok())
        .filter(|method| *method != Method::CONNECT)
    else {
        return InboundHead::HandOff;
    };
    let mut keep_alive = true;
    for header in parsed.headers.iter() {
        if HANDED_OFF
            .iter()
            .any(|name| header.name.eq_ignore_ascii_case(name))
        {
            return InboundHead::HandOff;
        }
        if header.name.eq_ignore_ascii_case("connection") && lists(header.value, "close") {
            keep_alive = false;
        }
    }
    let base = buffer.as_ptr();
    let spans = HeaderSpans::record(parsed.headers, base);
    let path = parsed.path.unwrap_or_default();
    let path_range = {
        let start = path.as_ptr() as usize - base as usize;
        start..start + path.len()
    };
    // Only an origin-form target: an absolute one puts its authority in
    // Host.
    let plain = (want_lines && path.starts_with('/'))
        .then(|| spans.plain_request_lines(&mut buffer[..length]))
        .flatten();
    let head = buffer.split_to(length).freeze();
    let (headers, lines) = match plain {
        Some(plain) => {
            let request_id = match plain.request_id {
                Some(value) => HeaderValue::from_maybe_shared(head.slice(value))
                    .ok()
                    .map(Some),
                None => Some(None),
            };
            // Boxed: it rides along with the request, in futures that are
            // moved whole.
            let lines = request_id.map(|request_id| {
                Box::new(RequestLines {
                    lines: head.slice(plain.range),
                    request_id,
                })
            });
            (lines.as_ref().map(|_| HeaderMap::new()), lines)
        }
        None => (
            spans
                .to_header_map(&head, ADDED_HEADERS)
                .ok()
                .map(|(headers, _)| headers),
            None,
        ),
    };
    let built = Uri::from_maybe_shared(head.slice(path_range))
        .ok()
        .zip(headers);
    let Some((uri, headers)) = built else {
        // Rare: httparse took what `http` refuses. Put the head back for
        // hyper, which refuses it with a 400 of its own.
        let mut restored = BytesMut::with_capacity(head.len() + buffer.len());
        restored.extend_from_slice(&head);
        restored.extend_from_slice(buffer);
        *buffer = restored;
        return InboundHead::HandOff;
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    InboundHead::Request {
        request,
        keep_alive,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_from(raw: &[u8]) -> (InboundHead, BytesMut) {
        let mut buffer = BytesMut::from(raw);
        let head = take(&mut buffer, 8192, 100, false);
        (head, buffer)
    }

    #[test]
    fn a_plain_get_is_taken_and_what_follows_stays() {
        let (head, rest) = take_from(
            b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next HTTP/1.1\r\n",
        );
        let InboundHead::Request {
            request,
            keep_alive,
            lines: None,
        } = head
        else {
            panic!("{head:?}");
        };
        assert!(keep_alive);
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/a?b=1");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["host"], "x");
        assert_eq!(request.headers().get_all("x-two").iter().count(), 2);
        assert_eq!(&rest[..], b"GET /next HTTP/1.1\r\n");
    }

    /// The lines of `raw` when they are asked for, if it keeps them.
    fn lines_of(raw: &[u8]) -> Option<Box<RequestLines>> {
        let mut buffer = BytesMut::from(raw);
        match take(&mut buffer, 8192, 100, true) {
            InboundHead::Request { request, lines, .. } => {
                if lines.is_some() {
                    assert!(request.headers().is_empty(), "no map beside the lines");
                }
                lines
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_lines_are_kept_when_asked_for_with_names_in_lower_case() {
        let lines = lines_of(
            b"GET /a?b=1 HTTP/1.1\r\nHost: app:80\r\nX-Request-ID: r-1\r\nAccept: */*\r\n\r\n",
        )
        .expect("kept");
        assert_eq!(
            &lines.lines[..],
            b"host: app:80\r\nx-request-id: r-1\r\naccept: */*\r\n"
        );
        assert_eq!(lines.request_id.unwrap(), "r-1");
        let without_id = lines_of(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").expect("kept");
        assert!(without_id.request_id.is_none());
    }

    /// Heads the proxy must read or rewrite keep the map, so that its
    /// checks and rewrites apply as before.
    #[test]
    fn heads_the_proxy_reads_or_rewrites_build_the_map() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Authorization: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a \r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n",
        ];
        for raw in cases {
            assert!(lines_of(raw).is_none(), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn connection_close_is_noticed_among_other_tokens() {
        let (head, _) = take_from(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n");
        assert!(matches!(
            head,
            InboundHead::Request {
                keep_alive: false,
                ..
            }
        ));
    }

    #[test]
    fn a_head_in_pieces_is_partial_until_whole() {
        let mut buffer = BytesMut::from(&b"GET / HTTP/1.1\r\nHo"[..]);
        assert!(matches!(
            take(&mut buffer, 8192, 100, false),
            InboundHead::Partial
        ));
        assert_eq!(buffer.len(), 18, "nothing taken");
        buffer.extend_from_slice(b"st: x\r\n\r\n");
        assert!(matches!(
            take(&mut buffer, 8192, 100, false),
            InboundHead::Request { .. }
        ));
        assert!(buffer.is_empty());
    }

    /// Everything hyper must see, malformed heads first among them, is
    /// handed over with not a byte taken.
    #[test]
    fn uncommon_and_malformed_heads_go_to_hyper_untouched() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n",
            b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"G@T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            // httparse takes this target, `http` does not: the lines were
            // walked (and their names lowered) before that was known.
            b"GET /<x> HTTP/1.1\r\nHost: x\r\nX-Name: Value\r\n\r\n",
        ];
        for want_lines in [false, true] {
            for raw in cases {
                let mut rest = BytesMut::from(*raw);
                let head = take(&mut rest, 8192, 100, want_lines);
                assert!(
                    matches!(head, InboundHead::HandOff),
                    "{:?}: {head:?}",
                    String::from_utf8_lossy(raw)
                );
                if want_lines {
                    assert!(rest.eq_ignore_ascii_case(raw), "untouched but for case");
                } else {
                    assert_eq!(&rest[..], *raw, "untouched");
                }
            }
        }
    }

    /// `http` takes names of at most 64 KiB; the lines path must not pass
    /// on what the map path refuses.
    #[test]
    fn a_name_longer_than_http_takes_goes_to_hyper_with_or_without_lines() {
        let name = "x".repeat(70_000);
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{name}: v\r\n\r\n");
        for want_lines in [false, true] {
            let head = take(
                &mut BytesMut::from(raw.as_bytes()),
                1 << 20,
                100,
                want_lines,
            );
            assert!(matches!(head, InboundHead::HandOff), "{want_lines}");
        }
    }

    #[test]
    fn heads_over_the_limits_go_to_hyper() {
        let mut long = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\nX: "[..]);
        long.extend_from_slice(&[b'a'; 100]);
        let whole = [&long[..], b"\r\n\r\n"].concat();
        // Whole but over the limit, and unfinished at the limit.
        assert!(matches!(
            take(&mut BytesMut::from(&whole[..]), 64, 100, false),
            InboundHead::HandOff
        ));
        assert!(matches!(
            take(&mut long, 64, 100, false),
            InboundHead::HandOff
        ));
        let three = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(matches!(
            take(&mut BytesMut::from(&three[..]), 8192, 2, false),
            InboundHead::HandOff
        ));
        assert!(matches!(
            take(&mut BytesMut::from(&three[..]), 8192, 3, false),
            InboundHead::Request { .. }
        ));
    }
}
