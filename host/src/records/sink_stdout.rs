//! The stdout sink: JSON lines, which is what Kubernetes log collectors read.
//!
//! The host prints exactly one line of its own on stdout (`tandem listening
//! ...`) before the sink starts, and logs to stderr, so after that line
//! stdout carries records only.

use tokio::io::AsyncWriteExt;

use super::sink::{SinkError, json_lines};

/// Writes batches to standard output.
pub struct StdoutSink {
    out: tokio::io::Stdout,
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl StdoutSink {
    /// The process's stdout.
    pub fn new() -> Self {
        Self {
            out: tokio::io::stdout(),
        }
    }

    /// Writes the batch as JSON lines and flushes. A write to a closed or
    /// full pipe fails and is retried; records wait in the buffer meanwhile.
    pub async fn write(&mut self, batch: &[String]) -> Result<(), SinkError> {
        let bytes = json_lines(batch);
        self.out
            .write_all(&bytes)
            .await
            .map_err(|e| SinkError::retry(format!("writing to stdout: {e}")))?;
        self.out
            .flush()
            .await
            .map_err(|e| SinkError::retry(format!("flushing stdout: {e}")))
    }
}
