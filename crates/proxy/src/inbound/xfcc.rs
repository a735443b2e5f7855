//! `x-forwarded-client-cert` on requests that arrived over mesh mTLS (Envoy's `APPEND_FORWARD`
//! at a sidecar's inbound): who served, the client certificate's hash and its SPIFFE identity.
//! Istio's docs use it to show that a request came over mutual TLS; plaintext requests never
//! carry one from this proxy.

use http::{HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::CertificateDer;

/// The header's name.
pub static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// What a connection's client certificate tells: computed once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The first URI SAN (the SPIFFE identity), if any.
    pub uri: Option<String>,
    /// Lower-case hex SHA-256 of the DER certificate.
    pub hash: String,
}

impl ClientCert {
    /// Reads the leaf a client presented.
    pub fn from_der(cert: &CertificateDer<'_>) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        let hash = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        ClientCert {
            uri: crate::tls::peer::uri_sans(cert).into_iter().next(),
            hash,
        }
    }
}

/// The element this hop appends: `By=<own>;Hash=<hex>;Subject="";URI=<peer>`.
pub fn element(own: &str, peer: &ClientCert) -> String {
    format!(
        "By={own};Hash={};Subject=\"\";URI={}",
        peer.hash,
        peer.uri.as_deref().unwrap_or("")
    )
}

/// Appends this hop's element to any the client sent (comma-separated, as Envoy does).
pub fn append(headers: &mut HeaderMap, own: &str, peer: &ClientCert) {
    let mine = element(own, peer);
    let value = match headers.get(&XFCC).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing},{mine}"),
        _ => mine,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(XFCC.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> ClientCert {
        ClientCert {
            uri: Some("spiffe://cluster.local/ns/foo/sa/sleep".into()),
            hash: "ab01".into(),
        }
    }

    #[test]
    fn element_has_envoys_shape() {
        let mut h = HeaderMap::new();
        append(&mut h, "spiffe://cluster.local/ns/foo/sa/httpbin", &peer());
        assert_eq!(
            h[&XFCC],
            "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash=ab01;Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/sleep"
        );
    }

    #[test]
    fn appends_to_what_the_client_sent() {
        let mut h = HeaderMap::new();
        h.insert(XFCC.clone(), HeaderValue::from_static("By=a;URI=b"));
        append(&mut h, "own", &peer());
        let v = h[&XFCC].to_str().unwrap_or_default();
        assert!(v.starts_with("By=a;URI=b,By=own;"), "{v}");
    }
}
