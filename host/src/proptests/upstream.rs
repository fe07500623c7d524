//! What the upstream sends, at random: response heads and bodies, whole or
//! in pieces, never panic the parser or the body decoder, and a chunked
//! body Tandem writes decodes back to what went in, however it is split.

use bytes::BytesMut;
use http::Method;
use proptest::prelude::*;

use super::bounded;
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
/// bytes; returns the body if the whole thing was valid.
fn read_response(wire: &[u8], step: usize, method: &Method) -> Option<Vec<u8>> {
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
        match parse_response_head(&mut buffer, method) {
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

proptest! {
    #![proptest_config(bounded(512))]

    #[test]
    fn any_response_is_read_or_refused_without_a_panic(
        wire in response_bytes(),
        step in 1usize..40,
        head in any::<bool>(),
    ) {
        let method = if head { Method::HEAD } else { Method::GET };
        // However the bytes are split, the outcome is the same.
        let whole = read_response(&wire, wire.len().max(1), &method);
        let split = read_response(&wire, step, &method);
        prop_assert_eq!(whole, split);
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
        let body = read_response(&wire, step, &Method::GET);
        prop_assert_eq!(body, Some(chunks.concat()));
    }
}

#[test]
fn a_content_length_body_is_framed_by_its_length() {
    let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcNEXT";
    assert_eq!(read_response(wire, 2, &Method::GET), Some(b"abc".to_vec()));
    let head = parse_response_head(&mut BytesMut::from(&wire[..]), &Method::GET)
        .expect("valid")
        .expect("complete");
    assert_eq!(head.framing, Framing::Length(3));
}
