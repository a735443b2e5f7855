//! Inbound interception (Istio's 15006): a connection to the pod is handed to the app on
//! loopback at its original port; HTTP requests are reported with `reporter="destination"`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sluice_telemetry::Reporter;
use tokio::net::TcpStream;

use super::original_dst::original_dst;
use super::sniff::{sniff, Sniffed};
use super::{serve_http, tcp, Shared};
use crate::handler::observed;
use crate::observe::Observation;
use crate::passthrough;

/// How long to wait for a client's first bytes before taking the protocol for a server-first one
/// (MySQL, SMTP) and relaying it as plain TCP.
const FIRST_BYTES: Duration = Duration::from_secs(1);

/// The graph and log name of inbound traffic.
const SOURCE_NODE: &str = "inbound";

/// Where the app listens for a port: loopback of the connection's family.
fn app_address(dst: SocketAddr) -> SocketAddr {
    let ip = match dst.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    SocketAddr::new(ip, dst.port())
}

/// Serves one intercepted inbound connection.
pub(crate) async fn serve(shared: Shared, stream: TcpStream, peer: SocketAddr) {
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
    let app = app_address(dst);
    match sniff(&stream, FIRST_BYTES).await {
        Sniffed::Http => {}
        Sniffed::Other | Sniffed::Tls | Sniffed::Silent => {
            tcp::relay(stream, app, &shared.own).await;
            return;
        }
        Sniffed::Closed => return,
    }
    let ctx = shared.ctx.clone();
    let source_node: Arc<str> = Arc::from(SOURCE_NODE);
    let connection = ctx.telemetry.proxy().downstream_connection();
    serve_http(&shared, stream, peer, move |req| {
        let ctx = ctx.clone();
        let mut obs = Observation::start(ctx.telemetry.clone(), source_node.clone(), &req);
        obs.reporter = Reporter::Destination;
        async move {
            let resp = passthrough::forward(&ctx, app, req).await;
            observed(resp, obs)
        }
    })
    .await;
    drop(connection);
}
