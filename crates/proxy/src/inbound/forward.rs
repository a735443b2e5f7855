//! One request on an inbound connection: authorized, marked with the client certificate's
//! identity (`x-forwarded-client-cert`), then handed to the app, reported by the destination.

use std::net::SocketAddr;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use sluice_config::authz::MtlsMode;
use sluice_config::Snapshot;
use sluice_telemetry::{Reporter, TextField};

use super::{xfcc, InboundConn};
use crate::body::Body;
use crate::handler::{local_reply, ProxyContext};
use crate::observe::Observation;
use crate::security::{app_and_mode, check_http, ConnFacts};

/// Serves `req`, which arrived on the inbound connection `conn` from `peer`.
pub(crate) async fn forward(
    ctx: &ProxyContext,
    snapshot: &Snapshot,
    conn: &InboundConn,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    obs: &mut Observation,
) -> Response<Body> {
    obs.reporter = Reporter::Destination;
    obs.mtls = conn.mtls.clone();
    if let (Some(log), Some(uri)) = (
        obs.log.as_mut(),
        conn.peer_cert.as_ref().and_then(|c| c.uri.as_deref()),
    ) {
        log.text.set(TextField::PeerPrincipal, uri);
    }
    let Some((app, mode)) = app_and_mode(snapshot, conn.target) else {
        // The listener was removed since the connection was accepted.
        return local_reply(StatusCode::NOT_FOUND, "NR".into(), "");
    };
    if conn.plaintext && mode == MtlsMode::Strict {
        // The PeerAuthentication turned STRICT after this connection was accepted: Envoy
        // drains the connections of a removed chain; this one is told to go at once.
        let mut reply = local_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            String::new(),
            "mutual TLS is now required on this port (PeerAuthentication STRICT); reconnect with mTLS\n",
        );
        reply.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return reply;
    }
    let principal = conn.peer_cert.as_ref().and_then(|c| c.uri.as_deref());
    let facts = ConnFacts {
        peer,
        local: conn.local,
        principal,
        sni: conn.sni.as_deref(),
    };
    req = match ctx.authn.authenticate(snapshot, req) {
        Ok(r) => r,
        Err(denial) => return denial.reply(obs),
    };
    if let Err(denial) = check_http(snapshot, &req, &facts) {
        return denial.reply(obs);
    }
    match (&conn.peer_cert, ctx.tls.store().mesh_identity()) {
        (Some(cert), Some(own)) => xfcc::append(req.headers_mut(), &own, cert),
        // Only this hop may say who the client is: a plaintext client's claim is dropped.
        _ => {
            req.headers_mut().remove(&xfcc::XFCC);
        }
    }
    // The Sidecar's inbound pool: circuit breakers and connection settings of the app's hop.
    let runtime = super::pool::runtime(ctx, snapshot, conn.target);
    let _admitted = match &runtime {
        Some(rt) => match super::pool::admit(rt).await {
            Ok(slot) => Some(slot),
            Err(overflow) => return overflow,
        },
        None => None,
    };
    if runtime
        .as_ref()
        .is_some_and(|rt| rt.limits().max_requests_per_connection == 1)
        && req.version() != http::Version::HTTP_2
    {
        // One request per connection: ask the app's connection to close after this one.
        req.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    let own = runtime.as_ref().and_then(|rt| rt.pool());
    if conn.app_addr == app {
        crate::passthrough::forward_in(ctx, &conn.app, req, own).await
    } else {
        // A reload moved the app since the connection was accepted.
        let moved = crate::passthrough::endpoint(app);
        crate::passthrough::forward_in(ctx, &moved, req, own).await
    }
}
