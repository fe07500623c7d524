//! How long the upstream may go silent in the middle of a response body
//! (`upstream_body_timeout_ms`), so that a stalled application cannot hold
//! a client for ever.
//!
//! The timer is armed only once a read has to wait, so a body that comes
//! with its head, as most do, sets none; a read after that notes the time
//! (one clock read), and the timer is moved only when it fires.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The silence allowed and the timer that holds a body to it.
pub struct Silence {
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// When the upstream was last heard from, once the timer is armed.
    heard: Option<Instant>,
}

impl Silence {
    /// Allows `limit` of silence.
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            timer: None,
            heard: None,
        }
    }

    /// The silence allowed.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Something came from the upstream.
    pub fn heard(&mut self) {
        if self.timer.is_some() {
            self.heard = Some(Instant::now());
        }
    }

    /// A read has to wait: true once the upstream has sent nothing for the
    /// limit; otherwise `cx` is woken when it might have.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            match self.heard.take() {
                // Heard from since the timer was set: the silence began then.
                Some(at) if at + limit > Instant::now() => timer.as_mut().reset(at + limit),
                _ => return true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;

    use super::*;

    async fn expired(silence: &mut Silence) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(silence.poll_expired(cx))).await
    }

    #[tokio::test(start_paused = true)]
    async fn expires_after_the_limit_of_silence_counted_from_the_last_word() {
        let mut silence = Silence::new(Duration::from_secs(10));
        assert!(!expired(&mut silence).await, "armed, not expired");
        tokio::time::advance(Duration::from_secs(6)).await;
        silence.heard();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!expired(&mut silence).await, "6 s since the last word");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(expired(&mut silence).await, "11 s since the last word");
    }
}
