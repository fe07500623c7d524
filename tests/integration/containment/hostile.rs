//! Plugins that loop, allocate, recurse, trap, block, answer garbage or
//! flood the log: each request gets what the plugin's failure policy says
//! within a bound, other requests keep being served, and the event is in
//! the logs and on `/metrics`. A plugin that rewrites how a body is framed
//! is undone.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use super::traffic::{NormalTraffic, metric, plain};
use crate::support::client::{get, send_body};
use crate::support::eventually;
use crate::support::tandem::{TANDEM, TandemBuilder, write_config_dir};
use crate::support::upstream::{Upstream, pattern};

/// One hostile plugin: its name (also its path prefix), what it does, in
/// which hook, its policy, and what the request and `/metrics` must show.
struct Case {
    name: &'static str,
    misbehave: &'static str,
    hook: &'static str,
    failure: &'static str,
    status: StatusCode,
    kind: &'static str,
}

const fn case(
    name: &'static str,
    misbehave: &'static str,
    hook: &'static str,
    failure: &'static str,
    status: StatusCode,
    kind: &'static str,
) -> Case {
    Case {
        name,
        misbehave,
        hook,
        failure,
        status,
        kind,
    }
}

const OK: StatusCode = StatusCode::OK;
const FAILED: StatusCode = StatusCode::INTERNAL_SERVER_ERROR;

// A table, one case a row, which rustfmt would break up.
#[rustfmt::skip]
const CASES: &[Case] = &[
    case("loop-req",     "loop",             "on-request",  "closed", FAILED, "timeout"),
    case("loop-resp",    "loop",             "on-response", "closed", FAILED, "timeout"),
    case("loop-log",     "loop",             "on-log",      "closed", OK,     "timeout"),
    case("loop-open",    "loop",             "on-request",  "open",   OK,     "timeout"),
    case("alloc",        "alloc",            "on-request",  "closed", FAILED, "memory"),
    case("recurse",      "recurse",          "on-request",  "closed", FAILED, "stack"),
    case("trap",         "trap",             "on-request",  "closed", FAILED, "trap"),
    case("sleep",        "sleep",            "on-request",  "open",   OK,     "timeout"),
    case("bad-status",   "bad-status",       "on-request",  "closed", FAILED, "invalid"),
    case("bad-name",     "bad-header-name",  "on-request",  "open",   OK,     "invalid"),
    case("bad-value",    "bad-header-value", "on-response", "closed", FAILED, "invalid"),
    case("huge-body",    "huge-body",        "on-request",  "closed", FAILED, "invalid"),
    case("many-headers", "many-headers",     "on-request",  "open",   OK,     "invalid"),
    case("log-flood",    "log-flood",        "on-request",  "open",   OK,     "timeout"),
    case("stdout-flood", "stdout-flood",     "on-request",  "open",   OK,     "timeout"),
];

/// How long any one misbehaving request may take: far above the 100 ms
/// deadline, far below "hung".
const BOUND: Duration = Duration::from_secs(5);

fn settings(case: &Case) -> String {
    format!(
        "failure = \"{failure}\"\nhook_timeout_ms = 100\nmemory_limit_mb = 16\nlog_rate_per_second = 20\n\
         [config]\nmisbehave = \"{misbehave}\"\nhook = \"{hook}\"\nprefix = \"/{name}/\"\n",
        failure = case.failure,
        misbehave = case.misbehave,
        hook = case.hook,
        name = case.name,
    )
}

#[tokio::test]
async fn each_misbehaviour_costs_only_its_own_request() {
    let upstream = Upstream::start().await;
    let mut builder = TandemBuilder::new(format!("http://{}", upstream.addr));
    for case in CASES {
        builder = builder.plugin(case.name, "hostile", &settings(case));
    }
    let tandem = builder.spawn().await;
    // Every plugin sees these requests but ignores their path.
    let normal = NormalTraffic::start(tandem.url("/normal"));

    for case in CASES {
        for attempt in 1..=2 {
            let started = Instant::now();
            let reply = tokio::time::timeout(BOUND, get(&tandem.url(&format!("/{}/x", case.name))))
                .await
                .unwrap_or_else(|_| panic!("{}: no answer within {BOUND:?}", case.name));
            assert_eq!(
                reply.status,
                case.status,
                "{} (attempt {attempt}): {}",
                case.name,
                reply.text()
            );
            if case.status == FAILED {
                let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
                assert_eq!(json["error"], "plugin_failed", "{}", case.name);
                assert_eq!(json["message"], format!("plugin {} failed", case.name));
            } else {
                assert_eq!(reply.text(), "hello from upstream", "{}", case.name);
            }
            assert!(started.elapsed() < BOUND, "{}", case.name);
        }
    }

    let served = normal.finish().await;
    assert!(
        served.failed.is_empty(),
        "normal requests failed: {served:?}"
    );
    assert!(served.ok > 0, "normal requests were served meanwhile");
    assert_eq!(
        get(&tandem.admin_url("/healthz")).await.status,
        StatusCode::OK,
        "the host is up"
    );

    // Both attempts of every case are counted with their kind; on-log runs
    // after the response, so wait for it.
    for case in CASES {
        let series = format!(
            "tandem_plugin_failures_total{{hook=\"{}\",kind=\"{}\",plugin=\"{}\"}}",
            case.hook, case.kind, case.name
        );
        let counted = eventually(Duration::from_secs(10), async || {
            let metrics = get(&tandem.admin_url("/metrics")).await.text();
            metric(&metrics, &series) == Some(2.0)
        })
        .await;
        assert!(
            counted,
            "{series} should be 2:\n{}",
            get(&tandem.admin_url("/metrics")).await.text()
        );
        let logs = plain(&tandem.logs());
        let logged = logs.lines().any(|line| {
            line.contains("plugin failed")
                && line.contains(&format!("plugin=\"{}\"", case.name))
                && line.contains(&format!("kind=\"{}\"", case.kind))
        });
        assert!(
            logged,
            "{}: failure logged with its name and kind:\n{logs}",
            case.name
        );
    }

    let logs = plain(&tandem.logs());
    // A panic's message reaches the log through stderr, with the plugin's name.
    assert!(
        logs.lines()
            .any(|l| l.contains("hostile plugin panics on purpose")
                && l.contains("plugin=\"trap\"")
                && l.contains("stream=\"stderr\"")),
        "the panic message is logged:\n{logs}"
    );
    // Floods are cut to the plugin's budget (20 a second, two requests of
    // 100 ms each: far fewer than a spinning loop writes) and counted.
    for (name, marker) in [
        ("log-flood", "flooding the log"),
        ("stdout-flood", "hostile stdout line"),
    ] {
        let written = logs.lines().filter(|l| l.contains(marker)).count();
        assert!(
            (1..=60).contains(&written),
            "{name}: {written} lines reached the log"
        );
        let metrics = get(&tandem.admin_url("/metrics")).await.text();
        let dropped = metric(
            &metrics,
            &format!("tandem_plugin_log_dropped_total{{plugin=\"{name}\"}}"),
        )
        .unwrap_or(0.0);
        assert!(dropped > 100.0, "{name}: {dropped} records dropped");
    }
    assert!(
        logs.contains("records dropped"),
        "the host says that it dropped records"
    );
}

#[tokio::test]
async fn metric_series_are_capped_per_metric() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "metrics-flood",
            "hostile",
            "metric_series_limit = 25\n[config]\nmisbehave = \"metric-flood\"\nhook = \"on-request\"\n",
        )
        .spawn()
        .await;
    let reply = get(&tandem.url("/")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-series-accepted"), Some("25"));
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("hostile_series_total{"))
        .count();
    assert_eq!(series, 25, "/metrics holds the capped series only");
    assert_eq!(
        metric(
            &metrics,
            "tandem_plugin_metric_series_refused_total{plugin=\"metrics-flood\"}"
        ),
        Some(1.0)
    );
}

/// The epoch ticker sleeps once no call can be running (about 2 s after
/// this plugin's `init`: its deadline, 10 x 100 ms, and the ticker's 1 s of
/// slack). A loop in the first call after that must still be stopped at
/// its deadline: the call wakes the ticker.
#[tokio::test]
async fn a_loop_after_a_quiet_spell_is_still_stopped_at_its_deadline() {
    let upstream = Upstream::start().await;
    let looping = &CASES[0];
    assert_eq!(looping.name, "loop-req");
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(looping.name, "hostile", &settings(looping))
        .spawn()
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for attempt in 1..=2 {
        let reply = tokio::time::timeout(BOUND, get(&tandem.url("/loop-req/x")))
            .await
            .unwrap_or_else(|_| panic!("attempt {attempt}: no answer within {BOUND:?}"));
        assert_eq!(reply.status, FAILED, "attempt {attempt}: {}", reply.text());
        // Quiet again before the second attempt.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    let series =
        "tandem_plugin_failures_total{hook=\"on-request\",kind=\"timeout\",plugin=\"loop-req\"}";
    assert_eq!(metric(&metrics, series), Some(2.0), "{metrics}");
}

#[tokio::test]
async fn a_plugin_that_loops_in_init_fails_to_load_in_bounded_time() {
    let upstream = Upstream::start().await;
    let dir = write_config_dir(
        &format!("http://{}", upstream.addr),
        &[(
            "init-loop".to_owned(),
            crate::support::plugins::wasm("hostile"),
            Some("hook_timeout_ms = 50\n[config]\nmisbehave = \"loop\"\nhook = \"init\"\n".into()),
        )],
        "",
    );
    let started = Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(TANDEM)
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("tandem.toml"))
            .output(),
    )
    .await
    .expect("tandem gives up instead of hanging")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("init-loop")
            && stderr.contains("init failed")
            && stderr.contains("deadline"),
        "names the plugin and the deadline:\n{stderr}"
    );
    // Compiling takes a moment; the init itself is stopped at 10 x 50 ms.
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn an_init_that_loops_in_later_instances_fails_requests_per_policy() {
    let upstream = Upstream::start().await;
    // `fresh` makes a new instance (and so an init) for every call; the
    // first instance, made at load, behaves.
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "late-loop",
            "hostile",
            "instances = \"fresh\"\nhook_timeout_ms = 50\n[config]\nmisbehave = \"loop\"\nhook = \"init-later\"\n",
        )
        .spawn()
        .await;
    for _ in 0..2 {
        let started = Instant::now();
        let reply = get(&tandem.url("/x")).await;
        assert_eq!(
            reply.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            reply.text()
        );
        assert!(started.elapsed() < BOUND);
    }
    assert_eq!(
        get(&tandem.admin_url("/healthz")).await.status,
        StatusCode::OK
    );
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(
            &metrics,
            "tandem_plugin_failures_total{hook=\"on-request\",kind=\"timeout\",plugin=\"late-loop\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_plugin_holds_at_most_its_max_instances() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "hog",
            "hostile",
            "failure = \"open\"\nhook_timeout_ms = 300\nmax_instances = 2\n\
             [config]\nmisbehave = \"sleep\"\nhook = \"on-request\"\nprefix = \"/hog/\"\n",
        )
        .spawn()
        .await;
    let started = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let url = tandem.url(&format!("/hog/{i}"));
            tokio::spawn(async move { get(&url).await.status })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), StatusCode::OK, "fail-open: skipped");
    }
    assert!(started.elapsed() < BOUND);
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    let count = |kind: &str| {
        metric(
            &metrics,
            &format!(
                "tandem_plugin_failures_total{{hook=\"on-request\",kind=\"{kind}\",plugin=\"hog\"}}"
            ),
        )
        .unwrap_or(0.0)
    };
    // Two calls hold the two instances until their deadline; most of the
    // others give up waiting for one rather than taking more of the pool.
    assert_eq!(count("timeout") + count("unavailable"), 20.0, "{metrics}");
    assert!(count("timeout") >= 2.0, "{metrics}");
    assert!(count("unavailable") >= 10.0, "{metrics}");
}

#[tokio::test]
async fn a_plugin_cannot_change_how_a_body_is_framed() {
    let upstream = Upstream::start().await;
    let reframe = |hook: &str, prefix: &str| {
        format!(
            "failure = \"closed\"\n[config]\nmisbehave = \"reframe\"\nhook = \"{hook}\"\nprefix = \"{prefix}\"\n"
        )
    };
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "reframe-request",
            "hostile",
            &reframe("on-request", "/echo"),
        )
        .plugin("reframe-response", "hostile", &reframe("on-response", "/"))
        .spawn()
        .await;

    // A request body with a length: the upstream gets its real length.
    let body = pattern(100_000);
    let reply = send_body(Method::POST, &tandem.url("/echo"), body.clone()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body == body, "the echoed body comes back whole");
    let seen = upstream.seen_at("/echo");
    assert_eq!(seen[0].headers["content-length"], "100000");
    assert!(seen[0].headers.get("transfer-encoding").is_none());

    // A response with a length keeps it; one without stays unframed by
    // length (chunked to the client), whatever the plugin set.
    let reply = get(&tandem.url("/hello")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "hello from upstream");
    assert_eq!(
        reply.header("content-length"),
        Some("hello from upstream".len().to_string().as_str())
    );
    let reply = get(&tandem.url("/stream?bytes=300000")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.body == pattern(300_000),
        "the streamed body arrives whole"
    );
    assert!(reply.header("content-length").is_none());
}
