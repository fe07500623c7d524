//! The log budget of one plugin: a token bucket shared by the `log` import
//! and the plugin's stdout and stderr, so a plugin that logs without end
//! costs the host a bounded number of lines per second.
//!
//! Records over the budget are dropped and counted in
//! `tandem_plugin_log_dropped_total{plugin}`; at most once a second the host
//! itself says how many were dropped, so the gap in the log is visible.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntCounter;

/// How often the host reports dropped records, at most.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

struct Bucket {
    tokens: f64,
    refilled: Instant,
    dropped_unreported: u64,
    reported: Instant,
}

/// A per-plugin log rate limit.
pub struct LogBudget {
    plugin: std::sync::Arc<str>,
    rate: f64,
    bucket: Mutex<Bucket>,
    dropped: IntCounter,
}

impl LogBudget {
    /// A budget of `per_second` records, with a burst of one second's worth.
    pub fn new(plugin: std::sync::Arc<str>, per_second: u32, dropped: IntCounter) -> Self {
        let now = Instant::now();
        let rate = f64::from(per_second.max(1));
        Self {
            plugin,
            rate,
            bucket: Mutex::new(Bucket {
                tokens: rate,
                refilled: now,
                dropped_unreported: 0,
                reported: now,
            }),
            dropped,
        }
    }

    /// Whether one more record may be written now. A refused record is
    /// counted as dropped.
    pub fn admit(&self) -> bool {
        let now = Instant::now();
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return true;
        }
        bucket.dropped_unreported += 1;
        self.dropped.inc();
        if now.saturating_duration_since(bucket.reported) >= DROP_REPORT_INTERVAL {
            let dropped = std::mem::take(&mut bucket.dropped_unreported);
            bucket.reported = now;
            drop(bucket);
            tracing::warn!(
                plugin = &*self.plugin,
                dropped,
                rate_per_second = self.rate,
                "plugin logs over its rate limit; records dropped"
            );
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_one_second_worth_then_drops_and_counts() {
        let dropped = IntCounter::new("t", "t").unwrap();
        let budget = LogBudget::new("p".into(), 10, dropped.clone());
        let admitted = (0..100).filter(|_| budget.admit()).count();
        // The burst is 10; a few more may refill while the loop runs.
        assert!((10..=12).contains(&admitted), "{admitted}");
        assert_eq!(dropped.get() as usize, 100 - admitted);
    }
}
