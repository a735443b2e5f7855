//! Inbound interception (Istio's 15006): a connection to the pod is served as the inbound port
//! of its original destination, then handed to the app on loopback at that port; HTTP requests
//! are reported with `reporter="destination"`.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::original_dst::original_dst;
use super::Shared;
use crate::downstream::ConnectionPermit;
use crate::security::InboundTarget;

/// Serves one intercepted inbound connection as the inbound port of its original destination
/// (PeerAuthentication, authorization, mesh mTLS), the app behind it on loopback.
pub(crate) async fn serve(
    shared: Shared,
    stream: TcpStream,
    peer: SocketAddr,
    permit: ConnectionPermit,
) {
    let dst = match original_dst(&stream) {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "inbound connection without an original destination; closed");
            return;
        }
    };
    if dst.port() == shared.listen.port() || stream.local_addr().is_ok_and(|l| l == dst) {
        // Sent to the inbound port itself: the app "behind" it would be this listener.
        tracing::debug!(%peer, %dst, "connection to the inbound listener itself; closed");
        return;
    }
    crate::inbound::serve(
        shared.ctx.clone(),
        InboundTarget::Intercepted(dst),
        stream,
        peer,
        shared.http.clone(),
        permit,
    )
    .await;
}
