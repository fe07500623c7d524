//! The sink task: takes batches from the buffer, writes them, and retries
//! failed writes with exponential backoff while keeping the batch (it still
//! counts against the buffer's bound, so new records are dropped, and
//! counted, only once the buffer is full).

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use super::buffer::Buffer;
use super::metrics::{DropReason, RecordMetrics};
use super::sink::{Sink, SinkError};

/// How the writer batches and retries.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// Most records per batch.
    pub batch_max_records: usize,
    /// Longest wait for a batch to fill; zero writes what is there at once.
    pub batch_max: Duration,
    /// First retry wait.
    pub retry_initial: Duration,
    /// Longest retry wait.
    pub retry_max: Duration,
}

/// Failed attempts between two warnings while a sink stays down.
const WARN_EVERY_ATTEMPTS: u32 = 10;

/// Between half and all of `delay`: retries from many pods after one
/// collector outage should not arrive in lockstep.
fn jittered(delay: Duration) -> Duration {
    let half = delay / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    // RandomState is seeded from the OS per instance: enough for jitter.
    let random = std::collections::hash_map::RandomState::new().hash_one(spread);
    half + Duration::from_micros(random % spread)
}

/// Runs until a shutdown flush has written everything queued.
pub async fn run(
    mut sink: Sink,
    buffer: Arc<Buffer>,
    metrics: Arc<RecordMetrics>,
    settings: WriterSettings,
) {
    loop {
        buffer.wait_for_records().await;
        if buffer.flushing() && buffer.queued() == 0 {
            return;
        }
        if !settings.batch_max.is_zero() {
            let deadline = tokio::time::Instant::now() + settings.batch_max;
            buffer
                .wait_for_batch(settings.batch_max_records, deadline)
                .await;
        }
        let batch = buffer.take(settings.batch_max_records);
        if batch.is_empty() {
            continue;
        }
        write_with_retries(&mut sink, &batch, &metrics, &settings).await;
        buffer.release(batch.len());
        metrics.released(batch.len());
    }
}

/// Writes one batch, retrying until it is written or refused for good.
async fn write_with_retries(
    sink: &mut Sink,
    batch: &[String],
    metrics: &RecordMetrics,
    settings: &WriterSettings,
) {
    let mut delay = settings.retry_initial;
    let mut attempts: u32 = 0;
    loop {
        match sink.write(batch).await {
            Ok(()) => {
                metrics.batch_sent(batch.len());
                if attempts > 0 {
                    tracing::info!(
                        sink = sink.name(),
                        attempts,
                        "record sink writes again; the held batch was delivered"
                    );
                }
                return;
            }
            Err(SinkError::Reject(reason)) => {
                metrics.batch_failed();
                metrics.dropped(DropReason::Rejected, batch.len());
                tracing::warn!(
                    sink = sink.name(),
                    records = batch.len(),
                    "record batch refused for good and dropped: {reason}"
                );
                return;
            }
            Err(SinkError::Retry { reason, after }) => {
                metrics.batch_failed();
                let wait = jittered(delay)
                    .max(after.unwrap_or_default())
                    .min(settings.retry_max);
                if attempts.is_multiple_of(WARN_EVERY_ATTEMPTS) {
                    tracing::warn!(
                        sink = sink.name(),
                        records = batch.len(),
                        attempts = attempts + 1,
                        retry_in = ?wait,
                        "record sink write failed; keeping the batch: {reason}"
                    );
                }
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(settings.retry_max);
                attempts = attempts.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_all() {
        for ms in [1, 2, 100, 30_000] {
            let delay = Duration::from_millis(ms);
            for _ in 0..100 {
                let wait = jittered(delay);
                assert!(wait >= delay / 2 && wait <= delay, "{wait:?} for {delay:?}");
            }
        }
    }
}
