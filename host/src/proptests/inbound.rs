//! What clients send, at random, to Tandem's own HTTP/1.1 reader: a head
//! whose header lines go upstream as received is written exactly as its
//! header map would be, and any bytes are read the same whether or not
//! the lines are asked for.

use bytes::BytesMut;
use http::{HeaderMap, Request};
use proptest::prelude::*;

use super::{bounded, header_lines};
use crate::proxy::headers::{self, ClientAddress};
use crate::proxy::inbound_head::{self, InboundHead};
use crate::proxy::request_lines::{OutgoingLines, RequestLines};
use crate::proxy::upstream_codec::{encode_request_head, encode_request_lines};

/// A request head whose lines are in the proxy's own form: one valid
/// `Host` somewhere among distinct other names in any case.
fn plain_request() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["GET", "HEAD", "DELETE", "OPTIONS", "POST", "PUT"]),
        "/[a-z0-9/._-]{0,16}(\\?[a-z0-9=&]{0,12})?",
        "[a-z0-9.-]{1,12}(:[0-9]{1,5})?",
        proptest::collection::btree_set("[a-z][a-z0-9-]{0,10}", 0..6),
        proptest::collection::vec("[!-~]([ -~]{0,16}[!-~])?", 6),
        any::<u64>(),
        0usize..7,
    )
        .prop_map(|(method, target, host, names, values, cases, at)| {
            let mut lines = header_lines(&names, &values, cases);
            let host_name = if cases & 1 == 1 { "HOST" } else { "Host" };
            lines.insert(at.min(lines.len()), format!("{host_name}: {host}\r\n"));
            format!("{method} {target} HTTP/1.1\r\n{}\r\n", lines.concat())
        })
}

/// What the own reader takes from `raw`, asking for the lines or not.
fn taken(raw: &[u8], want_lines: bool) -> InboundHead {
    inbound_head::take(&mut BytesMut::from(raw), 8192, 100, want_lines)
}

fn client() -> ClientAddress {
    ClientAddress::new("192.0.2.7:40000".parse().unwrap())
}

/// The head written upstream by way of the request's header map.
fn written_by_map(request: Request<()>) -> Vec<u8> {
    let (mut parts, ()) = request.into_parts();
    let upstream = http::uri::Authority::from_static("app:8080");
    headers::for_upstream(&mut parts.headers, &upstream, &client(), "http", None);
    let mut out = BytesMut::new();
    let target = parts.uri.path_and_query().unwrap().as_str();
    encode_request_head(&parts.method, target, &parts.headers, &mut out);
    out.to_vec()
}

/// The head written upstream from the lines as received.
fn written_by_lines(request: &Request<()>, lines: &RequestLines) -> Vec<u8> {
    let client = client();
    let outgoing = OutgoingLines {
        lines: &lines.lines,
        forwarded_for: client.forwarded_for(),
        scheme: "http",
    };
    let mut out = BytesMut::new();
    let target = request.uri().path_and_query().unwrap().as_str();
    encode_request_lines(request.method(), target, outgoing, &mut out);
    out.to_vec()
}

/// The kind of what was taken, and the headers it carries (from the map,
/// or read back from the lines).
fn outcome(head: InboundHead) -> Option<(Request<()>, bool, HeaderMap)> {
    match head {
        InboundHead::Request {
            mut request,
            keep_alive,
            lines,
        } => {
            if let Some(lines) = lines {
                assert!(request.headers().is_empty(), "no map beside the lines");
                *request.headers_mut() = lines.to_header_map().expect("lines make headers");
            }
            let headers = std::mem::take(request.headers_mut());
            Some((request, keep_alive, headers))
        }
        InboundHead::Partial | InboundHead::HandOff => None,
    }
}

proptest! {
    #![proptest_config(bounded(512))]

    #[test]
    fn request_lines_kept_as_received_go_upstream_as_a_header_map_writes_them(
        raw in plain_request(),
    ) {
        let InboundHead::Request { request, lines: Some(lines), .. } = taken(raw.as_bytes(), true)
        else {
            panic!("kept as received: {raw:?}");
        };
        let by_lines = written_by_lines(&request, &lines);
        let InboundHead::Request { request, lines: None, .. } = taken(raw.as_bytes(), false)
        else {
            panic!("read to a map: {raw:?}");
        };
        let by_map = written_by_map(request);
        prop_assert_eq!(
            String::from_utf8_lossy(&by_lines),
            String::from_utf8_lossy(&by_map)
        );
    }

    #[test]
    fn any_head_is_read_the_same_with_or_without_its_lines(
        raw in prop_oneof![
            plain_request(),
            "(GET|POST|HEAD) /[ -~]{0,10} HTTP/1\\.[01]\r\n([A-Za-z-]{1,12}:[ -~]{0,20}\r\n){0,5}\r\n",
            proptest::string::string_regex("[ -~\r\n]{0,80}").unwrap(),
        ],
    ) {
        let by_map = outcome(taken(raw.as_bytes(), false));
        let by_lines = outcome(taken(raw.as_bytes(), true));
        match (by_map, by_lines) {
            (None, None) => {}
            (Some((a, a_keep, a_headers)), Some((b, b_keep, b_headers))) => {
                prop_assert_eq!(a.method(), b.method());
                prop_assert_eq!(a.uri(), b.uri());
                prop_assert_eq!(a_keep, b_keep);
                prop_assert_eq!(a_headers, b_headers);
            }
            (a, b) => prop_assert!(false, "taken one way only: {:?} / {:?}", a.is_some(), b.is_some()),
        }
    }
}
