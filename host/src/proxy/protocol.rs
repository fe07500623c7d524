//! Which HTTP version a client connection speaks: HTTP/1.1, or HTTP/2
//! with prior knowledge (h2c), told apart by the client's first bytes.
//!
//! hyper-util's `auto` connection does this too, but it reads the first
//! bytes itself and then serves the whole connection through a wrapper
//! that replays them, inside one more state machine. Measured with wrk
//! (docs/performance.md), handing the untouched socket to hyper's own
//! HTTP/1 connection costs about 0.7 µs less CPU per request. Here the
//! first bytes are only peeked at, so nothing needs replaying.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// The HTTP/2 connection preface (RFC 9113 section 3.4) begins with
/// these bytes; `PRI` is not a method an HTTP/1 client sends.
const HTTP2_PREFACE_START: &[u8] = b"PRI ";

/// How long to wait before looking again when the first bytes so far could
/// still begin either protocol, at first and at most: the pause doubles
/// each time, so that many clients that stop after `PR` cost few wake-ups.
/// Looking again at once would spin: the socket stays readable while the
/// bytes wait in it.
const PARTIAL_PREFACE_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PARTIAL_PREFACE_PAUSE: Duration = Duration::from_millis(250);

/// The protocol a client connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1 (and whatever it upgrades to).
    Http1,
    /// HTTP/2 over cleartext, with prior knowledge.
    Http2,
}

impl Protocol {
    /// The protocol that `first` (the bytes received so far) begins, or
    /// `None` if they are too few to tell.
    pub fn of(first: &[u8]) -> Option<Self> {
        let seen = first.len().min(HTTP2_PREFACE_START.len());
        if first[..seen] != HTTP2_PREFACE_START[..seen] {
            Some(Protocol::Http1)
        } else if seen == HTTP2_PREFACE_START.len() {
            Some(Protocol::Http2)
        } else {
            None
        }
    }
}

/// Waits for the client's first bytes and tells which protocol they
/// begin, without taking them off the socket. `None` if the client closes
/// before sending anything. The caller bounds the wait (the connection's
/// watchdog).
pub async fn detect(stream: &TcpStream) -> io::Result<Option<Protocol>> {
    let mut first = [0u8; HTTP2_PREFACE_START.len()];
    let mut pause = PARTIAL_PREFACE_PAUSE;
    loop {
        let received = stream.peek(&mut first).await?;
        if received == 0 {
            return Ok(None);
        }
        if let Some(protocol) = Protocol::of(&first[..received]) {
            return Ok(Some(protocol));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PARTIAL_PREFACE_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[test]
    fn the_first_bytes_tell_the_protocols_apart() {
        assert_eq!(Protocol::of(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(Protocol::of(b"P"), None);
        assert_eq!(Protocol::of(b"PR"), None);
        assert_eq!(Protocol::of(b"POST"), Some(Protocol::Http1));
        assert_eq!(Protocol::of(b"PRI "), Some(Protocol::Http2));
        assert_eq!(
            Protocol::of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Some(Protocol::Http2)
        );
        // Empty lines before a request line are allowed in HTTP/1.
        assert_eq!(Protocol::of(b"\r\nGET"), Some(Protocol::Http1));
    }

    /// A client that sends the preface a byte at a time is still told
    /// apart, and the bytes stay on the socket for hyper to read.
    #[tokio::test]
    async fn a_preface_that_arrives_in_pieces_is_recognised_and_left_unread() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.set_nodelay(true).unwrap();
            for byte in b"PRI * HTTP/2.0" {
                stream.write_all(&[*byte]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stream
        });
        let (server, _) = listener.accept().await.unwrap();
        assert_eq!(detect(&server).await.unwrap(), Some(Protocol::Http2));
        let _client = client.await.unwrap();
        let mut unread = [0u8; 4];
        server.peek(&mut unread).await.unwrap();
        assert_eq!(&unread, b"PRI ");
    }

    #[tokio::test]
    async fn a_client_that_closes_at_once_has_no_protocol() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(TcpStream::connect(address).await.unwrap());
        let (server, _) = listener.accept().await.unwrap();
        assert_eq!(detect(&server).await.unwrap(), None);
    }
}
