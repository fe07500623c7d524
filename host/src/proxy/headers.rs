//! Header rules of a proxy: hop-by-hop headers stay on their hop, and the
//! upstream learns who the client was.

use std::net::SocketAddr;

use http::header::Entry;
use http::header::{
    CONNECTION, CONTENT_LENGTH, FORWARDED, HOST, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Version};

use super::errors::ProxyError;

/// Headers that describe one connection and never travel through a proxy
/// (RFC 9110 section 7.6.1, plus the obsolete ones still seen in the wild).
/// Names, not strings: a string is parsed into a name at every lookup.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("http2-settings"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers that stay even when `Connection` names them: a client that
/// lists `Host` there would have the upstream see another Host than the
/// plugins saw, and one that lists `X-Forwarded-For` would erase what the
/// proxies before this one recorded.
static NEVER_CONNECTION_SCOPED: [HeaderName; 5] = [
    HOST,
    CONTENT_LENGTH,
    FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
];

/// True if the comma-separated list `value` holds `token`, in any case.
pub fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The protocols a client asks to switch to, if this is an HTTP/1.1
/// upgrade request (`Connection: upgrade` with an `Upgrade` header). `h2c`
/// is taken out of the list, and a request that asks only for it goes as a
/// plain one: the HTTP/2 inside the tunnel would reach the upstream without
/// passing the plugins, and RFC 9113 has deprecated that upgrade anyway.
pub fn requested_upgrade(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let asks = headers
        .get_all(CONNECTION)
        .iter()
        .any(|value| lists(value.as_bytes(), "upgrade"));
    let protocols = headers.get(UPGRADE).filter(|_| asks)?;
    if !lists(protocols.as_bytes(), "h2c") {
        return Some(protocols.clone());
    }
    let others: Vec<&str> = protocols
        .to_str()
        .ok()?
        .split(',')
        .map(str::trim)
        .filter(|protocol| !protocol.is_empty() && !protocol.eq_ignore_ascii_case("h2c"))
        .collect();
    if others.is_empty() {
        return None;
    }
    HeaderValue::from_str(&others.join(", ")).ok()
}

/// True if a `101 Switching Protocols` whose headers are `response` agrees
/// with what the client asked for: an upgrade to `asked`, of which the
/// response's `Upgrade` names one.
pub fn switch_was_asked_for(asked: Option<&HeaderValue>, response: &HeaderMap) -> bool {
    let (Some(asked), Some(chosen)) = (asked, response.get(UPGRADE)) else {
        return false;
    };
    chosen
        .to_str()
        .is_ok_and(|chosen| lists(asked.as_bytes(), chosen.trim()))
}

/// True if `host` is a host and an optional port (RFC 3986 section 3.2.2):
/// a registered name or IPv4 address, or a bracketed IPv6 literal, then
/// `:` and up to five digits. Names are letters, digits and `-._~`; the
/// percent-encoding and punctuation RFC 3986 also allows are refused, as
/// no DNS name needs them and two hops may decode them differently.
/// Checked byte by byte: parsing an `Authority` copies the value.
fn is_host_and_port(host: &[u8]) -> bool {
    let (name_is_valid, rest) = match host.strip_prefix(b"[") {
        Some(literal) => {
            let Some(end) = literal.iter().position(|&byte| byte == b']') else {
                return false;
            };
            let address = &literal[..end];
            let valid = !address.is_empty()
                && address
                    .iter()
                    .all(|&byte| byte.is_ascii_hexdigit() || byte == b':' || byte == b'.');
            (valid, &literal[end + 1..])
        }
        None => {
            let end = host
                .iter()
                .position(|&byte| byte == b':')
                .unwrap_or(host.len());
            let valid = host[..end]
                .iter()
                .all(|&byte| byte.is_ascii_alphanumeric() || b"-._~".contains(&byte));
            (valid, &host[end..])
        }
    };
    name_is_valid
        && match rest {
            [] => true,
            [b':', port @ ..] => port.len() <= 5 && port.iter().all(u8::is_ascii_digit),
            _ => false,
        }
}

/// What is wrong with the value of a request's `Host`, if anything: user
/// information, or anything but a host and port.
pub fn host_problem(host: &[u8]) -> Option<&'static str> {
    if host.contains(&b'@') {
        return Some("user information in Host");
    }
    if !is_host_and_port(host) {
        return Some("Host is not a host and port");
    }
    None
}

/// What is wrong with a request head that parsed but must not be served,
/// if anything (RFC 9112 section 3.2, RFC 9110 section 4.2.4):
/// - `CONNECT`, which asks a proxy for a tunnel;
/// - an HTTP/1.1 request without `Host`, or more than one `Host` header,
///   which two hops may read differently;
/// - a `Host` that is not a host and port, or user information in `Host`
///   or in an absolute target;
/// - over HTTP/2, a `Host` that differs from `:authority`;
/// - a transfer coding other than `chunked` (RFC 9112 section 6.1: 501),
///   which the upstream would get de-chunked but still coded.
pub fn request_head_problem(parts: &http::request::Parts) -> Option<ProxyError> {
    if parts.method == http::Method::CONNECT {
        return Some(ProxyError::ConnectNotAllowed);
    }
    if parts
        .headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .any(|coding| {
            !coding
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked")
        })
    {
        return Some(ProxyError::TransferCodingNotImplemented);
    }
    let mut hosts = parts.headers.get_all(HOST).iter();
    let first_host = hosts.next();
    if first_host.is_none() && parts.version == Version::HTTP_11 {
        return Some(ProxyError::BadRequestHead("no Host header"));
    }
    if let Some(host) = first_host {
        if hosts.next().is_some() {
            return Some(ProxyError::BadRequestHead("more than one Host header"));
        }
        let bytes = host.as_bytes();
        if let Some(problem) = host_problem(bytes) {
            return Some(ProxyError::BadRequestHead(problem));
        }
        // Over HTTP/2 the authority travels as `:authority` (in the URI
        // here), and a Host beside it must name the same (RFC 9113
        // section 8.3.1).
        if parts.version == Version::HTTP_2
            && let Some(authority) = parts.uri.authority()
            && !authority.as_str().as_bytes().eq_ignore_ascii_case(bytes)
        {
            return Some(ProxyError::BadRequestHead("Host differs from :authority"));
        }
    }
    if let Some(authority) = parts.uri.authority() {
        if authority.as_str().contains('@') {
            return Some(ProxyError::BadRequestHead(
                "user information in the request target",
            ));
        }
        // A target that is only an authority (`GET app:80`) is CONNECT's
        // form (RFC 9112 section 3.2.3); taken as an absolute target it
        // would replace the client's Host.
        if parts.uri.scheme().is_none() {
            return Some(ProxyError::BadRequestHead(
                "an authority as the target of a request other than CONNECT",
            ));
        }
    }
    None
}

/// Makes the target's authority the `Host` header, if the target has one:
/// an absolute target over HTTP/1 (RFC 9112 section 3.2.2: it wins over a
/// Host header) or `:authority` over HTTP/2. Done before the chain runs,
/// so that plugins see the Host the upstream will see.
pub fn host_from_target(parts: &mut http::request::Parts) {
    if let Some(value) = parts
        .uri
        .authority()
        .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    {
        parts.headers.insert(HOST, value);
    }
}

/// How a message's body is framed, as it arrived: its `Content-Length`.
/// The host frames bodies, never a plugin: a plugin may read these headers,
/// but what it does to `Content-Length` or `Transfer-Encoding` is undone
/// once the chain has run, because a length that does not match the body
/// breaks the exchange and, on a kept-alive connection, the ones after it.
pub struct Framing(Option<HeaderValue>);

impl Framing {
    /// The framing of `headers` now.
    pub fn of(headers: &HeaderMap) -> Self {
        Self(headers.get(CONTENT_LENGTH).cloned())
    }

    /// Puts the framing back as it was. `Transfer-Encoding` goes either
    /// way: it is hop-by-hop, and the next hop's coding follows the body.
    pub fn restore(self, headers: &mut HeaderMap) {
        headers.remove(TRANSFER_ENCODING);
        match self.0 {
            Some(length) => {
                headers.insert(CONTENT_LENGTH, length);
            }
            None => {
                headers.remove(CONTENT_LENGTH);
            }
        }
    }
}

/// True for the names in [`HOP_BY_HOP`] and `Transfer-Encoding`. Matched
/// as text (a name is always lower case): one switch on the length and a
/// compare, where comparing with each of the ten names cost about ten
/// times as much on every header of every message.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    is_hop_by_hop_name(name.as_str().as_bytes())
}

/// [`is_hop_by_hop`] for a name in lower case, as bytes.
pub fn is_hop_by_hop_name(lower: &[u8]) -> bool {
    matches!(
        lower,
        b"connection"
            | b"http2-settings"
            | b"keep-alive"
            | b"proxy-connection"
            | b"proxy-authenticate"
            | b"proxy-authorization"
            | b"te"
            | b"trailer"
            | b"upgrade"
            | b"transfer-encoding"
    )
}

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them, and one pass over the names costs
    // less than a lookup for each of them.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !NEVER_CONNECTION_SCOPED.contains(name))
        .collect();
    for name in named {
        headers.remove(name);
    }
    // `TE: trailers` is end-to-end in practice (gRPC needs it).
    let keeps_trailers = headers
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(TRANSFER_ENCODING);
    if keeps_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// A client connection's address, with the `X-Forwarded-For` entry it
/// adds formatted once per connection rather than once per request.
pub struct ClientAddress {
    addr: SocketAddr,
    forwarded_for: HeaderValue,
}

impl ClientAddress {
    /// The client at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let forwarded_for = HeaderValue::try_from(addr.ip().to_string())
            .expect("an IP address is a valid header value");
        Self {
            addr,
            forwarded_for,
        }
    }

    /// The client's address and port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The entry this client adds to `X-Forwarded-For`: its address.
    pub fn forwarded_for(&self) -> &HeaderValue {
        &self.forwarded_for
    }
}

/// Prepares the headers of a request for the upstream: hop-by-hop removed
/// (an upgrade kept), `Host` kept or else set to `authority`, and
/// `X-Forwarded-For` / `X-Forwarded-Proto` set.
pub fn for_upstream(
    headers: &mut HeaderMap,
    authority: &http::uri::Authority,
    client: &ClientAddress,
    scheme: &'static str,
    upgrade: Option<HeaderValue>,
) {
    remove_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol);
    }
    // The handler put the target's authority into Host before the chain
    // ran; a plugin that removed Host gets it back (or the upstream's
    // name, when the target had none).
    if !headers.contains_key(HOST)
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(HOST, value);
    }
    let own = &client.forwarded_for;
    // One lookup, whether the client sent one or not (the name is hashed
    // byte by byte, as every name outside the standard set is).
    match headers.entry(X_FORWARDED_FOR.clone()) {
        // A previous value that is not text is replaced, not extended.
        Entry::Occupied(mut previous) => match previous.get().to_str() {
            Ok(text) => {
                let mut joined = Vec::with_capacity(text.len() + 2 + own.len());
                joined.extend_from_slice(text.as_bytes());
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(own.as_bytes());
                if let Ok(value) = HeaderValue::from_bytes(&joined) {
                    previous.insert(value);
                }
            }
            Err(_) => {
                previous.insert(own.clone());
            }
        },
        Entry::Vacant(slot) => {
            slot.insert(own.clone());
        }
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hop_by_hop_match_knows_every_listed_name_and_no_other() {
        for name in HOP_BY_HOP.iter().chain([&TRANSFER_ENCODING]) {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            HOST,
            CONTENT_LENGTH,
            HeaderName::from_static("x-connection"),
            HeaderName::from_static("tes"),
        ] {
            assert!(!is_hop_by_hop(&name), "{name}");
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        for_upstream(
            &mut headers,
            &http::uri::Authority::from_static("app"),
            &ClientAddress::new("10.0.0.1:5".parse().unwrap()),
            "http",
            None,
        );
        assert!(headers.get("x-secret").is_none());
        assert!(headers.get("keep-alive").is_none());
        assert!(headers.get(CONNECTION).is_none());
        assert_eq!(headers["x-kept"], "1");
        assert_eq!(headers[TE], "trailers");
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
    }

    #[test]
    fn a_lone_hop_by_hop_header_goes_and_end_to_end_ones_stay() {
        for name in [TE, TRANSFER_ENCODING, HeaderName::from_static("keep-alive")] {
            let mut headers = HeaderMap::new();
            headers.insert(&name, HeaderValue::from_static("x"));
            headers.insert("x-kept", HeaderValue::from_static("1"));
            remove_hop_by_hop(&mut headers);
            assert!(headers.get(&name).is_none(), "{name}");
            assert_eq!(headers.len(), 1, "{name}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("a"));
        headers.append("x-many", HeaderValue::from_static("1"));
        headers.append("x-many", HeaderValue::from_static("2"));
        let before = headers.clone();
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers, before);
    }

    /// The problem code for a raw HTTP/1 request head, parsed by `http`.
    fn problem_with(method: &str, target: &str, hosts: &[&str]) -> Option<&'static str> {
        let mut request = http::Request::builder().method(method).uri(target);
        for host in hosts {
            request = request.header(HOST, *host);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        request_head_problem(&parts).map(|error| error.code())
    }

    #[test]
    fn heads_that_hops_could_read_differently_are_refused() {
        assert_eq!(problem_with("GET", "/", &["app:8080"]), None);
        assert_eq!(problem_with("GET", "/", &[]), Some("bad_request_head"));
        let (http10, ()) = http::Request::builder()
            .version(Version::HTTP_10)
            .uri("/")
            .body(())
            .unwrap()
            .into_parts();
        assert!(
            request_head_problem(&http10).is_none(),
            "HTTP/1.0 may omit Host"
        );
        assert_eq!(problem_with("GET", "/", &[""]), None);
        assert_eq!(problem_with("GET", "/", &["[::1]:80"]), None);
        assert_eq!(problem_with("GET", "http://app/x", &["app"]), None);
        let bad_head = Some("bad_request_head");
        assert_eq!(problem_with("GET", "/", &["a", "b"]), bad_head);
        assert_eq!(problem_with("GET", "/", &["a", "a"]), bad_head);
        assert_eq!(problem_with("GET", "/", &["user:pw@app"]), bad_head);
        assert_eq!(problem_with("GET", "/", &["app/path"]), bad_head);
        assert_eq!(problem_with("GET", "/", &["app?q"]), bad_head);
        assert_eq!(problem_with("GET", "/", &["a b"]), bad_head);
        for host in [
            "a,b",
            "app:80:90",
            "app:x",
            "::1",
            "[::1",
            "a]b[",
            "%00",
            "app%2f",
            "[]",
            "app:123456",
        ] {
            assert_eq!(problem_with("GET", "/", &[host]), bad_head, "{host}");
        }
        for host in [
            "app",
            "app:",
            "10.0.0.1:8080",
            "[fe80::1]:443",
            "my-app.svc_1~x",
        ] {
            assert_eq!(problem_with("GET", "/", &[host]), None, "{host}");
        }
        assert_eq!(problem_with("GET", "http://user@app/x", &["app"]), bad_head);
        assert_eq!(problem_with("GET", "abc", &["app"]), bad_head);
        assert_eq!(problem_with("POST", "app:8080", &["app"]), bad_head);
        assert_eq!(problem_with("OPTIONS", "*", &["app"]), None);
        assert_eq!(problem_with("GET", "http://app:8080/x", &["app"]), None);
        assert_eq!(
            problem_with("CONNECT", "app:443", &["app:443"]),
            Some("connect_not_allowed")
        );
    }

    #[test]
    fn the_targets_authority_becomes_the_host() {
        let head = |target: &str, version: Version| {
            let request = http::Request::builder()
                .uri(target)
                .version(version)
                .header(HOST, "other")
                .body(())
                .unwrap();
            request.into_parts().0
        };
        let mut absolute = head("http://app:8080/x", Version::HTTP_11);
        host_from_target(&mut absolute);
        assert_eq!(absolute.headers[HOST], "app:8080");
        let mut origin = head("/x", Version::HTTP_11);
        host_from_target(&mut origin);
        assert_eq!(origin.headers[HOST], "other");
        let http2 = head("http://app/x", Version::HTTP_2);
        assert_eq!(
            request_head_problem(&http2).map(|error| error.code()),
            Some("bad_request_head")
        );
        // A plugin that removed Host: the authority comes back.
        let mut headers = HeaderMap::new();
        let authority = http::uri::Authority::from_static("app:8080");
        let client = ClientAddress::new("10.0.0.1:5".parse().unwrap());
        for_upstream(&mut headers, &authority, &client, "http", None);
        assert_eq!(headers[HOST], "app:8080");
    }

    #[test]
    fn forwarded_for_appends_and_upgrade_survives() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        let upgrade = requested_upgrade(Version::HTTP_11, &headers);
        assert_eq!(upgrade.as_ref().unwrap(), "websocket");
        for_upstream(
            &mut headers,
            &http::uri::Authority::from_static("app"),
            &ClientAddress::new("10.0.0.1:5".parse().unwrap()),
            "http",
            upgrade,
        );
        assert_eq!(headers["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
        assert_eq!(headers[UPGRADE], "websocket");
        assert_eq!(headers[CONNECTION], "upgrade");
    }

    #[test]
    fn upgrades_pass_only_as_asked_and_never_to_h2c() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        let asked = requested_upgrade(Version::HTTP_11, &headers);
        assert_eq!(asked.as_ref().unwrap(), "websocket");
        assert_eq!(requested_upgrade(Version::HTTP_10, &headers), None);
        headers.insert(UPGRADE, HeaderValue::from_static(" H2C "));
        assert_eq!(requested_upgrade(Version::HTTP_11, &headers), None);
        // Another protocol asked for beside h2c still goes, alone.
        headers.insert(UPGRADE, HeaderValue::from_static("websocket, H2C"));
        assert_eq!(
            requested_upgrade(Version::HTTP_11, &headers).unwrap(),
            "websocket"
        );
        headers.insert(UPGRADE, HeaderValue::from_static("h2c, foo/2, websocket"));
        assert_eq!(
            requested_upgrade(Version::HTTP_11, &headers).unwrap(),
            "foo/2, websocket"
        );

        let mut response = HeaderMap::new();
        assert!(!switch_was_asked_for(asked.as_ref(), &response));
        response.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(switch_was_asked_for(asked.as_ref(), &response));
        assert!(!switch_was_asked_for(None, &response));
        response.insert(UPGRADE, HeaderValue::from_static("other"));
        assert!(!switch_was_asked_for(asked.as_ref(), &response));
    }

    #[test]
    fn connection_cannot_name_host_or_the_forwarding_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("host, content-length, forwarded, x-forwarded-for, x-gone"),
        );
        for name in [
            "host",
            "content-length",
            "forwarded",
            "x-forwarded-for",
            "x-gone",
        ] {
            headers.insert(name, HeaderValue::from_static("1"));
        }
        remove_hop_by_hop(&mut headers);
        for name in ["host", "content-length", "forwarded", "x-forwarded-for"] {
            assert!(headers.contains_key(name), "{name} stays");
        }
        assert!(!headers.contains_key("x-gone"));
    }
}
