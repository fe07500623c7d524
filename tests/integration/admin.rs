//! The admin listener: health, readiness, the plugin list and metrics.

use http::{Method, StatusCode};

use crate::support::client::{get, send_body};
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
    assert_eq!(plugins["allocator"], "pooling");
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
    // A wrong method gets a 405 that says which are allowed.
    for (method, path, allowed) in [
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::GET, "/reload", "POST"),
    ] {
        let reply = send_body(method, &tandem.admin_url(path), "").await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(reply.header("allow"), Some(allowed), "{path}");
    }

    // The upstream's listener closes once its aborted task is dropped,
    // which the runtime does in its own time: asked until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let ready = loop {
        let ready = get(&tandem.admin_url("/readyz")).await;
        if ready.status != StatusCode::OK || std::time::Instant::now() > deadline {
            break ready;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready while the upstream is down"
    );
}

#[tokio::test]
async fn without_address_space_for_the_pool_instances_are_allocated_on_demand() {
    use crate::support::tandem::{TANDEM, write_config_dir};
    use tokio::io::AsyncBufReadExt;

    let upstream = Upstream::start().await;
    let plugins = vec![(
        "probe".to_string(),
        crate::support::plugins::wasm("chain-probe"),
        Some("[config]\nname = \"p\"\n".to_string()),
    )];
    let dir = write_config_dir(&format!("http://{}", upstream.addr), &plugins, "");
    // 16 GiB of address space: far too little for the instance pool's
    // reservations, plenty for a few instances allocated on demand.
    let script = format!(
        "ulimit -v 16777216 && exec {TANDEM} run --config {}",
        dir.path().join("tandem.toml").display()
    );
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("tandem starts under ulimit -v")
        .unwrap()
        .expect("a listening line");
    let address = |key: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap()
            .to_owned()
    };
    let (proxy, admin) = (address("proxy="), address("admin="));
    let plugins: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{admin}/plugins")).await.body).unwrap();
    assert_eq!(plugins["allocator"], "on-demand");
    for _ in 0..20 {
        let reply = get(&format!("http://{proxy}/")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-chain-response"), Some("p"));
    }
}

/// Two plugins that count into one metric (here two copies of deny-path
/// under two names) add up, as a metric is just a name on `/metrics`; that
/// is seldom meant, so it is logged, naming both.
#[tokio::test]
async fn two_plugins_sharing_a_metric_are_warned_about() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "deny-admin",
            "deny-path",
            "order = 5\n[config]\nprefixes = [\"/admin\"]\n",
        )
        .plugin(
            "deny-internal",
            "deny-path",
            "order = 6\n[config]\nprefixes = [\"/internal\"]\n",
        )
        .spawn()
        .await;
    for path in ["/admin/x", "/internal/y"] {
        assert_eq!(
            get(&tandem.url(path)).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    for prefix in ["/admin", "/internal"] {
        let line = format!("deny_path_rejections_total{{prefix=\"{prefix}\"}} 1");
        assert!(metrics.contains(&line), "{line}:\n{metrics}");
    }
    let warnings: Vec<String> = tandem
        .logs()
        .lines()
        .filter(|line| line.contains("two plugins use one metric"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 1, "warned once: {warnings:?}");
    let warning = &warnings[0];
    assert!(
        warning.contains("deny_path_rejections_total")
            && warning.contains("deny-admin")
            && warning.contains("deny-internal"),
        "{warning}"
    );
}
