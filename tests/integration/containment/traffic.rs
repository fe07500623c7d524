//! Helpers for the containment tests: a stream of normal requests in the
//! background, raw TCP exchanges, and reading values from `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::client::get;

/// What a background stream of normal requests saw.
#[derive(Debug)]
pub struct Served {
    /// Requests answered 200.
    pub ok: usize,
    /// Anything else, described.
    pub failed: Vec<String>,
    /// The slowest answer.
    pub slowest: Duration,
}

/// Normal requests sent one after another until stopped.
pub struct NormalTraffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Served>,
}

impl NormalTraffic {
    /// Starts sending GET `url` in a loop.
    pub fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut served = Served {
                ok: 0,
                failed: Vec::new(),
                slowest: Duration::ZERO,
            };
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                let reply = tokio::time::timeout(Duration::from_secs(10), get(&url)).await;
                served.slowest = served.slowest.max(started.elapsed());
                match reply {
                    Ok(reply) if reply.status == StatusCode::OK => served.ok += 1,
                    Ok(reply) => served
                        .failed
                        .push(format!("{}: {}", reply.status, reply.text())),
                    Err(_) => served.failed.push("no answer within 10 s".into()),
                }
            }
            served
        });
        Self { stop, task }
    }

    /// Stops the stream and says what it saw.
    pub async fn finish(self) -> Served {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the traffic task does not panic")
    }
}

/// Sends `bytes` on a new connection and reads until the server closes it
/// or `limit` passes; returns what came back.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before everything is written.
    let _ = stream.write_all(bytes).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    String::from_utf8_lossy(&received).into_owned()
}

/// The status code on the first line of a raw HTTP/1 response.
pub fn raw_status(response: &str) -> Option<u16> {
    response.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Log text without the terminal colour codes the log writer adds.
pub fn plain(logs: &str) -> String {
    let mut out = String::with_capacity(logs.len());
    let mut chars = logs.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip an escape sequence up to its final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of the sample `series` (name and labels exactly as exposed,
/// labels sorted by name) in a `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}
