//! Protocol upgrades (WebSocket and the like): once both sides have said
//! `101 Switching Protocols`, bytes are copied both ways untouched.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::server::ConnectionHold;

/// Joins the client's and the upstream's upgraded connections and copies
/// between them until either side closes. The client connection's `hold`
/// (its slot and its place in the gauge) lasts as long as the tunnel.
pub fn splice(client: OnUpgrade, upstream: OnUpgrade, hold: Option<Arc<ConnectionHold>>) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
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
