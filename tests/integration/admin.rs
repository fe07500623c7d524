//! The admin listener: health, readiness, the plugin list and metrics.

use http::StatusCode;

use crate::support::client::get;
use crate::support::tandem::TandemBuilder;
use crate::support::upstream::Upstream;

#[tokio::test]
async fn health_readiness_plugins_and_metrics() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "deny",
            "deny-path",
            "order = 5\n[config]\nprefixes = [\"/private\"]\n",
        )
        .spawn()
        .await;
    assert_eq!(
        get(&tandem.admin_url("/healthz")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&tandem.admin_url("/readyz")).await.status,
        StatusCode::OK
    );

    let plugins: serde_json::Value =
        serde_json::from_slice(&get(&tandem.admin_url("/plugins")).await.body).unwrap();
    let deny = &plugins["plugins"][0];
    assert_eq!(deny["name"], "deny");
    assert_eq!(deny["order"], 5);
    assert_eq!(deny["hooks"], serde_json::json!(["on-request"]));
    assert_eq!(deny["failure"], "closed");
    assert_eq!(deny["state"], "serving");
    assert_eq!(deny["sha256"].as_str().unwrap().len(), 64);
    assert!(deny["loaded_at"].as_str().unwrap().ends_with('Z'));

    for _ in 0..7 {
        assert_eq!(get(&tandem.url("/ok")).await.status, StatusCode::OK);
    }
    for _ in 0..3 {
        assert_eq!(
            get(&tandem.url("/private/x")).await.status,
            StatusCode::FORBIDDEN
        );
    }
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("tandem_requests_total{class=\"2xx\"} 7"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_requests_total{class=\"4xx\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_plugin_calls_total{hook=\"on-request\",plugin=\"deny\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("deny_path_rejections_total"),
        "plugin metrics are exposed too:\n{metrics}"
    );
    assert!(
        metrics.contains("tandem_plugin_hook_duration_seconds_bucket"),
        "{metrics}"
    );

    drop(upstream);
    let ready = get(&tandem.admin_url("/readyz")).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready while the upstream is down"
    );
}
