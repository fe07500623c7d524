//! The plugin chain: hook order, the property bag, short-circuits and
//! failure policies.

use std::time::Duration;

use http::StatusCode;

use crate::support::client::get;
use crate::support::eventually;
use crate::support::tandem::TandemBuilder;
use crate::support::upstream::Upstream;

fn probe(name: &str, order: i64) -> String {
    format!("order = {order}\n[config]\nname = \"{name}\"\n")
}

#[tokio::test]
async fn hooks_run_request_forward_then_response_and_log_in_reverse() {
    let upstream = Upstream::start().await;
    // Names sort against order, so the order key (not the name) decides.
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("c", "chain-probe", &probe("c", 1))
        .plugin("b", "chain-probe", &probe("b", 2))
        .plugin("a", "chain-probe", &probe("a", 3))
        .spawn()
        .await;

    let reply = get(&tandem.url("/status/201")).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let seen = upstream.seen_at("/status/201");
    assert_eq!(seen.len(), 1);
    let request_marks: Vec<_> = seen[0]
        .headers
        .get_all("x-chain-request")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        request_marks,
        ["c", "b", "a"],
        "on-request runs in chain order"
    );
    // Each probe appended itself to the trail it read from the property bag.
    assert_eq!(
        seen[0].headers["x-chain-trail"], "c,b,a,",
        "a property set by one plugin is read by the next"
    );

    let response_marks: Vec<_> = reply
        .headers
        .get_all("x-chain-response")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        response_marks,
        ["a", "b", "c"],
        "on-response runs in reverse"
    );
    for name in ["a", "b", "c"] {
        assert_eq!(
            reply.header(&format!("x-upstream-status-seen-by-{name}")),
            Some("201"),
            "on-response sees the upstream status"
        );
    }

    let logged_in_reverse = eventually(Duration::from_secs(5), async || {
        let logs = tandem.logs();
        let position = |name: &str| logs.find(&format!("probe=\"{name}\" status=\"201\""));
        matches!((position("a"), position("b"), position("c")), (Some(a), Some(b), Some(c)) if a < b && b < c)
    })
    .await;
    assert!(
        logged_in_reverse,
        "on-log runs in reverse with the final status; logs:\n{}",
        tandem.logs()
    );
}

#[tokio::test]
async fn a_reply_from_on_request_never_reaches_the_upstream() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("before", "chain-probe", &probe("before", 1))
        .plugin("responder", "responder", "order = 2\n[config]\nprefix = \"/blocked\"\nstatus = 418\nbody = \"short-circuited\"\n")
        .plugin("after", "chain-probe", &probe("after", 3))
        .spawn()
        .await;

    let reply = get(&tandem.url("/blocked/thing")).await;
    assert_eq!(reply.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(reply.text(), "short-circuited");
    assert_eq!(reply.header("x-responder"), Some("yes"));
    assert!(upstream.seen().is_empty(), "the upstream never saw it");
    // Only the plugins whose request phase ran see the response phase.
    let marks: Vec<_> = reply
        .headers
        .get_all("x-chain-response")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(marks, ["before"]);
    assert_eq!(
        reply.header("x-upstream-status-seen-by-before"),
        Some("418")
    );

    let reply = get(&tandem.url("/open")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.seen_at("/open").len(), 1);
}

#[tokio::test]
async fn failure_policies_decide_what_a_failing_plugin_does() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "open-trap",
            "failing",
            "order = 1\nfailure = \"open\"\n[config]\nmode = \"trap\"\n",
        )
        .plugin(
            "open-error",
            "failing",
            "order = 2\nfailure = \"open\"\n[config]\nmode = \"error\"\n",
        )
        .spawn()
        .await;
    for _ in 0..3 {
        let reply = get(&tandem.url("/")).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "fail-open plugins are skipped"
        );
    }
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains(
            r#"tandem_plugin_failures_total{hook="on-request",kind="trap",plugin="open-trap"} 3"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"tandem_plugin_failures_total{hook="on-request",kind="error",plugin="open-error"} 3"#
        ),
        "{metrics}"
    );
    assert!(
        tandem.logs().contains("deliberate"),
        "failures are logged with the plugin's words"
    );

    for (mode, kind) in [
        ("trap", "trap"),
        ("error", "error"),
        ("bad-status", "invalid"),
    ] {
        let upstream = Upstream::start().await;
        let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
            .plugin(
                "closed",
                "failing",
                &format!("failure = \"closed\"\n[config]\nmode = \"{mode}\"\n"),
            )
            .spawn()
            .await;
        for _ in 0..2 {
            let reply = get(&tandem.url("/")).await;
            assert_eq!(
                reply.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{mode}: fail-closed answers 500"
            );
            let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(json["error"], "plugin_failed");
        }
        assert!(
            upstream.seen().is_empty(),
            "{mode}: nothing reached the upstream"
        );
        let metrics = get(&tandem.admin_url("/metrics")).await.text();
        let line = format!(
            r#"tandem_plugin_failures_total{{hook="on-request",kind="{kind}",plugin="closed"}} 2"#
        );
        assert!(metrics.contains(&line), "{mode}: {line} in\n{metrics}");
        let health = get(&tandem.admin_url("/healthz")).await;
        assert_eq!(health.status, StatusCode::OK, "{mode}: the host stays up");
    }
}
