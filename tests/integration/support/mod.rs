//! Shared test helpers: plugin builds, a real upstream, the real binary, a
//! client, and waiting for asynchronous state.

pub mod client;
pub mod collector;
pub mod examples;
pub mod plugins;
pub mod promtool;
pub mod raw_upstream;
pub mod replay;
pub mod tandem;
pub mod upstream;
pub mod websocket;

use std::time::Duration;

/// Polls `check` until it returns true or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
