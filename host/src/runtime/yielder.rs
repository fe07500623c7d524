//! How a busy guest yields its worker thread at an epoch tick: its task is
//! woken again from another thread, which puts it in tokio's shared queue,
//! behind the work the worker already has and within reach of the other
//! workers. Woken on its own thread (a plain self-wake, or `yield_now`,
//! whose deferred wake lands in the worker's next-task slot), the busy call
//! would run again before the requests that queued on that worker while
//! it ran, and each of those would wait a tick behind it.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::mpsc::{Sender, channel};
use std::task::{Context, Poll, Waker};

/// The thread that wakes yielded calls.
fn rewaker() -> &'static Sender<Waker> {
    static REWAKER: OnceLock<Sender<Waker>> = OnceLock::new();
    REWAKER.get_or_init(|| {
        let (sender, receiver) = channel::<Waker>();
        std::thread::Builder::new()
            .name("tandem-rewake".into())
            .spawn(move || {
                for waker in receiver {
                    waker.wake();
                }
            })
            .expect("spawning the rewake thread");
        sender
    })
}

/// Returns pending once, with the task woken from the rewake thread.
#[derive(Default)]
pub struct YieldToBack {
    yielded: bool,
}

impl Future for YieldToBack {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        if rewaker().send(cx.waker().clone()).is_err() {
            // The thread is gone (it never ends, but just in case).
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resumes_after_one_yield() {
        YieldToBack::default().await;
    }
}
