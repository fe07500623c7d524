//! The plugin boundary with random replies: a guest answers with the
//! status, headers and body each request asks for (hex-encoded, so any
//! bytes can be tried), and the host either sends exactly what its own
//! validation accepts or fails the request as the policy says; it never
//! crashes. The cases come from proptest with a fixed seed.

use bytes::Bytes;
use http::StatusCode;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use tandem::runtime::bindings::Reply;
use tandem::runtime::plugin::validate_reply;

use crate::support::client::get_with;
use crate::support::tandem::TandemBuilder;
use crate::support::upstream::Upstream;

/// Cases sent through the real binary.
const CASES: usize = 64;

/// A reply the guest is asked to return.
#[derive(Debug, Clone)]
struct Asked {
    status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    extra_headers: u64,
    body_bytes: usize,
}

fn header_bytes(token: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => token.prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ]
}

fn asked() -> impl Strategy<Value = Asked> {
    (
        prop_oneof![200u16..600, 0u16..1100, Just(1000u16)],
        prop::collection::vec(
            (
                header_bytes("[a-z][a-z0-9-]{0,16}"),
                header_bytes("[ -~]{0,32}"),
            ),
            0..4,
        ),
        // The test's client reads at most 100 headers; over 256 the host
        // refuses the reply anyway.
        prop_oneof![3 => Just(0u64), 1 => 0u64..60, 1 => 250u64..300],
        prop_oneof![
            4 => 0usize..2048,
            1 => Just(4 << 20),
            1 => Just((4 << 20) + 1),
        ],
    )
        .prop_map(|(status, headers, extra_headers, body_bytes)| Asked {
            status,
            headers,
            extra_headers,
            body_bytes,
        })
}

/// The reply as the guest builds it: its strings are UTF-8, so the bytes
/// arrive lossily.
fn as_guest_builds_it(asked: &Asked) -> Reply {
    let mut headers: Vec<(String, String)> = asked
        .headers
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    headers.extend((0..asked.extra_headers).map(|i| (format!("x-extra-{i}"), "1".to_owned())));
    Reply {
        status: asked.status,
        headers,
        body: vec![b'x'; asked.body_bytes],
    }
}

#[tokio::test]
async fn random_replies_are_sent_as_validated_or_fail_closed() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "echo",
            "hostile",
            "failure = \"closed\"\n[config]\nmisbehave = \"echo\"\nhook = \"on-request\"\n",
        )
        .spawn()
        .await;
    let mut runner = TestRunner::deterministic();
    let strategy = asked();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..CASES {
        let asked = strategy.new_tree(&mut runner).unwrap().current();
        let status = asked.status.to_string();
        let extra = asked.extra_headers.to_string();
        let body = asked.body_bytes.to_string();
        let hex: Vec<(String, String)> = asked
            .headers
            .iter()
            .map(|(n, v)| (hex::encode(n), hex::encode(v)))
            .collect();
        let mut request_headers = vec![
            ("x-reply-status", status.as_str()),
            ("x-reply-extra-headers", extra.as_str()),
            ("x-reply-body-bytes", body.as_str()),
        ];
        for (name, value) in &hex {
            request_headers.push(("x-reply-header-name-hex", name));
            request_headers.push(("x-reply-header-value-hex", value));
        }
        let reply = get_with(&tandem.url("/"), &request_headers).await;
        match validate_reply(as_guest_builds_it(&asked)) {
            Ok(mut expected) => {
                accepted += 1;
                tandem::proxy::headers::remove_hop_by_hop(&mut expected.headers);
                assert_eq!(reply.status, expected.status, "{asked:?}");
                // HTTP forbids a body on these; hyper drops it.
                let body = match expected.status.as_u16() {
                    204 | 304 => Bytes::new(),
                    _ => expected.body,
                };
                assert_eq!(reply.body, body, "{asked:?}");
                for (name, value) in &expected.headers {
                    assert!(
                        reply.headers.get_all(name).iter().any(|v| v == value),
                        "{name}: {value:?} missing for {asked:?}: {:?}",
                        reply.headers
                    );
                }
            }
            Err(_) => {
                refused += 1;
                assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{asked:?}");
                assert!(reply.text().contains("plugin_failed"), "{asked:?}");
            }
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
    assert_eq!(
        crate::support::client::get(&tandem.admin_url("/healthz"))
            .await
            .status,
        StatusCode::OK
    );
}
