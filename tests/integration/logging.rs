//! Logging: access records from the access-log plugin, the application's
//! own records on `POST /logs`, and the records pipeline's sinks (stdout,
//! file, an HTTP collector that goes down and comes back).

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::client::{Reply, get, get_with, send_body};
use crate::support::collector::{Collector, Mode};
use crate::support::eventually;
use crate::support::tandem::{Tandem, TandemBuilder, check, write_config_dir};
use crate::support::upstream::Upstream;

/// How long records may take to show up.
const WAIT: Duration = Duration::from_secs(10);

/// The value of one sample on `/metrics`, e.g.
/// `tandem_records_dropped_total{reason="buffer_full"}`.
async fn metric(tandem: &Tandem, sample: &str) -> Option<f64> {
    let text = get(&tandem.admin_url("/metrics")).await.text();
    text.lines().find_map(|line| {
        line.strip_prefix(sample)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    })
}

/// The stdout lines after the listening line, each parsed as JSON.
fn stdout_records(tandem: &Tandem) -> Vec<Value> {
    tandem
        .stdout_lines()
        .iter()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
        })
        .collect()
}

/// Waits until stdout holds `n` records and returns them.
async fn wait_for_stdout_records(tandem: &Tandem, n: usize) -> Vec<Value> {
    let arrived = eventually(WAIT, async || tandem.stdout_lines().len() >= n).await;
    assert!(
        arrived,
        "expected {n} records on stdout, got {:?}; logs:\n{}",
        tandem.stdout_lines(),
        tandem.logs()
    );
    stdout_records(tandem)
}

/// An application log record as the seed's `SidecarLogger` sends it.
fn sidecar_logger_body(level: &str, message: &str, metadata: Option<Value>) -> String {
    let mut body = json!({
        "level": level,
        "message": message,
        "timestamp": "2025-01-31T12:00:00.000Z",
    });
    // JSON.stringify leaves out an undefined metadata.
    if let Some(metadata) = metadata {
        body["metadata"] = metadata;
    }
    body.to_string()
}

async fn post_log(url: &str, body: impl Into<bytes::Bytes>) -> Reply {
    send_body(Method::POST, url, body).await
}

/// The address after `key=` in the listening line.
fn listening_addr(tandem: &Tandem, key: &str) -> SocketAddr {
    tandem
        .listening
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {:?}", tandem.listening))
}

const ACCESS_LOG: &str = r#"order = 10
[config]
request_headers = ["authorization", "cookie", "accept"]
skip_paths = ["/healthz"]
static_fields = { service = "orders" }
"#;

#[tokio::test]
async fn every_request_gets_one_access_record_with_secrets_redacted() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("access-log", "access-log", ACCESS_LOG)
        .plugin(
            "auth",
            "set-property",
            "order = 20\n[config]\nproperties = { \"auth.subject\" = \"alice\" }\n",
        )
        .spawn()
        .await;

    // Skipped, and first, so its record would be there before the others.
    assert_eq!(get(&tandem.url("/healthz")).await.status, StatusCode::OK);
    let given = get_with(
        &tandem.url("/ok?token=s3cret&page=2"),
        &[
            ("authorization", "Bearer topsecret"),
            ("cookie", "session=hunter2"),
            ("accept", "text/plain"),
            ("user-agent", "test-agent/1.0"),
            ("x-request-id", "given-id-1"),
        ],
    )
    .await;
    assert_eq!(given.status, StatusCode::OK);
    let body = vec![b'x'; 1000];
    let echoed = send_body(Method::POST, &tandem.url("/echo"), body).await;
    assert_eq!(echoed.body.len(), 1000);
    assert_eq!(
        get(&tandem.url("/status/404")).await.status,
        StatusCode::NOT_FOUND
    );

    let all_logged = eventually(WAIT, async || {
        metric(
            &tandem,
            "tandem_plugin_calls_total{hook=\"on-log\",plugin=\"access-log\"}",
        )
        .await
            == Some(4.0)
    })
    .await;
    assert!(all_logged, "on-log ran for all four requests");
    let records = wait_for_stdout_records(&tandem, 3).await;
    assert_eq!(
        records.len(),
        3,
        "one record per request, none for /healthz: {records:#?}"
    );
    assert_eq!(
        metric(&tandem, "tandem_records_accepted_total{source=\"plugin\"}").await,
        Some(3.0)
    );

    let by_path = |path: &str| -> &Value {
        records
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("no record for {path}: {records:#?}"))
    };
    for record in &records {
        assert_eq!(record["source"], "access");
        let time = record["time"].as_str().unwrap();
        assert!(
            humantime::parse_rfc3339(time).is_ok(),
            "time is RFC 3339 UTC: {time}"
        );
        assert!(record["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(record["upstream_duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(
            record["client_addr"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
        assert_eq!(record["auth_subject"], "alice", "from the property bag");
        assert_eq!(record["service"], "orders", "static field");
        assert!(
            record["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
    }

    let ok = by_path("/ok");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["request_id"], "given-id-1", "taken from x-request-id");
    assert_eq!(ok["query"], "token=[REDACTED]&page=2");
    assert_eq!(ok["user_agent"], "test-agent/1.0");
    assert_eq!(ok["request_bytes"], 0);
    assert_eq!(ok["response_bytes"], "hello from upstream".len());
    assert_eq!(
        ok["request_headers"],
        json!({"authorization": "[REDACTED]", "cookie": "[REDACTED]", "accept": "text/plain"})
    );

    let echo = by_path("/echo");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["request_bytes"], 1000);
    assert_eq!(echo["response_bytes"], 1000);
    let generated = echo["request_id"].as_str().unwrap();
    assert_eq!(generated.len(), 36, "a generated UUID: {generated}");
    let seen = upstream.seen_at("/echo");
    assert_eq!(
        seen[0].headers["x-request-id"], generated,
        "the generated request id is forwarded upstream"
    );

    assert_eq!(by_path("/status/404")["status"], 404);

    let stdout = tandem.stdout_lines().join("\n");
    for secret in ["topsecret", "hunter2", "s3cret"] {
        assert!(!stdout.contains(secret), "{secret} leaked:\n{stdout}");
    }
}

#[tokio::test]
async fn sampling_at_zero_keeps_only_failed_exchanges() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "access-log",
            "access-log",
            "[config]\nsample_rate = 0.0\nalways_log_errors = true\n",
        )
        .spawn()
        .await;
    for _ in 0..5 {
        assert_eq!(get(&tandem.url("/ok")).await.status, StatusCode::OK);
    }
    for _ in 0..2 {
        assert_eq!(
            get(&tandem.url("/status/503")).await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let all_logged = eventually(WAIT, async || {
        metric(
            &tandem,
            "tandem_plugin_calls_total{hook=\"on-log\",plugin=\"access-log\"}",
        )
        .await
            == Some(7.0)
    })
    .await;
    assert!(all_logged);
    let records = wait_for_stdout_records(&tandem, 2).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    assert!(records.iter().all(|r| r["status"] == 503));
}

#[tokio::test]
async fn app_logs_are_validated_enriched_redacted_and_filtered() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "access-log",
            "access-log",
            "[config]\nstatic_fields = { service = \"orders\" }\n[config.app_logs]\nmin_level = \"info\"\n",
        )
        .config(
            "[records]\napp_logs_listen = \"127.0.0.1:0\"\napp_logs_max_bytes = 2048\n[records.app_fields]\npod = \"orders-7f9c\"\n",
        )
        .spawn()
        .await;
    let admin_logs = tandem.admin_url("/logs");
    let own_logs = format!("http://{}/logs", listening_addr(&tandem, "logs="));

    let queued = post_log(
        &admin_logs,
        sidecar_logger_body(
            "info",
            "order placed",
            Some(json!({"orderId": 7, "password": "hunter2", "card": {"token": "tok_123"}})),
        ),
    )
    .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.text());
    assert_eq!(
        serde_json::from_slice::<Value>(&queued.body).unwrap(),
        json!({"result": "queued"})
    );
    let queued = post_log(
        &own_logs,
        sidecar_logger_body("error", "payment failed", None),
    )
    .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.text());
    let dropped = post_log(
        &admin_logs,
        sidecar_logger_body("debug", "cache miss", None),
    )
    .await;
    assert_eq!(dropped.status, StatusCode::ACCEPTED);
    assert_eq!(
        serde_json::from_slice::<Value>(&dropped.body).unwrap(),
        json!({"result": "dropped", "by": "access-log"})
    );

    // Bad input: a clear 4xx, and nothing reaches the sink.
    let malformed = post_log(&admin_logs, "{\"level\": \"info\", ").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(
        malformed.text().contains("malformed log record"),
        "{}",
        malformed.text()
    );
    let missing = post_log(
        &own_logs,
        json!({"level": "info", "timestamp": "2025-01-31T12:00:00.000Z"}).to_string(),
    )
    .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(
        missing.text().contains("missing field `message`"),
        "{}",
        missing.text()
    );
    let wrong_type = post_log(
        &admin_logs,
        json!({"level": "info", "message": "m", "metadata": "x", "timestamp": "t"}).to_string(),
    )
    .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    let huge = sidecar_logger_body("info", &"x".repeat(3000), None);
    let too_large = post_log(&admin_logs, huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    let wrong_method = get(&admin_logs).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.header("allow"), Some("POST"));

    let records = wait_for_stdout_records(&tandem, 2).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let placed = records
        .iter()
        .find(|r| r["message"] == "order placed")
        .unwrap();
    assert_eq!(placed["source"], "app");
    assert_eq!(placed["level"], "info");
    assert_eq!(placed["timestamp"], "2025-01-31T12:00:00.000Z");
    assert_eq!(placed["pod"], "orders-7f9c", "host app_fields");
    assert_eq!(
        placed["metadata"],
        json!({
            "orderId": 7,
            "password": "[REDACTED]",
            "card": {"token": "[REDACTED]"},
            "service": "orders",
        }),
        "the plugin redacted and enriched the metadata"
    );
    let failed = records
        .iter()
        .find(|r| r["message"] == "payment failed")
        .unwrap();
    assert_eq!(failed["level"], "error");
    assert_eq!(failed["metadata"], json!({"service": "orders"}));

    let stdout = tandem.stdout_lines().join("\n");
    assert!(!stdout.contains("hunter2") && !stdout.contains("tok_123"));
    assert_eq!(
        metric(&tandem, "tandem_records_dropped_total{reason=\"filtered\"}").await,
        Some(1.0)
    );
    assert_eq!(
        metric(&tandem, "tandem_records_accepted_total{source=\"app\"}").await,
        Some(2.0)
    );
}

#[tokio::test]
async fn a_failing_app_log_hook_follows_its_failure_policy() {
    let upstream = Upstream::start().await;
    let body = sidecar_logger_body("info", "kept as is", Some(json!({"a": 1})));

    let open = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "fails",
            "app-log-fail",
            "failure = \"open\"\n[config]\nmode = \"error\"\n",
        )
        .spawn()
        .await;
    let reply = post_log(&open.admin_url("/logs"), body.clone()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let records = wait_for_stdout_records(&open, 1).await;
    assert_eq!(records[0]["message"], "kept as is");
    assert_eq!(
        records[0]["metadata"],
        json!({"a": 1}),
        "open: passed on unchanged"
    );

    let closed = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "fails",
            "app-log-fail",
            "failure = \"closed\"\n[config]\nmode = \"bad-metadata\"\n",
        )
        .spawn()
        .await;
    let reply = post_log(&closed.admin_url("/logs"), body).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.body).unwrap(),
        json!({"result": "dropped", "by": "fails"})
    );
    assert_eq!(
        metric(
            &closed,
            "tandem_records_dropped_total{reason=\"plugin_failure\"}"
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &closed,
            "tandem_plugin_failures_total{hook=\"on-app-log\",kind=\"invalid\",plugin=\"fails\"}"
        )
        .await,
        Some(1.0)
    );
    assert!(closed.stdout_lines().is_empty(), "closed: dropped");
}

#[tokio::test]
async fn a_trapping_app_log_hook_is_counted_and_trips_like_any_hook() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "fails",
            "app-log-fail",
            "failure = \"closed\"\ntrip_after = 2\ntrip_cooldown_ms = 60000\n[config]\nmode = \"trap\"\n",
        )
        .spawn()
        .await;
    let body = sidecar_logger_body("info", "never written", None);
    // Two traps trip it; the third record finds it tripped, uncalled.
    for _ in 0..3 {
        let reply = post_log(&tandem.admin_url("/logs"), body.clone()).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        assert_eq!(
            serde_json::from_slice::<Value>(&reply.body).unwrap(),
            json!({"result": "dropped", "by": "fails"}),
            "closed: dropped"
        );
    }
    for (sample, expected) in [
        (
            "tandem_plugin_failures_total{hook=\"on-app-log\",kind=\"trap\",plugin=\"fails\"}",
            2.0,
        ),
        ("tandem_plugin_trips_total{plugin=\"fails\"}", 1.0),
        (
            "tandem_plugin_tripped_calls_total{hook=\"on-app-log\",plugin=\"fails\"}",
            1.0,
        ),
        (
            "tandem_records_dropped_total{reason=\"plugin_failure\"}",
            3.0,
        ),
    ] {
        assert_eq!(metric(&tandem, sample).await, Some(expected), "{sample}");
    }
    // The guest's panic message (its stderr) reaches the log.
    let logged = eventually(WAIT, async || {
        tandem.logs().contains("app-log-fail panics on purpose")
    })
    .await;
    assert!(logged, "{}", tandem.logs());
    assert!(tandem.stdout_lines().is_empty(), "nothing written");
}

#[tokio::test]
async fn an_app_log_hook_blocked_in_a_host_call_is_stopped_at_its_deadline() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "sleeps",
            "app-log-fail",
            "failure = \"open\"\nhook_timeout_ms = 100\n[config]\nmode = \"sleep\"\n",
        )
        .spawn()
        .await;
    // The plugin sleeps for an hour; the call is abandoned shortly after
    // its deadline and `open` passes the record on.
    let reply = tokio::time::timeout(
        WAIT,
        post_log(
            &tandem.admin_url("/logs"),
            sidecar_logger_body("warn", "passed on", None),
        ),
    )
    .await
    .expect("the sleeping hook was stopped");
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let records = wait_for_stdout_records(&tandem, 1).await;
    assert_eq!(records[0]["message"], "passed on");
    assert_eq!(
        metric(
            &tandem,
            "tandem_plugin_failures_total{hook=\"on-app-log\",kind=\"timeout\",plugin=\"sleeps\"}"
        )
        .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn http_sink_keeps_the_buffer_through_an_outage_and_counts_the_excess() {
    const BUFFER: usize = 20;
    const EXCESS: usize = 5;
    let upstream = Upstream::start().await;
    let collector = Collector::start(Mode::Drop).await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config(&format!(
            "[records]\nsink = \"http\"\nurl = \"{}\"\nbuffer_records = {BUFFER}\nbatch_max_records = 5\nbatch_max_ms = 10\nretry_initial_ms = 20\nretry_max_ms = 100\n",
            collector.url()
        ))
        .spawn()
        .await;
    let logs = tandem.admin_url("/logs");
    let mut sent = 0;
    let mut post = async |status: StatusCode| {
        let reply = post_log(
            &logs,
            sidecar_logger_body("info", &format!("m{sent}"), None),
        )
        .await;
        assert_eq!(reply.status, status, "record m{sent}: {}", reply.text());
        sent += 1;
        reply
    };

    // Down: the collector drops every connection.
    for _ in 0..12 {
        post(StatusCode::ACCEPTED).await;
    }
    let retried = eventually(WAIT, async || collector.attempts() >= 2).await;
    assert!(retried, "the sink retries while the collector is down");

    // Still down: now it answers 503. The buffer fills, then refuses.
    collector.set_mode(Mode::Unavailable);
    let attempts = collector.attempts();
    for _ in 12..BUFFER {
        post(StatusCode::ACCEPTED).await;
    }
    for _ in 0..EXCESS {
        let refused = post(StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(refused.header("retry-after"), Some("1"));
        assert!(refused.text().contains("buffer_full"), "{}", refused.text());
    }
    let answered_503 = eventually(WAIT, async || collector.attempts() > attempts + 1).await;
    assert!(answered_503);
    assert_eq!(
        metric(
            &tandem,
            "tandem_records_dropped_total{reason=\"buffer_full\"}"
        )
        .await,
        Some(EXCESS as f64),
        "exactly the records beyond the buffer are dropped, and counted"
    );
    assert_eq!(
        metric(&tandem, "tandem_records_buffered").await,
        Some(BUFFER as f64)
    );
    assert_eq!(
        metric(&tandem, "tandem_records_written_total").await,
        Some(0.0)
    );
    assert!(
        metric(&tandem, "tandem_records_batches_total{outcome=\"failed\"}")
            .await
            .unwrap()
            >= 2.0
    );
    assert!(collector.records().is_empty());

    // Back: every record within the buffer arrives, once, in order.
    collector.set_mode(Mode::Accept);
    let delivered = eventually(WAIT, async || collector.records().len() >= BUFFER).await;
    assert!(
        delivered,
        "got {} records; logs:\n{}",
        collector.records().len(),
        tandem.logs()
    );
    let messages: Vec<String> = collector
        .records()
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..BUFFER).map(|i| format!("m{i}")).collect();
    assert_eq!(messages, expected, "none lost, none twice, in order");
    for batch in collector.batches() {
        assert_eq!(batch.content_type, "application/x-ndjson");
    }
    assert!(collector.records().iter().all(|r| r["source"] == "app"));
    let drained = eventually(WAIT, async || {
        metric(&tandem, "tandem_records_buffered").await == Some(0.0)
    })
    .await;
    assert!(drained);
    assert_eq!(
        metric(&tandem, "tandem_records_written_total").await,
        Some(BUFFER as f64)
    );
    assert_eq!(
        metric(
            &tandem,
            "tandem_records_dropped_total{reason=\"buffer_full\"}"
        )
        .await,
        Some(EXCESS as f64)
    );
}

#[tokio::test]
async fn records_waiting_for_a_batch_are_flushed_on_shutdown() {
    let upstream = Upstream::start().await;
    let collector = Collector::start(Mode::Accept).await;
    let mut tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config(&format!(
            "[records]\nsink = \"http\"\nurl = \"{}\"\nformat = \"json-array\"\nbatch_max_records = 1000\nbatch_max_ms = 600000\n",
            collector.url()
        ))
        .spawn()
        .await;
    for i in 0..3 {
        let reply = post_log(
            &tandem.admin_url("/logs"),
            sidecar_logger_body("info", &format!("late {i}"), None),
        )
        .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
    }
    // The batch waits ten minutes to fill; only the shutdown flush sends it.
    assert!(collector.batches().is_empty());
    tandem.terminate();
    let status = tandem.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}; logs:\n{}", tandem.logs());
    let batches = collector.batches();
    assert_eq!(batches.len(), 1, "one batch, sent at shutdown");
    assert_eq!(batches[0].content_type, "application/json");
    let array: Vec<Value> = serde_json::from_slice(&batches[0].body).unwrap();
    let messages: Vec<&str> = array
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["late 0", "late 1", "late 2"]);
}

#[tokio::test]
async fn file_sink_appends_json_lines() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.jsonl");
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("access-log", "access-log", "[config]\n")
        .config(&format!(
            "[records]\nsink = \"file\"\npath = \"{}\"\n",
            path.display()
        ))
        .spawn()
        .await;
    for i in 0..3 {
        assert_eq!(
            get(&tandem.url(&format!("/file/{i}"))).await.status,
            StatusCode::OK
        );
    }
    let reply = post_log(
        &tandem.admin_url("/logs"),
        sidecar_logger_body("warn", "disk almost full", Some(json!({"free_mb": 12}))),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);

    let read = || -> Vec<Value> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let written = eventually(WAIT, async || read().len() >= 4).await;
    assert!(written, "file holds {:?}; logs:\n{}", read(), tandem.logs());
    let records = read();
    assert_eq!(records.len(), 4);
    let mut paths: Vec<&str> = records
        .iter()
        .filter(|r| r["source"] == "access")
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["/file/0", "/file/1", "/file/2"]);
    let app = records.iter().find(|r| r["source"] == "app").unwrap();
    assert_eq!(app["metadata"]["free_mb"], 12);
    assert!(
        tandem.stdout_lines().is_empty(),
        "records go to the file, not stdout"
    );
}

#[test]
fn bad_records_config_is_refused_with_the_key() {
    for (records, key) in [
        ("[records]\nsink = \"http\"\n", "records.url"),
        ("[records]\nbuffer = 10\n", "buffer"),
        (
            "[records]\nsink = \"stdout\"\nurl = \"http://127.0.0.1:1/\"\n",
            "records.url",
        ),
        (
            "[records]\nsink = \"http\"\nurl = \"https://collector:443/\"\n",
            "records.url",
        ),
    ] {
        let dir = write_config_dir("http://127.0.0.1:1", &[], records);
        let (code, output) = check(&dir.path().join("tandem.toml"));
        assert_eq!(code, 64, "{records}: {output}");
        assert!(output.contains(key), "{records}: {output}");
    }
}

/// A request whose client hangs up while the upstream is still working is
/// logged as 499 (nginx's "client closed request"), not lost.
#[tokio::test]
async fn a_request_the_client_abandons_is_logged_as_499() {
    use tokio::io::AsyncWriteExt;
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("access-log", "access-log", "")
        .spawn()
        .await;
    let mut client = tokio::net::TcpStream::connect(tandem.proxy).await.unwrap();
    client
        .write_all(b"GET /slow?ms=4000 HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let reached = eventually(WAIT, async || !upstream.seen_at("/slow?ms=4000").is_empty()).await;
    assert!(reached, "the request reached the upstream");
    drop(client);
    let records = wait_for_stdout_records(&tandem, 1).await;
    let record = &records[0];
    assert_eq!(record["path"], "/slow", "{record}");
    assert_eq!(record["status"], 499, "{record}");
    assert_eq!(record["response_bytes"], 0, "{record}");
    assert_eq!(
        record["error"], "the client went away before the upstream answered",
        "{record}"
    );
    assert_eq!(
        metric(&tandem, "tandem_requests_total{class=\"4xx\"}").await,
        Some(1.0)
    );
}

/// Requests still waiting for the upstream when the shutdown grace runs
/// out, over HTTP/1.1 and over HTTP/2 (whose streams run in tasks of their
/// own), are cut, and their records still reach the sink before Tandem
/// exits.
#[tokio::test]
async fn requests_cut_at_the_end_of_the_grace_are_still_logged() {
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let upstream = Upstream::start().await;
    let mut tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .config("shutdown_grace_ms = 300")
        .plugin("access-log", "access-log", "")
        .spawn()
        .await;
    let url = tandem.url("/slow?ms=20000");
    let over_http1 = tokio::spawn(async move { get(&url).await });
    let stream = tokio::net::TcpStream::connect(tandem.proxy).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/slow?ms=20001", tandem.proxy))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let over_http2 = tokio::spawn(sender.send_request(request));
    let reached = eventually(WAIT, async || {
        !upstream.seen_at("/slow?ms=20000").is_empty()
            && !upstream.seen_at("/slow?ms=20001").is_empty()
    })
    .await;
    assert!(reached, "both requests reached the upstream");
    tandem.terminate();
    let status = tandem.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    assert!(tandem.logs().contains("drained=false"), "{}", tandem.logs());
    let _ = over_http1.await;
    let _ = over_http2.await;
    let mut records = stdout_records(&tandem);
    records.sort_by_key(|record| record["query"].as_str().map(str::to_owned));
    assert_eq!(records.len(), 2, "{records:#?}\n{}", tandem.logs());
    // The access log has no protocol field; the query tells them apart.
    for (record, query) in records.iter().zip(["ms=20000", "ms=20001"]) {
        assert_eq!(record["status"], 499, "{record}");
        assert_eq!(
            record["error"], "cut at the end of the shutdown grace before the upstream answered",
            "{record}"
        );
        assert_eq!(record["query"], query, "{record}");
    }
    assert!(
        tandem.logs().contains("records_lost=0"),
        "{}",
        tandem.logs()
    );
}

/// A stdout that nobody reads (a stuck log collector, a full pipe) cannot
/// keep Tandem from exiting: the flush gives up after `flush_timeout_ms`,
/// counts what it lost, and the process exits although a write to the
/// pipe is still blocked.
#[tokio::test]
async fn a_stdout_nobody_reads_does_not_keep_tandem_from_exiting() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};
    let upstream = Upstream::start().await;
    let dir = write_config_dir(
        &format!("http://{}", upstream.addr),
        &[(
            "access-log".into(),
            crate::support::plugins::wasm("access-log"),
            None,
        )],
        "shutdown_grace_ms = 500\n[records]\nflush_timeout_ms = 500\n",
    );
    let mut child = tokio::process::Command::new(crate::support::tandem::TANDEM)
        .arg("run")
        .arg("--config")
        .arg(dir.path().join("tandem.toml"))
        .env("TANDEM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Only the listening line is read; the pipe is then left to fill.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    let proxy: SocketAddr = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("proxy="))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no proxy address in {line:?}"));
    // About 600 bytes of record each: far more than a pipe holds.
    let query = "q".repeat(300);
    for i in 0..400 {
        let reply = get(&format!("http://{proxy}/fill/{i}?{query}")).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let pid = child.id().unwrap().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exited = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    let status = exited
        .expect("tandem exits although its stdout is full")
        .unwrap();
    assert!(status.success(), "{status:?}");
    drop(stdout);
}
