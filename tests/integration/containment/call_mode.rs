//! Hook calls start synchronous, on the worker's own stack. A call that
//! runs for a whole epoch tick moves the plugin's calls to a fiber (where
//! they yield at every tick) for a cool-down; a call that waits (a sleep)
//! moves them to a fiber with WASI linked asynchronously for good. The
//! requests get what the failure policy says throughout, and plugins whose
//! calls stay quick stay synchronous.

use std::time::{Duration, Instant};

use http::StatusCode;

use super::traffic::{NormalTraffic, metric};
use crate::support::client::get;
use crate::support::eventually;
use crate::support::tandem::{Tandem, TandemBuilder};
use crate::support::upstream::Upstream;

/// Far above the deadlines below, for a busy machine.
const ANSWER_BOUND: Duration = Duration::from_secs(5);

fn hostile(misbehave: &str, prefix: &str) -> String {
    format!(
        "failure = \"open\"\nhook_timeout_ms = 100\nquarantine_ms = 0\n\
         [config]\nmisbehave = \"{misbehave}\"\nhook = \"on-request\"\nprefix = \"{prefix}\"\n"
    )
}

async fn calls(tandem: &Tandem, plugin: &str) -> String {
    let entry = tandem.plugin(plugin).await.expect("listed");
    entry["calls"].as_str().expect("a string").to_owned()
}

/// GETs `path`: the policy is open, so the upstream answers, in time.
async fn passes(tandem: &Tandem, path: &str) {
    let started = Instant::now();
    let reply = get(&tandem.url(path)).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    assert!(started.elapsed() < ANSWER_BOUND, "{path} answered in time");
}

#[tokio::test]
async fn long_and_waiting_calls_move_a_plugin_off_the_synchronous_path() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("looper", "hostile", &hostile("loop", "/loop/"))
        .plugin("sleeper", "hostile", &hostile("sleep", "/sleep/"))
        .plugin("quiet", "hostile", &hostile("loop", "/never/"))
        .spawn()
        .await;
    for plugin in ["looper", "sleeper", "quiet"] {
        assert_eq!(calls(&tandem, plugin).await, "synchronous", "{plugin}");
    }
    let normal = NormalTraffic::start(tandem.url("/normal"));

    // Every plugin sees every request; only the one whose prefix matches
    // misbehaves.
    passes(&tandem, "/loop/x").await;
    assert_eq!(calls(&tandem, "looper").await, "fiber");
    passes(&tandem, "/sleep/x").await;
    assert_eq!(calls(&tandem, "sleeper").await, "fiber-async-wasi");
    // The second of each runs on the fiber, and ends at its deadline too.
    passes(&tandem, "/loop/x").await;
    passes(&tandem, "/sleep/x").await;
    assert_eq!(
        calls(&tandem, "sleeper").await,
        "fiber-async-wasi",
        "for good"
    );

    let served = normal.finish().await;
    assert!(
        served.failed.is_empty(),
        "normal requests failed: {served:?}"
    );
    assert!(served.ok > 0, "normal requests were served meanwhile");
    assert_eq!(calls(&tandem, "quiet").await, "synchronous");

    // Both calls of each are timeouts, whichever way they were made.
    for plugin in ["looper", "sleeper"] {
        let series = format!(
            "tandem_plugin_failures_total{{hook=\"on-request\",kind=\"timeout\",plugin=\"{plugin}\"}}"
        );
        let counted = eventually(Duration::from_secs(10), async || {
            let metrics = get(&tandem.admin_url("/metrics")).await.text();
            metric(&metrics, &series) == Some(2.0)
        })
        .await;
        assert!(counted, "{series} is 2");
    }
}

/// A synchronous call runs on the worker's own stack, so the worker is
/// started with room for the largest guest stack allowed: a guest that
/// recurses to its limit fails with kind `stack` and the host stays up.
#[tokio::test]
async fn a_guest_that_recurses_through_a_large_stack_fails_alone() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("[limits]\nplugin_stack_kb = 8192")
        .plugin(
            "recurse",
            "hostile",
            "failure = \"closed\"\nhook_timeout_ms = 2000\n\
             [config]\nmisbehave = \"recurse\"\nhook = \"on-request\"\nprefix = \"/deep/\"\n",
        )
        .spawn()
        .await;
    assert_eq!(calls(&tandem, "recurse").await, "synchronous");
    for _ in 0..2 {
        let reply = get(&tandem.url("/deep/x")).await;
        assert_eq!(
            reply.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            reply.text()
        );
    }
    passes(&tandem, "/shallow").await;
    let series =
        "tandem_plugin_failures_total{hook=\"on-request\",kind=\"stack\",plugin=\"recurse\"}";
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(metric(&metrics, series), Some(2.0), "{series}");
}
