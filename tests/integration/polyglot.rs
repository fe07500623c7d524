//! Plugins in any language: the same plugin (require-header) in Rust, C,
//! Python and JavaScript, built from source in this run and held to the same
//! assertions through the real host; `tandem replay` over the checked-in
//! requests; and a starter per language that builds and loads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::support::client::{get, get_with};
use crate::support::eventually;
use crate::support::examples::{example, toolchain};
use crate::support::plugins::{repo_root, wasm};
use crate::support::tandem::{TANDEM, TandemBuilder, check, write_config_dir};
use crate::support::upstream::Upstream;

/// The four versions of require-header.
const LANGS: [&str; 4] = ["rust", "c", "python", "js"];

fn require_header(lang: &str) -> PathBuf {
    match lang {
        "rust" => wasm("require-header"),
        other => example(other),
    }
}

fn examples_dir() -> PathBuf {
    repo_root().join("examples/plugins")
}

/// The settings all four versions run with (headers = ["x-tenant"],
/// path_prefix = "/api/").
fn settings() -> String {
    std::fs::read_to_string(examples_dir().join("require-header.toml")).unwrap()
}

/// The value of one series in Prometheus text, if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn validates_requests_through_the_proxy(lang: &str) {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin_file("require-header", &require_header(lang), &settings())
        .spawn()
        .await;

    // Missing or empty: 400 with the JSON body, and the upstream never sees it.
    for headers in [&[][..], &[("x-tenant", "")][..]] {
        let reply = get_with(&tandem.url("/api/orders"), headers).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{lang}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{lang}"
        );
        assert_eq!(
            reply.text(),
            r#"{"error":"missing_header","header":"x-tenant"}"#,
            "{lang}"
        );
        assert_eq!(reply.header("x-validator"), None, "{lang}");
    }
    assert!(upstream.seen_at("/api/orders").is_empty(), "{lang}");

    // Present (in any case): forwarded with x-validated, answered with
    // x-validator. Many in a row, so the pooled instances are reused.
    for i in 0..20 {
        let target = format!("/api/orders?i={i}");
        let reply = get_with(&tandem.url(&target), &[("X-Tenant", "acme")]).await;
        assert_eq!(reply.status, StatusCode::OK, "{lang} request {i}");
        assert_eq!(reply.header("x-validator"), Some("passed"), "{lang}");
        let seen = upstream.seen_at(&target);
        assert_eq!(seen.len(), 1, "{lang}");
        assert_eq!(seen[0].headers["x-validated"], "x-tenant", "{lang}");
        assert_eq!(seen[0].headers["x-tenant"], "acme", "{lang}");
    }

    // Outside the prefix: untouched.
    let reply = get(&tandem.url("/health")).await;
    assert_eq!(reply.status, StatusCode::OK, "{lang}");
    assert_eq!(reply.header("x-validator"), None, "{lang}");
    let seen = upstream.seen_at("/health");
    assert!(seen[0].headers.get("x-validated").is_none(), "{lang}");

    // Counted in on-request and (after each response) in on-log.
    let metrics_url = tandem.admin_url("/metrics");
    let counted = eventually(Duration::from_secs(10), async || {
        let text = get(&metrics_url).await.text();
        sample(&text, r#"validator_requests_total{outcome="passed"}"#) == Some(20.0)
            && sample(&text, r#"validator_requests_total{outcome="rejected"}"#) == Some(2.0)
            && sample(&text, r#"validator_requests_total{outcome="skipped"}"#) == Some(1.0)
    })
    .await;
    let text = get(&metrics_url).await.text();
    assert!(counted, "{lang}: on-log counts missing:\n{text}");
    assert_eq!(
        sample(&text, r#"validator_rejections_total{header="x-tenant"}"#),
        Some(2.0),
        "{lang}:\n{text}"
    );
    assert!(
        text.contains("# HELP validator_rejections_total Requests rejected by require-header"),
        "{lang}: described in init:\n{text}"
    );

    // Logged through the host, tagged with the plugin's name.
    let logs = tandem.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("missing required header"))
        .unwrap_or_else(|| panic!("{lang}: no rejection logged:\n{logs}"));
    assert!(
        line.contains("WARN")
            && line.contains("require-header")
            && line.contains(r#"header="x-tenant""#)
            && line.contains(r#"path="/api/orders""#),
        "{lang}: {line}"
    );

    // Instances were reused, not made per call, and none failed.
    let plugins: Value =
        serde_json::from_str(&get(&tandem.admin_url("/plugins")).await.text()).unwrap();
    let plugin = &plugins["plugins"][0];
    assert_eq!(plugin["instances"], "reuse", "{lang}: {plugin}");
    assert_eq!(plugin["failures"], 0, "{lang}: {plugin}");
    let idle = plugin["idle_instances"].as_u64().unwrap();
    assert!((1..=4).contains(&idle), "{lang}: {plugin}");
}

#[tokio::test]
async fn rust_validator_through_the_proxy() {
    validates_requests_through_the_proxy("rust").await;
}

#[tokio::test]
async fn c_validator_through_the_proxy() {
    validates_requests_through_the_proxy("c").await;
}

#[tokio::test]
async fn python_validator_through_the_proxy() {
    validates_requests_through_the_proxy("python").await;
}

#[tokio::test]
async fn js_validator_through_the_proxy() {
    validates_requests_through_the_proxy("js").await;
}

/// Bad configs are refused at load with the same message in every language.
/// In-process through the library, so that each component is compiled once
/// for all the cases (Python and JavaScript take seconds of CPU each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_refuses_a_bad_config_with_the_same_message() {
    use std::sync::Arc;
    use tandem::plugin_settings::PluginSettings;
    use tandem::runtime::Runtime;
    use tandem::runtime::plugin::{PluginVersion, compile, sha256_hex};

    let cases = [
        (
            "headers = []",
            "config key `headers`: list at least one header name",
        ),
        (
            "headers = [\"x-tenant\"]\npath_prefix = \"api\"",
            "config key `path_prefix`: `api` does not start with `/`",
        ),
        (
            "headers = [\"x-tenant\"]\npath_prefx = \"/\"",
            "config key `path_prefx`: unknown field `path_prefx`, expected `headers` or `path_prefix`",
        ),
        (
            "headers = [\"X-Ok\", \"bad name\"]",
            "config key `headers`: `bad name` is not a valid header name",
        ),
    ];
    let metrics = Arc::new(tandem::metrics::Metrics::new());
    let records = Arc::new(
        tandem::records::Records::new(&tandem::records::config::RecordsConfig::default(), &metrics)
            .unwrap(),
    );
    let runtime = Arc::new(
        Runtime::new(
            metrics,
            Arc::new(tandem::shared_state::SharedState::default()),
            records,
        )
        .unwrap(),
    );
    let runs = LANGS.map(|lang| {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let wasm = require_header(lang);
            let bytes = std::fs::read(&wasm).unwrap();
            let sha256 = sha256_hex(&bytes);
            let engine = runtime.engine.clone();
            let component = tokio::task::spawn_blocking(move || compile(&engine, &bytes))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{lang}: {e}"));
            let mut refusals = Vec::new();
            for (config, _) in cases {
                let path = Path::new("require-header.toml");
                let settings =
                    PluginSettings::parse(path, &format!("[config]\n{config}\n")).unwrap();
                let loaded = PluginVersion::load(
                    &runtime,
                    "require-header",
                    wasm.clone(),
                    sha256.clone(),
                    &component,
                    settings,
                )
                .await;
                refusals.push(match loaded {
                    Ok(_) => format!("{config}: loaded"),
                    Err(error) => error.to_string(),
                });
            }
            (lang, refusals)
        })
    });
    for run in runs {
        let (lang, refusals) = run.await.unwrap();
        for ((config, expected), refusal) in cases.iter().zip(&refusals) {
            assert_eq!(
                refusal,
                &format!("init failed: returned an error: {expected}"),
                "{lang} with {config}"
            );
        }
    }
}

/// Runs `tandem replay` and returns stdout, failing on a non-zero exit.
fn replay(wasm: &Path, extra: &[&str]) -> String {
    let requests = examples_dir().join("requests.jsonl");
    let settings = examples_dir().join("require-header.toml");
    crate::support::replay::run(wasm, &requests, &settings, "require-header", extra)
}

/// The replay report without what differs between languages and runs: hook
/// times and facts about the file.
fn decisions(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record.get("line").is_some())
        .map(|mut record| {
            for hook in record["hooks"].as_array_mut().unwrap() {
                hook.as_object_mut().unwrap().remove("micros");
            }
            record
        })
        .collect()
}

fn hook<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hook"] == name)
        .unwrap_or_else(|| panic!("no {name} in {record}"))
}

#[test]
fn replay_reports_the_same_decisions_in_every_language() {
    let reports: Vec<(&str, Vec<Value>)> = std::thread::scope(|scope| {
        let runs: Vec<_> = LANGS
            .map(|lang| {
                scope.spawn(move || (lang, decisions(&replay(&require_header(lang), &["--json"]))))
            })
            .into_iter()
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    let (_, rust) = &reports[0];
    assert_eq!(rust.len(), 5, "{rust:#?}");

    // Line 4: x-tenant present; forwarded with x-validated, marked passed.
    let passed = &rust[0];
    assert_eq!(
        (passed["line"].as_u64(), passed["status"].as_u64()),
        (Some(4), Some(200))
    );
    assert_eq!(passed["answered_by"], "upstream");
    let on_request = hook(passed, "on-request");
    assert_eq!(on_request["outcome"], "continued");
    assert_eq!(
        on_request["changes"],
        serde_json::json!([
            {"what": "header", "name": "x-validated", "before": [], "after": ["x-tenant"]},
            {"what": "property", "name": "validator.outcome", "before": [], "after": ["passed"]},
        ])
    );
    assert_eq!(
        hook(passed, "on-response")["changes"],
        serde_json::json!([{"what": "response-header", "name": "x-validator", "before": [], "after": ["passed"]}])
    );
    assert_eq!(
        hook(passed, "on-log")["metrics"][0]["series"],
        r#"validator_requests_total{outcome="passed"}"#
    );

    // Line 5: missing; answered 400 by the plugin, logged and counted.
    let rejected = &rust[1];
    assert_eq!(rejected["status"], 400);
    assert_eq!(rejected["answered_by"], "require-header");
    assert_eq!(rejected["upstream_called"], false);
    let on_request = hook(rejected, "on-request");
    assert_eq!(on_request["outcome"], "responded");
    assert_eq!(
        on_request["body"],
        r#"{"error":"missing_header","header":"x-tenant"}"#
    );
    assert_eq!(
        on_request["headers"],
        serde_json::json!([["content-type", "application/json"]])
    );
    assert_eq!(on_request["logs"][0]["level"], "warn");
    assert_eq!(on_request["logs"][0]["message"], "missing required header");
    assert_eq!(
        on_request["logs"][0]["fields"],
        r#"header="x-tenant" path="/api/orders""#
    );
    assert_eq!(
        on_request["metrics"],
        serde_json::json!([{"series": r#"validator_rejections_total{header="x-tenant"}"#, "before": 0.0, "after": 1.0}])
    );

    // Line 6: empty value; rejected too, the counter goes on.
    assert_eq!(rust[2]["status"], 400);
    assert_eq!(hook(&rust[2], "on-request")["metrics"][0]["after"], 2.0);
    // Line 7: outside the prefix; nothing changed, counted as skipped.
    assert_eq!(rust[3]["status"], 200);
    assert_eq!(
        hook(&rust[3], "on-request")["changes"],
        serde_json::json!([])
    );
    assert_eq!(
        hook(&rust[3], "on-log")["metrics"][0]["series"],
        r#"validator_requests_total{outcome="skipped"}"#
    );
    // Line 8: the header in another case, the recorded status kept.
    assert_eq!(rust[4]["status"], 204);
    assert_eq!(hook(&rust[4], "on-request")["outcome"], "continued");

    for (lang, report) in &reports[1..] {
        assert_eq!(report, rust, "{lang} decides differently from rust");
    }
}

#[test]
fn replay_prints_decisions_changes_logs_counts_and_times() {
    let stdout = replay(&require_header("c"), &["--repeat", "3"]);
    for expected in [
        "hooks on-request, on-response, on-log; failure closed; instances reuse",
        "line 4: GET /api/orders?page=2",
        "    add header x-validated: x-tenant",
        "    set property validator.outcome = passed",
        "    add response header x-validator: passed",
        "  => 200 from upstream, upstream called",
        "line 5: POST /api/orders",
        "    reply header content-type: application/json",
        r#"    reply body {"error":"missing_header","header":"x-tenant"}"#,
        r#"    log warn "missing required header" header="x-tenant" path="/api/orders""#,
        r#"    count validator_rejections_total{header="x-tenant"} 0 -> 1"#,
        "  => 400 from require-header, upstream not called",
        r#"    count validator_requests_total{outcome="skipped"} 0 -> 1"#,
        "5 exchanges: 3 reached the upstream, 2 answered by require-header, 0 failed",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // Every hook has a time, and the summary covers the three passes.
    let on_request = stdout
        .lines()
        .find(|l| l.starts_with("  on-request ") && l.contains(" µs: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(on_request.ends_with("responded 400") || on_request.ends_with("continued"));
    let per_exchange = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("per exchange"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        per_exchange.split_whitespace().nth(2),
        Some("15"),
        "{per_exchange}"
    );
}

#[test]
fn replay_names_a_bad_request_line_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let requests = dir.path().join("bad.jsonl");
    std::fs::write(
        &requests,
        "{\"target\":\"/ok\"}\n{\"target\":\"no-slash\"}\n",
    )
    .unwrap();
    let output = Command::new(TANDEM)
        .arg("replay")
        .arg(require_header("c"))
        .arg("--requests")
        .arg(&requests)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.jsonl:2: target \"no-slash\" is not origin-form"),
        "{stderr}"
    );
}

/// `tandem new` for `lang`, built with its build.sh, loads with `tandem
/// check`, and (Rust and C) adds its header in `tandem replay`.
fn starter_builds_and_loads(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join(format!("hello-{lang}"));
    let name = format!("hello-{lang}");
    let mut new = Command::new(TANDEM);
    new.args(["new", &name, "--lang", lang, "--dir"])
        .arg(&project);
    if lang == "rust" {
        new.arg("--sdk").arg(repo_root().join("plugins/sdk"));
    }
    let output = new.output().unwrap();
    assert!(output.status.success(), "{lang}: {output:?}");

    let mut build = Command::new("bash");
    build
        .arg(project.join("build.sh"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    match lang {
        // Compiled dependencies are kept between runs.
        "rust" => build.env(
            "CARGO_TARGET_DIR",
            repo_root().join("target/polyglot/starter-rust"),
        ),
        // The tools the examples were built with, rather than new installs.
        "c" => build.env("TANDEM_WITC", toolchain("c")),
        "python" => build.env("COMPONENTIZE_PY", toolchain("python")),
        _ => build.env("COMPONENTIZE_JS", toolchain("js")),
    };
    let output = build.output().unwrap();
    assert!(
        output.status.success(),
        "{lang}: build.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let wasm = project.join(format!("plugins.d/{name}.wasm"));
    assert!(wasm.exists(), "{lang}: no {}", wasm.display());

    let (code, output) = check(&project.join("tandem.toml"));
    assert_eq!(code, 0, "{lang}: {output}");
    let line = output
        .lines()
        .find(|l| l.starts_with("ok") && l.contains(&name))
        .unwrap_or_else(|| panic!("{lang}: {output}"));
    assert!(
        line.contains("hooks=on-request,on-response,on-log"),
        "{lang}: {line}"
    );

    if lang == "python" || lang == "js" {
        // Compiling them again for replay costs seconds of CPU; replay of
        // these languages is covered with the examples.
        return;
    }
    let output = Command::new(TANDEM)
        .arg("replay")
        .arg(&wasm)
        .arg("--requests")
        .arg(project.join("requests.jsonl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{lang}: {stdout}");
    assert!(
        stdout.contains(&format!("add header x-hello: {name}")),
        "{lang}: {stdout}"
    );
    let metric = name.replace('-', "_");
    assert!(
        stdout.contains(&format!(
            "count {metric}_requests_total{{status=\"201\"}} 0 -> 1"
        )),
        "{lang}: {stdout}"
    );
}

#[test]
fn rust_starter_builds_and_loads() {
    starter_builds_and_loads("rust");
}

#[test]
fn c_starter_builds_and_loads() {
    starter_builds_and_loads("c");
}

#[test]
fn python_starter_builds_and_loads() {
    starter_builds_and_loads("python");
}

#[test]
fn js_starter_builds_and_loads() {
    starter_builds_and_loads("js");
}

/// The function `cargo xtask bench` prints per-request costs with: every
/// hook of every pass is timed, with a warm pool. (Rust and C only: the
/// bench runs it on all four, and compiling Python and JavaScript again here
/// would cost CPU that other tests' time bounds need.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_cost_times_every_hook_of_every_pass() {
    use tandem::replay::{driver, record, timing};
    let records = record::load(&examples_dir().join("requests.jsonl")).unwrap();
    let passes = 10;
    let runs = ["rust", "c"].map(|lang| {
        let records = records.clone();
        tokio::spawn(async move {
            let wasm = require_header(lang);
            let settings =
                driver::load_settings(&wasm, Some(&examples_dir().join("require-header.toml")))
                    .unwrap();
            let cost =
                timing::per_request_cost(&wasm, "require-header", settings, &records, passes)
                    .await
                    .unwrap_or_else(|e| panic!("{lang}: {e}"));
            (lang, cost)
        })
    });
    for run in runs {
        let (lang, cost) = run.await.unwrap();
        assert_eq!(
            cost.loaded.hooks,
            ["on-request", "on-response", "on-log"],
            "{lang}"
        );
        assert!(
            cost.loaded.size_bytes > 0 && cost.loaded.compile_ms > 0.0,
            "{lang}"
        );
        for hook in ["on-request", "on-response", "on-log"] {
            let stats = &cost.timings.hooks[hook];
            assert_eq!(stats.calls, records.len() * passes, "{lang} {hook}");
            assert!(
                stats.p50_us > 0.0 && stats.p50_us <= stats.max_us,
                "{lang} {hook}"
            );
        }
        let per_request = cost.timings.per_request.as_ref().unwrap();
        assert_eq!(per_request.calls, records.len() * passes, "{lang}");
    }
}

/// `tandem run --record FILE` writes what `tandem replay` reads: live
/// exchanges, replayed through another version of the plugin, get the same
/// decisions.
#[tokio::test]
async fn recorded_traffic_replays_with_the_same_decisions() {
    use tokio::io::AsyncBufReadExt;

    let upstream = Upstream::start().await;
    let dir = write_config_dir(
        &format!("http://{}", upstream.addr),
        &[(
            "require-header".to_owned(),
            require_header("rust"),
            Some(settings()),
        )],
        "",
    );
    let recorded = dir.path().join("recorded.jsonl");
    let mut child = tokio::process::Command::new(TANDEM)
        .arg("run")
        .arg("--config")
        .arg(dir.path().join("tandem.toml"))
        .arg("--record")
        .arg(&recorded)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(120), stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("tandem prints its listening line");
    let proxy = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("proxy="))
        .unwrap()
        .to_owned();
    let url = |path: &str| format!("http://{proxy}{path}");

    assert_eq!(
        get(&url("/api/orders")).await.status,
        StatusCode::BAD_REQUEST
    );
    let reply = get_with(&url("/api/orders?page=2"), &[("x-tenant", "acme")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply =
        crate::support::client::send_body(http::Method::POST, &url("/echo"), b"hello".to_vec())
            .await;
    assert_eq!(reply.text(), "hello");

    let complete = eventually(Duration::from_secs(10), async || {
        std::fs::read_to_string(&recorded).is_ok_and(|text| text.lines().count() == 3)
    })
    .await;
    assert!(complete, "{:?}", std::fs::read_to_string(&recorded));
    let mut records = tandem::replay::record::load(&recorded).unwrap();
    records.sort_by_key(|r| r.record.target.clone());
    // Sorted by target: /api/orders, /api/orders?page=2, /echo.
    let [rejected, passed, echo] = [&records[0].record, &records[1].record, &records[2].record];
    assert_eq!(
        (rejected.method.as_str(), rejected.target.as_str()),
        ("GET", "/api/orders")
    );
    assert_eq!(rejected.status, Some(400));
    assert_eq!(rejected.upstream_duration_us, None);
    assert_eq!(rejected.client.ip().to_string(), "127.0.0.1");
    assert_eq!(passed.target, "/api/orders?page=2");
    assert!(
        passed.headers.pairs().contains(&("x-tenant", "acme")),
        "recorded as the client sent it: {passed:?}"
    );
    assert!(
        !passed
            .headers
            .pairs()
            .iter()
            .any(|(n, _)| *n == "x-validated")
    );
    assert_eq!(passed.status, Some(200));
    assert!(passed.upstream_duration_us.is_some());
    assert_eq!(
        (
            echo.method.as_str(),
            echo.request_bytes,
            echo.response_bytes
        ),
        ("POST", 5, 5)
    );
    drop(child);

    // The recorded file through the C version.
    let output = Command::new(TANDEM)
        .arg("replay")
        .arg(require_header("c"))
        .arg("--requests")
        .arg(&recorded)
        .arg("--config")
        .arg(examples_dir().join("require-header.toml"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut statuses: Vec<(String, u64)> = decisions(&stdout)
        .iter()
        .map(|r| {
            (
                r["target"].as_str().unwrap().to_owned(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("/api/orders".to_owned(), 400),
            ("/api/orders?page=2".to_owned(), 200),
            ("/echo".to_owned(), 200)
        ]
    );
}
