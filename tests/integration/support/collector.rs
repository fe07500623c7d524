//! A real log collector for the HTTP sink tests: an HTTP/1.1 server on
//! 127.0.0.1 port 0 that can drop connections, answer 503, or accept, and
//! records every batch it accepted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// How the collector treats the next connection or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Closes every connection without answering, like a crashed collector.
    Drop = 0,
    /// Answers every batch with 503 Service Unavailable.
    Unavailable = 1,
    /// Answers 200 and keeps the batch.
    Accept = 2,
}

/// A batch the collector accepted.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The request's content type.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

struct Shared {
    mode: AtomicU8,
    attempts: AtomicUsize,
    accepted: Mutex<Vec<Batch>>,
}

/// A running collector.
pub struct Collector {
    /// Its address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

async fn answer(request: Request<Incoming>, shared: Arc<Shared>) -> Response<Full<Bytes>> {
    shared.attempts.fetch_add(1, Ordering::SeqCst);
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let mut response = Response::new(Full::new(Bytes::new()));
    if shared.mode.load(Ordering::SeqCst) == Mode::Accept as u8 {
        shared
            .accepted
            .lock()
            .unwrap()
            .push(Batch { content_type, body });
    } else {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

impl Collector {
    /// Starts a collector on 127.0.0.1 port 0 in `mode`.
    pub async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(mode as u8),
            attempts: AtomicUsize::new(0),
            accepted: Mutex::new(Vec::new()),
        });
        let state = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if state.mode.load(Ordering::SeqCst) == Mode::Drop as u8 {
                    state.attempts.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                    continue;
                }
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(request, state).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, shared, task }
    }

    /// The URL to configure as `records.url`.
    pub fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    /// Changes how the collector answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Connections dropped plus requests answered, in any mode.
    pub fn attempts(&self) -> usize {
        self.shared.attempts.load(Ordering::SeqCst)
    }

    /// The batches accepted so far.
    pub fn batches(&self) -> Vec<Batch> {
        self.shared.accepted.lock().unwrap().clone()
    }

    /// Every record accepted so far, in arrival order (NDJSON batches).
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.batches()
            .iter()
            .flat_map(|batch| {
                String::from_utf8(batch.body.to_vec())
                    .unwrap()
                    .lines()
                    .map(|line| serde_json::from_str(line).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
