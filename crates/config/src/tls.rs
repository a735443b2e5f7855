//! TLS that listeners and clusters need, described without key material: which certificate
//! files or Secrets to load, what to verify, which protocol versions. The proxy loads and
//! watches the material; this crate never reads it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::Serialize;

use crate::domain_index::DomainIndex;
use crate::listener::{Listener, ListenerRole};
use crate::tcp_route::TcpListener;

/// A certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase", tag = "from")]
pub enum CertificateSource {
    /// PEM files (file mode; relative paths were resolved against the YAML file's directory).
    Files {
        /// Certificate chain, leaf first.
        certificate: String,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        private_key: String,
    },
    /// A Kubernetes Secret (`credentialName`): `tls.crt`/`tls.key` or `cert`/`key`.
    Secret {
        /// Namespace (the gateway's).
        namespace: String,
        /// Name, without `kubernetes://`.
        name: String,
    },
    /// The proxy's own workload certificate (`ISTIO_MUTUAL`, mesh mTLS).
    Mesh,
}

/// Trusted CA certificates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase", tag = "from")]
pub enum CaSource {
    /// A PEM bundle file.
    File {
        /// Path.
        path: String,
    },
    /// A Secret: `<name>-cacert` if it exists, else the Secret's own `ca.crt`/`cacert`.
    Secret {
        /// Namespace.
        namespace: String,
        /// Name, without `kubernetes://`.
        name: String,
    },
    /// The system's roots (client TLS without `caCertificates`).
    System,
    /// The mesh's roots (`ISTIO_MUTUAL`, mesh mTLS).
    Mesh,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "TLSV1_2")]
    V1_2,
    /// TLS 1.3.
    #[serde(rename = "TLSV1_3")]
    V1_3,
}

impl TlsVersion {
    /// Istio's name (`TLSV1_2`); versions below 1.2 and `TLS_AUTO` map to `None`.
    pub fn parse(s: &str) -> Option<TlsVersion> {
        match s {
            "TLSV1_2" => Some(TlsVersion::V1_2),
            "TLSV1_3" => Some(TlsVersion::V1_3),
            _ => None,
        }
    }
}

/// How a terminating server treats client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientAuth {
    /// None asked for (`SIMPLE`).
    None,
    /// Required and verified (`MUTUAL`).
    Required,
    /// Asked for, verified when sent (`OPTIONAL_MUTUAL`).
    Optional,
}

/// A terminating gateway server's TLS (`SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTls {
    /// Client certificates.
    pub client_auth: ClientAuth,
    /// Certificates served (one, or an RSA and an ECDSA one).
    pub certificates: Vec<CertificateSource>,
    /// CA verifying client certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<CaSource>,
    /// Accepted client SANs (any of them; empty: any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Accepted client SPKI SHA-256 hashes, base64 (with `verify_certificate_hash`: either may match).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_spki: Vec<String>,
    /// Accepted client certificate SHA-256 hashes, hex (colons allowed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_hash: Vec<String>,
    /// Client certificates are accepted without CA verification.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Lowest version accepted.
    pub min_version: TlsVersion,
    /// Highest version accepted.
    pub max_version: TlsVersion,
    /// TLS 1.2 cipher suites by their OpenSSL/Envoy names (empty: the defaults).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    /// Certificate revocation lists (PEM file, `caCrl`) checked against client certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
}

/// Upstream TLS of a cluster (DestinationRule `tls` with mode `SIMPLE` or `MUTUAL`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTls {
    /// Client certificate (`MUTUAL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateSource>,
    /// CA verifying the server.
    pub ca: CaSource,
    /// SNI sent (default: the destination host).
    pub sni: String,
    /// Accepted server SANs (empty: the SNI must be valid for the certificate).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// No verification of the server certificate at all.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Certificate revocation lists (PEM file, `caCrl`) checked against the server's chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
    /// ALPN `h2` is offered (HTTP2/GRPC ports), else `http/1.1`.
    pub h2: bool,
}

/// What a TLS listener does with a connection whose ClientHello selected a chain.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChainAction {
    /// Terminate TLS and route the HTTP requests inside with this server's virtual hosts only.
    Terminate {
        /// The server's TLS.
        tls: Arc<ServerTls>,
        /// The server's routes (virtual hosts of the VirtualServices bound to it).
        http: Arc<Listener>,
    },
    /// Terminate TLS and relay the decrypted bytes by the `tcp` rules bound to the server (a
    /// `TLS` server with mode `SIMPLE` or `MUTUAL`).
    TerminateTcp {
        /// The server's TLS.
        tls: Arc<ServerTls>,
        /// The `tcp` rules of the VirtualServices bound to it.
        tcp: Arc<TcpListener>,
    },
    /// Relay the bytes untouched to the destination of the first `tls` rule whose SNI matches.
    Passthrough(Arc<TcpListener>),
    /// `AUTO_PASSTHROUGH`: the SNI names the cluster (`outbound_.<port>_.<subset>_.<host>`),
    /// relayed untouched to it when the server's hosts admit the host; no VirtualService.
    AutoPassthrough {
        /// The server's hosts (without `ns/`).
        hosts: Vec<String>,
    },
}

/// The cluster an `AUTO_PASSTHROUGH` SNI names, with its host:
/// `outbound_.9080_.v1_.reviews.default.svc.cluster.local` →
/// (`outbound|9080|v1|reviews.default.svc.cluster.local`, `reviews.default.svc.cluster.local`).
pub fn auto_passthrough_cluster(sni: &str) -> Option<(String, &str)> {
    let rest = sni.strip_prefix("outbound_.")?;
    let (port, rest) = rest.split_once("_.")?;
    let (subset, host) = rest.split_once("_.")?;
    port.parse::<u16>().ok()?;
    if host.is_empty() {
        return None;
    }
    Some((format!("outbound|{port}|{subset}|{host}"), host))
}

/// One Gateway server on a TLS port: Envoy's filter chain, chosen by SNI.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterChain {
    /// SNI names it serves (exact or `*.suffix`); empty: any name, and no name.
    pub server_names: Vec<String>,
    /// `ns/name` of its Gateway.
    pub gateway: String,
    /// What it does.
    pub action: ChainAction,
}

/// A listener whose connections start with a TLS ClientHello.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsListener {
    /// Name (`<ip>_<port>`).
    pub name: String,
    /// Bind address.
    pub address: SocketAddr,
    /// Role.
    pub role: ListenerRole,
    /// Filter chains in declaration order.
    pub chains: Vec<FilterChain>,
    /// The unix domain socket it listens on (a Gateway server's `bind: unix://PATH`); its
    /// `address` is then only a key, never bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix: Option<Arc<str>>,
    #[serde(skip)]
    index: DomainIndex,
}

impl TlsListener {
    /// Indexes the chains by server name (a name claimed twice goes to the first chain).
    pub fn new(
        name: String,
        address: SocketAddr,
        role: ListenerRole,
        chains: Vec<FilterChain>,
    ) -> Self {
        let mut index = DomainIndex::default();
        for (i, c) in chains.iter().enumerate() {
            if c.server_names.is_empty() {
                index.insert("*", i);
            }
            for n in &c.server_names {
                index.insert(n, i);
            }
        }
        index.finish();
        TlsListener {
            name,
            address,
            role,
            chains,
            unix: None,
            index,
        }
    }

    /// The chain for a ClientHello's SNI: exact, then the longest wildcard, then a chain
    /// without names; a ClientHello without SNI only gets a chain without names.
    pub fn chain(&self, sni: Option<&str>) -> Option<&FilterChain> {
        let i = match sni {
            Some(name) => self.index.find(name.trim_end_matches('.')),
            None => self.index.any(),
        }?;
        self.chains.get(i)
    }
}

/// Whether an SNI matches an `sniHosts` entry (exact, `*.suffix`, or `*`).
pub fn sni_matches(pattern: &str, sni: &str) -> bool {
    let sni = sni.trim_end_matches('.');
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            sni.len() > suffix.len()
                && sni
                    .get(sni.len() - suffix.len()..)
                    .is_some_and(|t| t.eq_ignore_ascii_case(suffix))
        }
        None => pattern.eq_ignore_ascii_case(sni),
    }
}

/// Whether `host` is an IP address (certificates for IPs are matched differently).
pub fn is_ip(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(names: &[&str]) -> FilterChain {
        FilterChain {
            server_names: names.iter().map(|s| s.to_string()).collect(),
            gateway: "default/gw".into(),
            action: ChainAction::Passthrough(Arc::new(TcpListener {
                name: names.join(","),
                address: "127.0.0.1:443".parse().unwrap(),
                role: ListenerRole::Mesh,
                rules: vec![],
                unix: None,
            })),
        }
    }

    fn name(c: Option<&FilterChain>) -> Option<String> {
        c.map(|c| match &c.action {
            ChainAction::Passthrough(t) => t.name.clone(),
            _ => String::new(),
        })
    }

    #[test]
    fn sni_selects_exact_then_longest_wildcard_then_catch_all() {
        let l = TlsListener::new(
            "l".into(),
            "127.0.0.1:443".parse().unwrap(),
            ListenerRole::Mesh,
            vec![
                chain(&["*.example.com"]),
                chain(&["a.example.com"]),
                chain(&["*.b.example.com"]),
            ],
        );
        assert_eq!(
            name(l.chain(Some("a.example.com"))).as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            name(l.chain(Some("x.b.example.com"))).as_deref(),
            Some("*.b.example.com")
        );
        assert_eq!(
            name(l.chain(Some("x.example.com"))).as_deref(),
            Some("*.example.com")
        );
        assert_eq!(name(l.chain(Some("example.com"))), None);
        assert_eq!(name(l.chain(None)), None);
        let any = TlsListener::new(
            "l".into(),
            "127.0.0.1:443".parse().unwrap(),
            ListenerRole::Mesh,
            vec![chain(&["a.com"]), chain(&[])],
        );
        assert_eq!(name(any.chain(None)).as_deref(), Some(""));
        assert_eq!(name(any.chain(Some("b.com"))).as_deref(), Some(""));
        assert_eq!(name(any.chain(Some("A.COM"))).as_deref(), Some("a.com"));
    }

    #[test]
    fn auto_passthrough_sni_names_a_cluster() {
        assert_eq!(
            auto_passthrough_cluster("outbound_.9080_.v1_.reviews.default.svc.cluster.local"),
            Some((
                "outbound|9080|v1|reviews.default.svc.cluster.local".to_string(),
                "reviews.default.svc.cluster.local"
            ))
        );
        assert_eq!(
            auto_passthrough_cluster("outbound_.80_._.a.b").map(|c| c.0),
            Some("outbound|80||a.b".to_string())
        );
        assert_eq!(auto_passthrough_cluster("reviews.default"), None);
        assert_eq!(auto_passthrough_cluster("outbound_.x_.v1_.a"), None);
    }

    #[test]
    fn sni_host_patterns() {
        assert!(sni_matches("*", "x"));
        assert!(sni_matches("*.a.com", "b.a.com"));
        assert!(sni_matches("*.a.com", "c.B.A.com"));
        assert!(!sni_matches("*.a.com", "a.com"));
        assert!(sni_matches("a.com", "A.com."));
        assert!(!sni_matches("a.com", "b.com"));
    }
}
