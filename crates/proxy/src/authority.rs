//! The request's authority, settled before routing the way Envoy's codecs and connection manager
//! settle it: one `Host` header that both routing and the upstream request use.
//!
//! Without this, an absolute-form request (`GET http://a/ … Host: b`) was routed by `a` and
//! forwarded to the upstream with `Host: b`, which lets a client reach one service while a
//! Host-keyed backend (virtual hosting, auth) believes it talks to another.

use http::header::HOST;
use http::{HeaderValue, Method, Request};

/// Why a request's authority is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// No `Host` header and no URI authority (HTTP/1.1 requires Host; HTTP/1.0 without it has
    /// no default host, as Envoy without `default_host_for_http_10`).
    #[error("missing Host header")]
    Missing,
    /// More than one `Host` header (RFC 9112 §3.2: answer 400).
    #[error("more than one Host header")]
    Duplicate,
    /// `CONNECT`: no Istio route enables Envoy's CONNECT upgrade, so Envoy refuses it (403).
    #[error("CONNECT is not allowed")]
    Connect,
}

/// Checks the request's authority and leaves it in exactly one `Host` header: the URI authority
/// (HTTP/1 absolute form, HTTP/2 `:authority`) replaces any `Host`, as RFC 9112 §3.2.2 and
/// Envoy require; a request that names no authority, or two, is refused.
pub fn settle<B>(req: &mut Request<B>) -> Result<(), AuthorityError> {
    if req.method() == Method::CONNECT {
        return Err(AuthorityError::Connect);
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    let has_host = hosts.next().is_some();
    if hosts.next().is_some() {
        return Err(AuthorityError::Duplicate);
    }
    match req.uri().authority() {
        Some(authority) => {
            // The common HTTP/1.1 origin-form request has no URI authority and costs nothing
            // here; HTTP/2 needs a Host for an HTTP/1.1 upstream anyway.
            let value =
                HeaderValue::from_str(authority.as_str()).map_err(|_| AuthorityError::Missing)?;
            req.headers_mut().insert(HOST, value);
            Ok(())
        }
        None if has_host => Ok(()),
        None => Err(AuthorityError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).unwrap_or_default()
    }

    fn settled(mut req: Request<()>) -> Result<String, AuthorityError> {
        settle(&mut req)?;
        let hosts: Vec<_> = req.headers().get_all(HOST).iter().collect();
        assert_eq!(hosts.len(), 1);
        Ok(hosts[0].to_str().unwrap_or("").to_string())
    }

    /// (method, URI, Host headers, the one Host left or the refusal).
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [&'a str],
        Result<&'a str, AuthorityError>,
    );

    #[test]
    fn one_host_from_the_uri_authority_else_the_header() {
        let table: &[Case<'_>] = &[
            ("GET", "/", &["b"], Ok("b")),
            ("GET", "http://a/", &["b"], Ok("a")),
            ("GET", "http://a:8080/x", &[], Ok("a:8080")),
            ("GET", "/", &[], Err(AuthorityError::Missing)),
            ("GET", "/", &["a", "b"], Err(AuthorityError::Duplicate)),
            (
                "GET",
                "http://a/",
                &["a", "a"],
                Err(AuthorityError::Duplicate),
            ),
            ("CONNECT", "a:443", &["a:443"], Err(AuthorityError::Connect)),
        ];
        for (method, uri, hosts, want) in table {
            let got = settled(request(method, uri, hosts));
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                *want,
                "{method} {uri} {hosts:?}"
            );
        }
    }
}
