//! A plugin that keeps failing is tripped out of the chain for a
//! cool-down, as `/plugins` and `/metrics` show: `closed` fails fast with
//! a 503, `open` skips it without calling it; after the cool-down one good
//! call puts it back.

use std::time::{Duration, Instant};

use http::StatusCode;

use super::traffic::metric;
use crate::support::client::get;
use crate::support::eventually;
use crate::support::tandem::TandemBuilder;
use crate::support::upstream::Upstream;

/// The plugin's settings. Its deadline is generous: on a busy two-core
/// machine a worker thread can be descheduled for longer than the default
/// 100 ms, and a timeout in any hook would count as one more failure than
/// the traps the tests count.
fn settings(failure: &str) -> String {
    format!(
        "failure = \"{failure}\"\ntrip_after = 3\ntrip_cooldown_ms = 1500\nhook_timeout_ms = 10000\n\
         [config]\nmisbehave = \"trap\"\nhook = \"on-request\"\nprefix = \"/bad\"\n"
    )
}

#[tokio::test]
async fn closed_plugin_trips_fails_fast_and_recovers() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("brittle", "hostile", &settings("closed"))
        .spawn()
        .await;
    // The third failure trips it in on-request; its own on-response (which
    // runs for every plugin the request reached) then finds it tripped.
    let statuses = [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::SERVICE_UNAVAILABLE,
    ];
    for status in statuses {
        let reply = get(&tandem.url("/bad")).await;
        assert_eq!(reply.status, status, "{}", reply.text());
    }
    let brittle = tandem.plugin("brittle").await.unwrap();
    assert_eq!(brittle["state"], "tripped", "{brittle}");
    assert_eq!(brittle["trips"], 1);
    assert_eq!(brittle["failures"], 3);

    // While tripped, even a request it would have served fails fast.
    let reply = get(&tandem.url("/good")).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"], "plugin_tripped");
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert!(upstream.seen_at("/good").is_empty());

    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(&metrics, "tandem_plugin_trips_total{plugin=\"brittle\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "tandem_plugin_tripped{plugin=\"brittle\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "tandem_plugin_tripped_calls_total{hook=\"on-request\",plugin=\"brittle\"}"
        ),
        Some(1.0)
    );
    assert!(
        tandem.logs().contains("plugin tripped out of the chain"),
        "the trip is logged"
    );

    // After the cool-down, a good call closes the breaker again.
    let started = Instant::now();
    let recovered = eventually(Duration::from_secs(10), async || {
        get(&tandem.url("/good")).await.status == StatusCode::OK
    })
    .await;
    assert!(recovered, "serving again after the cool-down");
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(tandem.plugin("brittle").await.unwrap()["state"], "serving");
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(&metrics, "tandem_plugin_tripped{plugin=\"brittle\"}"),
        Some(0.0)
    );
}

#[tokio::test]
async fn open_plugin_trips_and_is_skipped_without_being_called() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        // A cool-down far longer than the test, so that a slow, busy machine
        // cannot let a probe call through before the assertions.
        .plugin(
            "flaky",
            "hostile",
            &settings("open").replace("trip_cooldown_ms = 1500", "trip_cooldown_ms = 600000"),
        )
        .spawn()
        .await;
    for _ in 0..10 {
        let reply = get(&tandem.url("/bad")).await;
        assert_eq!(reply.status, StatusCode::OK, "fail-open: skipped");
    }
    let flaky = tandem.plugin("flaky").await.unwrap();
    assert_eq!(flaky["state"], "tripped");
    assert_eq!(
        flaky["failures"],
        3,
        "after three failures it is no longer called: {flaky}\n{}",
        super::traffic::plain(&tandem.logs())
    );
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(
            &metrics,
            "tandem_plugin_tripped_calls_total{hook=\"on-request\",plugin=\"flaky\"}"
        ),
        Some(7.0)
    );
}
