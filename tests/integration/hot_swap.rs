//! Hot swap: plugins added, replaced, reconfigured and removed while Tandem
//! serves, in each way files really change, with no failed request; broken
//! new versions leave the old one serving; the artifact cache; reloads on
//! request; main-config changes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::support::client::{Reply, client, get, send_body};
use crate::support::eventually;
use crate::support::plugins::wasm;
use crate::support::tandem::{Tandem, TandemBuilder};
use crate::support::upstream::Upstream;

/// Generous bound for a change to show when nothing measures it.
const SHOWS_WITHIN: Duration = Duration::from_secs(10);

/// The bound the issue sets: a change serves within one second.
const SWAP_BOUND: Duration = Duration::from_secs(1);

/// Each load client sends at most one request per this interval: steady
/// load (up to 8 x 250 requests a second) that leaves the two cores of
/// the test machine, shared with the other tests, room to compile.
const CLIENT_PACE: Duration = Duration::from_millis(4);

/// The marker before the ten digits of version-tag's stamp.
const STAMP_MARKER: &[u8] = b"TANDEM-VERSION-STAMP:";

/// The version-tag plugin with its stamp set to `version`: a distinct,
/// valid component for each version.
fn version_tag(version: u64) -> Vec<u8> {
    let mut bytes = std::fs::read(wasm("version-tag")).unwrap();
    let found: Vec<usize> = bytes
        .windows(STAMP_MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == STAMP_MARKER)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(found.len(), 1, "the stamp marker occurs once");
    let at = found[0] + STAMP_MARKER.len();
    bytes[at..at + 10].copy_from_slice(format!("{version:010}").as_bytes());
    bytes
}

/// Replaces `path` the safe way: a temporary file beside it, then a rename.
fn replace_by_rename(path: &Path, bytes: &[u8]) {
    let temp = path.with_extension("swap-tmp");
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// A plugin file in the plugin directory.
fn file(tandem: &Tandem, name: &str) -> PathBuf {
    tandem.plugin_dir().join(name)
}

/// `POST /reload`: the status and the JSON report.
async fn post_reload(tandem: &Tandem) -> (StatusCode, serde_json::Value) {
    let reply = send_body(Method::POST, &tandem.admin_url("/reload"), "").await;
    let report =
        serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.text()));
    (reply.status, report)
}

/// A response header, checking there is at most one.
fn single(reply: &Reply, name: &str) -> Option<String> {
    let values: Vec<_> = reply.headers.get_all(name).iter().collect();
    assert!(values.len() <= 1, "{name} appears {} times", values.len());
    values.first().map(|v| v.to_str().unwrap().to_owned())
}

/// Whether `text` shows up in the logs (which arrive on their own time).
async fn logged(tandem: &Tandem, text: &str) -> bool {
    eventually(SHOWS_WITHIN, async || tandem.logs().contains(text)).await
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|rest| rest.trim().parse().ok())
}

/// What one response says about the chain that served it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// `x-version`: the stamp of the `ver` wasm.
    version: u64,
    /// `x-version-label`: the label in `ver.toml` (0 if none).
    label: u64,
    /// `x-gone`: the plugin that is removed is still there.
    gone: bool,
    /// `x-extra`: the plugin that is added is there.
    extra: bool,
    /// `x-cfg`: the value in `cfg.toml`.
    cfg: u64,
}

impl Seen {
    fn of(reply: &Reply) -> Result<Self, String> {
        if reply.status != StatusCode::OK || reply.body != "hello from upstream" {
            return Err(format!("status {} body {:?}", reply.status, reply.text()));
        }
        let number = |name: &str| -> Result<Option<u64>, String> {
            let values: Vec<_> = reply.headers.get_all(name).iter().collect();
            match values.as_slice() {
                [] => Ok(None),
                [one] => one
                    .to_str()
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .map(Some)
                    .ok_or_else(|| format!("{name}: {one:?}")),
                _ => Err(format!("{name} appears {} times", values.len())),
            }
        };
        Ok(Seen {
            version: number("x-version")?.ok_or("no x-version")?,
            label: number("x-version-label")?.unwrap_or(0),
            gone: number("x-gone")?.is_some(),
            extra: number("x-extra")?.is_some(),
            cfg: number("x-cfg")?.ok_or("no x-cfg")?,
        })
    }

    /// Whether `self` can follow `before` on one connection: every change
    /// only goes forward, so a response that mixed two chains, or an old
    /// chain after a new one, shows up here.
    fn follows(&self, before: &Seen) -> bool {
        let removed_stays_removed = before.gone || !self.gone;
        let added_stays_added = self.extra || !before.extra;
        self.version >= before.version
            && self.label >= before.label
            && removed_stays_removed
            && added_stays_added
            && self.cfg >= before.cfg
    }
}

/// One GET through its own keep-alive client.
async fn fetch(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    url: &str,
) -> Result<Reply, String> {
    let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_load_twenty_swaps_an_add_a_remove_and_a_config_change_fail_no_request() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("ver", "version-tag", "order = 1\n")
        .plugin(
            "gone",
            "add-header",
            "order = 2\n[config]\nheaders = { x-gone = \"1\" }\n",
        )
        .plugin(
            "cfg",
            "add-header",
            "order = 3\n[config]\nheaders = { x-cfg = \"1\" }\n",
        )
        .spawn()
        .await;
    let url = tandem.url("/");

    // Eight clients, each on its own keep-alive connection, for as long as
    // the swaps take (bounded below).
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let problems = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for id in 0..8 {
        let (stop, requests, problems, url) = (
            stop.clone(),
            requests.clone(),
            problems.clone(),
            url.clone(),
        );
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut last: Option<Seen> = None;
            let mut pace = tokio::time::interval(CLIENT_PACE);
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                let seen = fetch(&client, &url).await.and_then(|r| Seen::of(&r));
                requests.fetch_add(1, Ordering::Relaxed);
                match seen {
                    Ok(seen) if last.is_none_or(|last| seen.follows(&last)) => last = Some(seen),
                    Ok(seen) => problems
                        .lock()
                        .unwrap()
                        .push(format!("client {id}: {seen:?} after {last:?}")),
                    Err(error) => problems
                        .lock()
                        .unwrap()
                        .push(format!("client {id}: {error}")),
                }
            }
        }));
    }

    type Step = (String, Box<dyn Fn(&Seen) -> bool>);
    let mut steps: Vec<(Step, Box<dyn Fn()>)> = Vec::new();
    let dir = tandem.plugin_dir();
    for n in 1..=20u64 {
        let dir = dir.clone();
        if n % 2 == 1 {
            // A new wasm, renamed into place.
            steps.push((
                (
                    format!("swap {n}: ver.wasm (stamp {n}) by rename"),
                    Box::new(move |s: &Seen| s.version == n),
                ),
                Box::new(move || replace_by_rename(&dir.join("ver.wasm"), &version_tag(n))),
            ));
        } else {
            // A new NAME.toml, written in place.
            steps.push((
                (
                    format!("swap {n}: ver.toml (label {n}) in place"),
                    Box::new(move |s: &Seen| s.label == n),
                ),
                Box::new(move || {
                    std::fs::write(
                        dir.join("ver.toml"),
                        format!("order = 1\n[config]\nlabel = \"{n}\"\n"),
                    )
                    .unwrap()
                }),
            ));
        }
    }
    let add_dir = dir.clone();
    steps.push((
        ("add extra".into(), Box::new(|s: &Seen| s.extra)),
        Box::new(move || {
            std::fs::write(
                add_dir.join("extra.toml"),
                "order = 4\n[config]\nheaders = { x-extra = \"1\" }\n",
            )
            .unwrap();
            replace_by_rename(
                &add_dir.join("extra.wasm"),
                &std::fs::read(wasm("add-header")).unwrap(),
            );
        }),
    ));
    let remove_dir = dir.clone();
    steps.push((
        ("remove gone".into(), Box::new(|s: &Seen| !s.gone)),
        Box::new(move || std::fs::remove_file(remove_dir.join("gone.wasm")).unwrap()),
    ));
    let cfg_dir = dir.clone();
    steps.push((
        ("change cfg.toml".into(), Box::new(|s: &Seen| s.cfg == 2)),
        Box::new(move || {
            std::fs::write(
                cfg_dir.join("cfg.toml"),
                "order = 3\n[config]\nheaders = { x-cfg = \"2\" }\n",
            )
            .unwrap()
        }),
    ));

    // Each change, then a probe until a response shows it.
    let probe = client();
    let mut took = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for ((name, shows), change) in &steps {
        change();
        let changed = Instant::now();
        loop {
            let reply = fetch(&probe, &url).await.expect("probe request");
            let seen = Seen::of(&reply).expect("probe response");
            if shows(&seen) {
                took.push((name.clone(), changed.elapsed()));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never showed; logs:\n{}",
                tandem.logs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let problems = std::mem::take(&mut *problems.lock().unwrap());
    let requests = requests.load(Ordering::Relaxed);
    eprintln!("{requests} requests during {} changes", steps.len());
    for (name, took) in &took {
        eprintln!("  {name}: served after {} ms", took.as_millis());
    }
    // What the reloads said, should an assertion below fail.
    for line in tandem.logs().lines() {
        if ["reload:", "not loaded", "plugin loaded"]
            .iter()
            .any(|w| line.contains(w))
        {
            eprintln!("{line}");
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {requests} requests failed or went backwards, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert!(
        requests >= 8 * steps.len() as u64,
        "load was steady: {requests} requests"
    );
    let slow: Vec<_> = took.iter().filter(|(_, t)| *t > SWAP_BOUND).collect();
    assert!(
        slow.is_empty(),
        "changes slower than {SWAP_BOUND:?}: {slow:?}"
    );

    let ver = tandem.plugin("ver").await.unwrap();
    assert_eq!(ver["versions_loaded"], 21, "one version per swap: {ver}");
    assert_eq!(ver["state"], "serving");
    assert!(tandem.plugin("gone").await.is_none());
    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert!(
        metric(&metrics, "tandem_reloads_total{outcome=\"ok\"}").unwrap_or(0.0) >= 23.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "tandem_reloads_total{outcome=\"error\"}"),
        None,
        "logs:\n{}",
        tandem.logs()
    );
}

#[tokio::test]
async fn a_new_file_is_loaded_and_listed() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .spawn()
        .await;
    assert_eq!(get(&tandem.url("/")).await.header("x-new"), None);
    std::fs::write(
        file(&tandem, "new.toml"),
        "[config]\nheaders = { x-new = \"here\" }\n",
    )
    .unwrap();
    // A plain copy: the file appears, then fills.
    std::fs::copy(wasm("add-header"), file(&tandem, "new.wasm")).unwrap();
    let shown = eventually(SHOWS_WITHIN, async || {
        get(&tandem.url("/")).await.header("x-new") == Some("here")
    })
    .await;
    assert!(shown, "the new plugin serves; logs:\n{}", tandem.logs());
    let new = tandem.plugin("new").await.unwrap();
    assert_eq!(new["state"], "serving");
    assert_eq!(new["versions_loaded"], 1);
    assert_eq!(new["sha256"].as_str().unwrap().len(), 64);
    assert!(new["loaded_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn a_file_replaced_by_rename_takes_over() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("ver", "version-tag", "")
        .spawn()
        .await;
    assert_eq!(get(&tandem.url("/")).await.header("x-version"), Some("0"));
    let before = tandem.plugin("ver").await.unwrap();
    replace_by_rename(&file(&tandem, "ver.wasm"), &version_tag(2));
    let shown = eventually(SHOWS_WITHIN, async || {
        get(&tandem.url("/")).await.header("x-version") == Some("2")
    })
    .await;
    assert!(shown, "logs:\n{}", tandem.logs());
    let after = tandem.plugin("ver").await.unwrap();
    assert_ne!(after["sha256"], before["sha256"]);
    assert_eq!(after["versions_loaded"], 2);
    assert_eq!(after["state"], "serving");
}

#[tokio::test]
async fn a_file_written_slowly_in_chunks_is_never_loaded_half_written() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("ver", "version-tag", "")
        .spawn()
        .await;
    let new = version_tag(3);
    let (first, rest) = new.split_at(new.len() / 2);
    let path = file(&tandem, "ver.wasm");
    let mut writer = std::fs::File::create(&path).unwrap();
    std::io::Write::write_all(&mut writer, first).unwrap();
    std::io::Write::flush(&mut writer).unwrap();
    // For half a second the file is half there: the old version serves.
    let pause_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < pause_until {
        let reply = get(&tandem.url("/")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.header("x-version"),
            Some("0"),
            "the old version serves"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ver = tandem.plugin("ver").await.unwrap();
    assert_ne!(ver["state"], "failed", "the old version is kept: {ver}");
    std::io::Write::write_all(&mut writer, rest).unwrap();
    drop(writer);
    let shown = eventually(SHOWS_WITHIN, async || {
        get(&tandem.url("/")).await.header("x-version") == Some("3")
    })
    .await;
    assert!(shown, "the whole file loads; logs:\n{}", tandem.logs());
    let ver = tandem.plugin("ver").await.unwrap();
    assert_eq!(ver["state"], "serving", "{ver}");
    assert_eq!(ver["load_error"], serde_json::Value::Null);
}

/// Lays out a Kubernetes ConfigMap volume generation: the files in
/// `..NAME/`, to be pointed at by `..data`.
fn configmap_generation(dir: &Path, generation: &str, version: u64) {
    let data = dir.join(generation);
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("a.wasm"), version_tag(version)).unwrap();
    std::fs::write(data.join("a.toml"), "order = 1\n").unwrap();
    std::fs::copy(wasm("add-header"), data.join("b.wasm")).unwrap();
    std::fs::write(
        data.join("b.toml"),
        format!("order = 2\n[config]\nheaders = {{ x-b = \"{version}\" }}\n"),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_data_link_swap_changes_every_plugin_at_once() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .spawn()
        .await;
    let dir = tandem.plugin_dir();
    // What the kubelet does: files in a timestamped directory, `..data`
    // linking to it, and each user-visible name linking through `..data`.
    configmap_generation(&dir, "..2024_01_01_00_00_00.1", 1);
    std::os::unix::fs::symlink("..2024_01_01_00_00_00.1", dir.join("..data")).unwrap();
    for name in ["a.wasm", "a.toml", "b.wasm", "b.toml"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
    }
    let first = eventually(SHOWS_WITHIN, async || {
        let reply = get(&tandem.url("/")).await;
        reply.header("x-version") == Some("1") && reply.header("x-b") == Some("1")
    })
    .await;
    assert!(first, "logs:\n{}", tandem.logs());
    let mut versions_before = Vec::new();
    for name in ["a", "b"] {
        let entry = tandem.plugin(name).await.unwrap();
        versions_before.push(entry["versions_loaded"].as_u64().unwrap());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mixed = Arc::new(Mutex::new(Vec::<String>::new()));
    let load = {
        let (stop, mixed, url) = (stop.clone(), mixed.clone(), tandem.url("/"));
        tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                let reply = fetch(&client, &url).await.expect("request");
                let pair = (single(&reply, "x-version"), single(&reply, "x-b"));
                if reply.status != StatusCode::OK || pair.0 != pair.1 {
                    mixed
                        .lock()
                        .unwrap()
                        .push(format!("{} {pair:?}", reply.status));
                }
            }
        })
    };
    // The update: a new generation, a new link renamed over `..data`, the
    // old generation removed.
    configmap_generation(&dir, "..2024_01_01_00_05_00.2", 2);
    std::os::unix::fs::symlink("..2024_01_01_00_05_00.2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2024_01_01_00_00_00.1")).unwrap();
    let second = eventually(SHOWS_WITHIN, async || {
        get(&tandem.url("/")).await.header("x-version") == Some("2")
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(second, "logs:\n{}", tandem.logs());
    let reply = get(&tandem.url("/")).await;
    assert_eq!(reply.header("x-b"), Some("2"));
    let mixed = std::mem::take(&mut *mixed.lock().unwrap());
    assert!(mixed.is_empty(), "responses mixing generations: {mixed:?}");
    for (name, before) in ["a", "b"].into_iter().zip(versions_before) {
        let entry = tandem.plugin(name).await.unwrap();
        assert_eq!(
            entry["versions_loaded"],
            before + 1,
            "one new version each: {entry}"
        );
    }
}

#[tokio::test]
async fn a_deleted_file_unloads_its_plugin() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("ver", "version-tag", "")
        .plugin(
            "hdr",
            "add-header",
            "[config]\nheaders = { x-hdr = \"1\" }\n",
        )
        .spawn()
        .await;
    assert_eq!(get(&tandem.url("/")).await.header("x-hdr"), Some("1"));
    std::fs::remove_file(file(&tandem, "hdr.wasm")).unwrap();
    let gone = eventually(SHOWS_WITHIN, async || {
        get(&tandem.url("/")).await.header("x-hdr").is_none()
    })
    .await;
    assert!(gone, "logs:\n{}", tandem.logs());
    assert!(tandem.plugin("hdr").await.is_none(), "no longer listed");
    let ver = tandem.plugin("ver").await.unwrap();
    assert_eq!(
        ver["versions_loaded"], 1,
        "the other plugin was not reloaded"
    );
    assert_eq!(get(&tandem.url("/")).await.header("x-version"), Some("0"));
}

#[tokio::test]
async fn a_settings_change_alone_initialises_the_same_wasm_again() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "hdr",
            "add-header",
            "[config]\nheaders = { x-hdr = \"1\" }\n",
        )
        .spawn()
        .await;
    let before = tandem.plugin("hdr").await.unwrap();
    std::fs::write(
        file(&tandem, "hdr.toml"),
        "[config]\nheaders = { x-hdr = \"2\" }\n",
    )
    .unwrap();
    let shown = eventually(SHOWS_WITHIN, async || {
        get(&tandem.url("/")).await.header("x-hdr") == Some("2")
    })
    .await;
    assert!(shown, "logs:\n{}", tandem.logs());
    let after = tandem.plugin("hdr").await.unwrap();
    assert_eq!(after["sha256"], before["sha256"], "same wasm");
    assert_eq!(after["versions_loaded"], 2);
    assert!(
        logged(&tandem, "change=\"reconfigured\"").await,
        "{}",
        tandem.logs()
    );
}

#[tokio::test]
async fn broken_new_versions_leave_the_old_one_serving_and_show_why() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("ver", "version-tag", "")
        .spawn()
        .await;
    let broken: [(&str, Vec<u8>, &[&str]); 4] = [
        (
            "not WebAssembly",
            b"#!/bin/sh\necho not wasm\n".to_vec(),
            &["not a WebAssembly file"],
        ),
        (
            "wrong world",
            std::fs::read(wasm("other-world")).unwrap(),
            &["is not a tandem:plugin@0.1.0 plugin"],
        ),
        (
            "init returns an error",
            std::fs::read(wasm("bad-init")).unwrap(),
            &["init failed", "bad-init refuses to start"],
        ),
        (
            "init traps",
            std::fs::read(wasm("init-trap")).unwrap(),
            &["init failed", "trapped"],
        ),
    ];
    for (what, bytes, expected) in broken {
        replace_by_rename(&file(&tandem, "ver.wasm"), &bytes);
        let shown = eventually(SHOWS_WITHIN, async || {
            let entry = tandem.plugin("ver").await.unwrap();
            entry["state"] == "serving-previous"
                && expected
                    .iter()
                    .all(|e| entry["load_error"].as_str().unwrap_or("").contains(e))
        })
        .await;
        assert!(
            shown,
            "{what}: the error shows in /plugins: {}; logs:\n{}",
            tandem.plugin("ver").await.unwrap(),
            tandem.logs()
        );
        let reply = get(&tandem.url("/")).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}");
        assert_eq!(
            reply.header("x-version"),
            Some("0"),
            "{what}: old version serves"
        );
        let (status, report) = post_reload(&tandem).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {report}");
        assert_eq!(report["outcome"], "error", "{what}: {report}");
        assert_eq!(report["failed"][0]["name"], "ver");
        assert_eq!(report["failed"][0]["kept_previous"], true);
        assert!(
            report["message"].as_str().unwrap().contains("ver"),
            "{report}"
        );
    }
    assert!(
        logged(&tandem, "plugin not loaded").await,
        "failures are logged:\n{}",
        tandem.logs()
    );

    // A broken plugin that never loaded is listed as failed, and the rest
    // of the chain keeps serving.
    std::fs::copy(wasm("bad-init"), file(&tandem, "fresh.wasm")).unwrap();
    let listed = eventually(SHOWS_WITHIN, async || {
        tandem
            .plugin("fresh")
            .await
            .is_some_and(|p| p["state"] == "failed")
    })
    .await;
    assert!(listed, "{}", tandem.plugins().await);

    // A good version clears the error.
    std::fs::remove_file(file(&tandem, "fresh.wasm")).unwrap();
    replace_by_rename(&file(&tandem, "ver.wasm"), &version_tag(5));
    let recovered = eventually(SHOWS_WITHIN, async || {
        get(&tandem.url("/")).await.header("x-version") == Some("5")
    })
    .await;
    assert!(recovered, "logs:\n{}", tandem.logs());
    let cleared = eventually(SHOWS_WITHIN, async || {
        tandem.plugin("fresh").await.is_none()
    })
    .await;
    assert!(cleared, "{}", tandem.plugins().await);
    let ver = tandem.plugin("ver").await.unwrap();
    assert_eq!(ver["state"], "serving");
    assert_eq!(ver["load_error"], serde_json::Value::Null);
    assert_eq!(
        ver["versions_loaded"], 2,
        "failed attempts are not versions"
    );

    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert!(
        metric(&metrics, "tandem_reloads_total{outcome=\"error\"}").unwrap_or(0.0) >= 4.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "tandem_plugin_loads_total{outcome=\"error\"}").unwrap_or(0.0) >= 4.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn post_reload_and_sighup_reload_and_say_what_changed() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("ver", "version-tag", "")
        .plugins_config("watch = false")
        .spawn()
        .await;

    let (status, report) = post_reload(&tandem).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["outcome"], "unchanged", "{report}");
    assert_eq!(report["unchanged"], serde_json::json!(["ver"]));
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("nothing to do"),
        "says why nothing changed: {report}"
    );
    assert_eq!(
        get(&tandem.admin_url("/reload")).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );

    // With the watcher off, a change waits for a reload.
    replace_by_rename(&file(&tandem, "ver.wasm"), &version_tag(1));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(&tandem.url("/")).await.header("x-version"), Some("0"));
    let (status, report) = post_reload(&tandem).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["outcome"], "ok", "{report}");
    assert_eq!(report["replaced"], serde_json::json!(["ver"]));
    assert_eq!(report["trigger"], "admin");
    assert_eq!(get(&tandem.url("/")).await.header("x-version"), Some("1"));

    std::fs::write(file(&tandem, "ver.toml"), "[config]\nlabel = \"7\"\n").unwrap();
    tandem.signal("HUP");
    let shown = eventually(SHOWS_WITHIN, async || {
        get(&tandem.url("/")).await.header("x-version-label") == Some("7")
    })
    .await;
    assert!(shown, "SIGHUP reloads; logs:\n{}", tandem.logs());
    assert!(logged(&tandem, "SIGHUP received").await);

    let metrics = get(&tandem.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(&metrics, "tandem_reloads_total{outcome=\"ok\"}"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "tandem_reloads_total{outcome=\"unchanged\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(tandem.plugin("ver").await.unwrap()["versions_loaded"], 3);
}

#[tokio::test]
async fn concurrent_reload_requests_are_all_answered() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("ver", "version-tag", "")
        .plugins_config("watch = false")
        .spawn()
        .await;
    replace_by_rename(&file(&tandem, "ver.wasm"), &version_tag(4));
    let answers = futures_util::future::join_all((0..6).map(|_| post_reload(&tandem))).await;
    let mut replaced = 0;
    for (status, report) in &answers {
        assert_eq!(*status, StatusCode::OK, "{report}");
        if report["replaced"] == serde_json::json!(["ver"]) {
            replaced += 1;
        } else {
            assert_eq!(report["outcome"], "unchanged", "{report}");
        }
    }
    assert!(replaced >= 1, "{answers:?}");
    // Reloads never overlap, so the one new version was loaded once.
    assert_eq!(tandem.plugin("ver").await.unwrap()["versions_loaded"], 2);
    assert_eq!(get(&tandem.url("/")).await.header("x-version"), Some("4"));
}

/// Rewrites tandem.toml with `edit` applied to its text.
fn edit_config(tandem: &Tandem, edit: impl FnOnce(String) -> String) {
    let path = tandem.dir().join("tandem.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    replace_by_rename(&path, edit(text).as_bytes());
}

#[tokio::test]
async fn main_config_changes_are_applied_or_reported_as_needing_a_restart() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("ver", "version-tag", "")
        .spawn()
        .await;

    // Keys that need a restart are named, in the log and the answer.
    edit_config(&tandem, |text| {
        text.replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:1\"\nupstream_timeout_ms = 1234",
        )
    });
    assert!(
        logged(&tandem, "restart Tandem to apply it").await,
        "logs:\n{}",
        tandem.logs()
    );
    let (status, report) = post_reload(&tandem).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let keys: Vec<_> = report["restart_required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_owned(),
                r["configured"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("listen".to_owned(), "127.0.0.1:1".to_owned()),
            ("upstream_timeout_ms".to_owned(), "1234".to_owned())
        ]
    );
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("need a restart"),
        "{report}"
    );
    assert_eq!(get(&tandem.url("/")).await.status, StatusCode::OK);

    // The plugin directory moves: the chain comes from the new one, and
    // the watcher follows it.
    let moved = tandem.dir().join("plugins2");
    std::fs::create_dir(&moved).unwrap();
    std::fs::write(moved.join("ver.wasm"), version_tag(7)).unwrap();
    edit_config(&tandem, |text| {
        text.replace("dir = \"plugins\"", "dir = \"plugins2\"")
    });
    let shown = eventually(SHOWS_WITHIN, async || {
        get(&tandem.url("/")).await.header("x-version") == Some("7")
    })
    .await;
    assert!(shown, "logs:\n{}", tandem.logs());
    assert!(
        tandem.plugins().await["plugin_dir"]
            .as_str()
            .unwrap()
            .ends_with("plugins2")
    );
    replace_by_rename(&moved.join("ver.wasm"), &version_tag(8));
    let followed = eventually(SHOWS_WITHIN, async || {
        get(&tandem.url("/")).await.header("x-version") == Some("8")
    })
    .await;
    assert!(
        followed,
        "the watcher follows the new directory; logs:\n{}",
        tandem.logs()
    );

    // A broken config is reported; everything keeps serving.
    edit_config(&tandem, |text| text + "\nnot toml at all\n");
    let (status, report) = post_reload(&tandem).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    assert!(
        report["config_error"]
            .as_str()
            .unwrap()
            .contains("tandem.toml:"),
        "names the file and line: {report}"
    );
    assert_eq!(get(&tandem.url("/")).await.header("x-version"), Some("8"));
}

#[tokio::test]
async fn the_artifact_cache_spares_compiles_and_is_never_read_from_the_plugin_dir() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("ver", "version-tag", "")
        .spawn()
        .await;
    assert!(
        logged(&tandem, "component=\"compiled\"").await,
        "{}",
        tandem.logs()
    );
    let entries = || -> Vec<PathBuf> {
        std::fs::read_dir(tandem.dir().join("cache"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect()
    };
    assert_eq!(entries().len(), 1, "the compiled plugin is cached");

    // Away and back: the second time comes from the cache.
    replace_by_rename(&file(&tandem, "ver.wasm"), &version_tag(1));
    assert!(
        eventually(SHOWS_WITHIN, async || {
            get(&tandem.url("/")).await.header("x-version") == Some("1")
        })
        .await
    );
    replace_by_rename(&file(&tandem, "ver.wasm"), &version_tag(0));
    assert!(
        eventually(SHOWS_WITHIN, async || {
            get(&tandem.url("/")).await.header("x-version") == Some("0")
        })
        .await
    );
    assert!(
        logged(&tandem, "component=\"cached\"").await,
        "a known version is not compiled again:\n{}",
        tandem.logs()
    );
    assert_eq!(entries().len(), 2);

    // A precompiled artifact dropped in the plugin directory is refused.
    std::fs::copy(&entries()[0], file(&tandem, "precompiled.wasm")).unwrap();
    let refused = eventually(SHOWS_WITHIN, async || {
        tandem.plugin("precompiled").await.is_some_and(|p| {
            p["state"] == "failed"
                && p["load_error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("not a WebAssembly file")
        })
    })
    .await;
    assert!(refused, "{}", tandem.plugins().await);
    std::fs::remove_file(file(&tandem, "precompiled.wasm")).unwrap();

    // A restart loads from the cache instead of compiling.
    let tandem = tandem.restart().await;
    assert!(logged(&tandem, "tandem serving").await);
    let logs = tandem.logs();
    assert!(logs.contains("component=\"cached\""), "{logs}");
    assert!(!logs.contains("component=\"compiled\""), "{logs}");
    assert_eq!(get(&tandem.url("/")).await.header("x-version"), Some("0"));
}
