//! The plugin boundary with random values: whatever a guest returns as a
//! reply, or passes to the header and property imports, the host validates
//! it without panicking and never keeps more than its limits allow.

use http::HeaderMap;
use proptest::prelude::*;

use super::bounded;
use crate::runtime::bindings::{EditError, Reply};
use crate::runtime::exchange::{
    MAX_HEADER_NAME_BYTES, MAX_HEADER_VALUE_BYTES, MAX_HEADERS, MAX_PROPERTIES, MAX_PROPERTY_BYTES,
    Properties, parse_header, remove_header, write_header,
};
use crate::runtime::plugin::{HookFailure, MAX_REPLY_BODY_BYTES, validate_reply};

/// Header-ish text: mostly plausible, sometimes anything at all.
fn text(plausible: &'static str, max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => plausible.prop_map(String::from),
        1 => proptest::string::string_regex(&format!("\\PC{{0,{max}}}")).unwrap(),
        1 => proptest::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect()),
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => text("[a-zA-Z][a-zA-Z0-9-]{0,20}", 40),
        1 => Just("content-length".to_owned()),
        1 => Just("transfer-encoding".to_owned()),
        1 => (MAX_HEADER_NAME_BYTES - 2..MAX_HEADER_NAME_BYTES + 2).prop_map(|n| "a".repeat(n)),
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => text("[ -~]{0,40}", 60),
        1 => (MAX_HEADER_VALUE_BYTES - 2..MAX_HEADER_VALUE_BYTES + 2).prop_map(|n| "v".repeat(n)),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    (
        prop_oneof![any::<u16>(), 100u16..1000],
        prop_oneof![
            10 => prop::collection::vec((header_name(), header_value()), 0..8),
            1 => (MAX_HEADERS - 1..MAX_HEADERS + 2)
                .prop_map(|n| (0..n).map(|i| (format!("x-{i}"), "1".to_owned())).collect()),
        ],
        prop_oneof![
            10 => 0usize..256,
            1 => Just(MAX_REPLY_BODY_BYTES),
            1 => Just(MAX_REPLY_BODY_BYTES + 1),
        ],
    )
        .prop_map(|(status, headers, body)| Reply {
            status,
            headers,
            body: vec![0; body],
        })
}

proptest! {
    #![proptest_config(bounded(512))]

    #[test]
    fn a_validated_reply_keeps_within_every_limit(reply in reply()) {
        let (status, count, body) = (reply.status, reply.headers.len(), reply.body.len());
        match validate_reply(reply) {
            Ok(valid) => {
                prop_assert!((200..=599).contains(&status));
                prop_assert_eq!(valid.status.as_u16(), status);
                prop_assert!(count <= MAX_HEADERS);
                prop_assert!(body <= MAX_REPLY_BODY_BYTES);
                prop_assert_eq!(valid.body.len(), body);
                prop_assert!(valid.headers.get(http::header::CONTENT_LENGTH).is_none());
                prop_assert!(valid.headers.get(http::header::TRANSFER_ENCODING).is_none());
                for (name, value) in &valid.headers {
                    prop_assert!(name.as_str().len() <= MAX_HEADER_NAME_BYTES);
                    prop_assert!(value.len() <= MAX_HEADER_VALUE_BYTES);
                }
            }
            Err(failure) => {
                prop_assert!(matches!(failure, HookFailure::Invalid(_)));
                prop_assert!(!failure.to_string().is_empty());
            }
        }
    }

    #[test]
    fn header_edits_stay_valid_and_bounded(
        edits in prop::collection::vec((header_name(), header_value(), any::<u8>()), 0..300),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value, op) in &edits {
            match op % 3 {
                0 => {
                    let result = write_header(&mut headers, name, value, false);
                    if result.is_ok() {
                        prop_assert_eq!(headers.get(name.as_str()).unwrap().as_bytes(), value.as_bytes());
                    }
                }
                1 => {
                    let before = headers.len();
                    match write_header(&mut headers, name, value, true) {
                        Ok(()) => prop_assert_eq!(headers.len(), before + 1),
                        Err(EditError::LimitExceeded) => {
                            prop_assert!(before >= MAX_HEADERS
                                || name.len() > MAX_HEADER_NAME_BYTES
                                || value.len() > MAX_HEADER_VALUE_BYTES)
                        }
                        Err(_) => prop_assert!(parse_header(name, value).is_err()),
                    }
                }
                _ => remove_header(&mut headers, name),
            }
            prop_assert!(headers.len() <= MAX_HEADERS);
        }
    }

    #[test]
    fn the_property_bag_stays_bounded(
        sets in prop::collection::vec(
            (text("[a-z.]{1,12}", 20), prop_oneof![text("[ -~]{0,20}", 40), (MAX_PROPERTY_BYTES - 4..MAX_PROPERTY_BYTES + 4).prop_map(|n| "p".repeat(n))]),
            0..200,
        ),
    ) {
        let mut bag = Properties::default();
        for (key, value) in sets {
            let fits = key.len() + value.len() <= MAX_PROPERTY_BYTES;
            match bag.set(key.clone(), value.clone()) {
                Ok(()) => {
                    prop_assert!(fits);
                    prop_assert_eq!(bag.get(&key), Some(value.as_str()));
                }
                Err(error) => prop_assert!(matches!(error, EditError::LimitExceeded)),
            }
            prop_assert!(bag.iter().count() <= MAX_PROPERTIES);
        }
    }
}
