//! What the upstream sends, at random: response heads and bodies, whole or
//! in pieces, never panic the parser or the body decoder, and a chunked
//! body Tandem writes decodes back to what went in, however it is split.

use bytes::BytesMut;
use http::Method;
use proptest::prelude::*;

use super::{bounded, header_lines};
use crate::proxy::upstream_codec::{
    BodyDecoder, Decoded, Framing, encode_chunk, encode_last_chunk, parse_response_head,
};

/// Bytes that look like a response often enough to reach the body.
fn response_bytes() -> impl Strategy<Value = Vec<u8>> {
    let head = prop_oneof![
        Just("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_owned()),
        Just("HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n".to_owned()),
        Just("HTTP/1.0 200 OK\r\n\r\n".to_owned()),
        "HTTP/1\\.[01] [0-9]{3} [ -~]{0,10}\r\n([a-z-]{1,12}: [ -~]{0,20}\r\n){0,5}\r\n",
        proptest::string::string_regex("[ -~\r\n]{0,80}").unwrap(),
    ];
    let body = prop_oneof![
        "([0-9a-fA-F]{1,4}(;[a-z=]{0,6})?\r\n[ -~]{0,20}\r\n){0,4}0\r\n([a-z]{1,5}: [ -~]{0,8}\r\n){0,3}\r\n",
        proptest::collection::vec(any::<u8>(), 0..120)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    (head, body).prop_map(|(head, body)| format!("{head}{body}").into_bytes())
}

/// Feeds `wire` to the parser and then the decoder in pieces of `step`
/// bytes; returns the body if the whole thing was valid. With
/// `keep_received`, the head may keep its lines as received.
fn read_response(
    wire: &[u8],
    step: usize,
    method: &Method,
    keep_received: bool,
) -> Option<Vec<u8>> {
    let mut buffer = BytesMut::new();
    let mut fed = 0;
    let mut feed = |buffer: &mut BytesMut| {
        if fed == wire.len() {
            return false;
        }
        let next = (fed + step).min(wire.len());
        buffer.extend_from_slice(&wire[fed..next]);
        fed = next;
        true
    };
    let head = loop {
        match parse_response_head(&mut buffer, method, keep_received) {
            Ok(Some(head)) => break head,
            Ok(None) if feed(&mut buffer) => {}
            _ => return None,
        }
    };
    let mut decoder = BodyDecoder::new(head.framing);
    let mut body = Vec::new();
    loop {
        match decoder.decode(&mut buffer) {
            Ok(Decoded::Data(data)) => body.extend_from_slice(&data),
            Ok(Decoded::End(_)) => return Some(body),
            Ok(Decoded::NeedMore) if feed(&mut buffer) => {}
            Ok(Decoded::NeedMore) if decoder.ends_at_close() => return Some(body),
            _ => return None,
        }
    }
}

/// A response head whose lines are in the proxy's own form: distinct names
/// in any case, one plain `Content-Length` among them, maybe a `Date`; and
/// the length of its body.
fn plain_head() -> impl Strategy<Value = (String, u64)> {
    (
        proptest::collection::btree_set("[a-z][a-z0-9-]{0,10}", 0..6),
        proptest::collection::vec("[!-~]([ -~]{0,16}[!-~])?", 6),
        any::<u64>(),
        0usize..7,
        any::<bool>(),
        prop::sample::select(vec![200u16, 201, 206, 301, 404, 500]),
        0u64..100_000,
    )
        .prop_map(|(names, values, cases, at, dated, status, length)| {
            let mut lines = header_lines(&names, &values, cases);
            lines.insert(at.min(lines.len()), format!("Content-Length: {length}\r\n"));
            if dated {
                lines.push("Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n".to_owned());
            }
            let head = format!("HTTP/1.1 {status} Whatever\r\n{}\r\n", lines.concat());
            (head, length)
        })
}

/// The head Tandem writes for `head`, by way of a header map or of the
/// lines kept as received, without a date line the proxy added.
fn written(head: &str, length: u64, keep_alive: bool, keep_received: bool) -> Option<String> {
    use crate::proxy::response_encoder::{BodyLength, encode, encode_received};
    let mut parsed =
        parse_response_head(&mut BytesMut::from(head), &Method::GET, keep_received).ok()??;
    let body = match length {
        0 => BodyLength::Empty,
        length => BodyLength::Known(length),
    };
    let mut out = BytesMut::new();
    let received = parsed.received.take();
    if keep_received != received.is_some() {
        return None;
    }
    match received {
        Some(received) => {
            encode_received(parsed.parts.status, &received, keep_alive, body, &mut out)
        }
        None => encode(&mut parsed.parts, &Method::GET, keep_alive, body, &mut out),
    }
    .ok()?;
    let own_date = head.contains("\r\nDate: ");
    Some(
        String::from_utf8(out.to_vec())
            .ok()?
            .split_inclusive("\r\n")
            .filter(|line| own_date || !line.starts_with("date: "))
            .collect(),
    )
}

proptest! {
    #![proptest_config(bounded(512))]

    #[test]
    fn lines_kept_as_received_are_written_as_a_header_map_writes_them(
        (head, length) in plain_head(),
        keep_alive in any::<bool>(),
    ) {
        let by_lines = written(&head, length, keep_alive, true);
        prop_assert!(by_lines.is_some(), "kept as received: {:?}", head);
        let by_map = written(&head, length, keep_alive, false);
        if length > 0 || head.contains("Content-Length: 0\r\n\r\n") {
            prop_assert_eq!(by_lines, by_map);
        } else {
            // The map path writes a zero length of its own after the other
            // lines: the same lines, in another order.
            let sorted = |text: Option<String>| {
                let mut lines: Vec<String> = text?.split("\r\n").map(str::to_owned).collect();
                lines.sort();
                Some(lines)
            };
            prop_assert_eq!(sorted(by_lines), sorted(by_map));
        }
    }

    #[test]
    fn any_response_is_read_or_refused_without_a_panic(
        wire in response_bytes(),
        step in 1usize..40,
        head in any::<bool>(),
    ) {
        let method = if head { Method::HEAD } else { Method::GET };
        // However the bytes are split, and whether or not the head may keep
        // its lines as received, the outcome is the same.
        let whole = read_response(&wire, wire.len().max(1), &method, false);
        let split = read_response(&wire, step, &method, false);
        let kept = read_response(&wire, step, &method, true);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(whole, kept);
    }

    #[test]
    fn a_chunked_body_decodes_to_what_was_encoded(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..6),
        step in 1usize..64,
    ) {
        let mut wire = BytesMut::from(&b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..]);
        for chunk in &chunks {
            encode_chunk(chunk, &mut wire);
        }
        encode_last_chunk(None, &mut wire);
        let body = read_response(&wire, step, &Method::GET, false);
        prop_assert_eq!(body, Some(chunks.concat()));
    }
}

#[test]
fn a_content_length_body_is_framed_by_its_length() {
    let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcNEXT";
    assert_eq!(
        read_response(wire, 2, &Method::GET, true),
        Some(b"abc".to_vec())
    );
    let head = parse_response_head(&mut BytesMut::from(&wire[..]), &Method::GET, false)
        .expect("valid")
        .expect("complete");
    assert_eq!(head.framing, Framing::Length(3));
}
