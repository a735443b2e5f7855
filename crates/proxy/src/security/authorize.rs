//! Authorization of HTTP requests and TCP connections: the request's attributes are gathered
//! here and judged by the pure evaluator of `sluice_config::authz`.

use std::net::SocketAddr;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use sluice_config::authz::{evaluate, Decision, HttpAttributes, RequestAttributes, VerifiedJwt};
use sluice_config::Snapshot;

use crate::body::Body;

/// Envoy's body for a request its RBAC filter denies.
const DENIED_BODY: &str = "RBAC: access denied";

/// What the connection tells about a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnFacts<'a> {
    /// The client's address (`source.ip`; `remote.ip` too, as no proxy is trusted in front).
    pub(crate) peer: SocketAddr,
    /// The connection's local address (`destination.ip`, `destination.port`).
    pub(crate) local: SocketAddr,
    /// The mesh client's SPIFFE identity, on mesh mTLS.
    pub(crate) principal: Option<&'a str>,
    /// The ClientHello's server name, on TLS.
    pub(crate) sni: Option<&'a str>,
}

impl<'a> ConnFacts<'a> {
    fn attributes(&self) -> RequestAttributes<'a> {
        RequestAttributes {
            peer_principal: self.principal,
            source_ip: self.peer.ip(),
            remote_ip: self.peer.ip(),
            destination_ip: self.local.ip(),
            destination_port: self.local.port(),
            sni: self.sni,
            http: None,
        }
    }
}

/// Logs what the dry-run policies would have done (Envoy's shadow engine).
fn report_shadows(d: &Decision, what: &str) {
    for (engine, shadow) in [("deny", &d.shadow_deny), ("allow", &d.shadow_allow)] {
        if let Some(s) = shadow {
            if !s.allowed {
                tracing::info!(
                    engine,
                    policy = s.effective_policy_id.as_deref().unwrap_or("none"),
                    "{what}: shadow denied (dry-run policy, not enforced)"
                );
            }
        }
    }
}

/// Why a request is not forwarded: its status, body and `www-authenticate` challenge.
#[derive(Debug)]
pub(crate) struct Denial {
    status: StatusCode,
    body: String,
    challenge: Option<String>,
}

impl Denial {
    /// Envoy's RBAC denial: `403 RBAC: access denied`.
    fn rbac() -> Box<Self> {
        Box::new(Denial {
            status: StatusCode::FORBIDDEN,
            body: DENIED_BODY.into(),
            challenge: None,
        })
    }

    /// A JWT refused by request authentication.
    pub(crate) fn jwt(status: StatusCode, body: String, challenge: String) -> Box<Self> {
        Box::new(Denial {
            status,
            body,
            challenge: Some(challenge),
        })
    }

    /// The reply sent instead of forwarding.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(Body::full(self.body));
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        if let Some(v) = self
            .challenge
            .and_then(|c| http::HeaderValue::from_str(&c).ok())
        {
            headers.insert(http::header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// Authorizes one HTTP request (JWT already verified, its claims in the extensions); the
/// error says what to reply instead of forwarding.
pub(crate) fn check_http(
    snapshot: &Snapshot,
    req: &Request<Incoming>,
    conn: &ConnFacts<'_>,
) -> Result<(), Box<Denial>> {
    let policies = &snapshot.security.authz;
    if policies.is_empty() {
        return Ok(());
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let http = HttpAttributes {
        host,
        method: req.method().as_str(),
        path: req.uri().path(),
        headers: req.headers(),
        request_auth: req.extensions().get::<VerifiedJwt>(),
    };
    let decision = evaluate(policies, &conn.attributes().with_http(http));
    report_shadows(&decision, "request");
    if decision.allowed {
        return Ok(());
    }
    tracing::debug!(peer = %conn.peer, details = decision.details().as_deref().unwrap_or(""), "request denied");
    Err(Denial::rbac())
}

/// Authorizes a TCP connection with its connection attributes only; the error is Envoy's
/// termination details.
pub(crate) fn authorize_tcp(snapshot: &Snapshot, conn: &ConnFacts<'_>) -> Result<(), String> {
    let policies = &snapshot.security.authz;
    if policies.is_empty() {
        return Ok(());
    }
    let decision = evaluate(policies, &conn.attributes());
    report_shadows(&decision, "connection");
    match decision.details() {
        None => Ok(()),
        Some(details) => Err(details),
    }
}
