//! `resolution: DYNAMIC_DNS` clusters (Istio's dynamic forward proxy): the request's own host
//! name (or, for a TLS connection, its ClientHello's server name) is resolved when it arrives,
//! and it goes to that address, as an original destination does.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use http::request::Parts;
use sluice_config::cluster::{Cluster, UpstreamEndpoint};

use crate::error::ProxyError;
use crate::passthrough;

/// The future of one resolution.
pub type Resolving<'a> = Pin<Box<dyn Future<Output = Option<IpAddr>> + Send + 'a>>;

/// Resolves request host names (the runtime plugs in the DNS resolver and its cache).
pub trait HostResolver: Send + Sync {
    /// The address of `host` (no port), or `None` when it cannot be resolved.
    fn resolve<'a>(&'a self, host: &'a str) -> Resolving<'a>;
}

/// The endpoint a `DYNAMIC_DNS` request goes to: its Host's name resolved, on the Host's port,
/// else the service port. A name that does not resolve is Envoy's `503 DF`.
pub(crate) async fn endpoint(
    resolver: Option<&Arc<dyn HostResolver>>,
    head: &Parts,
    cluster: &Cluster,
) -> Result<UpstreamEndpoint, ProxyError> {
    let authority = head
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let (host, port) = split_host_port(authority);
    let port = port.unwrap_or(cluster.port);
    let failed = || ProxyError::DnsResolution(host.to_string());
    let resolver = resolver.ok_or_else(failed)?;
    if host.is_empty() {
        return Err(failed());
    }
    let ip = resolver.resolve(host).await.ok_or_else(failed)?;
    Ok(passthrough::endpoint(SocketAddr::new(ip, port)))
}

/// Where a connection to a `DYNAMIC_DNS` cluster goes (a TLS port, Envoy's
/// `sni_dynamic_forward_proxy`): the ClientHello's server name resolved now, on the service
/// port. No server name, or one that does not resolve, is `None` (the connection is closed).
pub(crate) async fn sni_address(
    resolver: Option<&Arc<dyn HostResolver>>,
    sni: Option<&str>,
    cluster: &Cluster,
) -> Option<SocketAddr> {
    let host = sni.filter(|s| !s.is_empty())?;
    let ip = resolver?.resolve(host).await?;
    Some(SocketAddr::new(ip, cluster.port))
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((ip, tail)) = rest.split_once(']') {
            return (ip, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_and_port_are_split() {
        assert_eq!(split_host_port("a.example.com"), ("a.example.com", None));
        assert_eq!(
            split_host_port("a.example.com:8080"),
            ("a.example.com", Some(8080))
        );
        assert_eq!(split_host_port("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
    }
}
