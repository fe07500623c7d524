//! The proxy itself: pass-through, streaming, h2c, upgrades, upstream
//! failures and graceful shutdown.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::support::client::{get, get_with, send_body};
use crate::support::eventually;
use crate::support::raw_upstream::RawUpstream;
use crate::support::tandem::TandemBuilder;
use crate::support::upstream::{Upstream, pattern};

async fn plain_tandem(upstream: &Upstream) -> crate::support::tandem::Tandem {
    TandemBuilder::new(format!("http://{}", upstream.addr))
        .spawn()
        .await
}

#[tokio::test]
async fn get_and_post_pass_through_byte_exact_with_forwarding_headers() {
    let upstream = Upstream::start().await;
    let tandem = plain_tandem(&upstream).await;

    let reply = get_with(
        &tandem.url("/hello?x=1"),
        &[
            ("x-custom", "kept"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "dropped"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "hello from upstream");
    let seen = upstream.seen_at("/hello?x=1");
    assert_eq!(seen.len(), 1);
    let headers = &seen[0].headers;
    assert_eq!(headers["x-custom"], "kept");
    assert!(
        headers.get("x-hop").is_none(),
        "headers named in Connection are hop-by-hop"
    );
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(
        headers["host"],
        tandem.proxy.to_string(),
        "the client's Host is kept"
    );

    let body: Vec<u8> = pattern(1 << 20).into_iter().rev().collect();
    let reply = send_body(Method::POST, &tandem.url("/echo"), body.clone()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-upstream"), Some("echo"));
    assert!(reply.body == body, "POST body comes back byte-exact");
}

#[tokio::test]
async fn ten_megabytes_stream_both_ways_and_chunked_bodies_pass() {
    let upstream = Upstream::start().await;
    let tandem = plain_tandem(&upstream).await;
    let ten_mb = 10 * 1024 * 1024;

    // Response: the upstream streams 10 MB without a length.
    let reply = get(&tandem.url(&format!("/stream?bytes={ten_mb}"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), ten_mb);
    assert!(reply.body == pattern(ten_mb), "10 MB response byte-exact");

    // Request: 10 MB sent chunked (no content-length), echoed back.
    let stream = TcpStream::connect(tandem.proxy).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let data = pattern(ten_mb);
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = data
        .chunks(100_000)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let request = Request::post("/echo")
        .header("host", "tandem")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.len(), ten_mb);
    assert!(echoed == data, "chunked 10 MB request byte-exact");
    let seen = upstream.seen_at("/echo");
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].headers["transfer-encoding"], "chunked");
}

#[tokio::test]
async fn h2c_prior_knowledge_works() {
    let upstream = Upstream::start().await;
    let tandem = plain_tandem(&upstream).await;
    let stream = TcpStream::connect(tandem.proxy).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("http://{}/h2", tandem.proxy))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello from upstream");
    let request = Request::post(format!("http://{}/echo", tandem.proxy))
        .body(Full::new(Bytes::from_static(b"over h2")))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(
        &response.into_body().collect().await.unwrap().to_bytes()[..],
        b"over h2"
    );
    let seen = upstream.seen_at("/h2");
    assert_eq!(
        seen[0].headers["host"],
        tandem.proxy.to_string(),
        "authority becomes Host upstream"
    );
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    // A real WebSocket echo server as the upstream.
    let ws_addr = crate::support::websocket::echo_server().await;
    // Through a plugin that reads the 101 and writes its status back.
    let tandem = TandemBuilder::new(format!("http://{ws_addr}"))
        .plugin("probe", "chain-probe", "[config]\nname = \"p\"\n")
        .spawn()
        .await;
    let mut socket = crate::support::websocket::connect(tandem.proxy).await;
    for text in ["ping", "a second message"] {
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
}

#[tokio::test]
async fn refused_upstream_is_502_and_slow_upstream_is_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tandem = TandemBuilder::new(format!("http://{closed}")).spawn().await;
    let reply = get_with(&tandem.url("/"), &[("x-request-id", "req-502")]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"], "upstream_unreachable");
    assert_eq!(json["request_id"], "req-502");

    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("upstream_timeout_ms = 300")
        .spawn()
        .await;
    let started = std::time::Instant::now();
    let reply = get(&tandem.url("/slow?ms=5000")).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout, not the upstream, ended it"
    );
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"], "upstream_timeout");
}

/// An upstream that stops sending in the middle of a body is cut off after
/// `upstream_body_timeout_ms` of silence: the client's connection closes
/// short of the body's end, and the failure is counted.
#[tokio::test]
async fn an_upstream_silent_in_the_middle_of_its_body_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Ten bytes of a hundred, then nothing, the connection left open.
    let upstream = RawUpstream::start(|_| {
        Some(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789".as_slice())
    })
    .await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("upstream_body_timeout_ms = 500")
        .spawn()
        .await;
    let mut stream = TcpStream::connect(tandem.proxy).await.unwrap();
    stream
        .write_all(b"GET /stalls HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the connection was cut, not left waiting")
        .ok();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(5),
        "cut after the silence, not before and not much after: {elapsed:?}"
    );
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("0123456789"),
        "the ten bytes, no more: {text}"
    );
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("tandem_upstream_failures_total{reason=\"response_body\"} 1"),
        "{metrics}"
    );
}

/// An upstream that answers the first request on each connection and
/// closes the connection without answering when the second one arrives, as
/// one whose keep-alive timer fires just then does.
async fn upstream_that_drops_second_requests() -> RawUpstream {
    RawUpstream::start(|head| {
        (head == 0).then_some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".as_slice())
    })
    .await
}

#[tokio::test]
async fn a_get_whose_pooled_connection_closes_under_it_goes_again_and_a_post_gets_502() {
    use std::sync::atomic::Ordering;
    let RawUpstream {
        addr: address,
        accepted,
        ..
    } = upstream_that_drops_second_requests().await;
    // One worker, so that both requests use the same upstream pool.
    let tandem = TandemBuilder::new(format!("http://{address}"))
        .config("workers = 1")
        .spawn()
        .await;
    let first = get(&tandem.url("/first")).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = get(&tandem.url("/second")).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    assert_eq!(second.text(), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("tandem_upstream_resends_total{reason=\"closed\"} 1"),
        "{metrics}"
    );

    // A request with a body is not sent twice: its client gets the 502.
    let post = send_body(Method::POST, &tandem.url("/post"), b"once".to_vec()).await;
    assert_eq!(post.status, StatusCode::BAD_GATEWAY, "{}", post.text());
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("tandem_upstream_resends_total{reason=\"closed\"} 1"),
        "{metrics}"
    );
}

/// With `shutdown_delay_ms`, the first SIGTERM makes `/readyz` answer 503
/// while new connections are still accepted and served (a load balancer
/// that has not yet seen the pod go unready still sends some); a second
/// signal cuts the delay short, and Tandem drains and exits.
#[tokio::test]
async fn the_shutdown_delay_serves_while_unready_until_a_second_signal() {
    let upstream = Upstream::start().await;
    let mut tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("shutdown_delay_ms = 600000")
        .spawn()
        .await;
    tandem.terminate();
    let unready = eventually(Duration::from_secs(5), async || {
        get(&tandem.admin_url("/readyz")).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(unready, "/readyz is 503 from the first signal on");
    for attempt in 0..3 {
        // Each on a new connection, a while apart.
        let path = format!("/after-signal/{attempt}");
        let reply = get(&tandem.url(&path)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(upstream.seen_at(&path).len(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        tandem.logs().contains("still serving new connections"),
        "{}",
        tandem.logs()
    );
    tandem.terminate();
    let status = tandem.wait(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "clean exit after the second signal: {status:?}"
    );
    assert!(tandem.logs().contains("second signal: draining now"));
    assert!(
        TcpStream::connect(tandem.proxy).await.is_err(),
        "no longer accepting"
    );
}

/// A signal during the drain ends it: the requests still in flight are cut
/// at once instead of at the end of a long grace.
#[tokio::test]
async fn a_second_signal_during_the_drain_cuts_what_is_left() {
    let upstream = Upstream::start().await;
    let mut tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("shutdown_grace_ms = 600000")
        .spawn()
        .await;
    let url = tandem.url("/slow?ms=60000");
    let in_flight = tokio::spawn(async move { get(&url).await });
    let reached = eventually(Duration::from_secs(5), async || {
        !upstream.seen_at("/slow?ms=60000").is_empty()
    })
    .await;
    assert!(reached, "the slow request reached the upstream");
    tandem.terminate();
    let draining = eventually(Duration::from_secs(5), async || {
        tandem.logs().contains("draining in-flight requests")
    })
    .await;
    assert!(draining, "{}", tandem.logs());
    tandem.terminate();
    let status = tandem.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    let logs = tandem.logs();
    assert!(logs.contains("another signal while draining"), "{logs}");
    assert!(logs.contains("drained=false"), "{logs}");
    let _ = in_flight.await;
}

/// A client that never finishes its request head is closed at the header
/// read timeout during the drain as at any other time, so it cannot hold
/// the drain open for the whole grace.
#[tokio::test]
async fn a_half_sent_head_does_not_hold_the_drain_open() {
    use tokio::io::AsyncWriteExt;
    let upstream = Upstream::start().await;
    let mut tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("shutdown_grace_ms = 600000\n[limits]\nheader_read_timeout_ms = 500")
        .spawn()
        .await;
    let mut slow = TcpStream::connect(tandem.proxy).await.unwrap();
    slow.write_all(b"GET /never HTTP/1.1\r\nhost: app\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tandem.terminate();
    let status = tandem.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    assert!(tandem.logs().contains("drained=true"), "{}", tandem.logs());
    assert!(upstream.seen_at("/never").is_empty());
    drop(slow);
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_then_exits() {
    let upstream = Upstream::start().await;
    let mut tandem = plain_tandem(&upstream).await;
    let url = tandem.url("/slow?ms=3000");
    let in_flight = tokio::spawn(async move { get(&url).await });
    assert!(
        eventually(Duration::from_secs(5), async || !upstream
            .seen_at("/slow?ms=3000")
            .is_empty())
        .await,
        "the slow request reached the upstream"
    );
    tandem.terminate();
    // While the request drains, readiness says no and liveness yes.
    let unready = eventually(Duration::from_secs(1), async || {
        get(&tandem.admin_url("/readyz")).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(unready, "/readyz is 503 while draining");
    assert_eq!(
        get(&tandem.admin_url("/healthz")).await.status,
        StatusCode::OK
    );
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "slow done");
    let status = tandem.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "clean exit after draining: {status:?}");
    assert!(
        TcpStream::connect(tandem.proxy).await.is_err(),
        "no longer accepting"
    );
}

/// Writes `sent` on a new connection to `proxy` and reads until the proxy
/// closes it (at most 10 s, or the test fails `closing`).
async fn send_until_closed(proxy: std::net::SocketAddr, sent: &[u8], closing: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(sent).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect(closing)
        .unwrap();
    received
}

/// Splits pipelined HTTP/1.1 responses at their status lines, without
/// their `date` lines (the only thing that may differ between two answers
/// to the same request).
fn responses_without_dates(text: &str) -> Vec<String> {
    text.split("HTTP/1.1 ")
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            piece
                .split("\r\n")
                .filter(|line| !line.starts_with("date: "))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// HTTP/1.1 requires a Host on the upstream leg; an HTTP/1.0 client may
/// send none, and then the upstream's own name goes.
#[tokio::test]
async fn an_http_1_0_request_without_host_reaches_the_upstream_with_its_name() {
    let upstream = Upstream::start().await;
    let tandem = plain_tandem(&upstream).await;
    let received = send_until_closed(
        tandem.proxy,
        b"GET /plain?old=1 HTTP/1.0\r\n\r\n",
        "an HTTP/1.0 connection closes after its answer",
    )
    .await;
    let received = String::from_utf8_lossy(&received);
    assert!(
        received.starts_with("HTTP/1.") && received.contains(" 200 OK\r\n"),
        "{received}"
    );
    let seen = upstream.seen_at("/plain?old=1");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["host"], upstream.addr.to_string());
}

/// With no plugin that reads responses, an answer's header lines go to
/// the client as the upstream sent them (names in lower case), without a
/// header map; hyper, after the hand-over, writes from a map. Both must
/// read the same, byte for byte (the upstream sends its own date).
#[tokio::test]
async fn header_lines_kept_as_received_read_as_a_header_map_writes_them() {
    let upstream = RawUpstream::start(|_| {
        Some(
            b"HTTP/1.1 200 OK\r\nX-Mixed-Case: Stays As Sent\r\nContent-Length: 2\r\n\
              Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nCache-Control: no-store\r\n\r\nok"
                .as_slice(),
        )
    })
    .await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .spawn()
        .await;
    let get = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
    let upload = "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
    let last = "GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let received = send_until_closed(
        tandem.proxy,
        format!("{get}{get}{upload}{get}{last}").as_bytes(),
        "the connection closes after the last request",
    )
    .await;
    let text = String::from_utf8_lossy(&received);
    let answer = "HTTP/1.1 200 OK\r\nx-mixed-case: Stays As Sent\r\ncontent-length: 2\r\n\
                  date: Thu, 01 Jan 2026 00:00:00 GMT\r\ncache-control: no-store\r\n\r\nok";
    let closing = "HTTP/1.1 200 OK\r\nx-mixed-case: Stays As Sent\r\ncontent-length: 2\r\n\
                   date: Thu, 01 Jan 2026 00:00:00 GMT\r\ncache-control: no-store\r\n\
                   connection: close\r\n\r\nok";
    assert_eq!(text, format!("{answer}{answer}{answer}{answer}{closing}"));
}

/// A plain request's header lines go upstream as the client sent them
/// (names in lower case), followed by the proxy's two: byte for byte what
/// the header map path writes for the same request, whether that path is
/// taken by the own reader (a hop-by-hop header makes it) or by hyper
/// (after a request with a body handed the connection over).
#[tokio::test]
async fn request_lines_kept_as_received_go_upstream_as_a_header_map_writes_them() {
    let upstream =
        RawUpstream::start(|_| Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".as_slice()))
            .await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .spawn()
        .await;
    let plain = "GET /a?b=1 HTTP/1.1\r\nHost: app\r\nX-Mixed: Stays As Sent\r\nAccept: */*\r\n\r\n";
    let hop = "GET /a?b=1 HTTP/1.1\r\nHost: app\r\nX-Mixed: Stays As Sent\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n";
    let upload = "POST /b HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\n\r\nhi";
    // A repeated name keeps the client's order only as received lines (a
    // map groups it): this shows the lines path is the one taken.
    let repeated = "GET /r HTTP/1.1\r\nHost: app\r\nX-Two: 1\r\nAccept: */*\r\nX-Two: 2\r\n\r\n";
    let last = "GET /c HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n";
    send_until_closed(
        tandem.proxy,
        format!("{repeated}{plain}{hop}{upload}{plain}{last}").as_bytes(),
        "the connection closes after the last request",
    )
    .await;
    let mut heads: Vec<String> = upstream
        .heads
        .lock()
        .unwrap()
        .iter()
        .map(|head| String::from_utf8_lossy(head).into_owned())
        .collect();
    assert_eq!(heads.len(), 6, "{heads:#?}");
    assert_eq!(
        heads.remove(0),
        "GET /r HTTP/1.1\r\nhost: app\r\nx-two: 1\r\naccept: */*\r\nx-two: 2\r\n\
         x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\r\n",
        "lines as received, in the client's order"
    );
    let expected = "GET /a?b=1 HTTP/1.1\r\nhost: app\r\nx-mixed: Stays As Sent\r\naccept: */*\r\n\
                    x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\r\n";
    assert_eq!(heads[0], expected, "lines as received");
    assert_eq!(heads[1], expected, "the own reader's map");
    // The raw upstream reads heads only: the upload's body comes first.
    assert_eq!(heads[3], format!("hi{expected}"), "hyper's map");
}

/// Common requests are served by Tandem's own HTTP/1.1 reader, and the
/// first request with a body hands the connection to hyper: the same
/// requests must get byte-for-byte the same answers (date aside) on either
/// side of that hand-over, chunked, HEAD and error answers included.
#[tokio::test]
async fn answers_read_the_same_before_and_after_a_connection_goes_to_hyper() {
    let upstream = Upstream::start().await;
    let tandem = plain_tandem(&upstream).await;
    let common = "GET /stream?bytes=100 HTTP/1.1\r\nHost: a\r\n\r\n\
                  HEAD /plain HTTP/1.1\r\nHost: a\r\n\r\n\
                  GET /status/404 HTTP/1.1\r\nHost: a\r\n\r\n\
                  DELETE /plain?x=1 HTTP/1.1\r\nHost: a\r\nX-Many: 1\r\nX-Many: 2\r\n\r\n";
    let body = "POST /drain HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
    let last = "GET /plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let received = send_until_closed(
        tandem.proxy,
        format!("{common}{body}{common}{last}").as_bytes(),
        "the connection closes after the last request",
    )
    .await;
    let responses = responses_without_dates(&String::from_utf8_lossy(&received));
    assert_eq!(responses.len(), 10, "{responses:#?}");
    assert_eq!(responses[..4], responses[5..9], "own reader, then hyper");
    assert!(
        responses[0].contains("transfer-encoding: chunked"),
        "{}",
        responses[0]
    );
    assert!(
        responses[1].contains("content-length: 19"),
        "{}",
        responses[1]
    );
    assert!(
        responses[1].ends_with("||"),
        "HEAD has no body: {}",
        responses[1]
    );
    assert!(
        responses[2].starts_with("404 Not Found|"),
        "{}",
        responses[2]
    );
    assert!(
        responses[4].ends_with("||2"),
        "the upload arrived: {}",
        responses[4]
    );
    assert!(
        responses[9].contains("connection: close"),
        "{}",
        responses[9]
    );
    let seen = upstream.seen();
    let deletes: Vec<_> = seen.iter().filter(|s| s.method == Method::DELETE).collect();
    assert_eq!(deletes.len(), 2);
    for delete in deletes {
        assert_eq!(delete.target, "/plain?x=1");
        assert_eq!(delete.headers.get_all("x-many").iter().count(), 2);
        assert_eq!(delete.headers["x-forwarded-proto"], "http");
    }
}
