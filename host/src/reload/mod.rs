//! Hot swap: reload the plugin directory (and the main config) while
//! serving. See docs/hot-swap.md.
//!
//! A reload reads the directory once it has settled, compares it with the
//! plugins serving, builds every new or changed plugin off the request path
//! (compile in a blocking thread or load from the artifact cache, check
//! against the world, pre-instantiate, `init`), and then swaps the whole
//! chain at once. Requests in flight keep the chain they started with. A
//! plugin that fails to load keeps its previous version in the new chain.
//! Reloads run one at a time; requests for one that arrive while another
//! runs are answered together by the next.

pub mod build;
pub mod cache;
pub mod plan;
pub mod report;
pub mod restart;
pub mod status;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use wasmtime::component::Component;

use crate::app::App;
use crate::chain::Chain;
use crate::config::Config;
use crate::runtime::Runtime;
use crate::runtime::plugin::PluginVersion;
use cache::ArtifactCache;
use plan::{Change, Found, Serving};
use report::{FailedPlugin, Outcome, ReloadReport};
use status::Book;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A change in the plugin directory or the config file.
    Files,
    /// SIGHUP.
    Signal,
    /// `POST /reload` on the admin listener.
    Admin,
}

impl Trigger {
    /// The name used in logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Files => "files",
            Trigger::Signal => "sighup",
            Trigger::Admin => "admin",
        }
    }
}

/// One plugin serving, with what it was loaded from.
#[derive(Clone)]
struct LivePlugin {
    version: Arc<PluginVersion>,
    component: Component,
    serving: Serving,
}

/// The plugins serving and where they come from. Guarded by an async
/// mutex that a reload holds from start to end: reloads never overlap.
struct Live {
    plugin_dir: PathBuf,
    plugins: BTreeMap<String, LivePlugin>,
}

/// A finished reload and the requests it answered.
struct Finished {
    /// Every request with a ticket up to this one was made before the
    /// reload read anything, so its report answers them.
    covered: u64,
    report: Arc<ReloadReport>,
}

/// The reload machinery of one running Tandem.
pub struct Reloader {
    cache: Option<Arc<ArtifactCache>>,
    live: tokio::sync::Mutex<Live>,
    tickets: AtomicU64,
    last: Mutex<Option<Finished>>,
    book: Mutex<Book>,
    plugin_dir: tokio::sync::watch::Sender<PathBuf>,
    value_files: tokio::sync::watch::Sender<BTreeSet<PathBuf>>,
    first_scan_at: SystemTime,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A chain of the given plugins, in chain order: by `order`, then by name.
fn chain_of(plugins: &BTreeMap<String, LivePlugin>) -> Chain {
    let mut versions: Vec<Arc<PluginVersion>> =
        plugins.values().map(|p| p.version.clone()).collect();
    versions.sort_by(|a, b| (a.settings.order, &a.name).cmp(&(b.settings.order, &b.name)));
    Chain::new(versions)
}

impl Reloader {
    /// Opens the artifact cache and loads the plugin directory for the
    /// first time. Any plugin that fails to load is an error: at start-up,
    /// a missing plugin (an auth plugin, say) must not silently leave a gap
    /// in the chain.
    pub async fn start(config: &Config, runtime: &Runtime) -> anyhow::Result<(Self, Chain)> {
        let cache = config.cache_dir.as_deref().and_then(|dir| {
            match ArtifactCache::open(dir, &runtime.engine) {
                Ok(cache) => {
                    tracing::info!(dir = %dir.display(), "artifact cache ready");
                    Some(Arc::new(cache))
                }
                Err(error) => {
                    tracing::warn!("artifact cache off: {error}");
                    None
                }
            }
        });
        let dir = &config.plugin_dir;
        let first_scan_at = SystemTime::now();
        let scan = plan::scan(dir).await.map_err(|error| {
            anyhow::anyhow!("cannot read plugin directory {}: {error}", dir.display())
        })?;
        let mut failures: Vec<(String, String)> = scan
            .unreadable
            .iter()
            .chain(&scan.pending)
            .map(|u| (u.name.clone(), u.error.clone()))
            .collect();
        let mut plugins = BTreeMap::new();
        let mut book = Book::default();
        for found in &scan.found {
            match build::build(runtime, cache.as_ref(), found, None).await {
                Ok(built) => {
                    runtime.metrics.plugin_loaded("ok");
                    log_loaded(found, &built, Change::Add);
                    book.loaded(&found.name);
                    plugins.insert(found.name.clone(), live_plugin(found, built));
                }
                Err(error) => {
                    runtime.metrics.plugin_loaded("error");
                    tracing::error!(plugin = %found.name, file = %found.wasm_path.display(), "plugin not loaded: {error}");
                    failures.push((found.name.clone(), error));
                }
            }
        }
        if let Some((name, error)) = failures.first() {
            let message = format!(
                "{} plugin(s) failed to load; first: {name}: {error}",
                failures.len()
            );
            let bad_settings = failures.iter().any(|(name, _)| {
                crate::plugin_settings::settings_invalid(&dir.join(format!("{name}.wasm")))
            });
            if bad_settings {
                return Err(crate::plugin_settings::InvalidPluginSettings(message).into());
            }
            anyhow::bail!(message);
        }
        let chain = chain_of(&plugins);
        let reloader = Self {
            cache,
            live: tokio::sync::Mutex::new(Live {
                plugin_dir: dir.clone(),
                plugins,
            }),
            tickets: AtomicU64::new(0),
            last: Mutex::new(None),
            book: Mutex::new(book),
            plugin_dir: tokio::sync::watch::Sender::new(dir.clone()),
            value_files: tokio::sync::watch::Sender::new(scan.value_files),
            first_scan_at,
        };
        Ok((reloader, chain))
    }

    /// The per-plugin load history, for `/plugins`.
    pub fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }

    /// The plugin directory in use, and its changes (the watcher follows it).
    pub fn plugin_dir(&self) -> tokio::sync::watch::Receiver<PathBuf> {
        self.plugin_dir.subscribe()
    }

    /// The files named in `[files]` tables as of the last reload, sent
    /// after every reload (the watcher watches their directories too).
    pub fn value_files(&self) -> tokio::sync::watch::Receiver<BTreeSet<PathBuf>> {
        self.value_files.subscribe()
    }

    /// When the start-up load began reading the plugin directory: the
    /// watcher, which starts later, checks for changes made since.
    pub fn first_scan_at(&self) -> SystemTime {
        self.first_scan_at
    }

    /// The artifact cache, if it is on.
    pub fn cache(&self) -> Option<&ArtifactCache> {
        self.cache.as_deref()
    }

    /// Reloads, or waits for a reload that started after this call.
    async fn run(&self, app: &App, trigger: Trigger) -> Arc<ReloadReport> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut live = self.live.lock().await;
        if let Some(finished) = &*lock(&self.last)
            && finished.covered >= ticket
        {
            return finished.report.clone();
        }
        let covered = self.tickets.load(Ordering::SeqCst);
        let started = Instant::now();
        let mut report = self.reload_locked(app, &mut live, trigger).await;
        report.duration_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        report.conclude();
        log_report(&report);
        app.metrics().reloaded(report.outcome.as_str());
        let report = Arc::new(report);
        *lock(&self.last) = Some(Finished {
            covered,
            report: report.clone(),
        });
        report
    }

    /// Reads the config again, applies what can be applied and names what
    /// cannot.
    fn reread_config(&self, app: &App, live: &mut Live, report: &mut ReloadReport) {
        let Some(path) = &app.config.origin.path else {
            return;
        };
        match Config::load(Some(path), &app.config.origin.overrides) {
            Ok(configured) => {
                report.restart_required = restart::restart_required(&app.config, &configured);
                if configured.plugin_dir != live.plugin_dir {
                    tracing::info!(
                        from = %live.plugin_dir.display(),
                        to = %configured.plugin_dir.display(),
                        "plugin directory changed"
                    );
                    live.plugin_dir = configured.plugin_dir;
                    self.plugin_dir.send_replace(live.plugin_dir.clone());
                }
            }
            Err(error) => report.config_error = Some(error.to_string()),
        }
        report.plugin_dir = live.plugin_dir.clone();
    }

    async fn reload_locked(&self, app: &App, live: &mut Live, trigger: Trigger) -> ReloadReport {
        let mut report = ReloadReport::new(trigger.as_str(), live.plugin_dir.clone());
        self.reread_config(app, live, &mut report);
        let scan = match plan::scan(&live.plugin_dir).await {
            Ok(scan) => scan,
            Err(error) => {
                report.dir_error = Some(format!(
                    "cannot read plugin directory {}: {error}",
                    live.plugin_dir.display()
                ));
                return report;
            }
        };
        self.value_files.send_replace(scan.value_files.clone());
        let runtime = &app.runtime;
        let mut next: BTreeMap<String, LivePlugin> = BTreeMap::new();
        let mut loaded = Vec::new();
        let mut settled = Vec::new();
        let mut failed = Vec::new();
        for found in &scan.found {
            let current = live.plugins.get(&found.name);
            let change = plan::change(found, current.map(|c| &c.serving));
            if change == Change::Keep {
                let current = current.expect("kept plugins are serving");
                next.insert(found.name.clone(), current.clone());
                report.unchanged.push(found.name.clone());
                settled.push(found.name.clone());
                continue;
            }
            let reuse = match change {
                Change::Reconfigure => current.map(|c| &c.component),
                _ => None,
            };
            match build::build(runtime, self.cache.as_ref(), found, reuse).await {
                Ok(built) => {
                    runtime.metrics.plugin_loaded("ok");
                    log_loaded(found, &built, change);
                    next.insert(found.name.clone(), live_plugin(found, built));
                    loaded.push(found.name.clone());
                    match change {
                        Change::Add => report.added.push(found.name.clone()),
                        Change::Replace => report.replaced.push(found.name.clone()),
                        _ => report.reconfigured.push(found.name.clone()),
                    }
                }
                Err(error) => {
                    runtime.metrics.plugin_loaded("error");
                    if let Some(current) = current {
                        next.insert(found.name.clone(), current.clone());
                    }
                    failed.push(FailedPlugin {
                        name: found.name.clone(),
                        file: found.wasm_path.clone(),
                        error,
                        kept_previous: current.is_some(),
                    });
                }
            }
        }
        for unreadable in &scan.unreadable {
            let current = live.plugins.get(&unreadable.name);
            if let Some(current) = current {
                next.insert(unreadable.name.clone(), current.clone());
            }
            failed.push(FailedPlugin {
                name: unreadable.name.clone(),
                file: unreadable.wasm_path.clone(),
                error: unreadable.error.clone(),
                kept_previous: current.is_some(),
            });
        }
        for pending in &scan.pending {
            // Its next change triggers another reload; until then the
            // version serving (if any) stays, and this is not a failure.
            if let Some(current) = live.plugins.get(&pending.name) {
                next.insert(pending.name.clone(), current.clone());
            }
            tracing::info!(plugin = %pending.name, "not read yet: {}", pending.error);
            report.pending.push(pending.name.clone());
        }
        report.removed = plan::removed(&live.plugins, &scan)
            .into_iter()
            .map(str::to_owned)
            .collect();

        if report.applied() {
            app.chain.store(Arc::new(chain_of(&next)));
        }
        live.plugins = next;

        let mut book = lock(&self.book);
        for name in &loaded {
            book.loaded(name);
        }
        for name in settled.iter().chain(&report.removed) {
            book.settled(name);
        }
        for failure in &failed {
            tracing::error!(plugin = %failure.name, file = %failure.file.display(), kept_previous = failure.kept_previous, "plugin not loaded: {}", failure.error);
            book.failed(&failure.name, failure.file.clone(), failure.error.clone());
        }
        // A failed plugin whose files are gone is no longer news.
        let present: Vec<&str> = scan.names().collect();
        book.settle_all_except(&present);
        report.failed = failed;
        report
    }
}

fn live_plugin(found: &Found, built: build::Built) -> LivePlugin {
    LivePlugin {
        version: Arc::new(built.version),
        component: built.component,
        serving: Serving {
            sha256: found.sha256.clone(),
            settings_text: found.settings_text.clone(),
            file_digests: found.file_digests(),
        },
    }
}

fn log_loaded(found: &Found, built: &build::Built, change: Change) {
    let change = match change {
        Change::Add => "added",
        Change::Replace => "replaced",
        Change::Reconfigure => "reconfigured",
        Change::Keep => "kept",
    };
    tracing::info!(
        plugin = %found.name,
        change,
        sha256 = %&found.sha256[..12],
        component = built.origin.map_or("reused", |o| o.as_str()),
        compile_ms = built.compile_time.as_millis() as u64,
        hooks = ?built.version.hooks.names(),
        "plugin loaded"
    );
}

fn log_report(report: &ReloadReport) {
    for key in &report.restart_required {
        tracing::warn!(
            key = key.key,
            running = %key.running,
            configured = %key.configured,
            "config key `{}` changed; restart Tandem to apply it",
            key.key
        );
    }
    match report.outcome {
        Outcome::Ok | Outcome::Unchanged => tracing::info!(
            trigger = report.trigger,
            outcome = report.outcome.as_str(),
            took_ms = report.duration_ms,
            "reload: {}",
            report.message
        ),
        Outcome::Partial | Outcome::Error => tracing::error!(
            trigger = report.trigger,
            outcome = report.outcome.as_str(),
            took_ms = report.duration_ms,
            "reload: {}",
            report.message
        ),
    }
}

/// Reloads the plugin directory and the config, one reload at a time. The
/// reload runs in a task of its own, so it finishes even if the caller
/// goes away (an admin client that hangs up, say).
pub async fn reload(app: &Arc<App>, trigger: Trigger) -> Arc<ReloadReport> {
    let task_app = app.clone();
    let task = tokio::spawn(async move { task_app.reloader.run(&task_app, trigger).await });
    match task.await {
        Ok(report) => report,
        Err(error) => {
            tracing::error!(%error, "reload task failed");
            let mut report = ReloadReport::new(trigger.as_str(), app.config.plugin_dir.clone());
            report.dir_error = Some(format!("reload task failed: {error}"));
            report.conclude();
            app.metrics().reloaded(report.outcome.as_str());
            Arc::new(report)
        }
    }
}

/// The background tasks that trigger reloads: SIGHUP, and the file watcher
/// when `[plugins] watch` is on. Stopped when dropped.
pub struct Triggers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Triggers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts reloading on SIGHUP and, if configured, on file changes. Both are
/// in place when this returns.
pub fn start_triggers(app: &Arc<App>) -> Triggers {
    let mut tasks = Vec::new();
    use tokio::signal::unix::{SignalKind, signal};
    // Registered here, not in the task: until then SIGHUP would kill us.
    match signal(SignalKind::hangup()) {
        Ok(hangup) => tasks.push(tokio::spawn(on_sighup(app.clone(), hangup))),
        Err(error) => tracing::warn!(%error, "cannot listen for SIGHUP"),
    }
    if app.config.watch {
        match watch::Watcher::start(app.clone()) {
            Ok(task) => tasks.push(task),
            Err(error) => tracing::warn!(
                "cannot watch for file changes ({error}); reload with SIGHUP or POST /reload"
            ),
        }
    }
    Triggers { tasks }
}

async fn on_sighup(app: Arc<App>, mut hangup: tokio::signal::unix::Signal) {
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading");
        reload(&app, Trigger::Signal).await;
    }
}
