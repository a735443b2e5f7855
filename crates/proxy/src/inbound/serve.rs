//! Accepting one inbound connection: tell mesh mTLS from plaintext and other TLS on its first
//! bytes, terminate what the port's mode allows, and serve HTTP or relay TCP to the app.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::StartHandshake;

use super::chain::{self, Chain, Opening, PortKind};
use super::xfcc::ClientCert;
use super::InboundConn;
use crate::downstream::ConnectionPermit;
use crate::handler::{Entry, ProxyContext};
use crate::intercept::sniff::{sniff, Sniffed};
use crate::security::{authorize_tcp, ConnFacts, InboundTarget};
use crate::server::HttpServing;
use crate::tls::accept::{read_client_hello, CLIENT_HELLO_TIMEOUT};

/// How long to wait for a client's first bytes before taking it for a server-first protocol.
const FIRST_BYTES: Duration = Duration::from_secs(1);
/// How long the rest of a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one inbound connection: accepted on a Sidecar ingress listener or intercepted.
pub(crate) async fn serve(
    ctx: Arc<ProxyContext>,
    target: InboundTarget,
    mut stream: TcpStream,
    peer: SocketAddr,
    http: HttpServing,
    permit: ConnectionPermit,
) {
    let address = match target {
        InboundTarget::Listener(a) | InboundTarget::Intercepted(a) => a,
    };
    let fail = |ctx: &ProxyContext, why: &'static str, detail: &str| {
        ctx.tls.failures().record(
            &ctx.telemetry,
            &address.to_string(),
            why,
            &format!("{detail} (client {peer})"),
        );
    };
    let local = stream.local_addr().unwrap_or(address);
    let first = sniff(&stream, FIRST_BYTES).await;
    if first == Sniffed::Closed {
        return;
    }
    let hello = if first == Sniffed::Tls {
        match tokio::time::timeout(CLIENT_HELLO_TIMEOUT, read_client_hello(&mut stream)).await {
            Ok(Ok(x)) => Some(x),
            Ok(Err("closed_by_client")) => return,
            Ok(Err(why)) => return fail(&ctx, why, "reading the ClientHello"),
            Err(_) => return fail(&ctx, "timeout", "no ClientHello in time"),
        }
    } else {
        None
    };
    let opening = match &hello {
        Some((accepted, _)) => Opening::Tls {
            istio_alpn: accepted
                .client_hello()
                .alpn()
                .is_some_and(|mut names| names.any(chain::is_istio_alpn)),
        },
        None => Opening::Plain,
    };
    let sni: Option<Arc<str>> = hello.as_ref().and_then(|(a, _)| {
        a.client_hello()
            .server_name()
            .map(|s| Arc::from(s.to_ascii_lowercase()))
    });
    let Some(snapshot) = ctx.config.load() else {
        return;
    };
    let Some(spec) = crate::security::inbound_port(&snapshot, target) else {
        return;
    };
    drop(snapshot);
    // An undeclared protocol is told by the first bytes (plaintext) or the mesh client's ALPN.
    let kind = match (spec.sniffed, &hello) {
        (false, _) => spec.kind,
        (true, None) if first == Sniffed::Http => PortKind::Http,
        (true, None) => PortKind::Tcp,
        (true, Some((accepted, _))) => {
            let http = accepted.client_hello().alpn().is_some_and(|mut names| {
                names.any(|n| n.starts_with(b"istio-http") || n == b"istio-h2")
            });
            if http {
                PortKind::Http
            } else {
                PortKind::Tcp
            }
        }
    };
    let choice = chain::select(spec.mode, kind, opening, spec.tls.is_some());
    let mut conn = InboundConn {
        target,
        peer_cert: None,
        mtls: None,
        plaintext: matches!(opening, Opening::Plain),
        sni,
        local,
        app: Arc::new(crate::passthrough::endpoint(spec.default_endpoint)),
        app_addr: spec.default_endpoint,
    };
    let source_node: Arc<str> = Arc::from("inbound");
    let app = spec.default_endpoint;
    match (choice, hello) {
        (Chain::Refuse, _) => {
            let why = match opening {
                Opening::Plain => "plaintext_refused_by_strict_mtls",
                Opening::Tls { .. } => "tls_refused_on_plaintext_port",
            };
            fail(&ctx, why, "no inbound chain accepts the connection")
        }
        (Chain::Plain, _) => match kind {
            PortKind::Http => {
                let local = conn.local;
                let entry = Entry::Inbound(Arc::new(conn));
                http.serve(ctx, stream, entry, (peer, local), source_node, permit);
            }
            PortKind::Tcp => tcp(ctx, app, stream, peer, conn, &[], permit).await,
        },
        (Chain::Passthrough, Some((_, read))) => {
            tcp(ctx, app, stream, peer, conn, &read, permit).await
        }
        (Chain::MeshTls | Chain::SidecarTls, Some((accepted, _))) => {
            let config = match (choice, &spec.tls) {
                (Chain::SidecarTls, Some(tls)) => ctx.tls.server_config(tls),
                _ => ctx.tls.mesh_server_config(&spec.mesh),
            };
            let config = match config {
                Ok(c) => c,
                Err(e) => return fail(&ctx, "certificate_unavailable", &e.to_string()),
            };
            let handshake = StartHandshake::from_parts(accepted, stream).into_stream(config);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return fail(&ctx, crate::tls::errors::io_reason(&e), &e.to_string()),
                Err(_) => return fail(&ctx, "timeout", "handshake not finished in time"),
            };
            if choice == Chain::MeshTls {
                conn.peer_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(ClientCert::from_der);
                let client = conn.peer_cert.as_ref().and_then(|c| c.uri.as_deref());
                if let (Some(client), Some(own)) = (client, ctx.tls.store().mesh_identity()) {
                    conn.mtls = Some(ctx.telemetry.mtls_peers(client, &own));
                }
            }
            match kind {
                PortKind::Http => {
                    let local = conn.local;
                    let entry = Entry::Inbound(Arc::new(conn));
                    http.serve(ctx, tls, entry, (peer, local), source_node, permit);
                }
                PortKind::Tcp => tcp(ctx, app, tls, peer, conn, &[], permit).await,
            }
        }
        // A TLS chain always comes with the ClientHello it was chosen on.
        (Chain::Passthrough | Chain::MeshTls | Chain::SidecarTls, None) => {}
    }
}

/// Authorizes a TCP connection (TCP attributes only), then relays it to the app.
async fn tcp<D>(
    ctx: Arc<ProxyContext>,
    app: SocketAddr,
    stream: D,
    peer: SocketAddr,
    conn: InboundConn,
    read: &[u8],
    permit: ConnectionPermit,
) where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let mut runtime = None;
    if let Some(snapshot) = ctx.config.load() {
        let facts = ConnFacts {
            peer,
            local: conn.local,
            principal: conn.peer_cert.as_ref().and_then(|c| c.uri.as_deref()),
            sni: conn.sni.as_deref(),
        };
        if let Err(details) = authorize_tcp(&snapshot, &facts) {
            tracing::debug!(%peer, %details, "inbound TCP connection denied");
            return;
        }
        runtime = super::pool::runtime(&ctx, &snapshot, conn.target);
    }
    if let Some(rt) = runtime {
        // Envoy's TCP proxy closes a connection over `maxConnections` rather than queue it.
        let Some(_connection) = rt.try_connection() else {
            tracing::debug!(%peer, "inbound maxConnections reached (UO); connection closed");
            return;
        };
        return permit
            .hold(super::pool::relay(stream, app, rt.limits(), read))
            .await;
    }
    permit
        .hold(crate::intercept::tcp::relay_after(
            stream,
            app,
            &Default::default(),
            read,
        ))
        .await;
}
