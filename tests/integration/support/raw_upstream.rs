//! A raw HTTP/1 upstream for the tests that need answers no well-behaved
//! server sends: it reads request heads (not bodies) and writes canned
//! bytes back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A raw upstream on 127.0.0.1 port 0.
pub struct RawUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections it accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// The request heads it read, as they came, in the order they came.
    pub heads: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RawUpstream {
    /// Starts an upstream that, at the end of the `n`th request head on a
    /// connection (from 0), writes `answer(n)`, or closes the connection
    /// without a word if that is `None`. Request bodies are not read: a
    /// head ends at the first blank line.
    pub async fn start(answer: fn(usize) -> Option<&'static [u8]>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let all_heads = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let seen_heads = all_heads.clone();
                tokio::spawn(async move {
                    let mut heads = 0;
                    let mut received = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            return;
                        }
                        received.extend_from_slice(&buffer[..read]);
                        while let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = received.drain(..end + 4).collect();
                            seen_heads.lock().unwrap().push(head);
                            let Some(bytes) = answer(heads) else {
                                return;
                            };
                            heads += 1;
                            if stream.write_all(bytes).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            accepted,
            heads,
        }
    }
}
