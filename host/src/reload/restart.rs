//! Main-config keys that a running Tandem cannot change: its listeners are
//! bound, and its upstream client, drain period, cache and watcher are set
//! up once. A reload reports each of them that changed instead of ignoring
//! it, `[limits]` and `[records]` included. Only `[plugins] dir` is
//! applied on reload.

use std::path::Path;
use std::time::Duration;

use super::report::RestartRequired;
use crate::config::{Config, Limits};

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

fn cache(dir: Option<&Path>) -> String {
    dir.map_or_else(|| "(off)".to_owned(), |d| d.display().to_string())
}

/// The `[limits]` keys and their values, as written in the file.
fn limits(limits: &Limits) -> [(&'static str, String); 11] {
    [
        ("limits.max_connections", limits.max_connections.to_string()),
        (
            "limits.max_request_header_bytes",
            limits.max_request_header_bytes.to_string(),
        ),
        (
            "limits.max_request_headers",
            limits.max_request_headers.to_string(),
        ),
        (
            "limits.max_request_body_bytes",
            limits.max_request_body_bytes.to_string(),
        ),
        ("limits.route", format!("{:?}", limits.routes)),
        (
            "limits.header_read_timeout_ms",
            millis(limits.header_read_timeout),
        ),
        ("limits.idle_timeout_ms", millis(limits.idle_timeout)),
        ("limits.request_timeout_ms", millis(limits.request_timeout)),
        (
            "limits.plugin_stack_kb",
            (limits.plugin_stack_bytes >> 10).to_string(),
        ),
        ("limits.normalize_paths", limits.normalize_paths.to_string()),
        ("limits.merge_slashes", limits.merge_slashes.to_string()),
    ]
}

/// The keys whose configured value differs from the running one.
pub fn restart_required(running: &Config, configured: &Config) -> Vec<RestartRequired> {
    let mut pairs: Vec<(&'static str, String, String)> = vec![
        (
            "listen",
            running.listen.to_string(),
            configured.listen.to_string(),
        ),
        (
            "admin",
            running.admin.to_string(),
            configured.admin.to_string(),
        ),
        (
            "upstream",
            running.upstream.to_string(),
            configured.upstream.to_string(),
        ),
        (
            "upstream_timeout_ms",
            millis(running.upstream_timeout),
            millis(configured.upstream_timeout),
        ),
        (
            "upstream_body_timeout_ms",
            millis(running.upstream_body_timeout),
            millis(configured.upstream_body_timeout),
        ),
        (
            "shutdown_grace_ms",
            millis(running.shutdown_grace),
            millis(configured.shutdown_grace),
        ),
        (
            "shutdown_delay_ms",
            millis(running.shutdown_delay),
            millis(configured.shutdown_delay),
        ),
        (
            "workers",
            running.workers.to_string(),
            configured.workers.to_string(),
        ),
        (
            "plugins.cache_dir",
            cache(running.cache_dir.as_deref()),
            cache(configured.cache_dir.as_deref()),
        ),
        (
            "plugins.watch",
            running.watch.to_string(),
            configured.watch.to_string(),
        ),
    ];
    pairs.extend(
        limits(&running.limits)
            .into_iter()
            .zip(limits(&configured.limits))
            .map(|((key, running), (_, configured))| (key, running, configured)),
    );
    // The sink's settings may hold credentials (an Authorization header):
    // that they changed is said, not what they are.
    if format!("{:?}", running.records) != format!("{:?}", configured.records) {
        pairs.push(("records", "(as started)".into(), "(changed)".into()));
    }
    pairs
        .into_iter()
        .filter(|(_, running, configured)| running != configured)
        .map(|(key, running, configured)| RestartRequired {
            key,
            running,
            configured,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn config(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), &Overrides::default()).unwrap()
    }

    #[test]
    fn changed_keys_are_named_with_both_values() {
        let running = config("upstream = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:8080\"\n");
        let same = config("upstream = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:8080\"\n");
        assert!(restart_required(&running, &same).is_empty());
        let changed = config(
            "upstream = \"127.0.0.1:2\"\nlisten = \"127.0.0.1:9090\"\nupstream_timeout_ms = 5\n\
             [limits]\nmax_connections = 7\n[records]\nbatch_max_records = 3\n",
        );
        let keys: Vec<_> = restart_required(&running, &changed)
            .into_iter()
            .map(|r| (r.key, r.running, r.configured))
            .collect();
        assert_eq!(
            keys,
            [
                ("listen", "127.0.0.1:8080".into(), "127.0.0.1:9090".into()),
                ("upstream", "127.0.0.1:1".into(), "127.0.0.1:2".into()),
                ("upstream_timeout_ms", "30000".into(), "5".into()),
                (
                    "limits.max_connections",
                    crate::config::DEFAULT_MAX_CONNECTIONS.to_string(),
                    "7".into()
                ),
                ("records", "(as started)".into(), "(changed)".into()),
            ]
        );
    }
}
