//! `tandem run --record FILE`: appends every finished exchange to FILE in
//! the format that `tandem replay` reads ([`super::record`]), so live
//! traffic can be replayed through a plugin under development.
//!
//! The request is recorded as the client sent it (before any plugin), the
//! status and headers as sent to the client. Header values are written as
//! they are, credentials included: the file is created readable by its owner
//! only. Off unless asked for, and then one line per exchange.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http::HeaderMap;

use super::record::{HeaderList, Record};

/// The file being recorded to, if `--record` was given.
static RECORDER: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Starts recording to `path` (appending), for the rest of the process.
pub fn install(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    // A second install keeps the first file.
    let _ = RECORDER.set(Mutex::new(file));
    Ok(())
}

fn pairs(headers: &HeaderMap) -> HeaderList {
    HeaderList::Pairs(
        headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
    )
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros().try_into().unwrap_or(u64::MAX)
}

/// One exchange being recorded.
pub struct Recording(Record);

impl Recording {
    /// Whether requests are being recorded (then each one's head is read).
    pub fn is_on() -> bool {
        RECORDER.get().is_some()
    }

    /// Starts recording a request as the client sent it, if recording is on.
    pub fn start(parts: &http::request::Parts, client: SocketAddr) -> Option<Recording> {
        RECORDER.get()?;
        Some(Recording(Record {
            method: parts.method.to_string(),
            target: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            headers: pairs(&parts.headers),
            client,
            scheme: "http".to_owned(),
            status: None,
            response_headers: HeaderList::None,
            request_bytes: 0,
            response_bytes: 0,
            duration_us: None,
            upstream_duration_us: None,
        }))
    }

    /// Notes the response head as sent to the client.
    pub fn response(&mut self, parts: &http::response::Parts) {
        self.0.status = Some(parts.status.as_u16());
        self.0.response_headers = pairs(&parts.headers);
    }

    /// Completes the record and appends it as one line.
    pub fn finish(
        mut self,
        request_bytes: u64,
        response_bytes: u64,
        duration: Duration,
        upstream_duration: Option<Duration>,
    ) {
        self.0.request_bytes = request_bytes;
        self.0.response_bytes = response_bytes;
        self.0.duration_us = Some(micros(duration));
        self.0.upstream_duration_us = upstream_duration.map(micros);
        let Some(file) = RECORDER.get() else { return };
        let mut line = match serde_json::to_vec(&self.0) {
            Ok(line) => line,
            Err(error) => {
                tracing::warn!(%error, "cannot encode a recorded exchange");
                return;
            }
        };
        line.push(b'\n');
        // One write per line, so concurrent exchanges never interleave.
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = file.write_all(&line) {
            tracing::warn!(%error, "cannot write a recorded exchange");
        }
    }
}
