//! Port protocols, chosen the way Istio does: explicit protocol, else the port name's prefix.

use serde::Serialize;

/// Protocol of a service or gateway port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum Protocol {
    /// HTTP/1.1 (or sniffed HTTP).
    Http,
    /// HTTP/2 cleartext.
    Http2,
    /// gRPC (HTTP/2).
    Grpc,
    /// gRPC-Web.
    GrpcWeb,
    /// TLS-wrapped HTTP.
    Https,
    /// Opaque TLS.
    Tls,
    /// Opaque TCP (also Mongo, Redis, MySQL).
    Tcp,
    /// Not declared: Istio sniffs it.
    Unspecified,
}

impl Protocol {
    /// Parses a protocol name, case-insensitively.
    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s.to_ascii_uppercase().as_str() {
            "HTTP" => Protocol::Http,
            "HTTP2" => Protocol::Http2,
            "GRPC" => Protocol::Grpc,
            "GRPC-WEB" => Protocol::GrpcWeb,
            "HTTPS" => Protocol::Https,
            "TLS" => Protocol::Tls,
            "TCP" | "MONGO" | "REDIS" | "MYSQL" => Protocol::Tcp,
            _ => return None,
        })
    }

    /// Istio's rule: the declared protocol if any, else the port name cut at the first `-`.
    pub fn resolve(declared: Option<&str>, port_name: &str) -> Protocol {
        if let Some(p) = declared.filter(|p| !p.is_empty()).and_then(Protocol::parse) {
            return p;
        }
        let lower = port_name.to_ascii_lowercase();
        if lower.starts_with("grpc-web") {
            return Protocol::GrpcWeb;
        }
        let prefix = lower.split('-').next().unwrap_or("");
        Protocol::parse(prefix).unwrap_or(Protocol::Unspecified)
    }

    /// Whether requests on this port are routed with VirtualService `http` rules.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http
                | Protocol::Http2
                | Protocol::Grpc
                | Protocol::GrpcWeb
                | Protocol::Unspecified
        )
    }

    /// Whether upstream connections speak HTTP/2.
    pub fn upstream_h2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_protocol_selection() {
        assert_eq!(Protocol::resolve(Some("http"), "x"), Protocol::Http);
        assert_eq!(Protocol::resolve(None, "http2-foo"), Protocol::Http2);
        assert_eq!(Protocol::resolve(None, "grpc-api"), Protocol::Grpc);
        assert_eq!(Protocol::resolve(None, "grpc-web-x"), Protocol::GrpcWeb);
        assert_eq!(Protocol::resolve(None, "httpfoo"), Protocol::Unspecified);
        assert_eq!(Protocol::resolve(Some(""), "tcp-db"), Protocol::Tcp);
        assert!(Protocol::Grpc.upstream_h2());
        assert!(!Protocol::Http.upstream_h2());
    }
}
