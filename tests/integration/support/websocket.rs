//! A WebSocket echo server, as the upstream of the upgrade tests, and a
//! client that upgrades through Tandem.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;

/// Opens a WebSocket through the proxy at `proxy` (path `/ws`) and checks
/// that it switched protocols.
pub async fn connect(proxy: SocketAddr) -> WebSocketStream<TcpStream> {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (socket, response) = tokio_tungstenite::client_async(format!("ws://{proxy}/ws"), stream)
        .await
        .expect("upgrade through tandem");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket
}

/// Starts a WebSocket server on 127.0.0.1 port 0 that echoes every text
/// and binary message on every connection; returns its address.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() || message.is_binary() {
                        socket.send(message).await.unwrap();
                    }
                }
            });
        }
    });
    address
}
