//! The quarantine lane: one thread at the lowest CPU priority, with a
//! current-thread tokio runtime of its own, where the hook calls of
//! quarantined plugins that run for more than an epoch tick finish (see
//! `quarantine`). The request that made such a call awaits its result from
//! a proxy worker, which meanwhile serves
//! other requests; the kernel gives the lane only CPU time that nobody at
//! normal priority wants, so a plugin that spins until its deadline slows
//! down its own requests, not everyone's.
//!
//! Each call is still bounded by its own deadline (the epoch callback
//! stops a busy guest at the first tick past it), so its request still
//! gets its failure-policy answer. The lane is niced, not `SCHED_IDLE`:
//! nice 19 still gets a small share of a busy CPU, so a quarantined call
//! reaches its deadline check soon after the deadline even when both cores
//! are saturated, instead of holding its request for as long as the
//! machine stays busy.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The nice value of the lane thread: the lowest priority there is.
pub const LANE_NICE: i32 = 19;

/// A handle on the lane; clones share the one thread, which stops once the
/// last clone is dropped.
#[derive(Clone)]
pub struct Lane {
    inner: Arc<LaneInner>,
}

struct LaneInner {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for LaneInner {
    fn drop(&mut self) {
        // Not joined: the last handle may be dropped by a task on the lane
        // thread itself.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Lane {
    /// Starts the lane thread and lowers its priority. A refused priority
    /// change is logged and the lane runs anyway: it still keeps the
    /// quarantined calls off the proxy's workers.
    pub fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("building the quarantine lane's runtime: {e}"))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("tandem-quarantine".into())
            .spawn(move || {
                lower_priority();
                // Runs the spawned calls until every handle is gone.
                let _ = runtime.block_on(stopped);
                runtime.shutdown_background();
            })
            .map_err(|e| anyhow::anyhow!("spawning the quarantine lane thread: {e}"))?;
        Ok(Self {
            inner: Arc::new(LaneInner {
                handle,
                stop: Some(stop),
            }),
        })
    }

    /// Runs `future` on the lane thread.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.handle.spawn(future)
    }
}

/// Sets the calling thread's nice value to [`LANE_NICE`]. On Linux the nice
/// value belongs to a thread, and `setpriority(PRIO_PROCESS, 0, ...)`
/// changes the calling thread only (setpriority(2), "Bugs"); lowering it
/// needs no privilege.
fn lower_priority() {
    match rustix::process::setpriority_process(None, LANE_NICE) {
        Ok(()) => tracing::debug!(nice = LANE_NICE, "quarantine lane started"),
        Err(error) => tracing::warn!(
            %error,
            "cannot lower the quarantine lane's priority; quarantined plugins run at normal priority"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_calls_on_a_niced_thread_of_its_own() {
        let lane = Lane::start().unwrap();
        let caller = std::thread::current().id();
        let caller_nice = rustix::process::getpriority_process(None).unwrap();
        let (thread, nice) = lane
            .spawn(async {
                // A timer needs the lane's own runtime to have one.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                (
                    std::thread::current().id(),
                    rustix::process::getpriority_process(None).unwrap(),
                )
            })
            .await
            .unwrap();
        assert_ne!(thread, caller);
        assert_eq!(nice, LANE_NICE);
        assert_eq!(
            rustix::process::getpriority_process(None).unwrap(),
            caller_nice,
            "the caller's priority is untouched"
        );
    }
}
