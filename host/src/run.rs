//! `tandem run`, as a checklist: build, bind, announce, serve, drain, flush
//! the records.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::app::App;
use crate::config::Config;
use crate::proxy::workers::Workers;
use crate::proxy::{Proxy, server};

/// How often expired shared-state entries are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// SIGTERM and SIGINT, listened for from [`install`](Self::install) on:
/// a signal that arrives while Tandem is still starting is not lost (nor
/// does it kill the process with the default action).
struct ShutdownSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    /// Resolves at the next signal.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("SIGTERM received"),
            _ = self.interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }

    /// Resolves when shutdown begins, after the first signal and the
    /// configured delay, which a second signal cuts short. `/readyz`
    /// answers 503 from the first signal on.
    async fn shutdown(&mut self, app: &App) {
        self.next().await;
        app.begin_draining();
        let delay = app.config.shutdown_delay;
        if delay.is_zero() {
            return;
        }
        tracing::info!(
            ?delay,
            "unready; still serving new connections for shutdown_delay_ms before draining (a second signal drains now)"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.next() => tracing::info!("second signal: draining now"),
        }
    }
}

/// Runs Tandem until a shutdown signal, then drains.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::install()?;
    let app = Arc::new(App::start(config).await.context("loading plugins")?);
    let listener = TcpListener::bind(app.config.listen)
        .await
        .with_context(|| format!("binding the proxy listener on {}", app.config.listen))?;
    let admin_listener = TcpListener::bind(app.config.admin)
        .await
        .with_context(|| format!("binding the admin listener on {}", app.config.admin))?;
    let app_logs_listener = match app.config.records.app_logs_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the app-log listener on {addr}"))?,
        ),
        None => None,
    };
    let proxy_addr = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let logs_addr = app_logs_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    tracing::info!(proxy = %proxy_addr, admin = %admin_addr, upstream = %app.config.upstream, workers = app.config.workers, plugins = app.chain.load().plugins().len(), records = app.records().sink_name(), "tandem serving");
    // Before the line below, so no change made after it goes unseen.
    let reload_triggers = crate::reload::start_triggers(&app);
    // The one line of Tandem's own on stdout: tests and scripts wait for
    // it. Records (access logs, app logs) may follow it on stdout, so the
    // record writer starts only now.
    // A stdout nobody reads must not stop Tandem (println! would panic).
    let listening = match logs_addr {
        Some(logs) => {
            format!("tandem listening proxy={proxy_addr} admin={admin_addr} logs={logs}\n")
        }
        None => format!("tandem listening proxy={proxy_addr} admin={admin_addr}\n"),
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), listening.as_bytes());
    app.records().start();

    let admin = tokio::spawn(crate::admin::serve(admin_listener, app.clone()));
    let app_logs = app_logs_listener
        .map(|listener| tokio::spawn(crate::records::app_logs::serve(listener, app.clone())));
    let shared = app.shared_state().clone();
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            shared.sweep();
        }
    });

    let config = &app.config;
    let make_proxy = || {
        Proxy::new(
            app.chain.clone(),
            config.upstream.clone(),
            config.upstream_timeout,
            app.metrics().clone(),
        )
        .with_limits(config.limits.clone())
        .with_upstream_body_timeout(config.upstream_body_timeout)
    };
    let mut workers = Workers::start(
        config.workers,
        listener
            .into_std()
            .context("taking over the proxy listener")?,
        make_proxy,
        server::connection_slots(&config.limits),
        config.shutdown_grace,
        app.runtime.call_stack_bytes,
    )?;
    // Signals: the first begins the shutdown (after the delay, which a
    // second ends); one during the drain cuts what is left at once.
    let (begun, beginning) = tokio::sync::oneshot::channel::<()>();
    let cut_early = workers.cut_early();
    let signalled = app.clone();
    let listening = tokio::spawn(async move {
        signals.shutdown(&signalled).await;
        let _ = begun.send(());
        signals.next().await;
        tracing::warn!("another signal while draining: cutting the remaining requests now");
        cut_early.cut();
    });
    let drained = workers
        .serve_until(async {
            let _ = beginning.await;
        })
        .await;
    listening.abort();
    admin.abort();
    if let Some(app_logs) = app_logs {
        app_logs.abort();
    }
    sweeper.abort();
    drop(reload_triggers);
    // on-log runs as each response finishes, so the last requests' access
    // records are queued now or moments later; the sink gets a bounded
    // time to write what it holds (later records are counted as lost).
    let lost = app
        .records()
        .shutdown(app.config.records.flush_timeout)
        .await;
    workers.finish().await;
    tracing::info!(drained, records_lost = lost, "tandem stopped");
    Ok(())
}
