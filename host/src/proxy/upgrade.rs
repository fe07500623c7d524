//! Protocol upgrades (WebSocket and the like): once both sides have said
//! `101 Switching Protocols`, bytes are copied both ways untouched.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::server::ConnectionHold;
use super::upstream_exchange::Tunnel;

/// Joins the client's and the upstream's upgraded connections and copies
/// between them until either side closes. The client connection's `hold`
/// (its slot and its place in the gauge) lasts as long as the tunnel.
pub fn splice(client: OnUpgrade, upstream: Tunnel, hold: Option<Arc<ConnectionHold>>) {
    tokio::spawn(async move {
        let mut client = match client.await {
            Ok(client) => TokioIo::new(client),
            Err(error) => {
                tracing::debug!(%error, "upgrade did not complete");
                return;
            }
        };
        let Tunnel {
            stream: mut upstream,
            buffered,
        } = upstream;
        // What the upstream sent right after its 101 was read with the
        // response head; it goes first.
        if !buffered.is_empty()
            && let Err(error) = client.write_all(&buffered).await
        {
            tracing::debug!(%error, "upgraded connection ended");
            return;
        }
        let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        // The tunnel (holding the connection's slot through `hold`) ends
        // at the end of the shutdown grace, with the connections it
        // outlived.
        let cut = async {
            match &hold {
                Some(hold) => hold.cut().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = copied => if let Err(error) = result {
                tracing::debug!(%error, "upgraded connection ended");
            },
            () = cut => tracing::debug!("tunnel cut at the end of the shutdown grace"),
        }
    });
}
