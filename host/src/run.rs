//! `tandem run`, as a checklist: build, bind, announce, serve, drain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::Config;
use crate::proxy::{Proxy, server};

/// How often expired shared-state entries are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// Runs Tandem until a shutdown signal, then drains.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let app = Arc::new(App::start(config).await.context("loading plugins")?);
    let listener = TcpListener::bind(app.config.listen)
        .await
        .with_context(|| format!("binding the proxy listener on {}", app.config.listen))?;
    let admin_listener = TcpListener::bind(app.config.admin)
        .await
        .with_context(|| format!("binding the admin listener on {}", app.config.admin))?;
    let proxy_addr = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    tracing::info!(proxy = %proxy_addr, admin = %admin_addr, upstream = %app.config.upstream, plugins = app.chain.load().plugins().len(), "tandem serving");
    // Before the line below, so no change made after it goes unseen.
    let reload_triggers = crate::reload::start_triggers(&app);
    // The one line on stdout: tests and scripts wait for it.
    println!("tandem listening proxy={proxy_addr} admin={admin_addr}");

    let admin = tokio::spawn(crate::admin::serve(admin_listener, app.clone()));
    let shared = app.shared_state().clone();
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            shared.sweep();
        }
    });

    let proxy = Arc::new(Proxy::new(
        app.chain.clone(),
        app.config.upstream.clone(),
        app.config.upstream_timeout,
        app.metrics().clone(),
    ));
    let drained = server::serve(
        listener,
        proxy,
        shutdown_signal(),
        app.config.shutdown_grace,
    )
    .await;
    admin.abort();
    sweeper.abort();
    drop(reload_triggers);
    tracing::info!(drained, "tandem stopped");
    Ok(())
}
