//! What the evaluator looks at: the attributes of one connection or request, borrowed from the
//! caller so that building them costs nothing but a few pointer copies.

use std::net::IpAddr;

use http::HeaderMap;
use serde_json::Value;

/// A JWT that passed verification, as the JWT stage hands it on.
///
/// Lives in `http::Extensions` of the request so that routing (claim matches) and authorization
/// read the same verified token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifiedJwt {
    /// `<iss>/<sub>`; absent when the token has no `sub`.
    pub principal: Option<String>,
    /// The payload; `scope`, `permission` and listed space-delimited claims already split into
    /// lists of words.
    pub claims: Value,
}

impl VerifiedJwt {
    /// The claim at `path` (`["a", "b"]` is `claims.a.b`), if present.
    pub fn claim(&self, path: &[String]) -> Option<&Value> {
        path.iter().try_fold(&self.claims, |v, key| v.get(key))
    }

    /// The issuer (`iss`), from the claims or else from the principal.
    pub fn issuer(&self) -> Option<&str> {
        match self.claims.get("iss").and_then(Value::as_str) {
            Some(iss) => Some(iss),
            None => self.principal.as_deref()?.rsplit_once('/').map(|(i, _)| i),
        }
    }

    /// The subject (`sub`), from the claims or else from the principal.
    pub fn subject(&self) -> Option<&str> {
        match self.claims.get("sub").and_then(Value::as_str) {
            Some(sub) => Some(sub),
            None => self.principal.as_deref()?.rsplit_once('/').map(|(_, s)| s),
        }
    }
}

/// The HTTP part of a request; absent for a TCP connection.
#[derive(Debug, Clone, Copy)]
pub struct HttpAttributes<'a> {
    /// Host or `:authority` as sent, port included.
    pub host: &'a str,
    /// Method.
    pub method: &'a str,
    /// Normalized path without the query.
    pub path: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The verified JWT, when the request carried a valid one.
    pub request_auth: Option<&'a VerifiedJwt>,
}

/// The attributes of one request (or TCP connection) the policies are evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct RequestAttributes<'a> {
    /// The peer's identity, the full `spiffe://...` URI of its certificate (mTLS only).
    pub peer_principal: Option<&'a str>,
    /// The peer address of the connection.
    pub source_ip: IpAddr,
    /// The client address (from `x-forwarded-for` and `numTrustedProxies`, else the peer).
    pub remote_ip: IpAddr,
    /// The local address the connection arrived on.
    pub destination_ip: IpAddr,
    /// The local port the connection arrived on.
    pub destination_port: u16,
    /// The SNI of the downstream TLS connection.
    pub sni: Option<&'a str>,
    /// HTTP attributes; `None` for a TCP connection.
    pub http: Option<HttpAttributes<'a>>,
}

impl<'a> RequestAttributes<'a> {
    /// Attributes of a plain TCP connection from `source` to `destination`.
    pub fn tcp(source: std::net::SocketAddr, destination: std::net::SocketAddr) -> Self {
        RequestAttributes {
            peer_principal: None,
            source_ip: source.ip(),
            remote_ip: source.ip(),
            destination_ip: destination.ip(),
            destination_port: destination.port(),
            sni: None,
            http: None,
        }
    }

    /// The same attributes with HTTP ones added.
    pub fn with_http(mut self, http: HttpAttributes<'a>) -> Self {
        self.http = Some(http);
        self
    }

    /// The verified JWT of an HTTP request.
    pub fn jwt(&self) -> Option<&'a VerifiedJwt> {
        self.http.and_then(|h| h.request_auth)
    }
}

/// A header's value; repeated headers joined by `,` as Envoy's header matcher sees them.
pub(crate) fn header_value(headers: &HeaderMap, name: &http::HeaderName) -> Option<String> {
    let mut it = headers.get_all(name).iter();
    let first = it.next()?;
    let mut out = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for v in it {
        out.push(',');
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    Some(out)
}
