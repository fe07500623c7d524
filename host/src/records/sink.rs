//! The sinks behind one interface: write a batch of serialized records, or
//! say whether retrying could help.

use std::time::Duration;

use super::config::SinkConfig;
use super::sink_file::FileSink;
use super::sink_http::HttpSink;
use super::sink_stdout::StdoutSink;

/// Why a batch was not written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A failure that may pass (I/O error, collector down or overloaded):
    /// keep the batch and try again, not before `after` if the sink knows.
    #[error("{reason}")]
    Retry {
        /// What went wrong.
        reason: String,
        /// The earliest retry the sink was told about (`Retry-After`).
        after: Option<Duration>,
    },
    /// The collector refused the batch for good (a 4xx other than 408/429):
    /// retrying the same bytes cannot help, so the batch is dropped.
    #[error("{0}")]
    Reject(String),
}

impl SinkError {
    /// A retryable failure with no hint about when.
    pub fn retry(reason: impl Into<String>) -> Self {
        SinkError::Retry {
            reason: reason.into(),
            after: None,
        }
    }
}

/// A sink could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file sink's file cannot be opened for appending.
    #[error("cannot open the record file {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One of the sinks.
pub enum Sink {
    /// JSON lines on stdout.
    Stdout(StdoutSink),
    /// JSON lines appended to a file.
    File(FileSink),
    /// Batches POSTed to a collector (boxed: its client is large, and
    /// there is one sink per process).
    Http(Box<HttpSink>),
}

impl Sink {
    /// Opens the configured sink. A file that cannot be opened is an error
    /// here, at start-up, rather than a stream of failed writes later.
    pub fn open(config: &SinkConfig) -> Result<Self, OpenError> {
        Ok(match config {
            SinkConfig::Stdout => Sink::Stdout(StdoutSink::new()),
            SinkConfig::File { path } => Sink::File(FileSink::open(path)?),
            SinkConfig::Http(http) => Sink::Http(Box::new(HttpSink::new(http.clone()))),
        })
    }

    /// The sink's name for logs: `stdout`, `file` or `http`.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Stdout(_) => "stdout",
            Sink::File(_) => "file",
            Sink::Http(_) => "http",
        }
    }

    /// Writes one batch.
    pub async fn write(&mut self, batch: &[String]) -> Result<(), SinkError> {
        match self {
            Sink::Stdout(sink) => sink.write(batch).await,
            Sink::File(sink) => sink.write(batch).await,
            Sink::Http(sink) => sink.write(batch).await,
        }
    }
}

/// The batch as JSON lines, each ended by a newline.
pub fn json_lines(batch: &[String]) -> Vec<u8> {
    let len = batch.iter().map(|r| r.len() + 1).sum();
    let mut bytes = Vec::with_capacity(len);
    for record in batch {
        bytes.extend_from_slice(record.as_bytes());
        bytes.push(b'\n');
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_end_every_record() {
        let batch = ["{\"a\":1}".to_owned(), "{}".to_owned()];
        assert_eq!(json_lines(&batch), b"{\"a\":1}\n{}\n");
        assert!(json_lines(&[]).is_empty());
    }
}
