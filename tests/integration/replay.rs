//! `tandem replay` of the access-log plugin: the records a plugin emits
//! through `records.emit` show in the report, per hook.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::plugins::{repo_root, wasm};
use crate::support::replay;

/// access-log's settings for the checked-in exchanges: health checks are
/// not logged, and the record carries a request header.
const SETTINGS: &str = r#"[config]
skip_paths = ["/healthz"]
request_headers = ["authorization"]
static_fields = { service = "orders" }
"#;

/// Runs `tandem replay` of access-log over its checked-in exchanges and
/// returns stdout, failing on a non-zero exit.
fn replay_access_log(settings: &Path, extra: &[&str]) -> String {
    let requests = repo_root().join("plugins/access-log/requests.jsonl");
    replay::run(
        &wasm("access-log"),
        &requests,
        settings,
        "access-log",
        extra,
    )
}

/// The records the `on-log` hook of one reported exchange emitted.
fn emitted(exchange: &Value) -> Vec<Value> {
    let on_log = exchange["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|hook| hook["hook"] == "on-log")
        .unwrap_or_else(|| panic!("no on-log in {exchange}"));
    assert_eq!(on_log["records_dropped"], json!([]), "{on_log}");
    on_log["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| serde_json::from_str(record.as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn replay_shows_the_access_records_the_plugin_emits() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("access-log.toml");
    std::fs::write(&settings, SETTINGS).unwrap();

    let stdout = replay_access_log(&settings, &["--json"]);
    let exchanges: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|report| report.get("line").is_some())
        .collect();
    assert_eq!(exchanges.len(), 3, "{stdout}");

    let get = emitted(&exchanges[0]);
    assert_eq!(get.len(), 1, "one record per exchange: {get:?}");
    let record = &get[0];
    assert_eq!(
        (
            &record["source"],
            &record["method"],
            &record["path"],
            &record["status"]
        ),
        (
            &json!("access"),
            &json!("GET"),
            &json!("/orders"),
            &json!(200)
        )
    );
    assert_eq!(record["request_id"], "given-id-1");
    assert_eq!(record["query"], "token=[REDACTED]&page=2");
    assert_eq!(record["response_bytes"], 512);
    assert_eq!(
        record["request_headers"],
        json!({"authorization": "[REDACTED]"})
    );
    assert_eq!(record["service"], "orders");
    // Nothing else emits: the record is on-log's alone.
    for hook in exchanges[0]["hooks"].as_array().unwrap() {
        if hook["hook"] != "on-log" {
            assert_eq!(hook["records"], json!([]), "{hook}");
        }
    }

    let post = emitted(&exchanges[1]);
    assert_eq!(
        (&post[0]["method"], &post[0]["path"], &post[0]["status"]),
        (&json!("POST"), &json!("/orders"), &json!(503))
    );
    assert_eq!(post[0]["request_bytes"], 64);

    assert!(emitted(&exchanges[2]).is_empty(), "/healthz is skipped");

    // The text report prints each record as one compact JSON line under
    // the hook that emitted it.
    let text = replay_access_log(&settings, &[]);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let records: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("record "))
        .collect();
    assert_eq!(records.len(), 2, "{text}");
    assert!(
        records[0].starts_with("{\"source\":\"access\",\"time\":\"")
            && records[0].contains(
                "\"request_id\":\"given-id-1\",\"method\":\"GET\",\"path\":\"/orders\",\"query\":\"token=[REDACTED]&page=2\",\"status\":200,"
            ),
        "{text}"
    );
    let on_log = lines
        .iter()
        .position(|line| line.starts_with("on-log"))
        .unwrap();
    assert!(
        lines[on_log + 1].starts_with("record {"),
        "the record follows its hook: {text}"
    );
}
