//! Main-config keys that a running Tandem cannot change: its listeners are
//! bound, and its upstream client, drain period, cache and watcher are set
//! up once. A reload reports each of them that changed instead of ignoring
//! it. Only `[plugins] dir` is applied on reload.

use std::path::Path;
use std::time::Duration;

use super::report::RestartRequired;
use crate::config::Config;

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

fn cache(dir: Option<&Path>) -> String {
    dir.map_or_else(|| "(off)".to_owned(), |d| d.display().to_string())
}

/// The keys whose configured value differs from the running one.
pub fn restart_required(running: &Config, configured: &Config) -> Vec<RestartRequired> {
    let pairs: [(&'static str, String, String); 10] = [
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
            "upstream = \"127.0.0.1:2\"\nlisten = \"127.0.0.1:9090\"\nupstream_timeout_ms = 5\n",
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
            ]
        );
    }
}
