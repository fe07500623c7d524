//! Proxy workers, one event loop per thread, as nginx and Envoy do it.
//!
//! Each worker is an OS thread with a single-threaded tokio runtime, its
//! own accept loop on the shared listening socket and its own upstream
//! connection pool. A connection stays on the worker that accepted it, so
//! a request never crosses threads: no work-stealing, no cross-thread
//! wake-ups, no shared pool lock on the hot path. What the workers share
//! is the chain (an `ArcSwap`), the plugin instance pools, the shared
//! state and the metrics, all made for concurrent use.
//!
//! The control plane (admin, reload, records) stays on the main runtime.

use std::future::Future;
use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};

use super::{Proxy, server};
use crate::runtime::thread_stack;

/// The running workers.
pub struct Workers {
    stop: watch::Sender<bool>,
    hurry: watch::Sender<bool>,
    release: watch::Sender<bool>,
    drained: Vec<oneshot::Receiver<bool>>,
    threads: Vec<JoinHandle<()>>,
}

/// Ends the workers' drain before its grace is over.
pub struct CutEarly(watch::Sender<bool>);

impl CutEarly {
    /// Makes every worker cut its remaining connections now.
    pub fn cut(&self) {
        let _ = self.0.send(true);
    }
}

/// Everything one worker needs to serve.
struct WorkerSetup {
    listener: StdListener,
    proxy: Arc<Proxy>,
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    hurry: watch::Receiver<bool>,
    release: watch::Receiver<bool>,
    drained: oneshot::Sender<bool>,
    grace: Duration,
}

/// Resolves once `flag` is true (or its sender is gone).
async fn raised(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|raised| *raised).await;
}

fn run_worker(setup: WorkerSetup) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a worker's event loop")?;
    runtime.block_on(async move {
        let WorkerSetup {
            listener,
            proxy,
            slots,
            stop,
            hurry,
            release,
            drained,
            grace,
        } = setup;
        let listener = TcpListener::from_std(listener).context("registering the listener")?;
        // Ends with the event loop.
        let sweeper = proxy.clone();
        tokio::spawn(async move { sweeper.sweep_upstream_connections().await });
        let all_drained =
            server::serve(listener, proxy, slots, raised(stop), grace, raised(hurry)).await;
        let _ = drained.send(all_drained);
        // Keep the event loop alive until the records are flushed: the
        // last responses' on-log calls run on it.
        raised(release).await;
        Ok(())
    })
}

impl Workers {
    /// Starts `count` workers serving `listener`; `make_proxy` builds each
    /// worker's proxy (and with it the worker's upstream pool).
    pub fn start(
        count: usize,
        listener: StdListener,
        make_proxy: impl Fn() -> Proxy,
        slots: Arc<Semaphore>,
        grace: Duration,
        call_stack_bytes: usize,
    ) -> anyhow::Result<Self> {
        listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let (stop, stopping) = watch::channel(false);
        let (hurry, hurrying) = watch::channel(false);
        let (release, releasing) = watch::channel(false);
        let mut workers = Self {
            stop,
            hurry,
            release,
            drained: Vec::with_capacity(count),
            threads: Vec::with_capacity(count),
        };
        for index in 0..count {
            let (drained, drained_receiver) = oneshot::channel();
            let setup = WorkerSetup {
                listener: listener.try_clone().context("sharing the listener")?,
                proxy: Arc::new(make_proxy()),
                slots: slots.clone(),
                stop: stopping.clone(),
                hurry: hurrying.clone(),
                release: releasing.clone(),
                drained,
                grace,
            };
            // Hook calls on the workers are synchronous, on their stack.
            let thread = thread_stack::spawn_with_room(
                format!("tandem-worker-{index}"),
                call_stack_bytes,
                move || {
                    if let Err(error) = run_worker(setup) {
                        tracing::error!(worker = index, "proxy worker failed: {error:#}");
                    }
                },
            )
            .context("starting a proxy worker thread")?;
            workers.drained.push(drained_receiver);
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Something that ends the drain before its grace is over: the
    /// workers then cut their remaining connections.
    pub fn cut_early(&self) -> CutEarly {
        CutEarly(self.hurry.clone())
    }

    /// Serves until `shutdown`, then stops accepting and waits for every
    /// worker's drain. Returns whether all connections drained in time.
    pub async fn serve_until(&mut self, shutdown: impl Future<Output = ()>) -> bool {
        shutdown.await;
        let _ = self.stop.send(true);
        let mut all_drained = true;
        for drained in self.drained.drain(..) {
            // A worker that died counts as not drained.
            all_drained &= drained.await.unwrap_or(false);
        }
        all_drained
    }

    /// Lets the workers' event loops end, and waits for their threads.
    pub async fn finish(self) {
        let _ = self.release.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}
