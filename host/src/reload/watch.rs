//! Watches the plugin directory, the config file and the directories of the
//! files named in `[files]` tables (inotify through the `notify` crate) and
//! reloads once changes have been quiet for a moment.
//!
//! Which file changed does not matter: every reload reads the whole
//! directory (and every value file) and compares contents. So a Kubernetes
//! ConfigMap update, which swaps the `..data` link under every file at once,
//! is just one more change, and so is a rename, a write in chunks or a
//! delete.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::{Trigger, plan, reload};
use crate::app::App;

/// Changes must have stopped for this long before a reload starts.
pub const DEBOUNCE: Duration = plan::SETTLE;

/// A stream of changes that never pauses still reloads this often; files
/// still being written are then skipped by the scan and read next time.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// What the watcher needs to tell a relevant event from noise.
struct Watched {
    plugin_dir: PathBuf,
    config_file: Option<PathBuf>,
    /// The files named in `[files]` tables.
    value_files: BTreeSet<PathBuf>,
    /// Their directories that are watched besides the plugin directory and
    /// the config's.
    value_dirs: BTreeSet<PathBuf>,
}

impl Watched {
    /// Whether the plugin directory, a file in it or the config file was
    /// modified at or after `since` (give or take the coarse clock that
    /// file systems stamp times with: a false alarm costs one reload).
    fn changed_since(&self, since: SystemTime) -> bool {
        let since = since - Duration::from_millis(20);
        let newer = |path: &Path| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified >= since)
        };
        let entries = std::fs::read_dir(&self.plugin_dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default();
        newer(&self.plugin_dir)
            || entries.iter().any(|path| newer(path))
            || self.config_file.as_deref().is_some_and(newer)
            || self.value_files.iter().any(|path| newer(path))
    }

    /// Watches the directory of every value file that is not watched yet,
    /// and stops watching directories no value file is in any more. Returns
    /// whether it watches a directory it did not watch before.
    fn watch_value_dirs(&mut self, watcher: &mut impl notify::Watcher) -> bool {
        // The same directory under another name must not be watched twice:
        // inotify would then report its events under one name only.
        let watched_already: Vec<PathBuf> = [Some(self.plugin_dir.clone()), self.config_dir()]
            .into_iter()
            .flatten()
            .filter_map(|dir| std::fs::canonicalize(dir).ok())
            .collect();
        let wanted: BTreeSet<PathBuf> = self
            .value_files
            .iter()
            .filter_map(|file| file.parent())
            .map(|dir| {
                if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir.to_owned()
                }
            })
            .filter(|dir| {
                std::fs::canonicalize(dir).map_or(true, |dir| !watched_already.contains(&dir))
            })
            .collect();
        for gone in self.value_dirs.difference(&wanted) {
            let _ = watcher.unwatch(gone);
        }
        self.value_dirs.retain(|dir| wanted.contains(dir));
        let mut added = false;
        for dir in wanted {
            if self.value_dirs.contains(&dir) {
                continue;
            }
            // A directory that cannot be watched (not there yet, say) is
            // tried again after the next reload.
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "watching for changes of value files");
                    self.value_dirs.insert(dir);
                    added = true;
                }
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot watch the directory of a value file; reload with SIGHUP or POST /reload")
                }
            }
        }
        added
    }

    /// The file names of the value files. Events are matched by name, not
    /// by path: a directory may be watched under another name.
    fn value_names(&self) -> BTreeSet<&OsStr> {
        self.value_files
            .iter()
            .filter_map(|file| file.file_name())
            .collect()
    }

    fn config_dir(&self) -> Option<PathBuf> {
        let file = self.config_file.as_ref()?;
        let parent = file.parent()?;
        Some(if parent.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            parent.to_owned()
        })
    }

    /// Whether `event` may change what a reload would load.
    fn relevant(&self, event: &Event) -> bool {
        if event.need_rescan() {
            return true;
        }
        match event.kind {
            // Reads (ours included) open and close files: not a change. A
            // close after writing is the end of a write, though.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
            EventKind::Access(_) => return false,
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => return false,
            _ => {}
        }
        let config_name = self.config_file.as_deref().and_then(Path::file_name);
        let value_names = self.value_names();
        event.paths.iter().any(|path| {
            path == &self.plugin_dir
                || self.relevant_name(path.file_name(), config_name, &value_names)
        })
    }

    fn relevant_name(
        &self,
        name: Option<&OsStr>,
        config_name: Option<&OsStr>,
        value_names: &BTreeSet<&OsStr>,
    ) -> bool {
        let Some(name) = name else { return false };
        if Some(name) == config_name || value_names.contains(name) {
            return true;
        }
        let name = name.to_string_lossy();
        // `..data` and the `..TIMESTAMP` directories of a ConfigMap volume.
        name.starts_with("..") || name.ends_with(".wasm") || name.ends_with(".toml")
    }
}

/// The file watcher.
pub struct Watcher;

impl Watcher {
    /// Starts watching the plugin directory (following it when the config
    /// moves it) and the directory of the config file.
    pub fn start(app: Arc<App>) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
        let (sender, events) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            // The receiver is gone only when Tandem is stopping.
            let _ = sender.send(event);
        })?;
        let mut dirs = app.reloader.plugin_dir();
        let mut value_files = app.reloader.value_files();
        let mut watched = Watched {
            plugin_dir: dirs.borrow_and_update().clone(),
            config_file: app.config.origin.path.clone(),
            value_files: value_files.borrow_and_update().clone(),
            value_dirs: BTreeSet::new(),
        };
        watcher.watch(&watched.plugin_dir, RecursiveMode::NonRecursive)?;
        if let Some(config_dir) = watched.config_dir()
            && config_dir != watched.plugin_dir
            && let Err(error) = watcher.watch(&config_dir, RecursiveMode::NonRecursive)
        {
            tracing::warn!(dir = %config_dir.display(), %error, "cannot watch the config file; reload with SIGHUP or POST /reload");
        }
        tracing::info!(dir = %watched.plugin_dir.display(), "watching for plugin changes");
        watched.watch_value_dirs(&mut watcher);
        // Changes made while start-up was loading came before the watch:
        // look for them once.
        if watched.changed_since(app.reloader.first_scan_at()) {
            tracing::info!("files changed during start-up: reloading");
            let app = app.clone();
            tokio::spawn(async move { reload(&app, Trigger::Files).await });
        }
        Ok(tokio::spawn(watch(
            app,
            watcher,
            events,
            (dirs, value_files),
            watched,
        )))
    }
}

async fn watch(
    app: Arc<App>,
    mut watcher: RecommendedWatcher,
    mut events: UnboundedReceiver<notify::Result<Event>>,
    (mut dirs, mut value_files): (
        tokio::sync::watch::Receiver<PathBuf>,
        tokio::sync::watch::Receiver<BTreeSet<PathBuf>>,
    ),
    mut watched: Watched,
) {
    let relevant = |watched: &Watched, event: notify::Result<Event>| match event {
        Ok(event) => watched.relevant(&event),
        Err(error) => {
            // Events may have been lost: a reload finds out what changed.
            tracing::warn!(%error, "file watcher error");
            true
        }
    };
    // Set when a reload found files still being written: look again then,
    // in case no further event comes.
    let mut retry: Option<Instant> = None;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                if !relevant(&watched, event) {
                    continue;
                }
                // Wait until changes have been quiet for DEBOUNCE.
                let first = Instant::now();
                let mut deadline = first + DEBOUNCE;
                loop {
                    tokio::select! {
                        event = events.recv() => {
                            let Some(event) = event else { return };
                            if relevant(&watched, event) {
                                deadline = (Instant::now() + DEBOUNCE).min(first + MAX_DELAY);
                            }
                        }
                        () = tokio::time::sleep_until(deadline) => break,
                    }
                }
                let report = reload(&app, Trigger::Files).await;
                retry = (!report.pending.is_empty()).then(|| Instant::now() + DEBOUNCE);
            }
            () = tokio::time::sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => {
                let report = reload(&app, Trigger::Files).await;
                retry = (!report.pending.is_empty()).then(|| Instant::now() + DEBOUNCE);
            }
            changed = dirs.changed() => {
                if changed.is_err() {
                    return;
                }
                let dir = dirs.borrow_and_update().clone();
                let _ = watcher.unwatch(&watched.plugin_dir);
                // The new plugin directory may be watched for value files:
                // start those watches afresh, so that dropping one later
                // cannot drop the plugin directory's.
                for value_dir in std::mem::take(&mut watched.value_dirs) {
                    let _ = watcher.unwatch(&value_dir);
                }
                match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => tracing::info!(dir = %dir.display(), "watching for plugin changes"),
                    Err(error) => tracing::warn!(dir = %dir.display(), %error, "cannot watch the new plugin directory; reload with SIGHUP or POST /reload"),
                }
                // The config's directory may be the old plugin directory.
                if let Some(config_dir) = watched.config_dir() {
                    let _ = watcher.watch(&config_dir, RecursiveMode::NonRecursive);
                }
                watched.plugin_dir = dir;
                watched.watch_value_dirs(&mut watcher);
                // The reload that moved to the new directory read it before
                // it was watched: read it again to catch changes in between.
                let report = reload(&app, Trigger::Files).await;
                retry = (!report.pending.is_empty()).then(|| Instant::now() + DEBOUNCE);
            }
            changed = value_files.changed() => {
                if changed.is_err() {
                    return;
                }
                watched.value_files = value_files.borrow_and_update().clone();
                if watched.watch_value_dirs(&mut watcher) {
                    // The reload that named the new files read them before
                    // their directory was watched: read them again.
                    let report = reload(&app, Trigger::Files).await;
                    retry = (!report.pending.is_empty()).then(|| Instant::now() + DEBOUNCE);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, RemoveKind, RenameMode};

    fn watched() -> Watched {
        Watched {
            plugin_dir: "/p".into(),
            config_file: Some("/etc/tandem/tandem.conf".into()),
            value_files: ["/run/secrets/jwks.json".into(), "/p/keys.json".into()].into(),
            value_dirs: BTreeSet::new(),
        }
    }

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(path.into())
    }

    #[test]
    fn plugin_files_configmap_links_and_the_config_are_relevant() {
        let w = watched();
        for path in [
            "/p/a.wasm",
            "/p/a.toml",
            "/p/..data",
            "/p/..2024_01_01_00_00_00.1",
            "/etc/tandem/tandem.conf",
            "/run/secrets/jwks.json",
            "/run/secrets/..data",
            "/p/keys.json",
        ] {
            assert!(
                w.relevant(&event(EventKind::Create(CreateKind::File), path)),
                "{path}"
            );
        }
        assert!(w.relevant(&event(EventKind::Remove(RemoveKind::Folder), "/p")));
        let rename = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path("/p/a.wasm.tmp".into())
            .add_path("/p/a.wasm".into());
        assert!(w.relevant(&rename));
    }

    #[test]
    fn changes_since_a_moment_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wasm"), b"old").unwrap();
        let watched = Watched {
            plugin_dir: dir.path().to_owned(),
            config_file: None,
            value_files: BTreeSet::new(),
            value_dirs: BTreeSet::new(),
        };
        let later = SystemTime::now() + Duration::from_secs(60);
        assert!(!watched.changed_since(later));
        assert!(watched.changed_since(SystemTime::now() - Duration::from_secs(60)));
    }

    #[test]
    fn value_file_directories_are_watched_once_and_dropped_when_unused() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&plugins).unwrap();
        std::fs::create_dir(&secrets).unwrap();
        let mut watcher = notify::recommended_watcher(|_| {}).unwrap();
        let mut watched = Watched {
            plugin_dir: plugins.clone(),
            config_file: None,
            value_files: [
                plugins.join("beside.json"),
                // The plugin directory under another name.
                plugins.join("../plugins/again.json"),
                secrets.join("jwks.json"),
            ]
            .into(),
            value_dirs: BTreeSet::new(),
        };
        assert!(watched.watch_value_dirs(&mut watcher));
        assert_eq!(watched.value_dirs, BTreeSet::from([secrets.clone()]));
        assert!(
            !watched.watch_value_dirs(&mut watcher),
            "nothing new to watch"
        );
        watched.value_files = [dir.path().join("missing/x.json")].into();
        assert!(!watched.watch_value_dirs(&mut watcher));
        assert!(watched.value_dirs.is_empty(), "{:?}", watched.value_dirs);
    }

    #[test]
    fn reads_and_unrelated_files_are_noise() {
        let w = watched();
        assert!(!w.relevant(&event(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            "/p/a.wasm"
        )));
        assert!(!w.relevant(&event(
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
            "/p/a.wasm"
        )));
        assert!(!w.relevant(&event(EventKind::Create(CreateKind::File), "/p/a.wasm.tmp")));
        assert!(!w.relevant(&event(
            EventKind::Create(CreateKind::File),
            "/run/secrets/other.json"
        )));
        assert!(w.relevant(&event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/p/a.wasm"
        )));
    }
}
