//! A plugin that runs past its deadline is quarantined: its long calls
//! move to the low-priority lane, as `/plugins` and `/metrics` show, its requests
//! still get what its failure policy says, other requests are served
//! meanwhile, and a whole cool-down without a timeout brings it back. A
//! flood of calls to a quarantined plugin is refused beyond the lane's cap
//! instead of queueing.

use std::time::{Duration, Instant};

use http::StatusCode;

use super::traffic::{NormalTraffic, metric, plain};
use crate::support::client::get;
use crate::support::eventually;
use crate::support::tandem::{Tandem, TandemBuilder};
use crate::support::upstream::Upstream;

/// Far above the deadlines below, for a busy machine.
const ANSWER_BOUND: Duration = Duration::from_secs(5);

fn looping(failure: &str, prefix: &str, extra: &str) -> String {
    format!(
        "failure = \"{failure}\"\nhook_timeout_ms = 50\n{extra}\
         [config]\nmisbehave = \"loop\"\nhook = \"on-request\"\nprefix = \"{prefix}\"\n"
    )
}

/// GETs `path` and checks the status and that it came within the bound.
async fn expect(tandem: &Tandem, path: &str, status: StatusCode) {
    let started = Instant::now();
    let reply = get(&tandem.url(path)).await;
    assert_eq!(reply.status, status, "{path}: {}", reply.text());
    assert!(started.elapsed() < ANSWER_BOUND, "{path} answered in time");
}

#[tokio::test]
async fn looping_plugin_is_quarantined_and_released_after_the_cooldown() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        // Long enough that a busy machine does not end it between the
        // looping requests and the checks that follow them.
        .plugin(
            "looper",
            "hostile",
            &looping("open", "/loop", "quarantine_ms = 3000\n"),
        )
        .plugin(
            "strict",
            "hostile",
            &looping("closed", "/strict", "quarantine_ms = 600000\n"),
        )
        .spawn()
        .await;
    assert_eq!(tandem.plugin("looper").await.unwrap()["state"], "serving");
    let normal = NormalTraffic::start(tandem.url("/normal"));

    // The first timeout (on the workers) quarantines; the next calls run on
    // the lane, time out there too, and the policy still decides.
    for _ in 0..3 {
        expect(&tandem, "/loop", StatusCode::OK).await;
        expect(&tandem, "/strict", StatusCode::INTERNAL_SERVER_ERROR).await;
    }
    let looper = tandem.plugin("looper").await.unwrap();
    assert_eq!(looper["state"], "quarantined", "{looper}");
    assert!(looper["quarantines"].as_u64().unwrap() >= 1, "{looper}");
    assert!(looper["quarantine_remaining_ms"].as_u64().unwrap() > 0);
    assert_eq!(
        tandem.plugin("strict").await.unwrap()["state"],
        "quarantined"
    );

    let served = normal.finish().await;
    assert!(served.failed.is_empty(), "{:?}", served.failed);
    assert!(served.ok > 0, "normal requests were served meanwhile");
    assert_eq!(upstream.seen_at("/loop").len(), 3, "fail-open: skipped");
    assert!(upstream.seen_at("/strict").is_empty(), "fail-closed");

    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    for plugin in ["looper", "strict"] {
        assert_eq!(
            metric(
                &metrics,
                &format!(
                    "tandem_plugin_failures_total{{hook=\"on-request\",kind=\"timeout\",plugin=\"{plugin}\"}}"
                )
            ),
            Some(3.0),
            "{plugin}: every looping call stopped at its deadline, on the lane too"
        );
        assert_eq!(
            metric(
                &metrics,
                &format!("tandem_plugin_quarantined{{plugin=\"{plugin}\"}}")
            ),
            Some(1.0)
        );
        // The looping calls after the first one moved to the lane (the
        // quick calls of the normal traffic, which the plugin lets pass,
        // finish on the workers).
        let on_lane = metric(
            &metrics,
            &format!(
                "tandem_plugin_quarantined_calls_total{{hook=\"on-request\",plugin=\"{plugin}\"}}"
            ),
        )
        .unwrap();
        assert!(on_lane >= 2.0, "{plugin}: {on_lane} calls on the lane");
    }
    assert!(
        metric(
            &metrics,
            "tandem_plugin_quarantines_total{plugin=\"looper\"}"
        )
        .unwrap()
            >= 1.0
    );
    let logs = plain(&tandem.logs());
    assert!(
        logs.contains("plugin quarantined") && logs.contains("plugin=\"looper\""),
        "the quarantine is logged"
    );

    // A whole cool-down without a timeout ends it; the next call, on the
    // workers again, reports the release.
    let released = eventually(Duration::from_secs(30), async || {
        tandem.plugin("looper").await.unwrap()["state"] == "serving"
    })
    .await;
    assert!(released, "out of quarantine after the cool-down");
    expect(&tandem, "/normal", StatusCode::OK).await;
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(&metrics, "tandem_plugin_quarantined{plugin=\"looper\"}"),
        Some(0.0)
    );
    assert!(plain(&tandem.logs()).contains("plugin left quarantine"));
    // And a new timeout quarantines it again.
    let before = tandem.plugin("looper").await.unwrap()["quarantines"]
        .as_u64()
        .unwrap();
    expect(&tandem, "/loop", StatusCode::OK).await;
    let looper = tandem.plugin("looper").await.unwrap();
    assert_eq!(looper["state"], "quarantined", "{looper}");
    assert_eq!(looper["quarantines"].as_u64().unwrap(), before + 1);
}

#[tokio::test]
async fn a_flood_to_a_quarantined_plugin_is_refused_beyond_the_lane_cap() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "looper",
            "hostile",
            // Calls long enough to overlap on a slow machine.
            &looping("open", "/loop", "quarantine_ms = 600000\n")
                .replace("hook_timeout_ms = 50", "hook_timeout_ms = 1000"),
        )
        .spawn()
        .await;
    expect(&tandem, "/loop", StatusCode::OK).await;
    assert_eq!(
        tandem.plugin("looper").await.unwrap()["state"],
        "quarantined"
    );

    const FLOOD: usize = 48;
    let started = Instant::now();
    let replies = futures_util::future::join_all((0..FLOOD).map(|i| {
        let url = tandem.url(&format!("/loop/{i}"));
        async move { get(&url).await }
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "fail-open: {}", reply.text());
    }
    assert!(
        started.elapsed() < ANSWER_BOUND * 2,
        "the flood was answered"
    );

    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    let failures = |kind: &str| {
        metric(
            &metrics,
            &format!(
                "tandem_plugin_failures_total{{hook=\"on-request\",kind=\"{kind}\",plugin=\"looper\"}}"
            ),
        )
        .unwrap_or(0.0)
    };
    let refused = failures("unavailable");
    let timed_out = failures("timeout");
    assert!(refused >= 1.0, "beyond the cap, calls are refused at once");
    assert_eq!(
        refused + timed_out,
        (FLOOD + 1) as f64,
        "each call either ran to its deadline or was refused"
    );
    let on_lane = metric(
        &metrics,
        "tandem_plugin_quarantined_calls_total{hook=\"on-request\",plugin=\"looper\"}",
    )
    .unwrap();
    assert_eq!(
        on_lane,
        timed_out - 1.0,
        "all but the first ran on the lane"
    );
}
