//! A plugin's stdout and stderr: each line becomes a log record tagged with
//! the plugin's name, within the plugin's log budget and cut to
//! [`MAX_LINE_BYTES`]. This is how a guest panic message (which Rust writes
//! to stderr just before the trap) reaches the log.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::state::PluginServices;

/// Longest line kept from a plugin's output; the rest of the line is cut.
pub const MAX_LINE_BYTES: usize = 4096;
/// Most bytes a guest may hand over in one write: the host copies at most
/// this much per call.
const WRITE_PERMIT: usize = 64 * 1024;

/// Which standard stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// Standard output, logged at `info`.
    Stdout,
    /// Standard error, logged at `warn` (panic messages land here).
    Stderr,
}

impl Stdio {
    fn name(self) -> &'static str {
        match self {
            Stdio::Stdout => "stdout",
            Stdio::Stderr => "stderr",
        }
    }
}

/// The partial line of one stream of one instance.
struct LineBuffer {
    services: Arc<PluginServices>,
    stdio: Stdio,
    pending: Vec<u8>,
    cut: bool,
}

impl LineBuffer {
    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.keep(&bytes[..end]);
            self.emit();
            bytes = &bytes[end + 1..];
        }
        self.keep(bytes);
    }

    /// Keeps what fits of the current line; the rest is cut.
    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES - self.pending.len();
        if bytes.len() > room {
            self.pending.extend_from_slice(&bytes[..room]);
            self.cut = true;
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn emit(&mut self) {
        // Only cut lines carry the field, so ordinary lines stay short.
        let cut = std::mem::take(&mut self.cut).then_some(true);
        if self.pending.iter().all(u8::is_ascii_whitespace) {
            self.pending.clear();
            return;
        }
        if self.services.log_budget.admit() {
            let text = String::from_utf8_lossy(&self.pending);
            let line = text.trim_end();
            let plugin = &*self.services.name;
            let stream = self.stdio.name();
            match self.stdio {
                Stdio::Stdout => tracing::info!(target: "plugin", plugin, stream, cut, "{line}"),
                Stdio::Stderr => tracing::warn!(target: "plugin", plugin, stream, cut, "{line}"),
            }
        }
        self.pending.clear();
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        // The instance is gone (perhaps it trapped mid-line): say what it said.
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

/// One of a plugin instance's standard output streams. Every handle the
/// guest opens on it shares one line buffer.
#[derive(Clone)]
pub struct PluginOutput(Arc<Mutex<LineBuffer>>);

impl PluginOutput {
    /// The `stdio` stream of an instance of the plugin behind `services`.
    pub fn new(services: Arc<PluginServices>, stdio: Stdio) -> Self {
        Self(Arc::new(Mutex::new(LineBuffer {
            services,
            stdio,
            pending: Vec::new(),
            cut: false,
        })))
    }

    fn push(&self, bytes: &[u8]) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(bytes);
    }
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PluginOutput {
    async fn ready(&mut self) {
        // Writing never waits: lines go to the log or are dropped.
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for PluginOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for PluginOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(WRITE_PERMIT);
        self.push(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
