//! Messages that the client, the plugins and the upstream could read
//! differently: each is mended, so that all three see the same, or refused.

use std::time::Duration;

use http::StatusCode;

use super::traffic::{metric, raw_exchange, raw_status};
use crate::support::client::get;
use crate::support::raw_upstream::RawUpstream;
use crate::support::tandem::TandemBuilder;
use crate::support::upstream::Upstream;

#[tokio::test]
async fn requests_reach_the_upstream_as_the_plugins_saw_them_or_not_at_all() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .spawn()
        .await;
    let exchange =
        async |bytes: &[u8]| raw_exchange(tandem.proxy, bytes, Duration::from_secs(5)).await;

    // A chunked body on a GET goes upstream (hyper's client would send
    // none); `/drain` answers with the length it read.
    let response = exchange(
        b"GET /drain HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&response), Some(200), "{response}");
    assert!(
        response.ends_with("\r\n\r\n5"),
        "the body arrived: {response}"
    );

    // A transfer coding other than chunked: the upstream would get the
    // coded bytes as if they were plain.
    let response = exchange(
        b"POST /coded HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&response), Some(501), "{response}");
    assert!(upstream.seen_at("/coded").is_empty());

    // `Connection` cannot take Host or the forwarding headers away.
    let response = exchange(
        b"GET /named HTTP/1.1\r\nHost: tenant-a.example\r\nX-Forwarded-For: 192.0.2.7\r\n\
          Connection: close, host, x-forwarded-for\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&response), Some(200), "{response}");
    let seen = upstream.seen_at("/named");
    assert_eq!(seen[0].headers["host"], "tenant-a.example");
    assert_eq!(seen[0].headers["x-forwarded-for"], "192.0.2.7, 127.0.0.1");

    // An upgrade to h2c goes as a plain request: a tunnel to the upstream
    // would carry HTTP/2 past the plugins.
    let response = exchange(
        b"GET /h2c HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&response), Some(200), "{response}");
    let seen = upstream.seen_at("/h2c");
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(
            !seen[0].headers.contains_key(name),
            "{name}: {:?}",
            seen[0].headers
        );
    }

    // A head over the default 64 KiB limit that arrives in one piece.
    let big = format!(
        "GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let response = exchange(big.as_bytes()).await;
    assert_eq!(raw_status(&response), Some(431), "{response}");
    assert!(upstream.seen_at("/big").is_empty());

    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    let series = "tandem_limit_rejections_total{reason=\"transfer_coding_not_implemented\"}";
    assert_eq!(metric(&metrics, series), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn upstream_answers_the_client_could_misread_become_502() {
    type Answer = fn(usize) -> Option<&'static [u8]>;
    let cases: [(&str, &[u8], Answer); 3] = [
        (
            "a switch the client did not ask for",
            b"GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            |_| {
                Some(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
            },
        ),
        (
            "a switch to another protocol than asked",
            b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: upgrade, close\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            |_| {
                Some(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: other\r\n\r\n")
            },
        ),
        (
            "two lengths on the answer to a HEAD",
            b"HEAD /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            |_| Some(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
        ),
    ];
    for (what, request, answer) in cases {
        let upstream = RawUpstream::start(answer).await;
        let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
            .spawn()
            .await;
        let response = raw_exchange(tandem.proxy, request, Duration::from_secs(5)).await;
        assert_eq!(raw_status(&response), Some(502), "{what}: {response}");
        // The proxy still serves on a new connection.
        let again = raw_exchange(tandem.proxy, request, Duration::from_secs(5)).await;
        assert_eq!(raw_status(&again), Some(502), "{what}, again: {again}");
    }
}

/// A response body that breaks after its head was handed on (here a chunk
/// size that is not a number) can no longer become a 502: the client's
/// connection is cut before the body's end, and the failure is counted
/// (and logged), not passed off as a 200 served in full.
#[tokio::test]
async fn a_response_body_that_breaks_is_cut_and_counted() {
    let upstream = RawUpstream::start(|_| {
        Some(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
    })
    .await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .spawn()
        .await;
    let request = b"GET /broken HTTP/1.1\r\nHost: t\r\n\r\n";
    let response = raw_exchange(tandem.proxy, request, Duration::from_secs(5)).await;
    assert!(
        !response.ends_with("0\r\n\r\n"),
        "no end of body: {response:?}"
    );
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(
            &metrics,
            "tandem_upstream_failures_total{reason=\"response_body\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    // The proxy still serves, on a new connection.
    raw_exchange(tandem.proxy, request, Duration::from_secs(5)).await;
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(
            &metrics,
            "tandem_upstream_failures_total{reason=\"response_body\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_plugin_that_refuses_a_path_is_not_passed_by_another_spelling_of_it() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("deny", "deny-path", "[config]\nprefixes = [\"/admin\"]\n")
        .spawn()
        .await;
    for spelling in [
        "/admin/x",
        "/./admin/x",
        "/public/../admin/x",
        "/%61dmin/x",
        "/%2e/admin/x",
        "//admin/x",
    ] {
        let reply = get(&tandem.url(spelling)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{spelling}");
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    // What passes reaches the application in the same normal form.
    let reply = get(&tandem.url("/a//b/./c/%7Euser/%2f?q=/../x")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.seen()[0].target, "/a/b/c/~user/%2F?q=/../x");

    // merge_slashes = false keeps runs of `/` for applications that carry
    // URLs in paths.
    let keeping = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("[limits]\nmerge_slashes = false")
        .spawn()
        .await;
    let reply = get(&keeping.url("/fetch/http://example.com//x/./y")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.seen()[1].target, "/fetch/http://example.com//x/y");

    // normalize_paths = false passes paths as they came, for applications
    // that check a signature over the raw path.
    let raw = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("[limits]\nnormalize_paths = false")
        .spawn()
        .await;
    let reply = get(&raw.url("/bucket//key/./%7Ea?X-Signature=1")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        upstream.seen()[2].target,
        "/bucket//key/./%7Ea?X-Signature=1"
    );
}
