//! Hostile clients: slow-loris connections, oversized heads and bodies,
//! slow bodies, malformed HTTP and too many connections. Each gets a 4xx or
//! a closed connection, and normal traffic keeps being served.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::traffic::{NormalTraffic, metric, raw_exchange, raw_status};
use crate::support::client::{get, get_with, send_body};
use crate::support::eventually;
use crate::support::tandem::TandemBuilder;
use crate::support::upstream::Upstream;
use futures_util::{SinkExt, StreamExt};

/// Slow-loris connections opened at once.
const LORIS: usize = 300;

/// Sends a request head one byte every 50 ms and returns how long the
/// server kept the connection open, if it closed it within `limit`.
async fn slow_loris(addr: std::net::SocketAddr, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let Ok(stream) = TcpStream::connect(addr).await else {
        return Some(Duration::ZERO);
    };
    trickle_head(stream, started, limit).await
}

/// Sends a request head on `stream` one byte every 50 ms and returns how
/// long after `started` the server closed the connection, if it did so
/// within `limit`.
async fn trickle_head(
    mut stream: TcpStream,
    started: Instant,
    limit: Duration,
) -> Option<Duration> {
    let head = b"GET /slow-loris HTTP/1.1\r\nHost: tandem\r\nX-Padding: ";
    let mut sent = 0usize;
    let mut buffer = [0u8; 256];
    while started.elapsed() < limit {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        if stream.write_all(&[byte]).await.is_err() {
            return Some(started.elapsed());
        }
        sent += 1;
        // A closed connection reads as end-of-file (or an error) at once.
        let read = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buffer)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            return Some(started.elapsed());
        }
    }
    None
}

#[tokio::test]
async fn slow_loris_connections_do_not_starve_normal_traffic() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("[limits]\nheader_read_timeout_ms = 2000")
        .spawn()
        .await;
    let loris: Vec<_> = (0..LORIS)
        .map(|_| tokio::spawn(slow_loris(tandem.proxy, Duration::from_secs(30))))
        .collect();
    let opened = eventually(Duration::from_secs(10), async || {
        let metrics = get(&tandem.admin_url("/metrics")).await.text();
        metric(&metrics, "tandem_connections_open").unwrap_or(0.0) >= LORIS as f64
    })
    .await;
    assert!(opened, "all slow-loris connections are open at once");

    // Normal traffic while they trickle in.
    let normal = NormalTraffic::start(tandem.url("/normal"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let served = normal.finish().await;
    assert!(served.failed.is_empty(), "{served:?}");
    assert!(served.ok >= 10, "normal requests keep flowing: {served:?}");
    assert!(
        served.slowest < Duration::from_secs(2),
        "none waited long: {served:?}"
    );

    // The server closes every slow connection after the header timeout.
    for task in loris {
        let closed_after = task.await.unwrap();
        let closed_after = closed_after.expect("the server closed the slow connection");
        assert!(
            closed_after < Duration::from_secs(15),
            "closed after {closed_after:?}"
        );
    }
    assert!(upstream.seen_at("/slow-loris").is_empty());
    let closed = eventually(Duration::from_secs(10), async || {
        let metrics = get(&tandem.admin_url("/metrics")).await.text();
        metric(&metrics, "tandem_connections_open") == Some(0.0)
    })
    .await;
    assert!(closed, "no connection left behind");
}

/// Reads from `stream` until what came is `done`, within 5 s and without
/// the connection closing; returns what came.
async fn read_until(stream: &mut TcpStream, done: impl Fn(&[u8]) -> bool, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !done(&received) {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("{what} in time"))
            .unwrap();
        assert!(read > 0, "{what}: the connection closed");
        received.extend_from_slice(&buffer[..read]);
    }
    received
}

#[tokio::test]
async fn a_kept_alive_connection_must_send_its_next_head_in_time() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("[limits]\nheader_read_timeout_ms = 1000\nidle_timeout_ms = 60000")
        .spawn()
        .await;
    let mut stream = TcpStream::connect(tandem.proxy).await.unwrap();
    // Before the first request: the wait for the next head starts after
    // its response, so it cannot look shorter than it is.
    let started = Instant::now();
    stream
        .write_all(b"GET /first HTTP/1.1\r\nHost: tandem\r\n\r\n")
        .await
        .unwrap();
    let has_head = |received: &[u8]| received.windows(4).any(|w| w == b"\r\n\r\n");
    let received = read_until(&mut stream, has_head, "the first response").await;
    assert!(received.starts_with(b"HTTP/1.1 200"));

    // The next head trickles in: the header timeout applies to it too, not
    // only the (much longer) idle timeout.
    let closed_after = trickle_head(stream, started, Duration::from_secs(20))
        .await
        .expect("the server closed the connection");
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(8)).contains(&closed_after),
        "closed after {closed_after:?}"
    );
    assert_eq!(upstream.seen_at("/first").len(), 1);
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(&metrics, "tandem_connections_closed_total{reason=\"idle\"}"),
        Some(1.0),
        "{metrics}"
    );
}

/// Waits up to `limit` for the server to close `stream` and returns how
/// long after `started` it did.
async fn closed_within(mut stream: TcpStream, started: Instant, limit: Duration) -> Duration {
    let mut buffer = [0u8; 256];
    loop {
        let read = tokio::time::timeout_at((started + limit).into(), stream.read(&mut buffer))
            .await
            .expect("the server closed the connection in time");
        match read {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_first_bytes_is_closed_in_time() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("[limits]\nheader_read_timeout_ms = 1000\nidle_timeout_ms = 60000")
        .spawn()
        .await;
    // One sends nothing; the other sends the start of the HTTP/2 preface,
    // which is too little to tell the protocol by.
    let started = Instant::now();
    let silent = TcpStream::connect(tandem.proxy).await.unwrap();
    let mut partial = TcpStream::connect(tandem.proxy).await.unwrap();
    partial.write_all(b"PR").await.unwrap();
    let (silent, partial) = tokio::join!(
        closed_within(silent, started, Duration::from_secs(10)),
        closed_within(partial, started, Duration::from_secs(10)),
    );
    for closed_after in [silent, partial] {
        assert!(
            closed_after >= Duration::from_secs(1),
            "closed after {closed_after:?}"
        );
    }
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(
            &metrics,
            "tandem_connections_closed_total{reason=\"no_request\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    // The listener is still serving.
    assert_eq!(get(&tandem.url("/after")).await.status, StatusCode::OK);
}

/// An upstream that answers each request as soon as its head is in, then
/// reads its chunked body to the end before it reads the next head.
async fn upstream_that_answers_before_the_body() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut buffer = [0u8; 4096];
                // What ends the next thing to wait for: a head, then a
                // chunked body (each request here has one).
                let mut awaiting: &[u8] = b"\r\n\r\n";
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 {
                        return;
                    }
                    received.extend_from_slice(&buffer[..read]);
                    while let Some(at) =
                        received.windows(awaiting.len()).position(|w| w == awaiting)
                    {
                        received.drain(..at + awaiting.len());
                        if awaiting == b"\r\n\r\n" {
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                            awaiting = b"0\r\n\r\n";
                        } else {
                            awaiting = b"\r\n\r\n";
                        }
                    }
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn an_upload_still_arriving_after_its_response_is_not_cut_off() {
    let address = upstream_that_answers_before_the_body().await;
    let tandem = TandemBuilder::new(format!("http://{address}"))
        .config("[limits]\nheader_read_timeout_ms = 1000")
        .spawn()
        .await;
    let mut stream = TcpStream::connect(tandem.proxy).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: tandem\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let ends_ok = |received: &[u8]| received.ends_with(b"ok");
    read_until(&mut stream, ends_ok, "the response before the body").await;
    // The body goes on for well past the header timeout.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream.write_all(b"5\r\nxxxxx\r\n").await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    // The connection is still there for the next request.
    stream
        .write_all(b"POST /next HTTP/1.1\r\nHost: tandem\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let next = read_until(&mut stream, ends_ok, "the next response after the upload").await;
    assert!(
        next.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&next)
    );
}

/// A client that leaves in the middle of its upload, after the upstream
/// began to answer (`/echo` streams the body back as it comes), leaves
/// nothing behind: the upstream connection is shut down, so the response
/// ends, and neither the request nor the connection stays counted.
#[tokio::test]
async fn an_upload_the_client_abandons_after_the_response_began_leaves_nothing_behind() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .spawn()
        .await;
    for _ in 0..3 {
        let mut stream = TcpStream::connect(tandem.proxy).await.unwrap();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nhost: app\r\ncontent-length: 100\r\n\r\nab")
            .await
            .unwrap();
        let head = read_until(
            &mut stream,
            |received| received.windows(4).any(|w| w == b"\r\n\r\n"),
            "the echo's response head",
        )
        .await;
        assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
        drop(stream);
    }
    let mut metrics = String::new();
    let settled = eventually(Duration::from_secs(10), async || {
        metrics = get(&tandem.admin_url("/metrics")).await.text();
        metric(&metrics, "tandem_requests_in_flight") == Some(0.0)
            && metric(&metrics, "tandem_connections_open") == Some(0.0)
    })
    .await;
    assert!(
        settled,
        "abandoned uploads are not left in flight:\n{metrics}"
    );
    // The client left: not counted against the application.
    assert_eq!(
        metric(
            &metrics,
            "tandem_upstream_failures_total{reason=\"response_body\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn oversized_heads_get_431_and_oversized_bodies_get_413() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config(
            "[limits]\nmax_request_header_bytes = 16384\nmax_request_headers = 50\n\
             max_request_body_bytes = 1000\n\
             [[limits.route]]\nprefix = \"/drain\"\nmax_request_body_bytes = 100000\n",
        )
        .spawn()
        .await;

    let big = "v".repeat(20_000);
    let reply = get_with(&tandem.url("/"), &[("x-big", &big)]).await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let names: Vec<String> = (0..60).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let reply = get_with(&tandem.url("/"), &many).await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let few: Vec<(&str, &str)> = many[..20].to_vec();
    assert_eq!(
        get_with(&tandem.url("/"), &few).await.status,
        StatusCode::OK
    );

    // A declared length over the limit is refused before anything runs.
    let reply = send_body(Method::POST, &tandem.url("/echo"), vec![b'x'; 2000]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"], "body_too_large");
    assert!(upstream.seen_at("/echo").is_empty());
    // A client that waits for 100 Continue gets the 413 without sending.
    let response = raw_exchange(
        tandem.proxy,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(raw_status(&response), Some(413), "{response}");
    // The route's own limit applies under its prefix; the upstream reads
    // the whole body before it answers.
    let reply = send_body(Method::POST, &tandem.url("/drain"), vec![b'x'; 2000]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "2000");

    // A chunked body is cut off at the limit as it streams.
    let stream = TcpStream::connect(tandem.proxy).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..30)
        .map(|_| Ok(Frame::data(Bytes::from(vec![b'x'; 10_000]))))
        .collect();
    let request = Request::post("/drain")
        .header("host", "tandem")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("body_too_large"));

    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(
            &metrics,
            "tandem_limit_rejections_total{reason=\"body_too_large\"}"
        ),
        Some(3.0)
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("[limits]\nrequest_timeout_ms = 500")
        .spawn()
        .await;
    let started = Instant::now();
    let response = raw_exchange(
        tandem.proxy,
        b"POST /drain HTTP/1.1\r\nHost: tandem\r\nContent-Length: 100\r\n\r\nonly a little",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(raw_status(&response), Some(408), "{response}");
    assert!(response.contains("request_timeout"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(get(&tandem.url("/")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_http_gets_4xx_and_the_host_stays_up() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .spawn()
        .await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>)> =
        vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        (
            "space in a header name",
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n".to_vec(),
        ),
        ("unknown version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        ("NUL in the target", b"GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "two different lengths",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"
                .to_vec(),
        ),
        (
            "length that is not a number",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: five\r\n\r\n".to_vec(),
        ),
        (
            "bad chunk size",
            b"POST /drain HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n\r\n"
                .to_vec(),
        ),
        ("a 100 kB target", long_uri.into_bytes()),
        (
            "a TLS client hello",
            vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, b'\r', b'\n'],
        ),
    ];
    for (what, bytes) in &cases {
        let response = raw_exchange(tandem.proxy, bytes, Duration::from_secs(5)).await;
        let status = raw_status(&response);
        assert!(
            status.is_some_and(|s| (400..500).contains(&s)),
            "{what}: {response:?}"
        );
    }
    // Heads that parse but that two hops could read differently never
    // reach the upstream; nor does a request for a tunnel.
    let refused: [(&str, &[u8], u16); 7] = [
        (
            "an HTTP/1.1 request without Host",
            b"GET /no-host HTTP/1.1\r\n\r\n",
            400,
        ),
        (
            "two Host headers",
            b"GET /two-hosts HTTP/1.1\r\nHost: app\r\nHost: other\r\n\r\n",
            400,
        ),
        (
            "user information in Host",
            b"GET /userinfo-host HTTP/1.1\r\nHost: user:pw@app\r\n\r\n",
            400,
        ),
        (
            "user information in the target",
            b"GET http://user@app/userinfo-target HTTP/1.1\r\nHost: app\r\n\r\n",
            400,
        ),
        (
            "a path in Host",
            b"GET /path-host HTTP/1.1\r\nHost: app/x\r\n\r\n",
            400,
        ),
        (
            "an authority as the target of a GET",
            b"GET authority-target:80 HTTP/1.1\r\nHost: app\r\n\r\n",
            400,
        ),
        (
            "CONNECT",
            b"CONNECT app:443 HTTP/1.1\r\nHost: app:443\r\n\r\n",
            405,
        ),
    ];
    for (what, bytes, expected) in refused {
        let response = raw_exchange(tandem.proxy, bytes, Duration::from_secs(5)).await;
        assert_eq!(raw_status(&response), Some(expected), "{what}: {response}");
        if expected == 405 {
            assert!(
                response.to_ascii_lowercase().contains("\r\nallow: get"),
                "{response}"
            );
        }
    }
    for path in [
        "/no-host",
        "/two-hosts",
        "/userinfo-host",
        "/userinfo-target",
        "/path-host",
    ] {
        assert!(
            upstream.seen_at(path).is_empty(),
            "{path} reached the upstream"
        );
    }
    assert!(
        upstream
            .seen()
            .iter()
            .all(|seen| seen.method != Method::CONNECT),
        "CONNECT reached the upstream"
    );
    assert!(
        upstream.seen().iter().all(|seen| seen
            .headers
            .get("host")
            .is_none_or(|host| host != "authority-target:80")),
        "the authority-form GET reached the upstream"
    );
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(
            &metrics,
            "tandem_limit_rejections_total{reason=\"bad_request_head\"}"
        ),
        Some(6.0),
        "{metrics}"
    );
    // An absolute target's authority is the Host the upstream sees.
    let response = raw_exchange(
        tandem.proxy,
        b"GET http://app.example:8080/absolute HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(raw_status(&response), Some(200), "{response}");
    let seen = upstream.seen_at("/absolute");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers[http::header::HOST], "app.example:8080");

    // An HTTP/2 preface followed by garbage is refused on that connection.
    let _ = raw_exchange(
        tandem.proxy,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(get(&tandem.url("/")).await.status, StatusCode::OK);
    assert_eq!(
        get(&tandem.admin_url("/healthz")).await.status,
        StatusCode::OK
    );
    assert!(
        !tandem.logs().contains("panicked"),
        "no panic:\n{}",
        tandem.logs()
    );
}

#[tokio::test]
async fn connections_over_the_limit_wait_for_a_free_slot() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("[limits]\nmax_connections = 4")
        .spawn()
        .await;
    // Four kept-alive connections, each after one complete exchange.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(tandem.proxy).await.unwrap();
        stream
            .write_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 1024];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    // A fifth connection is not served while the four are open...
    let fifth_url = tandem.url("/fifth");
    let fifth = tokio::spawn(async move { get(&fifth_url).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !fifth.is_finished(),
        "the fifth connection waits for a slot"
    );
    assert!(upstream.seen_at("/fifth").is_empty());
    // ...and is once one of them closes.
    drop(held.pop());
    let reply = tokio::time::timeout(Duration::from_secs(5), fifth)
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_websocket_holds_its_connection_slot_until_it_closes() {
    let echo = crate::support::websocket::echo_server().await;
    let tandem = TandemBuilder::new(format!("http://{echo}"))
        .config("[limits]\nmax_connections = 1")
        .spawn()
        .await;
    let mut socket = crate::support::websocket::connect(tandem.proxy).await;
    let open = || async {
        let text = get(&tandem.admin_url("/metrics")).await.text();
        metric(&text, "tandem_connections_open")
    };
    assert_eq!(open().await, Some(1.0), "the tunnel counts as open");

    // The only slot is the tunnel's: another connection waits...
    let next_url = tandem.url("/next");
    let next = tokio::spawn(async move { get(&next_url).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !next.is_finished(),
        "the next connection waits for the slot"
    );
    socket
        .send(tokio_tungstenite::tungstenite::Message::text("still here"))
        .await
        .unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "still here");

    // ...until the tunnel closes.
    socket.close(None).await.unwrap();
    drop(socket);
    let reply = tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .expect("served once the tunnel is closed")
        .unwrap();
    // The upstream speaks only WebSocket; any answer means it was served.
    assert_ne!(reply.status, StatusCode::SWITCHING_PROTOCOLS);
    assert!(
        eventually(Duration::from_secs(5), async || open().await == Some(0.0)).await,
        "the gauge comes back to zero"
    );
}
