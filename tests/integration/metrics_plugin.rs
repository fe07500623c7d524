//! The metrics plugin: request counters by method, templated route and
//! status code, bounded labels, and output that `promtool` accepts.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::client::{get, send_body};
use crate::support::eventually;
use crate::support::promtool::check_metrics;
use crate::support::tandem::TandemBuilder;
use crate::support::upstream::Upstream;

/// The value of the sample `name{labels}` in Prometheus text, if present;
/// `labels` are compared as a set, whatever their order in the text.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (label_text, value) = rest.rsplit_once("} ")?;
        let found: BTreeMap<&str, &str> = label_text
            .split("\",")
            .filter_map(|pair| {
                let (k, v) = pair.split_once("=\"")?;
                Some((k, v.trim_end_matches('"')))
            })
            .collect();
        (found == wanted).then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn counters_match_the_requests_and_promtool_accepts_the_output() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "metrics",
            "metrics",
            "order = 1\n[config]\nroutes = [\"/orders/{id}\", \"/status/{code}\", \"/files/{path...}\", \"/slow\"]\n",
        )
        .spawn()
        .await;
    for id in 0..7 {
        assert_eq!(
            get(&tandem.url(&format!("/orders/{id}"))).await.status,
            StatusCode::OK
        );
    }
    for _ in 0..3 {
        assert_eq!(
            get(&tandem.url("/status/404")).await.status,
            StatusCode::NOT_FOUND
        );
    }
    for _ in 0..2 {
        let reply = get(&tandem.url("/status/503")).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    for n in 0..4 {
        // Every unknown path shares one label value.
        get(&tandem.url(&format!("/unknown/{n}/{n}"))).await;
    }
    get(&tandem.url("/files/a/b/c.txt")).await;
    let brew = Method::from_bytes(b"BREW").unwrap();
    send_body(brew, &tandem.url("/echo"), "coffee").await;

    let text = async || get(&tandem.admin_url("/metrics")).await.text();
    let total = |text: &str, method: &str, route: &str, code: &str| {
        sample(
            text,
            "http_requests_total",
            &[("method", method), ("route", route), ("code", code)],
        )
    };
    // on-log runs after the response is sent, so the last counts land a
    // moment after the last reply.
    let all_counted = eventually(Duration::from_secs(5), async || {
        total(&text().await, "other", "other", "200") == Some(1.0)
    })
    .await;
    let text = text().await;
    assert!(all_counted, "{text}");
    assert_eq!(
        total(&text, "GET", "/orders/{id}", "200"),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        total(&text, "GET", "/status/{code}", "404"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        total(&text, "GET", "/status/{code}", "503"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(total(&text, "GET", "other", "200"), Some(4.0), "{text}");
    assert_eq!(
        total(&text, "GET", "/files/{path...}", "200"),
        Some(1.0),
        "{text}"
    );
    let series = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .count();
    assert_eq!(series, 6, "one series per method, route and code:\n{text}");

    let duration = |route: &str| {
        sample(
            &text,
            "http_request_duration_seconds_count",
            &[("method", "GET"), ("route", route)],
        )
    };
    assert_eq!(duration("/orders/{id}"), Some(7.0), "{text}");
    assert_eq!(duration("/status/{code}"), Some(5.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "http_request_size_bytes_sum",
            &[("method", "other"), ("route", "other")]
        ),
        Some(6.0),
        "request bytes: {text}"
    );
    assert_eq!(
        sample(
            &text,
            "http_response_size_bytes_sum",
            &[("method", "other"), ("route", "other")]
        ),
        Some(6.0),
        "the echo sent the body back: {text}"
    );
    assert_eq!(
        sample(
            &text,
            "http_requests_in_flight",
            &[("method", "GET"), ("route", "/orders/{id}")]
        ),
        Some(0.0),
        "in flight goes back to 0: {text}"
    );
    check_metrics(&text).unwrap();

    // A request held by a slow upstream is in flight until it is done.
    let slow_url = tandem.url("/slow?ms=1500");
    let slow = tokio::spawn(async move { get(&slow_url).await });
    let in_flight = async |value: f64| {
        let text = get(&tandem.admin_url("/metrics")).await.text();
        sample(
            &text,
            "http_requests_in_flight",
            &[("method", "GET"), ("route", "/slow")],
        ) == Some(value)
    };
    assert!(eventually(Duration::from_secs(5), async || in_flight(1.0).await).await);
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert!(eventually(Duration::from_secs(5), async || in_flight(0.0).await).await);
}
